// Resolves files on REAL loop devices (ext4, btrfs, xfs) through the live SystemView.
// Needs root, losetup and mkfs.<type>; otherwise each test is skipped with the reason.
#include <sys/mount.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "strata/core/graph.h"
#include "strata/storage/resolver.h"

#include "dir_plugin.h"

namespace strata::storage {
namespace {

using core::Graph;
using core::NodeIndex;

// Runs a shell command; returns its stdout (trailing newline dropped), or nullopt on failure.
std::optional<std::string> Shell(const std::string& command) {
  FILE* pipe = popen((command + " 2>/dev/null").c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  std::string out;
  char buf[512];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  if (pclose(pipe) != 0) return std::nullopt;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::vector<std::string> OutIds(const Graph& g, NodeIndex n, core::EdgeType type) {
  std::vector<std::string> ids;
  for (const core::EdgeRef& e : g.OutEdges(n)) {
    if (e.type == type) ids.emplace_back(g.Id(e.node));
  }
  return ids;
}

class LoopDeviceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to create loop devices";
    const std::string& fstype = GetParam();
    if (!Shell("command -v losetup") || !Shell("command -v mkfs." + fstype)) {
      GTEST_SKIP() << "losetup or mkfs." << fstype << " is not installed";
    }
    char tmpl[] = "/tmp/strata-loop-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    image_ = dir_ + "/" + fstype + " image é.img";
    mnt_ = dir_ + "/mnt dir ü";
    bind_ = dir_ + "/bind ä";
    std::filesystem::create_directories(mnt_);
    std::filesystem::create_directories(bind_);
    ASSERT_TRUE(Shell("truncate -s 300M " + Quote(image_)));
    std::optional<std::string> loop = Shell("losetup -f --show " + Quote(image_));
    if (!loop || loop->empty()) GTEST_SKIP() << "losetup -f --show failed (no loop devices?)";
    loop_ = *loop;
    std::string force = fstype == "ext4" ? "-F -q" : "-f -q";
    ASSERT_TRUE(Shell("mkfs." + fstype + " " + force + " " + loop_)) << "mkfs." << fstype;
    if (mount(loop_.c_str(), mnt_.c_str(), fstype.c_str(), 0, nullptr) != 0) {
      GTEST_SKIP() << "cannot mount " << fstype << " on " << loop_ << ": " << strerror(errno);
    }
    mounted_ = true;
    std::filesystem::create_directories(mnt_ + "/sub dir");
    std::ofstream(mnt_ + "/sub dir/disk ü.qcow2") << std::string(4096, 'x');
    ASSERT_EQ(mount((mnt_ + "/sub dir").c_str(), bind_.c_str(), nullptr, MS_BIND, nullptr), 0)
        << strerror(errno);
    bound_ = true;
    uuid_ = Shell("blkid -p -s UUID -o value " + loop_).value_or("");
    ASSERT_FALSE(uuid_.empty()) << "blkid found no UUID on " << loop_;
  }

  void TearDown() override {
    if (bound_ && umount(bind_.c_str()) != 0) umount2(bind_.c_str(), MNT_DETACH);
    if (mounted_ && umount(mnt_.c_str()) != 0) umount2(mnt_.c_str(), MNT_DETACH);
    if (!loop_.empty()) Shell("losetup -d " + loop_);
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::string LoopName() const { return loop_.substr(loop_.rfind('/') + 1); }

  std::string dir_, image_, mnt_, bind_, loop_, uuid_;
  bool mounted_ = false, bound_ = false;
};

TEST_P(LoopDeviceTest, ResolvesFileThroughMountFsAndLoopBackingFile) {
  ResolverOptions options;
  options.host_id = "live";
  std::unique_ptr<plugin::StoragePlugin> dir =
      plugins::dir::MakeDirPlugin({"live", {{"loop-vol", mnt_ + "/sub dir"}}});
  options.storage_plugins = {dir.get()};
  StorageResolver resolver(options);  // live SystemView, libblkid probe
  Graph graph;
  std::string path = mnt_ + "/sub dir/disk ü.qcow2";
  absl::StatusOr<NodeIndex> file = resolver.ResolveFile(graph, path);
  ASSERT_TRUE(file.ok()) << file.status();
  std::string fs_id = "fs:" + uuid_;
  EXPECT_EQ(graph.Id(*file), "file:" + uuid_ + ":/sub dir/disk ü.qcow2");
  EXPECT_EQ(graph.Name(*file), path);
  EXPECT_EQ(graph.Attr(*file, "size").value_or(""), "4096");
  EXPECT_EQ(graph.Attr(*file, "resolved"), std::nullopt);
  EXPECT_THAT(OutIds(graph, *file, core::EdgeType::kOnMount),
              ::testing::ElementsAre("mount:live:" + mnt_));

  auto fs = graph.Find(fs_id);
  ASSERT_TRUE(fs.has_value()) << fs_id;
  EXPECT_EQ(graph.Attr(*fs, "fstype").value_or(""), GetParam());
  EXPECT_EQ(graph.Attr(*fs, "uuid").value_or(""), uuid_);
  EXPECT_THAT(OutIds(graph, *fs, core::EdgeType::kOnDevice),
              ::testing::Contains("blk:live:" + LoopName()));

  auto loop = graph.Find("blk:live:" + LoopName());
  ASSERT_TRUE(loop.has_value());
  EXPECT_EQ(graph.Attr(*loop, "kind").value_or(""), "loop");
  EXPECT_EQ(graph.Attr(*loop, "backing_file").value_or(""), image_);
  std::vector<std::string> backing = OutIds(graph, *loop, core::EdgeType::kLoopFile);
  ASSERT_EQ(backing.size(), 1u);
  auto image = graph.Find(backing[0]);
  EXPECT_EQ(graph.Name(*image), image_);
  EXPECT_EQ(graph.Attr(*image, "size").value_or(""), "314572800");
  // The image itself lives on the host's root file system: it has a mount.
  EXPECT_EQ(OutIds(graph, *image, core::EdgeType::kOnMount).size(), 1u);

  // The same file through the bind mount is the same node; the dir volume holds it.
  absl::StatusOr<NodeIndex> bound = resolver.ResolveFile(graph, bind_ + "/disk ü.qcow2");
  ASSERT_TRUE(bound.ok()) << bound.status();
  EXPECT_EQ(*bound, *file);
  EXPECT_THAT(OutIds(graph, *file, core::EdgeType::kInVolume),
              ::testing::ElementsAre("sv:dir:" + uuid_ + ":/sub dir"));
}

TEST_P(LoopDeviceTest, ProbeWithBlkidMatchesTheBlkidTool) {
  absl::StatusOr<FsProbe> probe = ProbeWithBlkid(loop_);
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->uuid, Shell("blkid -s UUID -o value " + loop_).value_or("<blkid failed>"));
  EXPECT_EQ(probe->type, GetParam());
}

TEST_P(LoopDeviceTest, BlockDeviceAndMissingFileOnTheLiveSystem) {
  StorageResolver resolver(ResolverOptions{"live", SystemView{}, {}});
  Graph graph;
  absl::StatusOr<NodeIndex> block = resolver.ResolveBlockDevice(graph, loop_);
  ASSERT_TRUE(block.ok()) << block.status();
  EXPECT_EQ(graph.Id(*block), "blk:live:" + LoopName());
  absl::StatusOr<NodeIndex> missing = resolver.ResolveFile(graph, mnt_ + "/nope.qcow2");
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(graph.Attr(*missing, "reason").value_or(""),
            "file '" + mnt_ + "/nope.qcow2' not found");
}

INSTANTIATE_TEST_SUITE_P(FileSystems, LoopDeviceTest, ::testing::Values("ext4", "btrfs", "xfs"),
                         [](const auto& info) { return info.param; });

TEST(ProbeWithBlkid, ErrorsNameTheDevice) {
  EXPECT_EQ(ProbeWithBlkid("/nonexistent/dev").status().message(),
            "cannot open '/nonexistent/dev' to probe it: No such file or directory");
  std::string blank = ::testing::TempDir() + "/strata-blank.img";
  std::ofstream(blank) << std::string(1 << 20, '\0');
  EXPECT_EQ(ProbeWithBlkid(blank).status().message(), "no file system found on '" + blank + "'");
  std::filesystem::remove(blank);
}

}  // namespace
}  // namespace strata::storage
