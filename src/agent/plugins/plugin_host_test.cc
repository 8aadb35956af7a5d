// The plug-in host against real shared objects: the libvirt, dir and btrfs plug-ins from the
// build tree, and test plug-ins (src/agent/plugins/testdata) that each have one defect.
#include "strata/agent/plugin_host.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace strata::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const std::string kPluginDir = STRATA_PLUGIN_DIR;
const std::string kTestDir = STRATA_TEST_PLUGIN_DIR;
const std::string kLibvirt = kPluginDir + "/libstrata_libvirt.so";
const std::string kDir = kPluginDir + "/libstrata_dir.so";
const std::string kBtrfs = kPluginDir + "/libstrata_btrfs.so";
const std::string kApi = std::to_string(plugin::kPluginApiVersion);

TEST(PluginHostTest, LoadsTheRealPluginsWithKindsAndCapabilities) {
  PluginHost host;
  absl::StatusOr<int> loaded = host.LoadDirectory(kPluginDir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, 3);
  EXPECT_THAT(host.errors(), IsEmpty());
  ASSERT_EQ(host.plugins().size(), 3u);
  // Sorted by file name: libstrata_btrfs.so, libstrata_dir.so, libstrata_libvirt.so.
  const LoadedPlugin& btrfs = host.plugins()[0];
  EXPECT_EQ(btrfs.descriptor.name, "btrfs");
  EXPECT_EQ(plugin::PluginKindName(btrfs.descriptor.kind), "storage");
  EXPECT_THAT(btrfs.descriptor.capabilities, ElementsAre("discovery", "snapshot"));
  EXPECT_EQ(btrfs.file, kBtrfs);
  const LoadedPlugin& dir = host.plugins()[1];
  EXPECT_EQ(dir.descriptor.name, "dir");
  EXPECT_EQ(plugin::PluginKindName(dir.descriptor.kind), "storage");
  EXPECT_THAT(dir.descriptor.capabilities, ElementsAre("discovery", "snapshot", "reflink"));
  EXPECT_EQ(dir.file, kDir);
  const LoadedPlugin& libvirt = host.plugins()[2];
  EXPECT_EQ(libvirt.descriptor.name, "libvirt");
  EXPECT_EQ(plugin::PluginKindName(libvirt.descriptor.kind), "hypervisor");
  EXPECT_THAT(libvirt.descriptor.capabilities,
              ElementsAre("discovery", "domain-xml", "storage-pools", "events"));
  EXPECT_EQ(libvirt.file, kLibvirt);

  // The factories work across the shared-object boundary.
  auto hypervisor = host.OpenHypervisor("libvirt", "test:///default");
  ASSERT_TRUE(hypervisor.ok()) << hypervisor.status();
  auto info = (*hypervisor)->GetHostInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->hypervisor_type, "TEST");
  EXPECT_TRUE(host.HasStorage("dir"));
  for (const std::string name : {"dir", "btrfs"}) {
    auto storage = host.MakeStorage(name, {"h", {{"gold", "/srv/gold"}}});
    ASSERT_TRUE(storage.ok()) << storage.status();
    EXPECT_EQ((*storage)->Name(), name);
  }
}

// A storage plug-in that implements only what every plug-in must.
class DiscoveryOnlyPlugin final : public plugin::StoragePlugin {
 public:
  std::string Name() const override { return "bare"; }
  std::vector<plugin::VolumeClaim> ClaimFile(const plugin::FileLocation&,
                                             plugin::PathLocator&) override {
    return {};
  }
  std::vector<plugin::VolumeClaim> Volumes(plugin::PathLocator&) override { return {}; }
};

TEST(PluginHostTest, OperationsAPluginLacksAreUnimplemented) {
  DiscoveryOnlyPlugin bare;
  absl::StatusOr<plugin::SnapshotInfo> snapshot =
      bare.CreateSnapshot({"sv:dir:x:/", "b1", {"/x/disk.img"}});
  EXPECT_EQ(snapshot.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(snapshot.status().message(), "storage plug-in 'bare' does not support snapshots");
  EXPECT_EQ(bare.DeleteSnapshot("sv:dir:x:/", "s").code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(bare.ListSnapshots("sv:dir:x:/").status().code(), absl::StatusCode::kUnimplemented);

  // The real storage plug-ins implement them across the shared-object boundary: an unknown
  // volume is NotFound, not Unimplemented.
  PluginHost host;
  ASSERT_TRUE(host.LoadFile(kDir).ok());
  ASSERT_TRUE(host.LoadFile(kBtrfs).ok());
  for (const std::string name : {"dir", "btrfs"}) {
    auto storage = host.MakeStorage(name, {"h", {}});
    ASSERT_TRUE(storage.ok()) << storage.status();
    const std::string id = "sv:" + name + ":x:/";
    snapshot = (*storage)->CreateSnapshot({id, "b1", {"/x/disk.img"}});
    EXPECT_EQ(snapshot.status().code(), absl::StatusCode::kNotFound) << name;
    EXPECT_EQ(snapshot.status().message(),
              "no " + name + " volume has the id '" + id +
                  "' (a volume is known once discovery has reported it)");
    EXPECT_EQ((*storage)->DeleteSnapshot(id, "s").code(), absl::StatusCode::kNotFound);
    EXPECT_EQ((*storage)->ListSnapshots(id).status().code(), absl::StatusCode::kNotFound);
  }
}

TEST(PluginHostTest, StorageFactoriesRejectRelativeVolumePaths) {
  PluginHost host;
  ASSERT_TRUE(host.LoadFile(kDir).ok());
  ASSERT_TRUE(host.LoadFile(kBtrfs).ok());
  auto storage = host.MakeStorage("dir", {"h", {{"gold", "rel"}}});
  ASSERT_FALSE(storage.ok());
  EXPECT_EQ(storage.status().message(), "dir volume 'gold': path 'rel' must be absolute");
  storage = host.MakeStorage("btrfs", {"h", {{"fast", "rel"}}});
  ASSERT_FALSE(storage.ok());
  EXPECT_EQ(storage.status().message(), "btrfs volume 'fast': path 'rel' must be absolute");
}

TEST(PluginHostTest, UnknownPluginNamesAreNotFound) {
  PluginHost host;
  auto hypervisor = host.OpenHypervisor("xen", "xen:///");
  EXPECT_EQ(hypervisor.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(hypervisor.status().message(), "no hypervisor plug-in 'xen' is loaded");
  auto storage = host.MakeStorage("zfs", {});
  EXPECT_EQ(storage.status().message(), "no storage plug-in 'zfs' is loaded");
}

struct BadCase {
  std::string file;
  std::string message;
};

TEST(PluginHostTest, EachBrokenPluginGivesItsErrorNamingTheFileAndTheOthersKeepWorking) {
  const std::vector<BadCase> cases = {
      {kTestDir + "/missing.so", "plug-in '" + kTestDir + "/missing.so' not found"},
      {kTestDir + "/libtest_no_entry.so",
       "plug-in '" + kTestDir + "/libtest_no_entry.so' has no entry point 'strata_plugin_init'"},
      {kTestDir + "/libtest_other_api.so",
       "plug-in '" + kTestDir +
           "/libtest_other_api.so' was built for plug-in API 99, this agent speaks " + kApi},
      {kTestDir + "/libtest_no_version_symbol.so",
       "plug-in '" + kTestDir +
           "/libtest_no_version_symbol.so' was built for another plug-in API, this agent speaks " +
           kApi},
      {kTestDir + "/libtest_init_fails.so",
       "plug-in '" + kTestDir +
           "/libtest_init_fails.so' failed to initialise: cannot reach the frobnicator at "
           "/dev/frob0"},
  };
  PluginHost host;
  ASSERT_TRUE(host.LoadFile(kLibvirt).ok());
  std::vector<std::string> expected;
  for (const BadCase& bad : cases) {
    absl::Status status = host.LoadFile(bad.file);
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << bad.file;
    EXPECT_EQ(status.message(), bad.message);
    expected.push_back(bad.message);
  }
  ASSERT_TRUE(host.LoadFile(kDir).ok());
  EXPECT_EQ(host.errors(), expected);
  // What the failed init registered was dropped; the good plug-ins are all there.
  EXPECT_FALSE(host.HasStorage("half-made"));
  ASSERT_EQ(host.plugins().size(), 2u);
  EXPECT_TRUE(host.OpenHypervisor("libvirt", "test:///default").ok());
  EXPECT_TRUE(host.MakeStorage("dir", {}).ok());
}

TEST(PluginHostTest, NotASharedObjectCannotBeLoaded) {
  const std::string file = ::testing::TempDir() + "/libnot_elf.so";
  { std::ofstream(file) << "not an ELF file\n"; }
  PluginHost host;
  absl::Status status = host.LoadFile(file);
  EXPECT_TRUE(
      std::string(status.message()).starts_with("plug-in '" + file + "' cannot be loaded: "))
      << status;
  std::filesystem::remove(file);
}

TEST(PluginHostTest, LoadingTheSamePluginTwiceKeepsTheFirst) {
  PluginHost host;
  ASSERT_TRUE(host.LoadFile(kDir).ok());
  ASSERT_TRUE(host.LoadFile(kDir).ok());
  EXPECT_EQ(host.plugins().size(), 1u);
  EXPECT_THAT(host.errors(),
              ElementsAre("plug-in '" + kDir +
                          "': storage plug-in 'dir' is already loaded; ignoring this one"));
}

TEST(PluginHostTest, DirectoryOfBrokenPluginsLoadsNoneAndRecordsEach) {
  PluginHost host;
  absl::StatusOr<int> loaded = host.LoadDirectory(kTestDir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, 0);
  EXPECT_EQ(host.errors().size(), 4u);
}

TEST(PluginHostTest, MissingDirectoryIsAnError) {
  PluginHost host;
  absl::StatusOr<int> loaded = host.LoadDirectory("/nonexistent/plugins");
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().message(),
            "plug-in directory '/nonexistent/plugins' cannot be read: No such file or directory");
  EXPECT_THAT(host.errors(), ElementsAre(std::string(loaded.status().message())));
}

TEST(PluginHostTest, DefaultDirectoryIsBesideTheBinary) {
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
  const std::filesystem::path bin = std::filesystem::path(exe).parent_path();
  EXPECT_EQ(PluginHost::DefaultPluginDirectory(),
            (bin.parent_path() / "lib" / "strata" / "plugins").string());
}

}  // namespace
}  // namespace strata::agent
