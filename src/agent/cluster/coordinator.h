// The agent's cluster coordinator: watches the members a ClusterMembership names, learns which
// member owns (runs) each VM from the members' own Discovery services, and answers the cluster's
// merged resource graph.
//
// Member states (per host id), checked every `interval` with strata.v1.Agent/Health under a
// deadline of `health_timeout`:
//
//   unknown --ok--> up --fails--> unreachable --ok--> up
//      \--fails--> unreachable --ok--> up (first time: joined)
//
// Each transition is one cluster event, which reaches stratad as a CHANGE_KIND_CLUSTER change
// (through the event manager's window, or straight into the change log without one):
// "member-joined:<host>" (first seen up), "member-unreachable:<host>", "member-back:<host>" (up
// again after having been up), "member-left:<host>" (no longer listed by the membership). This
// host's own state is tracked but produces no events.
//
// Threading: Start/Stop on the owner's thread; CheckMembers on the coordinator's thread (or a
// test's); Members, Owner and Discover from any thread (gRPC handlers). One mutex guards the
// member table and the ownership cache; no RPC is made while holding it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "strata/agent/change_log.h"
#include "strata/agent/cluster.h"
#include "strata/agent/host_services.h"
#include "strata/core/graph.h"

namespace grpc {
class Channel;
}

namespace strata::agent {

struct ClusterCoordinatorOptions {
  std::string cluster;       // the cluster's name
  std::string self_host_id;  // this agent's host id
  std::chrono::milliseconds interval{1000};
  std::chrono::milliseconds health_timeout{1000};
  std::chrono::milliseconds rpc_timeout{30000};  // one member's Discover
};

enum class MemberState { kUnknown, kUp, kUnreachable };
std::string_view MemberStateName(MemberState state);  // "unknown", "up", "unreachable"

struct MemberStatus {
  ClusterMember member;
  MemberState state = MemberState::kUnknown;
  std::string error;  // why it is unreachable, whole message
  bool was_up = false;
};

struct VmOwner {
  ClusterMember member;
  bool reachable = true;
  std::string error;  // when not reachable: why
  VmSummary vm;
};

struct ClusterView {
  core::Graph graph;  // cluster node, members' graphs merged (shared storage is one node)
  std::vector<VmSummary> vms;
  std::vector<std::string> members;      // host ids that answered
  std::vector<std::string> unreachable;  // "host-b: <reason>"
};

class ClusterCoordinator {
 public:
  ClusterCoordinator(std::unique_ptr<ClusterMembership> membership, ChangeLog& log,
                     ClusterCoordinatorOptions options);
  ~ClusterCoordinator();  // Stop()
  ClusterCoordinator(const ClusterCoordinator&) = delete;
  ClusterCoordinator& operator=(const ClusterCoordinator&) = delete;

  // Where member events go: by default straight into the change log; the agent routes them
  // through its event manager (EventManager::OnClusterEvent), so that they share its window.
  void SetEventSink(std::function<void(const std::string& event)> sink);

  void Start();  // the first round runs at once
  void Stop();   // idempotent

  // One round of health checks (all members in parallel); appends the transitions' events.
  void CheckMembers();
  std::vector<MemberStatus> Members() const;
  const ClusterCoordinatorOptions& options() const { return options_; }

  // The member running VM `vm` (name or UUID). Asks the members' Discovery when the VM is not
  // in the cache (or `refresh`). A VM last seen on a member now unreachable is answered with
  // reachable=false and the reason. NotFound "VM 'x' is on no member of cluster 'c'" (naming
  // members that could not be asked).
  absl::StatusOr<VmOwner> Owner(const std::string& vm, bool refresh = false);
  // The owners of several VMs from one fresh round of asking the members (so a VM that moved
  // since the last look is found where it runs now), in the order of `vms`.
  std::vector<absl::StatusOr<VmOwner>> Owners(const std::vector<std::string>& vms);

  // Every reachable member's whole graph, merged, with the cluster node and its has_member
  // edges. Members that fail are listed in `unreachable`.
  absl::StatusOr<ClusterView> Discover();

  // The coordinator's channel to a member's endpoint (shared, quick to reconnect), for other
  // RPCs to members: forwarded backups use the channel the ownership round just used.
  std::shared_ptr<grpc::Channel> MemberChannel(const std::string& endpoint);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  const ClusterCoordinatorOptions options_;
};

}  // namespace strata::agent
