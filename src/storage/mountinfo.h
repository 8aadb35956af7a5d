// /proc/<pid>/mountinfo: parsing and "which mount holds this path" (internal to strata_storage).
//
// Line format (proc(5)):
//   36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//   (1)(2)(3)   (4)   (5)         (6)       (7)      (8)(9)  (10)      (11)
// Fields 4, 5, 10 and 11 escape space, tab, newline and backslash as octal (\040 \011 \012 \134);
// other bytes (UTF-8 names) are verbatim.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace strata::storage {

struct MountEntry {
  int id = 0;
  int parent_id = 0;
  uint32_t major = 0;
  uint32_t minor = 0;
  std::string root;         // path inside the file system that is mounted here ("/" unless bind)
  std::string mount_point;  // absolute, unescaped
  std::string options;      // per-mount options
  std::vector<std::string> optional_fields;  // shared:N, master:N, ...
  std::string fstype;
  std::string source;  // unescaped; "none" when the kernel had nothing
  std::string super_options;

  std::string DevNum() const;  // "major:minor"
};

// Undoes the kernel's octal escaping (\NNN). A backslash not followed by three octal digits is
// kept as is.
std::string UnescapeMountField(std::string_view field);

// Parses a whole mountinfo text. Fails on a malformed line with
// "mountinfo line N: <what>: '<line>'".
absl::StatusOr<std::vector<MountEntry>> ParseMountInfo(std::string_view text);

// True when `prefix` is `path` or a parent directory of it, on component boundaries
// ("/srv" is a prefix of "/srv/a" but not of "/srv2"). Both must be normalised absolute paths.
bool IsPathPrefix(std::string_view prefix, std::string_view path);

// Joins a mount's root with the path below its mount point: ("/", "/a") -> "/a",
// ("/exports/x", "/a") -> "/exports/x/a", ("/exports/x", "") -> "/exports/x".
std::string JoinFsPath(std::string_view root, std::string_view relative);

class MountTable {
 public:
  MountTable() = default;
  explicit MountTable(std::vector<MountEntry> entries);

  // The mount that a normalised absolute path (symlinks already resolved) is on, or nullptr
  // when no mount covers it. Follows the mount tree from the root mount: a mount stacked on top
  // of another one at the same mount point hides it and everything mounted below it; among
  // unrelated mounts on the same mount point the later line wins.
  const MountEntry* FindMount(std::string_view path) const;

  // The path of `path` relative to the root of the file system mounted at `entry`
  // (mount root + the part below the mount point).
  static std::string PathInFs(const MountEntry& entry, std::string_view path);

  const std::vector<MountEntry>& entries() const { return entries_; }

 private:
  std::vector<MountEntry> entries_;
};

}  // namespace strata::storage
