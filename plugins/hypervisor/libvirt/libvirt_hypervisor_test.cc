#include "libvirt_hypervisor.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace strata::hypervisor {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;

const std::string kBasicHost = std::string(STRATA_TEST_DATA_DIR) + "/hosts/basic.xml";
const std::string kBasicUri = "test://" + kBasicHost;
constexpr char kOddName[] = "a&b<'\"$(rm -rf)";

std::unique_ptr<LibvirtHypervisor> OpenOrDie(const std::string& uri) {
  absl::StatusOr<std::unique_ptr<LibvirtHypervisor>> hypervisor = LibvirtHypervisor::Open(uri);
  EXPECT_TRUE(hypervisor.ok()) << hypervisor.status();
  return hypervisor.ok() ? *std::move(hypervisor) : nullptr;
}

std::vector<Domain> ListOrDie(LibvirtHypervisor& hypervisor, std::vector<std::string> only = {}) {
  absl::StatusOr<std::vector<Domain>> domains = hypervisor.ListDomains({.only = std::move(only)});
  EXPECT_TRUE(domains.ok()) << domains.status();
  return domains.ok() ? *std::move(domains) : std::vector<Domain>{};
}

std::vector<std::string> Names(const std::vector<Domain>& domains) {
  std::vector<std::string> names;
  for (const Domain& domain : domains) names.push_back(domain.name);
  return names;
}

const Domain* Find(const std::vector<Domain>& domains, absl::string_view name) {
  for (const Domain& domain : domains) {
    if (domain.name == name) return &domain;
  }
  return nullptr;
}

// A fresh directory under the test temp dir, removed with the object.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::path(::testing::TempDir()) / "strata-libvirt-XXXXXX");
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

TEST(LibvirtHypervisorTest, UnreachableUriIsUnavailable) {
  absl::StatusOr<std::unique_ptr<LibvirtHypervisor>> hypervisor =
      LibvirtHypervisor::Open("test:///nonexistent/file.xml");
  EXPECT_EQ(hypervisor.status(),
            absl::UnavailableError("cannot connect to hypervisor 'test:///nonexistent/file.xml': "
                                   "XML error: failed to parse xml document "
                                   "'/nonexistent/file.xml'"));
}

TEST(LibvirtHypervisorTest, UnknownDriverIsUnavailable) {
  absl::StatusOr<std::unique_ptr<LibvirtHypervisor>> hypervisor =
      LibvirtHypervisor::Open("nosuchdriver:///system");
  EXPECT_EQ(hypervisor.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(hypervisor.status().message()),
              MatchesRegex("cannot connect to hypervisor 'nosuchdriver:///system': .+"));
}

TEST(LibvirtHypervisorTest, HostInfo) {
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie(kBasicUri);
  ASSERT_NE(hypervisor, nullptr);
  EXPECT_EQ(hypervisor->uri(), kBasicUri);
  absl::StatusOr<HostInfo> info = hypervisor->GetHostInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->uri, kBasicUri);
  EXPECT_EQ(info->hypervisor_type, "TEST");
  EXPECT_FALSE(info->hostname.empty());
  unsigned long version = 0;
  ASSERT_EQ(virGetVersion(&version, nullptr, nullptr), 0);
  EXPECT_EQ(info->version,
            absl::StrCat(version / 1000000, ".", version / 1000 % 1000, ".", version % 1000));
  EXPECT_THAT(info->version, MatchesRegex("[0-9]+\\.[0-9]+\\.[0-9]+"));
}

TEST(LibvirtHypervisorTest, ListsEveryVmSortedByNameWithStates) {
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie(kBasicUri);
  ASSERT_NE(hypervisor, nullptr);
  std::vector<Domain> domains = ListOrDie(*hypervisor);
  EXPECT_THAT(Names(domains),
              ElementsAre(kOddName, "batch01", "crash01", "db01", "scratch01", "sleep01", "web01"));
  std::map<std::string, std::pair<std::string, bool>> state_and_persistent;
  for (const Domain& domain : domains) {
    state_and_persistent[domain.name] = {std::string(DomainStateName(domain.state)),
                                         domain.persistent};
    EXPECT_TRUE(domain.parse_error.empty()) << domain.name << ": " << domain.parse_error;
    EXPECT_EQ(domain.hypervisor_type, "test");
    EXPECT_THAT(domain.xml, ::testing::StartsWith("<domain type='test'"));
  }
  using P = std::pair<std::string, bool>;
  EXPECT_EQ(state_and_persistent["web01"], P("running", true));
  EXPECT_EQ(state_and_persistent["db01"], P("paused", true));
  EXPECT_EQ(state_and_persistent["batch01"], P("shutoff", true));
  EXPECT_EQ(state_and_persistent["scratch01"], P("running", false));
  EXPECT_EQ(state_and_persistent["crash01"], P("crashed", true));
  EXPECT_EQ(state_and_persistent["sleep01"], P("pmsuspended", true));
  EXPECT_EQ(state_and_persistent[kOddName], P("shutoff", true));

  const Domain* web01 = Find(domains, "web01");
  ASSERT_NE(web01, nullptr);
  EXPECT_EQ(web01->uuid, "11111111-0000-0000-0000-000000000001");
  EXPECT_EQ(web01->memory_kib, 2048u * 1024);
  EXPECT_EQ(web01->vcpus, 2u);
  ASSERT_EQ(web01->disks.size(), 3u);
  EXPECT_EQ(web01->disks[0].source.kind, DiskSourceKind::kFile);
  EXPECT_EQ(web01->disks[0].source.format, "qcow2");
  EXPECT_EQ(web01->disks[0].source.path, "/var/lib/libvirt/images/web01-os.qcow2");
  EXPECT_EQ(web01->disks[1].source.kind, DiskSourceKind::kBlock);
  EXPECT_EQ(web01->disks[1].source.path, "/dev/vgdata/web01-data");
  EXPECT_EQ(web01->disks[2].source.kind, DiskSourceKind::kNetwork);
  EXPECT_EQ(web01->disks[2].source.name, "rbd/web01-logs");
  EXPECT_EQ(web01->disks[2].source.hosts.size(), 3u);
}

TEST(LibvirtHypervisorTest, VolumeDisksResolveThroughTheirPool) {
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie(kBasicUri);
  ASSERT_NE(hypervisor, nullptr);
  std::vector<Domain> domains = ListOrDie(*hypervisor, {"db01"});
  ASSERT_EQ(domains.size(), 1u);
  const Domain& db01 = domains[0];
  EXPECT_EQ(db01.memory_kib, 4u * 1024 * 1024);
  ASSERT_EQ(db01.disks.size(), 4u);

  const DiskSource& resolved = db01.disks[0].source;
  EXPECT_EQ(resolved.kind, DiskSourceKind::kVolume);
  EXPECT_EQ(resolved.pool, "images");
  EXPECT_EQ(resolved.volume, "db01-os.img");
  EXPECT_EQ(resolved.path, "/var/lib/libvirt/images/db01-os.img");
  EXPECT_EQ(resolved.resolve_error, "");

  const DiskSource& no_pool = db01.disks[1].source;
  EXPECT_EQ(no_pool.kind, DiskSourceKind::kVolume);
  EXPECT_EQ(no_pool.path, "");
  EXPECT_EQ(no_pool.resolve_error,
            "cannot resolve volume 'db01-data.img' in storage pool 'nopool': Storage pool not "
            "found: no storage pool with matching name 'nopool'");

  const DiskSource& no_volume = db01.disks[2].source;
  EXPECT_EQ(no_volume.path, "");
  EXPECT_EQ(no_volume.resolve_error,
            "cannot resolve volume 'novolume.img' in storage pool 'images': Storage volume not "
            "found: no storage vol with matching name 'novolume.img'");

  const Disk& cdrom = db01.disks[3];
  EXPECT_EQ(cdrom.device, DiskDevice::kCdrom);
  EXPECT_EQ(cdrom.source.kind, DiskSourceKind::kNone);
  EXPECT_TRUE(cdrom.readonly);
}

TEST(LibvirtHypervisorTest, OnlyFiltersByNameAndUuid) {
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie(kBasicUri);
  ASSERT_NE(hypervisor, nullptr);
  EXPECT_THAT(Names(ListOrDie(*hypervisor, {"web01"})), ElementsAre("web01"));
  EXPECT_THAT(Names(ListOrDie(*hypervisor, {"11111111-0000-0000-0000-000000000003"})),
              ElementsAre("batch01"));
  // Sorted by name; a VM asked for twice (by name and by UUID) is listed once.
  EXPECT_THAT(Names(ListOrDie(*hypervisor, {"web01", "scratch01", "batch01",
                                            "11111111-0000-0000-0000-000000000001"})),
              ElementsAre("batch01", "scratch01", "web01"));
  std::vector<Domain> odd = ListOrDie(*hypervisor, {kOddName});
  ASSERT_EQ(odd.size(), 1u);
  EXPECT_EQ(odd[0].uuid, "11111111-0000-0000-0000-000000000005");
  ASSERT_EQ(odd[0].disks.size(), 1u);
  EXPECT_EQ(odd[0].disks[0].source.path,
            "/srv/vm images/\xC3\xBCn\xC3\xAF"
            "code.qcow2");
}

TEST(LibvirtHypervisorTest, UnknownVmIsNotFound) {
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie(kBasicUri);
  ASSERT_NE(hypervisor, nullptr);
  EXPECT_EQ(
      hypervisor->ListDomains({.only = {"web01", "nope"}}).status(),
      absl::NotFoundError(absl::StrCat("VM 'nope' not found on hypervisor '", kBasicUri, "'")));
  EXPECT_EQ(
      hypervisor->ListDomains({.only = {"99999999-0000-0000-0000-000000000000"}}).status(),
      absl::NotFoundError(absl::StrCat(
          "VM '99999999-0000-0000-0000-000000000000' not found on hypervisor '", kBasicUri, "'")));
  EXPECT_EQ(hypervisor->ListDomains({.only = {""}}).status(),
            absl::NotFoundError(absl::StrCat("VM '' not found on hypervisor '", kBasicUri, "'")));
}

TEST(LibvirtHypervisorTest, DefinedVmWithMetacharacterNameListsBack) {
  // test:///default is one shared in-process host while a connection to it stays open.
  virConnectPtr connection = virConnectOpen("test:///default");
  ASSERT_NE(connection, nullptr);
  const std::string xml = R"(<domain type='test'>
  <name>a&amp;b&lt;&apos;&quot;$(rm -rf)</name>
  <uuid>44444444-0000-0000-0000-000000000001</uuid>
  <memory unit='MiB'>128</memory>
  <os><type>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <source file='/srv/vm images/ünïcode &amp; &lt;more&gt;.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>)";
  virDomainPtr defined = virDomainDefineXML(connection, xml.c_str());
  ASSERT_NE(defined, nullptr) << virGetLastErrorMessage();

  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie("test:///default");
  if (hypervisor != nullptr) {
    std::vector<Domain> all = ListOrDie(*hypervisor);
    EXPECT_NE(Find(all, kOddName), nullptr);
    std::vector<Domain> domains = ListOrDie(*hypervisor, {kOddName});
    ASSERT_EQ(domains.size(), 1u);
    EXPECT_EQ(domains[0].name, kOddName);
    EXPECT_EQ(domains[0].uuid, "44444444-0000-0000-0000-000000000001");
    EXPECT_EQ(domains[0].state, DomainState::kShutoff);
    EXPECT_EQ(domains[0].memory_kib, 128u * 1024);
    ASSERT_EQ(domains[0].disks.size(), 1u);
    EXPECT_EQ(domains[0].disks[0].source.path,
              "/srv/vm images/\xC3\xBCn\xC3\xAF"
              "code & <more>.qcow2");
  }
  EXPECT_EQ(virDomainUndefine(defined), 0);
  virDomainFree(defined);
  hypervisor.reset();
  virConnectClose(connection);
}

TEST(LibvirtHypervisorTest, TenThousandVms) {
  constexpr int kCount = 10000;
  TempDir dir;
  const std::filesystem::path host = dir.path() / "host10k.xml";
  {
    std::ofstream out(host);
    out << "<node><cpu><mhz>2400</mhz><model>x86_64</model><active>4</active><nodes>1</nodes>"
           "<sockets>1</sockets><cores>4</cores><threads>1</threads></cpu>"
           "<memory>8388608</memory>\n";
    for (int i = 0; i < kCount; ++i) {
      out << absl::StrFormat(
          "<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
          "<name>vm-%05d</name><uuid>55555555-0000-0000-0000-%012d</uuid>"
          "<memory unit='MiB'>64</memory><os><type>hvm</type></os><devices>"
          "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
          "<source file='/images/vm-%05d.qcow2'/><target dev='vda' bus='virtio'/></disk>"
          "</devices><test:runstate>%d</test:runstate></domain>\n",
          i, i, i, i % 2 == 0 ? 1 : 5);
    }
    out << "</node>\n";
    ASSERT_TRUE(out.good());
  }
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie("test://" + host.string());
  ASSERT_NE(hypervisor, nullptr);
  std::vector<Domain> domains = ListOrDie(*hypervisor);
  ASSERT_EQ(domains.size(), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i) {
    const Domain& domain = domains[i];
    ASSERT_EQ(domain.name, absl::StrFormat("vm-%05d", i));
    ASSERT_EQ(domain.uuid, absl::StrFormat("55555555-0000-0000-0000-%012d", i));
    ASSERT_EQ(domain.state, i % 2 == 0 ? DomainState::kRunning : DomainState::kShutoff);
    ASSERT_EQ(domain.disks.size(), 1u);
    ASSERT_EQ(domain.disks[0].source.path, absl::StrFormat("/images/vm-%05d.qcow2", i));
  }
}

TEST(LibvirtHypervisorTest, UnparsableXmlKeepsTheVmWithParseError) {
  Domain domain = libvirt_internal::MakeListedDomain(
      "11111111-0000-0000-0000-000000000009", "broken", DomainState::kRunning, false,
      "<domain><name>broken</name><devices><disk></devices></domain>");
  EXPECT_EQ(domain.name, "broken");
  EXPECT_EQ(domain.uuid, "11111111-0000-0000-0000-000000000009");
  EXPECT_EQ(domain.state, DomainState::kRunning);
  EXPECT_FALSE(domain.persistent);
  EXPECT_THAT(domain.disks, IsEmpty());
  EXPECT_EQ(domain.xml, "<domain><name>broken</name><devices><disk></devices></domain>");
  EXPECT_EQ(domain.parse_error,
            "cannot parse the XML of VM 'broken' (11111111-0000-0000-0000-000000000009): domain "
            "XML is malformed: Start-end tags mismatch at offset 44");
}

TEST(LibvirtHypervisorTest, ListedDomainTakesStateAndIdentityFromLibvirt) {
  Domain domain = libvirt_internal::MakeListedDomain(
      "11111111-0000-0000-0000-000000000010", "fine", DomainState::kPaused, true,
      "<domain type='kvm'><name>fine</name><uuid>11111111-0000-0000-0000-000000000010</uuid>"
      "<devices><disk type='file'><source file='/x.img'/><target dev='vda'/></disk></devices>"
      "</domain>");
  EXPECT_EQ(domain.parse_error, "");
  EXPECT_EQ(domain.state, DomainState::kPaused);
  EXPECT_TRUE(domain.persistent);
  ASSERT_EQ(domain.disks.size(), 1u);
  EXPECT_EQ(domain.disks[0].source.path, "/x.img");
}

}  // namespace
}  // namespace strata::hypervisor

namespace strata::hypervisor {
namespace {

// Events from the in-process test driver: the test changes test:///default through its own
// connection; the plug-in's sink receives them on the event-loop thread.
TEST(LibvirtHypervisorEventsTest, LifecycleEventsReachTheSink) {
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie("test:///default");
  ASSERT_NE(hypervisor, nullptr);
  std::mutex mutex;
  std::vector<std::string> seen;  // "name:kind:detail"
  ASSERT_TRUE(hypervisor
                  ->SubscribeEvents([&](HypervisorEvent event) {
                    std::lock_guard lock(mutex);
                    if (event.vm_name != "ev-life") return;
                    EXPECT_EQ(event.vm_uuid, "e7000000-0000-4000-8000-000000000001");
                    EXPECT_GT(event.time_unix_ms, 0);
                    seen.push_back(absl::StrCat(event.vm_name, ":",
                                                std::string(EventKindName(event.kind)), ":",
                                                event.detail));
                  })
                  .ok());
  virConnectPtr conn = virConnectOpen("test:///default");  // an operator beside the agent
  ASSERT_NE(conn, nullptr);
  const char* kXml =
      "<domain type='test'><name>ev-life</name><uuid>e7000000-0000-4000-8000-000000000001</uuid>"
      "<memory>65536</memory><os><type>hvm</type></os></domain>";
  virDomainPtr d = virDomainDefineXML(conn, kXml);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(virDomainCreate(d), 0);
  EXPECT_EQ(virDomainSuspend(d), 0);
  EXPECT_EQ(virDomainResume(d), 0);
  EXPECT_EQ(virDomainDestroy(d), 0);
  EXPECT_EQ(virDomainUndefine(d), 0);
  virDomainFree(d);
  const std::vector<std::string> expected = {
      "ev-life:defined:added",    "ev-life:started:booted",    "ev-life:suspended:paused",
      "ev-life:resumed:unpaused", "ev-life:stopped:destroyed", "ev-life:undefined:removed"};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard lock(mutex);
      if (seen.size() >= expected.size()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  {
    std::lock_guard lock(mutex);
    EXPECT_EQ(seen, expected);
  }
  virConnectClose(conn);
  hypervisor.reset();  // deregisters and stops the loop; no callback after this
}

TEST(LibvirtHypervisorEventsTest, NoEventsAfterDestructionAndResubscribeReplacesTheSink) {
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie("test:///default");
  ASSERT_NE(hypervisor, nullptr);
  std::atomic<int> first{0}, second{0};
  ASSERT_TRUE(hypervisor->SubscribeEvents([&](HypervisorEvent) { ++first; }).ok());
  ASSERT_TRUE(hypervisor->SubscribeEvents([&](HypervisorEvent) { ++second; }).ok());
  virConnectPtr conn = virConnectOpen("test:///default");
  ASSERT_NE(conn, nullptr);
  const char* kXml =
      "<domain type='test'><name>ev-two</name><uuid>e7000000-0000-4000-8000-000000000002</uuid>"
      "<memory>65536</memory><os><type>hvm</type></os></domain>";
  virDomainPtr d = virDomainDefineXML(conn, kXml);
  ASSERT_NE(d, nullptr);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (second.load() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(second.load(), 1);
  EXPECT_EQ(first.load(), 0);
  hypervisor.reset();
  EXPECT_EQ(virDomainUndefine(d), 0);
  virDomainFree(d);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(second.load(), 1);  // the undefine came after destruction
  virConnectClose(conn);
}

TEST(HypervisorInterfaceTest, EventsAreOptional) {
  struct NoEvents : Hypervisor {
    absl::StatusOr<HostInfo> GetHostInfo() override { return HostInfo{}; }
    absl::StatusOr<std::vector<Domain>> ListDomains(const ListOptions&) override {
      return std::vector<Domain>{};
    }
  } plain;
  EXPECT_EQ(plain.SubscribeEvents([](HypervisorEvent) {}),
            absl::UnimplementedError("this hypervisor plug-in does not deliver events"));
}

}  // namespace
}  // namespace strata::hypervisor
