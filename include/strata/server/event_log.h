// The event log of stratad: appends events to the catalog and wakes whoever waits for new ones
// (the server-sent event streams of the REST API).
//
// Threading: thread-safe. Append may be called from any thread (gRPC handlers, the host monitor);
// WaitForNewer blocks the calling thread (an HTTP worker serving a stream). `mu_` is a leaf lock;
// the catalog is never called while holding it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "strata/server/catalog.h"

namespace strata::server {

class EventLog {
 public:
  explicit EventLog(Catalog& catalog);

  // Stores the events (one transaction) and returns their sequence numbers.
  absl::StatusOr<std::vector<int64_t>> Append(const std::vector<EventRecord>& events);
  absl::StatusOr<std::vector<EventRecord>> List(int64_t after_seq, int limit,
                                                const std::optional<std::string>& host);
  absl::StatusOr<std::vector<EventRecord>> ListVm(const std::string& vm_uuid, int64_t after_seq,
                                                  int limit);

  // The newest sequence number known (0 when the log is empty).
  int64_t LatestSeq() const;
  // Blocks until an event newer than `after_seq` exists, the timeout passes or Shutdown() is
  // called. Returns the newest sequence number known then.
  int64_t WaitForNewer(int64_t after_seq, std::chrono::milliseconds timeout);
  // Wakes every waiter for good (server shutdown).
  void Shutdown();
  bool shut_down() const;

 private:
  Catalog& catalog_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int64_t latest_ = 0;
  bool shutdown_ = false;
};

}  // namespace strata::server
