#include "strata/agent/event_manager.h"

#include <algorithm>
#include <vector>

#include "strata/util/strings.h"

namespace strata::agent {
namespace {

// Queue keys of cluster events; no VM UUID starts with it.
constexpr char kClusterKeyPrefix[] = "cluster-event:";

}  // namespace

std::optional<ChangeKind> ChangeForEvent(hypervisor::EventKind kind) {
  using hypervisor::EventKind;
  switch (kind) {
    case EventKind::kDefined:
      return ChangeKind::kAdded;
    case EventKind::kUndefined:
      return ChangeKind::kRemoved;
    case EventKind::kConnectionClosed:
      return std::nullopt;
    default:  // started/stopped (maybe a transient VM appearing or going) and every other
      return ChangeKind::kModified;  // change: what exists is checked when processing
  }
}

EventManager::EventManager(HostView& host, ChangeLog& log, EventManagerOptions options)
    : host_(host), log_(log), options_(options), queue_(options.max_pending) {}

EventManager::~EventManager() { Stop(); }

void EventManager::OnHypervisorEvent(hypervisor::HypervisorEvent event) {
  std::optional<ChangeKind> change = ChangeForEvent(event.kind);
  if (!change) {
    queue_.RequestResync();  // the connection closed (or was re-opened): events may be lost
    return;
  }
  if (event.vm_uuid.empty()) return;
  queue_.Push(event.vm_uuid, event.vm_name, *change, "event", event.time_unix_ms);
}

void EventManager::Start() {
  {
    std::lock_guard lock(mutex_);
    if (started_) return;
    started_ = true;
  }
  std::string events_status = "not subscribed";
  if (options_.subscribe_events) {
    absl::Status status = host_.SubscribeEvents(
        [this](hypervisor::HypervisorEvent event) { OnHypervisorEvent(std::move(event)); });
    events_status = status.ok() ? "ok" : std::string(status.message());
  }
  {
    std::lock_guard lock(mutex_);
    stats_.events_status = std::move(events_status);
  }
  if (options_.initial_reconcile) queue_.RequestResync();
  thread_ = std::thread([this] { Run(); });
}

void EventManager::Stop() {
  bool subscribed = false;
  {
    std::lock_guard lock(mutex_);
    subscribed = started_ && !stopping_ && options_.subscribe_events;
    stopping_ = true;
  }
  // First stop the plug-in's thread from calling into this object (it may be mid-delivery).
  if (subscribed) (void)host_.SubscribeEvents(nullptr);
  stop_cv_.notify_all();
  queue_.Close();
  if (thread_.joinable()) thread_.join();
}

EventManagerStats EventManager::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

absl::Status EventManager::ProcessPending() {
  std::lock_guard lock(process_mutex_);
  QueueBatch batch = queue_.Drain();
  absl::Status status = Process(batch);
  if (!status.ok()) queue_.RequestResync();  // nothing is lost: the next batch reconciles
  return status;
}

void EventManager::OnClusterEvent(const std::string& event) {
  // Keyed apart from every VM UUID; the event itself rides in the name.
  queue_.Push(util::Cat(kClusterKeyPrefix, event), event, ChangeKind::kCluster, "cluster");
}

absl::Status EventManager::Process(const QueueBatch& whole_batch) {
  if (whole_batch.empty()) return absl::OkStatus();
  // Cluster events are appended as they are; the rest are VMs to observe.
  QueueBatch batch = whole_batch;
  std::vector<QueueEntry> cluster_events;
  std::erase_if(batch.entries, [&](const QueueEntry& e) {
    if (e.kind != ChangeKind::kCluster) return false;
    cluster_events.push_back(e);
    return true;
  });
  for (const QueueEntry& e : cluster_events) log_.AppendClusterEvent(e.vm_name, e.source);
  if (batch.empty()) {
    std::lock_guard lock(mutex_);
    ++stats_.windows;
    stats_.raw_events += batch.raw_events;
    if (!cluster_events.empty()) {
      ++stats_.notifications;
      stats_.changes_written += cluster_events.size();
    }
    return absl::OkStatus();
  }
  std::vector<VmChange> changes;
  const bool whole_host = batch.resync || batch.entries.size() > options_.details_limit;
  if (whole_host) {
    absl::StatusOr<std::vector<VmObservation>> all = host_.ObserveAll();
    if (!all.ok()) {
      std::lock_guard lock(mutex_);
      ++stats_.failures;
      return all.status();
    }
    changes = log_.Observe(*all, batch.entries.empty() ? "reconcile" : "event");
  } else {
    std::vector<std::string> uuids;
    uuids.reserve(batch.entries.size());
    for (const QueueEntry& entry : batch.entries) uuids.push_back(entry.vm_uuid);
    absl::StatusOr<std::vector<VmObservation>> some = host_.ObserveVms(uuids);
    if (!some.ok()) {
      std::lock_guard lock(mutex_);
      ++stats_.failures;
      return some.status();
    }
    changes = log_.ObserveSome(uuids, *some, "event");
  }
  std::lock_guard lock(mutex_);
  ++stats_.windows;
  stats_.raw_events += batch.raw_events;
  if (whole_host) ++stats_.reconciliations;
  if (!changes.empty() || !cluster_events.empty()) {
    ++stats_.notifications;
    stats_.changes_written += changes.size() + cluster_events.size();
  }
  return absl::OkStatus();
}

void EventManager::Run() {
  using Clock = std::chrono::steady_clock;
  const bool periodic = options_.reconcile_interval.count() > 0;
  Clock::time_point next_reconcile = Clock::now() + options_.reconcile_interval;
  std::chrono::milliseconds backoff = options_.initial_backoff;
  bool first_pass = options_.initial_reconcile;
  auto wait_stop = [this](std::chrono::milliseconds how_long) {
    std::unique_lock lock(mutex_);
    return stop_cv_.wait_for(lock, how_long, [this] { return stopping_; });
  };
  while (true) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
    }
    std::chrono::milliseconds wait{1000};
    if (periodic) {
      wait = std::clamp(
          std::chrono::duration_cast<std::chrono::milliseconds>(next_reconcile - Clock::now()),
          std::chrono::milliseconds(0), std::chrono::milliseconds(1000));
    }
    if (queue_.WaitNonEmpty(wait)) {
      // The window opens with the first pending change: let it fill, then take it whole. The
      // start-up reconciliation runs at once (the log learns every VM without delay).
      if (!first_pass && wait_stop(options_.window)) return;
      first_pass = false;
      absl::Status status = ProcessPending();
      if (status.ok()) {
        backoff = options_.initial_backoff;
      } else {
        if (wait_stop(backoff)) return;
        backoff = std::min(backoff * 2, options_.max_backoff);
      }
    }
    if (periodic && Clock::now() >= next_reconcile) {
      queue_.RequestResync();
      next_reconcile = Clock::now() + options_.reconcile_interval;
    }
  }
}

}  // namespace strata::agent
