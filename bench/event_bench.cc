// Event pipeline benchmark (printed, not asserted):
//  1. queue ingest rate on one core (goal >= 2,000,000 events/s);
//  2. a storm of 100,000 raw events over 10,000 VMs within one second, through the event
//     manager with its default 1 s window on an in-memory host: notifications sent (goal <= 2)
//     and change-log entries written;
//  3. the same storm delivered as one notification per raw event (no coalescing), with the
//     ratio of work (notifications, changes written).
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "strata/agent/change_log.h"
#include "strata/agent/coalescing_queue.h"
#include "strata/agent/event_manager.h"

using namespace strata::agent;
using Clock = std::chrono::steady_clock;

namespace {

std::string Uuid(int i) {
  char buffer[40];
  std::snprintf(buffer, sizeof(buffer), "00000000-0000-4000-8000-%012d", i);
  return buffer;
}

class MemoryHost : public HostView {
 public:
  explicit MemoryHost(int vms) {
    for (int i = 0; i < vms; ++i)
      vms_[Uuid(i)] = {Uuid(i), "vm" + std::to_string(i), "running", "d"};
  }
  absl::StatusOr<std::vector<VmObservation>> ObserveAll() override {
    std::vector<VmObservation> out;
    for (const auto& [uuid, vm] : vms_) out.push_back(vm);
    return out;
  }
  absl::StatusOr<std::vector<VmObservation>> ObserveVms(
      const std::vector<std::string>& uuids) override {
    std::vector<VmObservation> out;
    for (const std::string& uuid : uuids) {
      if (auto it = vms_.find(uuid); it != vms_.end()) out.push_back(it->second);
    }
    return out;
  }
  absl::Status SubscribeEvents(strata::hypervisor::EventSink) override { return absl::OkStatus(); }

 private:
  std::map<std::string, VmObservation> vms_;
};

}  // namespace

int main() {
  constexpr int kVms = 10000;
  constexpr int kEvents = 100000;
  std::vector<std::string> uuids;
  for (int i = 0; i < kVms; ++i) uuids.push_back(Uuid(i));

  // 1. Ingest on one core: 5,000,000 pushes over 10,000 VMs, drained every 100,000.
  CoalescingQueue queue;
  constexpr int kIngest = 5000000;
  const auto t0 = Clock::now();
  for (int i = 0; i < kIngest; ++i) {
    queue.Push(uuids[i % kVms], "vm", i < kVms ? ChangeKind::kAdded : ChangeKind::kModified,
               "event", 1);
    if (i % 100000 == 99999) (void)queue.Drain();
  }
  const double ingest_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const double rate = kIngest / ingest_s;

  // 2. The storm through the event manager (1 s window), spread over ~1 s.
  MemoryHost host(kVms);
  ChangeLog log;
  EventManagerOptions options;  // window 1000 ms
  options.initial_reconcile = false;
  options.reconcile_interval = std::chrono::milliseconds(0);
  options.details_limit = kVms * 2;  // the changed VMs' details, not a whole-host listing
  EventManager manager(host, log, options);
  manager.Start();
  const auto storm_start = Clock::now();
  for (int i = 0; i < kEvents; ++i) {
    strata::hypervisor::HypervisorEvent event;
    event.vm_uuid = uuids[i % kVms];
    event.kind = i < kVms ? strata::hypervisor::EventKind::kDefined
                          : strata::hypervisor::EventKind::kModified;
    event.time_unix_ms = 1;
    manager.OnHypervisorEvent(std::move(event));
    if (i % 1000 == 999) {  // 100 bursts over ~1 s
      std::this_thread::sleep_until(storm_start + std::chrono::milliseconds(10 * (i / 1000 + 1)));
    }
  }
  const double storm_s = std::chrono::duration<double>(Clock::now() - storm_start).count();
  while (manager.stats().raw_events < static_cast<uint64_t>(kEvents)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const double settle_s = std::chrono::duration<double>(Clock::now() - storm_start).count();
  manager.Stop();
  EventManagerStats coalesced = manager.stats();

  // 3. The same storm, one notification per raw event: each raw event is its own change set.
  ChangeLog naive_log;
  std::map<std::string, VmObservation> reported;
  uint64_t naive_notifications = 0, naive_changes = 0;
  const auto n0 = Clock::now();
  for (int i = 0; i < kEvents; ++i) {
    const std::string& uuid = uuids[i % kVms];
    // Without coalescing, every raw event is a change sent and written (the "modified" a raw
    // event claims is not checked against a digest first).
    VmObservation vm{uuid, "vm", "running", i < kVms ? "d" : std::to_string(i)};
    std::vector<VmChange> changes = naive_log.ObserveSome({uuid}, {vm}, "event");
    ++naive_notifications;
    naive_changes += changes.size();
  }
  const double naive_s = std::chrono::duration<double>(Clock::now() - n0).count();

  std::printf("event_bench (printed, not asserted)\n\n");
  std::printf("%-58s %16s %10s\n", "measure", "value", "goal");
  std::printf("%-58s %16.0f %10s\n", "queue ingest, events/s (one core, 10,000 VMs)", rate,
              ">= 2e6");
  std::printf("%-58s %16.3f %10s\n", "storm: seconds to push 100,000 raw events", storm_s, "~1");
  std::printf("%-58s %16.3f %10s\n", "storm: seconds until all were processed", settle_s, "");
  std::printf("%-58s %16llu %10s\n", "storm, coalesced (1 s window): notifications",
              static_cast<unsigned long long>(coalesced.notifications), "<= 2");
  std::printf("%-58s %16llu %10s\n", "storm, coalesced: windows processed",
              static_cast<unsigned long long>(coalesced.windows), "");
  std::printf("%-58s %16llu %10s\n", "storm, coalesced: changes written",
              static_cast<unsigned long long>(coalesced.changes_written), "");
  std::printf("%-58s %16llu %10s\n", "storm, one per raw event: notifications",
              static_cast<unsigned long long>(naive_notifications), "");
  std::printf("%-58s %16llu %10s\n", "storm, one per raw event: changes written",
              static_cast<unsigned long long>(naive_changes), "");
  std::printf("%-58s %16.3f %10s\n", "storm, one per raw event: agent-side seconds", naive_s, "");
  std::printf(
      "%-58s %16.0f %10s\n", "work ratio, notifications (per-event / coalesced)",
      static_cast<double>(naive_notifications) / std::max<uint64_t>(coalesced.notifications, 1),
      "");
  std::printf("%-58s %16.1f %10s\n", "work ratio, changes written (per-event / coalesced)",
              static_cast<double>(naive_changes) / std::max<uint64_t>(coalesced.changes_written, 1),
              "");
  return 0;
}
