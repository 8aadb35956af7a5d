// dir snapshots on REAL file systems made on loop devices: ext4 (sparse-aware copy), xfs with
// reflink=1 and btrfs (reflinks: the clone shares the source's extents and takes no space).
// Volume ids come from the real storage resolver. Needs root, losetup and mkfs.<type>; otherwise
// each test is skipped with the reason.
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "dir_plugin.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "strata/storage/file_copy.h"
#include "strata/storage/resolver.h"
#include "testing/loop_fs.h"

namespace strata::plugins::dir {
namespace {

using strata::testing::LoopFs;
using strata::testing::Quote;
using strata::testing::Shell;
using strata::testing::UsedBytes;

constexpr uint64_t kMiB = 1 << 20;

class ResolverLocator final : public plugin::PathLocator {
 public:
  explicit ResolverLocator(storage::StorageResolver& resolver) : resolver_(resolver) {}
  std::optional<plugin::FileLocation> Locate(const std::string& path) override {
    return resolver_.Locate(path);
  }

 private:
  storage::StorageResolver& resolver_;
};

// Writes `size` bytes of pseudo-random data at `offset` (random: no file system compresses or
// dedupes it).
void WriteRandom(const std::string& path, uint64_t offset, uint64_t size, unsigned seed) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  std::mt19937_64 gen(seed);
  std::vector<uint64_t> chunk(kMiB / 8);
  for (uint64_t done = 0; done < size; done += kMiB) {
    for (uint64_t& word : chunk) word = gen();
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kMiB, size - done));
    ASSERT_EQ(::pwrite(fd, chunk.data(), n, static_cast<off_t>(offset + done)),
              static_cast<ssize_t>(n));
  }
  ASSERT_EQ(::fsync(fd), 0);
  ASSERT_EQ(::close(fd), 0);
}

// Number of extents of `path` and how many of them are shared with another file (FIEMAP, as
// `filefrag -v` shows them).
struct Extents {
  int total = 0;
  int shared = 0;
};
Extents CountExtents(const std::string& path) {
  Extents out;
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return out;
  constexpr uint32_t kMax = 512;
  std::vector<uint64_t> buffer((sizeof(fiemap) + kMax * sizeof(fiemap_extent)) / 8 + 1);
  auto* map = reinterpret_cast<fiemap*>(buffer.data());
  map->fm_start = 0;
  map->fm_length = FIEMAP_MAX_OFFSET;
  map->fm_flags = FIEMAP_FLAG_SYNC;
  map->fm_extent_count = kMax;
  if (::ioctl(fd, FS_IOC_FIEMAP, map) == 0) {
    out.total = static_cast<int>(map->fm_mapped_extents);
    for (uint32_t i = 0; i < map->fm_mapped_extents; ++i) {
      if (map->fm_extents[i].fe_flags & FIEMAP_EXTENT_SHARED) ++out.shared;
    }
  }
  ::close(fd);
  return out;
}

struct FsCase {
  std::string fstype;
  std::string mkfs_options;
  std::string method;  // what a dir snapshot does there
};

// Test names and failure messages show the file system, not the struct's bytes.
void PrintTo(const FsCase& c, std::ostream* os) { *os << c.fstype; }

class DirSnapshotOnLoopTest : public ::testing::TestWithParam<FsCase> {
 protected:
  void SetUp() override {
    absl::Status made = fs_.Create(GetParam().fstype, GetParam().mkfs_options);
    if (absl::IsFailedPrecondition(made)) GTEST_SKIP() << made.message();
    ASSERT_TRUE(made.ok()) << made;
    root_ = fs_.mount_point() + "/vol ü";
    std::filesystem::create_directories(root_ + "/images");
    uuid_ = Shell("blkid -p -s UUID -o value " + Quote(fs_.device())).value_or("");
    ASSERT_FALSE(uuid_.empty());
  }

  LoopFs fs_;
  std::string root_, uuid_;
};

TEST_P(DirSnapshotOnLoopTest, SnapshotUsesTheFileSystemsBestMethod) {
  const std::string dense = root_ + "/images/dense.raw";
  const std::string sparse = root_ + "/sparse.raw";
  WriteRandom(dense, 0, 64 * kMiB, 1);
  WriteRandom(sparse, 16 * kMiB, kMiB, 2);
  ASSERT_EQ(::truncate(sparse.c_str(), 64 * kMiB), 0);

  storage::StorageResolver resolver(storage::ResolverOptions{"live", storage::SystemView{}, {}});
  ResolverLocator locator(resolver);
  std::unique_ptr<plugin::StoragePlugin> plugin = MakeDirPlugin({"live", {{"loopvol", root_}}});
  std::vector<plugin::VolumeClaim> volumes = plugin->Volumes(locator);
  ASSERT_EQ(volumes.size(), 1u);
  const std::string id = volumes[0].volume_id;
  EXPECT_EQ(id, "sv:dir:" + uuid_ + ":/vol ü");

  const uint64_t used_before = UsedBytes(root_);
  absl::StatusOr<plugin::SnapshotInfo> info = plugin->CreateSnapshot({id, "b1", {dense, sparse}});
  ASSERT_TRUE(info.ok()) << info.status();
  const uint64_t used_after = UsedBytes(root_);
  EXPECT_EQ(info->method, GetParam().method);
  ASSERT_EQ(info->files.size(), 2u);
  EXPECT_EQ(info->files[0].path_in_snapshot, "images/dense.raw");
  EXPECT_EQ(info->files[0].size_bytes, 64 * kMiB);
  EXPECT_EQ(info->files[1].method, GetParam().method);
  const std::string dense_copy = info->path + "/images/dense.raw";
  const std::string sparse_copy = info->path + "/sparse.raw";

  struct stat sparse_st {
  }, sparse_copy_st{};
  ASSERT_EQ(::stat(sparse.c_str(), &sparse_st), 0);
  ASSERT_EQ(::stat(sparse_copy.c_str(), &sparse_copy_st), 0);
  EXPECT_EQ(sparse_copy_st.st_size, static_cast<off_t>(64 * kMiB));
  EXPECT_LE(sparse_copy_st.st_blocks, sparse_st.st_blocks + 64);  // the holes stayed holes
  const Extents extents = CountExtents(dense_copy);
  if (GetParam().method == "reflink") {
    // Shared extents, and (almost) no new space for 65 MiB of data.
    EXPECT_GT(extents.total, 0);
    EXPECT_EQ(extents.shared, extents.total) << "see: filefrag -v " << dense_copy;
    EXPECT_LT(used_after - used_before, 8 * kMiB) << used_before << " -> " << used_after;
  } else {
    EXPECT_EQ(extents.shared, 0);
    EXPECT_GE(used_after - used_before, 64 * kMiB) << used_before << " -> " << used_after;
    EXPECT_LT(used_after - used_before, 72 * kMiB) << used_before << " -> " << used_after;
  }
  absl::StatusOr<std::string> dense_hash = storage::HashFile(dense);
  ASSERT_TRUE(dense_hash.ok()) << dense_hash.status();
  EXPECT_EQ(storage::HashFile(dense_copy).value_or(""), *dense_hash);
  EXPECT_EQ(storage::HashFile(sparse_copy).value_or(""), storage::HashFile(sparse).value_or("-"));

  // Writing the source afterwards leaves the snapshot as it was (copy on write for reflinks).
  WriteRandom(dense, 8 * kMiB, kMiB, 3);
  EXPECT_NE(storage::HashFile(dense).value_or(*dense_hash), *dense_hash);
  EXPECT_EQ(storage::HashFile(dense_copy).value_or(""), *dense_hash);

  EXPECT_THAT(plugin->ListSnapshots(id).value_or(std::vector<std::string>{"<failed>"}),
              ::testing::ElementsAre("b1"));
  ASSERT_TRUE(plugin->DeleteSnapshot(id, "b1").ok());
  EXPECT_FALSE(std::filesystem::exists(info->path));
  EXPECT_THAT(plugin->ListSnapshots(id).value_or(std::vector<std::string>{"<failed>"}),
              ::testing::IsEmpty());
}

TEST_P(DirSnapshotOnLoopTest, AppendAddsACopyToTheSameSnapshot) {
  const std::string first = root_ + "/images/first.raw";
  const std::string second = root_ + "/images/second.raw";
  WriteRandom(first, 0, 4 * kMiB, 4);
  WriteRandom(second, 0, 4 * kMiB, 5);
  storage::StorageResolver resolver(storage::ResolverOptions{"live", storage::SystemView{}, {}});
  ResolverLocator locator(resolver);
  std::unique_ptr<plugin::StoragePlugin> plugin = MakeDirPlugin({"live", {{"loopvol", root_}}});
  std::vector<plugin::VolumeClaim> volumes = plugin->Volumes(locator);
  ASSERT_EQ(volumes.size(), 1u);
  const std::string id = volumes[0].volume_id;
  ASSERT_TRUE(plugin->CreateSnapshot({id, "b1", {first}}).ok());
  plugin::SnapshotRequest request{id, "b1", {second}};
  request.append = true;
  absl::StatusOr<plugin::SnapshotInfo> info = plugin->CreateSnapshot(request);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->method, GetParam().method);
  ASSERT_EQ(info->files.size(), 1u);
  EXPECT_EQ(info->files[0].path_in_snapshot, "images/second.raw");
  EXPECT_EQ(storage::HashFile(info->path + "/images/second.raw").value_or(""),
            storage::HashFile(second).value_or("-"));
  EXPECT_EQ(storage::HashFile(info->path + "/images/first.raw").value_or(""),
            storage::HashFile(first).value_or("-"));
  EXPECT_THAT(plugin->ListSnapshots(id).value_or(std::vector<std::string>{"<failed>"}),
              ::testing::ElementsAre("b1"));
  ASSERT_TRUE(plugin->DeleteSnapshot(id, "b1").ok());
}

INSTANTIATE_TEST_SUITE_P(FileSystems, DirSnapshotOnLoopTest,
                         ::testing::Values(FsCase{"ext4", "-F -q", "copy"},
                                           FsCase{"xfs", "-f -q -m reflink=1", "reflink"},
                                           FsCase{"btrfs", "-f -q", "reflink"}),
                         [](const auto& info) { return info.param.fstype; });

}  // namespace
}  // namespace strata::plugins::dir
