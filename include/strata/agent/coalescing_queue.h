// The agent's event queue: raw VM changes from the hypervisor's event callbacks and from
// reconciliation, coalesced per VM until the event manager drains them once per window.
//
// Each entry is (sequence, VM uuid, added | removed | modified, time, source). A VM has at most
// one pending entry, so memory is bounded by the number of distinct VMs touched in one window,
// however many raw events arrive. Coalescing a new change N into the pending entry P:
//   added    + removed  -> nothing (the entry disappears)
//   added    + modified -> added         added    + added    -> added
//   removed  + added    -> modified      removed  + removed  -> removed
//   removed  + modified -> modified      (the manager checks what exists)
//   modified + removed  -> removed       modified + modified -> modified
//   modified + added    -> modified
// The entry keeps the sequence of its newest raw event and the time of its oldest.
//
// Beyond `max_pending` distinct VMs the queue stops storing entries and sets `overflowed` on the
// next Drain: the manager then reconciles the whole host, so even then nothing is lost.
// RequestResync() asks for such a whole-host reconciliation explicitly (connection closed,
// periodic reconciliation).
//
// Threading: every method may be called from any thread (one internal mutex; producers never
// block on the consumer). Push is O(1) amortised.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "strata/agent/change_log.h"

namespace strata::agent {

struct QueueEntry {
  uint64_t sequence = 0;  // queue sequence of the newest raw event folded into this entry
  std::string vm_uuid;
  std::string vm_name;
  ChangeKind kind = ChangeKind::kModified;
  int64_t time_unix_ms = 0;  // of the oldest raw event folded in
  std::string source;        // of the newest raw event: "event", "reconcile", ...
};

struct QueueBatch {
  std::vector<QueueEntry> entries;  // sorted by sequence
  bool resync = false;              // reconcile the whole host (requested or overflowed)
  bool overflowed = false;
  uint64_t first_sequence = 0;  // range of raw sequences covered (0, 0 when none)
  uint64_t last_sequence = 0;
  uint64_t raw_events = 0;                // raw pushes since the previous drain
  std::optional<int64_t> oldest_unix_ms;  // time of the oldest raw push in the batch
  bool empty() const { return entries.empty() && !resync; }
};

struct QueueStats {
  uint64_t pushed = 0;     // raw pushes
  uint64_t coalesced = 0;  // pushes folded into a pending entry
  uint64_t cancelled = 0;  // entries that vanished (added + removed)
  uint64_t dropped = 0;    // pushes refused because max_pending was reached
  uint64_t drains = 0;     // non-empty drains
  size_t pending = 0;
  size_t high_water = 0;  // largest number of pending entries seen
};

// The fold of `next` into `pending`; nullopt = nothing pending any more.
std::optional<ChangeKind> Coalesce(ChangeKind pending, ChangeKind next);

class CoalescingQueue {
 public:
  using Clock = std::function<int64_t()>;  // unix milliseconds
  explicit CoalescingQueue(size_t max_pending = 1000000, Clock clock = {});

  // Adds one raw change. `time_unix_ms` 0: now.
  void Push(std::string_view vm_uuid, std::string_view vm_name, ChangeKind kind,
            std::string_view source, int64_t time_unix_ms = 0);
  void RequestResync();

  // Everything pending, and the queue emptied.
  QueueBatch Drain();
  // Blocks until something is pending (true) or Close() / timeout (false).
  bool WaitNonEmpty(std::chrono::milliseconds timeout);
  void Close();  // wakes every waiter for good
  QueueStats stats() const;

 private:
  struct Pending {
    uint64_t sequence;
    ChangeKind kind;
    int64_t time_unix_ms;
    std::string name;
    std::string source;
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Equal {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const { return a == b; }
  };

  const size_t max_pending_;
  Clock clock_;
  mutable std::mutex mutex_;
  std::condition_variable nonempty_;
  std::unordered_map<std::string, Pending, Hash, Equal> pending_;
  uint64_t next_sequence_ = 1;
  uint64_t batch_first_sequence_ = 0;
  uint64_t batch_raw_ = 0;
  std::optional<int64_t> batch_oldest_;
  bool resync_ = false;
  bool overflowed_ = false;
  bool closed_ = false;
  QueueStats stats_;
};

}  // namespace strata::agent
