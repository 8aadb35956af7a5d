// strata.v1.AgentRegistry over gRPC: translates messages to HostRegistry calls and back. The
// handlers never call agents; refreshes go to the registry's workers.
//
// Threading: gRPC's sync server calls the handlers on its own threads; the registry is
// thread-safe.
#pragma once

#include "strata/server/host_registry.h"
#include "strata/v1/server.grpc.pb.h"

namespace strata::server {

class RegistryService final : public v1::AgentRegistry::Service {
 public:
  explicit RegistryService(HostRegistry& registry) : registry_(registry) {}

  grpc::Status Register(grpc::ServerContext* context, const v1::RegisterRequest* request,
                        v1::RegisterResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override;
  grpc::Status NotifyChanges(grpc::ServerContext* context, const v1::NotifyChangesRequest* request,
                             v1::NotifyChangesResponse* response) override;
  // The registry's hosts that registered with the request's cluster (any state).
  grpc::Status ListClusterMembers(grpc::ServerContext* context,
                                  const v1::ListClusterMembersRequest* request,
                                  v1::ListClusterMembersResponse* response) override;

 private:
  HostRegistry& registry_;
};

}  // namespace strata::server
