// What a cluster plug-in supplies to the agent's cluster coordinator: the cluster's members
// (host id and the gRPC endpoint of its strata-agent). VM ownership is not part of it: the
// coordinator learns it from the members' agents (Discovery), so that it follows the VM.
//
// `StaticMembership` takes the members from the agent config (`cluster_members`). A Pacemaker
// membership (nodes from `crm_mon --output-as=xml`, endpoints from a port convention or node
// attributes) and a registry membership (the hosts registered with stratad under the cluster:
// MakeRegistryMembership in src/agent/cluster/registry_membership.h, which needs gRPC) implement
// the same interface; callers only see `ClusterMembership`. The interface is free of gRPC and of
// the agent's internals so that it can move behind a dlopen plug-in.
//
// Threading: Members() may be called from any thread (the coordinator's and gRPC handlers').
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace strata::agent {

struct ClusterMember {
  std::string host_id;
  std::string endpoint;  // "HOST:PORT" of the member's strata-agent
  friend bool operator==(const ClusterMember&, const ClusterMember&) = default;
};

// Parses "host-b=127.0.0.1:7102" (the `cluster_members` config form). InvalidArgument naming
// the entry when it is not "HOST_ID=HOST:PORT".
absl::StatusOr<ClusterMember> ParseClusterMember(std::string_view text);
std::string ClusterMemberText(const ClusterMember& member);  // the inverse

class ClusterMembership {
 public:
  virtual ~ClusterMembership() = default;
  // "static", "pacemaker", "registry" (for logs and GetAgentInfo).
  virtual std::string_view name() const = 0;
  // Every member of the cluster (this host included when it is one). Unavailable when the
  // membership cannot be read now (e.g. crm_mon failed); the coordinator keeps its last view.
  virtual absl::StatusOr<std::vector<ClusterMember>> Members() = 0;
};

// Members from Pacemaker: the nodes `crm_mon --output-as=xml` lists (cluster members and
// pacemaker_remote nodes; online or not: an offline node is a member the coordinator's health
// checks find unreachable, a node no longer listed has left). A node's agent endpoint is
// "<node name>:<agent_port>" unless `endpoints` names it (a cluster_members entry). The command
// runs on every Members() call (each health round), so membership follows the cluster.
class PacemakerMembership final : public ClusterMembership {
 public:
  PacemakerMembership(std::vector<std::string> command, int agent_port,
                      std::vector<ClusterMember> endpoints)
      : command_(std::move(command)), agent_port_(agent_port), endpoints_(std::move(endpoints)) {}
  std::string_view name() const override { return "pacemaker"; }
  // Unavailable naming the command and its output when it fails or its XML cannot be read.
  absl::StatusOr<std::vector<ClusterMember>> Members() override;

  static std::vector<std::string> DefaultCommand() { return {"crm_mon", "--output-as=xml"}; }

 private:
  const std::vector<std::string> command_;
  const int agent_port_;
  const std::vector<ClusterMember> endpoints_;
};

// The nodes of `crm_mon --output-as=xml` output (root <pacemaker-result> of Pacemaker >= 2.0.3,
// or the older <crm_mon>), as members; InvalidArgument when it is not such a document.
absl::StatusOr<std::vector<ClusterMember>> ParseCrmMonNodes(
    std::string_view xml, int agent_port, const std::vector<ClusterMember>& endpoints);

// Members from the agent config; they never change while the agent runs.
class StaticMembership final : public ClusterMembership {
 public:
  explicit StaticMembership(std::vector<ClusterMember> members) : members_(std::move(members)) {}
  std::string_view name() const override { return "static"; }
  absl::StatusOr<std::vector<ClusterMember>> Members() override { return members_; }

 private:
  const std::vector<ClusterMember> members_;
};

}  // namespace strata::agent
