#include "strata/agent/coalescing_queue.h"

#include <algorithm>

namespace strata::agent {

std::optional<ChangeKind> Coalesce(ChangeKind pending, ChangeKind next) {
  switch (pending) {
    case ChangeKind::kAdded:
      if (next == ChangeKind::kRemoved) return std::nullopt;
      return ChangeKind::kAdded;
    case ChangeKind::kRemoved:
      if (next == ChangeKind::kRemoved) return ChangeKind::kRemoved;
      return ChangeKind::kModified;
    case ChangeKind::kModified:
      if (next == ChangeKind::kRemoved) return ChangeKind::kRemoved;
      return ChangeKind::kModified;
    case ChangeKind::kCluster:  // a cluster event (EventManager::OnClusterEvent): stays one
      return next;
  }
  return next;
}

CoalescingQueue::CoalescingQueue(size_t max_pending, Clock clock)
    : max_pending_(std::max<size_t>(max_pending, 1)), clock_(std::move(clock)) {
  if (!clock_) {
    clock_ = [] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
  }
}

void CoalescingQueue::Push(std::string_view vm_uuid, std::string_view vm_name, ChangeKind kind,
                           std::string_view source, int64_t time_unix_ms) {
  if (time_unix_ms == 0) time_unix_ms = clock_();
  bool was_empty;
  {
    std::lock_guard lock(mutex_);
    was_empty = pending_.empty() && !resync_ && !overflowed_;
    const uint64_t sequence = next_sequence_++;
    ++stats_.pushed;
    ++batch_raw_;
    if (batch_first_sequence_ == 0) batch_first_sequence_ = sequence;
    if (!batch_oldest_ || time_unix_ms < *batch_oldest_) batch_oldest_ = time_unix_ms;
    auto it = pending_.find(vm_uuid);
    if (it == pending_.end()) {
      if (pending_.size() >= max_pending_) {
        ++stats_.dropped;
        overflowed_ = true;  // the whole-host reconciliation covers this VM
      } else {
        pending_.emplace(std::string(vm_uuid), Pending{sequence, kind, time_unix_ms,
                                                       std::string(vm_name), std::string(source)});
        stats_.high_water = std::max(stats_.high_water, pending_.size());
      }
    } else {
      ++stats_.coalesced;
      std::optional<ChangeKind> folded = Coalesce(it->second.kind, kind);
      if (!folded) {
        ++stats_.cancelled;
        pending_.erase(it);
      } else {
        Pending& entry = it->second;
        entry.kind = *folded;
        entry.sequence = sequence;
        if (!vm_name.empty() && entry.name != vm_name) entry.name.assign(vm_name);
        if (entry.source != source) entry.source.assign(source);
      }
    }
  }
  if (was_empty) nonempty_.notify_all();
}

void CoalescingQueue::RequestResync() {
  {
    std::lock_guard lock(mutex_);
    resync_ = true;
  }
  nonempty_.notify_all();
}

QueueBatch CoalescingQueue::Drain() {
  QueueBatch batch;
  std::unordered_map<std::string, Pending, Hash, Equal> taken;
  {
    std::lock_guard lock(mutex_);
    taken.swap(pending_);
    batch.resync = resync_ || overflowed_;
    batch.overflowed = overflowed_;
    batch.raw_events = batch_raw_;
    batch.oldest_unix_ms = batch_oldest_;
    if (batch_raw_ > 0) {
      batch.first_sequence = batch_first_sequence_;
      batch.last_sequence = next_sequence_ - 1;
    }
    resync_ = overflowed_ = false;
    batch_first_sequence_ = 0;
    batch_raw_ = 0;
    batch_oldest_.reset();
    if (!taken.empty() || batch.resync) ++stats_.drains;
  }
  batch.entries.reserve(taken.size());
  for (auto& [uuid, p] : taken) {
    batch.entries.push_back(QueueEntry{p.sequence, uuid, std::move(p.name), p.kind, p.time_unix_ms,
                                       std::move(p.source)});
  }
  std::sort(batch.entries.begin(), batch.entries.end(),
            [](const QueueEntry& a, const QueueEntry& b) { return a.sequence < b.sequence; });
  return batch;
}

bool CoalescingQueue::WaitNonEmpty(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  auto ready = [&] { return closed_ || !pending_.empty() || resync_ || overflowed_; };
  nonempty_.wait_for(lock, timeout, ready);
  return !closed_ && (!pending_.empty() || resync_ || overflowed_);
}

void CoalescingQueue::Close() {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  nonempty_.notify_all();
}

QueueStats CoalescingQueue::stats() const {
  std::lock_guard lock(mutex_);
  QueueStats stats = stats_;
  stats.pending = pending_.size();
  return stats;
}

}  // namespace strata::agent
