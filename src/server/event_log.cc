#include "strata/server/event_log.h"

#include <algorithm>

namespace strata::server {

EventLog::EventLog(Catalog& catalog) : catalog_(catalog) {
  // The newest stored seq. The catalog lists events ascending only, so this pages through the
  // log once at start-up (about 10 ms per 10,000 events).
  int64_t after = 0;
  while (true) {
    absl::StatusOr<std::vector<EventRecord>> page = catalog_.ListEvents(after, 10000, std::nullopt);
    if (!page.ok() || page->empty()) break;
    after = page->back().seq;
    if (page->size() < 10000) break;
  }
  latest_ = after;
}

absl::StatusOr<std::vector<int64_t>> EventLog::Append(const std::vector<EventRecord>& events) {
  absl::StatusOr<std::vector<int64_t>> seqs = catalog_.AppendEvents(events);
  if (seqs.ok() && !seqs->empty()) {
    {
      std::lock_guard lock(mu_);
      latest_ = std::max(latest_, *std::max_element(seqs->begin(), seqs->end()));
    }
    cv_.notify_all();
  }
  return seqs;
}

absl::StatusOr<std::vector<EventRecord>> EventLog::List(int64_t after_seq, int limit,
                                                        const std::optional<std::string>& host) {
  return catalog_.ListEvents(after_seq, limit, host);
}

absl::StatusOr<std::vector<EventRecord>> EventLog::ListVm(const std::string& vm_uuid,
                                                          int64_t after_seq, int limit) {
  return catalog_.ListVmEvents(vm_uuid, after_seq, limit);
}

int64_t EventLog::LatestSeq() const {
  std::lock_guard lock(mu_);
  return latest_;
}

int64_t EventLog::WaitForNewer(int64_t after_seq, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return shutdown_ || latest_ > after_seq; });
  return latest_;
}

void EventLog::Shutdown() {
  {
    std::lock_guard lock(mu_);
    shutdown_ = true;
  }
  cv_.notify_all();
}

bool EventLog::shut_down() const {
  std::lock_guard lock(mu_);
  return shutdown_;
}

}  // namespace strata::server
