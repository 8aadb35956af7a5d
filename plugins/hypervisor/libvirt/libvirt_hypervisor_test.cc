#include "libvirt_hypervisor.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
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

// ---- VM control on the test driver -----------------------------------------------------------
// Each test opens its own connection to the basic host file: the test driver parses the file
// again for every connection, so changes stay private to the test.

namespace strata::hypervisor {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

std::string NotFoundText(absl::string_view vm) {
  return absl::StrCat("VM '", vm, "' not found on hypervisor '", kBasicUri, "'");
}

using Overlays = std::vector<std::pair<std::string, std::string>>;

VmSnapshotRequest Internal(std::string name, std::string description = "") {
  VmSnapshotRequest request;
  request.name = std::move(name);
  request.description = std::move(description);
  return request;
}

VmSnapshotRequest DiskOnly(std::string name, Overlays overlays, bool atomic = true) {
  VmSnapshotRequest request;
  request.name = std::move(name);
  request.disk_only = true;
  request.atomic = atomic;
  request.overlays = std::move(overlays);
  return request;
}

TEST(LibvirtVmControlTest, SuspendResumeRoundTrip) {
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie(kBasicUri);
  ASSERT_NE(hypervisor, nullptr);
  EXPECT_EQ(hypervisor->GetState("web01").value_or(DomainState::kUnknown), DomainState::kRunning);
  ASSERT_TRUE(hypervisor->Suspend("web01").ok());
  EXPECT_EQ(hypervisor->GetState("web01").value_or(DomainState::kUnknown), DomainState::kPaused);
  // By UUID as well as by name.
  ASSERT_TRUE(hypervisor->Resume("11111111-0000-0000-0000-000000000001").ok());
  EXPECT_EQ(hypervisor->GetState("web01").value_or(DomainState::kUnknown), DomainState::kRunning);
}

TEST(LibvirtVmControlTest, SuspendAndResumeInTheWrongStateAreFailedPrecondition) {
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie(kBasicUri);
  ASSERT_NE(hypervisor, nullptr);
  const std::string on = absl::StrCat(" on hypervisor '", kBasicUri, "'");
  // db01 is paused already: the caller must learn that it did not pause it.
  EXPECT_EQ(hypervisor->Suspend("db01"),
            absl::FailedPreconditionError(
                absl::StrCat("cannot suspend VM 'db01'", on, ": it is already paused")));
  EXPECT_EQ(hypervisor->GetState("db01").value_or(DomainState::kUnknown), DomainState::kPaused);
  EXPECT_EQ(hypervisor->Suspend("batch01"),
            absl::FailedPreconditionError(absl::StrCat("cannot suspend VM 'batch01'", on,
                                                       ": it is not running (state: shutoff)")));
  EXPECT_EQ(hypervisor->Resume("web01"),
            absl::FailedPreconditionError(absl::StrCat("cannot resume VM 'web01'", on,
                                                       ": it is not paused (state: running)")));
  EXPECT_EQ(hypervisor->Resume("batch01"),
            absl::FailedPreconditionError(absl::StrCat("cannot resume VM 'batch01'", on,
                                                       ": it is not paused (state: shutoff)")));
  EXPECT_EQ(hypervisor->GetState("web01").value_or(DomainState::kUnknown), DomainState::kRunning);
}

TEST(LibvirtVmControlTest, FreezeAndThawFilesystems) {
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie(kBasicUri);
  ASSERT_NE(hypervisor, nullptr);
  // The test driver pretends: two file systems frozen, then thawed.
  EXPECT_EQ(hypervisor->FreezeFilesystems("web01"), absl::OkStatus());
  EXPECT_EQ(hypervisor->ThawFilesystems("web01"), absl::OkStatus());
  absl::Status stopped = hypervisor->FreezeFilesystems("batch01");
  EXPECT_EQ(stopped.code(), absl::StatusCode::kFailedPrecondition) << stopped;
  EXPECT_EQ(stopped.message(),
            absl::StrCat("cannot freeze the file systems of VM 'batch01' on hypervisor '",
                         kBasicUri, "': Requested operation is not valid: domain is not running"));
}

TEST(LibvirtVmControlTest, InternalSnapshotCreateListDelete) {
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie(kBasicUri);
  ASSERT_NE(hypervisor, nullptr);
  EXPECT_THAT(hypervisor->ListVmSnapshots("web01").value_or(std::vector<std::string>{"error"}),
              IsEmpty());
  // XML metacharacters in the name and description reach libvirt as text, not markup.
  const std::string odd_snapshot = "nightly <1> & 'two' \"three\"";
  absl::StatusOr<VmSnapshot> created =
      hypervisor->CreateVmSnapshot("web01", Internal(odd_snapshot, "</description><evil/>"));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->name, odd_snapshot);
  EXPECT_FALSE(created->external);
  EXPECT_THAT(created->overlays, IsEmpty());

  absl::StatusOr<VmSnapshot> second = hypervisor->CreateVmSnapshot("web01", Internal("b-second"));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_THAT(hypervisor->ListVmSnapshots("web01").value_or(std::vector<std::string>{}),
              ElementsAre("b-second", odd_snapshot));

  // No name: libvirt picks one, and the answer carries it.
  absl::StatusOr<VmSnapshot> unnamed = hypervisor->CreateVmSnapshot("web01", Internal(""));
  ASSERT_TRUE(unnamed.ok()) << unnamed.status();
  EXPECT_FALSE(unnamed->name.empty());
  EXPECT_THAT(hypervisor->ListVmSnapshots("web01").value_or(std::vector<std::string>{}),
              Contains(unnamed->name));

  // Also on a shut-off VM whose own name needs escaping.
  ASSERT_TRUE(hypervisor->CreateVmSnapshot(kOddName, Internal(kOddName)).ok());
  EXPECT_THAT(hypervisor->ListVmSnapshots(kOddName).value_or(std::vector<std::string>{}),
              ElementsAre(kOddName));
  EXPECT_EQ(hypervisor->DeleteVmSnapshot(kOddName, kOddName, false), absl::OkStatus());

  EXPECT_EQ(hypervisor->DeleteVmSnapshot("web01", odd_snapshot, false), absl::OkStatus());
  // The test driver keeps no metadata apart from its snapshots: metadata_only is refused.
  EXPECT_EQ(hypervisor->DeleteVmSnapshot("web01", unnamed->name, /*metadata_only=*/true),
            absl::InvalidArgumentError(absl::StrCat(
                "cannot delete VM snapshot '", unnamed->name, "' of VM 'web01' on hypervisor '",
                kBasicUri, "': unsupported flags (0x2) in function testDomainSnapshotDelete")));
  EXPECT_EQ(hypervisor->DeleteVmSnapshot("web01", unnamed->name, false), absl::OkStatus());
  EXPECT_THAT(hypervisor->ListVmSnapshots("web01").value_or(std::vector<std::string>{}),
              ElementsAre("b-second"));
  EXPECT_EQ(hypervisor->DeleteVmSnapshot("web01", odd_snapshot, false),
            absl::NotFoundError(absl::StrCat("VM snapshot '", odd_snapshot,
                                             "' of VM 'web01' not found on hypervisor '", kBasicUri,
                                             "'")));
}

TEST(LibvirtVmControlTest, SnapshotRequestsThatCannotWorkAreInvalidArgument) {
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie(kBasicUri);
  ASSERT_NE(hypervisor, nullptr);
  const std::string prefix =
      absl::StrCat("cannot snapshot VM 'web01' on hypervisor '", kBasicUri, "': ");
  EXPECT_EQ(hypervisor->CreateVmSnapshot("web01", DiskOnly("s", {})).status(),
            absl::InvalidArgumentError(prefix + "a disk-only snapshot needs at least one overlay"));
  EXPECT_EQ(
      hypervisor->CreateVmSnapshot("web01", DiskOnly("s", {{"vda", "/tmp/o1"}, {"vdz", "/tmp/o2"}}))
          .status(),
      absl::InvalidArgumentError(prefix + "it has no disk 'vdz'"));
  EXPECT_EQ(hypervisor
                ->CreateVmSnapshot("web01",
                                   [] {
                                     VmSnapshotRequest request = Internal("s");
                                     request.overlays = {{"vda", "/tmp/o"}};
                                     return request;
                                   }())
                .status(),
            absl::InvalidArgumentError(prefix + "overlays are only for disk-only snapshots"));
  EXPECT_THAT(hypervisor->ListVmSnapshots("web01").value_or(std::vector<std::string>{"error"}),
              IsEmpty());
}

TEST(LibvirtVmControlTest, DiskOnlySnapshotOnTheTestDriverIsLibvirtsWholeError) {
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie(kBasicUri);
  ASSERT_NE(hypervisor, nullptr);
  absl::StatusOr<VmSnapshot> snapshot =
      hypervisor->CreateVmSnapshot("web01", DiskOnly("backup-1", {{"vda", "/tmp/web01.ov"}}));
  // DISK_ONLY (0x10) | ATOMIC (0x80): libvirt names the flags it does not know.
  EXPECT_EQ(snapshot.status(),
            absl::InvalidArgumentError(absl::StrCat(
                "cannot snapshot VM 'web01' on hypervisor '", kBasicUri,
                "': unsupported flags (0x10) in function testDomainSnapshotCreateXML")));
  EXPECT_THAT(hypervisor->ListVmSnapshots("web01").value_or(std::vector<std::string>{"error"}),
              IsEmpty());
}

TEST(LibvirtVmControlTest, BlockCommitOnTheTestDriverIsUnimplemented) {
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie(kBasicUri);
  ASSERT_NE(hypervisor, nullptr);
  EXPECT_EQ(hypervisor->CommitActiveOverlay("web01", "vda", std::chrono::seconds(5)),
            absl::UnimplementedError(
                absl::StrCat("cannot commit disk 'vda' of VM 'web01' on hypervisor '", kBasicUri,
                             "': this function is not supported by the connection driver: "
                             "virDomainBlockCommit")));
}

// The offline undo of an overlay: a shut-off VM's saved disk goes back to its base image.
TEST(LibvirtVmControlTest, SetSavedDiskSourceRedefinesAShutOffVmsDisk) {
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie(kBasicUri);
  ASSERT_NE(hypervisor, nullptr);
  const std::string overlay = "/var/lib/libvirt/images/batch01.qcow2";
  DiskSourceChange change;
  change.target = "vda";
  change.expected_path = overlay;
  change.path = "/var/lib/libvirt/images/batch01-base.img";
  change.format = "raw";
  ASSERT_EQ(hypervisor->SetSavedDiskSource("batch01", change), absl::OkStatus());
  std::vector<Domain> batch01 = ListOrDie(*hypervisor, {"batch01"});
  ASSERT_EQ(batch01.size(), 1u);
  EXPECT_EQ(batch01[0].state, DomainState::kShutoff);
  ASSERT_EQ(batch01[0].disks.size(), 1u);
  EXPECT_EQ(batch01[0].disks[0].source.path, "/var/lib/libvirt/images/batch01-base.img");
  EXPECT_EQ(batch01[0].disks[0].source.format, "raw");
  EXPECT_THAT(batch01[0].disks[0].backing_chain, IsEmpty());

  // Again: its source is no longer the one expected.
  const std::string what = absl::StrCat(
      "cannot change the source of disk 'vda' of VM 'batch01' on hypervisor '", kBasicUri, "'");
  EXPECT_EQ(hypervisor->SetSavedDiskSource("batch01", change),
            absl::FailedPreconditionError(absl::StrCat(
                what, ": its saved source is '/var/lib/libvirt/images/batch01-base.img', not '",
                overlay, "'")));
  change.target = "vdz";
  EXPECT_EQ(hypervisor->SetSavedDiskSource("batch01", change),
            absl::InvalidArgumentError(absl::StrCat(
                "cannot change the source of disk 'vdz' of VM 'batch01' on hypervisor '", kBasicUri,
                "': it has no disk 'vdz'")));
  // A running VM's saved definition keeps naming what it writes to.
  change.target = "vda";
  change.expected_path = "/var/lib/libvirt/images/web01-os.qcow2";
  EXPECT_EQ(hypervisor->SetSavedDiskSource("web01", change),
            absl::FailedPreconditionError(
                absl::StrCat("cannot change the source of disk 'vda' of VM 'web01' on hypervisor '",
                             kBasicUri, "': it is not shut off (state: running)")));
  EXPECT_EQ(ListOrDie(*hypervisor, {"web01"})[0].disks[0].source.path,
            "/var/lib/libvirt/images/web01-os.qcow2");
}

TEST(LibvirtVmControlTest, SavedXmlRedefinesTheSameVmAndDefinesACopy) {
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie(kBasicUri);
  ASSERT_NE(hypervisor, nullptr);
  absl::StatusOr<std::string> saved = hypervisor->GetSavedXml("web01");
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_THAT(*saved, HasSubstr("<name>web01</name>"));
  EXPECT_THAT(*saved, HasSubstr("/var/lib/libvirt/images/web01-os.qcow2"));

  // Same UUID: a redefinition of the same VM, still running.
  absl::StatusOr<std::string> uuid = hypervisor->DefineXml(*saved);
  ASSERT_TRUE(uuid.ok()) << uuid.status();
  EXPECT_EQ(*uuid, "11111111-0000-0000-0000-000000000001");
  EXPECT_EQ(hypervisor->GetState("web01").value_or(DomainState::kUnknown), DomainState::kRunning);

  // A copy: new name and UUID.
  std::string copy = *saved;
  copy.replace(copy.find("<name>web01</name>"), 18, "<name>web01-restored</name>");
  const std::string old_uuid = "<uuid>11111111-0000-0000-0000-000000000001</uuid>";
  ASSERT_NE(copy.find(old_uuid), std::string::npos);
  copy.replace(copy.find(old_uuid), old_uuid.size(),
               "<uuid>11111111-0000-0000-0000-0000000000aa</uuid>");
  uuid = hypervisor->DefineXml(copy);
  ASSERT_TRUE(uuid.ok()) << uuid.status();
  EXPECT_EQ(*uuid, "11111111-0000-0000-0000-0000000000aa");
  std::vector<Domain> restored = ListOrDie(*hypervisor, {"web01-restored"});
  ASSERT_EQ(restored.size(), 1u);
  EXPECT_EQ(restored[0].state, DomainState::kShutoff);
  EXPECT_TRUE(restored[0].persistent);
  ASSERT_EQ(restored[0].disks.size(), 3u);
  EXPECT_EQ(restored[0].disks[0].source.path, "/var/lib/libvirt/images/web01-os.qcow2");

  // A name that needs escaping survives the round trip.
  absl::StatusOr<std::string> odd = hypervisor->GetSavedXml(kOddName);
  ASSERT_TRUE(odd.ok()) << odd.status();
  uuid = hypervisor->DefineXml(*odd);
  ASSERT_TRUE(uuid.ok()) << uuid.status();
  EXPECT_EQ(*uuid, "11111111-0000-0000-0000-000000000005");
  EXPECT_THAT(Names(ListOrDie(*hypervisor, {"11111111-0000-0000-0000-000000000005"})),
              ElementsAre(kOddName));
}

TEST(LibvirtVmControlTest, DefineXmlErrorsKeepLibvirtsMessage) {
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie(kBasicUri);
  ASSERT_NE(hypervisor, nullptr);
  absl::StatusOr<std::string> uuid = hypervisor->DefineXml("<domain type='test'><name>x</name>");
  EXPECT_EQ(uuid.status().code(), absl::StatusCode::kInvalidArgument) << uuid.status();
  // libvirt's message spans lines (libxml2 points at the error); it is kept whole.
  EXPECT_THAT(std::string(uuid.status().message()),
              ::testing::StartsWith(absl::StrCat("cannot define a VM on hypervisor '", kBasicUri,
                                                 "': (domain_definition):1: ")));
  EXPECT_THAT(std::string(uuid.status().message()),
              HasSubstr("\n<domain type='test'><name>x</name>\n"));
}

TEST(LibvirtVmControlTest, StartDestroyUndefine) {
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie(kBasicUri);
  ASSERT_NE(hypervisor, nullptr);
  const std::string on = absl::StrCat(" on hypervisor '", kBasicUri, "'");
  ASSERT_EQ(hypervisor->Start("batch01"), absl::OkStatus());
  EXPECT_EQ(hypervisor->GetState("batch01").value_or(DomainState::kUnknown), DomainState::kRunning);
  absl::Status again = hypervisor->Start("batch01");
  EXPECT_EQ(again.message(), absl::StrCat("cannot start VM 'batch01'", on,
                                          ": internal error: Domain 'batch01' is already running"));
  ASSERT_EQ(hypervisor->Destroy("batch01"), absl::OkStatus());
  EXPECT_EQ(hypervisor->GetState("batch01").value_or(DomainState::kUnknown), DomainState::kShutoff);
  EXPECT_EQ(hypervisor->Destroy("batch01"),
            absl::FailedPreconditionError(
                absl::StrCat("cannot destroy VM 'batch01'", on,
                             ": Requested operation is not valid: domain is not running")));

  // With snapshot metadata (the flags the test driver rejects are dropped on the way).
  ASSERT_TRUE(hypervisor->CreateVmSnapshot("batch01", Internal("s1")).ok());
  ASSERT_EQ(hypervisor->Undefine("batch01"), absl::OkStatus());
  EXPECT_EQ(hypervisor->GetState("batch01").status(), absl::NotFoundError(NotFoundText("batch01")));

  // A running VM lives on as a transient one.
  ASSERT_TRUE(hypervisor->CreateVmSnapshot("web01", Internal("s1")).ok());
  ASSERT_EQ(hypervisor->Undefine("web01"), absl::OkStatus());
  std::vector<Domain> web01 = ListOrDie(*hypervisor, {"web01"});
  ASSERT_EQ(web01.size(), 1u);
  EXPECT_FALSE(web01[0].persistent);
  EXPECT_EQ(web01[0].state, DomainState::kRunning);
  ASSERT_EQ(hypervisor->Destroy("web01"), absl::OkStatus());
  EXPECT_EQ(hypervisor->GetState("web01").status(), absl::NotFoundError(NotFoundText("web01")));
}

TEST(LibvirtVmControlTest, UnknownVmIsNotFoundForEveryOperation) {
  std::unique_ptr<LibvirtHypervisor> hypervisor = OpenOrDie(kBasicUri);
  ASSERT_NE(hypervisor, nullptr);
  for (const std::string vm : {"nope", "99999999-0000-0000-0000-000000000000", kOddName + 1}) {
    const absl::Status expected = absl::NotFoundError(NotFoundText(vm));
    EXPECT_EQ(hypervisor->GetState(vm).status(), expected);
    EXPECT_EQ(hypervisor->Suspend(vm), expected);
    EXPECT_EQ(hypervisor->Resume(vm), expected);
    EXPECT_EQ(hypervisor->FreezeFilesystems(vm), expected);
    EXPECT_EQ(hypervisor->ThawFilesystems(vm), expected);
    EXPECT_EQ(hypervisor->GetSavedXml(vm).status(), expected);
    EXPECT_EQ(hypervisor->CreateVmSnapshot(vm, Internal("s")).status(), expected);
    EXPECT_EQ(hypervisor->DeleteVmSnapshot(vm, "s", false), expected);
    EXPECT_EQ(hypervisor->ListVmSnapshots(vm).status(), expected);
    EXPECT_EQ(hypervisor->CommitActiveOverlay(vm, "vda", std::chrono::seconds(1)), expected);
    EXPECT_EQ(hypervisor->SetSavedDiskSource(vm, {"vda", "/a", "/b", "raw"}), expected);
    EXPECT_EQ(hypervisor->Start(vm), expected);
    EXPECT_EQ(hypervisor->Destroy(vm), expected);
    EXPECT_EQ(hypervisor->Undefine(vm), expected);
  }
  EXPECT_EQ(hypervisor->DeleteVmSnapshot("web01", "nope", true),
            absl::NotFoundError(absl::StrCat("VM snapshot 'nope' of VM 'web01' not found on "
                                             "hypervisor '",
                                             kBasicUri, "'")));
  EXPECT_THAT(Names(ListOrDie(*hypervisor)), Contains("web01"));
  EXPECT_THAT(Names(ListOrDie(*hypervisor)), Not(Contains("nope")));
}

TEST(HypervisorInterfaceTest, VmControlIsOptional) {
  struct Plain : Hypervisor {
    absl::StatusOr<HostInfo> GetHostInfo() override { return HostInfo{}; }
    absl::StatusOr<std::vector<Domain>> ListDomains(const ListOptions&) override {
      return std::vector<Domain>{};
    }
  } plain;
  EXPECT_EQ(plain.Suspend("web01"),
            absl::UnimplementedError("this hypervisor plug-in does not support suspend (VM "
                                     "'web01')"));
  EXPECT_EQ(plain.CommitActiveOverlay("web01", "vda", std::chrono::seconds(1)),
            absl::UnimplementedError(
                "this hypervisor plug-in does not support block commit (VM 'web01')"));
  EXPECT_EQ(plain.SetSavedDiskSource("web01", {"vda", "/a", "/b", "raw"}),
            absl::UnimplementedError("this hypervisor plug-in does not support changing a saved "
                                     "disk source (VM 'web01')"));
  EXPECT_EQ(plain.DefineXml("<domain/>").status(),
            absl::UnimplementedError("this hypervisor plug-in cannot define VMs"));
}

}  // namespace
}  // namespace strata::hypervisor

// ---- real QEMU through libvirtd (skipped when qemu:///system does not answer) ---------------
// Each test defines and starts its own VM (64 MiB, no OS, TCG, one qcow2 disk made with
// qemu-img in a temp dir) and destroys and undefines it however the test ends. The tests never
// start or stop libvirtd.

namespace strata::hypervisor {
namespace {

// Runs `command` with /bin/sh; true when it exits 0.
bool RunShell(const std::string& command) { return std::system(command.c_str()) == 0; }

const Disk* FindDisk(const Domain& domain, absl::string_view target) {
  for (const Disk& disk : domain.disks) {
    if (disk.target == target) return &disk;
  }
  return nullptr;
}

class LibvirtQemuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    connection_ = virConnectOpen("qemu:///system");
    if (connection_ == nullptr) {
      GTEST_SKIP() << "qemu:///system does not answer (is libvirtd running?): "
                   << virGetLastErrorMessage();
    }
    for (const char* binary : {"/usr/bin/qemu-system-x86_64", "/usr/bin/qemu-img"}) {
      if (!std::filesystem::exists(binary)) GTEST_SKIP() << binary << " is not installed";
    }
    // QEMU runs as libvirt-qemu: it must reach the images (libvirt chowns the files only).
    namespace fs = std::filesystem;
    fs::permissions(dir_.path(), fs::perms::owner_all | fs::perms::group_read |
                                     fs::perms::group_exec | fs::perms::others_read |
                                     fs::perms::others_exec);
    base_ = (dir_.path() / "base.qcow2").string();
    overlay_ = (dir_.path() / "base.backup-1.qcow2").string();
    ASSERT_TRUE(RunShell("qemu-img create -q -f qcow2 '" + base_ + "' 64M"));

    name_ = absl::StrCat("strata-test-", getpid(), "-",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    hypervisor_ = OpenOrDie("qemu:///system");
    ASSERT_NE(hypervisor_, nullptr);
    // No OS: SeaBIOS finds nothing to boot and idles.
    absl::StatusOr<std::string> uuid = hypervisor_->DefineXml(absl::StrFormat(
        R"(<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='pty'/>
    <console type='pty'/>
    <memballoon model='none'/>
  </devices>
</domain>)",
        name_, base_));
    ASSERT_TRUE(uuid.ok()) << uuid.status();
    uuid_ = *uuid;
    ASSERT_EQ(hypervisor_->Start(uuid_), absl::OkStatus());
  }

  void TearDown() override {
    hypervisor_.reset();
    if (connection_ == nullptr) return;
    if (!name_.empty()) {
      virDomainPtr domain = virDomainLookupByName(connection_, name_.c_str());
      if (domain != nullptr) {
        if (virDomainIsActive(domain) == 1) (void)virDomainDestroy(domain);
        (void)virDomainUndefineFlags(domain, VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                                                 VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA |
                                                 VIR_DOMAIN_UNDEFINE_NVRAM);
        virDomainFree(domain);
      }
    }
    virConnectClose(connection_);
  }

  // The live source path of vda and of its first backing image ("" when none).
  std::pair<std::string, std::string> LiveVda() {
    std::vector<Domain> live = ListOrDie(*hypervisor_, {uuid_});
    if (live.size() != 1) return {"no VM", ""};
    const Disk* vda = FindDisk(live[0], "vda");
    if (vda == nullptr) return {"no vda", ""};
    return {vda->source.path, vda->backing_chain.empty() ? "" : vda->backing_chain[0].path};
  }

  // Writes `pattern` over the whole 64 MiB disk as the guest would (HMP qemu-io on the
  // virtio device, so that it lands in the active layer).
  bool GuestWrite(char pattern) {
    return RunShell(absl::StrFormat(
        "virsh -q -c qemu:///system qemu-monitor-command '%s' --hmp "
        "'qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend \"write -P 0x%02x 0 64M\"' "
        ">/dev/null",
        name_, pattern));
  }

  bool NoBlockJobOnVda() {
    virDomainPtr domain = virDomainLookupByName(connection_, name_.c_str());
    if (domain == nullptr) return false;
    virDomainBlockJobInfo info{};
    const int found = virDomainGetBlockJobInfo(domain, "vda", &info, 0);
    virDomainFree(domain);
    return found == 0;
  }

  virConnectPtr connection_ = nullptr;
  TempDir dir_;
  std::string base_;
  std::string overlay_;
  std::string name_;
  std::string uuid_;
  std::unique_ptr<LibvirtHypervisor> hypervisor_;
};

using Overlay = std::pair<std::string, std::string>;

TEST_F(LibvirtQemuTest, DiskOnlySnapshotThenActiveCommitBackToTheBaseImage) {
  EXPECT_EQ(hypervisor_->GetState(uuid_).value_or(DomainState::kUnknown), DomainState::kRunning);

  absl::StatusOr<VmSnapshot> snapshot =
      hypervisor_->CreateVmSnapshot(uuid_, DiskOnly("backup-1", {{"vda", overlay_}}));
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ(snapshot->name, "backup-1");
  EXPECT_TRUE(snapshot->external);
  EXPECT_THAT(snapshot->overlays, ElementsAre(Overlay("vda", overlay_)));
  EXPECT_TRUE(std::filesystem::exists(overlay_));
  EXPECT_THAT(hypervisor_->ListVmSnapshots(uuid_).value_or(std::vector<std::string>{}),
              ElementsAre("backup-1"));

  // The VM now writes to the overlay, on top of the base image; so does its saved definition.
  EXPECT_EQ(LiveVda(), Overlay(overlay_, base_));
  absl::StatusOr<std::string> saved = hypervisor_->GetSavedXml(uuid_);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_THAT(*saved, HasSubstr(absl::StrCat("<source file='", overlay_, "'")));
  ASSERT_TRUE(GuestWrite(0x5a));

  // Suspend/resume on real QEMU, including the already-paused answer.
  ASSERT_EQ(hypervisor_->Suspend(uuid_), absl::OkStatus());
  EXPECT_EQ(
      hypervisor_->Suspend(uuid_),
      absl::FailedPreconditionError(absl::StrCat(
          "cannot suspend VM '", uuid_, "' on hypervisor 'qemu:///system': it is already paused")));
  ASSERT_EQ(hypervisor_->Resume(uuid_), absl::OkStatus());

  // No guest agent: libvirt's own answer, whole.
  EXPECT_EQ(hypervisor_->FreezeFilesystems(uuid_),
            absl::UnimplementedError(absl::StrCat(
                "cannot freeze the file systems of VM '", uuid_,
                "' on hypervisor 'qemu:///system': argument unsupported: QEMU guest agent is "
                "not configured")));

  const auto started = std::chrono::steady_clock::now();
  ASSERT_EQ(hypervisor_->CommitActiveOverlay(uuid_, "vda", std::chrono::seconds(60)),
            absl::OkStatus());
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  std::printf("active commit (64 MiB written in the overlay) + pivot of vda took %lld ms\n",
              static_cast<long long>(took.count()));
  EXPECT_TRUE(NoBlockJobOnVda());

  EXPECT_EQ(LiveVda(), Overlay(base_, ""));
  saved = hypervisor_->GetSavedXml(uuid_);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_THAT(*saved, HasSubstr(absl::StrCat("<source file='", base_, "'")));
  EXPECT_THAT(*saved, Not(HasSubstr(overlay_)));

  // The commit left libvirt's record; only the metadata can go (the overlay file is ours).
  EXPECT_EQ(hypervisor_->DeleteVmSnapshot(uuid_, "backup-1", /*metadata_only=*/false),
            absl::InvalidArgumentError(absl::StrCat(
                "cannot delete VM snapshot 'backup-1' of VM '", uuid_,
                "' on hypervisor 'qemu:///system': invalid argument: could not find base disk "
                "source in disk source chain")));
  ASSERT_EQ(hypervisor_->DeleteVmSnapshot(uuid_, "backup-1", /*metadata_only=*/true),
            absl::OkStatus());
  EXPECT_THAT(hypervisor_->ListVmSnapshots(uuid_).value_or(std::vector<std::string>{"error"}),
              IsEmpty());

  ASSERT_EQ(hypervisor_->Destroy(uuid_), absl::OkStatus());
  EXPECT_EQ(hypervisor_->GetState(uuid_).value_or(DomainState::kUnknown), DomainState::kShutoff);
  ASSERT_EQ(hypervisor_->Undefine(uuid_), absl::OkStatus());
  EXPECT_EQ(hypervisor_->GetState(uuid_).status(),
            absl::NotFoundError(
                absl::StrCat("VM '", uuid_, "' not found on hypervisor 'qemu:///system'")));
  // What the guest wrote into the overlay is in the base image now.
  EXPECT_TRUE(RunShell("qemu-io -r -f qcow2 -c 'read -P 0x5a 0 64M' '" + base_ + "' >/dev/null"));
  EXPECT_TRUE(RunShell("qemu-img check -q '" + base_ + "'"));
}

TEST_F(LibvirtQemuTest, CommitThatTimesOutIsAbortedAndTheVmStaysOnTheOverlay) {
  ASSERT_TRUE(hypervisor_->CreateVmSnapshot(uuid_, DiskOnly("backup-1", {{"vda", overlay_}})).ok());
  ASSERT_TRUE(GuestWrite(0x6b));  // 64 MiB to merge: far more than 1 ms of work
  EXPECT_EQ(hypervisor_->CommitActiveOverlay(uuid_, "vda", std::chrono::milliseconds(1)),
            absl::DeadlineExceededError(absl::StrCat(
                "cannot commit disk 'vda' of VM '", uuid_,
                "' on hypervisor 'qemu:///system': the block commit did not finish within 1 ms; "
                "the job was aborted and the VM still writes to the overlay")));
  EXPECT_TRUE(NoBlockJobOnVda());
  EXPECT_EQ(LiveVda(), Overlay(overlay_, base_));
  EXPECT_EQ(hypervisor_->GetState(uuid_).value_or(DomainState::kUnknown), DomainState::kRunning);

  // A second attempt with time enough works.
  ASSERT_EQ(hypervisor_->CommitActiveOverlay(uuid_, "vda", std::chrono::seconds(60)),
            absl::OkStatus());
  EXPECT_EQ(LiveVda(), Overlay(base_, ""));
  ASSERT_EQ(hypervisor_->DeleteVmSnapshot(uuid_, "backup-1", /*metadata_only=*/true),
            absl::OkStatus());
  ASSERT_EQ(hypervisor_->Destroy(uuid_), absl::OkStatus());
  EXPECT_TRUE(RunShell("qemu-io -r -f qcow2 -c 'read -P 0x6b 0 64M' '" + base_ + "' >/dev/null"));
}

TEST_F(LibvirtQemuTest, SnapshotErrorsOfQemuKeepLibvirtsMessage) {
  // Quiesce needs a guest agent, which this VM does not have.
  VmSnapshotRequest quiesced = DiskOnly("backup-q", {{"vda", overlay_}});
  quiesced.quiesce = true;
  EXPECT_EQ(hypervisor_->CreateVmSnapshot(uuid_, quiesced).status(),
            absl::UnimplementedError(absl::StrCat(
                "cannot snapshot VM '", uuid_,
                "' on hypervisor 'qemu:///system': argument unsupported: QEMU guest agent is "
                "not configured")));
  EXPECT_FALSE(std::filesystem::exists(overlay_));
  EXPECT_EQ(LiveVda(), Overlay(base_, ""));
  EXPECT_EQ(hypervisor_->CommitActiveOverlay(uuid_, "vdz", std::chrono::seconds(5)),
            absl::InvalidArgumentError(absl::StrCat(
                "cannot commit disk 'vdz' of VM '", uuid_,
                "' on hypervisor 'qemu:///system': invalid argument: disk 'vdz' not found in "
                "domain")));
  // Nothing to commit: vda has no backing image (the shallow commit names the top image).
  EXPECT_EQ(hypervisor_->CommitActiveOverlay(uuid_, "vda", std::chrono::seconds(5)),
            absl::InvalidArgumentError(
                absl::StrCat("cannot commit disk 'vda' of VM '", uuid_,
                             "' on hypervisor 'qemu:///system': invalid argument: top '", base_,
                             "' in chain for '", base_, "' has no backing file")));
  EXPECT_EQ(hypervisor_->Resume(uuid_),
            absl::FailedPreconditionError(absl::StrCat(
                "cannot resume VM '", uuid_,
                "' on hypervisor 'qemu:///system': it is not paused (state: running)")));
}

}  // namespace
}  // namespace strata::hypervisor
