#include "volume_paths.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "strata/plugin/storage.h"
#include "strata/util/strings.h"

namespace strata::plugins::volume_paths {

using util::Cat;

// Manifests sit beside the snapshots (strata/backup/manifest.h); a snapshot never takes that name.
constexpr std::string_view kManifestSuffix = ".manifest.json";

bool IsPathPrefix(std::string_view prefix, std::string_view path) {
  if (prefix == "/" || prefix == path) return true;
  return path.size() > prefix.size() && path.starts_with(prefix) && path[prefix.size()] == '/';
}

std::string StripFs(const std::string& fs_id) {
  return fs_id.starts_with("fs:") ? fs_id.substr(3) : fs_id;
}

absl::Status ErrnoError(int error, const std::string& message) {
  return absl::Status(absl::ErrnoToStatusCode(error), Cat(message, ": ", std::strerror(error)));
}

absl::Status ValidateSnapshotName(std::string_view name) {
  auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(Cat("invalid snapshot name '", name, "': ", why));
  };
  if (name.empty()) return invalid("it is empty");
  if (name.size() > 128) return invalid("it is longer than 128 characters");
  if (name.front() == '.' || name.front() == '-') return invalid("it starts with '.' or '-'");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return invalid("only letters, digits, '.', '_' and '-' are allowed");
  }
  if (name.ends_with(kManifestSuffix))
    return invalid("names ending in '.manifest.json' are manifests");
  return absl::OkStatus();
}

std::string SnapshotDir(const std::string& root) {
  return root == "/" ? Cat("/", plugin::kSnapshotDirName)
                     : Cat(root, "/", plugin::kSnapshotDirName);
}

absl::StatusOr<FileInVolume> ResolveFileInVolume(const std::string& file, const std::string& root) {
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  std::unique_ptr<char, Free> real(::realpath(file.c_str(), nullptr));
  if (real == nullptr) return ErrnoError(errno, Cat("cannot resolve file '", file, "'"));
  FileInVolume out;
  out.real_path = real.get();
  const std::string resolved =
      out.real_path == file ? std::string() : Cat(" (resolved to '", out.real_path, "')");
  if (out.real_path == root || !IsPathPrefix(root, out.real_path)) {
    return absl::InvalidArgumentError(
        Cat("file '", file, "'", resolved, " is not inside the volume's root '", root, "'"));
  }
  out.relative = out.real_path.substr(root == "/" ? 1 : root.size() + 1);
  if (IsPathPrefix(plugin::kSnapshotDirName, out.relative)) {
    return absl::InvalidArgumentError(
        Cat("file '", file, "'", resolved, " is inside the volume's snapshot directory"));
  }
  return out;
}

absl::StatusOr<std::string> EnsureSnapshotDir(const std::string& root, const std::string& volume) {
  const std::string dir = SnapshotDir(root);
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoError(errno, Cat("cannot create the snapshot directory '", dir, "' of ", volume));
  }
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) {
    return ErrnoError(errno, Cat("cannot stat the snapshot directory '", dir, "' of ", volume));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(Cat("the snapshot directory '", dir, "' of ", volume,
                                             " is not a directory (or a symlink)"));
  }
  return dir;
}

absl::StatusOr<std::vector<std::string>> ListSnapshotDirs(const std::string& root) {
  const std::string dir = SnapshotDir(root);
  std::vector<std::string> names;
  struct CloseDir {
    void operator()(DIR* d) const { ::closedir(d); }
  };
  std::unique_ptr<DIR, CloseDir> stream(::opendir(dir.c_str()));
  if (stream == nullptr) {
    if (errno == ENOENT) return names;
    return ErrnoError(errno, Cat("cannot list the snapshot directory '", dir, "'"));
  }
  while (const dirent* entry = ::readdir(stream.get())) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    // lstat: a symlink is never a snapshot; manifests and other files are not either.
    if (::fstatat(::dirfd(stream.get()), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode) && !name.ends_with(kManifestSuffix)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

absl::Status SyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, Cat("cannot open directory '", dir, "' to sync it"));
  const int result = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (result != 0) return ErrnoError(error, Cat("cannot sync directory '", dir, "'"));
  return absl::OkStatus();
}

absl::StatusOr<std::string> ExistingSnapshot(const std::string& root, std::string_view kind,
                                             const std::string& volume_name,
                                             const std::string& snapshot_id) {
  if (absl::Status status = ValidateSnapshotName(snapshot_id); !status.ok()) return status;
  const std::string snapshots = SnapshotDir(root);
  const std::string path = util::Cat(snapshots, "/", snapshot_id);
  struct stat st;
  if (::lstat(snapshots.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        util::Cat("'", snapshots, "' is not a directory (or a symlink); not deleting in it"));
  }
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(util::Cat("snapshot '", snapshot_id, "' of ", std::string(kind),
                                           " volume '", volume_name, "' not found ('", path, "')"));
    }
    return ErrnoError(errno, util::Cat("cannot stat snapshot '", path, "'"));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        util::Cat("snapshot '", path, "' is not a directory (or a symlink); not deleting it"));
  }
  return path;
}

plugin::VolumeClaim KnownVolumes::Claim(const plugin::StorageVolumeConfig& volume,
                                        const plugin::FileLocation& root) {
  plugin::VolumeClaim claim;
  claim.volume_id = "sv:" + kind_ + ":" + StripFs(root.fs_id) + ":" + root.path_in_fs;
  claim.volume_name = volume.name;
  claim.root = root.path;
  claim.attrs = {{"kind", kind_}, {"path", volume.path}};
  by_id_[claim.volume_id] = Volume{volume.name, root.path};
  return claim;
}

absl::StatusOr<const KnownVolumes::Volume*> KnownVolumes::Find(const std::string& volume_id) const {
  auto it = by_id_.find(volume_id);
  if (it == by_id_.end()) {
    return absl::NotFoundError("no " + kind_ + " volume has the id '" + volume_id +
                               "' (a volume is known once discovery has reported it)");
  }
  return &it->second;
}

}  // namespace strata::plugins::volume_paths
