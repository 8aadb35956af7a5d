#include "registry_membership.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>

#include "channel.h"
#include "strata/util/strings.h"
#include "strata/v1/server.grpc.pb.h"

namespace strata::agent {
namespace {

class RegistryMembership final : public ClusterMembership {
 public:
  explicit RegistryMembership(RegistryMembershipOptions options)
      : options_(std::move(options)),
        // One channel for every round; stratad back after a restart is seen at the next round.
        channel_(rpc::MakeChannel(options_.server)),
        stub_(v1::AgentRegistry::NewStub(channel_)) {}

  std::string_view name() const override { return "registry"; }

  absl::StatusOr<std::vector<ClusterMember>> Members() override {
    v1::ListClusterMembersRequest request;
    request.set_cluster(options_.cluster);
    v1::ListClusterMembersResponse response;
    const auto deadline = std::chrono::system_clock::now() + options_.timeout;
    rpc::AwaitReady(*channel_, deadline);  // one failed connect is not a server down
    grpc::ClientContext context;
    context.set_deadline(deadline);
    grpc::Status status = stub_->ListClusterMembers(&context, request, &response);
    if (!status.ok()) {
      return absl::UnavailableError(util::Cat(
          "the members of cluster '", options_.cluster, "' cannot be read from stratad at '",
          options_.server, "': ",
          status.error_message().empty() ? util::Cat("gRPC status ", int(status.error_code()))
                                         : status.error_message()));
    }
    // This agent with the endpoint it serves on, whatever the server last heard from it.
    std::vector<ClusterMember> members{{options_.self_host_id, options_.self_endpoint()}};
    for (const v1::ClusterMemberInfo& info : response.members()) {
      if (info.host_id() == options_.self_host_id || info.endpoint().empty()) continue;
      members.push_back({info.host_id(), info.endpoint()});
    }
    std::sort(members.begin(), members.end(),
              [](const ClusterMember& a, const ClusterMember& b) { return a.host_id < b.host_id; });
    return members;
  }

 private:
  const RegistryMembershipOptions options_;
  const std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AgentRegistry::Stub> stub_;  // thread-safe: Members() from any thread
};

}  // namespace

std::unique_ptr<ClusterMembership> MakeRegistryMembership(RegistryMembershipOptions options) {
  return std::make_unique<RegistryMembership>(std::move(options));
}

}  // namespace strata::agent
