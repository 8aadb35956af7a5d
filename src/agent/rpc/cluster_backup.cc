// The coordinator's side of a cluster backup (BackupService::RunForCluster): find each VM's
// owner, forward one sub-request per owner, plan the storage snapshots so that a volume shared
// by several owners is snapshotted once, and consolidate the owners' answers into one.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "backup_service.h"
#include "channel.h"
#include "cluster/coordinator.h"
#include "graph_proto.h"
#include "spdlog/spdlog.h"
#include "status_grpc.h"
#include "strata/core/query.h"
#include "strata/util/strings.h"

namespace strata::agent {
namespace {

using Clock = std::chrono::steady_clock;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t MsSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

// One owner's sub-request, as the coordinator follows it.
struct Owner {
  enum class Phase { kRunning, kHolding, kPlanned, kTaken, kEnded };
  std::string host_id;
  std::string endpoint;
  std::vector<std::string> vms;              // UUIDs
  std::map<std::string, std::string> names;  // UUID -> name
  std::unique_ptr<v1::Backup::Stub> stub;
  Phase phase = Phase::kRunning;
  std::vector<v1::VolumeFiles> needs;  // from its "planning" hold
  std::vector<v1::TakenSnapshot> taken;
  std::optional<v1::BackupResponse> response;
  std::string error;  // the stream failed: why
};

// The snapshot plan: each volume any owner needs, snapshotted once, by the coordinator when it
// needs the volume, else by the first owner (by host id) that does, with every owner's files.
std::map<std::string, v1::VolumeFiles> PlanSnapshots(const std::map<std::string, Owner>& owners,
                                                     const std::string& self,
                                                     std::map<std::string, std::string>& taker) {
  std::map<std::string, v1::VolumeFiles> volumes;
  std::map<std::string, std::set<std::string>> files;
  for (const auto& [host_id, owner] : owners) {  // host id order
    if (owner.phase != Owner::Phase::kHolding) continue;
    for (const v1::VolumeFiles& need : owner.needs) {
      v1::VolumeFiles& v = volumes[need.volume_id()];
      v.set_volume_id(need.volume_id());
      v.set_volume_name(need.volume_name());
      files[need.volume_id()].insert(need.files().begin(), need.files().end());
      auto [it, first] = taker.emplace(need.volume_id(), host_id);
      if (!first && host_id == self) it->second = self;
    }
  }
  for (auto& [volume_id, v] : volumes) {
    for (const std::string& f : files[volume_id]) v.add_files(f);
  }
  return volumes;
}

}  // namespace

grpc::Status BackupService::RunForCluster(grpc::ServerContext* context,
                                          const v1::BackupRequest& request,
                                          grpc::ServerWriter<v1::BackupEvent>* writer) {
  const int64_t started_ms = NowMs();
  const Clock::time_point started = Clock::now();
  std::map<std::string, int64_t> timings;
  std::vector<std::string> vms(request.vms().begin(), request.vms().end());
  if (vms.empty()) {
    absl::StatusOr<ClusterView> view = cluster_->Discover();
    if (!view.ok()) return rpc::ToGrpcStatus(view.status());
    for (const VmSummary& vm : view->vms) vms.push_back(vm.uuid);
  }
  // Owners; a VM without a reachable owner fails here with the reason.
  std::map<std::string, Owner> owners;
  std::vector<backup::ManifestVm> failures;
  std::vector<absl::StatusOr<VmOwner>> found = cluster_->Owners(vms);
  for (size_t i = 0; i < vms.size(); ++i) {
    const std::string& vm = vms[i];
    absl::StatusOr<VmOwner>& owner = found[i];
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
    Owner& o = owners[owner->member.host_id];
    o.host_id = owner->member.host_id;
    o.endpoint = owner->member.endpoint;
    o.vms.push_back(owner->vm.uuid);
    o.names[owner->vm.uuid] = owner->vm.name;
  }
  timings["owners"] = MsSince(started);

  // One forwarded sub-request per owner, in parallel; progress passes through. With several
  // owners the storage snapshots are coordinated (planned below, on this thread).
  const bool coordinated = owners.size() > 1;
  const int hold_timeout_ms = request.hold_timeout_ms() > 0 ? request.hold_timeout_ms() : 60000;
  std::mutex mu;  // guards `owners` phases and the writer
  std::condition_variable changed;
  std::vector<std::unique_ptr<grpc::ClientContext>> sub_contexts;
  std::vector<std::thread> threads;
  std::optional<Clock::time_point> first_hold;
  const Clock::time_point forwarded_at = Clock::now();
  for (auto& [host_id, owner] : owners) {
    // The channel the ownership round just used (connected, quick to reconnect): a fresh
    // channel's first connect can fail under load and would fail the owner's VMs for nothing.
    std::shared_ptr<grpc::Channel> channel = cluster_->MemberChannel(owner.endpoint);
    owner.stub = v1::Backup::NewStub(channel);
    sub_contexts.push_back(std::make_unique<grpc::ClientContext>());
    grpc::ClientContext* sub_context = sub_contexts.back().get();
    threads.emplace_back([&, channel, sub_context, o = &owner] {
      // Nothing has been asked of the owner before it is connected, so waiting is safe; the
      // bound keeps a member that died since the ownership round from stalling the backup. A
      // channel whose connects failed fails the call below at once with its reason, unsent.
      constexpr auto kConnectTimeout = std::chrono::seconds(5);
      if (!rpc::AwaitReady(*channel, std::chrono::system_clock::now() + kConnectTimeout) &&
          channel->GetState(/*try_to_connect=*/false) != GRPC_CHANNEL_TRANSIENT_FAILURE) {
        std::lock_guard lock(mu);
        o->phase = Owner::Phase::kEnded;
        o->error = util::Cat("cannot connect to ", o->endpoint, " within 5 s");
        changed.notify_all();
        return;
      }
      v1::BackupRequest sub = request;
      sub.set_forwarded(true);
      sub.clear_cluster();
      sub.clear_vms();
      for (const std::string& vm : o->vms) sub.add_vms(vm);
      sub.set_coordinated_snapshots(coordinated);
      sub.set_hold_timeout_ms(hold_timeout_ms);
      auto reader = o->stub->RunBackup(sub_context, sub);
      v1::BackupEvent event;
      while (reader->Read(&event)) {
        std::lock_guard lock(mu);
        if (event.has_progress()) {
          if (!context->IsCancelled()) writer->Write(event);
        } else if (event.has_hold()) {
          const v1::BackupHold& hold = event.hold();
          if (hold.phase() == "planning" && o->phase == Owner::Phase::kRunning) {
            o->needs.assign(hold.needs().begin(), hold.needs().end());
            o->phase = Owner::Phase::kHolding;
            if (!first_hold) first_hold = Clock::now();
          } else if (hold.phase() == "taken" && o->phase == Owner::Phase::kPlanned) {
            o->taken.assign(hold.taken().begin(), hold.taken().end());
            o->phase = Owner::Phase::kTaken;
          }
          changed.notify_all();
        } else if (event.has_result()) {
          o->response = event.result();
        }
      }
      grpc::Status status = reader->Finish();
      std::lock_guard lock(mu);
      o->phase = Owner::Phase::kEnded;
      if (!status.ok()) o->error = status.error_message();
      changed.notify_all();
    });
  }

  if (coordinated) {
    // Sends each owner in `phase` its ContinueBackup; an owner that cannot be told is left to
    // its own timeout (its stream ends, which ends it here too).
    const auto tell = [&](Owner& o, const v1::ContinueBackupRequest& message) {
      grpc::ClientContext call;
      call.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      v1::ContinueBackupResponse ignored;
      grpc::Status s = o.stub->ContinueBackup(&call, message, &ignored);
      if (!s.ok()) {
        spdlog::warn("cluster backup {}: telling {} to continue failed: {}", request.name(),
                     o.host_id, s.error_message());
      }
    };
    const auto wait_all = [&](Owner::Phase reached) {
      std::unique_lock lock(mu);
      const auto deadline = Clock::now() + std::chrono::milliseconds(hold_timeout_ms);
      while (true) {
        bool all = std::all_of(owners.begin(), owners.end(), [&](const auto& entry) {
          return entry.second.phase == reached || entry.second.phase == Owner::Phase::kEnded;
        });
        if (all || context->IsCancelled()) return all;
        if (Clock::now() >= deadline) return false;
        changed.wait_for(lock, std::chrono::milliseconds(50));
      }
    };
    std::vector<std::pair<Owner*, v1::ContinueBackupRequest>> messages;
    // 1. every owner holds its VMs at the requested consistency (or has ended)
    if (!wait_all(Owner::Phase::kHolding)) {
      std::lock_guard lock(mu);
      std::vector<std::string> late;
      for (auto& [host_id, o] : owners) {
        if (o.phase == Owner::Phase::kRunning) late.push_back(host_id);
      }
      v1::ContinueBackupRequest abort;
      abort.set_backup_id(request.backup_id());
      abort.set_phase("plan");
      abort.set_error(context->IsCancelled()
                          ? std::string("the cluster backup was cancelled")
                          : util::Cat("members ", util::Join(late, ", "),
                                      " did not reach consistency within ", hold_timeout_ms,
                                      " ms; every member releases its VMs"));
      for (auto& [host_id, o] : owners) {
        if (o.phase == Owner::Phase::kHolding) messages.emplace_back(&o, abort);
      }
    } else {
      // 2. each volume snapshotted once: tell every holding owner what it takes
      std::lock_guard lock(mu);
      std::map<std::string, std::string> taker;
      const std::map<std::string, v1::VolumeFiles> plan =
          PlanSnapshots(owners, host_.config().host_id, taker);
      for (auto& [host_id, o] : owners) {
        if (o.phase != Owner::Phase::kHolding) continue;
        v1::ContinueBackupRequest message;
        message.set_backup_id(request.backup_id());
        message.set_phase("plan");
        for (const auto& [volume_id, v] : plan) {
          if (taker[volume_id] == host_id) *message.add_take() = v;
        }
        o.phase = Owner::Phase::kPlanned;
        messages.emplace_back(&o, std::move(message));
      }
      for (const auto& [volume_id, host_id] : taker) {
        spdlog::info("cluster backup {}: volume {} is snapshotted by {}", request.name(),
                     plan.at(volume_id).volume_name(), host_id);
      }
    }
    for (auto& [o, message] : messages) tell(*o, message);
    // 3. every owner has taken its snapshots: give each the others'
    if (!messages.empty() && messages.front().second.error().empty()) {
      const bool all_taken = wait_all(Owner::Phase::kTaken);
      std::lock_guard lock(mu);
      v1::ContinueBackupRequest snapshots;
      snapshots.set_backup_id(request.backup_id());
      snapshots.set_phase("snapshots");
      for (auto& [host_id, o] : owners) {
        for (const v1::TakenSnapshot& t : o.taken) *snapshots.add_snapshots() = t;
      }
      if (!all_taken) {
        snapshots.set_error(
            util::Cat("not every member took its snapshots within ", hold_timeout_ms, " ms"));
      }
      messages.clear();
      for (auto& [host_id, o] : owners) {
        if (o.phase == Owner::Phase::kTaken || o.phase == Owner::Phase::kPlanned) {
          messages.emplace_back(&o, snapshots);
        }
      }
    }
    if (!messages.empty() && messages.front().second.phase() == "snapshots") {
      for (auto& [o, message] : messages) tell(*o, message);
    }
    if (first_hold) timings["held"] = MsSince(*first_hold);
  }
  // The coordinator's own caller went away: stop waiting on the owners (each releases its VMs).
  std::thread watchdog([&] {
    std::unique_lock lock(mu);
    while (!std::all_of(owners.begin(), owners.end(), [](const auto& entry) {
      return entry.second.phase == Owner::Phase::kEnded;
    })) {
      if (context->IsCancelled()) {
        for (auto& c : sub_contexts) c->TryCancel();
        return;
      }
      changed.wait_for(lock, std::chrono::milliseconds(100));
    }
  });
  for (std::thread& t : threads) t.join();
  watchdog.join();
  timings["forwarded"] = MsSince(forwarded_at);

  // One answer: every owner's VMs and snapshots, and the VMs that could not be reached.
  const Clock::time_point consolidating = Clock::now();
  if (FaultInjector faults = FaultsFromEnvironment()) {  // tests: the coordinator dies here
    if (absl::Status s = faults("consolidate"); !s.ok()) return rpc::ToGrpcStatus(s);
  }
  backup::BackupManifest merged;
  merged.backup_id = request.backup_id();
  merged.name = request.name();
  merged.requester = request.requester();
  merged.policy = request.policy();
  merged.started_at_ms = started_ms;
  core::Graph graph;
  std::set<std::pair<std::string, std::string>> listed;  // (volume, snapshot)
  for (auto& [host_id, o] : owners) {
    absl::StatusOr<backup::BackupManifest> manifest =
        o.response ? backup::ParseManifest(o.response->manifest_json())
                   : absl::StatusOr<backup::BackupManifest>(
                         absl::UnavailableError(o.error.empty() ? "no result" : o.error));
    if (!manifest.ok()) {
      for (const std::string& vm : o.vms) {
        backup::ManifestVm failed;
        failed.uuid = vm;
        failed.name = o.names[vm];
        failed.host = host_id;
        failed.error =
            util::Cat("backup on member ", host_id, " failed: ", manifest.status().message());
        failures.push_back(std::move(failed));
      }
      continue;
    }
    if (absl::StatusOr<core::Graph> part = rpc::GraphFromProto(o.response->graph()); part.ok()) {
      graph.Merge(*part).IgnoreError();
    }
    if (merged.consistency_requested.empty()) {
      merged.consistency_requested = manifest->consistency_requested;
    }
    if (merged.fallback.empty()) merged.fallback = manifest->fallback;
    merged.vms.insert(merged.vms.end(), manifest->vms.begin(), manifest->vms.end());
    for (backup::ManifestSnapshot& s : manifest->snapshots) {
      if (listed.emplace(s.storage_volume, s.snapshot_id).second) {
        merged.snapshots.push_back(std::move(s));
      }
    }
  }
  merged.vms.insert(merged.vms.end(), failures.begin(), failures.end());
  // A snapshot taken for several owners is the coordinator's to remove when no VM kept it.
  std::set<std::pair<std::string, std::string>> used;
  for (const backup::ManifestVm& vm : merged.vms) {
    if (!vm.ok) continue;
    for (const backup::ManifestDisk& d : vm.disks) used.emplace(d.storage_volume, d.snapshot_id);
  }
  std::erase_if(merged.snapshots, [&](const backup::ManifestSnapshot& s) {
    if (used.contains({s.storage_volume, s.snapshot_id})) return false;
    auto o = owners.find(s.host);
    if (o == owners.end()) return false;
    grpc::ClientContext call;
    call.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::DeleteSnapshotRequest remove;
    remove.set_storage_volume(s.storage_volume);
    remove.set_snapshot_id(s.snapshot_id);
    v1::DeleteSnapshotResponse ignored;
    grpc::Status status = o->second.stub->DeleteSnapshot(&call, remove, &ignored);
    if (!status.ok()) {
      spdlog::warn("cluster backup {}: removing unused snapshot {} of {} on {} failed: {}",
                   request.name(), s.snapshot_id, s.volume_name, s.host, status.error_message());
      return false;
    }
    return true;
  });
  size_t ok = 0;
  for (const backup::ManifestVm& vm : merged.vms) ok += vm.ok ? 1 : 0;
  merged.state = ok == merged.vms.size() ? "succeeded" : ok == 0 ? "failed" : "partial";
  merged.finished_at_ms = NowMs();
  merged.graph = core::ToJson(graph, core::WholeGraph(graph));
  v1::BackupEvent result = ResultEvent(merged, graph);
  timings["consolidate"] = MsSince(consolidating);
  for (const auto& [name, ms] : timings)
    (*result.mutable_result()->mutable_timings_ms())[name] = ms;
  spdlog::info("cluster backup '{}' ({}): {} ({} VMs on {} members, {} storage snapshots)",
               request.name(), request.backup_id(), merged.state, merged.vms.size(), owners.size(),
               merged.snapshots.size());
  std::lock_guard lock(mu);
  writer->Write(result);
  return grpc::Status::OK;
}

}  // namespace strata::agent
