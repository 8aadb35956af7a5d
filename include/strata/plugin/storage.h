// Storage plug-ins: the storage backends that hold VM disk images (dir, btrfs, later Ceph RBD).
//
// In discovery, the storage resolver asks each storage plug-in whether a file belongs to one of
// its volumes (ClaimFile); the plug-in answers with the storage_volume(s) the file lives in. The
// resolver adds that node and the edges file -in_volume-> storage_volume -on_device-> fs_volume
// (the file's file system). A plug-in that lacks snapshots answers Unimplemented (the defaults
// below) and does not list the "snapshot" capability.
//
// Ownership: the agent owns each StoragePlugin (made by the plug-in's factory) and passes
// non-owning pointers to the resolver; the shared object stays loaded while it lives.
// Threading: one instance is used by one agent thread at a time (the agent serialises
// discoveries); a PathLocator is valid only during the call it is passed to.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace strata::plugin {

struct StorageVolumeConfig {
  std::string name;  // the operator's name, e.g. "gold"
  std::string path;  // absolute directory on this host
};

struct StoragePluginConfig {
  std::string host_id;
  std::vector<StorageVolumeConfig> volumes;
};

// A storage volume as the plug-in describes it. Ids follow docs/architecture.md.
struct VolumeClaim {
  std::string volume_id;    // e.g. "sv:dir:<fs uuid>:<root in fs>"
  std::string volume_name;  // the operator's name
  std::string root;         // absolute path of the volume's root on this host
  std::vector<std::pair<std::string, std::string>> attrs;  // node attributes, e.g. kind=dir
};

// Where a path is, as the resolver sees it (after symlinks and bind mounts).
struct FileLocation {
  std::string path;         // absolute, symlinks resolved
  std::string fs_id;        // the fs_volume node id ("fs:<uuid>")
  std::string path_in_fs;   // path relative to the file system's root ("/dir/x.qcow2")
  std::string mount_point;  // where that file system is mounted
};

// Lets a plug-in ask the resolver where another path is (same /proc, /sys and file-system roots
// as the file being claimed, so recorded trees work). nullopt: the path does not exist or is on
// no known mount.
class PathLocator {
 public:
  virtual ~PathLocator() = default;
  virtual std::optional<FileLocation> Locate(const std::string& path) = 0;
};

// Storage snapshots. Every snapshot of a volume lives under `<volume root>/.strata-snapshots/`
// (like a filer's `.snapshot`): `<name>/` holds the data (a directory of clones for `dir`, a
// read-only subvolume for `btrfs`), `<name>.manifest.json` beside it the backup's manifest
// (written by the agent, see strata/backup/manifest.h). Discovery ignores that directory.
inline constexpr char kSnapshotDirName[] = ".strata-snapshots";

struct SnapshotRequest {
  std::string volume_id;  // as returned by ClaimFile/Volumes
  std::string name;  // [A-Za-z0-9._-], 1..128 chars, not starting with '.'; else InvalidArgument
  // Absolute paths of the files the snapshot must hold (the VM disks on this volume). A plug-in
  // that snapshots the whole volume (btrfs) holds them anyway; `dir` clones just these.
  std::vector<std::string> files;
  // Add `files` to the existing snapshot `name` (made earlier by the same backup) instead of
  // making a new one, so that a backup can take one snapshot per volume while it brings VMs
  // through one at a time. All or nothing per call: on failure the files this call added are
  // removed, those of earlier calls stay. NotFound when there is no such snapshot; AlreadyExists
  // when one of `files` is already in it (nothing is added). The returned SnapshotInfo lists
  // only this call's files (its `method` is theirs). Only plug-ins whose
  // CanAppendToSnapshot() is true accept it; the others answer FailedPrecondition (btrfs: a
  // snapshot is one instant of the whole subvolume) or Unimplemented.
  bool append = false;
};

struct SnapshotFile {
  std::string source_path;       // as requested
  std::string path_in_snapshot;  // relative to SnapshotInfo::path, e.g. "images/web01.qcow2"
  uint64_t size_bytes = 0;       // apparent size
  std::string method;            // "reflink", "copy" (sparse-aware), "subvolume"
};

struct SnapshotInfo {
  std::string snapshot_id;  // unique within the volume: the request's name
  std::string path;         // absolute: where the snapshot's data can be read on this host
  std::string method;       // "reflink", "copy", "mixed", "subvolume"
  std::vector<SnapshotFile> files;
};

class StoragePlugin {
 public:
  virtual ~StoragePlugin() = default;
  virtual std::string Name() const = 0;
  // Every volume of this plug-in that holds `file` (nested volumes both hold it); empty when
  // none does.
  virtual std::vector<VolumeClaim> ClaimFile(const FileLocation& file, PathLocator& locator) = 0;
  // Every configured volume that exists, whether or not a VM uses it.
  virtual std::vector<VolumeClaim> Volumes(PathLocator& locator) = 0;

  // Optional operations ("snapshot" capability). Default: Unimplemented naming the plug-in.
  // CreateSnapshot is all or nothing: on failure nothing of the snapshot is left behind.
  // AlreadyExists when a snapshot of that name exists; InvalidArgument for a bad name or a file
  // outside the volume; NotFound for an unknown volume.
  virtual absl::StatusOr<SnapshotInfo> CreateSnapshot(const SnapshotRequest& request) {
    (void)request;
    return Unimplemented("snapshots");
  }
  // Removes the snapshot's data (not its manifest: the agent owns that). NotFound when absent.
  virtual absl::Status DeleteSnapshot(const std::string& volume_id,
                                      const std::string& snapshot_id) {
    (void)volume_id;
    (void)snapshot_id;
    return Unimplemented("snapshots");
  }
  // Names of the snapshots present on the volume.
  virtual absl::StatusOr<std::vector<std::string>> ListSnapshots(const std::string& volume_id) {
    (void)volume_id;
    return Unimplemented("snapshots");
  }
  // Whether CreateSnapshot accepts SnapshotRequest::append (a snapshot that is a set of copies,
  // filled in several calls). Default: no.
  virtual bool CanAppendToSnapshot() const { return false; }

 protected:
  // "storage plug-in 'dir' does not support snapshots"
  absl::Status Unimplemented(const std::string& what) const {
    return absl::UnimplementedError("storage plug-in '" + Name() + "' does not support " + what);
  }
};

}  // namespace strata::plugin
