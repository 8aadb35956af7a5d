#include "backup_service.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
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

}  // namespace

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

namespace {

void ToProto(const VolumeNeed& need, v1::VolumeFiles* out) {
  out->set_volume_id(need.volume_id);
  out->set_volume_name(need.volume_name);
  for (const std::string& f : need.files) out->add_files(f);
}

VolumeNeed FromProto(const v1::VolumeFiles& in) {
  return {in.volume_id(), in.volume_name(), {in.files().begin(), in.files().end()}};
}

void ToProto(const TakenSnapshot& taken, v1::TakenSnapshot* out) {
  out->set_volume_id(taken.volume_id);
  out->set_volume_name(taken.volume_name);
  out->set_volume_root(taken.volume_root);
  out->set_plugin(taken.plugin);
  out->set_host_id(taken.host);
  out->set_snapshot_id(taken.info.snapshot_id);
  out->set_path(taken.info.path);
  out->set_method(taken.info.method);
  for (const plugin::SnapshotFile& f : taken.info.files) {
    v1::SnapshotFileInfo* file = out->add_files();
    file->set_source_path(f.source_path);
    file->set_path_in_snapshot(f.path_in_snapshot);
    file->set_size_bytes(f.size_bytes);
    file->set_method(f.method);
  }
}

TakenSnapshot FromProto(const v1::TakenSnapshot& in) {
  TakenSnapshot out{in.volume_id(), in.volume_name(), in.volume_root(),
                    in.plugin(),    in.host_id(),     {}};
  out.info.snapshot_id = in.snapshot_id();
  out.info.path = in.path();
  out.info.method = in.method();
  for (const v1::SnapshotFileInfo& f : in.files()) {
    out.info.files.push_back({f.source_path(), f.path_in_snapshot(), f.size_bytes(), f.method()});
  }
  return out;
}

}  // namespace

struct BackupService::Mailbox {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<v1::ContinueBackupRequest> inbox;
};

namespace {

// The owner's side of a coordinated cluster backup: `hold` events up the stream, the
// coordinator's ContinueBackup messages through the mailbox.
class ForwardedCoordination final : public SnapshotCoordination {
 public:
  ForwardedCoordination(BackupService::Mailbox& mailbox, grpc::ServerContext* context,
                        std::function<bool(const v1::BackupEvent&)> send, std::string host_id,
                        std::chrono::milliseconds timeout)
      : mailbox_(mailbox),
        context_(context),
        send_(std::move(send)),
        host_id_(std::move(host_id)),
        timeout_(timeout) {}

  absl::StatusOr<std::vector<VolumeNeed>> Plan(const std::vector<VolumeNeed>& needs) override {
    v1::BackupEvent event;
    v1::BackupHold* hold = event.mutable_hold();
    hold->set_phase("planning");
    hold->set_host_id(host_id_);
    for (const VolumeNeed& need : needs) ToProto(need, hold->add_needs());
    absl::StatusOr<v1::ContinueBackupRequest> answer = Ask(event, "plan");
    if (!answer.ok()) return answer.status();
    std::vector<VolumeNeed> take;
    for (const v1::VolumeFiles& v : answer->take()) take.push_back(FromProto(v));
    return take;
  }

  absl::StatusOr<std::vector<TakenSnapshot>> Exchange(
      const std::vector<TakenSnapshot>& taken_here) override {
    v1::BackupEvent event;
    v1::BackupHold* hold = event.mutable_hold();
    hold->set_phase("taken");
    hold->set_host_id(host_id_);
    for (const TakenSnapshot& t : taken_here) ToProto(t, hold->add_taken());
    absl::StatusOr<v1::ContinueBackupRequest> answer = Ask(event, "snapshots");
    if (!answer.ok()) return answer.status();
    std::vector<TakenSnapshot> others;
    for (const v1::TakenSnapshot& t : answer->snapshots()) others.push_back(FromProto(t));
    return others;
  }

 private:
  absl::StatusOr<v1::ContinueBackupRequest> Ask(const v1::BackupEvent& event,
                                                const std::string& phase) {
    if (!send_(event)) {
      return absl::UnavailableError("the coordinator is gone (its request stream closed)");
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    std::unique_lock lock(mailbox_.mu);
    while (true) {
      for (auto it = mailbox_.inbox.begin(); it != mailbox_.inbox.end(); ++it) {
        if (it->phase() != phase) continue;
        v1::ContinueBackupRequest answer = std::move(*it);
        mailbox_.inbox.erase(it);
        if (!answer.error().empty()) return absl::AbortedError(answer.error());
        return answer;
      }
      if (context_->IsCancelled()) {
        return absl::UnavailableError("the coordinator went away (its request was cancelled)");
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        return absl::DeadlineExceededError(util::Cat("no word from the coordinator within ",
                                                     timeout_.count(), " ms (", phase, ")"));
      }
      mailbox_.cv.wait_for(lock, std::chrono::milliseconds(50));
    }
  }

  BackupService::Mailbox& mailbox_;
  grpc::ServerContext* context_;
  std::function<bool(const v1::BackupEvent&)> send_;
  const std::string host_id_;
  const std::chrono::milliseconds timeout_;
};

}  // namespace

std::shared_ptr<BackupService::Mailbox> BackupService::OpenMailbox(const std::string& backup_id) {
  std::lock_guard lock(mailboxes_mu_);
  auto& slot = mailboxes_[backup_id];
  slot = std::make_shared<Mailbox>();
  return slot;
}

void BackupService::CloseMailbox(const std::string& backup_id) {
  std::lock_guard lock(mailboxes_mu_);
  mailboxes_.erase(backup_id);
}

grpc::Status BackupService::ContinueBackup(grpc::ServerContext*,
                                           const v1::ContinueBackupRequest* request,
                                           v1::ContinueBackupResponse*) {
  std::shared_ptr<Mailbox> mailbox;
  {
    std::lock_guard lock(mailboxes_mu_);
    auto it = mailboxes_.find(request->backup_id());
    if (it != mailboxes_.end()) mailbox = it->second;
  }
  if (!mailbox) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        util::Cat("no coordinated backup '", request->backup_id(),
                                  "' is waiting on host '", host_.config().host_id, "'"));
  }
  {
    std::lock_guard lock(mailbox->mu);
    mailbox->inbox.push_back(*request);
  }
  mailbox->cv.notify_all();
  return grpc::Status::OK;
}

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
  if (!request->vm_snapshot().empty()) params.vm_snapshot = request->vm_snapshot();
  params.snapshot_name = request->snapshot_name();
  std::mutex write_mutex;  // progress may come from the engine's thread only, but be safe
  bool client_gone = false;
  // The backup goes on when the client is gone: stopping half-way would leave more to clean up.
  const auto send = [&](const v1::BackupEvent& event) {
    std::lock_guard lock(write_mutex);
    if (client_gone || context->IsCancelled() || !writer->Write(event)) client_gone = true;
    return !client_gone;
  };
  std::optional<ForwardedCoordination> coordination;
  std::shared_ptr<Mailbox> mailbox;
  if (request->forwarded() && request->coordinated_snapshots()) {
    const int timeout_ms = request->hold_timeout_ms() > 0 ? request->hold_timeout_ms() : 60000;
    mailbox = OpenMailbox(request->backup_id());
    coordination.emplace(*mailbox, context, send, host_.config().host_id,
                         std::chrono::milliseconds(timeout_ms));
    params.coordination = &*coordination;
  }
  absl::StatusOr<BackupOutcome> outcome = engine_.Run(params, [&](const BackupStep& step) {
    v1::BackupEvent event;
    v1::BackupProgress* p = event.mutable_progress();
    p->set_vm_uuid(step.vm_uuid);
    p->set_vm_name(step.vm_name);
    p->set_step(step.step);
    p->set_message(step.message);
    p->set_percent(step.percent);
    p->set_time_unix_ms(NowMs());
    send(event);
  });
  if (coordination) CloseMailbox(request->backup_id());
  if (!outcome.ok()) return rpc::ToGrpcStatus(outcome.status());
  if (!elsewhere.empty()) {
    for (backup::ManifestVm& vm : elsewhere) outcome->manifest.vms.push_back(std::move(vm));
    outcome->manifest.state = outcome->manifest.state == "failed" ? "failed" : "partial";
  }
  writer->Write(ResultEvent(outcome->manifest, outcome->graph));
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
