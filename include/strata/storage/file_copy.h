// File cloning, copying and hashing for storage snapshots and restores.
//
// CloneOrCopyFile makes an independent copy of one regular file: a reflink (FICLONE: the copy
// shares the source's extents until either is written) where the file system has it (btrfs, xfs
// with reflink=1), otherwise a sparse-aware copy (only the source's data ranges are copied, so
// holes stay holes). Every call is all or nothing: on failure the destination it created is
// removed. Errors are whole messages naming the paths and the errno text, e.g.
// "cannot open 'a.img' to copy it to 'b.img': No such file or directory".
//
// Threading: the functions share no state; progress callbacks run on the calling thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace strata::storage {

// Called after each step with the logical bytes handled so far (holes count) and the total.
using ProgressCallback = std::function<void(uint64_t done, uint64_t total)>;

struct CopyOptions {
  // false: always copy data (never share extents). This also avoids copy_file_range, which the
  // kernel itself turns into a clone on file systems that can reflink.
  bool allow_reflink = true;
  ProgressCallback progress;  // optional
  // false: do not fsync the copy; the caller makes many copies and syncs the file system once
  // (syncfs) afterwards, which costs one flush instead of one per file.
  bool sync = true;
};

struct CopyResult {
  std::string method;         // "reflink" or "copy"
  uint64_t size_bytes = 0;    // apparent size of the copy (== the source's)
  uint64_t bytes_copied = 0;  // data bytes written; 0 for a reflink, holes never count
};

// Creates `dst` (which must not exist: AlreadyExists otherwise) as a copy of the regular file
// `src` with its apparent size and permission bits, and fsyncs it. Does not fsync dst's
// directory (callers that create many files sync each directory once).
[[nodiscard]] absl::StatusOr<CopyResult> CloneOrCopyFile(const std::string& src,
                                                         const std::string& dst,
                                                         const CopyOptions& options = {});

// Replaces `dst` by a copy of `src` atomically: clones/copies into a temporary
// ".<basename>.strata-tmp-<random>" beside dst, renames it over dst and fsyncs the directory.
// On failure the temporary is removed and dst is untouched (or absent, if it was). When dst is a
// symlink, the file it points to is replaced and the symlink stays.
[[nodiscard]] absl::StatusOr<CopyResult> ReplaceFileAtomically(const std::string& src,
                                                               const std::string& dst,
                                                               const CopyOptions& options = {});

// Hash of the file's logical content (holes read as zeros): "xxh3-128:<32 lowercase hex>",
// XXH3 128-bit, seed 0, in xxHash's canonical (big-endian) byte order, as `xxh128sum` prints it.
inline constexpr char kHashPrefix[] = "xxh3-128:";
[[nodiscard]] absl::StatusOr<std::string> HashFile(const std::string& path,
                                                   const ProgressCallback& progress = {});

}  // namespace strata::storage
