// Cluster membership from stratad's registry (`cluster_membership = "registry"`): the members
// are the hosts that registered with this agent's cluster, as strata.v1.AgentRegistry/
// ListClusterMembers lists them, asked again on every Members() call (each health round). So an
// agent that registers with the cluster joins it, and one that registers under another cluster
// (or is no longer known to the server) has left. The registry's own reachable/unreachable view
// does not filter: an unreachable host is still a member, which the coordinator's health checks
// find unreachable themselves.
//
// This agent is always a member, with its own endpoint, even before it has registered.
//
// The gRPC implementation lives in registry_membership.cc; this header stays free of gRPC so that
// agent.cc and tests that only pick a membership do not pay for its headers.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "strata/agent/cluster.h"

namespace strata::agent {

struct RegistryMembershipOptions {
  std::string server;        // stratad's gRPC endpoint (the agent config's `server`)
  std::string cluster;       // this agent's cluster
  std::string self_host_id;  // this agent's host id
  // This agent's endpoint, asked on every call: with `listen` port 0 it is known only once the
  // agent serves.
  std::function<std::string()> self_endpoint;
  std::chrono::milliseconds timeout{1000};  // deadline of one ListClusterMembers
};

// Members() is Unavailable naming the server and the reason when the server cannot be asked
// (the coordinator then keeps its last view).
std::unique_ptr<ClusterMembership> MakeRegistryMembership(RegistryMembershipOptions options);

}  // namespace strata::agent
