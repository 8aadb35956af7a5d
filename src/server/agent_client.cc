#include "strata/server/agent_client.h"

#include <grpcpp/grpcpp.h>

#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "graph_proto.h"
#include "status_grpc.h"
#include "strata/util/strings.h"
#include "strata/v1/agent.grpc.pb.h"

namespace strata::server {
namespace {

class GrpcAgentConnector final : public AgentConnector {
 public:
  explicit GrpcAgentConnector(const GrpcAgentConnectorOptions& options) : options_(options) {}

  absl::StatusOr<DiscoveryResult> Discover(const std::string& host_id,
                                           const std::string& endpoint) override {
    auto stub = v1::Discovery::NewStub(Channel(endpoint));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + options_.deadline);
    v1::DiscoverRequest request;
    v1::DiscoverResponse response;
    grpc::Status status = stub->Discover(&context, request, &response);
    if (!status.ok()) {
      absl::Status s = rpc::FromGrpcStatus(status);
      return absl::Status(s.code(), util::Cat("discovery of host '", host_id, "' by its agent at '",
                                              endpoint, "': ", s.message()));
    }
    absl::StatusOr<core::Graph> graph = rpc::GraphFromProto(response.graph());
    if (!graph.ok()) {
      return absl::InvalidArgumentError(
          util::Cat("agent of host '", host_id, "' at '", endpoint,
                    "' sent a bad graph: ", graph.status().message()));
    }
    DiscoveryResult result;
    result.host_id = response.host_id();
    result.graph = *std::move(graph);
    result.agent_version = response.version();
    for (const v1::VmSummary& vm : response.vms()) {
      VmRecord record;
      record.uuid = vm.uuid();
      record.name = vm.name();
      record.state = vm.state();
      result.vms.push_back(std::move(record));
    }
    return result;
  }

 private:
  std::shared_ptr<grpc::Channel> Channel(const std::string& endpoint) {
    std::lock_guard lock(mu_);
    auto& channel = channels_[endpoint];
    if (!channel) channel = grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials());
    return channel;
  }

  const GrpcAgentConnectorOptions options_;
  std::mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<grpc::Channel>> channels_;
};

}  // namespace

std::unique_ptr<AgentConnector> MakeGrpcAgentConnector(const GrpcAgentConnectorOptions& options) {
  return std::make_unique<GrpcAgentConnector>(options);
}

}  // namespace strata::server
