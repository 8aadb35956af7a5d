// Discovery end to end on the embedded default: the sample site's test-driver host files (real
// libvirt test driver) with real disk images, resolved against this machine's live /proc and /sys.
#include "strata/agent/discovery.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "dir_plugin.h"
#include "libvirt_hypervisor.h"
#include "strata/agent/config.h"
#include "strata/agent/sample_site.h"
#include "strata/core/query.h"

namespace strata::agent {
namespace {

using core::Graph;
using core::NodeType;

class DiscoveryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    site_dir_ = new std::string(std::filesystem::temp_directory_path() /
                                ("strata-discovery-test-" + std::to_string(getpid())));
    absl::StatusOr<SampleSite> site = GenerateSampleSite(*site_dir_);
    ASSERT_TRUE(site.ok()) << site.status();
    site_ = new SampleSite(*std::move(site));
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*site_dir_);
    delete site_;
    delete site_dir_;
  }

  // Discovers one host of the sample site.
  Graph Discover(const std::string& host, std::vector<std::string> vms = {}) {
    absl::StatusOr<AgentConfig> config = LoadAgentConfig(site_->dir + "/agents/" + host + ".toml");
    EXPECT_TRUE(config.ok()) << config.status();
    auto hypervisor = hypervisor::LibvirtHypervisor::Open(config->connect);
    EXPECT_TRUE(hypervisor.ok()) << hypervisor.status();
    auto dir = plugins::dir::MakeDirPlugin({config->host_id, config->dir_volumes});
    storage::StorageResolver resolver({config->host_id, {}, {dir.get()}});
    absl::StatusOr<Graph> graph = DiscoverHost(**hypervisor, resolver, {host, std::move(vms)});
    EXPECT_TRUE(graph.ok()) << graph.status();
    return *std::move(graph);
  }

  // Names of the nodes of `type` reached downward from the VM named `vm`.
  static std::set<std::string> Below(const Graph& graph, const std::string& vm, NodeType type) {
    core::Query query;
    query.select.type = NodeType::kVm;
    query.select.matches = {{"name", vm}};
    query.direction = core::Direction::kDown;  // everything below, so backing files count too
    absl::StatusOr<core::Subgraph> result = core::RunQuery(graph, query);
    EXPECT_TRUE(result.ok()) << result.status();
    std::set<std::string> names;
    for (core::NodeIndex node : result->nodes) {
      if (graph.Type(node) == type) names.insert(std::string(graph.Name(node)));
    }
    return names;
  }

  static std::string* site_dir_;
  static SampleSite* site_;
};
std::string* DiscoveryTest::site_dir_ = nullptr;
SampleSite* DiscoveryTest::site_ = nullptr;

TEST_F(DiscoveryTest, FindsEveryVmOfTheHost) {
  Graph graph = Discover("host-a");
  std::set<std::string> vms;
  for (core::NodeIndex node : graph.NodesOfType(NodeType::kVm)) {
    vms.insert(std::string(graph.Name(node)));
    EXPECT_EQ(graph.Attr(node, "host"), "host-a");
  }
  EXPECT_EQ(vms, (std::set<std::string>{"cache01", "db01", "mail01", "web01", "web02"}));
  ASSERT_EQ(graph.NodesOfType(NodeType::kHost).size(), 1u);
  EXPECT_EQ(graph.Name(graph.NodesOfType(NodeType::kHost)[0]), "host-a");
}

TEST_F(DiscoveryTest, FileDiskChainReachesItsStorageSystem) {
  Graph graph = Discover("host-a");
  // web01's overlay and the base image it is backed by are both files on volume 'gold'.
  std::set<std::string> files = Below(graph, "web01", NodeType::kFile);
  EXPECT_TRUE(files.contains(site_->dir + "/volumes/gold/web01.qcow2"));
  EXPECT_TRUE(files.contains(site_->dir + "/volumes/gold/base/debian12-base.qcow2"));
  EXPECT_EQ(Below(graph, "web01", NodeType::kStorageVolume).count("gold"), 1u);
  EXPECT_EQ(Below(graph, "web01", NodeType::kMountPoint).size(), 1u);
  EXPECT_EQ(Below(graph, "web01", NodeType::kFsVolume).size(), 1u);
  EXPECT_FALSE(Below(graph, "web01", NodeType::kStorageSystem).empty());
}

TEST_F(DiscoveryTest, PassthroughDiskEntersAtTheBlockDevice) {
  Graph graph = Discover("host-a", {"db01"});
  ASSERT_EQ(graph.NodesOfType(NodeType::kPassthroughDisk).size(), 1u);
  core::NodeIndex disk = graph.NodesOfType(NodeType::kPassthroughDisk)[0];
  EXPECT_EQ(graph.Name(disk), "sdb");
  ASSERT_EQ(graph.OutEdges(disk).size(), 1u);
  EXPECT_EQ(graph.Type(graph.OutEdges(disk)[0].node), NodeType::kBlockDevice);
}

TEST_F(DiscoveryTest, RbdDiskMapsToTheCephCluster) {
  Graph graph = Discover("host-b", {"db02"});
  std::set<std::string> systems = Below(graph, "db02", NodeType::kStorageSystem);
  bool has_ceph = false;
  for (core::NodeIndex node : graph.NodesOfType(NodeType::kStorageSystem)) {
    if (graph.Id(node).starts_with("ss:ceph:")) has_ceph = true;
  }
  EXPECT_TRUE(has_ceph);
  EXPECT_GE(systems.size(), 2u);  // the local disk holding the site, and the Ceph cluster
}

TEST_F(DiscoveryTest, VolumeDiskIsResolvedThroughItsPool) {
  Graph graph = Discover("host-c", {"app03"});
  EXPECT_TRUE(
      Below(graph, "app03", NodeType::kFile).contains(site_->dir + "/volumes/gold/app03.qcow2"));
}

TEST_F(DiscoveryTest, PathWithSpaceAndNonAsciiResolves) {
  Graph graph = Discover("host-c", {"report01"});
  std::set<std::string> files = Below(graph, "report01", NodeType::kFile);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(*files.begin(), site_->dir + "/volumes/silver/ünïcode disks/report 01.raw");
  EXPECT_EQ(Below(graph, "report01", NodeType::kStorageVolume).count("silver"), 1u);
}

TEST_F(DiscoveryTest, EmptyCdromIsKeptWithoutSource) {
  Graph graph = Discover("host-b", {"app02"});
  std::optional<core::NodeIndex> cdrom =
      graph.Find("disk:5a3f0000-0000-4000-8000-000002000005:hdc");
  ASSERT_TRUE(cdrom.has_value());
  EXPECT_EQ(graph.Attr(*cdrom, "source"), "none");
  EXPECT_TRUE(graph.OutEdges(*cdrom).empty());
}

TEST_F(DiscoveryTest, SharedVolumeIsOneNodeAcrossHosts) {
  Graph merged = Discover("host-a");
  ASSERT_TRUE(merged.Merge(Discover("host-b")).ok());
  int gold = 0;
  for (core::NodeIndex node : merged.NodesOfType(NodeType::kStorageVolume)) {
    if (merged.Name(node) == "gold") ++gold;
  }
  EXPECT_EQ(gold, 1);
  // Upward from 'gold': the VMs of both hosts whose disks are on it.
  core::Query query;
  query.select = {NodeType::kStorageVolume, {{"name", "gold"}}};
  query.direction = core::Direction::kUp;
  query.to_type = NodeType::kVm;
  absl::StatusOr<core::Subgraph> result = core::RunQuery(merged, query);
  ASSERT_TRUE(result.ok()) << result.status();
  std::set<std::string> vms;
  for (core::NodeIndex node : result->nodes) {
    if (merged.Type(node) == NodeType::kVm) vms.insert(std::string(merged.Name(node)));
  }
  EXPECT_EQ(vms, (std::set<std::string>{"db01", "web01", "web02", "web03", "web04"}));
}

TEST_F(DiscoveryTest, UnknownVmIsNotFound) {
  absl::StatusOr<AgentConfig> config = LoadAgentConfig(site_->dir + "/agents/host-a.toml");
  ASSERT_TRUE(config.ok());
  auto hypervisor = hypervisor::LibvirtHypervisor::Open(config->connect);
  ASSERT_TRUE(hypervisor.ok());
  auto dir = plugins::dir::MakeDirPlugin({config->host_id, config->dir_volumes});
  storage::StorageResolver resolver({config->host_id, {}, {dir.get()}});
  absl::StatusOr<Graph> graph = DiscoverHost(**hypervisor, resolver, {"host-a", {"nope"}});
  ASSERT_FALSE(graph.ok());
  EXPECT_EQ(graph.status().code(), absl::StatusCode::kNotFound);
}

// A host file written by hand: a VM name full of shell and XML metacharacters, a disk whose file
// does not exist, and a VM with no disks at all.
TEST(DiscoveryBadInputTest, OddNamesAndMissingFilesAreKeptAndMarked) {
  const std::string dir =
      std::filesystem::temp_directory_path() / ("strata-discovery-odd-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string host_file = dir + "/host.xml";
  {
    std::ofstream out(host_file);
    out << R"(<?xml version="1.0"?>
<node>
  <domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0">
    <name>a&amp;b&lt;c&gt;'"$(rm -rf x);`id`</name>
    <uuid>6b000000-0000-4000-8000-000000000001</uuid>
    <memory unit="MiB">64</memory><vcpu>1</vcpu><os><type>hvm</type></os>
    <devices>
      <disk type="file" device="disk"><driver name="qemu" type="qcow2"/>
        <source file=")"
        << dir << R"(/missing disk.qcow2"/><target dev="vda" bus="virtio"/></disk>
    </devices>
    <test:runstate>5</test:runstate>
  </domain>
  <domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0">
    <name>diskless</name>
    <uuid>6b000000-0000-4000-8000-000000000002</uuid>
    <memory unit="MiB">64</memory><vcpu>1</vcpu><os><type>hvm</type></os>
    <test:runstate>5</test:runstate>
  </domain>
</node>
)";
  }
  auto hypervisor = hypervisor::LibvirtHypervisor::Open("test://" + host_file);
  ASSERT_TRUE(hypervisor.ok()) << hypervisor.status();
  storage::StorageResolver resolver({"odd-host", {}, {}});
  absl::StatusOr<Graph> graph = DiscoverHost(**hypervisor, resolver, {"odd-host", {}});
  ASSERT_TRUE(graph.ok()) << graph.status();
  std::filesystem::remove_all(dir);

  std::optional<core::NodeIndex> odd = graph->Find("vm:6b000000-0000-4000-8000-000000000001");
  ASSERT_TRUE(odd.has_value());
  EXPECT_EQ(graph->Name(*odd), "a&b<c>'\"$(rm -rf x);`id`");
  std::optional<core::NodeIndex> disk =
      graph->Find("disk:6b000000-0000-4000-8000-000000000001:vda");
  ASSERT_TRUE(disk.has_value());
  ASSERT_EQ(graph->OutEdges(*disk).size(), 1u);
  core::NodeIndex file = graph->OutEdges(*disk)[0].node;
  EXPECT_EQ(graph->Type(file), NodeType::kFile);
  EXPECT_EQ(graph->Attr(file, "resolved"), "false");
  EXPECT_EQ(graph->Attr(file, "reason"), "file '" + dir + "/missing disk.qcow2' not found");

  std::optional<core::NodeIndex> diskless = graph->Find("vm:6b000000-0000-4000-8000-000000000002");
  ASSERT_TRUE(diskless.has_value());
  EXPECT_EQ(graph->OutEdges(*diskless).size(), 1u);  // only its vm_config
}

// 10,000 VMs on one host, each with its own disk file on one dir volume: every VM and disk is in
// the graph, and all of them share one storage_volume node.
TEST(DiscoveryScaleTest, TenThousandVmsOnOneHost) {
  constexpr int kVms = 10000;
  const std::string dir =
      std::filesystem::temp_directory_path() / ("strata-discovery-10k-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir + "/vol");
  const std::string host_file = dir + "/host.xml";
  {
    std::ofstream out(host_file);
    out << "<?xml version='1.0'?>\n<node>\n";
    for (int i = 0; i < kVms; ++i) {
      char uuid[40];
      snprintf(uuid, sizeof uuid, "7c000000-0000-4000-8000-%012d", i);
      const std::string disk = dir + "/vol/vm" + std::to_string(i) + ".raw";
      std::ofstream(disk).put('x');
      out << "<domain type='test'><name>vm" << i << "</name><uuid>" << uuid
          << "</uuid><memory>65536</memory><os><type>hvm</type></os><devices>"
          << "<disk type='file' device='disk'><source file='" << disk
          << "'/><target dev='vda'/></disk></devices></domain>\n";
    }
    out << "</node>\n";
  }
  auto hypervisor = hypervisor::LibvirtHypervisor::Open("test://" + host_file);
  ASSERT_TRUE(hypervisor.ok()) << hypervisor.status();
  auto dir_plugin = plugins::dir::MakeDirPlugin({"big-host", {{"vol", dir + "/vol"}}});
  storage::StorageResolver resolver({"big-host", {}, {dir_plugin.get()}});
  absl::StatusOr<Graph> graph = DiscoverHost(**hypervisor, resolver, {"big-host", {}});
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(graph.ok()) << graph.status();
  EXPECT_EQ(graph->NodesOfType(NodeType::kVm).size(), static_cast<size_t>(kVms));
  EXPECT_EQ(graph->NodesOfType(NodeType::kVirtualDisk).size(), static_cast<size_t>(kVms));
  EXPECT_EQ(graph->NodesOfType(NodeType::kFile).size(), static_cast<size_t>(kVms));
  std::vector<core::NodeIndex> volumes = graph->FindByName("vol");
  ASSERT_EQ(volumes.size(), 1u);
  EXPECT_EQ(graph->Type(volumes[0]), NodeType::kStorageVolume);
  EXPECT_EQ(graph->InEdges(volumes[0]).size(), static_cast<size_t>(kVms));
}

}  // namespace
}  // namespace strata::agent
