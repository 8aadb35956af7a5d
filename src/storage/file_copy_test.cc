// CloneOrCopyFile, ReplaceFileAtomically and HashFile on the test machine's temporary directory,
// and (as root) on a tiny tmpfs that runs out of space half-way through a copy. Reflink on real
// btrfs/xfs is tested with the dir plug-in (plugins/storage/dir/dir_plugin_loop_test.cc).
#include "strata/storage/file_copy.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace strata::storage {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;

constexpr uint64_t kMiB = 1 << 20;

void WriteAt(const std::string& path, uint64_t offset, const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  ASSERT_EQ(::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset)),
            static_cast<ssize_t>(data.size()));
  ASSERT_EQ(::close(fd), 0);
}

void SetSize(const std::string& path, uint64_t size) {
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(size)), 0) << std::strerror(errno);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(gen());
  return out;
}

struct stat Stat(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st;
}

// Names in `dir`, sorted.
std::vector<std::string> Listing(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

class FileCopyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/strata-copy-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  // 64 MiB apparent, 2 MiB + 4 KiB of data: [0, 1 MiB), [32, 33) MiB and the last 4 KiB.
  std::string MakeSparseFile(const std::string& name) {
    const std::string path = Path(name);
    WriteAt(path, 0, RandomBytes(kMiB, 1));
    WriteAt(path, 32 * kMiB, RandomBytes(kMiB, 2));
    WriteAt(path, 64 * kMiB - 4096, RandomBytes(4096, 3));
    return path;
  }

  std::string dir_;
};

TEST_F(FileCopyTest, ForcedCopyOfASparseFileStaysSparseWithEqualContent) {
  const std::string src = MakeSparseFile("sparse ü.img");
  const std::string dst = Path("copy.img");
  CopyOptions options;
  options.allow_reflink = false;
  absl::StatusOr<CopyResult> result = CloneOrCopyFile(src, dst, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->method, "copy");
  EXPECT_EQ(result->size_bytes, 64 * kMiB);
  EXPECT_EQ(result->bytes_copied, 2 * kMiB + 4096);  // holes are not copied
  EXPECT_EQ(Stat(dst).st_size, static_cast<off_t>(64 * kMiB));
  // Allocated blocks like the source's, far from the 64 MiB a dense copy would take.
  EXPECT_LE(Stat(dst).st_blocks, Stat(src).st_blocks + 16);
  EXPECT_LT(Stat(dst).st_blocks * 512, static_cast<blkcnt_t>(4 * kMiB));
  EXPECT_TRUE(ReadAll(src) == ReadAll(dst));
}

TEST_F(FileCopyTest, DefaultCopyOfASparseFileStaysSparseWithEqualContent) {
  const std::string src = MakeSparseFile("sparse.img");
  const std::string dst = Path("clone.img");
  absl::StatusOr<CopyResult> result = CloneOrCopyFile(src, dst);
  ASSERT_TRUE(result.ok()) << result.status();
  // Reflink or copy_file_range, depending on the file system under TempDir().
  EXPECT_THAT(result->method, ::testing::AnyOf("reflink", "copy"));
  if (result->method == "copy") {
    EXPECT_EQ(result->bytes_copied, 2 * kMiB + 4096);
  }
  EXPECT_EQ(Stat(dst).st_size, static_cast<off_t>(64 * kMiB));
  EXPECT_LE(Stat(dst).st_blocks, Stat(src).st_blocks + 16);
  EXPECT_TRUE(ReadAll(src) == ReadAll(dst));
}

TEST_F(FileCopyTest, TrailingHoleEmptyFileAndModeAreKept) {
  const std::string src = Path("tail.img");
  WriteAt(src, 0, "head");
  SetSize(src, 10 * kMiB);  // ends in a hole, which is never written
  ASSERT_EQ(::chmod(src.c_str(), 0640), 0);
  const std::string empty = Path("empty");
  WriteAt(empty, 0, "");
  for (bool reflink : {false, true}) {
    CopyOptions options;
    options.allow_reflink = reflink;
    const std::string dst = Path(reflink ? "tail-default" : "tail-copy");
    absl::StatusOr<CopyResult> result = CloneOrCopyFile(src, dst, options);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(Stat(dst).st_size, static_cast<off_t>(10 * kMiB));
    EXPECT_EQ(Stat(dst).st_mode & 07777, 0640u);
    EXPECT_EQ(ReadAll(dst), ReadAll(src));
    absl::StatusOr<CopyResult> copied_empty = CloneOrCopyFile(empty, dst + ".empty", options);
    ASSERT_TRUE(copied_empty.ok()) << copied_empty.status();
    EXPECT_EQ(copied_empty->size_bytes, 0u);
    EXPECT_EQ(Stat(dst + ".empty").st_size, 0);
  }
}

TEST_F(FileCopyTest, ProgressIsMonotonicAndEndsAtTheTotal) {
  const std::string src = MakeSparseFile("p.img");
  for (bool reflink : {false, true}) {
    std::vector<uint64_t> done;
    CopyOptions options;
    options.allow_reflink = reflink;
    options.progress = [&](uint64_t d, uint64_t total) {
      EXPECT_EQ(total, 64 * kMiB);
      done.push_back(d);
    };
    ASSERT_TRUE(CloneOrCopyFile(src, Path(reflink ? "p1" : "p2"), options).ok());
    ASSERT_FALSE(done.empty());
    EXPECT_TRUE(std::is_sorted(done.begin(), done.end()));
    EXPECT_EQ(done.back(), 64 * kMiB);
  }
}

TEST_F(FileCopyTest, ExistingDestinationIsAlreadyExistsAndUntouched) {
  const std::string src = Path("a");
  const std::string dst = Path("b");
  WriteAt(src, 0, "new");
  WriteAt(dst, 0, "old");
  absl::StatusOr<CopyResult> result = CloneOrCopyFile(src, dst);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(result.status().message(),
            "cannot create '" + dst + "' to copy '" + src + "' into it: File exists");
  EXPECT_EQ(ReadAll(dst), "old");
}

TEST_F(FileCopyTest, MissingOrIrregularSourceLeavesNothing) {
  const std::string dst = Path("out");
  absl::StatusOr<CopyResult> result = CloneOrCopyFile(Path("nope"), dst);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(result.status().message(), "cannot open '" + Path("nope") + "' to copy it to '" + dst +
                                           "': No such file or directory");
  fs::create_directory(Path("subdir"));
  result = CloneOrCopyFile(Path("subdir"), dst);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(result.status().message(),
            "cannot copy '" + Path("subdir") + "' to '" + dst + "': it is not a regular file");
  EXPECT_THAT(Listing(dir_), ElementsAre("subdir"));
}

TEST_F(FileCopyTest, ReplaceFileAtomicallyReplacesAndLeavesNoTemporary) {
  const std::string src = MakeSparseFile("new.img");
  const std::string dst = Path("disk.img");
  WriteAt(dst, 0, "old content");
  absl::StatusOr<CopyResult> result = ReplaceFileAtomically(src, dst);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->size_bytes, 64 * kMiB);
  EXPECT_TRUE(ReadAll(dst) == ReadAll(src));
  EXPECT_THAT(Listing(dir_), ElementsAre("disk.img", "new.img"));
  // Also when dst does not exist yet.
  ASSERT_TRUE(ReplaceFileAtomically(src, Path("fresh.img")).ok());
  EXPECT_THAT(Listing(dir_), ElementsAre("disk.img", "fresh.img", "new.img"));
}

TEST_F(FileCopyTest, ReplaceFileAtomicallyThroughASymlinkReplacesItsTarget) {
  const std::string src = Path("new.img");
  WriteAt(src, 0, "new");
  fs::create_directory(Path("real"));
  WriteAt(Path("real/disk.img"), 0, "old");
  fs::create_symlink(Path("real/disk.img"), Path("link.img"));
  absl::StatusOr<CopyResult> result = ReplaceFileAtomically(src, Path("link.img"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(fs::is_symlink(Path("link.img")));
  EXPECT_EQ(ReadAll(Path("real/disk.img")), "new");
  EXPECT_THAT(Listing(Path("real")), ElementsAre("disk.img"));
}

TEST_F(FileCopyTest, ReplaceFileAtomicallyKeepsTheOriginalWhenTheSourceIsMissing) {
  const std::string dst = Path("disk.img");
  WriteAt(dst, 0, "original");
  absl::StatusOr<CopyResult> result = ReplaceFileAtomically(Path("gone.img"), dst);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(result.status().message()),
              ::testing::StartsWith("cannot replace '" + dst + "' with '" + Path("gone.img") +
                                    "': cannot open '" + Path("gone.img") + "' to copy it to '" +
                                    dir_ + "/.disk.img.strata-tmp-"));
  EXPECT_THAT(std::string(result.status().message()),
              ::testing::EndsWith("': No such file or directory"));
  EXPECT_EQ(ReadAll(dst), "original");
  EXPECT_THAT(Listing(dir_), ElementsAre("disk.img"));
}

// A 1 MiB tmpfs: copying 4 MiB into it fails half-way with ENOSPC (real fault, as root).
class TinyFsTest : public FileCopyTest {
 protected:
  void SetUp() override {
    FileCopyTest::SetUp();
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a tiny tmpfs";
    tiny_ = Path("tiny");
    fs::create_directory(tiny_);
    if (::mount("tmpfs", tiny_.c_str(), "tmpfs", 0, "size=1m") != 0) {
      GTEST_SKIP() << "cannot mount tmpfs on " << tiny_ << ": " << std::strerror(errno);
    }
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_ && ::umount(tiny_.c_str()) != 0) ::umount2(tiny_.c_str(), MNT_DETACH);
    FileCopyTest::TearDown();
  }
  std::string tiny_;
  bool mounted_ = false;
};

TEST_F(TinyFsTest, CopyFailingHalfWayRemovesThePartialCopy) {
  const std::string src = Path("big.img");
  WriteAt(src, 0, RandomBytes(4 * kMiB, 7));
  absl::StatusOr<CopyResult> result = CloneOrCopyFile(src, tiny_ + "/big.img");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(result.status().message(),
            "cannot copy '" + src + "' to '" + tiny_ + "/big.img': No space left on device");
  EXPECT_THAT(Listing(tiny_), ::testing::IsEmpty());
}

TEST_F(TinyFsTest, ReplaceFailingHalfWayKeepsTheOriginal) {
  const std::string src = Path("big.img");
  WriteAt(src, 0, RandomBytes(4 * kMiB, 8));
  const std::string dst = tiny_ + "/disk.img";
  WriteAt(dst, 0, "original");
  absl::StatusOr<CopyResult> result = ReplaceFileAtomically(src, dst);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(result.status().message()),
              ::testing::EndsWith("': No space left on device"));
  EXPECT_EQ(ReadAll(dst), "original");
  EXPECT_THAT(Listing(tiny_), ElementsAre("disk.img"));
}

TEST_F(FileCopyTest, HashOfKnownContentIsStable) {
  const std::string empty = Path("empty");
  WriteAt(empty, 0, "");
  // xxHash's published XXH3-128 vector for empty input, seed 0 (high 64 bits first).
  EXPECT_EQ(HashFile(empty).value_or(""), "xxh3-128:99aa06d3014798d86001c324468d497f");

  // Streamed over several read buffers, it equals the one-shot hash of the same bytes.
  const std::string content = RandomBytes(3 * kMiB + 123, 9);
  const std::string path = Path("content");
  WriteAt(path, 0, content);
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical, XXH3_128bits(content.data(), content.size()));
  std::string expected = "xxh3-128:";
  for (unsigned char byte : canonical.digest) {
    static constexpr char kHex[] = "0123456789abcdef";
    expected += kHex[byte >> 4];
    expected += kHex[byte & 0xf];
  }
  absl::StatusOr<std::string> hash = HashFile(path);
  ASSERT_TRUE(hash.ok()) << hash.status();
  EXPECT_EQ(*hash, expected);
  EXPECT_EQ(HashFile(path).value_or(""), *hash);

  // One changed byte changes it.
  WriteAt(path, 2 * kMiB + 5, std::string(1, static_cast<char>(content[2 * kMiB + 5] ^ 1)));
  EXPECT_NE(HashFile(path).value_or(*hash), *hash);
}

TEST_F(FileCopyTest, HoleHashesAsZerosAndProgressReachesTheTotal) {
  const std::string sparse = Path("sparse");
  WriteAt(sparse, 0, "x");
  SetSize(sparse, 2 * kMiB + 1);
  const std::string dense = Path("dense");
  WriteAt(dense, 0, "x" + std::string(2 * kMiB, '\0'));
  std::vector<uint64_t> done;
  absl::StatusOr<std::string> hash = HashFile(sparse, [&](uint64_t d, uint64_t total) {
    EXPECT_EQ(total, 2 * kMiB + 1);
    done.push_back(d);
  });
  ASSERT_TRUE(hash.ok()) << hash.status();
  EXPECT_EQ(*hash, HashFile(dense).value_or(""));
  ASSERT_FALSE(done.empty());
  EXPECT_EQ(done.back(), 2 * kMiB + 1);
}

TEST_F(FileCopyTest, HashOfAMissingFileNamesIt) {
  absl::StatusOr<std::string> hash = HashFile(Path("nope"));
  EXPECT_EQ(hash.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(hash.status().message(),
            "cannot open '" + Path("nope") + "' to hash it: No such file or directory");
}

}  // namespace
}  // namespace strata::storage
