// Path and snapshot-directory helpers shared by the directory-like storage plug-ins (dir, btrfs):
// a volume is a directory tree, and its snapshots live in `<root>/.strata-snapshots/<name>`.
// Library strata_storage_volume_paths; no state, any thread.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "strata/plugin/storage.h"

namespace strata::plugins::volume_paths {

// The volumes a directory-like plug-in has reported (ClaimFile/Volumes), by volume id: the
// snapshot calls name a volume by that id only. Not thread-safe (a plug-in is called one call at
// a time).
class KnownVolumes {
 public:
  struct Volume {
    std::string name;
    std::string root;  // canonical
  };

  explicit KnownVolumes(std::string kind) : kind_(std::move(kind)) {}

  // The claim of `volume`, rooted at `root`: id "sv:<kind>:<fs>:<path in fs>", attrs kind and
  // path. Remembered for Find.
  plugin::VolumeClaim Claim(const plugin::StorageVolumeConfig& volume,
                            const plugin::FileLocation& root);
  // NotFound "no <kind> volume has the id '...'" when the id was never claimed.
  absl::StatusOr<const Volume*> Find(const std::string& volume_id) const;

 private:
  const std::string kind_;
  std::map<std::string, Volume> by_id_;
};

// True when `prefix` is `path` or one of its parent directories ("/" holds everything).
bool IsPathPrefix(std::string_view prefix, std::string_view path);

// "fs:<uuid>" -> "<uuid>" (volume ids carry the file system's id without its type prefix).
std::string StripFs(const std::string& fs_id);

// Snapshot names: [A-Za-z0-9._-], 1..128 characters, not starting with '.' or '-' (so never "..",
// a path or a hidden file), not ending in ".manifest.json" (the manifests' names).
// InvalidArgument "invalid snapshot name 'a/b': ..." otherwise.
absl::Status ValidateSnapshotName(std::string_view name);

// A requested file, resolved inside a volume.
struct FileInVolume {
  std::string real_path;  // symlinks resolved
  std::string relative;   // path below the volume's root, e.g. "images/web01.qcow2"
};

// Resolves `file` (symlinks too) and checks that it lies below `root` (a canonical directory)
// and outside its snapshot directory. NotFound/PermissionDenied when the file cannot be resolved
// ("cannot resolve file 'F': ..."); InvalidArgument when outside
// ("file 'F' (resolved to 'X') is not inside the volume's root 'R'").
absl::StatusOr<FileInVolume> ResolveFileInVolume(const std::string& file, const std::string& root);

// `<root>/.strata-snapshots`.
std::string SnapshotDir(const std::string& root);

// Creates `<root>/.strata-snapshots` when missing (mode 0755) and returns its path. A symlink or
// a non-directory there is FailedPrecondition: snapshot data never goes elsewhere.
absl::StatusOr<std::string> EnsureSnapshotDir(const std::string& root, const std::string& volume);

// Names of the directories directly in `<root>/.strata-snapshots` (not symlinks, not manifest
// files), sorted; empty when the directory does not exist.
absl::StatusOr<std::vector<std::string>> ListSnapshotDirs(const std::string& root);

// fsync of a directory, so that the entries made in it survive a crash.
absl::Status SyncDirectory(const std::string& dir);

// The directory of an existing snapshot `snapshot_id` of the volume rooted at `root`, checked
// for deletion: the name is valid, neither the snapshot directory nor the snapshot is a symlink
// or a file. NotFound "snapshot 'S' of <kind> volume 'V' not found ('path')" when absent.
absl::StatusOr<std::string> ExistingSnapshot(const std::string& root, std::string_view kind,
                                             const std::string& volume_name,
                                             const std::string& snapshot_id);

// Status with the errno's code and text: "<message>: No such file or directory".
absl::Status ErrnoError(int error, const std::string& message);

}  // namespace strata::plugins::volume_paths
