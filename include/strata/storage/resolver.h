// The storage resolver (the reference design's "storage system interface"): maps a disk source
// to the chain of things it physically rests on, and adds that chain to a resource graph:
//
//   file -> mount_point -> fs_volume -> block_device (-> parent/slave/loop file ...)
//        -> lun -> storage_volume -> storage_system
//   file -> storage_volume (claimed by a storage plug-in, e.g. dir) -> fs_volume
//
// Block and pass-through disks enter at the block_device step; network disks (rbd, iscsi, nbd,
// nfs, gluster, http...) map directly to storage_volume/storage_system (and lun for iscsi).
//
// Everything the resolver reads comes through SystemView, so tests run against trees recorded
// from real machines (tests/data/systems/*). A missing file, an unreadable path or an unknown
// device yields a node with attrs resolved=false and reason=<whole message>; never a crash,
// never a silent drop.
//
// Threading: a StorageResolver is used by one thread at a time; it caches what it reads
// (mountinfo, sysfs) until Refresh().
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "strata/core/graph.h"
#include "strata/hypervisor/domain.h"
#include "strata/plugin/storage.h"

namespace strata::storage {

// What a file system's superblock says (libblkid on a live system, recorded output in tests).
struct FsProbe {
  std::string uuid;  // the 'volume GUID'
  std::string type;  // ext4, xfs, btrfs
  std::string label;
};

// Where the resolver reads the system from. Defaults read the live machine.
struct SystemView {
  std::string proc_root = "/proc";  // reads <proc_root>/self/mountinfo
  std::string sys_root = "/sys";    // reads <sys_root>/class/block, /dev/block/M:m, ...
  std::string dev_root = "/dev";    // symlinks such as /dev/disk/by-path/... are resolved in it
  // Prefix under which absolute file paths are looked up (stat, realpath); "" = live system.
  std::string fs_root;
  // Probes a block device node ("/dev/loop0") for its file system; default uses libblkid.
  std::function<absl::StatusOr<FsProbe>(const std::string& device)> probe_fs;
  // Optional, for recorded trees whose /dev holds no device nodes: a text file of
  // "<device path> <major>:<minor>" lines ('#' starts a comment), consulted when a path under
  // dev_root is not a block device node. Without an entry, the basename of the (symlink-resolved)
  // path is looked up as a kernel name in <sys_root>/class/block.
  std::string dev_numbers;
};

struct ResolverOptions {
  std::string host_id;  // identity of the host doing the resolving (for host-local nodes)
  SystemView system;
  // Storage plug-ins asked about every resolved file (ClaimFile), in this order. Not owned: they
  // must outlive the resolver, and are used only from the resolver's thread.
  std::vector<plugin::StoragePlugin*> storage_plugins;
};

class StorageResolver {
 public:
  explicit StorageResolver(ResolverOptions options);
  ~StorageResolver();

  // Re-reads mountinfo and sysfs on the next call.
  void Refresh();

  // Each adds the chain below one image to `graph` and returns the index of the top node of
  // that chain (file, block_device, or storage_volume for network sources). Never fails for
  // a missing or unknown thing (that is an unresolved node); fails only on graph invariants.
  // ResolveNetwork returns the storage_volume, except for iscsi (the lun above it) and nfs (the
  // file node, with the same id as the file seen through an NFS mount of that export).
  absl::StatusOr<core::NodeIndex> ResolveFile(core::Graph& graph, const std::string& path);
  absl::StatusOr<core::NodeIndex> ResolveBlockDevice(core::Graph& graph, const std::string& path);
  absl::StatusOr<core::NodeIndex> ResolveNetwork(core::Graph& graph,
                                                 const hypervisor::DiskSource& source);
  // Dispatches on source.kind (kFile, kDir, kBlock, kNetwork, kVolume with a path).
  absl::StatusOr<core::NodeIndex> ResolveSource(core::Graph& graph,
                                                const hypervisor::DiskSource& source);

  // Where `path` is: its file system's node id, its path inside that file system and the mount
  // (what storage plug-ins get). nullopt when it does not exist or is on no known mount.
  // Cached until Refresh().
  std::optional<plugin::FileLocation> Locate(const std::string& path);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Default fs probe through libblkid (reads the superblock of `device`).
absl::StatusOr<FsProbe> ProbeWithBlkid(const std::string& device);

// --- Recorded systems (tests, replaying a host's state) ---

using FsProbeFn = std::function<absl::StatusOr<FsProbe>(const std::string& device)>;

// A probe answering from recorded `blkid -p -o export <dev>...` output: blocks of KEY=value lines
// separated by blank lines, each with DEVNAME. A block may carry ERROR=<text> for a device that
// could not be probed (the probe then fails with that text). Devices match by basename
// ("/anything/loop0" matches DEVNAME=/dev/loop0); an unknown device is NotFound. With `dev_root`,
// a DEVNAME under /dev is first resolved through the symlinks recorded there
// (DEVNAME=/dev/mapper/mpatha with dev/mapper/mpatha -> ../dm-0 matches "dm-0").
absl::StatusOr<FsProbeFn> LoadRecordedProbe(const std::string& blkid_export_file,
                                            const std::string& dev_root = "");

// The SystemView of a recorded tree (tests/data/systems/<name>): proc_root=<dir>/proc,
// sys_root=<dir>/sys, dev_root=<dir>/dev, fs_root=<dir>/root, dev_numbers=<dir>/devnums (when
// present), probe_fs from <dir>/blkid.export (when present; otherwise every probe fails).
absl::StatusOr<SystemView> RecordedSystemView(const std::string& dir);

}  // namespace strata::storage
