#include "backup_service.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>

#include "graph_proto.h"
#include "status_grpc.h"
#include "strata/util/strings.h"

namespace strata::agent {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::optional<ConsistencyMode> FromProto(v1::Consistency c) {
  switch (c) {
    case v1::CONSISTENCY_CRASH:
      return ConsistencyMode::kCrash;
    case v1::CONSISTENCY_PAUSE:
      return ConsistencyMode::kPause;
    case v1::CONSISTENCY_QUIESCE:
      return ConsistencyMode::kQuiesce;
    default:
      return std::nullopt;
  }
}

v1::Consistency ToProto(const std::string& name) {
  if (name == "crash") return v1::CONSISTENCY_CRASH;
  if (name == "pause") return v1::CONSISTENCY_PAUSE;
  if (name == "quiesce") return v1::CONSISTENCY_QUIESCE;
  return v1::CONSISTENCY_UNSPECIFIED;
}

}  // namespace

FaultInjector FaultsFromEnvironment() {
  const char* text = std::getenv("STRATA_AGENT_FAULTS");
  if (text == nullptr || *text == '\0') return nullptr;
  // "step" fails the step; "step=exit" ends the process right there, as a crash would.
  std::map<std::string, std::string> steps;
  for (std::string_view item : util::Split(text, ',')) {
    std::string entry(util::Trim(item));
    const size_t eq = entry.find('=');
    steps[entry.substr(0, eq)] = eq == std::string::npos ? "fail" : entry.substr(eq + 1);
  }
  return [steps](const std::string& step) {
    auto it = steps.find(step);
    if (it == steps.end()) return absl::OkStatus();
    if (it->second == "exit") {
      std::fprintf(stderr, "strata-agent: injected crash at step '%s'\n", step.c_str());
      std::_Exit(70);
    }
    return absl::InternalError(util::Cat("injected failure at step '", step, "'"));
  };
}

grpc::Status BackupService::RunBackup(grpc::ServerContext* context,
                                      const v1::BackupRequest* request,
                                      grpc::ServerWriter<v1::BackupEvent>* writer) {
  BackupParams params;
  params.backup_id = request->backup_id();
  params.name = request->name();
  params.vms.assign(request->vms().begin(), request->vms().end());
  std::optional<ConsistencyMode> mode = FromProto(request->consistency());
  if (!mode) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "backup request: consistency is not set (crash, pause or quiesce)");
  }
  params.consistency = *mode;
  params.fallback = FromProto(request->fallback());
  params.verify = request->verify();
  params.requester = request->requester();
  params.policy = request->policy();
  params.snapshot_name = request->snapshot_name();
  std::mutex write_mutex;  // progress may come from the engine's thread only, but be safe
  bool client_gone = false;
  absl::StatusOr<BackupOutcome> outcome = engine_.Run(params, [&](const BackupStep& step) {
    std::lock_guard lock(write_mutex);
    if (client_gone || context->IsCancelled()) {
      client_gone = true;
      return;  // the backup goes on: stopping half-way would leave more to clean up
    }
    v1::BackupEvent event;
    v1::BackupProgress* p = event.mutable_progress();
    p->set_vm_uuid(step.vm_uuid);
    p->set_vm_name(step.vm_name);
    p->set_step(step.step);
    p->set_message(step.message);
    p->set_percent(step.percent);
    p->set_time_unix_ms(NowMs());
    if (!writer->Write(event)) client_gone = true;
  });
  if (!outcome.ok()) return rpc::ToGrpcStatus(outcome.status());
  v1::BackupEvent event;
  v1::BackupResponse* result = event.mutable_result();
  result->set_backup_id(outcome->manifest.backup_id);
  for (const backup::ManifestVm& vm : outcome->manifest.vms) {
    v1::BackupVmResult* r = result->add_results();
    r->set_vm_uuid(vm.uuid);
    r->set_vm_name(vm.name);
    r->set_ok(vm.ok);
    r->set_error(vm.error);
    r->set_achieved(ToProto(vm.consistency_achieved));
    r->set_host_id(vm.host);
  }
  rpc::GraphToProto(outcome->graph, result->mutable_graph());
  result->set_manifest_json(backup::ToJson(outcome->manifest).dump());
  writer->Write(event);
  return grpc::Status::OK;
}

grpc::Status BackupService::DeleteSnapshot(grpc::ServerContext*,
                                           const v1::DeleteSnapshotRequest* request,
                                           v1::DeleteSnapshotResponse* response) {
  absl::Status s = engine_.DeleteSnapshot(request->storage_volume(), request->snapshot_id());
  if (absl::IsNotFound(s) && s.message().find("snapshot") != std::string::npos) {
    response->set_existed(false);
    return grpc::Status::OK;
  }
  if (!s.ok()) return rpc::ToGrpcStatus(s);
  response->set_existed(true);
  return grpc::Status::OK;
}

grpc::Status RestoreService::RunRestore(grpc::ServerContext* context,
                                        const v1::RestoreRequest* request,
                                        grpc::ServerWriter<v1::RestoreEvent>* writer) {
  absl::StatusOr<backup::BackupManifest> manifest = backup::ParseManifest(request->manifest_json());
  if (!manifest.ok()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        util::Cat("restore request: ", manifest.status().message()));
  }
  RestoreParams params;
  params.restore_id = request->restore_id();
  params.vm = request->vm();
  params.as_name = request->as_name();
  params.disks.assign(request->disks().begin(), request->disks().end());
  params.verify = request->verify();
  if (request->start()) params.start = true;
  params.target_dir = request->target_dir();
  bool client_gone = false;
  absl::StatusOr<RestoreOutcome> outcome =
      engine_.Restore(*manifest, params, [&](const BackupStep& step) {
        if (client_gone || context->IsCancelled()) {
          client_gone = true;
          return;
        }
        v1::RestoreEvent event;
        v1::RestoreProgress* p = event.mutable_progress();
        p->set_step(step.step);
        p->set_message(step.message);
        p->set_percent(step.percent);
        p->set_time_unix_ms(NowMs());
        if (!writer->Write(event)) client_gone = true;
      });
  if (!outcome.ok()) return rpc::ToGrpcStatus(outcome.status());
  v1::RestoreEvent event;
  v1::RestoreResult* r = event.mutable_result();
  r->set_ok(true);
  r->set_message(outcome->message);
  r->set_vm_uuid(outcome->vm_uuid);
  r->set_vm_name(outcome->vm_name);
  for (const std::string& path : outcome->disk_paths) r->add_disk_paths(path);
  r->set_verified(outcome->verified);
  writer->Write(event);
  return grpc::Status::OK;
}

}  // namespace strata::agent
