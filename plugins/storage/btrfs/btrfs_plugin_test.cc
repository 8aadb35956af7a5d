// The btrfs plug-in: errors on a directory that is not a subvolume (any user, the test machine's
// temporary directory), and read-only subvolume snapshots on btrfs made on a loop device (root,
// mkfs.btrfs and the btrfs tool; skipped otherwise). Volume ids come from the real resolver.
#include "btrfs_plugin.h"

#include <btrfsutil.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "strata/storage/file_copy.h"
#include "strata/storage/resolver.h"
#include "testing/loop_fs.h"

namespace strata::plugins::btrfs {
namespace {

namespace fs = std::filesystem;
using strata::testing::Quote;
using strata::testing::Shell;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

constexpr long kBtrfsMagic = 0x9123683E;

void Write(const std::string& path, const std::string& data) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << data;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::optional<std::string> Attr(const plugin::VolumeClaim& claim, const std::string& key) {
  for (const auto& [k, v] : claim.attrs) {
    if (k == key) return v;
  }
  return std::nullopt;
}

// Every existing path is on "fs:fake", its path in the fs being its real path.
class FakeLocator final : public plugin::PathLocator {
 public:
  std::optional<plugin::FileLocation> Locate(const std::string& path) override {
    char real[PATH_MAX];
    if (::realpath(path.c_str(), real) == nullptr) return std::nullopt;
    return plugin::FileLocation{real, "fs:fake", real, "/"};
  }
};

class ResolverLocator final : public plugin::PathLocator {
 public:
  std::optional<plugin::FileLocation> Locate(const std::string& path) override {
    return resolver_.Locate(path);
  }
  void Refresh() { resolver_.Refresh(); }

 private:
  storage::StorageResolver resolver_{storage::ResolverOptions{"live", storage::SystemView{}, {}}};
};

// --- Any user, on the temporary directory (normally not a subvolume) ---

TEST(BtrfsPluginTest, ADirectoryThatIsNotASubvolumeIsReportedWithTheReasonAndNotSnapshotted) {
  std::string tmpl = ::testing::TempDir() + "/strata-btrfs-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
  char real[PATH_MAX];
  ASSERT_NE(::realpath(tmpl.c_str(), real), nullptr);
  const std::string root = real;
  Write(root + "/disk.img", "data");
  struct statfs st {};
  ASSERT_EQ(::statfs(root.c_str(), &st), 0);
  const std::string reason =
      st.f_type == kBtrfsMagic
          ? "'" + root + "' is not a btrfs subvolume (make one with 'btrfs subvolume create')"
          : "'" + root + "' is not on a btrfs file system";

  FakeLocator locator;
  auto plugin = MakeBtrfsPlugin({"h", {{"gold", root}, {"gone", root + "/missing"}}});
  EXPECT_EQ(plugin->Name(), "btrfs");
  std::vector<plugin::VolumeClaim> volumes = plugin->Volumes(locator);
  ASSERT_EQ(volumes.size(), 1u);  // "gone" does not exist
  EXPECT_EQ(volumes[0].volume_id, "sv:btrfs:fake:" + root);
  EXPECT_EQ(volumes[0].volume_name, "gold");
  EXPECT_EQ(volumes[0].root, root);
  EXPECT_THAT(volumes[0].attrs,
              ElementsAre(Pair("kind", "btrfs"), Pair("path", root), Pair("error", reason)));
  // Discovery still places the volume's files in it.
  EXPECT_EQ(plugin->ClaimFile(*locator.Locate(root + "/disk.img"), locator).size(), 1u);

  absl::StatusOr<plugin::SnapshotInfo> info =
      plugin->CreateSnapshot({volumes[0].volume_id, "b1", {root + "/disk.img"}});
  EXPECT_EQ(info.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(info.status().message(), "cannot snapshot btrfs volume 'gold' as 'b1': " + reason);
  EXPECT_FALSE(fs::exists(root + "/.strata-snapshots"));
  // Appending to a snapshot is refused whatever the volume: the engine keeps one snapshot call.
  EXPECT_FALSE(plugin->CanAppendToSnapshot());
  absl::StatusOr<plugin::SnapshotInfo> appended =
      plugin->CreateSnapshot({volumes[0].volume_id, "b1", {root + "/disk.img"}, true});
  EXPECT_EQ(appended.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(appended.status().message(),
            "cannot snapshot btrfs volume 'gold' as 'b1': a btrfs snapshot is one instant of the "
            "whole subvolume: files cannot be added to it");
  EXPECT_FALSE(fs::exists(root + "/.strata-snapshots"));

  // Names are checked first; unknown ids are NotFound.
  EXPECT_EQ(plugin->CreateSnapshot({volumes[0].volume_id, "../x", {}}).status().message(),
            "invalid snapshot name '../x': it starts with '.' or '-'");
  EXPECT_EQ(plugin->DeleteSnapshot(volumes[0].volume_id, "a/b").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(plugin->ListSnapshots("sv:btrfs:x:/").status().message(),
            "no btrfs volume has the id 'sv:btrfs:x:/' (a volume is known once discovery has "
            "reported it)");
  fs::remove_all(root);
}

// --- Root, on a real btrfs ---

class BtrfsSnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status made = fs_.Create("btrfs", "-f -q");
    if (absl::IsFailedPrecondition(made)) GTEST_SKIP() << made.message();
    ASSERT_TRUE(made.ok()) << made;
    if (!Shell("command -v btrfs")) GTEST_SKIP() << "the btrfs tool is not installed";
    mnt_ = fs_.mount_point();
    root_ = mnt_ + "/vol ü";
    std::string out;
    ASSERT_TRUE(Shell("btrfs subvolume create " + Quote(root_), &out)) << out;
    ASSERT_TRUE(Shell("btrfs subvolume create " + Quote(root_ + "/nested"), &out)) << out;
    Write(root_ + "/images/web01.qcow2", std::string(3 << 20, 'w'));
    Write(root_ + "/db.raw", "db data");
    Write(root_ + "/nested/inner.img", "inner");
    fs::create_directories(mnt_ + "/plain");
    uuid_ = Shell("blkid -p -s UUID -o value " + Quote(fs_.device())).value_or("");
    ASSERT_FALSE(uuid_.empty());
    plugin_ = MakeBtrfsPlugin({"live", {{"gold", root_}, {"plain", mnt_ + "/plain"}}});
    std::vector<plugin::VolumeClaim> volumes = plugin_->Volumes(locator_);
    ASSERT_EQ(volumes.size(), 2u);
    gold_ = volumes[0];
    plain_ = volumes[1];
  }

  std::string SnapshotPath(const std::string& name) const {
    return root_ + "/.strata-snapshots/" + name;
  }
  size_t Claims(const std::string& path) {
    std::optional<plugin::FileLocation> file = locator_.Locate(path);
    return file.has_value() ? plugin_->ClaimFile(*file, locator_).size() : 99;
  }

  strata::testing::LoopFs fs_;
  std::string mnt_, root_, uuid_;
  ResolverLocator locator_;
  std::unique_ptr<plugin::StoragePlugin> plugin_;
  plugin::VolumeClaim gold_, plain_;
};

TEST_F(BtrfsSnapshotTest, VolumesAndClaimsFollowTheSubvolume) {
  EXPECT_EQ(gold_.volume_id, "sv:btrfs:" + uuid_ + ":/vol ü");
  EXPECT_EQ(gold_.root, root_);
  EXPECT_THAT(gold_.attrs, ElementsAre(Pair("kind", "btrfs"), Pair("path", root_)));
  EXPECT_EQ(plain_.volume_id, "sv:btrfs:" + uuid_ + ":/plain");
  EXPECT_EQ(Attr(plain_, "error").value_or(""),
            "'" + mnt_ +
                "/plain' is not a btrfs subvolume (make one with 'btrfs subvolume "
                "create')");
  EXPECT_EQ(Claims(root_ + "/images/web01.qcow2"), 1u);
  EXPECT_EQ(Claims(root_ + "/nested/inner.img"), 0u);  // another subvolume
}

TEST_F(BtrfsSnapshotTest, ReadOnlySnapshotHoldsTheVolumeAsItWas) {
  const std::string web01 = root_ + "/images/web01.qcow2";
  absl::StatusOr<plugin::SnapshotInfo> info =
      plugin_->CreateSnapshot({gold_.volume_id, "backup-1", {web01, root_ + "/db.raw"}});
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->snapshot_id, "backup-1");
  EXPECT_EQ(info->path, SnapshotPath("backup-1"));
  EXPECT_EQ(info->method, "subvolume");
  ASSERT_EQ(info->files.size(), 2u);
  EXPECT_EQ(info->files[0].source_path, web01);
  EXPECT_EQ(info->files[0].path_in_snapshot, "images/web01.qcow2");
  EXPECT_EQ(info->files[0].size_bytes, 3u << 20);
  EXPECT_EQ(info->files[0].method, "subvolume");
  EXPECT_EQ(info->files[1].path_in_snapshot, "db.raw");

  EXPECT_EQ(btrfs_util_is_subvolume(info->path.c_str()), BTRFS_UTIL_OK);
  bool read_only = false;
  ASSERT_EQ(btrfs_util_get_subvolume_read_only(info->path.c_str(), &read_only), BTRFS_UTIL_OK);
  EXPECT_TRUE(read_only);
  const int fd = ::open((info->path + "/db.raw").c_str(), O_WRONLY);
  EXPECT_EQ(fd < 0 ? errno : 0, EROFS);
  if (fd >= 0) ::close(fd);
  // The whole volume is in it, nested subvolumes are not (an empty directory stands for them).
  EXPECT_EQ(ReadAll(info->path + "/db.raw"), "db data");
  EXPECT_TRUE(fs::is_empty(info->path + "/nested"));

  // Later writes to the source are not visible in the snapshot.
  const std::string before = storage::HashFile(web01).value_or("");
  Write(web01, "rewritten");
  Write(root_ + "/new.img", "new");
  EXPECT_EQ(storage::HashFile(info->path + "/images/web01.qcow2").value_or("-"), before);
  EXPECT_FALSE(fs::exists(info->path + "/new.img"));
  // Files in the snapshot are not the volume's files.
  locator_.Refresh();
  EXPECT_EQ(Claims(info->path + "/db.raw"), 0u);

  // A second snapshot does not contain the first (only the empty directory standing for it).
  absl::StatusOr<plugin::SnapshotInfo> second =
      plugin_->CreateSnapshot({gold_.volume_id, "backup-2", {}});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(fs::is_empty(second->path + "/.strata-snapshots/backup-1"));
}

TEST_F(BtrfsSnapshotTest, ListDeleteAndErrors) {
  ASSERT_TRUE(plugin_->CreateSnapshot({gold_.volume_id, "b2", {}}).ok());
  ASSERT_TRUE(plugin_->CreateSnapshot({gold_.volume_id, "b1", {root_ + "/db.raw"}}).ok());
  absl::StatusOr<plugin::SnapshotInfo> again = plugin_->CreateSnapshot({gold_.volume_id, "b1", {}});
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(again.status().message(),
            "snapshot 'b1' of btrfs volume 'gold' already exists ('" + SnapshotPath("b1") + "')");
  // Manifests and plain directories are not snapshots.
  Write(root_ + "/.strata-snapshots/b1.manifest.json", "{}");
  fs::create_directories(root_ + "/.strata-snapshots/not-a-snapshot");
  EXPECT_THAT(plugin_->ListSnapshots(gold_.volume_id).value_or(std::vector<std::string>{"-"}),
              ElementsAre("b1", "b2"));

  // A read-only snapshot is deleted as it is.
  ASSERT_TRUE(plugin_->DeleteSnapshot(gold_.volume_id, "b1").ok());
  EXPECT_FALSE(fs::exists(SnapshotPath("b1")));
  EXPECT_TRUE(fs::exists(root_ + "/.strata-snapshots/b1.manifest.json"));
  EXPECT_THAT(plugin_->ListSnapshots(gold_.volume_id).value_or(std::vector<std::string>{"-"}),
              ElementsAre("b2"));
  absl::Status missing = plugin_->DeleteSnapshot(gold_.volume_id, "b1");
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.message(),
            "snapshot 'b1' of btrfs volume 'gold' not found ('" + SnapshotPath("b1") + "')");
  absl::Status plain_dir = plugin_->DeleteSnapshot(gold_.volume_id, "not-a-snapshot");
  EXPECT_EQ(plain_dir.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(plain_dir.message(), "not deleting snapshot 'not-a-snapshot': '" +
                                     SnapshotPath("not-a-snapshot") +
                                     "' is not a btrfs subvolume (make one with 'btrfs subvolume "
                                     "create')");
  EXPECT_TRUE(fs::exists(SnapshotPath("not-a-snapshot")));

  // A file in a nested subvolume, or outside, makes the request invalid: nothing is made.
  absl::StatusOr<plugin::SnapshotInfo> nested =
      plugin_->CreateSnapshot({gold_.volume_id, "b3", {root_ + "/nested/inner.img"}});
  EXPECT_EQ(nested.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(nested.status().message(),
            "cannot snapshot btrfs volume 'gold' as 'b3': file '" + root_ +
                "/nested/inner.img' is in a subvolume nested in the volume, which its snapshots "
                "do not hold");
  absl::StatusOr<plugin::SnapshotInfo> outside =
      plugin_->CreateSnapshot({gold_.volume_id, "b3", {fs_.mount_point()}});
  EXPECT_EQ(outside.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(SnapshotPath("b3")));

  // The configured directory that is not a subvolume: FailedPrecondition naming it.
  absl::StatusOr<plugin::SnapshotInfo> plain =
      plugin_->CreateSnapshot({plain_.volume_id, "b1", {}});
  EXPECT_EQ(plain.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(plain.status().message(),
            "cannot snapshot btrfs volume 'plain' as 'b1': '" + mnt_ +
                "/plain' is not a btrfs subvolume (make one with 'btrfs subvolume create')");
  EXPECT_FALSE(fs::exists(mnt_ + "/plain/.strata-snapshots"));
}

}  // namespace
}  // namespace strata::plugins::btrfs
