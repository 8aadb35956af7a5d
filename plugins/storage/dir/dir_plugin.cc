#include "dir_plugin.h"

#include <fcntl.h>
#include <unistd.h>

#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <map>
#include <set>
#include <string_view>
#include <system_error>
#include <utility>

#include "strata/storage/file_copy.h"
#include "strata/util/strings.h"
#include "volume_paths.h"

namespace strata::plugins::dir {
namespace {

absl::Status SyncFileSystem(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return volume_paths::ErrnoError(errno, "cannot open '" + dir + "' to sync it");
  const int rc = ::syncfs(fd);
  const int saved = errno;
  ::close(fd);
  if (rc != 0)
    return volume_paths::ErrnoError(saved, "cannot sync the file system of '" + dir + "'");
  return absl::OkStatus();
}

using util::Cat;
using volume_paths::IsPathPrefix;

class DirPlugin final : public plugin::StoragePlugin {
 public:
  explicit DirPlugin(plugin::StoragePluginConfig config) : config_(std::move(config)) {}

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
      claims.push_back(known_.Claim(volume, *root));
    }
    return claims;
  }

  std::vector<plugin::VolumeClaim> Volumes(plugin::PathLocator& locator) override {
    std::vector<plugin::VolumeClaim> claims;
    for (const plugin::StorageVolumeConfig& volume : config_.volumes) {
      if (std::optional<plugin::FileLocation> root = locator.Locate(volume.path)) {
        claims.push_back(known_.Claim(volume, *root));
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
    const std::string what = Cat("dir volume '", (*volume)->name, "'");
    if (request.files.empty()) {
      return absl::InvalidArgumentError(Cat("snapshot '", request.name, "' of ", what,
                                            " names no files (a dir snapshot holds only the "
                                            "files it is given)"));
    }
    // Resolve every file before creating anything: a bad request leaves no trace.
    std::vector<volume_paths::FileInVolume> files;
    for (const std::string& file : request.files) {
      absl::StatusOr<volume_paths::FileInVolume> resolved =
          volume_paths::ResolveFileInVolume(file, (*volume)->root);
      if (!resolved.ok()) {
        return absl::Status(resolved.status().code(),
                            Cat("cannot snapshot ", what, " as '", request.name,
                                "': ", resolved.status().message()));
      }
      files.push_back(*std::move(resolved));
    }
    if (request.append) return Append(request, **volume, files);
    absl::StatusOr<std::string> snapshots = volume_paths::EnsureSnapshotDir((*volume)->root, what);
    if (!snapshots.ok()) return snapshots.status();
    const std::string path = Cat(*snapshots, "/", request.name);
    if (::mkdir(path.c_str(), 0755) != 0) {
      if (errno == EEXIST) {
        return absl::AlreadyExistsError(
            Cat("snapshot '", request.name, "' of ", what, " already exists ('", path, "')"));
      }
      return volume_paths::ErrnoError(errno, Cat("cannot create snapshot directory '", path, "'"));
    }
    std::vector<std::string> made;
    absl::StatusOr<plugin::SnapshotInfo> info =
        FillSnapshot(request, files, path, *snapshots, made);
    if (!info.ok()) {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);  // all or nothing
      return absl::Status(info.status().code(), Cat("cannot snapshot ", what, " as '", request.name,
                                                    "': ", info.status().message()));
    }
    return info;
  }

  bool CanAppendToSnapshot() const override { return true; }

  absl::Status DeleteSnapshot(const std::string& volume_id,
                              const std::string& snapshot_id) override {
    if (absl::Status status = volume_paths::ValidateSnapshotName(snapshot_id); !status.ok()) {
      return status;
    }
    absl::StatusOr<const Known*> volume = known_.Find(volume_id);
    if (!volume.ok()) return volume.status();
    absl::StatusOr<std::string> found =
        volume_paths::ExistingSnapshot((*volume)->root, "dir", (*volume)->name, snapshot_id);
    if (!found.ok()) return found.status();
    const std::string& path = *found;
    // remove_all removes symlinks themselves and never follows them out of the tree.
    std::error_code error;
    std::filesystem::remove_all(path, error);
    if (error) {
      return absl::Status(absl::ErrnoToStatusCode(error.value()),
                          Cat("cannot delete snapshot '", path, "': ", error.message()));
    }
    return volume_paths::SyncDirectory(volume_paths::SnapshotDir((*volume)->root));
  }

  absl::StatusOr<std::vector<std::string>> ListSnapshots(const std::string& volume_id) override {
    absl::StatusOr<const Known*> volume = known_.Find(volume_id);
    if (!volume.ok()) return volume.status();
    return volume_paths::ListSnapshotDirs((*volume)->root);
  }

 private:
  using Known = volume_paths::KnownVolumes::Volume;

  // SnapshotRequest::append: clones `files` into the existing snapshot; on failure removes what
  // this call made (files, then the directories it created, deepest first).
  absl::StatusOr<plugin::SnapshotInfo> Append(
      const plugin::SnapshotRequest& request, const Known& volume,
      const std::vector<volume_paths::FileInVolume>& files) {
    const std::string what = Cat("dir volume '", volume.name, "'");
    const std::string prefix =
        Cat("cannot add ", files.size(), " files to snapshot '", request.name, "' of ", what, ": ");
    absl::StatusOr<std::string> found =
        volume_paths::ExistingSnapshot(volume.root, "dir", volume.name, request.name);
    if (!found.ok()) {
      return absl::Status(found.status().code(), Cat(prefix, found.status().message()));
    }
    const std::string& path = *found;
    for (const volume_paths::FileInVolume& file : files) {
      const std::string target = Cat(path, "/", file.relative);
      struct stat st;
      if (::lstat(target.c_str(), &st) == 0) {
        return absl::AlreadyExistsError(
            Cat(prefix, "'", file.relative, "' is already in it ('", target, "')"));
      }
    }
    std::vector<std::string> made;
    absl::StatusOr<plugin::SnapshotInfo> info =
        FillSnapshot(request, files, path, volume_paths::SnapshotDir(volume.root), made);
    if (!info.ok()) {
      for (auto it = made.rbegin(); it != made.rend(); ++it) {
        std::error_code ignored;
        std::filesystem::remove(*it, ignored);  // a file, or a directory this call created
      }
      (void)volume_paths::SyncDirectory(path);
      return absl::Status(info.status().code(), Cat(prefix, info.status().message()));
    }
    return info;
  }

  // Clones every file into `path` and syncs what it made. `made`: every file and directory it
  // created, in order (parents before their entries).
  static absl::StatusOr<plugin::SnapshotInfo> FillSnapshot(
      const plugin::SnapshotRequest& request, const std::vector<volume_paths::FileInVolume>& files,
      const std::string& path, const std::string& snapshots, std::vector<std::string>& made) {
    plugin::SnapshotInfo info;
    info.snapshot_id = request.name;
    info.path = path;
    std::map<std::string, storage::CopyResult> done;  // by relative path: a file twice is one copy
    std::set<std::string> directories = {path};
    for (size_t i = 0; i < files.size(); ++i) {
      const volume_paths::FileInVolume& file = files[i];
      auto it = done.find(file.relative);
      if (it == done.end()) {
        const std::filesystem::path target = std::filesystem::path(path) / file.relative;
        std::vector<std::string> missing;  // deepest first
        for (std::filesystem::path dir = target.parent_path(); dir.string() != path;
             dir = dir.parent_path()) {
          std::error_code exists_error;
          if (std::filesystem::exists(dir, exists_error)) break;
          missing.push_back(dir.string());
        }
        std::error_code error;
        std::filesystem::create_directories(target.parent_path(), error);
        made.insert(made.end(), missing.rbegin(), missing.rend());
        if (error) {
          return absl::Status(absl::ErrnoToStatusCode(error.value()),
                              Cat("cannot create directory '", target.parent_path().string(),
                                  "': ", error.message()));
        }
        for (std::filesystem::path dir = target.parent_path(); dir.string() != path;
             dir = dir.parent_path()) {
          directories.insert(dir.string());
        }
        // One syncfs below instead of an fsync per copy.
        storage::CopyOptions copy_options;
        copy_options.sync = false;
        made.push_back(target.string());  // removing a file never made is harmless
        absl::StatusOr<storage::CopyResult> copied =
            storage::CloneOrCopyFile(file.real_path, target.string(), copy_options);
        if (!copied.ok()) return copied.status();
        it = done.emplace(file.relative, *std::move(copied)).first;
      }
      info.files.push_back(plugin::SnapshotFile{request.files[i], file.relative,
                                                it->second.size_bytes, it->second.method});
    }
    std::set<std::string> methods;
    for (const auto& [relative, copied] : done) methods.insert(copied.method);
    info.method = methods.size() == 1 ? *methods.begin() : "mixed";
    // The copies' data and metadata in one flush of the file system.
    if (absl::Status status = SyncFileSystem(path); !status.ok()) return status;
    // Deepest first, so each directory's entry is durable before its parent's.
    for (auto dir = directories.rbegin(); dir != directories.rend(); ++dir) {
      if (absl::Status status = volume_paths::SyncDirectory(*dir); !status.ok()) return status;
    }
    if (absl::Status status = volume_paths::SyncDirectory(snapshots); !status.ok()) return status;
    return info;
  }

  plugin::StoragePluginConfig config_;
  volume_paths::KnownVolumes known_{"dir"};
};

}  // namespace

std::unique_ptr<plugin::StoragePlugin> MakeDirPlugin(plugin::StoragePluginConfig config) {
  return std::make_unique<DirPlugin>(std::move(config));
}

}  // namespace strata::plugins::dir
