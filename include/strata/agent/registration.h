// Registration with stratad (strata.v1.AgentRegistry): Register on start (host id, cluster, the
// endpoint the agent listens on, plug-ins, version, started_at, last change sequence), heartbeat
// at the interval the server answers, register again when a heartbeat answers known=false or
// after the server was unreachable and comes back (back-off doubling from `initial_backoff` up
// to `max_backoff`), and push NotifyChanges with every change-log entry the server has not yet
// acknowledged.
//
// Threading: everything runs on one thread of its own (Start/Stop from the owner's thread);
// nothing here is called by the RPC handlers. Ownership: borrows HostServices, which must
// outlive this object.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "strata/agent/host_services.h"

namespace strata::agent {

struct RegistrationOptions {
  std::string server;  // stratad's gRPC address, HOST:PORT
  std::chrono::milliseconds initial_backoff{200};
  std::chrono::milliseconds max_backoff{2000};
  std::chrono::milliseconds rpc_timeout{2000};
  // Used when the server answers heartbeat_interval_ms <= 0.
  std::chrono::milliseconds default_heartbeat{5000};
};

struct RegistrationStats {
  bool registered = false;
  uint64_t registrations = 0;  // successful Register calls
  uint64_t heartbeats = 0;     // successful Heartbeat calls
  uint64_t notifications = 0;  // successful NotifyChanges calls
  uint64_t acknowledged_sequence = 0;
  std::string server_id;
};

class RegistrationClient {
 public:
  RegistrationClient(HostServices& services, RegistrationOptions options);
  ~RegistrationClient();  // Stop()
  RegistrationClient(const RegistrationClient&) = delete;
  RegistrationClient& operator=(const RegistrationClient&) = delete;

  void Start();
  void Stop();  // idempotent; returns once the thread ended
  RegistrationStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::agent
