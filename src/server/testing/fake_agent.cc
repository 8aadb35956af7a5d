#include "testing/fake_agent.h"

#include <algorithm>
#include <set>

#include "graph_proto.h"

namespace strata::server::testing {

FakeAgent::FakeAgent(std::string host_id) : host_id_(std::move(host_id)) {}
FakeAgent::~FakeAgent() { Stop(); }

std::string FakeAgent::Start() {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(static_cast<v1::Discovery::Service*>(this));
  builder.RegisterService(static_cast<v1::Agent::Service*>(this));
  server_ = builder.BuildAndStart();
  endpoint_ = "127.0.0.1:" + std::to_string(port);
  return endpoint_;
}

void FakeAgent::Stop() {
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server_->Wait();
    server_.reset();
  }
}

void FakeAgent::SetGraph(core::Graph graph, std::vector<FakeVm> vms) {
  std::lock_guard lock(mu_);
  graph_ = std::move(graph);
  vms_ = std::move(vms);
}

void FakeAgent::SetError(grpc::Status status) {
  std::lock_guard lock(mu_);
  error_ = std::move(status);
}

grpc::Status FakeAgent::Discover(grpc::ServerContext*, const v1::DiscoverRequest* request,
                                 v1::DiscoverResponse* response) {
  ++discover_calls_;
  std::lock_guard lock(mu_);
  if (!error_.ok()) return error_;
  response->set_host_id(host_id_);
  if (request->vms().empty()) {
    rpc::GraphToProto(graph_, response->mutable_graph());
  } else {
    // Like the agent: only the asked VMs (and what they rest on), with the host node.
    ++partial_discover_calls_;
    std::set<std::string> wanted(request->vms().begin(), request->vms().end());
    for (const std::string& uuid : wanted) {
      if (!graph_.Find("vm:" + uuid)) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND, "VM '" + uuid + "' not found");
      }
    }
    core::Graph part = graph_;
    for (core::NodeIndex vm : graph_.NodesOfType(core::NodeType::kVm)) {
      const std::string id(graph_.Id(vm));
      if (!wanted.contains(id.substr(3))) {
        if (std::optional<core::NodeIndex> n = part.Find(id)) core::RemoveWithOrphans(part, *n);
      }
    }
    rpc::GraphToProto(part, response->mutable_graph());
  }
  for (const FakeVm& vm : vms_) {
    if (!request->vms().empty() &&
        std::find(request->vms().begin(), request->vms().end(), vm.uuid) == request->vms().end()) {
      continue;
    }
    v1::VmSummary* s = response->add_vms();
    s->set_uuid(vm.uuid);
    s->set_name(vm.name);
    s->set_state(vm.state);
    s->set_persistent(true);
  }
  response->set_version(++version_);
  return grpc::Status::OK;
}

grpc::Status FakeAgent::GetAgentInfo(grpc::ServerContext*, const v1::GetAgentInfoRequest*,
                                     v1::AgentInfo* response) {
  response->set_host_id(host_id_);
  response->set_endpoint(endpoint_);
  response->set_version("fake");
  return grpc::Status::OK;
}

grpc::Status FakeAgent::Health(grpc::ServerContext*, const v1::HealthRequest*,
                               v1::HealthResponse* response) {
  response->set_serving(true);
  response->set_hypervisor_status("ok");
  return grpc::Status::OK;
}

void AddVm(core::Graph& graph, const std::string& host, const std::string& uuid,
           const std::string& name, const std::string& storage_system, const std::string& state) {
  using core::EdgeType;
  using core::NodeType;
  auto node = [&](NodeType type, const std::string& id, const std::string& node_name,
                  const core::Attributes& attrs = {}) {
    return graph.UpsertNode(type, id, node_name, attrs).value();
  };
  const auto h = node(NodeType::kHost, "host:" + host, host);
  const auto vm =
      node(NodeType::kVm, "vm:" + uuid, name, {{"uuid", uuid}, {"state", state}, {"host", host}});
  const auto disk = node(NodeType::kVirtualDisk, "disk:" + uuid + ":vda", "vda");
  const auto file =
      node(NodeType::kFile, "file:fs:nfs1:/" + name + ".qcow2", "/" + name + ".qcow2");
  const auto sv = node(NodeType::kStorageVolume, "sv:dir:fs:nfs1:/", "gold");
  const auto ss = node(NodeType::kStorageSystem, "ss:" + storage_system, storage_system);
  graph.AddEdge(h, vm, EdgeType::kRuns);
  graph.AddEdge(vm, disk, EdgeType::kHasDisk);
  graph.AddEdge(disk, file, EdgeType::kBackedBy);
  graph.AddEdge(file, sv, EdgeType::kInVolume);
  graph.AddEdge(sv, ss, EdgeType::kInSystem);
}

}  // namespace strata::server::testing
