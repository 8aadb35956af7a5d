// The dir plug-in's snapshots on the test machine's temporary directory, with a locator that
// reports every path as being on one fake file system (real file systems: dir_plugin_loop_test).
#include "dir_plugin.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "volume_paths.h"

namespace strata::plugins::dir {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Every existing path is on "fs:fake", its path in the fs being its real path.
class FakeLocator final : public plugin::PathLocator {
 public:
  std::optional<plugin::FileLocation> Locate(const std::string& path) override {
    char real[PATH_MAX];
    if (::realpath(path.c_str(), real) == nullptr) return std::nullopt;
    return plugin::FileLocation{real, "fs:fake", real, "/"};
  }
};

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

class DirSnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/strata-dirsnap-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    char real[PATH_MAX];
    ASSERT_NE(::realpath(tmpl.c_str(), real), nullptr);
    dir_ = real;
    root_ = dir_ + "/gold vol";
    Write(root_ + "/images/web01.qcow2", "web01 data");
    Write(root_ + "/db.raw", "db data");
    fs::create_directories(root_ + "/empty dir");
    Write(dir_ + "/outside.img", "outside");
    plugin_ = MakeDirPlugin({"h", {{"gold", root_}}});
    std::vector<plugin::VolumeClaim> volumes = plugin_->Volumes(locator_);
    ASSERT_EQ(volumes.size(), 1u);
    id_ = volumes[0].volume_id;
    ASSERT_EQ(id_, "sv:dir:fake:" + root_);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  absl::StatusOr<plugin::SnapshotInfo> Snapshot(const std::string& name,
                                                std::vector<std::string> files) {
    return plugin_->CreateSnapshot({id_, name, std::move(files)});
  }
  std::string SnapshotPath(const std::string& name) const {
    return root_ + "/.strata-snapshots/" + name;
  }
  std::string Prefix(const std::string& name) const {
    return "cannot snapshot dir volume 'gold' as '" + name + "': ";
  }

  std::string dir_, root_, id_;
  FakeLocator locator_;
  std::unique_ptr<plugin::StoragePlugin> plugin_;
};

TEST_F(DirSnapshotTest, ClonesTheRequestedFilesAtTheirRelativePaths) {
  absl::StatusOr<plugin::SnapshotInfo> info =
      Snapshot("backup-1", {root_ + "/images/web01.qcow2", root_ + "/db.raw"});
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->snapshot_id, "backup-1");
  EXPECT_EQ(info->path, SnapshotPath("backup-1"));
  EXPECT_THAT(info->method, ::testing::AnyOf("reflink", "copy"));
  ASSERT_EQ(info->files.size(), 2u);
  EXPECT_EQ(info->files[0].source_path, root_ + "/images/web01.qcow2");
  EXPECT_EQ(info->files[0].path_in_snapshot, "images/web01.qcow2");
  EXPECT_EQ(info->files[0].size_bytes, 10u);
  EXPECT_EQ(info->files[0].method, info->method);
  EXPECT_EQ(info->files[1].path_in_snapshot, "db.raw");
  EXPECT_EQ(ReadAll(info->path + "/images/web01.qcow2"), "web01 data");
  EXPECT_EQ(ReadAll(info->path + "/db.raw"), "db data");
  // Only the requested files.
  EXPECT_FALSE(fs::exists(info->path + "/empty dir"));
  // Later writes to the source do not reach the snapshot.
  Write(root_ + "/db.raw", "changed");
  EXPECT_EQ(ReadAll(info->path + "/db.raw"), "db data");
  // Discovery still claims the volume's files.
  plugin::FileLocation file = *locator_.Locate(root_ + "/db.raw");
  ASSERT_EQ(plugin_->ClaimFile(file, locator_).size(), 1u);
}

TEST_F(DirSnapshotTest, SymlinksAreResolvedAndAFileTwiceIsOneCopy) {
  fs::create_symlink(root_ + "/images/web01.qcow2", root_ + "/link.qcow2");
  fs::create_symlink(root_ + "/images", dir_ + "/images-link");  // outside, pointing inside
  absl::StatusOr<plugin::SnapshotInfo> info =
      Snapshot("s", {root_ + "/link.qcow2", dir_ + "/images-link/web01.qcow2"});
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_EQ(info->files.size(), 2u);
  EXPECT_EQ(info->files[0].source_path, root_ + "/link.qcow2");
  EXPECT_EQ(info->files[0].path_in_snapshot, "images/web01.qcow2");
  EXPECT_EQ(info->files[1].path_in_snapshot, "images/web01.qcow2");
  EXPECT_FALSE(fs::exists(info->path + "/link.qcow2"));
  EXPECT_EQ(ReadAll(info->path + "/images/web01.qcow2"), "web01 data");
}

TEST_F(DirSnapshotTest, ListsSnapshotDirectoriesOnly) {
  absl::StatusOr<std::vector<std::string>> names = plugin_->ListSnapshots(id_);
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_THAT(*names, IsEmpty());  // no .strata-snapshots yet
  ASSERT_TRUE(Snapshot("b2", {root_ + "/db.raw"}).ok());
  ASSERT_TRUE(Snapshot("b1", {root_ + "/db.raw"}).ok());
  Write(root_ + "/.strata-snapshots/b1.manifest.json", "{}");
  fs::create_symlink(dir_, root_ + "/.strata-snapshots/evil");
  names = plugin_->ListSnapshots(id_);
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_THAT(*names, ElementsAre("b1", "b2"));
}

TEST_F(DirSnapshotTest, BadNamesAreInvalidArgument) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "it is empty"},
      {".hidden", "it starts with '.' or '-'"},
      {"..", "it starts with '.' or '-'"},
      {"-rf", "it starts with '.' or '-'"},
      {"a/b", "only letters, digits, '.', '_' and '-' are allowed"},
      {"a b", "only letters, digits, '.', '_' and '-' are allowed"},
      {"ü", "only letters, digits, '.', '_' and '-' are allowed"},
      {std::string(129, 'a'), "it is longer than 128 characters"},
      {"b1.manifest.json", "names ending in '.manifest.json' are manifests"},
  };
  for (const auto& [name, why] : cases) {
    absl::StatusOr<plugin::SnapshotInfo> info = Snapshot(name, {root_ + "/db.raw"});
    EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_EQ(info.status().message(), "invalid snapshot name '" + name + "': " + why);
    EXPECT_EQ(plugin_->DeleteSnapshot(id_, name).message(),
              "invalid snapshot name '" + name + "': " + why);
  }
  EXPECT_FALSE(fs::exists(root_ + "/.strata-snapshots"));
  EXPECT_TRUE(Snapshot(std::string(128, 'a'), {root_ + "/db.raw"}).ok());
  EXPECT_TRUE(Snapshot("A-z_0.9", {root_ + "/db.raw"}).ok());
}

TEST_F(DirSnapshotTest, FilesOutsideTheVolumeAreInvalidArgumentAndLeaveNothing) {
  fs::create_symlink(dir_ + "/outside.img", root_ + "/escape.img");
  struct Case {
    std::string file;
    std::string message;
  };
  const std::vector<Case> cases = {
      {dir_ + "/outside.img",
       "file '" + dir_ + "/outside.img' is not inside the volume's root '" + root_ + "'"},
      {root_ + "/escape.img", "file '" + root_ + "/escape.img' (resolved to '" + dir_ +
                                  "/outside.img') is not inside the volume's root '" + root_ + "'"},
      {root_, "file '" + root_ + "' is not inside the volume's root '" + root_ + "'"},
      {root_ + "/.strata-snapshots/old/db.raw",
       "file '" + root_ +
           "/.strata-snapshots/old/db.raw' is inside the volume's snapshot directory"},
  };
  Write(root_ + "/.strata-snapshots/old/db.raw", "x");
  for (const Case& c : cases) {
    absl::StatusOr<plugin::SnapshotInfo> info = Snapshot("s1", {root_ + "/db.raw", c.file});
    EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument) << c.file;
    EXPECT_EQ(info.status().message(), Prefix("s1") + c.message);
    EXPECT_FALSE(fs::exists(SnapshotPath("s1")));
  }
  absl::StatusOr<plugin::SnapshotInfo> missing = Snapshot("s1", {root_ + "/nope.img"});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), Prefix("s1") + "cannot resolve file '" + root_ +
                                            "/nope.img': No such file or directory");
  absl::StatusOr<plugin::SnapshotInfo> none = Snapshot("s1", {});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(SnapshotPath("s1")));
}

TEST_F(DirSnapshotTest, FailureHalfWayRemovesThePartlyMadeSnapshot) {
  // The first file is cloned, then the directory fails (not a regular file).
  absl::StatusOr<plugin::SnapshotInfo> info =
      Snapshot("half", {root_ + "/db.raw", root_ + "/empty dir"});
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(info.status().message(), Prefix("half") + "cannot copy '" + root_ + "/empty dir' to '" +
                                         SnapshotPath("half") +
                                         "/empty dir': it is not a regular file");
  EXPECT_FALSE(fs::exists(SnapshotPath("half")));
  EXPECT_THAT(*plugin_->ListSnapshots(id_), IsEmpty());
  EXPECT_EQ(ReadAll(root_ + "/db.raw"), "db data");
}

TEST_F(DirSnapshotTest, ExistingNameIsAlreadyExistsAndKeepsTheFirst) {
  ASSERT_TRUE(Snapshot("b1", {root_ + "/db.raw"}).ok());
  absl::StatusOr<plugin::SnapshotInfo> again = Snapshot("b1", {root_ + "/images/web01.qcow2"});
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(again.status().message(),
            "snapshot 'b1' of dir volume 'gold' already exists ('" + SnapshotPath("b1") + "')");
  EXPECT_EQ(ReadAll(SnapshotPath("b1") + "/db.raw"), "db data");
  EXPECT_FALSE(fs::exists(SnapshotPath("b1") + "/images"));
}

absl::StatusOr<plugin::SnapshotInfo> Append(plugin::StoragePlugin& plugin, const std::string& id,
                                            const std::string& name,
                                            std::vector<std::string> files) {
  plugin::SnapshotRequest request{id, name, std::move(files)};
  request.append = true;
  return plugin.CreateSnapshot(request);
}

TEST_F(DirSnapshotTest, AppendAddsFilesToTheSnapshotAndReturnsThoseFiles) {
  EXPECT_TRUE(plugin_->CanAppendToSnapshot());
  ASSERT_TRUE(Snapshot("b1", {root_ + "/db.raw"}).ok());
  Write(root_ + "/db.raw", "changed before the append");
  absl::StatusOr<plugin::SnapshotInfo> info =
      Append(*plugin_, id_, "b1", {root_ + "/images/web01.qcow2"});
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->snapshot_id, "b1");
  EXPECT_EQ(info->path, SnapshotPath("b1"));
  EXPECT_THAT(info->method, ::testing::AnyOf("reflink", "copy"));
  ASSERT_EQ(info->files.size(), 1u);  // only this call's
  EXPECT_EQ(info->files[0].source_path, root_ + "/images/web01.qcow2");
  EXPECT_EQ(info->files[0].path_in_snapshot, "images/web01.qcow2");
  EXPECT_EQ(info->files[0].size_bytes, 10u);
  // Both in the one snapshot; the earlier copy is as it was taken.
  EXPECT_EQ(ReadAll(SnapshotPath("b1") + "/images/web01.qcow2"), "web01 data");
  EXPECT_EQ(ReadAll(SnapshotPath("b1") + "/db.raw"), "db data");
  EXPECT_THAT(*plugin_->ListSnapshots(id_), ElementsAre("b1"));
}

TEST_F(DirSnapshotTest, AppendToAMissingSnapshotIsNotFoundAndMakesNothing) {
  absl::StatusOr<plugin::SnapshotInfo> info = Append(*plugin_, id_, "b9", {root_ + "/db.raw"});
  EXPECT_EQ(info.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(info.status().message()),
              ::testing::StartsWith("cannot add 1 files to snapshot 'b9' of dir volume 'gold': "));
  EXPECT_FALSE(fs::exists(SnapshotPath("b9")));
}

TEST_F(DirSnapshotTest, AppendOfAFileAlreadyInItIsAlreadyExistsAndAddsNothing) {
  ASSERT_TRUE(Snapshot("b1", {root_ + "/db.raw"}).ok());
  absl::StatusOr<plugin::SnapshotInfo> info =
      Append(*plugin_, id_, "b1", {root_ + "/images/web01.qcow2", root_ + "/db.raw"});
  EXPECT_EQ(info.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(info.status().message(),
            "cannot add 2 files to snapshot 'b1' of dir volume 'gold': 'db.raw' is already in it "
            "('" +
                SnapshotPath("b1") + "/db.raw')");
  EXPECT_FALSE(fs::exists(SnapshotPath("b1") + "/images"));
  EXPECT_EQ(ReadAll(SnapshotPath("b1") + "/db.raw"), "db data");
}

TEST_F(DirSnapshotTest, AppendFailureHalfWayRemovesOnlyWhatThisCallAdded) {
  ASSERT_TRUE(Snapshot("b1", {root_ + "/db.raw"}).ok());
  // The first file is cloned (into a directory this call creates), then the directory fails.
  absl::StatusOr<plugin::SnapshotInfo> info =
      Append(*plugin_, id_, "b1", {root_ + "/images/web01.qcow2", root_ + "/empty dir"});
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(info.status().message(),
            "cannot add 2 files to snapshot 'b1' of dir volume 'gold': cannot copy '" + root_ +
                "/empty dir' to '" + SnapshotPath("b1") + "/empty dir': it is not a regular file");
  EXPECT_FALSE(fs::exists(SnapshotPath("b1") + "/images"));
  EXPECT_FALSE(fs::exists(SnapshotPath("b1") + "/empty dir"));
  EXPECT_EQ(ReadAll(SnapshotPath("b1") + "/db.raw"), "db data");
  EXPECT_THAT(*plugin_->ListSnapshots(id_), ElementsAre("b1"));
  // The snapshot takes further files afterwards.
  absl::StatusOr<plugin::SnapshotInfo> again =
      Append(*plugin_, id_, "b1", {root_ + "/images/web01.qcow2"});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(ReadAll(SnapshotPath("b1") + "/images/web01.qcow2"), "web01 data");
}

TEST_F(DirSnapshotTest, UnknownVolumeIsNotFound) {
  const std::string unknown = "sv:dir:fake:/elsewhere";
  const std::string message = "no dir volume has the id '" + unknown +
                              "' (a volume is known once discovery has reported it)";
  absl::StatusOr<plugin::SnapshotInfo> info = plugin_->CreateSnapshot({unknown, "s", {"/x"}});
  EXPECT_EQ(info.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(info.status().message(), message);
  EXPECT_EQ(plugin_->DeleteSnapshot(unknown, "s").message(), message);
  EXPECT_EQ(plugin_->ListSnapshots(unknown).status().message(), message);
  // A volume reported by ClaimFile is known too.
  auto fresh = MakeDirPlugin({"h", {{"gold", root_}}});
  EXPECT_EQ(fresh->ListSnapshots(id_).status().code(), absl::StatusCode::kNotFound);
  ASSERT_EQ(fresh->ClaimFile(*locator_.Locate(root_ + "/db.raw"), locator_).size(), 1u);
  EXPECT_TRUE(fresh->ListSnapshots(id_).ok());
}

TEST_F(DirSnapshotTest, DeleteRemovesTheTreeButNeverFollowsSymlinksOutOfIt) {
  ASSERT_TRUE(Snapshot("b1", {root_ + "/images/web01.qcow2"}).ok());
  Write(dir_ + "/precious/keep.txt", "keep");
  fs::create_symlink(dir_ + "/precious", SnapshotPath("b1") + "/images/dir-link");
  fs::create_symlink(dir_ + "/precious/keep.txt", SnapshotPath("b1") + "/file-link");
  Write(root_ + "/.strata-snapshots/b1.manifest.json", "{}");
  ASSERT_TRUE(plugin_->DeleteSnapshot(id_, "b1").ok());
  EXPECT_FALSE(fs::exists(SnapshotPath("b1")));
  EXPECT_EQ(ReadAll(dir_ + "/precious/keep.txt"), "keep");
  EXPECT_TRUE(fs::exists(root_ + "/.strata-snapshots/b1.manifest.json"));  // the agent's
  EXPECT_EQ(ReadAll(root_ + "/images/web01.qcow2"), "web01 data");

  absl::Status again = plugin_->DeleteSnapshot(id_, "b1");
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(again.message(),
            "snapshot 'b1' of dir volume 'gold' not found ('" + SnapshotPath("b1") + "')");

  // A snapshot name that is a symlink to elsewhere is refused, and elsewhere is untouched.
  fs::create_symlink(dir_ + "/precious", SnapshotPath("evil"));
  absl::Status evil = plugin_->DeleteSnapshot(id_, "evil");
  EXPECT_EQ(evil.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(evil.message(), "snapshot '" + SnapshotPath("evil") +
                                "' is not a directory (or a symlink); not deleting it");
  EXPECT_EQ(ReadAll(dir_ + "/precious/keep.txt"), "keep");
}

TEST_F(DirSnapshotTest, SnapshotDirectoryThatIsASymlinkIsRefused) {
  fs::create_directories(dir_ + "/elsewhere");
  fs::create_symlink(dir_ + "/elsewhere", root_ + "/.strata-snapshots");
  absl::StatusOr<plugin::SnapshotInfo> info = Snapshot("b1", {root_ + "/db.raw"});
  EXPECT_EQ(info.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(info.status().message(), "the snapshot directory '" + root_ +
                                         "/.strata-snapshots' of dir volume 'gold' is not a "
                                         "directory (or a symlink)");
  EXPECT_TRUE(fs::is_empty(dir_ + "/elsewhere"));
}

}  // namespace
}  // namespace strata::plugins::dir
