#include "backup_service.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "cluster/coordinator.h"
#include "graph_proto.h"
#include "status_grpc.h"
#include "strata/core/query.h"
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

// The last message of a backup stream: per-VM results, the graph and the manifest.
v1::BackupEvent ResultEvent(const backup::BackupManifest& manifest, const core::Graph& graph) {
  v1::BackupEvent event;
  v1::BackupResponse* result = event.mutable_result();
  result->set_backup_id(manifest.backup_id);
  for (const backup::ManifestVm& vm : manifest.vms) {
    v1::BackupVmResult* r = result->add_results();
    r->set_vm_uuid(vm.uuid);
    r->set_vm_name(vm.name);
    r->set_ok(vm.ok);
    r->set_error(vm.error);
    r->set_achieved(ToProto(vm.consistency_achieved));
    r->set_host_id(vm.host);
  }
  rpc::GraphToProto(graph, result->mutable_graph());
  result->set_manifest_json(backup::ToJson(manifest).dump());
  return event;
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

bool BackupService::IsLocal(const std::string& vm) {
  absl::Status s = host_.WithHypervisor([&](hypervisor::Hypervisor& h) {
    hypervisor::ListOptions options;
    options.only = {vm};
    return h.ListDomains(options).status();
  });
  return s.ok();
}

grpc::Status BackupService::RunBackup(grpc::ServerContext* context,
                                      const v1::BackupRequest* request,
                                      grpc::ServerWriter<v1::BackupEvent>* writer) {
  if (!request->forwarded() && cluster_ != nullptr) {
    bool any_elsewhere = !request->cluster().empty();
    for (const std::string& vm : request->vms()) {
      if (!any_elsewhere && !IsLocal(vm)) any_elsewhere = true;
    }
    if (any_elsewhere) return RunForCluster(context, *request, writer);
  }
  // The loop guard: a forwarded request is answered here, for the VMs that are here.
  std::vector<backup::ManifestVm> elsewhere;
  std::vector<std::string> local;
  if (request->forwarded()) {
    for (const std::string& vm : request->vms()) {
      if (IsLocal(vm)) {
        local.push_back(vm);
        continue;
      }
      backup::ManifestVm failed;
      failed.uuid = vm;
      failed.name = vm;
      failed.host = host_.config().host_id;
      failed.error = util::Cat("VM '", vm, "' is not on host '", host_.config().host_id,
                               "'; a forwarded request is never forwarded again");
      elsewhere.push_back(std::move(failed));
    }
    if (local.empty() && !elsewhere.empty()) {
      backup::BackupManifest manifest;
      manifest.backup_id = request->backup_id();
      manifest.name = request->name();
      manifest.state = "failed";
      manifest.vms = std::move(elsewhere);
      writer->Write(ResultEvent(manifest, core::Graph()));
      return grpc::Status::OK;
    }
  }
  BackupParams params;
  params.backup_id = request->backup_id();
  params.name = request->name();
  params.vms.assign(request->vms().begin(), request->vms().end());
  if (request->forwarded()) params.vms = local;
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
  if (!elsewhere.empty()) {
    for (backup::ManifestVm& vm : elsewhere) outcome->manifest.vms.push_back(std::move(vm));
    outcome->manifest.state = outcome->manifest.state == "failed" ? "failed" : "partial";
  }
  writer->Write(ResultEvent(outcome->manifest, outcome->graph));
  return grpc::Status::OK;
}

grpc::Status BackupService::RunForCluster(grpc::ServerContext* context,
                                          const v1::BackupRequest& request,
                                          grpc::ServerWriter<v1::BackupEvent>* writer) {
  const auto started = NowMs();
  std::vector<std::string> vms(request.vms().begin(), request.vms().end());
  if (vms.empty()) {
    absl::StatusOr<ClusterView> view = cluster_->Discover();
    if (!view.ok()) return rpc::ToGrpcStatus(view.status());
    for (const VmSummary& vm : view->vms) vms.push_back(vm.uuid);
  }
  // Owners; a VM without a reachable owner fails here with the reason.
  struct Group {
    std::string endpoint;
    std::vector<std::string> vms;
  };
  std::map<std::string, Group> groups;
  std::vector<backup::ManifestVm> failures;
  for (const std::string& vm : vms) {
    absl::StatusOr<VmOwner> owner = cluster_->Owner(vm);
    std::string error;
    if (!owner.ok()) {
      error = util::Cat("cannot find the owner of VM '", vm, "': ", owner.status().message());
    } else if (!owner->reachable) {
      error = util::Cat("owner ", owner->member.host_id, " of VM '", vm,
                        "' is unreachable: ", owner->error);
    }
    if (!error.empty()) {
      backup::ManifestVm failed;
      failed.uuid = owner.ok() ? owner->vm.uuid : vm;
      failed.name = owner.ok() ? owner->vm.name : vm;
      failed.host = owner.ok() ? owner->member.host_id : "";
      failed.error = std::move(error);
      failures.push_back(std::move(failed));
      continue;
    }
    Group& group = groups[owner->member.host_id];
    group.endpoint = owner->member.endpoint;
    group.vms.push_back(owner->vm.uuid);
  }
  // One forwarded sub-request per owner, in parallel; progress passes through.
  std::mutex mu;
  std::vector<backup::BackupManifest> manifests;
  core::Graph graph;
  std::vector<std::thread> threads;
  for (const auto& [host_id, group] : groups) {
    threads.emplace_back([&, host_id = host_id, group = group] {
      v1::BackupRequest sub = request;
      sub.set_forwarded(true);
      sub.clear_cluster();
      sub.clear_vms();
      for (const std::string& vm : group.vms) sub.add_vms(vm);
      const std::string base =
          request.snapshot_name().empty() ? request.name() : request.snapshot_name();
      if (groups.size() > 1) sub.set_snapshot_name(util::Cat(base, ".", host_id));
      auto stub = v1::Backup::NewStub(
          grpc::CreateChannel(group.endpoint, grpc::InsecureChannelCredentials()));
      grpc::ClientContext sub_context;
      auto reader = stub->RunBackup(&sub_context, sub);
      v1::BackupEvent event;
      std::optional<v1::BackupResponse> response;
      while (reader->Read(&event)) {
        if (event.has_progress()) {
          std::lock_guard lock(mu);
          if (!context->IsCancelled()) writer->Write(event);
        } else if (event.has_result()) {
          response = event.result();
        }
      }
      grpc::Status status = reader->Finish();
      std::lock_guard lock(mu);
      absl::StatusOr<backup::BackupManifest> manifest =
          response ? backup::ParseManifest(response->manifest_json())
                   : absl::StatusOr<backup::BackupManifest>(absl::UnavailableError(""));
      if (!status.ok() || !manifest.ok()) {
        const std::string why =
            !status.ok() ? status.error_message() : std::string(manifest.status().message());
        for (const std::string& vm : group.vms) {
          backup::ManifestVm failed;
          failed.uuid = vm;
          failed.name = vm;
          failed.host = host_id;
          failed.error = util::Cat("backup on member ", host_id, " failed: ", why);
          failures.push_back(std::move(failed));
        }
        return;
      }
      if (absl::StatusOr<core::Graph> part = rpc::GraphFromProto(response->graph()); part.ok()) {
        graph.Merge(*part).IgnoreError();
      }
      manifests.push_back(*std::move(manifest));
    });
  }
  for (std::thread& t : threads) t.join();

  // One answer: every owner's VMs and snapshots, and the VMs that could not be reached.
  backup::BackupManifest merged;
  merged.backup_id = request.backup_id();
  merged.name = request.name();
  merged.requester = request.requester();
  merged.policy = request.policy();
  merged.started_at_ms = started;
  for (const backup::BackupManifest& m : manifests) {
    if (merged.consistency_requested.empty())
      merged.consistency_requested = m.consistency_requested;
    if (merged.fallback.empty()) merged.fallback = m.fallback;
    merged.vms.insert(merged.vms.end(), m.vms.begin(), m.vms.end());
    merged.snapshots.insert(merged.snapshots.end(), m.snapshots.begin(), m.snapshots.end());
  }
  merged.vms.insert(merged.vms.end(), failures.begin(), failures.end());
  size_t ok = 0;
  for (const backup::ManifestVm& vm : merged.vms) ok += vm.ok ? 1 : 0;
  merged.state = ok == merged.vms.size() ? "succeeded" : ok == 0 ? "failed" : "partial";
  merged.finished_at_ms = NowMs();
  merged.graph = core::ToJson(graph, core::WholeGraph(graph));
  writer->Write(ResultEvent(merged, graph));
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
