// The merged resource graph of stratad: every host's own graph, and one merged graph in which a
// thing seen from several hosts (an NFS export, a shared LUN, a storage system) is one node.
//
// Replacing a host's graph is incremental: the store counts, for every node and edge of the
// merged graph, how many host graphs contain it. ReplaceHost(H, g) diffs H's previous graph with
// g, drops only what H alone contributed and is gone from g, upserts the rest and adds what is
// new. Its cost is O(size of H's old and new graphs), never O(merged graph); removing a node whose
// last contributor left costs O(nodes of its type) more inside core::Graph.
//
// Attributes of a node shared by several hosts are last-writer-wins. When a node contributed by H
// alone loses an attribute key, the node is re-created so that the stale key goes too.
//
// Threading: every method is thread-safe. Writers (ReplaceHost, RemoveHost, LoadFromCatalog) take
// `mu_` exclusively; Read() holds it shared for the duration of the callback, so queries run
// concurrently with each other. `mu_` is a leaf lock: nothing else is locked or called out to
// while holding it (the callback passed to Read must not call back into the store).
#pragma once

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "strata/core/graph.h"
#include "strata/server/catalog.h"

namespace strata::server {

struct GraphStats {
  size_t nodes = 0;
  size_t edges = 0;
  size_t hosts = 0;  // hosts with a graph
  size_t memory_bytes = 0;
};

class GraphStore {
 public:
  GraphStore();
  ~GraphStore();
  GraphStore(const GraphStore&) = delete;
  GraphStore& operator=(const GraphStore&) = delete;

  // Makes `graph` the contribution of `host`. On a type conflict with another host's node
  // (InvalidArgument naming the node and the host) nothing changes.
  absl::Status ReplaceHost(const std::string& host, core::Graph graph);
  // Drops everything `host` alone contributed. False when the host had no graph.
  bool RemoveHost(const std::string& host);

  // Rebuilds from the catalog's stored host graphs. A host graph that does not parse or merge is
  // skipped; its error is returned in the list (whole messages naming the host).
  std::vector<absl::Status> LoadFromCatalog(Catalog& catalog);

  // Runs `fn(const core::Graph& merged)` under the shared lock and returns its result.
  template <class Fn>
  decltype(auto) Read(Fn&& fn) const {
    std::shared_lock lock(mu_);
    return std::forward<Fn>(fn)(merged_);
  }
  // Runs `fn(const core::Graph* host_graph)` (nullptr for a host without a graph) under the
  // shared lock.
  template <class Fn>
  decltype(auto) ReadHost(const std::string& host, Fn&& fn) const {
    std::shared_lock lock(mu_);
    auto it = hosts_.find(host);
    return std::forward<Fn>(fn)(it == hosts_.end() ? nullptr : it->second.get());
  }

  GraphStats Stats() const;
  // How many host graphs contain the node with this id (0 when absent). For tests and debugging.
  int Contributors(std::string_view node_id) const;

 private:
  struct EdgeKey {
    core::NodeIndex from;
    core::NodeIndex to;
    core::EdgeType type;
    friend bool operator==(const EdgeKey&, const EdgeKey&) = default;
    template <class H>
    friend H AbslHashValue(H h, const EdgeKey& k) {
      return H::combine(std::move(h), k.from, k.to, static_cast<uint8_t>(k.type));
    }
  };

  absl::Status ReplaceLocked(const std::string& host, std::unique_ptr<core::Graph> graph);
  void DecNode(core::NodeIndex n);
  void DecEdge(const EdgeKey& key);

  mutable std::shared_mutex mu_;
  core::Graph merged_;
  absl::flat_hash_map<std::string, std::unique_ptr<core::Graph>> hosts_;
  std::vector<uint32_t> node_refs_;  // by merged NodeIndex: how many host graphs hold the node
  absl::flat_hash_map<EdgeKey, uint32_t> edge_refs_;
};

}  // namespace strata::server
