#include "registry_service.h"

#include "status_grpc.h"
#include "time_format.h"

namespace strata::server {
namespace {

EventKind KindOf(v1::ChangeKind kind) {
  switch (kind) {
    case v1::CHANGE_KIND_ADDED:
      return EventKind::kAdded;
    case v1::CHANGE_KIND_REMOVED:
      return EventKind::kRemoved;
    case v1::CHANGE_KIND_CLUSTER:
      return EventKind::kCluster;
    default:
      return EventKind::kModified;
  }
}

}  // namespace

grpc::Status RegistryService::Register(grpc::ServerContext*, const v1::RegisterRequest* request,
                                       v1::RegisterResponse* response) {
  RegisterInfo info;
  info.host_id = request->host_id();
  info.cluster = request->cluster();
  info.endpoint = request->endpoint();
  info.version = request->version();
  info.started_at_unix_ms = request->started_at_unix_ms();
  info.last_sequence = request->last_sequence();
  for (const v1::PluginInfo& plugin : request->plugins()) {
    nlohmann::json capabilities = nlohmann::json::array();
    for (const std::string& c : plugin.capabilities()) capabilities.push_back(c);
    info.plugins.push_back({{"kind", plugin.kind()},
                            {"name", plugin.name()},
                            {"version", plugin.version()},
                            {"capabilities", std::move(capabilities)},
                            {"file", plugin.file()}});
  }
  absl::StatusOr<RegisterAnswer> answer = registry_.Register(info);
  if (!answer.ok()) return rpc::ToGrpcStatus(answer.status());
  response->set_server_id(answer->server_id);
  response->set_heartbeat_interval_ms(answer->heartbeat_interval_ms);
  response->set_acknowledged_sequence(answer->acknowledged_sequence);
  return grpc::Status::OK;
}

grpc::Status RegistryService::Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* request,
                                        v1::HeartbeatResponse* response) {
  if (request->host_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "heartbeat: host_id is empty");
  }
  response->set_known(registry_.Heartbeat(request->host_id(), request->last_sequence()));
  return grpc::Status::OK;
}

grpc::Status RegistryService::NotifyChanges(grpc::ServerContext*,
                                            const v1::NotifyChangesRequest* request,
                                            v1::NotifyChangesResponse* response) {
  const v1::ChangeSet& in = request->change_set();
  ChangeSetInfo change_set;
  change_set.host_id = in.host_id();
  change_set.first_sequence = in.first_sequence();
  change_set.last_sequence = in.last_sequence();
  for (const v1::VmChange& c : in.changes()) {
    ChangeInfo change;
    change.sequence = c.sequence();
    change.vm_uuid = c.vm_uuid();
    change.vm_name = c.vm_name();
    change.kind = KindOf(c.kind());
    if (c.time_unix_ms() > 0) change.time = FromUnixMs(c.time_unix_ms());
    change.source = c.source();
    change_set.changes.push_back(std::move(change));
  }
  absl::StatusOr<NotifyAnswer> answer = registry_.NotifyChanges(change_set);
  if (!answer.ok()) return rpc::ToGrpcStatus(answer.status());
  response->set_acknowledged_sequence(answer->acknowledged_sequence);
  response->set_resync(answer->resync);
  return grpc::Status::OK;
}

grpc::Status RegistryService::ListClusterMembers(grpc::ServerContext*,
                                                 const v1::ListClusterMembersRequest* request,
                                                 v1::ListClusterMembersResponse* response) {
  if (request->cluster().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "list cluster members: cluster is empty");
  }
  for (const HostView& host : registry_.ListHosts()) {
    if (host.record.cluster != request->cluster()) continue;
    v1::ClusterMemberInfo* member = response->add_members();
    member->set_host_id(host.record.id);
    member->set_endpoint(host.record.endpoint);
    member->set_state(ToString(host.record.state));
    member->set_registered(host.registered);
    member->set_last_heartbeat_unix_ms(ToUnixMs(host.record.last_heartbeat));
  }
  return grpc::Status::OK;
}

}  // namespace strata::server
