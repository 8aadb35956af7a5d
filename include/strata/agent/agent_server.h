// The agent's gRPC services (proto/strata/v1/agent.proto): Agent, Discovery, Events, Backup,
// Restore, served over HostServices. gRPC stays out of this header.
//
// Backup and Restore run the BackupEngine (strata/agent/backup_engine.h), streaming progress and
// then the result. Events.Subscribe streams the change log
// after `from_sequence`, then waits for new entries until the client cancels or the server
// shuts down.
//
// Threading: handlers run on gRPC's threads; they never call stratad. Ownership: borrows the
// HostServices, which must outlive the server.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "strata/agent/host_services.h"

namespace strata::agent {

class ClusterCoordinator;  // src/agent/cluster/coordinator.h

class AgentServer {
 public:
  // Listens on `listen` ("HOST:PORT"; port 0 picks a free port). Error when it cannot bind:
  // Unavailable "cannot listen on '127.0.0.1:7071': address in use or not available".
  // Sets services.set_endpoint() to the address it actually listens on.
  // `cluster` (may be null: not in a cluster) answers Discover requests that name the cluster;
  // borrowed, it must outlive the server.
  static absl::StatusOr<std::unique_ptr<AgentServer>> Start(HostServices& services,
                                                            const std::string& listen,
                                                            ClusterCoordinator* cluster = nullptr);
  ~AgentServer();  // shuts down
  AgentServer(const AgentServer&) = delete;
  AgentServer& operator=(const AgentServer&) = delete;

  int port() const;
  // "HOST:PORT" as a client reaches it (a wildcard listen address is replaced by the host name).
  std::string endpoint() const;
  // Ends open streams and stops serving; idempotent.
  void Shutdown();

 private:
  struct Impl;
  explicit AgentServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::agent
