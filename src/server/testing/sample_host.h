// The REST tests' sample: a fake agent for host-a (web01 running and db01 shut off, both on
// storage system "nas"), registered with an in-process stratad in cluster "prod".
#pragma once

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "strata/server/stratad.h"
#include "testing/fake_agent.h"

namespace strata::server::testing {

// Gives `agent` host-a's two VMs and starts it.
inline void StartSampleAgent(FakeAgent& agent) {
  core::Graph graph;
  AddVm(graph, "host-a", "u1", "web01", "nas");
  AddVm(graph, "host-a", "u2", "db01", "nas", "shut off");
  agent.SetGraph(std::move(graph), {{"u1", "web01", "running"}, {"u2", "db01", "shut off"}});
  agent.Start();
}

// Registers `agent` with `server` as host-a of cluster "prod" and waits until its graph is in.
inline absl::Status RegisterSampleAgent(Stratad& server, const FakeAgent& agent) {
  RegisterInfo info;
  info.host_id = "host-a";
  info.cluster = "prod";
  info.endpoint = agent.endpoint();
  info.version = "1.0";
  if (absl::StatusOr<RegisterAnswer> registered = server.registry().Register(info);
      !registered.ok()) {
    return registered.status();
  }
  if (!server.registry().WaitForIdle(std::chrono::seconds(10))) {
    return absl::DeadlineExceededError("host-a's first refresh did not end within 10 s");
  }
  return absl::OkStatus();
}

// The port of the server's HTTP address ("127.0.0.1:PORT").
inline int HttpPort(const Stratad& server) {
  const std::string http = server.http_address();
  return std::stoi(http.substr(http.rfind(':') + 1));
}

}  // namespace strata::server::testing
