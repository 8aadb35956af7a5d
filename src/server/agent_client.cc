#include "strata/server/agent_client.h"

#include <grpcpp/grpcpp.h>

#include <mutex>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "channel.h"
#include "graph_proto.h"
#include "status_grpc.h"
#include "strata/util/strings.h"
#include "strata/v1/agent.grpc.pb.h"

namespace strata::server {
namespace {

class GrpcAgentConnector final : public AgentConnector {
 public:
  explicit GrpcAgentConnector(const GrpcAgentConnectorOptions& options) : options_(options) {}

  absl::StatusOr<DiscoveryResult> Discover(const std::string& host_id, const std::string& endpoint,
                                           const std::vector<std::string>& vms) override {
    auto stub = v1::Discovery::NewStub(Channel(endpoint));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + options_.deadline);
    v1::DiscoverRequest request;
    for (const std::string& vm : vms) request.add_vms(vm);
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

  absl::StatusOr<AgentBackupResult> RunBackup(const std::string& host_id,
                                              const std::string& endpoint,
                                              const AgentBackupParams& params,
                                              const AgentProgressFn& progress) override {
    auto stub = v1::Backup::NewStub(Channel(endpoint));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + options_.operation_deadline);
    v1::BackupRequest request;
    request.set_backup_id(params.backup_id);
    request.set_name(params.name);
    for (const std::string& vm : params.vms) request.add_vms(vm);
    request.set_consistency(ConsistencyToProto(params.consistency));
    request.set_fallback(ConsistencyToProto(params.fallback));
    request.set_verify(params.verify);
    request.set_requester(params.requester);
    request.set_policy(params.policy);
    request.set_vm_snapshot(params.vm_snapshot);
    request.set_forwarded(params.forwarded);
    request.set_snapshot_name(params.snapshot_name);
    request.set_cluster(params.cluster);
    std::unique_ptr<grpc::ClientReader<v1::BackupEvent>> reader =
        stub->RunBackup(&context, request);
    std::optional<AgentBackupResult> result;
    v1::BackupEvent event;
    while (reader->Read(&event)) {
      if (event.has_progress()) {
        if (progress) {
          const v1::BackupProgress& p = event.progress();
          progress(AgentProgress{p.vm_uuid(), p.vm_name(), p.step(), p.message(), p.percent()});
        }
      } else if (event.has_result()) {
        absl::StatusOr<core::Graph> graph = rpc::GraphFromProto(event.result().graph());
        if (!graph.ok()) {
          return absl::InvalidArgumentError(util::Cat(
              "agent of host '", host_id, "' sent a bad backup graph: ", graph.status().message()));
        }
        result = AgentBackupResult{event.result().manifest_json(), *std::move(graph), {}};
        for (const auto& [step, ms] : event.result().timings_ms()) result->timings_ms[step] = ms;
      }
    }
    grpc::Status status = reader->Finish();
    if (!status.ok()) return Wrap(host_id, endpoint, "backup", status);
    if (!result) {
      return absl::UnavailableError(util::Cat("backup on host '", host_id, "' (agent at '",
                                              endpoint, "') ended without a result"));
    }
    return *std::move(result);
  }

  absl::StatusOr<AgentRestoreResult> RunRestore(const std::string& host_id,
                                                const std::string& endpoint,
                                                const AgentRestoreParams& params,
                                                const AgentProgressFn& progress) override {
    auto stub = v1::Restore::NewStub(Channel(endpoint));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + options_.operation_deadline);
    v1::RestoreRequest request;
    request.set_restore_id(params.restore_id);
    request.set_vm(params.vm);
    request.set_as_name(params.as_name);
    for (const std::string& d : params.disks) request.add_disks(d);
    request.set_manifest_json(params.manifest_json);
    request.set_verify(params.verify);
    request.set_start(params.start);
    request.set_target_dir(params.target_dir);
    std::unique_ptr<grpc::ClientReader<v1::RestoreEvent>> reader =
        stub->RunRestore(&context, request);
    std::optional<AgentRestoreResult> result;
    v1::RestoreEvent event;
    while (reader->Read(&event)) {
      if (event.has_progress()) {
        if (progress) {
          const v1::RestoreProgress& p = event.progress();
          progress(AgentProgress{"", "", p.step(), p.message(), p.percent()});
        }
      } else if (event.has_result()) {
        const v1::RestoreResult& r = event.result();
        result = AgentRestoreResult{r.vm_uuid(),
                                    r.vm_name(),
                                    {r.disk_paths().begin(), r.disk_paths().end()},
                                    r.verified(),
                                    r.message()};
      }
    }
    grpc::Status status = reader->Finish();
    if (!status.ok()) return Wrap(host_id, endpoint, "restore", status);
    if (!result) {
      return absl::UnavailableError(util::Cat("restore on host '", host_id, "' (agent at '",
                                              endpoint, "') ended without a result"));
    }
    return *std::move(result);
  }

  absl::StatusOr<bool> DeleteSnapshot(const std::string& host_id, const std::string& endpoint,
                                      const std::string& storage_volume,
                                      const std::string& snapshot_id) override {
    auto stub = v1::Backup::NewStub(Channel(endpoint));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + options_.deadline);
    v1::DeleteSnapshotRequest request;
    request.set_storage_volume(storage_volume);
    request.set_snapshot_id(snapshot_id);
    v1::DeleteSnapshotResponse response;
    grpc::Status status = stub->DeleteSnapshot(&context, request, &response);
    if (!status.ok()) return Wrap(host_id, endpoint, "snapshot deletion", status);
    return response.existed();
  }

 private:
  static v1::Consistency ConsistencyToProto(const std::string& name) {
    if (name == "crash") return v1::CONSISTENCY_CRASH;
    if (name == "pause") return v1::CONSISTENCY_PAUSE;
    if (name == "quiesce") return v1::CONSISTENCY_QUIESCE;
    return v1::CONSISTENCY_UNSPECIFIED;
  }
  static absl::Status Wrap(const std::string& host_id, const std::string& endpoint,
                           const char* what, const grpc::Status& status) {
    absl::Status s = rpc::FromGrpcStatus(status);
    return absl::Status(s.code(), util::Cat(what, " on host '", host_id, "' (agent at '", endpoint,
                                            "'): ", s.message()));
  }

  // The agent's channel, kept from call to call (an agent back after a restart is reconnected
  // within a second: rpc::MakeChannel's back-off), once connected, or once its next connect
  // after a failed one has not succeeded either (rpc::AwaitReady: one failed connect is not an
  // agent down); a call on a channel in failure then fails at once with the reason.
  std::shared_ptr<grpc::Channel> Channel(const std::string& endpoint) {
    std::shared_ptr<grpc::Channel> channel;
    {
      std::lock_guard lock(mu_);
      std::shared_ptr<grpc::Channel>& kept = channels_[endpoint];
      if (!kept) kept = rpc::MakeChannel(endpoint);
      channel = kept;
    }
    rpc::AwaitReady(*channel, std::chrono::system_clock::now() + options_.deadline);
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
