#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "strata/hypervisor/domain.h"

namespace strata::hypervisor {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// A domain document around `devices` (the inside of <devices>).
std::string DomainXml(absl::string_view devices,
                      absl::string_view memory = "<memory>1024</memory>") {
  return absl::StrCat(R"(<domain type='kvm'>
  <name>vm1</name>
  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>
  )",
                      memory, R"(
  <vcpu placement='static'>2</vcpu>
  <devices>
)",
                      devices, R"(
  </devices>
</domain>)");
}

Domain ParseOk(const std::string& xml) {
  absl::StatusOr<Domain> domain = ParseDomainXml(xml);
  EXPECT_TRUE(domain.ok()) << domain.status();
  return domain.ok() ? *domain : Domain{};
}

Disk OnlyDisk(const std::string& devices) {
  Domain domain = ParseOk(DomainXml(devices));
  EXPECT_EQ(domain.disks.size(), 1u);
  return domain.disks.empty() ? Disk{} : domain.disks[0];
}

TEST(DomainXmlTest, DomainFields) {
  Domain domain = ParseOk(DomainXml("", "<memory unit='MiB'>2048</memory>"));
  EXPECT_EQ(domain.name, "vm1");
  EXPECT_EQ(domain.uuid, "4dea22b3-1d52-d8f3-2516-782e98ab3fa0");
  EXPECT_EQ(domain.hypervisor_type, "kvm");
  EXPECT_EQ(domain.memory_kib, 2048u * 1024);
  EXPECT_EQ(domain.vcpus, 2u);
  EXPECT_THAT(domain.disks, IsEmpty());
  EXPECT_EQ(domain.xml, DomainXml("", "<memory unit='MiB'>2048</memory>"));
  EXPECT_TRUE(domain.parse_error.empty());
}

TEST(DomainXmlTest, FileQcow2WithTwoDeepBackingChain) {
  Disk disk = OnlyDisk(R"(
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/top.qcow2' index='3'/>
      <backingStore type='file' index='2'>
        <format type='qcow2'/>
        <source file='/var/lib/libvirt/images/mid.qcow2'/>
        <backingStore type='block' index='1'>
          <format type='raw'/>
          <source dev='/dev/vg0/base'/>
          <backingStore/>
        </backingStore>
      </backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>)");
  EXPECT_EQ(disk.device, DiskDevice::kDisk);
  EXPECT_EQ(disk.target, "vda");
  EXPECT_EQ(disk.bus, "virtio");
  EXPECT_EQ(disk.source.kind, DiskSourceKind::kFile);
  EXPECT_EQ(disk.source.format, "qcow2");
  EXPECT_EQ(disk.source.path, "/var/lib/libvirt/images/top.qcow2");
  ASSERT_EQ(disk.backing_chain.size(), 2u);
  EXPECT_EQ(disk.backing_chain[0].kind, DiskSourceKind::kFile);
  EXPECT_EQ(disk.backing_chain[0].format, "qcow2");
  EXPECT_EQ(disk.backing_chain[0].path, "/var/lib/libvirt/images/mid.qcow2");
  EXPECT_EQ(disk.backing_chain[1].kind, DiskSourceKind::kBlock);
  EXPECT_EQ(disk.backing_chain[1].format, "raw");
  EXPECT_EQ(disk.backing_chain[1].path, "/dev/vg0/base");
  EXPECT_FALSE(disk.readonly);
  EXPECT_FALSE(disk.shareable);
}

TEST(DomainXmlTest, NetworkBackingStoreInChain) {
  Disk disk = OnlyDisk(R"(
    <disk type='file' device='disk'>
      <driver type='qcow2'/>
      <source file='/overlay.qcow2'/>
      <backingStore type='network'>
        <format type='raw'/>
        <source protocol='rbd' name='pool/base'><host name='mon1' port='6789'/></source>
      </backingStore>
      <target dev='vda'/>
    </disk>)");
  ASSERT_EQ(disk.backing_chain.size(), 1u);
  EXPECT_EQ(disk.backing_chain[0].kind, DiskSourceKind::kNetwork);
  EXPECT_EQ(disk.backing_chain[0].protocol, "rbd");
  EXPECT_EQ(disk.backing_chain[0].name, "pool/base");
  ASSERT_EQ(disk.backing_chain[0].hosts.size(), 1u);
  EXPECT_EQ(disk.backing_chain[0].hosts[0].name, "mon1");
}

TEST(DomainXmlTest, EmptyOrAbsentBackingStoreGivesNoChain) {
  EXPECT_THAT(
      OnlyDisk("<disk type='file'><source file='/a.img'/><backingStore/></disk>").backing_chain,
      IsEmpty());
  EXPECT_THAT(OnlyDisk("<disk type='file'><source file='/a.img'/></disk>").backing_chain,
              IsEmpty());
}

TEST(DomainXmlTest, BlockDisk) {
  Disk disk = OnlyDisk(R"(
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source dev='/dev/vgdata/web01-data'/>
      <target dev='vdb' bus='virtio'/>
    </disk>)");
  EXPECT_EQ(disk.source.kind, DiskSourceKind::kBlock);
  EXPECT_EQ(disk.source.format, "raw");
  EXPECT_EQ(disk.source.path, "/dev/vgdata/web01-data");
}

TEST(DomainXmlTest, NetworkRbdWithThreeMonitors) {
  Disk disk = OnlyDisk(R"(
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/>
      <auth username='libvirt'><secret type='ceph' uuid='0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f'/></auth>
      <source protocol='rbd' name='rbdpool/image@snap1'>
        <host name='mon1.example.org' port='6789'/>
        <host name='10.0.0.2' port='6789'/>
        <host name='mon3.example.org'/>
      </source>
      <target dev='vdc' bus='virtio'/>
    </disk>)");
  EXPECT_EQ(disk.source.kind, DiskSourceKind::kNetwork);
  EXPECT_EQ(disk.source.protocol, "rbd");
  EXPECT_EQ(disk.source.name, "rbdpool/image@snap1");
  EXPECT_TRUE(disk.source.path.empty());
  ASSERT_EQ(disk.source.hosts.size(), 3u);
  EXPECT_EQ(disk.source.hosts[0].name, "mon1.example.org");
  EXPECT_EQ(disk.source.hosts[0].port, "6789");
  EXPECT_EQ(disk.source.hosts[1].name, "10.0.0.2");
  EXPECT_EQ(disk.source.hosts[2].name, "mon3.example.org");
  EXPECT_EQ(disk.source.hosts[2].port, "");
}

TEST(DomainXmlTest, NetworkIscsi) {
  Disk disk = OnlyDisk(R"(
    <disk type='network' device='lun'>
      <driver name='qemu' type='raw'/>
      <source protocol='iscsi' name='iqn.2013-07.com.example:iscsi-pool/1'>
        <host name='example.com' port='3260' transport='tcp'/>
        <initiator><iqn name='iqn.2013-07.com.example:client'/></initiator>
      </source>
      <target dev='sdb' bus='scsi'/>
    </disk>)");
  EXPECT_EQ(disk.device, DiskDevice::kLun);
  EXPECT_EQ(disk.source.kind, DiskSourceKind::kNetwork);
  EXPECT_EQ(disk.source.protocol, "iscsi");
  EXPECT_EQ(disk.source.name, "iqn.2013-07.com.example:iscsi-pool/1");
  ASSERT_EQ(disk.source.hosts.size(), 1u);
  EXPECT_EQ(disk.source.hosts[0].name, "example.com");
  EXPECT_EQ(disk.source.hosts[0].port, "3260");
  EXPECT_EQ(disk.source.hosts[0].transport, "tcp");
}

TEST(DomainXmlTest, NetworkNbdOverUnixSocket) {
  Disk disk = OnlyDisk(R"(
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/>
      <source protocol='nbd' name='export1'>
        <host transport='unix' socket='/var/run/nbd sock'/>
      </source>
      <target dev='vdd' bus='virtio'/>
    </disk>)");
  EXPECT_EQ(disk.source.protocol, "nbd");
  EXPECT_EQ(disk.source.name, "export1");
  ASSERT_EQ(disk.source.hosts.size(), 1u);
  EXPECT_EQ(disk.source.hosts[0].name, "");
  EXPECT_EQ(disk.source.hosts[0].transport, "unix");
  EXPECT_EQ(disk.source.hosts[0].socket, "/var/run/nbd sock");
}

TEST(DomainXmlTest, NetworkNfsGlusterHttp) {
  Domain domain = ParseOk(DomainXml(R"(
    <disk type='network' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source protocol='nfs' name='/export/vm/disk.qcow2'>
        <host name='nfs.example.com' transport='tcp'/>
        <identity user='qemu' group='qemu'/>
      </source>
      <target dev='vda'/>
    </disk>
    <disk type='network' device='disk'>
      <source protocol='gluster' name='Volume/Image.raw'><host name='gluster.example.org' port='24007'/></source>
      <target dev='vdb'/>
    </disk>
    <disk type='network' device='cdrom'>
      <source protocol='http' name='/isos/debian.iso' query='token=a&amp;b'><host name='mirror.example.org' port='80'/></source>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>)"));
  ASSERT_EQ(domain.disks.size(), 3u);
  const DiskSource& nfs = domain.disks[0].source;
  EXPECT_EQ(nfs.kind, DiskSourceKind::kNetwork);
  EXPECT_EQ(nfs.protocol, "nfs");
  EXPECT_EQ(nfs.name, "/export/vm/disk.qcow2");
  EXPECT_EQ(nfs.format, "qcow2");
  ASSERT_EQ(nfs.hosts.size(), 1u);
  EXPECT_EQ(nfs.hosts[0].name, "nfs.example.com");
  EXPECT_EQ(nfs.hosts[0].transport, "tcp");
  const DiskSource& gluster = domain.disks[1].source;
  EXPECT_EQ(gluster.protocol, "gluster");
  EXPECT_EQ(gluster.name, "Volume/Image.raw");
  ASSERT_EQ(gluster.hosts.size(), 1u);
  EXPECT_EQ(gluster.hosts[0].port, "24007");
  const Disk& http = domain.disks[2];
  EXPECT_EQ(http.device, DiskDevice::kCdrom);
  EXPECT_TRUE(http.readonly);
  EXPECT_EQ(http.source.protocol, "http");
  EXPECT_EQ(http.source.name, "/isos/debian.iso");
  ASSERT_EQ(http.source.hosts.size(), 1u);
  EXPECT_EQ(http.source.hosts[0].name, "mirror.example.org");
  EXPECT_EQ(http.source.hosts[0].port, "80");
}

TEST(DomainXmlTest, VolumeDisk) {
  Disk disk = OnlyDisk(R"(
    <disk type='volume' device='disk'>
      <driver name='qemu' type='raw'/>
      <source pool='iscsi-pool' volume='unit:0:0:1' mode='host'/>
      <target dev='vdb' bus='virtio'/>
    </disk>)");
  EXPECT_EQ(disk.source.kind, DiskSourceKind::kVolume);
  EXPECT_EQ(disk.source.pool, "iscsi-pool");
  EXPECT_EQ(disk.source.volume, "unit:0:0:1");
  EXPECT_EQ(disk.source.mode, "host");
  EXPECT_TRUE(disk.source.path.empty());  // filled by the plug-in, not the parser
  EXPECT_TRUE(disk.source.resolve_error.empty());
}

TEST(DomainXmlTest, DirDisk) {
  Disk disk = OnlyDisk(R"(
    <disk type='dir' device='floppy'>
      <driver name='qemu' type='fat'/>
      <source dir='/srv/floppy files'/>
      <target dev='fda' bus='fdc'/>
    </disk>)");
  EXPECT_EQ(disk.device, DiskDevice::kFloppy);
  EXPECT_EQ(disk.source.kind, DiskSourceKind::kDir);
  EXPECT_EQ(disk.source.path, "/srv/floppy files");
  EXPECT_EQ(disk.source.format, "fat");
  EXPECT_EQ(disk.bus, "fdc");
}

TEST(DomainXmlTest, CdromWithoutSourceIsKeptWithKindNone) {
  Domain domain = ParseOk(DomainXml(R"(
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <disk type='file' device='cdrom'>
      <source startupPolicy='optional'/>
      <target dev='hdd' bus='ide'/>
    </disk>)"));
  ASSERT_EQ(domain.disks.size(), 2u);
  for (const Disk& disk : domain.disks) {
    EXPECT_EQ(disk.device, DiskDevice::kCdrom);
    EXPECT_EQ(disk.source.kind, DiskSourceKind::kNone) << disk.target;
    EXPECT_TRUE(disk.source.path.empty());
    EXPECT_TRUE(disk.source.resolve_error.empty());
  }
  EXPECT_TRUE(domain.disks[0].readonly);
  EXPECT_EQ(domain.disks[1].target, "hdd");
}

TEST(DomainXmlTest, ReadonlyShareableSerial) {
  Disk disk = OnlyDisk(R"(
    <disk type='block' device='disk'>
      <source dev='/dev/mapper/shared'/>
      <target dev='sdc' bus='scsi'/>
      <readonly/>
      <shareable/>
      <serial>WD-0001 &amp; co</serial>
    </disk>)");
  EXPECT_TRUE(disk.readonly);
  EXPECT_TRUE(disk.shareable);
  EXPECT_EQ(disk.serial, "WD-0001 & co");
  EXPECT_EQ(disk.bus, "scsi");
}

TEST(DomainXmlTest, DiskWithoutTypeIsAFileDisk) {
  Disk disk = OnlyDisk("<disk><source file='/a.img'/><target dev='vda'/></disk>");
  EXPECT_EQ(disk.device, DiskDevice::kDisk);
  EXPECT_EQ(disk.source.kind, DiskSourceKind::kFile);
  EXPECT_EQ(disk.source.path, "/a.img");
}

TEST(DomainXmlTest, UnknownDiskTypeIsKeptWithReason) {
  Disk disk = OnlyDisk(R"(
    <disk type='nvme' device='disk'>
      <driver name='qemu' type='raw'/>
      <source type='pci' managed='yes' namespace='1'>
        <address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
      </source>
      <target dev='vde' bus='virtio'/>
    </disk>)");
  EXPECT_EQ(disk.target, "vde");
  EXPECT_EQ(disk.source.kind, DiskSourceKind::kNone);
  EXPECT_EQ(disk.source.resolve_error, "unsupported disk type 'nvme'");
}

TEST(DomainXmlTest, MemoryUnits) {
  struct Case {
    std::string memory;
    uint64_t kib;
  };
  const std::vector<Case> cases = {
      {"<memory>4096</memory>", 4096},
      {"<memory unit='KiB'>4096</memory>", 4096},
      {"<memory unit='k'>4096</memory>", 4096},
      {"<memory unit='b'>1048576</memory>", 1024},
      {"<memory unit='bytes'>1025</memory>", 2},  // rounded up, as libvirt does
      {"<memory unit='MiB'>3</memory>", 3 * 1024},
      {"<memory unit='M'>3</memory>", 3 * 1024},
      {"<memory unit='GiB'>2</memory>", 2 * 1024 * 1024},
      {"<memory unit='G'>2</memory>", 2 * 1024 * 1024},
      {"<memory unit='TiB'>1</memory>", 1024ull * 1024 * 1024},
      {"<memory unit='T'>1</memory>", 1024ull * 1024 * 1024},
      {"<memory unit='KB'>1024</memory>", 1000},
      {"<memory unit='MB'>1</memory>", 977},  // 1,000,000 B = 976.56 KiB
      {"<memory unit='GB'>1</memory>", 976563},
      {"<memory unit='MiB'> 16 </memory>", 16 * 1024},
      {"", 0},  // no <memory>
  };
  for (const Case& c : cases) {
    absl::StatusOr<Domain> domain = ParseDomainXml(DomainXml("", c.memory));
    ASSERT_TRUE(domain.ok()) << c.memory << ": " << domain.status();
    EXPECT_EQ(domain->memory_kib, c.kib) << c.memory;
  }
}

TEST(DomainXmlTest, BadMemoryIsAnError) {
  absl::StatusOr<Domain> domain = ParseDomainXml(DomainXml("", "<memory unit='XiB'>1</memory>"));
  EXPECT_EQ(domain.status(),
            absl::InvalidArgumentError("domain XML of VM 'vm1': <memory> has unknown unit 'XiB'"));
  domain = ParseDomainXml(DomainXml("", "<memory unit='MiB'>-1</memory>"));
  EXPECT_EQ(domain.status(),
            absl::InvalidArgumentError(
                "domain XML of VM 'vm1': <memory> value '-1' is not a non-negative integer"));
  domain = ParseDomainXml(DomainXml("", "<memory unit='EiB'>18446744073709551615</memory>"));
  EXPECT_EQ(domain.status(),
            absl::InvalidArgumentError(
                "domain XML of VM 'vm1': <memory> value 18446744073709551615 EiB is too large"));
}

TEST(DomainXmlTest, VcpuDefaultsToOne) {
  absl::StatusOr<Domain> domain =
      ParseDomainXml("<domain type='qemu'><name>x</name><uuid>u</uuid></domain>");
  ASSERT_TRUE(domain.ok()) << domain.status();
  EXPECT_EQ(domain->vcpus, 1u);
  EXPECT_EQ(domain->memory_kib, 0u);
}

TEST(DomainXmlTest, MalformedXmlIsInvalidArgumentWithOffset) {
  // The offset is pugixml's: here the name in the closing tag "</domain>".
  absl::StatusOr<Domain> domain = ParseDomainXml("<domain><name>vm1</name><uuid>x</domain>");
  EXPECT_EQ(domain.status(), absl::InvalidArgumentError(
                                 "domain XML is malformed: Start-end tags mismatch at offset 33"));
  domain = ParseDomainXml("");
  EXPECT_EQ(domain.status(), absl::InvalidArgumentError(
                                 "domain XML is malformed: No document element found at offset 0"));
}

TEST(DomainXmlTest, WrongRootElement) {
  EXPECT_EQ(ParseDomainXml("<node><domain/></node>").status(),
            absl::InvalidArgumentError("domain XML has root element <node>, expected <domain>"));
}

TEST(DomainXmlTest, MissingNameOrUuid) {
  EXPECT_EQ(
      ParseDomainXml("<domain><uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid></domain>").status(),
      absl::InvalidArgumentError("domain XML has no <name>"));
  EXPECT_EQ(ParseDomainXml("<domain><name>vm1</name></domain>").status(),
            absl::InvalidArgumentError("domain XML of VM 'vm1' has no <uuid>"));
  EXPECT_EQ(ParseDomainXml("<domain><name>vm1</name><uuid> </uuid></domain>").status(),
            absl::InvalidArgumentError("domain XML of VM 'vm1' has no <uuid>"));
}

TEST(DomainXmlTest, MetacharactersInNameAndPathRoundTrip) {
  // As libvirt writes it: &, <, ', " escaped.
  absl::StatusOr<Domain> domain = ParseDomainXml(R"(<domain type='test'>
  <name>a&amp;b&lt;&apos;&quot;$(rm -rf)</name>
  <uuid>33333333-0000-0000-0000-000000000008</uuid>
  <devices>
    <disk type='file' device='disk'>
      <source file='/srv/vm images/ünïcode.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <source file="/srv/it&apos;s &quot;quoted&quot; &amp; &lt;odd&gt;.img"/>
      <target dev='vdb' bus='virtio'/>
    </disk>
  </devices>
</domain>)");
  ASSERT_TRUE(domain.ok()) << domain.status();
  EXPECT_EQ(domain->name, "a&b<'\"$(rm -rf)");
  ASSERT_EQ(domain->disks.size(), 2u);
  EXPECT_EQ(domain->disks[0].source.path,
            "/srv/vm images/\xC3\xBCn\xC3\xAF"
            "code.qcow2");
  EXPECT_EQ(domain->disks[1].source.path, "/srv/it's \"quoted\" & <odd>.img");
  // Error texts carry the unescaped name.
  EXPECT_EQ(
      ParseDomainXml("<domain><name>a&amp;b&lt;&apos;&quot;$(rm -rf)</name></domain>").status(),
      absl::InvalidArgumentError("domain XML of VM 'a&b<'\"$(rm -rf)' has no <uuid>"));
}

TEST(DomainXmlTest, EnumNames) {
  EXPECT_EQ(DomainStateName(DomainState::kUnknown), "unknown");
  EXPECT_EQ(DomainStateName(DomainState::kRunning), "running");
  EXPECT_EQ(DomainStateName(DomainState::kBlocked), "blocked");
  EXPECT_EQ(DomainStateName(DomainState::kPaused), "paused");
  EXPECT_EQ(DomainStateName(DomainState::kShutdown), "shutdown");
  EXPECT_EQ(DomainStateName(DomainState::kShutoff), "shutoff");
  EXPECT_EQ(DomainStateName(DomainState::kCrashed), "crashed");
  EXPECT_EQ(DomainStateName(DomainState::kSuspended), "pmsuspended");
  std::vector<std::string_view> kinds;
  for (DiskSourceKind kind :
       {DiskSourceKind::kFile, DiskSourceKind::kBlock, DiskSourceKind::kNetwork,
        DiskSourceKind::kVolume, DiskSourceKind::kDir, DiskSourceKind::kNone}) {
    kinds.push_back(DiskSourceKindName(kind));
  }
  EXPECT_THAT(kinds, ElementsAre("file", "block", "network", "volume", "dir", "none"));
  std::vector<std::string_view> devices;
  for (DiskDevice device :
       {DiskDevice::kDisk, DiskDevice::kCdrom, DiskDevice::kFloppy, DiskDevice::kLun}) {
    devices.push_back(DiskDeviceName(device));
  }
  EXPECT_THAT(devices, ElementsAre("disk", "cdrom", "floppy", "lun"));
}

}  // namespace
}  // namespace strata::hypervisor
