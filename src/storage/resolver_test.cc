#include "strata/storage/resolver.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "dir_plugin.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "strata/core/graph.h"
#include "sysfs.h"

namespace strata::storage {
namespace {

using core::EdgeType;
using core::Graph;
using core::NodeIndex;
using core::NodeType;
using hypervisor::DiskSource;
using hypervisor::DiskSourceKind;
using hypervisor::NetworkHost;
using ::testing::Contains;
using ::testing::IsEmpty;
using ::testing::IsSupersetOf;
using ::testing::Not;
using DirVolume = plugin::StorageVolumeConfig;

std::string SystemDir(const std::string& name) {
  return std::string(STRATA_TEST_DATA_DIR) + "/systems/" + name;
}

// Every edge of the graph as "from -type-> to".
std::vector<std::string> Edges(const Graph& g) {
  std::vector<std::string> out;
  for (NodeIndex n : g.AllNodes()) {
    for (const core::EdgeRef& e : g.OutEdges(n)) {
      out.push_back(std::string(g.Id(n)) + " -" + std::string(core::EdgeTypeName(e.type)) + "-> " +
                    std::string(g.Id(e.node)));
    }
  }
  return out;
}

std::string AttrOf(const Graph& g, std::string_view id, std::string_view key) {
  auto node = g.Find(id);
  if (!node) return "<no node " + std::string(id) + ">";
  auto value = g.Attr(*node, key);
  return value ? std::string(*value) : "<no attr " + std::string(key) + ">";
}

std::string NameOf(const Graph& g, std::string_view id) {
  auto node = g.Find(id);
  return node ? std::string(g.Name(*node)) : "<no node " + std::string(id) + ">";
}

class RecordedTest : public ::testing::Test {
 protected:
  void Load(const std::string& tree, const std::string& host,
            std::vector<DirVolume> dir_volumes = {}) {
    absl::StatusOr<SystemView> view = RecordedSystemView(SystemDir(tree));
    ASSERT_TRUE(view.ok()) << view.status();
    view_ = *view;
    ResolverOptions options;
    options.host_id = host;
    options.system = *view;
    dir_plugin_ = plugins::dir::MakeDirPlugin({host, std::move(dir_volumes)});
    options.storage_plugins = {dir_plugin_.get()};
    resolver_ = std::make_unique<StorageResolver>(std::move(options));
  }

  std::string File(const std::string& path) {
    absl::StatusOr<NodeIndex> node = resolver_->ResolveFile(graph_, path);
    EXPECT_TRUE(node.ok()) << node.status();
    return node.ok() ? std::string(graph_.Id(*node)) : "";
  }
  std::string Block(const std::string& path) {
    absl::StatusOr<NodeIndex> node = resolver_->ResolveBlockDevice(graph_, path);
    EXPECT_TRUE(node.ok()) << node.status();
    return node.ok() ? std::string(graph_.Id(*node)) : "";
  }
  std::string Network(const DiskSource& source) {
    absl::StatusOr<NodeIndex> node = resolver_->ResolveNetwork(graph_, source);
    EXPECT_TRUE(node.ok()) << node.status();
    return node.ok() ? std::string(graph_.Id(*node)) : "";
  }

  SystemView view_;
  std::unique_ptr<plugin::StoragePlugin> dir_plugin_;  // before the resolver that uses it
  std::unique_ptr<StorageResolver> resolver_;
  Graph graph_;
};

// ---------------------------------------------------------------------------------------------
// Recorded tree: tests/data/systems/hv01-datacenter (hand-made, modelled on real sysfs layouts).

constexpr char kImagesFs[] = "fs:c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f";
constexpr char kSanFs[] = "fs:9b8c7d6e-5f4a-4b3c-8d2e-1f0a9b8c7d6e";
constexpr char kIqn[] = "iqn.2003-01.org.linux-iscsi.san01:vmstore";
constexpr char kSanWwid[] = "naa.6001405f3a2b4c5d6e7f8091a2b3c4d5";

TEST_F(RecordedTest, FileOnLvmOverFibreChannelLun) {
  // Recorded tree: hv01-datacenter (hand-made).
  Load("hv01-datacenter", "hv01");
  std::string file = File("/var/lib/libvirt/images/web01.qcow2");
  EXPECT_EQ(file, std::string("file:") + (kImagesFs + 3) + ":/web01.qcow2");
  EXPECT_THAT(Edges(graph_),
              IsSupersetOf(std::vector<std::string>{
                  file + " -on_mount-> mount:hv01:/var/lib/libvirt/images",
                  std::string("mount:hv01:/var/lib/libvirt/images -mounts-> ") + kImagesFs,
                  std::string(kImagesFs) + " -on_device-> blk:hv01:dm-3",
                  "blk:hv01:dm-3 -on_device-> blk:hv01:sdd",
                  "blk:hv01:sdd -is_lun-> lun:naa.600a098038303053453f463045727a41",
                  "lun:naa.600a098038303053453f463045727a41 -in_volume-> "
                  "sv:lun:naa.600a098038303053453f463045727a41",
                  "sv:lun:naa.600a098038303053453f463045727a41 -in_system-> "
                  "ss:scsi:NETAPP:LUN C-Mode"}));
  EXPECT_EQ(AttrOf(graph_, file, "path"), "/var/lib/libvirt/images/web01.qcow2");
  EXPECT_EQ(AttrOf(graph_, file, "size"), "0");
  EXPECT_EQ(AttrOf(graph_, file, "resolved"), "<no attr resolved>");
  EXPECT_EQ(AttrOf(graph_, kImagesFs, "fstype"), "ext4");
  EXPECT_EQ(AttrOf(graph_, kImagesFs, "label"), "images");
  EXPECT_EQ(AttrOf(graph_, kImagesFs, "source"), "/dev/mapper/vgdata-lvimages");
  EXPECT_EQ(NameOf(graph_, kImagesFs), "images");
  EXPECT_EQ(AttrOf(graph_, "mount:hv01:/var/lib/libvirt/images", "options"), "rw,relatime");
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:dm-3", "kind"), "dm");
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:dm-3", "dm_target"), "lvm");
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:dm-3", "dm_name"), "vgdata-lvimages");
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:dm-3", "major_minor"), "253:3");
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:sdd", "size"), "1099511627776");
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:sdd", "transport"), "fc");
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:sdd", "hctl"), "5:0:0:3");
  EXPECT_EQ(AttrOf(graph_, "lun:naa.600a098038303053453f463045727a41", "lun"), "3");
}

TEST_F(RecordedTest, BindMountWithSpacesAndNonAsciiIsTheSameFile) {
  // Recorded tree: hv01-datacenter (hand-made): /tenant\040a of dm-3 bound at
  // "/srv/vm images/tenant ä".
  Load("hv01-datacenter", "hv01");
  std::string direct = File("/var/lib/libvirt/images/tenant a/db ü.qcow2");
  std::string bound = File("/srv/vm images/tenant ä/db ü.qcow2");
  EXPECT_EQ(direct, std::string("file:") + (kImagesFs + 3) + ":/tenant a/db ü.qcow2");
  EXPECT_EQ(bound, direct);
  EXPECT_THAT(Edges(graph_),
              IsSupersetOf(std::vector<std::string>{
                  direct + " -on_mount-> mount:hv01:/var/lib/libvirt/images",
                  direct + " -on_mount-> mount:hv01:/srv/vm images/tenant ä",
                  std::string("mount:hv01:/srv/vm images/tenant ä -mounts-> ") + kImagesFs}));
  // The node's name and path are those of the last path it was reached through.
  EXPECT_EQ(NameOf(graph_, direct), "/srv/vm images/tenant ä/db ü.qcow2");
}

TEST_F(RecordedTest, MultipathIscsiLunWithTwoSessions) {
  // Recorded tree: hv01-datacenter (hand-made): dm-0 (mpatha) over sdb (session1) and sdc
  // (session2, WWID only in vpd_pg83).
  Load("hv01-datacenter", "hv01");
  std::string file = File("/var/lib/libvirt/san/vm02.raw");
  EXPECT_EQ(file, std::string("file:") + (kSanFs + 3) + ":/vm02.raw");
  std::string lun = std::string("lun:") + kSanWwid;
  std::string sv = std::string("sv:lun:") + kSanWwid;
  std::string ss = std::string("ss:iscsi:") + kIqn;
  EXPECT_THAT(Edges(graph_),
              IsSupersetOf(std::vector<std::string>{
                  std::string(kSanFs) + " -on_device-> blk:hv01:dm-0",
                  "blk:hv01:dm-0 -on_device-> blk:hv01:sdb",
                  "blk:hv01:dm-0 -on_device-> blk:hv01:sdc", "blk:hv01:dm-0 -is_lun-> " + lun,
                  "blk:hv01:sdb -is_lun-> " + lun, "blk:hv01:sdc -is_lun-> " + lun,
                  lun + " -in_volume-> " + sv, sv + " -in_system-> " + ss}));
  EXPECT_EQ(NameOf(graph_, kSanFs), "san store");  // blkid export escapes the space
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:dm-0", "dm_target"), "multipath");
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:sdc", "wwid"), kSanWwid);
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:sdb", "transport"), "iscsi");
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:sdb", "iscsi_target"), kIqn);
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:sdb", "vendor"), "LIO-ORG");
  EXPECT_EQ(AttrOf(graph_, lun, "lun"), "1");
  EXPECT_EQ(AttrOf(graph_, ss, "portals"), "10.0.10.5:3260,10.0.20.5:3260");
  EXPECT_EQ(NameOf(graph_, ss), kIqn);
}

TEST_F(RecordedTest, BlockDevicesThroughDevSymlinks) {
  // Recorded tree: hv01-datacenter (hand-made): /dev/mapper, /dev/<vg>, /dev/disk/by-*.
  Load("hv01-datacenter", "hv01");
  EXPECT_EQ(Block("/dev/mapper/mpatha"), "blk:hv01:dm-0");
  EXPECT_EQ(Block("/dev/disk/by-id/dm-uuid-mpath-36001405f3a2b4c5d6e7f8091a2b3c4d5"),
            "blk:hv01:dm-0");
  EXPECT_EQ(Block("/dev/disk/by-path/ip-10.0.10.5:3260-iscsi-" + std::string(kIqn) + "-lun-1"),
            "blk:hv01:sdb");
  EXPECT_EQ(Block("/dev/vgdata/lvimages"), "blk:hv01:dm-3");
  EXPECT_EQ(Block("/dev/disk/by-path/pci-0000:05:00.0-fc-0x500a09808d2f6a10-lun-3"),
            "blk:hv01:sdd");
  EXPECT_EQ(Block("/dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456-part2"),
            "blk:hv01:nvme0n1p2");
  EXPECT_THAT(Edges(graph_), Contains("blk:hv01:nvme0n1p2 -on_device-> blk:hv01:nvme0n1"));
}

TEST_F(RecordedTest, NvmeNamespaceWithPartitions) {
  // Recorded tree: hv01-datacenter (hand-made): nvme0n1p2 (ext4) on nvme0n1.
  Load("hv01-datacenter", "hv01");
  std::string file = File("/var/lib/libvirt/nvme/vm03.qcow2");
  EXPECT_EQ(file, "file:8f7e6d5c-4b3a-4291-8807-f6e5d4c3b2a1:/vm03.qcow2");
  std::string nqn = "nqn.2014.08.org.nvmexpress:144d144dS5GXNF0R123456     Samsung SSD 980 PRO 1TB";
  EXPECT_THAT(Edges(graph_),
              IsSupersetOf(std::vector<std::string>{
                  "fs:8f7e6d5c-4b3a-4291-8807-f6e5d4c3b2a1 -on_device-> blk:hv01:nvme0n1p2",
                  "blk:hv01:nvme0n1p2 -on_device-> blk:hv01:nvme0n1",
                  "blk:hv01:nvme0n1 -is_lun-> lun:eui.002538b911b2c3d4",
                  "lun:eui.002538b911b2c3d4 -in_volume-> sv:lun:eui.002538b911b2c3d4",
                  "sv:lun:eui.002538b911b2c3d4 -in_system-> ss:nvme:" + nqn}));
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:nvme0n1p2", "kind"), "partition");
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:nvme0n1p2", "partition"), "2");
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:nvme0n1", "model"), "Samsung SSD 980 PRO 1TB");
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:nvme0n1", "serial"), "S5GXNF0R123456");
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:nvme0n1", "nsid"), "1");
  // The partition itself is no LUN.
  EXPECT_THAT(Edges(graph_),
              Not(Contains("blk:hv01:nvme0n1p2 -is_lun-> lun:eui.002538b911b2c3d4")));
}

TEST_F(RecordedTest, PartitionedSataDiskIsALocalDisk) {
  // Recorded tree: hv01-datacenter (hand-made): / on sda2 of an ATA SSD.
  Load("hv01-datacenter", "hv01");
  std::string file = File("/etc/hostname");
  EXPECT_EQ(file, "file:2f6d0c1e-8a4b-4c3d-9e5f-0a1b2c3d4e5f:/etc/hostname");
  EXPECT_THAT(Edges(graph_), IsSupersetOf(std::vector<std::string>{
                                 "fs:2f6d0c1e-8a4b-4c3d-9e5f-0a1b2c3d4e5f -on_device-> "
                                 "blk:hv01:sda2",
                                 "blk:hv01:sda2 -on_device-> blk:hv01:sda",
                                 "blk:hv01:sda -in_volume-> sv:local:hv01:sda",
                                 "sv:local:hv01:sda -in_system-> ss:local:hv01"}));
  EXPECT_EQ(NameOf(graph_, "ss:local:hv01"), "local disks of hv01");
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:sda", "transport"), "ata");
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:sda", "model"), "Samsung SSD 860 EVO 500GB");
  EXPECT_EQ(graph_.NodesOfType(NodeType::kLun).size(), 0u);
}

TEST_F(RecordedTest, NfsMountAndNetworkNfsSourceAreTheSameFile) {
  // Recorded tree: hv01-datacenter (hand-made): nas01.example.com:/export/vmimages (nfs4).
  Load("hv01-datacenter", "hv01");
  std::string mounted = File("/var/lib/libvirt/nfs/shared/vm04.qcow2");
  EXPECT_EQ(mounted, "file:nfs:nas01.example.com:/export/vmimages:/shared/vm04.qcow2");
  DiskSource source;
  source.kind = DiskSourceKind::kNetwork;
  source.protocol = "nfs";
  source.name = "/export/vmimages/shared/vm04.qcow2";
  source.hosts = {NetworkHost{"nas01.example.com", "", "", ""}};
  EXPECT_EQ(Network(source), mounted);
  std::string fs = "fs:nfs:nas01.example.com:/export/vmimages";
  std::string sv = "sv:nfs:nas01.example.com:/export/vmimages";
  EXPECT_THAT(Edges(graph_),
              IsSupersetOf(std::vector<std::string>{
                  "mount:hv01:/var/lib/libvirt/nfs -mounts-> " + fs, fs + " -in_volume-> " + sv,
                  sv + " -in_system-> ss:nfs:nas01.example.com", mounted + " -in_volume-> " + sv}));
  EXPECT_EQ(AttrOf(graph_, fs, "fstype"), "nfs4");
  EXPECT_EQ(AttrOf(graph_, "mount:hv01:/var/lib/libvirt/nfs", "fstype"), "nfs4");
}

TEST_F(RecordedTest, NetworkNfsWithoutAMountUsesTheImageDirectory) {
  // Recorded tree: hv01-datacenter (hand-made); no mount of nas02.
  Load("hv01-datacenter", "hv01");
  DiskSource source;
  source.kind = DiskSourceKind::kNetwork;
  source.protocol = "nfs";
  source.name = "pool/vm.img";
  source.hosts = {NetworkHost{"nas02", "", "", ""}};
  EXPECT_EQ(Network(source), "file:nfs:nas02:/pool:/vm.img");
  EXPECT_EQ(NameOf(graph_, "file:nfs:nas02:/pool:/vm.img"), "nfs://nas02/pool/vm.img");
}

TEST_F(RecordedTest, StackedMountShadowsTheOneBelow) {
  // Recorded tree: hv01-datacenter (hand-made): xfs on nvme0n1p1 mounted over a tmpfs.
  Load("hv01-datacenter", "hv01");
  EXPECT_EQ(File("/mnt/stack/x.img"), "file:5e4d3c2b-1a09-4f8e-b7d6-c5b4a3928170:/x.img");
}

TEST_F(RecordedTest, SymlinkedFileIsItsTarget) {
  // Recorded tree: hv01-datacenter (hand-made): current.qcow2 -> web01.qcow2.
  Load("hv01-datacenter", "hv01");
  std::string file = File("/var/lib/libvirt/images/current.qcow2");
  EXPECT_EQ(file, std::string("file:") + (kImagesFs + 3) + ":/web01.qcow2");
  EXPECT_EQ(AttrOf(graph_, file, "realpath"), "/var/lib/libvirt/images/web01.qcow2");
}

TEST_F(RecordedTest, MissingThingsAreUnresolvedNodesWithTheWholeMessage) {
  // Recorded tree: hv01-datacenter (hand-made).
  Load("hv01-datacenter", "hv01");
  std::string missing = File("/var/lib/libvirt/images/nope.qcow2");
  EXPECT_EQ(missing, "file:hv01:/var/lib/libvirt/images/nope.qcow2");
  EXPECT_EQ(AttrOf(graph_, missing, "resolved"), "false");
  EXPECT_EQ(AttrOf(graph_, missing, "reason"),
            "file '/var/lib/libvirt/images/nope.qcow2' not found");
  EXPECT_THAT(graph_.OutEdges(*graph_.Find(missing)), IsEmpty());

  EXPECT_EQ(File("images/x.qcow2"), "file:hv01:images/x.qcow2");
  EXPECT_EQ(AttrOf(graph_, "file:hv01:images/x.qcow2", "reason"),
            "file path 'images/x.qcow2' is not absolute");

  std::string through_file = File("/etc/hostname/x");
  EXPECT_EQ(AttrOf(graph_, through_file, "reason"),
            "file '/etc/hostname/x' cannot be resolved: Not a directory");

  EXPECT_EQ(Block("/dev/sdz"), "blk:hv01:/dev/sdz");
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:/dev/sdz", "resolved"), "false");
  EXPECT_EQ(AttrOf(graph_, "blk:hv01:/dev/sdz", "reason"),
            "block device '/dev/sdz' not found under " + view_.sys_root + "/class/block");

  // Exists, but is no block device (and its name is no kernel device).
  std::string not_block = Block("/var/lib/libvirt/images/web01.qcow2");
  EXPECT_EQ(AttrOf(graph_, not_block, "reason"),
            "'/var/lib/libvirt/images/web01.qcow2' is not a block device");
}

TEST_F(RecordedTest, DirVolumesOnAFileSystemAndThroughABindMount) {
  // Recorded tree: hv01-datacenter (hand-made).
  Load("hv01-datacenter", "hv01",
       {DirVolume{"images-a", "/var/lib/libvirt/images"},
        DirVolume{"tenant-a", "/srv/vm images/tenant ä"},
        DirVolume{"elsewhere", "/does/not/exist"}});
  std::string web = File("/var/lib/libvirt/images/web01.qcow2");
  std::string db = File("/srv/vm images/tenant ä/db ü.qcow2");
  std::string images = std::string("sv:dir:") + (kImagesFs + 3) + ":/";
  std::string tenant = std::string("sv:dir:") + (kImagesFs + 3) + ":/tenant a";
  EXPECT_THAT(Edges(graph_),
              IsSupersetOf(std::vector<std::string>{
                  web + " -in_volume-> " + images,
                  db + " -in_volume-> " + images,  // also under images-a
                  db + " -in_volume-> " + tenant, images + " -on_device-> " + kImagesFs,
                  tenant + " -on_device-> " + kImagesFs,
                  web + " -on_mount-> mount:hv01:/var/lib/libvirt/images"}));
  EXPECT_THAT(Edges(graph_), Not(Contains(web + " -in_volume-> " + tenant)));
  EXPECT_EQ(NameOf(graph_, tenant), "tenant-a");
  EXPECT_EQ(AttrOf(graph_, tenant, "kind"), "dir");
  EXPECT_EQ(AttrOf(graph_, tenant, "path"), "/srv/vm images/tenant ä");
  // A file outside every dir volume gets no volume.
  std::string root_file = File("/etc/hostname");
  for (const core::EdgeRef& e : graph_.OutEdges(*graph_.Find(root_file))) {
    EXPECT_NE(e.type, EdgeType::kInVolume);
  }
}

TEST_F(RecordedTest, CachesUntilRefresh) {
  // Recorded tree: hv01-datacenter (hand-made), copied so its mountinfo can be changed.
  std::string dir = ::testing::TempDir() + "/strata-refresh-tree";
  std::filesystem::remove_all(dir);
  std::filesystem::copy(
      SystemDir("hv01-datacenter"), dir,
      std::filesystem::copy_options::recursive | std::filesystem::copy_options::copy_symlinks);
  absl::StatusOr<SystemView> view = RecordedSystemView(dir);
  ASSERT_TRUE(view.ok()) << view.status();
  int probes = 0;
  FsProbeFn recorded = view->probe_fs;
  view->probe_fs = [&probes, recorded](const std::string& device) {
    ++probes;
    return recorded(device);
  };
  StorageResolver resolver(ResolverOptions{"hv01", *view, {}});
  Graph graph;
  ASSERT_TRUE(resolver.ResolveFile(graph, "/var/lib/libvirt/images/web01.qcow2").ok());
  ASSERT_TRUE(resolver.ResolveFile(graph, "/srv/vm images/tenant ä/db ü.qcow2").ok());
  EXPECT_EQ(probes, 1);  // both on dm-3

  std::ofstream(dir + "/proc/self/mountinfo") << "garbage\n";
  auto cached = resolver.ResolveFile(graph, "/etc/hostname");
  ASSERT_TRUE(cached.ok());
  EXPECT_EQ(graph.Id(*cached), "file:2f6d0c1e-8a4b-4c3d-9e5f-0a1b2c3d4e5f:/etc/hostname");
  EXPECT_EQ(probes, 2);  // sda2

  resolver.Refresh();
  auto fresh = resolver.ResolveFile(graph, "/etc/hostname");
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(graph.Id(*fresh), "file:hv01:/etc/hostname");
  EXPECT_EQ(graph.Attr(*fresh, "reason").value_or(""),
            "file '/etc/hostname': mount table '" + dir +
                "/proc/self/mountinfo': mountinfo line 1: too few fields: 'garbage'");
  ASSERT_TRUE(resolver.ResolveFile(graph, "/var/lib/libvirt/images/web01.qcow2").ok());
  EXPECT_EQ(probes, 2);  // the mount table is unusable, so nothing was probed

  std::filesystem::remove(dir + "/proc/self/mountinfo");
  resolver.Refresh();
  auto gone = resolver.ResolveFile(graph, "/etc/hostname");
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(graph.Attr(*gone, "reason").value_or(""),
            "file '/etc/hostname': cannot read mount table '" + dir +
                "/proc/self/mountinfo': No such file or directory");
  std::filesystem::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Recorded trees: tests/data/systems/live-vm and live-loops (REAL, recorded by record_live.sh).

TEST_F(RecordedTest, LiveVmRootOnVirtioDiskThatCannotBeProbed) {
  // Recorded tree: live-vm (real): ext4 on /dev/vda; blkid got "Operation not permitted".
  Load("live-vm", "vm1");
  std::string file = File("/var/lib/libvirt/images/guest.qcow2");
  EXPECT_EQ(file, "file:vm1:ext4:254:0:/var/lib/libvirt/images/guest.qcow2");
  EXPECT_EQ(AttrOf(graph_, file, "resolved"), "<no attr resolved>");
  EXPECT_EQ(AttrOf(graph_, "fs:vm1:ext4:254:0", "resolved"), "false");
  EXPECT_EQ(AttrOf(graph_, "fs:vm1:ext4:254:0", "reason"),
            "cannot probe '/dev/vda': Operation not permitted");
  EXPECT_THAT(
      Edges(graph_),
      IsSupersetOf(std::vector<std::string>{
          file + " -on_mount-> mount:vm1:/", "mount:vm1:/ -mounts-> fs:vm1:ext4:254:0",
          "fs:vm1:ext4:254:0 -on_device-> blk:vm1:vda", "blk:vm1:vda -in_volume-> sv:local:vm1:vda",
          "sv:local:vm1:vda -in_system-> ss:local:vm1"}));
  EXPECT_EQ(AttrOf(graph_, "blk:vm1:vda", "transport"), "virtio");
  EXPECT_EQ(AttrOf(graph_, "blk:vm1:vda", "serial"), "overlayblk");
  EXPECT_EQ(AttrOf(graph_, "blk:vm1:vda", "size"), "274877906944");
  EXPECT_EQ(AttrOf(graph_, "blk:vm1:vda", "kind"), "disk");
  EXPECT_EQ(AttrOf(graph_, "mount:vm1:/", "options"), "rw,relatime");
  EXPECT_EQ(AttrOf(graph_, "mount:vm1:/", "source"), "/dev/vda");
}

TEST_F(RecordedTest, LiveLoopsExt4ThroughRealBindMountAndLoopBackingFile) {
  // Recorded tree: live-loops (real): ext4 on loop0 at "/srv/strata rec/ext4 vol", its
  // "sub dir" bound at "/srv/strata rec/bind ü".
  Load("live-loops", "vm1");
  std::string direct = File("/srv/strata rec/ext4 vol/sub dir/disk é.qcow2");
  std::string bound = File("/srv/strata rec/bind ü/disk é.qcow2");
  std::string fs = "fs:4d83c68c-cbc4-4799-bc35-6575802ca291";
  EXPECT_EQ(direct, "file:4d83c68c-cbc4-4799-bc35-6575802ca291:/sub dir/disk é.qcow2");
  EXPECT_EQ(bound, direct);
  std::string backing = "file:vm1:ext4:254:0:/srv/strata-images/ext4.img";
  EXPECT_THAT(
      Edges(graph_),
      IsSupersetOf(std::vector<std::string>{
          "mount:vm1:/srv/strata rec/bind ü -mounts-> " + fs, fs + " -on_device-> blk:vm1:loop0",
          "blk:vm1:loop0 -loop_file-> " + backing, backing + " -on_mount-> mount:vm1:/",
          "fs:vm1:ext4:254:0 -on_device-> blk:vm1:vda"}));
  EXPECT_EQ(AttrOf(graph_, "blk:vm1:loop0", "kind"), "loop");
  EXPECT_EQ(AttrOf(graph_, "blk:vm1:loop0", "backing_file"), "/srv/strata-images/ext4.img");
  EXPECT_EQ(AttrOf(graph_, "blk:vm1:loop0", "size"), "314572800");
  EXPECT_EQ(AttrOf(graph_, fs, "label"), "strata-ext4");
  // A loop device is no disk of its own: no local volume for it.
  EXPECT_EQ(graph_.Find("sv:local:vm1:loop0"), std::nullopt);
}

TEST_F(RecordedTest, LiveLoopsBtrfsAndXfs) {
  // Recorded tree: live-loops (real): btrfs (mountinfo has 0:39, the source names loop1) and xfs.
  Load("live-loops", "vm1");
  EXPECT_EQ(File("/srv/strata rec/btrfs-été/images/guest one.raw"),
            "file:0ea34de8-7ec9-431b-952b-1d7d0ffbade7:/images/guest one.raw");
  EXPECT_EQ(File("/srv/strata rec/xfs/vm.img"),
            "file:d0531185-0770-4296-898a-1ef6670d0681:/vm.img");
  EXPECT_THAT(Edges(graph_),
              IsSupersetOf(std::vector<std::string>{
                  "fs:0ea34de8-7ec9-431b-952b-1d7d0ffbade7 -on_device-> blk:vm1:loop1",
                  "blk:vm1:loop1 -loop_file-> file:vm1:ext4:254:0:/srv/strata-images/btrfs.img",
                  "fs:d0531185-0770-4296-898a-1ef6670d0681 -on_device-> blk:vm1:loop2"}));
  EXPECT_EQ(AttrOf(graph_, "fs:0ea34de8-7ec9-431b-952b-1d7d0ffbade7", "fstype"), "btrfs");
  EXPECT_EQ(AttrOf(graph_, "fs:d0531185-0770-4296-898a-1ef6670d0681", "fstype"), "xfs");
  EXPECT_EQ(AttrOf(graph_, "mount:vm1:/srv/strata rec/xfs", "source"), "/dev/loop2");
}

// ---------------------------------------------------------------------------------------------
// Synthetic trees written by the test itself.

class SyntheticTree : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/strata-synthetic-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Put(const std::string& path, const std::string& text) {
    std::filesystem::create_directories(std::filesystem::path(dir_ + "/" + path).parent_path());
    std::ofstream(dir_ + "/" + path) << text;
  }
  void Link(const std::string& path, const std::string& target) {
    std::filesystem::create_directories(std::filesystem::path(dir_ + "/" + path).parent_path());
    std::filesystem::create_symlink(target, dir_ + "/" + path);
  }
  std::string dir_;
};

TEST_F(SyntheticTree, LoopDeviceBackedByAFileOnItselfStopsAtTheDepthLimit) {
  // Synthetic tree: / is ext4 on loop0, and loop0's backing file is /img on that same /.
  Put("proc/self/mountinfo", "1 0 7:0 / / rw - ext4 /dev/loop0 rw\n");
  Put("sys/devices/virtual/block/loop0/dev", "7:0\n");
  Put("sys/devices/virtual/block/loop0/size", "8\n");
  Put("sys/devices/virtual/block/loop0/loop/backing_file", "/img\n");
  Link("sys/dev/block/7:0", "../../devices/virtual/block/loop0");
  Link("sys/class/block/loop0", "../../devices/virtual/block/loop0");
  Put("root/img", "");
  Put("blkid.export", "DEVNAME=/dev/loop0\nUUID=abcd\nTYPE=ext4\n");
  absl::StatusOr<SystemView> view = RecordedSystemView(dir_);
  ASSERT_TRUE(view.ok()) << view.status();
  StorageResolver resolver(ResolverOptions{"h", *view, {}});
  Graph graph;
  auto file = resolver.ResolveFile(graph, "/img");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(graph.Id(*file), "file:abcd:/img");
  EXPECT_THAT(Edges(graph),
              IsSupersetOf(std::vector<std::string>{"blk:h:loop0 -loop_file-> file:abcd:/img",
                                                    "blk:h:loop0 -loop_file-> file:h:/img"}));
  EXPECT_EQ(AttrOf(graph, "file:h:/img", "reason"),
            "file '/img' not followed: loop devices nest more than 8 deep");
}

TEST_F(SyntheticTree, UnboundLoopCyclicSlavesAndMissingSysfs) {
  // Synthetic tree: loop3 without backing file; dm-1 and dm-2 each other's slave; / on a
  // device sysfs does not know.
  Put("proc/self/mountinfo", "1 0 8:0 / / rw - ext4 /dev/sda rw\n");
  Put("sys/devices/virtual/block/loop3/dev", "7:3\n");
  Link("sys/dev/block/7:3", "../../devices/virtual/block/loop3");
  Link("sys/class/block/loop3", "../../devices/virtual/block/loop3");
  for (std::string a : {"1", "2"}) {
    std::string b = a == "1" ? "2" : "1";
    Put("sys/devices/virtual/block/dm-" + a + "/dev", "253:" + a + "\n");
    Put("sys/devices/virtual/block/dm-" + a + "/dm/name", "cyc" + a + "\n");
    Link("sys/devices/virtual/block/dm-" + a + "/slaves/dm-" + b, "../../dm-" + b);
    Link("sys/dev/block/253:" + a, "../../devices/virtual/block/dm-" + a);
    Link("sys/class/block/dm-" + a, "../../devices/virtual/block/dm-" + a);
  }
  Put("root/etc/x", "abc");
  absl::StatusOr<SystemView> view = RecordedSystemView(dir_);
  ASSERT_TRUE(view.ok()) << view.status();
  StorageResolver resolver(ResolverOptions{"h", *view, {}});
  Graph graph;
  ASSERT_TRUE(resolver.ResolveBlockDevice(graph, "/dev/loop3").ok());
  EXPECT_EQ(AttrOf(graph, "blk:h:loop3", "reason"),
            "loop device '" + dir_ + "/dev/loop3' has no backing file");
  ASSERT_TRUE(resolver.ResolveBlockDevice(graph, "/dev/dm-1").ok());
  EXPECT_THAT(Edges(graph),
              IsSupersetOf(std::vector<std::string>{"blk:h:dm-1 -on_device-> blk:h:dm-2",
                                                    "blk:h:dm-2 -on_device-> blk:h:dm-1"}));
  auto file = resolver.ResolveFile(graph, "/etc/x");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(graph.Id(*file), "file:h:ext4:8:0:/etc/x");
  EXPECT_EQ(AttrOf(graph, "file:h:ext4:8:0:/etc/x", "size"), "3");
  EXPECT_EQ(
      AttrOf(graph, "fs:h:ext4:8:0", "reason"),
      "file system mounted at '/': block device 8:0 not found under " + dir_ + "/sys/dev/block");
}

// ---------------------------------------------------------------------------------------------
// Network sources (no tree needed).

class NetworkTest : public RecordedTest {
 protected:
  void SetUp() override { Load("hv01-datacenter", "hv01"); }
  static DiskSource Source(std::string protocol, std::string name, std::vector<std::string> hosts) {
    DiskSource s;
    s.kind = DiskSourceKind::kNetwork;
    s.protocol = std::move(protocol);
    s.name = std::move(name);
    for (auto& h : hosts) s.hosts.push_back(NetworkHost{h, "", "", ""});
    return s;
  }
};

TEST_F(NetworkTest, RbdImageWithSnapshotAndSortedMonitors) {
  std::string sv = Network(Source("rbd", "vms/disk1@snap1", {"mon3", "mon1", "mon2"}));
  EXPECT_EQ(sv, "sv:rbd:mon1,mon2,mon3/vms/disk1");
  EXPECT_THAT(Edges(graph_), Contains(sv + " -in_system-> ss:ceph:mon1,mon2,mon3"));
  EXPECT_EQ(AttrOf(graph_, sv, "pool"), "vms");
  EXPECT_EQ(AttrOf(graph_, sv, "image"), "disk1");
  EXPECT_EQ(AttrOf(graph_, sv, "snapshot"), "snap1");
  EXPECT_EQ(AttrOf(graph_, sv, "protocol"), "rbd");
  EXPECT_EQ(AttrOf(graph_, "ss:ceph:mon1,mon2,mon3", "monitors"), "mon1,mon2,mon3");
  // Another host listing the monitors in another order: the same nodes.
  EXPECT_EQ(Network(Source("rbd", "vms/disk1", {"mon2", "mon1", "mon3"})), sv);

  std::string bad = Network(Source("rbd", "justimage", {"mon1"}));
  EXPECT_EQ(AttrOf(graph_, bad, "reason"),
            "rbd source name 'justimage' is not pool/image[@snapshot]");
  std::string no_mons = Network(Source("rbd", "vms/disk2", {}));
  EXPECT_EQ(AttrOf(graph_, no_mons, "reason"), "rbd image 'vms/disk2' names no monitor hosts");
}

TEST_F(NetworkTest, IscsiLunSharesTheSystemWithKernelSessions) {
  DiskSource s = Source("iscsi", std::string(kIqn) + "/1", {"10.0.30.5"});
  s.hosts[0].port = "3261";
  std::string lun = Network(s);
  std::string key = std::string("iscsi:") + kIqn + ":1";
  EXPECT_EQ(lun, "lun:" + key);
  EXPECT_THAT(Edges(graph_), IsSupersetOf(std::vector<std::string>{
                                 lun + " -in_volume-> sv:" + key,
                                 "sv:" + key + " -in_system-> ss:iscsi:" + kIqn}));
  // The kernel's sessions to the same target add their portals to the same system.
  ASSERT_FALSE(File("/var/lib/libvirt/san/vm02.raw").empty());
  EXPECT_EQ(AttrOf(graph_, std::string("ss:iscsi:") + kIqn, "portals"),
            "10.0.10.5:3260,10.0.20.5:3260,10.0.30.5:3261");
  EXPECT_EQ(Network(Source("iscsi", "iqn.2000-01.x:t", {"h"})), "lun:iscsi:iqn.2000-01.x:t:0");
}

TEST_F(NetworkTest, OtherProtocolsAndUnknownOnes) {
  EXPECT_EQ(Network(Source("nbd", "export1", {"nbd1.example.com"})),
            "sv:nbd:nbd1.example.com:export1");
  EXPECT_THAT(Edges(graph_),
              Contains("sv:nbd:nbd1.example.com:export1 -in_system-> ss:nbd:nbd1.example.com"));
  EXPECT_EQ(Network(Source("gluster", "vol/img.qcow2", {"g2", "g1"})),
            "sv:gluster:g1,g2:vol/img.qcow2");
  EXPECT_EQ(Network(Source("https", "/images/a.iso", {"mirror.example.org"})),
            "sv:https:mirror.example.org:/images/a.iso");

  std::string unknown = Network(Source("foo", "x/y", {"h1"}));
  EXPECT_EQ(unknown, "sv:foo:h1:x/y");
  EXPECT_EQ(AttrOf(graph_, unknown, "resolved"), "false");
  EXPECT_EQ(AttrOf(graph_, unknown, "reason"),
            "unknown network protocol 'foo' for disk source 'x/y'");
  EXPECT_THAT(graph_.OutEdges(*graph_.Find(unknown)), IsEmpty());
}

TEST_F(NetworkTest, ResolveSourceDispatchesOnKind) {
  DiskSource file;
  file.kind = DiskSourceKind::kFile;
  file.path = "/var/lib/libvirt/images/web01.qcow2";
  auto n = resolver_->ResolveSource(graph_, file);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(graph_.Type(*n), NodeType::kFile);

  DiskSource block;
  block.kind = DiskSourceKind::kBlock;
  block.path = "/dev/mapper/mpatha";
  n = resolver_->ResolveSource(graph_, block);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(graph_.Id(*n), "blk:hv01:dm-0");

  DiskSource volume;
  volume.kind = DiskSourceKind::kVolume;
  volume.pool = "default";
  volume.volume = "vm9.qcow2";
  n = resolver_->ResolveSource(graph_, volume);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(graph_.Id(*n), "sv:pool:hv01:default/vm9.qcow2");
  EXPECT_EQ(graph_.Attr(*n, "reason").value_or(""),
            "volume 'vm9.qcow2' of pool 'default' has no path (the storage plug-in did not "
            "resolve it)");
  volume.path = "/var/lib/libvirt/images/web01.qcow2";
  n = resolver_->ResolveSource(graph_, volume);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(graph_.Id(*n), std::string("file:") + (kImagesFs + 3) + ":/web01.qcow2");
  volume.path = "/dev/vgdata/lvimages";
  n = resolver_->ResolveSource(graph_, volume);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(graph_.Id(*n), "blk:hv01:dm-3");

  DiskSource none;
  EXPECT_EQ(resolver_->ResolveSource(graph_, none).status().message(),
            "disk source of kind 'none' has nothing to resolve");
}

// ---------------------------------------------------------------------------------------------
// Helpers.

TEST(Wwid, FromVpdPage83PrefersNaa) {
  std::string t10 = std::string("\x02\x01\x00\x08", 4) + "VEND  id";
  std::string naa =
      std::string("\x01\x03\x00\x08", 4) + std::string("\x60\x01\x40\x5f\x3a\x2b\x4c\x5d", 8);
  std::string eui = std::string("\x01\x02\x00\x04", 4) + std::string("\x00\x25\x38\xb9", 4);
  std::string port = std::string("\x01\x13\x00\x04", 4) + std::string("\x50\x00\x00\x01", 4);
  auto page = [](const std::string& body) {
    return std::string("\x00\x83\x00", 3) + static_cast<char>(body.size()) + body;
  };
  EXPECT_EQ(WwidFromVpd83(page(t10 + naa)), "naa.6001405f3a2b4c5d");
  EXPECT_EQ(WwidFromVpd83(page(t10 + eui)), "eui.002538b9");
  EXPECT_EQ(WwidFromVpd83(page(t10)), "t10.VEND  id");
  EXPECT_EQ(WwidFromVpd83(page(port)), "");                          // target port, not the LU
  EXPECT_EQ(WwidFromVpd83(page(naa).substr(0, 10)), "");             // truncated
  EXPECT_EQ(WwidFromVpd83(std::string("\x00\x80\x00\x00", 4)), "");  // another page
  EXPECT_EQ(WwidFromVpd83(""), "");
}

TEST(Wwid, FromMultipathUuid) {
  EXPECT_EQ(WwidFromMultipathUuid("mpath-36001405F3A2B4C5D"), "naa.6001405f3a2b4c5d");
  EXPECT_EQ(WwidFromMultipathUuid("mpath-2002538b9"), "eui.002538b9");
  EXPECT_EQ(WwidFromMultipathUuid("mpath-1ATA x"), "t10.ATA x");
  EXPECT_EQ(WwidFromMultipathUuid("LVM-abc"), "");
}

TEST(RecordedProbe, AnswersByDeviceNameAndReportsRecordedErrors) {
  // Recorded tree: hv01-datacenter (hand-made) and live-vm (real) blkid records.
  auto probe = LoadRecordedProbe(SystemDir("hv01-datacenter") + "/blkid.export",
                                 SystemDir("hv01-datacenter") + "/dev");
  ASSERT_TRUE(probe.ok()) << probe.status();
  auto dm0 = (*probe)("/somewhere/dm-0");  // DEVNAME=/dev/mapper/mpatha -> ../dm-0
  ASSERT_TRUE(dm0.ok()) << dm0.status();
  EXPECT_EQ(dm0->uuid, "9b8c7d6e-5f4a-4b3c-8d2e-1f0a9b8c7d6e");
  EXPECT_EQ(dm0->type, "xfs");
  EXPECT_EQ(dm0->label, "san store");
  EXPECT_EQ((*probe)("/dev/sdq").status().message(), "no blkid record for '/dev/sdq'");

  auto live = LoadRecordedProbe(SystemDir("live-vm") + "/blkid.export");
  ASSERT_TRUE(live.ok());
  EXPECT_EQ((*live)("/dev/vda").status().message(),
            "cannot probe '/dev/vda': Operation not permitted");

  EXPECT_EQ(LoadRecordedProbe("/nonexistent/blkid.export").status().message(),
            "cannot read blkid record '/nonexistent/blkid.export': No such file or directory");
  EXPECT_EQ(RecordedSystemView("/nonexistent/tree").status().message(),
            "recorded system '/nonexistent/tree' is not a directory");
}

}  // namespace
}  // namespace strata::storage
