// How stratad calls agents back: discovery of a host's resource graph through the agent's
// `strata.v1.Discovery` service.
//
// Threading: implementations are thread-safe; calls block the calling thread (a refresh worker or
// an HTTP worker) for at most the configured deadline.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "strata/core/graph.h"
#include "strata/server/catalog.h"

namespace strata::server {

struct DiscoveryResult {
  std::string host_id;         // as the agent names itself
  core::Graph graph;           // the host's whole resource graph
  std::vector<VmRecord> vms;   // uuid, name, state (host is filled by the catalog)
  uint64_t agent_version = 0;  // the agent's discovery counter
};

class AgentConnector {
 public:
  virtual ~AgentConnector() = default;
  // Whole-host discovery from the agent listening at `endpoint` (host:port). Errors keep their
  // code (Unavailable when the agent cannot be reached, DeadlineExceeded when it is too slow) and
  // name the host and the endpoint.
  virtual absl::StatusOr<DiscoveryResult> Discover(const std::string& host_id,
                                                   const std::string& endpoint) = 0;
};

struct GrpcAgentConnectorOptions {
  std::chrono::milliseconds deadline{30000};
};

// gRPC implementation; one channel per endpoint, created on first use and kept.
std::unique_ptr<AgentConnector> MakeGrpcAgentConnector(const GrpcAgentConnectorOptions& options);

}  // namespace strata::server
