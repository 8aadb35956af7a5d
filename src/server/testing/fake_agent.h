// Test scaffolding: a real in-process gRPC server that answers strata.v1.Discovery and
// strata.v1.Agent like an agent with a fixed graph. Tests point stratad at its endpoint.
//
// Threading: thread-safe; the setters may be called while the server runs.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "strata/core/graph.h"
#include "strata/v1/agent.grpc.pb.h"

namespace strata::server::testing {

struct FakeVm {
  std::string uuid;
  std::string name;
  std::string state = "running";
};

class FakeAgent final : public v1::Discovery::Service, public v1::Agent::Service {
 public:
  explicit FakeAgent(std::string host_id);
  ~FakeAgent() override;

  // Starts on 127.0.0.1 on a free port; returns "127.0.0.1:PORT".
  std::string Start();
  void Stop();
  std::string endpoint() const { return endpoint_; }

  void SetGraph(core::Graph graph, std::vector<FakeVm> vms);
  // Every Discover answers this error (code and message) until cleared with OK.
  void SetError(grpc::Status status);
  int discover_calls() const { return discover_calls_.load(); }
  int partial_discover_calls() const { return partial_discover_calls_.load(); }  // with vms

  grpc::Status Discover(grpc::ServerContext*, const v1::DiscoverRequest*,
                        v1::DiscoverResponse* response) override;
  grpc::Status GetAgentInfo(grpc::ServerContext*, const v1::GetAgentInfoRequest*,
                            v1::AgentInfo* response) override;
  grpc::Status Health(grpc::ServerContext*, const v1::HealthRequest*,
                      v1::HealthResponse* response) override;

 private:
  const std::string host_id_;
  std::string endpoint_;
  std::unique_ptr<grpc::Server> server_;
  mutable std::mutex mu_;
  core::Graph graph_;
  std::vector<FakeVm> vms_;
  grpc::Status error_ = grpc::Status::OK;
  uint64_t version_ = 0;
  std::atomic<int> discover_calls_{0};
  std::atomic<int> partial_discover_calls_{0};
};

// host:<host> -runs-> vm:<uuid> (named `name`, attrs uuid/state/host) -has_disk-> disk -backed_by->
// file:<fs>:<path> -in_volume-> sv:<volume> -in_system-> ss:<system>. Handy for merge tests.
void AddVm(core::Graph& graph, const std::string& host, const std::string& uuid,
           const std::string& name, const std::string& storage_system,
           const std::string& state = "running");

}  // namespace strata::server::testing
