#include "strata/server/job_manager.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <ctime>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "spdlog/spdlog.h"
#include "strata/backup/manifest.h"
#include "strata/core/query.h"
#include "strata/server/retention.h"
#include "strata/util/strings.h"
#include "time_format.h"

namespace strata::server {
namespace {

using json = nlohmann::json;

std::string Msg(const absl::Status& s) { return std::string(util::ToStd(s.message())); }

std::string RandomHex(int bytes) {
  static thread_local std::mt19937_64 rng(std::random_device{}() ^
                                          static_cast<uint64_t>(std::time(nullptr)));
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < bytes; ++i) {
    const auto v = static_cast<unsigned>(rng() & 0xff);
    out += kHex[v >> 4];
    out += kHex[v & 0xf];
  }
  return out;
}

std::string UtcStamp(CatalogTime t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y%m%d-%H%M%S", &tm);
  return buffer;
}

// A host id as a snapshot-name part: [A-Za-z0-9._-] kept, anything else '_'.
std::string SafeName(const std::string& text) {
  std::string out = text;
  for (char& c : out) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '_';
  }
  return out;
}

struct Target {
  std::string uuid;
  std::string name;
  std::string host;
};

// A backup's progress, shared by its per-host threads.
struct BackupRun {
  std::mutex mu;
  std::string job_id;
  json detail;
  std::map<std::string, int> host_percent;
  std::chrono::steady_clock::time_point last_write{};
};

}  // namespace

struct JobManager::Impl {
  Impl(Catalog& c, HostRegistry& r, GraphStore& g, AgentConnector& a)
      : catalog(c), registry(r), graphs(g), agents(a) {}

  Catalog& catalog;
  HostRegistry& registry;
  GraphStore& graphs;
  AgentConnector& agents;

  std::mutex mu;
  std::condition_variable idle_cv;
  int running = 0;
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Worker> workers;

  // Job versions for streams; a lock of their own, so that a waiting stream holds nothing a
  // worker (which writes progress under BackupRun::mu) needs.
  std::mutex watch_mu;
  std::condition_variable watch_cv;
  std::map<std::string, uint64_t> versions;  // running jobs only: ended ones are erased
  uint64_t wakeups = 0;                      // WakeWaiters() calls

  void Changed(const std::string& id, JobState state) {
    {
      std::lock_guard lock(watch_mu);
      if (state == JobState::kSucceeded || state == JobState::kFailed) {
        versions.erase(id);
      } else {
        ++versions[id];
      }
    }
    watch_cv.notify_all();
  }

  // Every change of a job goes through here, so that its streams hear of it.
  absl::StatusOr<JobRecord> UpdateJob(const JobUpdate& update) {
    absl::StatusOr<JobRecord> job = catalog.UpdateJob(update);
    if (job.ok()) Changed(job->id, job->state);
    return job;
  }

  void Launch(std::function<void()> fn) {
    std::lock_guard lock(mu);
    // Join the finished ones first: an unjoined thread keeps its stack.
    for (auto it = workers.begin(); it != workers.end();) {
      if (it->done->load()) {
        it->thread.join();
        it = workers.erase(it);
      } else {
        ++it;
      }
    }
    ++running;
    auto done = std::make_shared<std::atomic<bool>>(false);
    workers.push_back({std::thread([this, done, fn = std::move(fn)] {
                         fn();
                         std::lock_guard lock(mu);
                         --running;
                         done->store(true);
                         idle_cv.notify_all();
                       }),
                       done});
  }

  absl::StatusOr<std::vector<Target>> Resolve(const BackupSpec& spec) {
    absl::StatusOr<std::vector<VmRecord>> all = catalog.ListVms(std::nullopt);
    if (!all.ok()) return all.status();
    std::vector<Target> out;
    std::set<std::string> seen;
    auto add = [&](const VmRecord& vm) {
      if (seen.insert(vm.uuid).second) out.push_back({vm.uuid, vm.name, vm.host});
    };
    for (const std::string& wanted : spec.vms) {
      std::vector<const VmRecord*> matches;
      for (const VmRecord& vm : *all) {
        if (vm.uuid == wanted) matches = {&vm};
      }
      if (matches.empty()) {
        for (const VmRecord& vm : *all) {
          if (vm.name == wanted) matches.push_back(&vm);
        }
      }
      if (matches.empty()) {
        return absl::NotFoundError(util::Cat("VM '", wanted, "' not found in the inventory"));
      }
      if (matches.size() > 1) {
        std::vector<std::string> hosts;
        for (const VmRecord* vm : matches) hosts.push_back(vm->host);
        return absl::InvalidArgumentError(util::Cat("VM name '", wanted,
                                                    "' is ambiguous: it is on hosts ",
                                                    util::Join(hosts, ", "), "; use its UUID"));
      }
      add(*matches[0]);
    }
    if (!spec.host.empty()) {
      if (absl::StatusOr<HostView> host = registry.GetHost(spec.host); !host.ok()) {
        return host.status();
      }
      for (const VmRecord& vm : *all) {
        if (vm.host == spec.host) add(vm);
      }
    }
    if (!spec.cluster.empty()) {
      bool any = false;
      for (const HostView& host : registry.ListHosts()) {
        if (host.record.cluster != spec.cluster) continue;
        any = true;
        for (const VmRecord& vm : *all) {
          if (vm.host == host.record.id) add(vm);
        }
      }
      if (!any) return absl::NotFoundError(util::Cat("cluster '", spec.cluster, "' not found"));
    }
    if (!spec.select.empty()) {
      absl::StatusOr<core::Selector> selector = core::ParseSelector(spec.select);
      if (!selector.ok()) return selector.status();
      std::vector<std::string> uuids = graphs.Read([&](const core::Graph& g) {
        std::vector<std::string> found;
        for (core::NodeIndex n : core::Select(g, *selector)) {
          if (g.Type(n) == core::NodeType::kVm) {
            found.emplace_back(util::StripPrefix(g.Id(n), "vm:"));
          }
        }
        return found;
      });
      for (const std::string& uuid : uuids) {
        for (const VmRecord& vm : *all) {
          if (vm.uuid == uuid) add(vm);
        }
      }
    }
    if (out.empty()) {
      return absl::InvalidArgumentError(
          "nothing to back up: name VMs, a host, a cluster or a selector that matches VMs");
    }
    return out;
  }

  // "volume/snapshot" keys of the storage snapshots that the backups matching `which` use.
  absl::StatusOr<std::set<std::string>> SnapshotsReferencedBy(
      const std::function<bool(const BackupRecord&)>& which) {
    BackupListOptions options;
    options.with_items = true;
    options.limit = 100000;
    absl::StatusOr<std::vector<BackupRecord>> all = catalog.ListBackups(options);
    if (!all.ok()) return all.status();
    std::set<std::string> keys;
    for (const BackupRecord& b : *all) {
      if (!which(b)) continue;
      for (const BackupItem& item : b.items) {
        keys.insert(util::Cat(item.storage_volume, "/", item.snapshot_id));
      }
    }
    return keys;
  }

  // Deletes the storage snapshots of `backup` (from its manifests) whose key is not in `keep`.
  // Stops at the first failure (the caller keeps the catalog record then).
  absl::Status DeleteSnapshotsOf(const BackupRecord& backup, const std::set<std::string>& keep,
                                 json& report) {
    const json& metadata = backup.metadata;
    if (!metadata.contains("manifests") || !metadata["manifests"].is_array()) {
      return absl::OkStatus();
    }
    for (const json& manifest : metadata["manifests"]) {
      for (const json& snap : manifest.value("snapshots", json::array())) {
        const std::string volume = snap.value("storage_volume", "");
        const std::string id = snap.value("snapshot_id", "");
        const std::string host_id = snap.value("host", "");
        const std::string key = util::Cat(volume, "/", id);
        if (keep.contains(key)) {
          report["snapshots_kept"].push_back(key);
          continue;
        }
        absl::StatusOr<HostView> host = registry.GetHost(host_id);
        if (!host.ok()) return host.status();
        if (host->record.state != HostState::kReachable || !host->registered) {
          return absl::UnavailableError(util::Cat("cannot delete snapshot '", id, "' of volume '",
                                                  snap.value("volume_name", volume), "': host '",
                                                  host_id, "' is unreachable"));
        }
        absl::StatusOr<bool> existed =
            agents.DeleteSnapshot(host_id, host->record.endpoint, volume, id);
        if (!existed.ok()) return existed.status();
        report["snapshots_deleted"].push_back(
            {{"key", key}, {"host", host_id}, {"existed", *existed}});
      }
    }
    return absl::OkStatus();
  }

  void WriteProgress(BackupRun& run, bool force) {
    // Called with run.mu held.
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - run.last_write < std::chrono::milliseconds(100)) return;
    run.last_write = now;
    int sum = 0;
    for (const auto& [host, percent] : run.host_percent) sum += percent;
    const int percent =
        run.host_percent.empty() ? 0 : sum / static_cast<int>(run.host_percent.size());
    JobUpdate update;
    update.id = run.job_id;
    update.progress = std::min(percent, 99);
    update.detail = run.detail;
    if (absl::StatusOr<JobRecord> j = UpdateJob(update); !j.ok()) {
      spdlog::warn("job {}: progress not stored: {}", run.job_id, Msg(j.status()));
    }
  }

  // Where one part of a backup is sent: a standalone host, or a cluster (one request to one
  // live member, which coordinates it: forwards each VM to its owner and consolidates).
  struct Dispatch {
    std::string key;      // the host id, or "cluster:<name>"
    std::string cluster;  // empty: a standalone host
    std::vector<Target> vms;
  };

  // The member a cluster request goes to: the first reachable, registered member by host id.
  absl::StatusOr<HostView> PickMember(const std::string& cluster) {
    std::vector<std::string> down;
    for (HostView& host : registry.ListHosts()) {
      if (host.record.cluster != cluster) continue;
      if (host.record.state == HostState::kReachable && host.registered) return std::move(host);
      down.push_back(host.record.id);
    }
    return absl::UnavailableError(util::Cat("no member of cluster '", cluster, "' is reachable",
                                            down.empty() ? "" : " (", util::Join(down, ", "),
                                            down.empty() ? "" : ")"));
  }

  void RunBackup(std::shared_ptr<BackupRun> run, BackupSpec spec, std::string backup_id,
                 std::string name, std::vector<Target> targets) {
    std::map<std::string, Dispatch> dispatches;
    std::set<std::string> hosts;
    for (const Target& t : targets) {
      hosts.insert(t.host);
      absl::StatusOr<HostView> host = registry.GetHost(t.host);
      const std::string cluster = host.ok() ? host->record.cluster : "";
      Dispatch& d = dispatches[cluster.empty() ? t.host : util::Cat("cluster:", cluster)];
      d.key = cluster.empty() ? t.host : util::Cat("cluster:", cluster);
      d.cluster = cluster;
      d.vms.push_back(t);
    }
    {
      std::lock_guard lock(run->mu);
      for (const auto& [key, d] : dispatches) run->host_percent[key] = 0;
    }
    UpdateJob({run->job_id, JobState::kRunning, 0,
               util::Cat("backing up ", targets.size(), " VMs on ", hosts.size(), " hosts"),
               std::nullopt})
        .IgnoreError();
    std::mutex results_mu;
    std::vector<json> manifests;
    std::map<std::string, std::string> host_errors;  // host or cluster -> why its VMs failed
    std::vector<std::thread> host_threads;
    for (const auto& [key, dispatch] : dispatches) {
      host_threads.emplace_back([&, key = key, dispatch = dispatch] {
        const std::vector<Target>& vms = dispatch.vms;
        auto set_vm = [&](const std::string& uuid, const json& patch) {
          std::lock_guard lock(run->mu);
          for (json& vm : run->detail["vms"]) {
            if (vm["uuid"] == uuid) vm.update(patch);
          }
        };
        absl::StatusOr<HostView> host =
            dispatch.cluster.empty() ? registry.GetHost(key) : PickMember(dispatch.cluster);
        absl::Status failure;
        if (!host.ok()) {
          failure = host.status();
        } else if (host->record.state != HostState::kReachable || !host->registered) {
          failure = absl::UnavailableError(util::Cat("host '", key, "' is unreachable"));
        }
        const std::string host_id = host.ok() ? host->record.id : key;
        if (failure.ok()) {
          for (const Target& t : vms) set_vm(t.uuid, {{"state", "running"}});
          AgentBackupParams params;
          params.backup_id = backup_id;
          params.name = name;
          for (const Target& t : vms) params.vms.push_back(t.uuid);
          params.consistency = spec.consistency;
          params.fallback = spec.fallback;
          params.vm_snapshot = spec.vm_snapshot;
          params.verify = spec.verify;
          params.requester = spec.requester;
          params.policy = spec.policy;
          params.cluster = dispatch.cluster;
          if (dispatches.size() > 1) params.snapshot_name = util::Cat(name, ".", SafeName(key));
          if (!dispatch.cluster.empty()) {
            spdlog::info("backup '{}': {} VMs of cluster '{}' sent to member '{}'", name,
                         vms.size(), dispatch.cluster, host_id);
          }
          const std::set<std::string> mine = [&] {
            std::set<std::string> uuids;
            for (const Target& t : vms) uuids.insert(t.uuid);
            return uuids;
          }();
          absl::StatusOr<AgentBackupResult> result =
              agents.RunBackup(host_id, host->record.endpoint, params, [&](const AgentProgress& p) {
                std::lock_guard lock(run->mu);
                run->host_percent[key] = p.percent;
                for (json& vm : run->detail["vms"]) {
                  const std::string step = vm.value("step", "");
                  const bool finished = step == "done" || step == "failed";
                  if (p.vm_uuid.empty() ? mine.contains(vm.value("uuid", "")) && !finished
                                        : vm["uuid"] == p.vm_uuid) {
                    vm["step"] = p.step;
                    vm["message"] = p.message;
                  }
                }
                WriteProgress(*run, false);
              });
          if (result.ok()) {
            json manifest = json::parse(result->manifest_json, nullptr, false);
            if (manifest.is_discarded() || !manifest.is_object()) {
              failure = absl::InvalidArgumentError(
                  util::Cat("agent of host '", host_id, "' sent a manifest that is not JSON"));
            } else {
              for (const json& vm : manifest.value("vms", json::array())) {
                set_vm(vm.value("uuid", ""),
                       {{"state", vm.value("ok", false) ? "succeeded" : "failed"},
                        {"error", vm.value("error", "")},
                        {"host", vm.value("host", "")},
                        {"consistency_achieved", vm.value("consistency_achieved", "")}});
              }
              if (!result->timings_ms.empty()) {
                std::lock_guard run_lock(run->mu);
                run->detail["coordination"][key] = {{"member", host_id},
                                                    {"timings_ms", result->timings_ms}};
              }
              std::lock_guard lock(results_mu);
              manifests.push_back(std::move(manifest));
            }
          } else if (!dispatch.cluster.empty()) {
            failure = absl::Status(
                result.status().code(),
                util::Cat("member '", host_id, "' coordinating cluster '", dispatch.cluster,
                          "' failed mid-backup: ", Msg(result.status())));
          } else {
            failure = result.status();
          }
        }
        if (!failure.ok()) {
          spdlog::warn("backup '{}': {}: {}", name, key, Msg(failure));
          // A VM whose owner reported it done before the coordinator failed: its snapshot may
          // exist although no result came back (`stratad catalog rebuild` imports it).
          {
            std::lock_guard lock(run->mu);
            for (json& vm : run->detail["vms"]) {
              const std::string uuid = vm.value("uuid", "");
              if (std::none_of(vms.begin(), vms.end(),
                               [&](const Target& t) { return t.uuid == uuid; }))
                continue;
              const bool reported_done = vm.value("step", "") == "done";
              vm["state"] = "failed";
              vm["error"] = reported_done ? util::Cat(Msg(failure),
                                                      " (its host had reported it done: the "
                                                      "snapshot may exist; `stratad catalog "
                                                      "rebuild` imports it)")
                                          : Msg(failure);
              if (reported_done) vm["reported_done"] = true;
            }
          }
          std::lock_guard results_lock(results_mu);
          host_errors[key] = Msg(failure);
        }
        std::lock_guard lock(run->mu);
        run->host_percent[key] = 100;
        WriteProgress(*run, true);
      });
    }
    for (std::thread& t : host_threads) t.join();

    // ---- into the catalog
    std::vector<BackupItem> items;
    size_t ok = 0;
    json vm_summary = json::array();
    for (const json& manifest : manifests) {
      for (const json& vm : manifest.value("vms", json::array())) {
        // An agent that could not find a VM names it by what it was asked (its UUID).
        std::string vm_name = vm.value("name", "");
        for (const Target& t : targets) {
          if (t.uuid == vm.value("uuid", "") && (vm_name.empty() || vm_name == t.uuid)) {
            vm_name = t.name;
          }
        }
        vm_summary.push_back({{"uuid", vm.value("uuid", "")},
                              {"name", vm_name},
                              {"host", vm.value("host", "")},
                              {"ok", vm.value("ok", false)},
                              {"error", vm.value("error", "")},
                              {"consistency_achieved", vm.value("consistency_achieved", "")}});
        if (!vm.value("ok", false)) continue;
        ++ok;
        for (const json& disk : vm.value("disks", json::array())) {
          BackupItem item;
          item.vm_uuid = vm.value("uuid", "");
          item.vm_name = vm.value("name", "");
          item.disk_target = disk.value("target", "");
          item.source_path = disk.value("source_path", "");
          item.storage_volume = disk.value("storage_volume", "");
          item.snapshot_id = disk.value("snapshot_id", "");
          item.path_in_snapshot = disk.value("path_in_snapshot", "");
          item.size_bytes = disk.value("size_bytes", int64_t{0});
          item.checksum = disk.value("checksum", "");
          items.push_back(std::move(item));
        }
      }
    }
    for (const auto& [key, error] : host_errors) {
      for (const Target& t : dispatches.at(key).vms) {
        vm_summary.push_back({{"uuid", t.uuid},
                              {"name", t.name},
                              {"host", t.host},
                              {"ok", false},
                              {"error", error},
                              {"consistency_achieved", ""}});
      }
    }
    const std::string state = ok == targets.size() ? "succeeded" : ok == 0 ? "failed" : "partial";
    BackupFinish finish;
    finish.backup = backup_id;
    finish.state = ok == 0 ? BackupState::kFailed : BackupState::kSucceeded;
    finish.finished_at = registry.Now();
    finish.items = std::move(items);
    finish.metadata_patch = json{{"state", state},
                                 {"vms", vm_summary},
                                 {"manifests", manifests},
                                 {"host_errors", host_errors}};
    absl::Status stored = catalog.FinishBackup(finish);
    std::string message = util::Cat("backup '", name, "': ", ok, " of ", targets.size(),
                                    " VMs backed up (", state, ")");
    if (!stored.ok())
      message = util::Cat(message, "; the catalog could not store it: ", Msg(stored));
    for (const json& vm : vm_summary) {
      if (!vm.value("ok", false)) {
        message = util::Cat(message, "; ", vm.value("name", ""), ": ", vm.value("error", ""));
      }
    }
    std::lock_guard lock(run->mu);
    JobUpdate update;
    update.id = run->job_id;
    update.state = state == "succeeded" && stored.ok() ? JobState::kSucceeded : JobState::kFailed;
    update.progress = 100;
    update.message = message;
    run->detail["state"] = state;
    update.detail = run->detail;
    UpdateJob(update).IgnoreError();
    spdlog::info("{}", message);
  }
};

JobManager::JobManager(Catalog& catalog, HostRegistry& registry, GraphStore& graphs,
                       AgentConnector& agents)
    : impl_(std::make_unique<Impl>(catalog, registry, graphs, agents)) {}

JobManager::~JobManager() { Stop(); }

absl::StatusOr<JobStarted> JobManager::StartBackup(const BackupSpec& spec_in) {
  BackupSpec spec = spec_in;
  if (spec.consistency.empty()) spec.consistency = "crash";
  if (spec.consistency != "crash" && spec.consistency != "pause" && spec.consistency != "quiesce") {
    return absl::InvalidArgumentError(
        util::Cat("consistency must be crash, pause or quiesce, not '", spec.consistency, "'"));
  }
  if (!spec.vm_snapshot.empty() && spec.vm_snapshot != "auto" && spec.vm_snapshot != "internal" &&
      spec.vm_snapshot != "external" && spec.vm_snapshot != "none") {
    return absl::InvalidArgumentError(util::Cat(
        "vm_snapshot must be auto, internal, external or none, not '", spec.vm_snapshot, "'"));
  }
  if (!spec.fallback.empty() && spec.fallback != "pause" && spec.fallback != "crash") {
    return absl::InvalidArgumentError(
        util::Cat("fallback must be pause or crash, not '", spec.fallback, "'"));
  }
  if (!spec.fallback.empty() && spec.consistency != "quiesce") {
    return absl::InvalidArgumentError("a fallback applies only to consistency 'quiesce'");
  }
  const CatalogTime now = impl_->registry.Now();
  std::string name = spec.name.empty() ? util::Cat(spec.policy.empty() ? "backup" : spec.policy,
                                                   "-", UtcStamp(now))
                                       : spec.name;
  if (absl::Status s = backup::ValidateName("backup name", name); !s.ok()) return s;
  if (impl_->catalog.GetBackup(name).ok()) {
    return absl::AlreadyExistsError(util::Cat("a backup named '", name, "' already exists"));
  }
  absl::StatusOr<std::vector<Target>> targets = impl_->Resolve(spec);
  if (!targets.ok()) return targets.status();

  const std::string backup_id = util::Cat("b-", UtcStamp(now), "-", RandomHex(3));
  BackupRecord record;
  record.id = backup_id;
  record.name = name;
  record.requester = spec.requester;
  absl::StatusOr<Consistency> consistency = ParseConsistency(spec.consistency);
  if (!consistency.ok()) return consistency.status();
  record.consistency = *consistency;
  record.state = BackupState::kRunning;
  record.started_at = now;
  record.policy = spec.policy;
  record.metadata = {{"state", "running"},
                     {"consistency_requested", spec.consistency},
                     {"fallback", spec.fallback},
                     {"verify", spec.verify}};
  if (absl::Status s = impl_->catalog.CreateBackup(record); !s.ok()) return s;

  auto run = std::make_shared<BackupRun>();
  run->job_id = util::Cat("j-", UtcStamp(now), "-", RandomHex(3));
  json vms = json::array();
  for (const Target& t : *targets) {
    vms.push_back({{"uuid", t.uuid},
                   {"name", t.name},
                   {"host", t.host},
                   {"state", "queued"},
                   {"step", ""},
                   {"message", ""},
                   {"error", ""}});
  }
  run->detail = {{"backup_id", backup_id},          {"backup_name", name},
                 {"consistency", spec.consistency}, {"fallback", spec.fallback},
                 {"requester", spec.requester},     {"vms", vms}};
  JobRecord job;
  job.id = run->job_id;
  job.kind = "backup";
  job.state = JobState::kQueued;
  job.message = util::Cat("backup '", name, "' of ", targets->size(), " VMs");
  job.detail = run->detail;
  if (absl::Status s = impl_->catalog.CreateJob(job); !s.ok()) {
    BackupFinish finish{backup_id, BackupState::kFailed, now, {}, json{{"state", "failed"}}};
    impl_->catalog.FinishBackup(finish).IgnoreError();
    return s;
  }
  impl_->Changed(job.id, job.state);
  spdlog::info("backup '{}' ({}) started as job {}: {} VMs, consistency {}", name, backup_id,
               job.id, targets->size(), spec.consistency);
  impl_->Launch([impl = impl_.get(), run, spec, backup_id, name, targets = *targets] {
    impl->RunBackup(run, spec, backup_id, name, targets);
  });
  absl::StatusOr<JobRecord> stored = impl_->catalog.GetJob(job.id);
  JobStarted started{stored.ok() ? *stored : job, backup_id, name};
  return started;
}

absl::StatusOr<JobStarted> JobManager::StartRestore(const RestoreSpec& spec) {
  if (spec.vm.empty()) return absl::InvalidArgumentError("restore: name the VM to restore");
  if (!spec.as_name.empty()) {
    if (absl::Status s = backup::ValidateName("VM name", spec.as_name); !s.ok()) return s;
  }
  std::string backup_ref = spec.backup;
  if (backup_ref.empty()) {
    absl::StatusOr<VmRecord> vm = impl_->catalog.GetVm(spec.vm);
    if (!vm.ok()) {
      return absl::InvalidArgumentError(util::Cat(
          "VM '", spec.vm, "' is not in the inventory: name the backup to restore it from"));
    }
    absl::StatusOr<RestorePoint> point = impl_->catalog.LatestRestorePoint(vm->uuid);
    if (!point.ok()) return point.status();
    backup_ref = point->backup.id;
  }
  absl::StatusOr<BackupRecord> backup_record = impl_->catalog.GetBackup(backup_ref);
  if (!backup_record.ok()) return backup_record.status();
  if (backup_record->state == BackupState::kRunning) {
    return absl::FailedPreconditionError(
        util::Cat("backup '", backup_record->name, "' is still running"));
  }
  // The manifest holding the VM.
  const json& metadata = backup_record->metadata;
  std::string manifest_text;
  std::string source_host;
  std::string vm_uuid;
  std::string vm_name;
  std::string failed_error;
  if (metadata.contains("manifests") && metadata["manifests"].is_array()) {
    for (const json& manifest : metadata["manifests"]) {
      for (const json& vm : manifest.value("vms", json::array())) {
        if (vm.value("uuid", "") != spec.vm && vm.value("name", "") != spec.vm) continue;
        if (!vm.value("ok", false)) {
          failed_error = vm.value("error", "");
          continue;
        }
        manifest_text = manifest.dump();
        source_host = vm.value("host", "");
        vm_uuid = vm.value("uuid", "");
        vm_name = vm.value("name", "");
      }
    }
  }
  if (manifest_text.empty()) {
    if (!failed_error.empty()) {
      return absl::FailedPreconditionError(util::Cat("VM '", spec.vm, "' failed in backup '",
                                                     backup_record->name, "': ", failed_error));
    }
    return absl::NotFoundError(
        util::Cat("VM '", spec.vm, "' is not in backup '", backup_record->name, "'"));
  }
  const std::string host_id = spec.host.empty() ? source_host : spec.host;
  absl::StatusOr<HostView> host = impl_->registry.GetHost(host_id);
  if (!host.ok()) return host.status();
  if (host->record.state != HostState::kReachable || !host->registered) {
    return absl::FailedPreconditionError(util::Cat("host '", host_id, "' is unreachable"));
  }
  const CatalogTime now = impl_->registry.Now();
  JobRecord job;
  job.id = util::Cat("j-", UtcStamp(now), "-", RandomHex(3));
  job.kind = "restore";
  job.state = JobState::kQueued;
  job.message = util::Cat(
      "restore of VM '", vm_name, "' from backup '", backup_record->name, "'",
      spec.as_name.empty() ? std::string(" in place") : util::Cat(" as '", spec.as_name, "'"),
      " on host '", host_id, "'");
  job.detail = {{"backup_id", backup_record->id},
                {"backup_name", backup_record->name},
                {"vm_uuid", vm_uuid},
                {"vm_name", vm_name},
                {"as_name", spec.as_name},
                {"disks", spec.disks},
                {"host", host_id},
                {"verify", spec.verify},
                {"requester", spec.requester},
                {"step", ""},
                {"steps", json::array()}};
  if (absl::Status s = impl_->catalog.CreateJob(job); !s.ok()) return s;
  impl_->Changed(job.id, job.state);
  spdlog::info("{} started as job {}", job.message, job.id);
  AgentRestoreParams params;
  params.restore_id = job.id;
  params.vm = vm_uuid;
  params.as_name = spec.as_name;
  params.disks = spec.disks;
  params.manifest_json = manifest_text;
  params.verify = spec.verify;
  params.start = spec.start.value_or(false);
  params.target_dir = spec.target_dir;
  const std::string endpoint = host->record.endpoint;
  impl_->Launch([impl = impl_.get(), job, params, host_id, endpoint, start = spec.start] {
    json detail = job.detail;
    impl->UpdateJob({job.id, JobState::kRunning, 0, std::nullopt, std::nullopt}).IgnoreError();
    AgentRestoreParams p = params;
    // In place without --start: the agent starts the VM again if it was running.
    if (!start.has_value() && p.as_name.empty()) p.start = false;
    absl::StatusOr<AgentRestoreResult> result =
        impl->agents.RunRestore(host_id, endpoint, p, [&](const AgentProgress& progress) {
          detail["step"] = progress.step;
          detail["steps"].push_back({{"step", progress.step}, {"message", progress.message}});
          impl->UpdateJob(
                  {job.id, std::nullopt, std::min(progress.percent, 99), progress.message, detail})
              .IgnoreError();
        });
    JobUpdate update;
    update.id = job.id;
    update.progress = 100;
    if (result.ok()) {
      update.state = JobState::kSucceeded;
      update.message = result->message;
      detail["result"] = {{"vm_uuid", result->vm_uuid},
                          {"vm_name", result->vm_name},
                          {"disk_paths", result->disk_paths},
                          {"verified", result->verified}};
    } else {
      update.state = JobState::kFailed;
      update.message = Msg(result.status());
      detail["error"] = Msg(result.status());
    }
    update.detail = detail;
    impl->UpdateJob(update).IgnoreError();
    spdlog::info("job {}: {}", job.id, *update.message);
  });
  absl::StatusOr<JobRecord> stored = impl_->catalog.GetJob(job.id);
  return JobStarted{stored.ok() ? *stored : job, "", ""};
}

absl::StatusOr<json> JobManager::DeleteBackup(const std::string& id_or_name) {
  absl::StatusOr<BackupRecord> backup_record = impl_->catalog.GetBackup(id_or_name);
  if (!backup_record.ok()) return backup_record.status();
  if (backup_record->state == BackupState::kRunning) {
    return absl::FailedPreconditionError(
        util::Cat("backup '", backup_record->name, "' is still running"));
  }
  absl::StatusOr<std::set<std::string>> others = impl_->SnapshotsReferencedBy(
      [&](const BackupRecord& b) { return b.id != backup_record->id; });
  if (!others.ok()) return others.status();
  json report = {{"backup_id", backup_record->id},
                 {"backup_name", backup_record->name},
                 {"snapshots_deleted", json::array()},
                 {"snapshots_kept", json::array()}};
  if (absl::Status s = impl_->DeleteSnapshotsOf(*backup_record, *others, report); !s.ok()) {
    return s;  // the record stays: the snapshots can still be found through it
  }
  if (absl::Status s = impl_->catalog.DeleteBackup(backup_record->id); !s.ok()) return s;
  spdlog::info("backup '{}' ({}) deleted", backup_record->name, backup_record->id);
  return report;
}

absl::StatusOr<json> JobManager::Prune(const PruneSpec& spec) {
  absl::StatusOr<RetentionPolicy> policy = impl_->catalog.GetPolicy(spec.policy);
  if (!policy.ok()) return policy.status();
  BackupListOptions options;
  options.with_items = true;
  options.limit = 100000;
  absl::StatusOr<std::vector<BackupRecord>> all = impl_->catalog.ListBackups(options);
  if (!all.ok()) return all.status();
  std::vector<BackupRef> refs;
  std::set<std::string> elsewhere;
  std::map<std::string, const BackupRecord*> by_id;
  for (const BackupRecord& b : *all) {
    std::set<std::string> keys;
    for (const BackupItem& item : b.items) {
      keys.insert(util::Cat(item.storage_volume, "/", item.snapshot_id));
    }
    if (b.policy != spec.policy || b.state == BackupState::kRunning) {
      elsewhere.insert(keys.begin(), keys.end());  // never deleted by this policy's prune
      continue;
    }
    by_id[b.id] = &b;
    refs.push_back(
        BackupRef{b.id, b.name, b.started_at, b.state == BackupState::kSucceeded, std::move(keys)});
  }
  PrunePlan plan = PlanPrune(*policy, refs, impl_->registry.Now(), elsewhere);
  json report = {{"policy", spec.policy},
                 {"dry_run", spec.dry_run},
                 {"keep_all", plan.keep_all},
                 {"kept", json::array()},
                 {"expired", json::array()},
                 {"snapshots_to_delete", plan.snapshots_to_delete},
                 {"snapshots_deleted", json::array()},
                 {"snapshots_kept", json::array()},
                 {"deleted", json::array()},
                 {"errors", json::array()}};
  for (const KeptBackup& k : plan.kept) {
    report["kept"].push_back({{"id", k.id}, {"name", k.name}, {"reasons", k.reasons}});
  }
  for (const ExpiredBackup& e : plan.expired) {
    report["expired"].push_back({{"id", e.id}, {"name", e.name}, {"reason", e.reason}});
  }
  if (spec.dry_run) return report;
  // Everything but the planned deletions is kept.
  const std::set<std::string> deletable(plan.snapshots_to_delete.begin(),
                                        plan.snapshots_to_delete.end());
  std::set<std::string> keep;
  for (const BackupRecord& b : *all) {
    for (const BackupItem& item : b.items) {
      const std::string key = util::Cat(item.storage_volume, "/", item.snapshot_id);
      if (!deletable.contains(key)) keep.insert(key);
    }
  }
  for (const ExpiredBackup& e : plan.expired) {
    const BackupRecord& b = *by_id.at(e.id);
    absl::Status s = impl_->DeleteSnapshotsOf(b, keep, report);
    if (s.ok()) s = impl_->catalog.DeleteBackup(b.id);
    if (s.ok()) {
      report["deleted"].push_back({{"id", b.id}, {"name", b.name}});
      spdlog::info("prune '{}': backup '{}' ({}) deleted: {}", spec.policy, b.name, b.id, e.reason);
    } else {
      // The record stays, so the next prune finds its snapshots again.
      report["errors"].push_back(util::Cat("backup '", b.name, "': ", Msg(s)));
    }
  }
  return report;
}

uint64_t JobManager::JobVersion(const std::string& id) {
  std::lock_guard lock(impl_->watch_mu);
  auto it = impl_->versions.find(id);
  return it == impl_->versions.end() ? 0 : it->second;
}

uint64_t JobManager::WaitForJobChange(const std::string& id, uint64_t seen,
                                      std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->watch_mu);
  const uint64_t wakeups = impl_->wakeups;
  auto version = [&] {
    auto it = impl_->versions.find(id);
    return it == impl_->versions.end() ? uint64_t{0} : it->second;
  };
  impl_->watch_cv.wait_for(lock, timeout,
                           [&] { return version() != seen || impl_->wakeups != wakeups; });
  return version();
}

void JobManager::WakeWaiters() {
  {
    std::lock_guard lock(impl_->watch_mu);
    ++impl_->wakeups;
  }
  impl_->watch_cv.notify_all();
}

bool JobManager::WaitForIdle(std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mu);
  return impl_->idle_cv.wait_for(lock, timeout, [&] { return impl_->running == 0; });
}

void JobManager::Stop() {
  WakeWaiters();
  std::vector<Impl::Worker> workers;
  {
    std::lock_guard lock(impl_->mu);
    workers.swap(impl_->workers);
  }
  for (Impl::Worker& w : workers) {
    if (w.thread.joinable()) w.thread.join();
  }
}

}  // namespace strata::server
