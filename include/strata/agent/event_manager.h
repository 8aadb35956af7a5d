// The agent's event manager: turns the hypervisor's raw events and periodic reconciliation into
// one consolidated change set per window in the change log (which feeds the Events.Subscribe
// stream and the registration client's NotifyChanges: one notification per window).
//
//   hypervisor plug-in thread --raw event--> CoalescingQueue (one entry per VM)
//   reconciliation timer / lost connection --RequestResync--> CoalescingQueue
//   manager thread: waits for the first pending entry, lets the window (default 1 s) pass,
//     drains the queue and processes the batch:
//       - resync requested, queue overflowed, or more than `details_limit` VMs changed:
//         one whole-host observation (full listing: uuid, state, digest of the saved XML)
//         compared with what the log last reported (ChangeLog::Observe);
//       - otherwise: the changed VMs' full details only (HostView::ObserveVms: domain XML,
//         storage resolution) compared with what was reported for them (ObserveSome). Whether
//         a VM was added or removed is decided against what exists now, so a raw "started" of
//         a new transient VM becomes "added", and an "undefined" of a running VM "modified".
//     A failed batch (hypervisor unreachable) asks for a resync and is retried with back-off
//     (initial_backoff doubling to max_backoff); the resync catches every change meanwhile.
//
// Cluster events (member joined, unreachable, back, left: OnClusterEvent) share the window: they
// are queued like a VM's change (one entry per distinct event) and appended to the change log
// with the window's VM changes, so that they reach stratad in the same notification.
//
// Threading: Start/Stop from the owner's thread; the sink runs on the plug-in's thread and only
// pushes into the queue; everything else runs on the manager's own thread. Ownership: borrows
// the HostView and the ChangeLog, which must outlive this object.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "strata/agent/change_log.h"
#include "strata/agent/coalescing_queue.h"
#include "strata/agent/host_view.h"

namespace strata::agent {

struct EventManagerOptions {
  std::chrono::milliseconds window{1000};
  // Between whole-host reconciliations; 0 = only the first one and those after a lost
  // connection.
  std::chrono::milliseconds reconcile_interval{30000};
  bool initial_reconcile = true;  // reconcile at once on Start (the log learns every VM)
  bool subscribe_events = true;   // subscribe to the hypervisor's events on Start
  size_t details_limit = 256;     // more changed VMs in one window: a whole-host observation
  size_t max_pending = 1000000;   // the queue's bound on distinct VMs
  std::chrono::milliseconds initial_backoff{200};
  std::chrono::milliseconds max_backoff{10000};
};

struct EventManagerStats {
  uint64_t windows = 0;          // batches processed
  uint64_t notifications = 0;    // batches that appended changes (one notification each)
  uint64_t changes_written = 0;  // change-log entries appended
  uint64_t raw_events = 0;       // raw events consumed
  uint64_t reconciliations = 0;  // whole-host observations
  uint64_t failures = 0;         // batches that failed (then retried)
  std::string events_status;     // "ok", or why no events are delivered
};

// The queue change a raw hypervisor event stands for; nullopt: none (connection events).
std::optional<ChangeKind> ChangeForEvent(hypervisor::EventKind kind);

class EventManager {
 public:
  EventManager(HostView& host, ChangeLog& log, EventManagerOptions options = {});
  ~EventManager();  // Stop()
  EventManager(const EventManager&) = delete;
  EventManager& operator=(const EventManager&) = delete;

  // Subscribes (when asked), asks for the first reconciliation (when asked) and starts the
  // manager's thread. Never fails: without events the periodic reconciliation still runs.
  void Start();
  void Stop();  // idempotent; returns once the thread ended

  // The sink handed to the hypervisor: pushes the change into the queue (or asks for a resync).
  void OnHypervisorEvent(hypervisor::HypervisorEvent event);
  // A cluster coordinator's event ("member-unreachable:host-b"); any thread.
  void OnClusterEvent(const std::string& event);
  // Drains and processes what is pending now, without waiting for the window (tests, bench).
  absl::Status ProcessPending();

  CoalescingQueue& queue() { return queue_; }
  EventManagerStats stats() const;

 private:
  absl::Status Process(const QueueBatch& batch);
  void Run();

  HostView& host_;
  ChangeLog& log_;
  const EventManagerOptions options_;
  CoalescingQueue queue_;
  std::mutex process_mutex_;  // one batch at a time (the thread, ProcessPending)
  mutable std::mutex mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  bool started_ = false;
  EventManagerStats stats_;
  std::thread thread_;
};

}  // namespace strata::agent
