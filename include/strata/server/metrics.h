// Counters of the REST API and the Prometheus text rendering of every stratad metric.
//
// Threading: thread-safe; Record is called by every HTTP worker after each response (one short
// mutex-protected map update).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <tuple>

#include "absl/container/btree_map.h"
#include "strata/server/graph_store.h"
#include "strata/server/host_registry.h"

namespace strata::server {

class HttpMetrics {
 public:
  // `route` is the route pattern ("/api/v1/hosts/{id}"), or "unmatched".
  void Record(const std::string& method, const std::string& route, int code, double seconds);
  void StreamOpened();
  void StreamClosed();
  int64_t open_streams() const;

  // The whole /metrics page.
  std::string Render(const GraphStats& graph, const RegistryCounters& registry) const;

 private:
  struct Cell {
    uint64_t count = 0;
    double seconds = 0;
  };
  mutable std::mutex mu_;
  absl::btree_map<std::tuple<std::string, std::string, int>, Cell> requests_;
  int64_t open_streams_ = 0;
  uint64_t streams_total_ = 0;
};

}  // namespace strata::server
