// The resource graph: typed nodes (hosts, VMs, disks, files, mounts, volumes, devices, storage)
// joined by typed edges that point "downward", from a thing to what it depends on
// (vm -> virtual_disk -> file -> mount_point -> fs_volume -> block_device -> ... ->
// storage_system).
//
// Identity: every node has a stable id derived from what the thing is, never from who saw it
// (`fs:<uuid>`, `lun:<wwid>`, `ss:ceph:<fsid>`), so that graphs from several hosts merge into one
// node per real thing. See docs/architecture.md for the id scheme.
//
// Memory layout: strings (ids, names, attribute keys and values) are stored once; nodes are
// small fixed records; adjacency is kept in both directions, a single edge inside the node
// record. The graph holds no I/O.
//
// Threading: a Graph is a value. Concurrent const access is safe; any mutation needs exclusive
// access (the owner decides how, e.g. stratad guards its merged graph with a shared mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace strata::core {

enum class NodeType : uint8_t {
  kCluster,
  kHost,
  kVm,
  kVmConfig,
  kVirtualDisk,
  kPassthroughDisk,
  kFile,
  kMountPoint,
  kFsVolume,
  kBlockDevice,
  kLun,
  kStorageVolume,
  kStorageSystem,
  kVmSnapshot,
  kStorageSnapshot,
  kBackup,
};
inline constexpr int kNodeTypeCount = 16;

// Edge types, each read as "<from> <verb> <to>", from the dependent thing to what it rests on.
enum class EdgeType : uint8_t {
  kHasMember,   // cluster -> host
  kRuns,        // host -> vm
  kHasConfig,   // vm -> vm_config
  kHasDisk,     // vm -> virtual_disk | passthrough_disk
  kBackedBy,    // disk -> file | block_device | storage_volume ; file -> file (backing chain)
  kOnMount,     // file -> mount_point
  kMounts,      // mount_point -> fs_volume
  kOnDevice,    // fs_volume -> block_device ; block_device -> block_device (partition, dm slave)
  kLoopFile,    // block_device (loop) -> file it is backed by
  kIsLun,       // block_device -> lun
  kInVolume,    // lun | block_device | file | fs_volume -> storage_volume
  kInSystem,    // storage_volume -> storage_system
  kSnapshotOf,  // vm_snapshot -> vm ; storage_snapshot -> storage_volume
  kContains,    // backup -> vm_snapshot | storage_snapshot
};
inline constexpr int kEdgeTypeCount = 14;

// snake_case names used in JSON, the CLI and the REST API ("virtual_disk", "backed_by").
std::string_view NodeTypeName(NodeType type);
std::string_view EdgeTypeName(EdgeType type);
absl::StatusOr<NodeType> ParseNodeType(std::string_view name);
absl::StatusOr<EdgeType> ParseEdgeType(std::string_view name);

using NodeIndex = uint32_t;
inline constexpr NodeIndex kNoNode = UINT32_MAX;

using Attribute = std::pair<std::string, std::string>;
using Attributes = std::vector<Attribute>;

struct EdgeRef {
  NodeIndex node;  // the other end
  EdgeType type;
  friend bool operator==(const EdgeRef&, const EdgeRef&) = default;
};

class Graph {
 public:
  Graph();
  ~Graph();
  Graph(Graph&&) noexcept;
  Graph& operator=(Graph&&) noexcept;
  Graph(const Graph& other);
  Graph& operator=(const Graph& other);

  // Adds the node, or merges into the existing node with the same id: type must match
  // (otherwise InvalidArgument naming the id), a non-empty name replaces the old one, and each
  // attribute replaces the value under the same key.
  absl::StatusOr<NodeIndex> UpsertNode(NodeType type, std::string_view id, std::string_view name,
                                       const Attributes& attrs = {});
  // Adds the edge unless the same (from, to, type) already exists. Both ends must exist.
  void AddEdge(NodeIndex from, NodeIndex to, EdgeType type);
  // Sets (or replaces) one attribute.
  void SetAttribute(NodeIndex node, std::string_view key, std::string_view value);
  // Removes the node and every edge touching it. Indices of other nodes stay valid; the freed
  // slot is reused by later inserts. Returns false when the node did not exist.
  bool RemoveNode(NodeIndex node);
  // Removes every edge from `node` (used when re-describing a node from fresh data).
  void ClearOutEdges(NodeIndex node);
  // Removes the edge (from, to, type). Returns false when it did not exist. O(degree).
  bool RemoveEdge(NodeIndex from, NodeIndex to, EdgeType type);

  // Copies every node and edge of `other` into this graph, merging by id.
  absl::Status Merge(const Graph& other);

  std::optional<NodeIndex> Find(std::string_view id) const;
  // Every live node of one type, in insertion order (for iteration and selection).
  std::span<const NodeIndex> NodesOfType(NodeType type) const;
  // Every live node whose name is exactly `name`.
  std::vector<NodeIndex> FindByName(std::string_view name) const;
  // Every live node of `type` whose name starts with `prefix`, in NodesOfType order. Served from
  // a per-type name-sorted index, built on the first call after a mutation (O(n log n) once;
  // later calls cost O(log n + matches)); safe under concurrent const access.
  std::vector<NodeIndex> FindByNamePrefix(NodeType type, std::string_view prefix) const;
  // Every live node index; useful for full scans.
  std::vector<NodeIndex> AllNodes() const;

  bool IsLive(NodeIndex node) const;
  NodeType Type(NodeIndex node) const;
  std::string_view Id(NodeIndex node) const;
  std::string_view Name(NodeIndex node) const;
  // The attribute's value, or nullopt when the node lacks it.
  std::optional<std::string_view> Attr(NodeIndex node, std::string_view key) const;
  // All attributes in insertion order.
  std::vector<std::pair<std::string_view, std::string_view>> Attrs(NodeIndex node) const;
  std::span<const EdgeRef> OutEdges(NodeIndex node) const;  // downward: what node rests on
  std::span<const EdgeRef> InEdges(NodeIndex node) const;   // upward: what rests on node
  // A hint that `node` will be read soon (traversals call it as they discover nodes). No effect
  // on the graph's contents; any index is accepted.
  void Prefetch(NodeIndex node) const;

  size_t node_count() const;  // live nodes
  size_t edge_count() const;
  // Approximate heap bytes held, for benchmarks and /metrics.
  size_t MemoryBytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Removes `root` and then, transitively, every node below it (along out-edges) that no longer
// has any in-edge: what only `root` held up. Used to replace one VM's part of a host graph (the
// VM, its disks and files) while shared nodes (a file system, a storage volume) stay. Nodes with
// no in-edges to begin with (roots such as the host) are removed only when reached from `root`.
// Returns how many nodes were removed (0 when `root` is not live).
size_t RemoveWithOrphans(Graph& graph, NodeIndex root);

}  // namespace strata::core
