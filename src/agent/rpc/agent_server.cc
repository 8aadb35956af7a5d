#include "strata/agent/agent_server.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>

#include "backup_service.h"
#include "change_set_proto.h"
#include "cluster/coordinator.h"
#include "graph_proto.h"
#include "status_grpc.h"
#include "strata/util/strings.h"
#include "strata/v1/agent.grpc.pb.h"

namespace strata::agent {
namespace {

class AgentImpl final : public v1::Agent::Service {
 public:
  explicit AgentImpl(HostServices& services) : services_(services) {}

  grpc::Status GetAgentInfo(grpc::ServerContext*, const v1::GetAgentInfoRequest*,
                            v1::AgentInfo* out) override {
    const AgentConfig& config = services_.config();
    out->set_host_id(config.host_id);
    out->set_cluster(config.cluster);
    out->set_endpoint(services_.endpoint());
    out->set_version(AgentVersion());
    out->set_hypervisor_uri(config.connect);
    for (const LoadedPlugin& loaded : services_.plugins().plugins()) {
      v1::PluginInfo* info = out->add_plugins();
      info->set_kind(std::string(plugin::PluginKindName(loaded.descriptor.kind)));
      info->set_name(loaded.descriptor.name);
      info->set_version(loaded.descriptor.version);
      for (const std::string& c : loaded.descriptor.capabilities) info->add_capabilities(c);
      info->set_file(loaded.file);
    }
    for (const std::string& error : services_.PluginErrors()) out->add_plugin_errors(error);
    out->set_started_at_unix_ms(services_.started_at_unix_ms());
    return grpc::Status::OK;
  }

  grpc::Status Health(grpc::ServerContext*, const v1::HealthRequest*,
                      v1::HealthResponse* out) override {
    out->set_serving(true);
    out->set_hypervisor_status(services_.HypervisorStatus());
    return grpc::Status::OK;
  }

 private:
  HostServices& services_;
};

class DiscoveryImpl final : public v1::Discovery::Service {
 public:
  DiscoveryImpl(HostServices& services, ClusterCoordinator* cluster)
      : services_(services), cluster_(cluster) {}

  grpc::Status Discover(grpc::ServerContext*, const v1::DiscoverRequest* request,
                        v1::DiscoverResponse* out) override {
    if (!request->cluster().empty()) return DiscoverCluster(*request, out);
    DiscoverParams params;
    params.vms.assign(request->vms().begin(), request->vms().end());
    params.select = request->select();
    params.to_type = request->to_type();
    params.upward = request->upward();
    params.max_depth = request->max_depth();
    absl::StatusOr<DiscoverResult> result = services_.Discover(params);
    if (!result.ok()) return rpc::ToGrpcStatus(result.status());
    out->set_host_id(services_.config().host_id);
    rpc::GraphToProto(result->graph, result->selected, out->mutable_graph());
    for (const VmSummary& vm : result->vms) {
      v1::VmSummary* summary = out->add_vms();
      summary->set_uuid(vm.uuid);
      summary->set_name(vm.name);
      summary->set_state(vm.state);
      summary->set_persistent(vm.persistent);
    }
    out->set_version(result->version);
    return grpc::Status::OK;
  }

 private:
  // The cluster's graph: every reachable member's graph merged, then the request's filters.
  grpc::Status DiscoverCluster(const v1::DiscoverRequest& request, v1::DiscoverResponse* out) {
    const std::string& own = services_.config().cluster;
    if (cluster_ == nullptr || own != request.cluster()) {
      const std::string message =
          own.empty() ? util::Cat("host '", services_.config().host_id,
                                  "' is not a member of cluster '", request.cluster(), "'")
          : cluster_ == nullptr
              ? util::Cat("host '", services_.config().host_id, "' of cluster '", own,
                          "' has no cluster members configured (cluster_members)")
              : util::Cat("host '", services_.config().host_id, "' is a member of cluster '", own,
                          "', not of cluster '", request.cluster(), "'");
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, message);
    }
    if (!request.vms().empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "cluster discovery takes filters (select), not a list of VMs");
    }
    absl::StatusOr<ClusterView> view = cluster_->Discover();
    if (!view.ok()) return rpc::ToGrpcStatus(view.status());
    DiscoverParams params;
    params.select = request.select();
    params.to_type = request.to_type();
    params.upward = request.upward();
    params.max_depth = request.max_depth();
    absl::StatusOr<core::Subgraph> selected = ApplyDiscoverFilters(view->graph, params);
    if (!selected.ok()) return rpc::ToGrpcStatus(selected.status());
    out->set_host_id(services_.config().host_id);
    rpc::GraphToProto(view->graph, *selected, out->mutable_graph());
    for (const VmSummary& vm : view->vms) {
      v1::VmSummary* summary = out->add_vms();
      summary->set_uuid(vm.uuid);
      summary->set_name(vm.name);
      summary->set_state(vm.state);
      summary->set_persistent(vm.persistent);
    }
    for (const std::string& member : view->unreachable) out->add_unreachable_members(member);
    out->set_version(services_.version());
    return grpc::Status::OK;
  }

  HostServices& services_;
  ClusterCoordinator* cluster_;
};

class EventsImpl final : public v1::Events::Service {
 public:
  EventsImpl(HostServices& services, const std::atomic<bool>& stopping)
      : services_(services), stopping_(stopping) {}

  grpc::Status Subscribe(grpc::ServerContext* context, const v1::SubscribeRequest* request,
                         grpc::ServerWriter<v1::ChangeSet>* writer) override {
    uint64_t after = request->from_sequence();
    ChangeLog& log = services_.change_log();
    while (!context->IsCancelled() && !stopping_.load() && !log.closed()) {
      std::vector<VmChange> changes = log.Since(after);
      if (changes.empty()) {
        log.WaitForNewer(after, std::chrono::milliseconds(100));
        continue;
      }
      v1::ChangeSet set;
      FillChangeSet(services_.config().host_id, changes, &set);
      if (!writer->Write(set)) break;  // the client went away
      after = changes.back().sequence;
    }
    return grpc::Status::OK;
  }

 private:
  HostServices& services_;
  const std::atomic<bool>& stopping_;
};

bool IsWildcardHost(std::string_view host) {
  return host == "0.0.0.0" || host == "::" || host == "[::]" || host.empty();
}

}  // namespace

struct AgentServer::Impl {
  Impl(HostServices& services, ClusterCoordinator* cluster)
      : agent(services),
        discovery(services, cluster),
        events(services, stopping),
        engine(services, FaultsFromEnvironment()),
        backup(engine, services, cluster),
        restore(engine) {}
  std::atomic<bool> stopping{false};
  AgentImpl agent;
  DiscoveryImpl discovery;
  EventsImpl events;
  BackupEngine engine;
  BackupService backup;
  RestoreService restore;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::string endpoint;
  std::once_flag shutdown_once;
};

AgentServer::AgentServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

AgentServer::~AgentServer() { Shutdown(); }

absl::StatusOr<std::unique_ptr<AgentServer>> AgentServer::Start(HostServices& services,
                                                                const std::string& listen,
                                                                ClusterCoordinator* cluster) {
  if (absl::Status status = CheckHostPort(listen, "listen"); !status.ok()) return status;
  auto impl = std::make_unique<Impl>(services, cluster);
  // Before serving: VMs a crashed run left paused are resumed, its partial snapshots removed.
  impl->engine.RecoverInterrupted();
  grpc::ServerBuilder builder;
  // Without this gRPC sets SO_REUSEPORT, and a second agent on a taken port would "succeed".
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &impl->port);
  builder.RegisterService(&impl->agent);
  builder.RegisterService(&impl->discovery);
  builder.RegisterService(&impl->events);
  builder.RegisterService(&impl->backup);
  builder.RegisterService(&impl->restore);
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr || impl->port == 0) {
    return absl::UnavailableError(
        util::Cat("cannot listen on '", listen, "': address in use or not available"));
  }
  const std::string host = listen.substr(0, listen.rfind(':'));
  impl->endpoint = util::Cat(IsWildcardHost(host) ? DefaultHostId() : host, ":", impl->port);
  services.set_endpoint(impl->endpoint);
  return std::unique_ptr<AgentServer>(new AgentServer(std::move(impl)));
}

int AgentServer::port() const { return impl_->port; }
std::string AgentServer::endpoint() const { return impl_->endpoint; }

void AgentServer::Shutdown() {
  std::call_once(impl_->shutdown_once, [this] {
    impl_->stopping = true;
    // Streams notice `stopping` within 100 ms; the deadline bounds anything else in flight.
    impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    impl_->server->Wait();
  });
}

}  // namespace strata::agent
