// The public REST/JSON API of stratad (docs/api.md), served with cpp-httplib.
//
// HTTP server choices (why they are what they are):
//  * cpp-httplib serves each connection on one task-queue thread for the connection's whole life
//    (keep-alive included), and an event stream (server-sent events) holds its thread for as long
//    as the client listens. The default queue has max(8, cores-1) threads, so a handful of streams
//    would starve every other request. We give the server its own ThreadPool of `threads` threads
//    (default 512: threads are cheap while they sleep) and cap open streams at
//    `max_event_streams` (default threads - 64), so that at least 64 threads always remain for
//    ordinary requests; a stream beyond the cap is refused with 503 instead of queueing.
//  * Keep-alive: at most 1000 requests per connection, 5 s idle timeout (an idle keep-alive
//    connection holds a thread, so it must not be held forever).
//  * TCP_NODELAY is on: without it small responses wait for the client's delayed ACK (~40 ms).
//  * Request bodies are limited to `max_body_bytes` (1 MiB): larger ones get 413 with the JSON
//    error body.
//
// Threading: Start/Stop from the owning thread. Handlers run on the HTTP pool and only use
// thread-safe collaborators (catalog, graph store, registry, event log, metrics).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "strata/server/catalog.h"
#include "strata/server/event_log.h"
#include "strata/server/graph_store.h"
#include "strata/server/host_registry.h"
#include "strata/server/job_manager.h"
#include "strata/server/metrics.h"

namespace strata::server {

struct RestOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (see RestApi::port())
  int threads = 512;
  int max_event_streams = -1;  // -1: threads - 64 (at least 1)
  size_t max_body_bytes = 1 << 20;
  // A comment line is sent on an idle event stream this often: it finds closed clients (their
  // thread comes back) and keeps clients with a read timeout (cpp-httplib's is 5 s) listening.
  std::chrono::milliseconds stream_keepalive{2000};
  int keep_alive_timeout_sec = 5;
  int keep_alive_max_count = 1000;
  // The built web console (web/, see docs/api.md "Web console"): its files are served at `/`
  // (index.html) and `/assets/...`. Empty: no console, only the API.
  std::string web_root;
};

class RestApi {
 public:
  // Every reference must outlive the RestApi.
  RestApi(Catalog& catalog, GraphStore& graphs, HostRegistry& registry, EventLog& events,
          HttpMetrics& metrics, RestOptions options);
  ~RestApi();  // Stop()
  RestApi(const RestApi&) = delete;
  RestApi& operator=(const RestApi&) = delete;

  // Backups, restores and prunes go to this manager (call before Start; without one those routes
  // answer 503).
  void SetJobManager(JobManager* jobs);
  // Binds and starts serving on a thread of its own. Returns the bound port.
  absl::StatusOr<int> Start();
  // Stops accepting, ends open event streams and joins every thread. Idempotent.
  void Stop();
  int port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::server
