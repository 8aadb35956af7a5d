#include "strata/agent/event_manager.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "strata/agent/config.h"
#include "strata/agent/host_services.h"
#include "strata/agent/plugin_host.h"

namespace strata::agent {
namespace {

using hypervisor::EventKind;
using hypervisor::HypervisorEvent;

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

// "name:kind/source" per change.
std::string Describe(const std::vector<VmChange>& changes) {
  std::string out;
  for (const VmChange& c : changes) {
    out += c.vm_name + ":" + std::string(ChangeKindName(c.kind)) + "/" + c.source + " ";
  }
  return out;
}

// An in-memory host.
class FakeHost : public HostView {
 public:
  void Set(const std::string& uuid, const std::string& name, const std::string& state,
           const std::string& digest) {
    std::lock_guard lock(mutex_);
    vms_[uuid] = {uuid, name, state, digest};
  }
  void Remove(const std::string& uuid) {
    std::lock_guard lock(mutex_);
    vms_.erase(uuid);
  }
  void SetFailing(bool failing) {
    std::lock_guard lock(mutex_);
    failing_ = failing;
  }
  absl::StatusOr<std::vector<VmObservation>> ObserveAll() override {
    std::lock_guard lock(mutex_);
    ++all_calls;
    if (failing_) return absl::UnavailableError("host down");
    std::vector<VmObservation> out;
    for (const auto& [uuid, vm] : vms_) out.push_back(vm);
    return out;
  }
  absl::StatusOr<std::vector<VmObservation>> ObserveVms(
      const std::vector<std::string>& uuids) override {
    std::lock_guard lock(mutex_);
    ++some_calls;
    if (failing_) return absl::UnavailableError("host down");
    std::vector<VmObservation> out;
    for (const std::string& uuid : uuids) {
      if (auto it = vms_.find(uuid); it != vms_.end()) out.push_back(it->second);
    }
    return out;
  }
  absl::Status SubscribeEvents(hypervisor::EventSink sink) override {
    std::lock_guard lock(mutex_);
    sink_ = std::move(sink);
    return absl::OkStatus();
  }
  void Emit(const std::string& uuid, const std::string& name, EventKind kind) {
    hypervisor::EventSink sink;
    {
      std::lock_guard lock(mutex_);
      sink = sink_;
    }
    ASSERT_TRUE(sink) << "nobody subscribed";
    sink(HypervisorEvent{uuid, name, kind, "", 0});
  }
  int all_calls = 0;
  int some_calls = 0;

 private:
  std::mutex mutex_;
  std::map<std::string, VmObservation> vms_;
  hypervisor::EventSink sink_;
  bool failing_ = false;
};

TEST(ChangeForEventTest, RawKinds) {
  EXPECT_EQ(ChangeForEvent(EventKind::kDefined), ChangeKind::kAdded);
  EXPECT_EQ(ChangeForEvent(EventKind::kUndefined), ChangeKind::kRemoved);
  for (EventKind kind :
       {EventKind::kRedefined, EventKind::kStarted, EventKind::kStopped, EventKind::kSuspended,
        EventKind::kResumed, EventKind::kDeviceAdded, EventKind::kDeviceRemoved,
        EventKind::kModified, EventKind::kOtherLifecycle}) {
    EXPECT_EQ(ChangeForEvent(kind), ChangeKind::kModified) << EventKindName(kind);
  }
  EXPECT_EQ(ChangeForEvent(EventKind::kConnectionClosed), std::nullopt);
}

TEST(EventManagerTest, OneWindowBecomesOneChangeSetCheckedAgainstTheHost) {
  FakeHost host;
  ChangeLog log;
  EventManagerOptions options;
  options.initial_reconcile = false;
  EventManager manager(host, log, options);
  // Known before: a, b, c (reported by a first reconciliation).
  host.Set("a", "a", "running", "1");
  host.Set("b", "b", "running", "1");
  host.Set("c", "c", "running", "1");
  manager.queue().RequestResync();
  ASSERT_TRUE(manager.ProcessPending().ok());
  EXPECT_EQ(Describe(log.Since(0)), "a:added/reconcile b:added/reconcile c:added/reconcile ");
  const uint64_t before = log.last_sequence();

  manager.OnHypervisorEvent({"a", "a", EventKind::kSuspended, "", 0});  // a: paused
  host.Set("a", "a", "paused", "1");
  manager.OnHypervisorEvent({"a", "a", EventKind::kResumed, "", 0});  // back: no change
  host.Set("a", "a", "running", "1");
  manager.OnHypervisorEvent({"b", "b", EventKind::kRedefined, "", 0});  // b: new digest
  manager.OnHypervisorEvent({"b", "b", EventKind::kDeviceAdded, "", 0});
  host.Set("b", "b", "running", "2");
  manager.OnHypervisorEvent({"c", "c", EventKind::kUndefined, "", 0});  // c: gone
  host.Remove("c");
  manager.OnHypervisorEvent({"d", "d", EventKind::kDefined, "", 0});  // d: came and went
  manager.OnHypervisorEvent({"d", "d", EventKind::kUndefined, "", 0});
  manager.OnHypervisorEvent({"t", "t", EventKind::kStarted, "", 0});  // t: a new transient VM
  host.Set("t", "t", "running", "9");
  ASSERT_TRUE(manager.ProcessPending().ok());
  EXPECT_EQ(Describe(log.Since(before)), "b:modified/event c:removed/event t:added/event ");
  EventManagerStats stats = manager.stats();
  EXPECT_EQ(stats.notifications, 2u);
  EXPECT_EQ(stats.raw_events, 8u);
  EXPECT_EQ(host.some_calls, 1);  // the changed VMs only, in one call
  EXPECT_EQ(host.all_calls, 1);

  // The transient VM stops: its raw "stopped" becomes removed.
  manager.OnHypervisorEvent({"t", "t", EventKind::kStopped, "", 0});
  host.Remove("t");
  ASSERT_TRUE(manager.ProcessPending().ok());
  EXPECT_EQ(Describe(log.Since(before + 3)), "t:removed/event ");
}

TEST(EventManagerTest, ClusterEventsShareTheWindowWithTheVmChanges) {
  FakeHost host;
  ChangeLog log;
  EventManagerOptions options;
  options.initial_reconcile = false;
  EventManager manager(host, log, options);
  host.Set("a", "a", "running", "1");
  manager.queue().RequestResync();
  ASSERT_TRUE(manager.ProcessPending().ok());
  const uint64_t before = log.last_sequence();
  const uint64_t notifications = manager.stats().notifications;

  manager.OnClusterEvent("member-unreachable:host-b");
  manager.OnHypervisorEvent({"a", "a", EventKind::kRedefined, "", 0});
  host.Set("a", "a", "running", "2");
  manager.OnClusterEvent("member-unreachable:host-b");  // the same, again: one
  manager.OnClusterEvent("member-back:host-b");
  ASSERT_TRUE(manager.ProcessPending().ok());
  std::vector<VmChange> changes = log.Since(before);
  ASSERT_EQ(changes.size(), 3u);
  EXPECT_EQ(changes[0].kind, ChangeKind::kCluster);
  EXPECT_EQ(changes[0].vm_name, "member-unreachable:host-b");
  EXPECT_EQ(changes[1].vm_name, "member-back:host-b");
  EXPECT_EQ(changes[2].kind, ChangeKind::kModified);
  EXPECT_EQ(changes[2].vm_uuid, "a");
  EXPECT_EQ(manager.stats().notifications, notifications + 1);  // one window, one notification
  EXPECT_EQ(host.some_calls, 1);  // the VM only: cluster events are not observed

  // A window holding only a cluster event appends it without asking the host.
  manager.OnClusterEvent("member-left:host-c");
  ASSERT_TRUE(manager.ProcessPending().ok());
  ASSERT_EQ(log.Since(before + 3).size(), 1u);
  EXPECT_EQ(log.Since(before + 3)[0].vm_name, "member-left:host-c");
  EXPECT_EQ(host.some_calls, 1);
}

TEST(EventManagerTest, ManyChangedVmsOrALostConnectionMeanAWholeHostObservation) {
  FakeHost host;
  ChangeLog log;
  EventManagerOptions options;
  options.details_limit = 2;
  EventManager manager(host, log, options);
  for (const char* name : {"a", "b", "c"}) {
    host.Set(name, name, "running", "1");
    manager.OnHypervisorEvent({name, name, EventKind::kDefined, "", 0});
  }
  ASSERT_TRUE(manager.ProcessPending().ok());
  EXPECT_EQ(host.all_calls, 1);
  EXPECT_EQ(host.some_calls, 0);
  EXPECT_EQ(Describe(log.Since(0)), "a:added/event b:added/event c:added/event ");
  host.Set("z", "z", "running", "1");  // happened while the connection was down
  manager.OnHypervisorEvent({"", "", EventKind::kConnectionClosed, "eof", 0});
  ASSERT_TRUE(manager.ProcessPending().ok());
  EXPECT_EQ(host.all_calls, 2);
  EXPECT_EQ(Describe(log.Since(3)), "z:added/reconcile ");
}

TEST(EventManagerTest, FailuresAreRetriedWithBackOffAndLoseNothing) {
  FakeHost host;
  ChangeLog log;
  EventManagerOptions options;
  options.window = std::chrono::milliseconds(20);
  options.initial_backoff = std::chrono::milliseconds(20);
  options.reconcile_interval = std::chrono::milliseconds(0);
  options.initial_reconcile = false;
  EventManager manager(host, log, options);
  manager.Start();
  host.SetFailing(true);
  host.Set("a", "a", "running", "1");
  host.Emit("a", "a", EventKind::kDefined);
  ASSERT_TRUE(WaitFor([&] { return manager.stats().failures >= 2; }, std::chrono::seconds(10)));
  EXPECT_EQ(log.last_sequence(), 0u);
  host.SetFailing(false);
  ASSERT_TRUE(WaitFor([&] { return log.last_sequence() >= 1; }, std::chrono::seconds(10)));
  // A failed batch is retried as a whole-host reconciliation (what it covered may be stale).
  EXPECT_EQ(Describe(log.Since(0)), "a:added/reconcile ");
  manager.Stop();
}

// A storm over 100 ms with a 500 ms window: one change set, not one per event.
TEST(EventManagerTest, AStormInsideTheWindowIsOneNotification) {
  FakeHost host;
  ChangeLog log;
  EventManagerOptions options;
  options.window = std::chrono::milliseconds(500);
  options.initial_reconcile = false;
  EventManager manager(host, log, options);
  manager.Start();
  for (int i = 0; i < 200; ++i) host.Set("vm" + std::to_string(i), "vm", "running", "1");
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < 200; ++i) {
      const std::string uuid = "vm" + std::to_string(i);
      host.Emit(uuid, "vm", round == 0 ? EventKind::kDefined : EventKind::kModified);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(WaitFor([&] { return log.last_sequence() >= 200; }, std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(700));  // a further window: nothing
  EventManagerStats stats = manager.stats();
  EXPECT_EQ(stats.notifications, 1u);
  EXPECT_EQ(stats.changes_written, 200u);
  EXPECT_EQ(stats.raw_events, 2000u);
  EXPECT_EQ(log.last_sequence(), 200u);
  manager.Stop();
}

TEST(EventManagerTest, PeriodicReconciliationCatchesWhatNoEventTold) {
  FakeHost host;
  ChangeLog log;
  EventManagerOptions options;
  options.window = std::chrono::milliseconds(10);
  options.reconcile_interval = std::chrono::milliseconds(100);
  options.subscribe_events = false;
  EventManager manager(host, log, options);
  manager.Start();
  ASSERT_TRUE(
      WaitFor([&] { return manager.stats().reconciliations >= 1; }, std::chrono::seconds(10)));
  EXPECT_EQ(manager.stats().events_status, "not subscribed");
  host.Set("x", "x", "running", "1");
  ASSERT_TRUE(WaitFor([&] { return log.last_sequence() >= 1; }, std::chrono::seconds(10)));
  EXPECT_EQ(Describe(log.Since(0)), "x:added/reconcile ");
  manager.Stop();
}

// ---- end to end on libvirt's test:///default through the dlopen'ed plug-in -------------------

class LibvirtEventManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(plugins_.LoadDirectory(STRATA_PLUGIN_DIR).ok());
    AgentConfig config;
    config.host_id = "h";
    config.connect = "test:///default";
    config.server = "";
    services_ = std::make_unique<HostServices>(plugins_, config);
  }
  void TearDown() override {
    if (conn_ != nullptr) virConnectClose(conn_);
  }
  // The test's own connection, opened after the agent's (an operator beside the agent).
  virConnectPtr Conn() {
    if (conn_ == nullptr) conn_ = virConnectOpen("test:///default");
    return conn_;
  }
  // A fixed uuid per name, so that defining again replaces the definition.
  static std::string Xml(const std::string& name, int memory_kib = 65536) {
    char uuid[40];
    std::snprintf(
        uuid, sizeof(uuid), "e2e00000-0000-4000-8000-%012llx",
        static_cast<unsigned long long>(std::hash<std::string>{}(name)&0xffffffffffffULL));
    return "<domain type='test'><name>" + name + "</name><uuid>" + uuid + "</uuid><memory>" +
           std::to_string(memory_kib) + "</memory><os><type>hvm</type></os></domain>";
  }
  void Define(const std::string& name, int memory_kib = 65536) {
    ASSERT_NE(Conn(), nullptr) << virGetLastErrorMessage();
    virDomainPtr d = virDomainDefineXML(Conn(), Xml(name, memory_kib).c_str());
    ASSERT_NE(d, nullptr) << name << ": " << virGetLastErrorMessage();
    virDomainFree(d);
  }
  void Undefine(const std::string& name) {
    virDomainPtr d = virDomainLookupByName(Conn(), name.c_str());
    ASSERT_NE(d, nullptr) << name;
    EXPECT_EQ(virDomainUndefine(d), 0) << name;
    virDomainFree(d);
  }

  PluginHost plugins_;
  std::unique_ptr<HostServices> services_;
  virConnectPtr conn_ = nullptr;
};

TEST_F(LibvirtEventManagerTest, FiftyVmsModifiedAndSomeUndefinedInOneWindowAreOneChangeSet) {
  EventManagerOptions options;
  options.window = std::chrono::milliseconds(1000);
  options.reconcile_interval = std::chrono::milliseconds(0);
  EventManager manager(*services_, services_->change_log(), options);
  manager.Start();
  EXPECT_EQ(manager.stats().events_status, "ok");
  ASSERT_TRUE(
      WaitFor([&] { return manager.stats().reconciliations >= 1; }, std::chrono::seconds(20)));
  // Known before the window: pre-0..4 (reported in a window of their own).
  for (int i = 0; i < 5; ++i) Define("e2e-pre-" + std::to_string(i));
  ASSERT_TRUE(
      WaitFor([&] { return manager.stats().notifications >= 2; }, std::chrono::seconds(20)));
  const uint64_t before = services_->change_log().last_sequence();
  const uint64_t notifications = manager.stats().notifications;

  // One burst: define 50, modify the first 10 twice, undefine the last 10, modify pre-0..3
  // three times, modify then undefine pre-4.
  for (int i = 0; i < 50; ++i) Define("e2e-" + std::to_string(i));
  for (int round = 1; round <= 2; ++round) {
    for (int i = 0; i < 10; ++i) Define("e2e-" + std::to_string(i), 65536 * (round + 1));
  }
  for (int i = 40; i < 50; ++i) Undefine("e2e-" + std::to_string(i));
  for (int round = 1; round <= 3; ++round) {
    for (int i = 0; i < 5; ++i) Define("e2e-pre-" + std::to_string(i), 65536 * (round + 1));
  }
  Undefine("e2e-pre-4");
  ASSERT_TRUE(WaitFor([&] { return manager.stats().notifications > notifications; },
                      std::chrono::seconds(20)));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // nothing more comes
  EXPECT_EQ(manager.stats().notifications, notifications + 1);
  std::vector<VmChange> changes = services_->change_log().Since(before);
  std::map<std::string, std::string> by_name;
  for (const VmChange& c : changes) {
    EXPECT_EQ(c.source, "event") << c.vm_name;
    by_name[c.vm_name] += std::string(ChangeKindName(c.kind));
  }
  std::map<std::string, std::string> expected;
  for (int i = 0; i < 40; ++i) expected["e2e-" + std::to_string(i)] = "added";
  for (int i = 0; i < 4; ++i) expected["e2e-pre-" + std::to_string(i)] = "modified";
  expected["e2e-pre-4"] = "removed";
  EXPECT_EQ(by_name, expected);
  EXPECT_EQ(changes.size(), 45u);
  ASSERT_FALSE(changes.empty());
  EXPECT_EQ(changes.front().sequence, before + 1);
  EXPECT_EQ(changes.back().sequence, before + 45);
  manager.Stop();
  for (int i = 0; i < 40; ++i) Undefine("e2e-" + std::to_string(i));
  for (int i = 0; i < 4; ++i) Undefine("e2e-pre-" + std::to_string(i));
}

TEST_F(LibvirtEventManagerTest, ReconciliationCatchesAChangeMadeWithoutEvents) {
  EventManagerOptions options;
  options.window = std::chrono::milliseconds(50);
  options.reconcile_interval = std::chrono::milliseconds(0);
  options.subscribe_events = false;
  EventManager manager(*services_, services_->change_log(), options);
  manager.Start();
  ASSERT_TRUE(
      WaitFor([&] { return manager.stats().reconciliations >= 1; }, std::chrono::seconds(20)));
  const uint64_t before = services_->change_log().last_sequence();
  Define("e2e-unseen");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(services_->change_log().last_sequence(), before);  // no event: not seen yet
  manager.queue().RequestResync();                             // what the timer does
  ASSERT_TRUE(WaitFor([&] { return services_->change_log().last_sequence() > before; },
                      std::chrono::seconds(20)));
  EXPECT_EQ(Describe(services_->change_log().Since(before)), "e2e-unseen:added/reconcile ");
  manager.Stop();
  Undefine("e2e-unseen");
}

}  // namespace
}  // namespace strata::agent
