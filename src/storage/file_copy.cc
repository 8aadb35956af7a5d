#include "strata/storage/file_copy.h"

#include <fcntl.h>
#include <linux/fs.h>  // FICLONE
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <system_error>
#include <utility>
#include <vector>

#include "strata/util/strings.h"

namespace strata::storage {
namespace {

using util::Cat;

// Bytes per copy_file_range/read call: large enough to be cheap, small enough for progress.
constexpr size_t kChunkBytes = 8 << 20;
// 128 KiB, as cp uses: 1 MiB and larger buffers showed writeback stalls (bench/backup_bench).
constexpr size_t kBufferBytes = 128 << 10;

absl::Status ErrnoError(int error, const std::string& message) {
  return absl::Status(absl::ErrnoToStatusCode(error), Cat(message, ": ", std::strerror(error)));
}

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  // close() may report a deferred write error, so callers that wrote check it.
  int Close() { return ::close(std::exchange(fd_, -1)); }

 private:
  int fd_;
};

int OpenRetry(const std::string& path, int flags, mode_t mode = 0) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

// FICLONE errors that only mean "not here" (another file system, no reflink support); anything
// else (ENOSPC, EIO, ...) is a real failure.
bool CloneUnsupported(int error) {
  return error == EOPNOTSUPP || error == ENOTTY || error == EXDEV || error == EINVAL ||
         error == ENOSYS || error == EPERM || error == ETXTBSY;
}

class Copier {
 public:
  Copier(const std::string& src, const std::string& dst, int in, int out, uint64_t size,
         const CopyOptions& options)
      : src_(src),
        dst_(dst),
        in_(in),
        out_(out),
        size_(size),
        options_(options),
        // copy_file_range reflinks by itself on btrfs/xfs, which allow_reflink=false forbids.
        use_copy_file_range_(options.allow_reflink) {}

  uint64_t copied() const { return copied_; }

  // Copies the data ranges of the source (SEEK_DATA/SEEK_HOLE); holes are left unwritten.
  absl::Status CopySparse() {
    uint64_t pos = 0;
    while (pos < size_) {
      off_t data = ::lseek(in_, static_cast<off_t>(pos), SEEK_DATA);
      if (data < 0) {
        if (errno == ENXIO) break;  // nothing but a hole up to the end
        if (errno == EINVAL || errno == EOPNOTSUPP) return CopyRange(pos, size_);  // no SEEK_DATA
        return ErrnoError(errno, Cat("cannot find the data of '", src_, "' to copy it to '", dst_,
                                     "' (SEEK_DATA)"));
      }
      off_t hole = ::lseek(in_, data, SEEK_HOLE);
      if (hole < 0) {
        return ErrnoError(errno, Cat("cannot find the holes of '", src_, "' to copy it to '", dst_,
                                     "' (SEEK_HOLE)"));
      }
      const uint64_t end = std::min<uint64_t>(static_cast<uint64_t>(hole), size_);
      if (static_cast<uint64_t>(data) >= end) break;
      if (absl::Status status = CopyRange(static_cast<uint64_t>(data), end); !status.ok()) {
        return status;
      }
      pos = end;
    }
    return absl::OkStatus();
  }

 private:
  absl::Status CopyRange(uint64_t offset, uint64_t end) {
    while (offset < end) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(end - offset, kChunkBytes));
      ssize_t n;
      if (use_copy_file_range_) {
        loff_t in_offset = static_cast<loff_t>(offset);
        loff_t out_offset = in_offset;
        n = ::copy_file_range(in_, &in_offset, out_, &out_offset, want, 0);
        if (n < 0 &&
            (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) {
          use_copy_file_range_ = false;  // e.g. across file systems: plain read/write from here
          continue;
        }
      } else {
        n = CopyWithBuffer(offset, want);
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError(errno, Cat("cannot copy '", src_, "' to '", dst_, "'"));
      }
      if (n == 0) {
        return absl::AbortedError(
            Cat("'", src_, "' became shorter while it was copied to '", dst_, "'"));
      }
      offset += static_cast<uint64_t>(n);
      copied_ += static_cast<uint64_t>(n);
      if (options_.progress) options_.progress(offset, size_);
    }
    return absl::OkStatus();
  }

  // One pread and the pwrites it takes; returns the bytes copied, 0 at EOF, -1 with errno.
  ssize_t CopyWithBuffer(uint64_t offset, size_t want) {
    if (buffer_.empty()) buffer_.resize(kBufferBytes);
    want = std::min(want, buffer_.size());
    ssize_t n = ::pread(in_, buffer_.data(), want, static_cast<off_t>(offset));
    if (n <= 0) return n;
    size_t written = 0;
    while (written < static_cast<size_t>(n)) {
      ssize_t w = ::pwrite(out_, buffer_.data() + written, static_cast<size_t>(n) - written,
                           static_cast<off_t>(offset + written));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return -1;
      written += static_cast<size_t>(w);
    }
    return n;
  }

  const std::string& src_;
  const std::string& dst_;
  int in_;
  int out_;
  uint64_t size_;
  const CopyOptions& options_;
  bool use_copy_file_range_;
  uint64_t copied_ = 0;
  std::vector<char> buffer_;
};

// Fills the freshly created `out` from `in`; the caller removes dst on failure.
absl::StatusOr<CopyResult> Fill(const std::string& src, const std::string& dst, int in, Fd& out,
                                const struct stat& st, const CopyOptions& options) {
  CopyResult result;
  result.size_bytes = static_cast<uint64_t>(st.st_size);
  bool cloned = false;
  if (options.allow_reflink) {
    if (::ioctl(out.get(), FICLONE, in) == 0) {
      cloned = true;
    } else if (!CloneUnsupported(errno)) {
      return ErrnoError(errno, Cat("cannot clone '", src, "' to '", dst, "' (FICLONE)"));
    }
  }
  if (cloned) {
    result.method = "reflink";
    if (options.progress) options.progress(result.size_bytes, result.size_bytes);
  } else {
    result.method = "copy";
    Copier copier(src, dst, in, out.get(), result.size_bytes, options);
    if (absl::Status status = copier.CopySparse(); !status.ok()) return status;
    result.bytes_copied = copier.copied();
    // A trailing hole is never written: the size comes from ftruncate.
    if (::ftruncate(out.get(), st.st_size) != 0) {
      return ErrnoError(errno, Cat("cannot set the size of '", dst, "'"));
    }
    if (options.progress) options.progress(result.size_bytes, result.size_bytes);
  }
  // The owner only when allowed (root); chown clears set-id bits, so the mode comes after it.
  if (::fchown(out.get(), st.st_uid, st.st_gid) != 0 && errno != EPERM) {
    return ErrnoError(errno, Cat("cannot set the owner of '", dst, "'"));
  }
  if (::fchmod(out.get(), st.st_mode & 07777) != 0) {
    return ErrnoError(errno, Cat("cannot set the mode of '", dst, "'"));
  }
  if (options.sync && ::fsync(out.get()) != 0) {
    return ErrnoError(errno, Cat("cannot sync '", dst, "'"));
  }
  if (out.Close() != 0) return ErrnoError(errno, Cat("cannot close '", dst, "'"));
  return result;
}

absl::Status SyncDirectory(const std::string& dir) {
  Fd fd(OpenRetry(dir, O_RDONLY | O_DIRECTORY));
  if (!fd.ok() || ::fsync(fd.get()) != 0) {
    return ErrnoError(errno, Cat("cannot sync directory '", dir, "'"));
  }
  return absl::OkStatus();
}

std::string RandomSuffix() {
  uint64_t value = 0;
  if (::getrandom(&value, sizeof value, 0) != static_cast<ssize_t>(sizeof value)) {
    // O_EXCL still guards against a collision; this only has to be unlikely to repeat.
    value = (static_cast<uint64_t>(::getpid()) << 32) ^ static_cast<uint64_t>(::time(nullptr));
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, value >>= 4) out[static_cast<size_t>(i)] = kHex[value & 0xf];
  return out;
}

}  // namespace

absl::StatusOr<CopyResult> CloneOrCopyFile(const std::string& src, const std::string& dst,
                                           const CopyOptions& options) {
  Fd in(OpenRetry(src, O_RDONLY));
  if (!in.ok()) {
    return ErrnoError(errno, Cat("cannot open '", src, "' to copy it to '", dst, "'"));
  }
  struct stat st;
  if (::fstat(in.get(), &st) != 0) return ErrnoError(errno, Cat("cannot stat '", src, "'"));
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        Cat("cannot copy '", src, "' to '", dst, "': it is not a regular file"));
  }
  // 0600 until the copy is complete: nobody else reads a half-made copy.
  Fd out(OpenRetry(dst, O_WRONLY | O_CREAT | O_EXCL, 0600));
  if (!out.ok()) {
    return ErrnoError(errno, Cat("cannot create '", dst, "' to copy '", src, "' into it"));
  }
  absl::StatusOr<CopyResult> result = Fill(src, dst, in.get(), out, st, options);
  if (!result.ok()) ::unlink(dst.c_str());
  return result;
}

absl::StatusOr<CopyResult> ReplaceFileAtomically(const std::string& src, const std::string& dst,
                                                 const CopyOptions& options) {
  // A symlink stays: the file it points to is what gets replaced (what its users open).
  std::string resolved = dst;
  struct stat st;
  if (::lstat(dst.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
    std::error_code error;
    resolved = std::filesystem::canonical(dst, error).string();
    if (error) {
      return absl::Status(absl::ErrnoToStatusCode(error.value()),
                          Cat("cannot replace '", dst, "' with '", src,
                              "': cannot resolve the symlink: ", error.message()));
    }
  }
  const std::filesystem::path target(resolved);
  const std::string base = target.filename().string();
  if (base.empty() || base == "." || base == "..") {
    return absl::InvalidArgumentError(
        Cat("cannot replace '", dst, "' with '", src, "': not a file name"));
  }
  const std::string dir = target.has_parent_path() ? target.parent_path().string() : ".";
  const std::string temporary = Cat(dir, "/.", base, ".strata-tmp-", RandomSuffix());
  absl::StatusOr<CopyResult> result = CloneOrCopyFile(src, temporary, options);
  if (!result.ok()) {
    return absl::Status(result.status().code(), Cat("cannot replace '", dst, "' with '", src,
                                                    "': ", result.status().message()));
  }
  if (::rename(temporary.c_str(), resolved.c_str()) != 0) {
    const int error = errno;
    ::unlink(temporary.c_str());
    return ErrnoError(error, Cat("cannot replace '", dst, "' with '", src, "': cannot rename '",
                                 temporary, "' over it"));
  }
  if (absl::Status status = SyncDirectory(dir); !status.ok()) {
    return absl::Status(status.code(), Cat("replaced '", dst, "' with '", src,
                                           "' but it may not survive a crash: ", status.message()));
  }
  return result;
}

absl::StatusOr<std::string> HashFile(const std::string& path, const ProgressCallback& progress) {
  Fd fd(OpenRetry(path, O_RDONLY));
  if (!fd.ok()) return ErrnoError(errno, Cat("cannot open '", path, "' to hash it"));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoError(errno, Cat("cannot stat '", path, "'"));
  const uint64_t total = S_ISREG(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0;
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(),
                                                                 &XXH3_freeState);
  if (state == nullptr || XXH3_128bits_reset(state.get()) != XXH_OK) {
    return absl::ResourceExhaustedError(Cat("cannot allocate a hash state to hash '", path, "'"));
  }
  std::vector<char> buffer(kBufferBytes);
  uint64_t done = 0;
  while (true) {
    ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, Cat("cannot read '", path, "' to hash it"));
    if (n == 0) break;
    XXH3_128bits_update(state.get(), buffer.data(), static_cast<size_t>(n));
    done += static_cast<uint64_t>(n);
    if (progress) progress(done, total);
  }
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(state.get()));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = kHashPrefix;
  for (unsigned char byte : canonical.digest) {
    out += kHex[byte >> 4];
    out += kHex[byte & 0xf];
  }
  return out;
}

}  // namespace strata::storage
