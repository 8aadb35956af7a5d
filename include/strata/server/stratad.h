// stratad assembled: catalog, event log, merged graph store, host registry with its refresh
// workers, host monitor, the gRPC AgentRegistry service and the REST API. apps/stratad/main.cc
// only parses flags and calls this; tests start whole servers with it too.
//
// Start order: catalog -> graph store rebuilt from the catalog -> registry loaded -> workers ->
// gRPC -> HTTP -> monitor. Stop runs the reverse: monitor, event streams, HTTP, gRPC, workers
// (storing the last heartbeats), then the catalog is closed when the object goes away.
//
// Threading: Start/Stop/ports from the owning thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "strata/server/agent_client.h"
#include "strata/server/host_registry.h"
#include "strata/server/rest_api.h"

namespace strata::server {

struct StratadOptions {
  std::string grpc_listen = "127.0.0.1:7070";  // host:port, port 0 = any
  std::string http_listen = "127.0.0.1:8080";
  std::string db_path = "./stratad.db";
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds heartbeat_timeout{0};  // 0: 3 x heartbeat_interval
  std::chrono::milliseconds agent_deadline{30000};
  int refresh_workers = 2;
  int http_threads = 512;
  int max_event_streams = -1;  // -1: http_threads - 64
  std::chrono::milliseconds stream_keepalive{2000};
  Clock clock;  // empty: system clock
  // Empty: gRPC to each agent's endpoint. Tests may inject another; it must outlive the server.
  AgentConnector* agents = nullptr;
  // The built web console served at `/` (RestOptions::web_root); empty: none.
  std::string web_root;
};

// Splits "host:port" or "[v6]:port". Errors name the text.
absl::Status ParseListenAddress(const std::string& text, std::string* host, int* port);

class Stratad {
 public:
  explicit Stratad(StratadOptions options);
  ~Stratad();  // Stop()
  Stratad(const Stratad&) = delete;
  Stratad& operator=(const Stratad&) = delete;

  absl::Status Start();
  void Stop();  // idempotent

  // "127.0.0.1:40123": the addresses actually bound (valid after Start).
  std::string grpc_address() const;
  std::string http_address() const;

  HostRegistry& registry();
  GraphStore& graphs();
  Catalog& catalog();
  EventLog& events();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::server
