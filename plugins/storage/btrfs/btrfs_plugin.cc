#include "btrfs_plugin.h"

#include <btrfsutil.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include "strata/util/strings.h"
#include "volume_paths.h"

namespace strata::plugins::btrfs {
namespace {

using util::Cat;
using volume_paths::IsPathPrefix;

// libbtrfsutil's text and, when the failing system call set one, errno's:
// "<message>: Could not create snapshot: File exists". The code follows errno.
absl::Status BtrfsError(btrfs_util_error error, int saved_errno, const std::string& message) {
  const absl::StatusCode code =
      saved_errno != 0 ? absl::ErrnoToStatusCode(saved_errno) : absl::StatusCode::kInternal;
  std::string text = Cat(message, ": ", btrfs_util_strerror(error));
  if (saved_errno != 0) text += Cat(": ", std::strerror(saved_errno));
  return absl::Status(code, text);
}

// OK when `path` is a btrfs subvolume; FailedPrecondition explaining why not otherwise.
absl::Status CheckSubvolume(const std::string& path) {
  errno = 0;
  const btrfs_util_error error = btrfs_util_is_subvolume(path.c_str());
  switch (error) {
    case BTRFS_UTIL_OK:
      return absl::OkStatus();
    case BTRFS_UTIL_ERROR_NOT_BTRFS:
      return absl::FailedPreconditionError(Cat("'", path, "' is not on a btrfs file system"));
    case BTRFS_UTIL_ERROR_NOT_SUBVOLUME:
      return absl::FailedPreconditionError(
          Cat("'", path, "' is not a btrfs subvolume (make one with 'btrfs subvolume create')"));
    default:
      return BtrfsError(error, errno, Cat("cannot tell whether '", path, "' is a btrfs subvolume"));
  }
}

// The id of the subvolume holding `path`; 0 when it cannot be read (not btrfs, gone, ...).
uint64_t SubvolumeId(const std::string& path) {
  uint64_t id = 0;
  if (btrfs_util_subvolume_id(path.c_str(), &id) != BTRFS_UTIL_OK) return 0;
  return id;
}

class BtrfsPlugin final : public plugin::StoragePlugin {
 public:
  explicit BtrfsPlugin(plugin::StoragePluginConfig config) : config_(std::move(config)) {}

  std::string Name() const override { return kPluginName; }

  std::vector<plugin::VolumeClaim> ClaimFile(const plugin::FileLocation& file,
                                             plugin::PathLocator& locator) override {
    std::vector<plugin::VolumeClaim> claims;
    for (const plugin::StorageVolumeConfig& volume : config_.volumes) {
      std::optional<plugin::FileLocation> root = locator.Locate(volume.path);
      if (!root.has_value() || root->fs_id != file.fs_id ||
          !IsPathPrefix(root->path_in_fs, file.path_in_fs)) {
        continue;
      }
      // A nested subvolume's files are not in this volume's snapshots. When either id cannot be
      // read (e.g. a recorded system), the path decides alone.
      const uint64_t root_id = SubvolumeId(root->path);
      const uint64_t file_id = SubvolumeId(file.path);
      if (root_id != 0 && file_id != 0 && root_id != file_id) continue;
      claims.push_back(Claim(volume, *root));
    }
    return claims;
  }

  std::vector<plugin::VolumeClaim> Volumes(plugin::PathLocator& locator) override {
    std::vector<plugin::VolumeClaim> claims;
    for (const plugin::StorageVolumeConfig& volume : config_.volumes) {
      if (std::optional<plugin::FileLocation> root = locator.Locate(volume.path)) {
        claims.push_back(Claim(volume, *root));
      }
    }
    return claims;
  }

  absl::StatusOr<plugin::SnapshotInfo> CreateSnapshot(
      const plugin::SnapshotRequest& request) override {
    if (absl::Status status = volume_paths::ValidateSnapshotName(request.name); !status.ok()) {
      return status;
    }
    absl::StatusOr<const Known*> volume = known_.Find(request.volume_id);
    if (!volume.ok()) return volume.status();
    const std::string& root = (*volume)->root;
    const std::string what = Cat("btrfs volume '", (*volume)->name, "'");
    auto failed = [&](const absl::Status& status) {
      return absl::Status(status.code(), Cat("cannot snapshot ", what, " as '", request.name,
                                             "': ", status.message()));
    };
    if (request.append) {
      // A subvolume snapshot is one instant of the whole volume: nothing can be added later.
      return failed(absl::FailedPreconditionError(
          "a btrfs snapshot is one instant of the whole subvolume: files cannot be added to it"));
    }
    if (absl::Status status = CheckSubvolume(root); !status.ok()) return failed(status);
    const uint64_t root_id = SubvolumeId(root);
    std::vector<volume_paths::FileInVolume> files;
    for (const std::string& file : request.files) {
      absl::StatusOr<volume_paths::FileInVolume> resolved =
          volume_paths::ResolveFileInVolume(file, root);
      if (!resolved.ok()) return failed(resolved.status());
      if (SubvolumeId(resolved->real_path) != root_id) {
        return failed(absl::InvalidArgumentError(
            Cat("file '", file,
                "' is in a subvolume nested in the volume, which its snapshots do "
                "not hold")));
      }
      files.push_back(*std::move(resolved));
    }
    absl::StatusOr<std::string> snapshots = volume_paths::EnsureSnapshotDir(root, what);
    if (!snapshots.ok()) return snapshots.status();
    const std::string path = Cat(*snapshots, "/", request.name);
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0) {
      return absl::AlreadyExistsError(
          Cat("snapshot '", request.name, "' of ", what, " already exists ('", path, "')"));
    }
    errno = 0;
    const btrfs_util_error error = btrfs_util_create_snapshot(
        root.c_str(), path.c_str(), BTRFS_UTIL_CREATE_SNAPSHOT_READ_ONLY, nullptr, nullptr);
    if (error != BTRFS_UTIL_OK) {
      return failed(BtrfsError(error, errno, Cat("cannot create snapshot '", path, "'")));
    }

    plugin::SnapshotInfo info;
    info.snapshot_id = request.name;
    info.path = path;
    info.method = kSnapshotMethod;
    for (size_t i = 0; i < files.size(); ++i) {
      const std::string copy = Cat(path, "/", files[i].relative);
      if (::stat(copy.c_str(), &st) != 0) {
        // Removed between the check and the snapshot: all or nothing.
        const absl::Status status =
            volume_paths::ErrnoError(errno, Cat("file '", copy, "' is not in the snapshot"));
        (void)btrfs_util_delete_subvolume(path.c_str(), 0);
        return failed(status);
      }
      info.files.push_back(plugin::SnapshotFile{
          request.files[i], files[i].relative, static_cast<uint64_t>(st.st_size), kSnapshotMethod});
    }
    if (absl::Status status = volume_paths::SyncDirectory(*snapshots); !status.ok()) {
      (void)btrfs_util_delete_subvolume(path.c_str(), 0);
      return failed(status);
    }
    return info;
  }

  absl::Status DeleteSnapshot(const std::string& volume_id,
                              const std::string& snapshot_id) override {
    if (absl::Status status = volume_paths::ValidateSnapshotName(snapshot_id); !status.ok()) {
      return status;
    }
    absl::StatusOr<const Known*> volume = known_.Find(volume_id);
    if (!volume.ok()) return volume.status();
    absl::StatusOr<std::string> found =
        volume_paths::ExistingSnapshot((*volume)->root, "btrfs", (*volume)->name, snapshot_id);
    if (!found.ok()) return found.status();
    const std::string& path = *found;
    if (absl::Status status = CheckSubvolume(path); !status.ok()) {
      return absl::Status(status.code(),
                          Cat("not deleting snapshot '", snapshot_id, "': ", status.message()));
    }
    // As root (CAP_SYS_ADMIN), a read-only snapshot is deleted as it is: the read-only flag
    // only guards its content.
    errno = 0;
    const btrfs_util_error error = btrfs_util_delete_subvolume(path.c_str(), 0);
    if (error != BTRFS_UTIL_OK) {
      return BtrfsError(error, errno, Cat("cannot delete snapshot '", path, "'"));
    }
    return volume_paths::SyncDirectory(volume_paths::SnapshotDir((*volume)->root));
  }

  absl::StatusOr<std::vector<std::string>> ListSnapshots(const std::string& volume_id) override {
    absl::StatusOr<const Known*> volume = known_.Find(volume_id);
    if (!volume.ok()) return volume.status();
    absl::StatusOr<std::vector<std::string>> names =
        volume_paths::ListSnapshotDirs((*volume)->root);
    if (!names.ok()) return names.status();
    std::vector<std::string> snapshots;
    const std::string dir = volume_paths::SnapshotDir((*volume)->root);
    for (std::string& name : *names) {
      // A plain directory there is not a snapshot of this plug-in.
      if (btrfs_util_is_subvolume(Cat(dir, "/", name).c_str()) == BTRFS_UTIL_OK) {
        snapshots.push_back(std::move(name));
      }
    }
    return snapshots;
  }

 private:
  using Known = volume_paths::KnownVolumes::Volume;

  // A volume that is not a subvolume is still reported (with the reason), so that discovery
  // shows it; its snapshots fail.
  plugin::VolumeClaim Claim(const plugin::StorageVolumeConfig& volume,
                            const plugin::FileLocation& root) {
    plugin::VolumeClaim claim = known_.Claim(volume, root);
    if (absl::Status status = CheckSubvolume(root.path); !status.ok()) {
      claim.attrs.emplace_back("error", std::string(status.message()));
    }
    return claim;
  }
  plugin::StoragePluginConfig config_;
  volume_paths::KnownVolumes known_{"btrfs"};
};

}  // namespace

std::unique_ptr<plugin::StoragePlugin> MakeBtrfsPlugin(plugin::StoragePluginConfig config) {
  return std::make_unique<BtrfsPlugin>(std::move(config));
}

}  // namespace strata::plugins::btrfs
