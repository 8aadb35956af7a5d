#include "strata/agent/backup_engine.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "pugixml.hpp"
#include "spdlog/spdlog.h"
#include "strata/core/query.h"
#include "strata/storage/file_copy.h"
#include "strata/util/strings.h"
#include "vm_overlay.h"

namespace strata::agent {
namespace {

using hypervisor::DiskDevice;
using hypervisor::DiskSourceKind;
using hypervisor::Domain;
using hypervisor::DomainState;
using hypervisor::Hypervisor;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Msg(const absl::Status& s) { return std::string(util::ToStd(s.message())); }

constexpr char kJournalDir[] = "backup-journal";

// The guest agent channel libvirt needs for fs-freeze/thaw.
bool HasGuestAgentChannel(const std::string& xml) {
  pugi::xml_document doc;
  if (!doc.load_string(xml.c_str())) return false;
  for (pugi::xml_node channel : doc.child("domain").child("devices").children("channel")) {
    if (std::string_view(channel.child("target").attribute("name").value()) ==
        "org.qemu.guest_agent.0") {
      return true;
    }
  }
  return false;
}

// The backup journal: what a running backup has done that must be undone if the agent dies
// before the backup ends (paused or frozen VMs, snapshots taken). Each entry is written BEFORE
// the action, so a crash right after it is covered; undoing tolerates actions that never
// happened. Removed when the backup ends, whatever the outcome (the engine cleans up itself).
class Journal {
 public:
  Journal(const std::string& state_dir, const std::string& backup_id) {
    if (state_dir.empty()) return;
    path_ = (std::filesystem::path(state_dir) / kJournalDir / (backup_id + ".json")).string();
  }
  ~Journal() { Finish(); }

  absl::Status Begin(const std::string& name) {
    if (path_.empty()) return absl::OkStatus();
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
    doc_ = {{"backup", name}, {"started_at_ms", NowMs()}};
    return Save();
  }
  void Add(const char* list, nlohmann::json entry) {
    if (path_.empty()) return;
    doc_[list].push_back(std::move(entry));
    if (absl::Status s = Save(); !s.ok()) spdlog::error("{}", Msg(s));
  }
  void Finish() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove(path_, ec);
    path_.clear();
  }

 private:
  absl::Status Save() {
    const std::string tmp = path_ + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << doc_.dump();
      out.flush();
      if (!out) {
        return absl::FailedPreconditionError(
            util::Cat("cannot write the backup journal '", tmp, "'"));
      }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path_, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          util::Cat("cannot write the backup journal '", path_, "': ", ec.message()));
    }
    return absl::OkStatus();
  }

  std::string path_;
  nlohmann::json doc_;
};

struct DiskPlan {
  std::string target;
  std::string source_path;
  std::string format;
  std::vector<std::string> chain;  // backing files, top to bottom
  HostServices::FileVolume volume;
  std::vector<HostServices::FileVolume> chain_volumes;  // where each backing file lives
};

struct VmWork {
  Domain domain;
  backup::ManifestVm vm;
  std::vector<DiskPlan> disks;
  bool failed = false;
  bool paused_by_us = false;
  bool frozen_by_us = false;
  // Real QEMU: the external disk-only snapshot of this VM, while it writes to its overlays.
  std::optional<overlay::VmOverlayPlan> overlay;
  bool on_overlay = false;
  bool released = false;  // released (resume, thaw) already, perhaps before the others
  // Taken through the per-VM pipeline (overlay, add its files to its volumes' snapshots, commit)
  // instead of with the others at once: see PipelineWanted.
  bool pipelined = false;

  // The first failure is the VM's reason; later steps stop at `failed`.
  void Fail(std::string error) {
    if (!failed) {
      failed = true;
      vm.ok = false;
      vm.error = std::move(error);
    }
  }
  // A failure to release (resume, thaw) is always added, after any earlier reason.
  void AddFailure(const std::string& error) {
    failed = true;
    vm.ok = false;
    vm.error = vm.error.empty() ? error : util::Cat(vm.error, "; ", error);
  }
};

struct VolumeWork {
  HostServices::FileVolume volume;
  std::set<std::string> files;
  std::set<size_t> vms;  // indexes into the work list
  std::optional<plugin::SnapshotInfo> snapshot;
  // Cluster backups: taken by another host (`taken_by`), or here for other hosts too. Either
  // way the coordinator, not this host, decides whether it is rolled back.
  std::string taken_by;
  std::string taken_root;
  std::string taken_plugin;
  bool shared = false;
  bool journaled = false;  // the per-VM pipeline: its snapshot is in the journal already
};

// Whether `w` goes through the per-VM pipeline: a backup this host runs alone (a cluster
// coordinator plans one snapshot per volume for every host at once), crash consistency (pause
// and freeze hold every VM from the start: they would wait for the others' turns), a VM that
// goes on overlays, and every volume it uses can add files to a snapshot later (dir; not btrfs,
// whose snapshot is one instant of the whole volume).
bool PipelineWanted(const BackupParams& params, const VmWork& w) {
  if (params.coordination != nullptr || params.consistency != ConsistencyMode::kCrash) {
    return false;
  }
  if (w.failed || !overlay::Wanted(params.vm_snapshot, w.domain)) return false;
  for (const DiskPlan& d : w.disks) {
    if (d.volume.plugin == nullptr || !d.volume.plugin->CanAppendToSnapshot()) return false;
    for (const HostServices::FileVolume& below : d.chain_volumes) {
      if (below.plugin == nullptr || !below.plugin->CanAppendToSnapshot()) return false;
    }
  }
  return true;
}

}  // namespace

std::string_view ConsistencyName(ConsistencyMode mode) {
  switch (mode) {
    case ConsistencyMode::kCrash:
      return "crash";
    case ConsistencyMode::kPause:
      return "pause";
    case ConsistencyMode::kQuiesce:
      return "quiesce";
  }
  return "crash";
}

absl::StatusOr<ConsistencyMode> ParseConsistency(std::string_view text) {
  if (text == "crash") return ConsistencyMode::kCrash;
  if (text == "pause") return ConsistencyMode::kPause;
  if (text == "quiesce") return ConsistencyMode::kQuiesce;
  return absl::InvalidArgumentError(util::Cat("unknown consistency mode '", std::string(text),
                                              "' (expected crash, pause or quiesce)"));
}

BackupEngine::BackupEngine(HostServices& host, FaultInjector faults)
    : host_(host), faults_(std::move(faults)) {}

absl::StatusOr<BackupOutcome> BackupEngine::Run(const BackupParams& params,
                                                const ProgressFn& progress) {
  if (absl::Status s = backup::ValidateName("backup name", params.name); !s.ok()) return s;
  if (params.backup_id.empty()) return absl::InvalidArgumentError("backup id is empty");
  const std::string snapshot_name =
      params.snapshot_name.empty() ? params.name : params.snapshot_name;
  if (absl::Status s = backup::ValidateName("snapshot name", snapshot_name); !s.ok()) return s;
  if (params.fallback == ConsistencyMode::kQuiesce) {
    return absl::InvalidArgumentError("quiesce cannot be a fallback (fallback: pause or crash)");
  }
  if (params.vm_snapshot != "auto" && params.vm_snapshot != "internal" &&
      params.vm_snapshot != "external" && params.vm_snapshot != "none") {
    return absl::InvalidArgumentError(util::Cat("unknown VM snapshot mode '", params.vm_snapshot,
                                                "' (expected auto, internal, external or none)"));
  }
  std::lock_guard run_lock(run_mutex_);
  const std::string host_id = host_.config().host_id;
  auto fault = [&](const std::string& step) { return faults_ ? faults_(step) : absl::OkStatus(); };
  auto report = [&](const VmWork* work, std::string step, std::string message, int percent) {
    if (!progress) return;
    BackupStep s;
    if (work) {
      s.vm_uuid = work->domain.uuid;
      s.vm_name = work->domain.name;
    }
    s.step = std::move(step);
    s.message = std::move(message);
    s.percent = percent;
    progress(s);
  };

  backup::BackupManifest manifest;
  manifest.backup_id = params.backup_id;
  manifest.name = params.name;
  manifest.requester = params.requester;
  manifest.policy = params.policy;
  manifest.consistency_requested = std::string(ConsistencyName(params.consistency));
  if (params.fallback) manifest.fallback = std::string(ConsistencyName(*params.fallback));
  manifest.started_at_ms = NowMs();

  // ---- prepare: the VMs, their saved configuration, their disks and the volumes holding them
  std::vector<Domain> domains;
  if (absl::Status s = host_.WithHypervisor([&](Hypervisor& h) -> absl::Status {
        hypervisor::ListOptions options;
        options.only = params.vms;
        absl::StatusOr<std::vector<Domain>> listed = h.ListDomains(options);
        if (!listed.ok()) return listed.status();
        domains = *std::move(listed);
        return absl::OkStatus();
      });
      !s.ok()) {
    return s;
  }
  if (domains.empty()) {
    return absl::InvalidArgumentError(util::Cat("no VMs to back up on host '", host_id, "'"));
  }
  std::vector<VmWork> work(domains.size());
  for (size_t i = 0; i < domains.size(); ++i) {
    VmWork& w = work[i];
    w.domain = std::move(domains[i]);
    w.vm.uuid = w.domain.uuid;
    w.vm.name = w.domain.name;
    w.vm.host = host_id;
    w.vm.state_before = std::string(hypervisor::DomainStateName(w.domain.state));
    w.vm.ok = true;
    report(&w, "prepare", "reading configuration and disks", 2);
    if (!w.domain.parse_error.empty()) {
      w.Fail(util::Cat("VM '", w.vm.name, "': ", w.domain.parse_error));
      continue;
    }
    absl::Status s = host_.WithHypervisor([&](Hypervisor& h) -> absl::Status {
      absl::StatusOr<std::string> xml = h.GetSavedXml(w.domain.uuid);
      if (!xml.ok()) return xml.status();
      w.vm.saved_xml = *std::move(xml);
      return absl::OkStatus();
    });
    if (!s.ok()) {
      w.Fail(util::Cat("cannot read the saved configuration of VM '", w.vm.name, "': ", Msg(s)));
      continue;
    }
    for (const hypervisor::Disk& disk : w.domain.disks) {
      if (disk.device == DiskDevice::kCdrom || disk.device == DiskDevice::kFloppy) continue;
      const bool file_backed = (disk.source.kind == DiskSourceKind::kFile ||
                                disk.source.kind == DiskSourceKind::kVolume) &&
                               !disk.source.path.empty() && disk.device != DiskDevice::kLun;
      if (!file_backed) {
        std::string what(hypervisor::DiskSourceKindName(disk.source.kind));
        if (disk.source.kind == DiskSourceKind::kNetwork) {
          what = util::Cat(disk.source.protocol, " '", disk.source.name, "'");
        } else if (!disk.source.path.empty()) {
          what = util::Cat(what, " '", disk.source.path, "'");
        }
        w.Fail(util::Cat("disk '", disk.target, "' of VM '", w.vm.name, "' is a ", what, " disk (",
                         hypervisor::DiskDeviceName(disk.device),
                         "): no storage plug-in on this host can snapshot it"));
        break;
      }
      DiskPlan plan;
      plan.target = disk.target;
      plan.source_path = disk.source.path;
      plan.format = disk.source.format;
      for (const hypervisor::DiskSource& below : disk.backing_chain) {
        if (!below.path.empty() && below.kind == DiskSourceKind::kFile) {
          plan.chain.push_back(below.path);
        }
      }
      w.disks.push_back(std::move(plan));
    }
    if (w.failed) continue;
    if (w.disks.empty()) {
      w.Fail(util::Cat("VM '", w.vm.name, "' has no disk to back up"));
      continue;
    }
  }
  // Which volume holds each file: one resolver pass for every VM's disks and backing files.
  std::vector<std::string> paths;
  for (const VmWork& w : work) {
    if (w.failed) continue;
    for (const DiskPlan& d : w.disks) {
      paths.push_back(d.source_path);
      paths.insert(paths.end(), d.chain.begin(), d.chain.end());
    }
  }
  std::vector<std::optional<HostServices::FileVolume>> claims = host_.ClaimFiles(paths);
  size_t k = 0;
  for (VmWork& w : work) {
    if (w.failed) continue;
    for (DiskPlan& d : w.disks) {
      const std::optional<HostServices::FileVolume>& top = claims[k++];
      if (!top) {
        w.Fail(util::Cat("disk '", d.target, "' of VM '", w.vm.name, "': '", d.source_path,
                         "' is on no configured storage volume (configure its directory under "
                         "[[storage.dir]] or [[storage.btrfs]] in the agent's configuration)"));
      } else {
        d.volume = *top;
      }
      for (const std::string& base : d.chain) {
        const std::optional<HostServices::FileVolume>& below = claims[k++];
        if (below) {
          d.chain_volumes.push_back(*below);
        } else {
          w.Fail(util::Cat("disk '", d.target, "' of VM '", w.vm.name, "': backing file '", base,
                           "' is on no configured storage volume, so the backup could not be "
                           "restored without it"));
        }
      }
    }
  }

  // ---- from here on, what is done is journaled (declared before the release guard, so the
  // journal goes only after the VMs were released)
  Journal journal(host_.config().state_dir, params.backup_id);
  if (absl::Status s = journal.Begin(params.name); !s.ok()) return s;

  // ---- consistency: every VM reaches it before any snapshot is taken
  const auto apply_mode = [&](VmWork& w, ConsistencyMode mode) -> absl::Status {
    if (mode == ConsistencyMode::kCrash) return absl::OkStatus();
    if (mode == ConsistencyMode::kPause) {
      if (w.domain.state == DomainState::kPaused) return absl::OkStatus();  // already
      if (absl::Status s = fault("pause:" + w.vm.name); !s.ok()) return s;
      report(&w, "pause", "suspending", 10);
      journal.Add("paused", w.domain.uuid);
      absl::Status s =
          host_.WithHypervisor([&](Hypervisor& h) { return h.Suspend(w.domain.uuid); });
      if (s.ok()) w.paused_by_us = true;
      return s;
    }
    if (!HasGuestAgentChannel(w.vm.saved_xml) && !HasGuestAgentChannel(w.domain.xml)) {
      return absl::FailedPreconditionError(util::Cat(
          "VM '", w.vm.name,
          "' has no guest agent channel (org.qemu.guest_agent.0): cannot quiesce its file "
          "systems"));
    }
    if (w.domain.state != DomainState::kRunning) {
      return absl::FailedPreconditionError(
          util::Cat("VM '", w.vm.name, "' is ", w.vm.state_before, ": cannot quiesce it"));
    }
    if (absl::Status s = fault("freeze:" + w.vm.name); !s.ok()) return s;
    report(&w, "freeze", "freezing guest file systems", 10);
    journal.Add("frozen", w.domain.uuid);
    absl::Status s =
        host_.WithHypervisor([&](Hypervisor& h) { return h.FreezeFilesystems(w.domain.uuid); });
    if (s.ok()) w.frozen_by_us = true;
    return s;
  };
  // Overlays whose commit failed twice: handed to a journal of their own for the next start.
  std::vector<overlay::VmOverlayPlan> leftover_overlays;
  const auto commit_vm = [&](VmWork& w) {
    if (!w.on_overlay) return;
    report(&w, "commit", "merging the overlays back (active commit, pivot)", 72);
    const auto undo = [&](const std::string& step) {
      absl::Status s = fault(step + w.vm.name);
      if (!s.ok()) return s;
      return host_.WithHypervisor(
          [&](Hypervisor& h) { return overlay::Undo(h, *w.overlay, params.commit_timeout); });
    };
    absl::Status s = undo("commit:");
    if (!s.ok()) {
      spdlog::warn("backup {}: bringing VM '{}' back from its overlays failed ({}); retrying",
                   params.name, w.vm.name, Msg(s));
      s = undo("commit-retry:");
    }
    w.on_overlay = false;
    if (s.ok()) {
      report(&w, "committed", "back on its original disks", 74);
      return;
    }
    spdlog::error("backup {}: VM '{}' is still on its overlays: {}", params.name, w.vm.name,
                  Msg(s));
    w.AddFailure(util::Cat("VM '", w.vm.name,
                           "' could not be brought back from its overlays onto its original "
                           "disks (the agent retries at its next start): ",
                           Msg(s)));
    leftover_overlays.push_back(*w.overlay);
  };
  const auto release_vm = [&](VmWork& w) {
    if (w.released) return;  // once: a failed resume is not retried
    w.released = true;
    if (w.frozen_by_us) {
      report(&w, "thaw", "thawing guest file systems", 75);
      absl::Status s =
          host_.WithHypervisor([&](Hypervisor& h) { return h.ThawFilesystems(w.domain.uuid); });
      if (s.ok()) {
        w.frozen_by_us = false;
      } else {
        spdlog::error("backup {}: thaw of VM '{}' failed: {}", params.name, w.vm.name, Msg(s));
        w.AddFailure(
            util::Cat("file systems of VM '", w.vm.name, "' could not be thawed: ", Msg(s)));
      }
    }
    if (w.paused_by_us) {
      report(&w, "resume", "resuming", 75);
      absl::Status s = fault("resume:" + w.vm.name);
      if (s.ok()) {
        s = host_.WithHypervisor([&](Hypervisor& h) { return h.Resume(w.domain.uuid); });
      }
      if (s.ok()) {
        w.paused_by_us = false;
      } else {
        spdlog::error("backup {}: resume of VM '{}' failed: {}", params.name, w.vm.name, Msg(s));
        w.AddFailure(util::Cat("VM '", w.vm.name, "' could not be resumed: ", Msg(s)));
      }
    }
  };
  bool released = false;
  const auto release = [&]() {
    if (released) return;
    released = true;
    for (auto it = work.rbegin(); it != work.rend(); ++it) {
      commit_vm(*it);
      release_vm(*it);
    }
    if (!leftover_overlays.empty()) {
      const std::string& state_dir = host_.config().state_dir;
      absl::Status s = state_dir.empty()
                           ? absl::FailedPreconditionError("no state_dir is configured")
                           : overlay::WriteLeftoverJournal(
                                 (std::filesystem::path(state_dir) / kJournalDir).string(),
                                 params.backup_id + "-overlays", params.name, leftover_overlays);
      if (!s.ok()) {
        spdlog::error("backup {}: cannot record the overlays left behind: {}", params.name, Msg(s));
      }
    }
  };
  struct ReleaseGuard {
    const std::function<void()> fn;
    ~ReleaseGuard() { fn(); }
  } guard{release};

  for (VmWork& w : work) {
    if (w.failed) continue;
    absl::Status s = apply_mode(w, params.consistency);
    ConsistencyMode achieved = params.consistency;
    if (!s.ok() && params.consistency == ConsistencyMode::kQuiesce && params.fallback) {
      spdlog::warn("backup {}: {}; falling back to {}", params.name, Msg(s),
                   ConsistencyName(*params.fallback));
      report(&w, "fallback",
             util::Cat(Msg(s), "; falling back to ", ConsistencyName(*params.fallback)), 10);
      achieved = *params.fallback;
      s = apply_mode(w, achieved);
    }
    if (!s.ok()) {
      w.Fail(util::Cat("cannot bring VM '", w.vm.name, "' to ", ConsistencyName(params.consistency),
                       " consistency: ", Msg(s)));
      continue;
    }
    w.vm.consistency_achieved = std::string(ConsistencyName(achieved));
  }

  // ---- VM-level snapshots
  const auto take_overlay = [&](VmWork& w) {
    std::vector<std::pair<std::string, std::string>> disks;
    for (const DiskPlan& d : w.disks) disks.emplace_back(d.target, d.source_path);
    w.overlay = overlay::MakePlan(w.domain, disks, params.name);
    report(&w, "overlay", util::Cat("external disk-only snapshot '", params.name, "'"), 25);
    absl::Status s = fault("overlay:" + w.vm.name);
    journal.Add("overlays", w.overlay->ToJson());
    if (s.ok()) {
      s = host_.WithHypervisor([&](Hypervisor& h) { return overlay::Create(h, *w.overlay); });
      if (s.ok()) {
        w.on_overlay = true;
        w.vm.vm_snapshot_kind = "external";
        s = fault("overlay-done:" + w.vm.name);
      }
    }
    if (!s.ok()) w.Fail(util::Cat("VM snapshot of '", w.vm.name, "' failed: ", Msg(s)));
  };
  for (VmWork& w : work) w.pipelined = PipelineWanted(params, w);
  for (VmWork& w : work) {
    if (w.failed || w.pipelined) continue;  // later, one at a time
    if (overlay::Wanted(params.vm_snapshot, w.domain)) {
      take_overlay(w);
      continue;
    }
    const bool internal =
        params.vm_snapshot == "internal" ||
        (params.vm_snapshot == "auto" && util::ToLower(w.domain.hypervisor_type) == "test");
    if (!internal) continue;
    report(&w, "vm-snapshot", util::Cat("VM snapshot '", params.name, "'"), 25);
    absl::Status s = fault("vm-snapshot:" + w.vm.name);
    journal.Add("vm_snapshots", {{"vm", w.domain.uuid}, {"name", params.name}});
    if (s.ok()) {
      s = host_.WithHypervisor([&](Hypervisor& h) -> absl::Status {
        hypervisor::VmSnapshotRequest request;
        request.name = params.name;
        request.description = util::Cat("strata backup ", params.backup_id);
        absl::StatusOr<hypervisor::VmSnapshot> made = h.CreateVmSnapshot(w.domain.uuid, request);
        if (!made.ok()) return made.status();
        w.vm.vm_snapshot = made->name;
        w.vm.vm_snapshot_kind = made->external ? "external" : "internal";
        return absl::OkStatus();
      });
    }
    if (!s.ok()) w.Fail(util::Cat("VM snapshot of '", w.vm.name, "' failed: ", Msg(s)));
  }

  // Base images frozen under overlays (or the VM failed): nothing is gained by keeping the VM
  // paused or frozen any longer.
  for (VmWork& w : work) {
    if (w.on_overlay || w.failed) release_vm(w);
  }

  // ---- storage snapshots: one per volume, serving every disk on it
  std::map<std::string, VolumeWork> volumes;
  for (size_t i = 0; i < work.size(); ++i) {
    if (work[i].failed || work[i].pipelined) continue;
    for (const DiskPlan& d : work[i].disks) {
      VolumeWork& v = volumes[d.volume.volume.volume_id];
      v.volume = d.volume;
      v.files.insert(d.source_path);
      v.vms.insert(i);
    }
    // Backing files: into the snapshot of whichever volume holds each.
    for (const DiskPlan& d : work[i].disks) {
      for (size_t k = 0; k < d.chain.size(); ++k) {
        VolumeWork& v = volumes[d.chain_volumes[k].volume.volume_id];
        if (v.volume.plugin == nullptr) v.volume = d.chain_volumes[k];
        v.files.insert(d.chain[k]);
        v.vms.insert(i);
      }
    }
  }
  // Cluster backups: the coordinator says which volumes this host snapshots (for every host
  // that needs them); the others are taken elsewhere while this host holds its VMs.
  std::set<std::string> elsewhere;
  bool coordinated = params.coordination != nullptr;
  const auto fail_volume_vms = [&](const VolumeWork& v, const std::string& why) {
    for (size_t i : v.vms) work[i].Fail(why);
  };
  if (coordinated) {
    std::vector<VolumeNeed> needs;
    for (const auto& [volume_id, v] : volumes) {
      needs.push_back({volume_id, v.volume.volume.volume_name, {v.files.begin(), v.files.end()}});
    }
    report(nullptr, "hold", "VMs held; waiting for the cluster's snapshot plan", 30);
    absl::StatusOr<std::vector<VolumeNeed>> plan = params.coordination->Plan(needs);
    if (!plan.ok()) {
      coordinated = false;  // no exchange either: the coordinator is gone or gave up
      for (auto& [volume_id, v] : volumes) {
        fail_volume_vms(v, util::Cat("cluster snapshot planning failed: ", Msg(plan.status())));
        elsewhere.insert(volume_id);
      }
    } else {
      for (auto& [volume_id, v] : volumes) {
        auto mine = std::find_if(plan->begin(), plan->end(),
                                 [&](const VolumeNeed& n) { return n.volume_id == volume_id; });
        if (mine == plan->end()) {
          elsewhere.insert(volume_id);
          continue;
        }
        const size_t own = v.files.size();
        v.files.insert(mine->files.begin(), mine->files.end());
        v.shared = v.files.size() > own;
      }
    }
  }
  // Each VM is released (its overlays committed, resumed, thawed) as soon as the snapshots of
  // all the volumes it uses exist, not after every volume's.
  std::map<size_t, size_t> volumes_pending;
  for (const auto& [volume_id, v] : volumes) {
    for (size_t i : v.vms) ++volumes_pending[i];
  }
  const auto volume_done = [&](const VolumeWork& v) {
    for (size_t i : v.vms) {
      if (--volumes_pending[i] != 0) continue;
      commit_vm(work[i]);
      release_vm(work[i]);
    }
  };
  int done_volumes = 0;
  for (auto& [volume_id, v] : volumes) {
    if (elsewhere.contains(volume_id)) continue;
    const int percent = 30 + 40 * done_volumes++ / std::max<int>(1, volumes.size());
    report(nullptr, "storage-snapshot",
           util::Cat("snapshot '", snapshot_name, "' of volume '", v.volume.volume.volume_name,
                     "' (", v.files.size(), " files)"),
           percent);
    absl::Status s = fault("storage-snapshot:" + v.volume.volume.volume_name);
    journal.Add(
        "storage_snapshots",
        {{"volume", volume_id}, {"snapshot", snapshot_name}, {"root", v.volume.volume.root}});
    v.journaled = true;
    if (s.ok()) {
      plugin::SnapshotRequest request;
      request.volume_id = volume_id;
      request.name = snapshot_name;
      request.files.assign(v.files.begin(), v.files.end());
      absl::StatusOr<plugin::SnapshotInfo> made = v.volume.plugin->CreateSnapshot(request);
      if (made.ok()) {
        v.snapshot = *std::move(made);
        s = fault("storage-snapshot-done:" + v.volume.volume.volume_name);
      } else {
        s = made.status();
      }
    }
    if (!s.ok()) {
      for (size_t i : v.vms) {
        work[i].Fail(util::Cat("storage snapshot of volume '", v.volume.volume.volume_name,
                               "' failed: ", Msg(s)));
      }
    }
    volume_done(v);
  }

  // ---- the per-VM pipeline (see PipelineWanted): each VM in turn goes on its overlays, its
  // files are added to the snapshot of each volume it uses (made by the first VM, or by the
  // batched step above), and it is committed back. It is held for its own steps only, as a
  // script doing one VM after another would hold it, and each volume still gets one snapshot.
  const auto snapshot_files = [&](VmWork& w, const std::string& volume_id,
                                  const std::vector<std::string>& files) -> absl::Status {
    VolumeWork& v = volumes.at(volume_id);
    std::vector<std::string> fresh;  // not in the snapshot yet (a shared base goes in once)
    for (const std::string& f : files) {
      if (!v.files.contains(f)) fresh.push_back(f);
    }
    if (fresh.empty()) return absl::OkStatus();
    const std::string& volume_name = v.volume.volume.volume_name;
    const bool append = v.snapshot.has_value();
    report(&w, "storage-snapshot",
           util::Cat(append ? "adding " : "taking ", fresh.size(), " files ", append ? "to" : "as",
                     " snapshot '", snapshot_name, "' of volume '", volume_name, "'"),
           40);
    absl::Status s =
        fault(util::Cat(append ? "storage-snapshot-append:" : "storage-snapshot:", volume_name));
    if (!v.journaled) {
      journal.Add(
          "storage_snapshots",
          {{"volume", volume_id}, {"snapshot", snapshot_name}, {"root", v.volume.volume.root}});
      v.journaled = true;
    }
    if (!s.ok()) return s;
    plugin::SnapshotRequest request;
    request.volume_id = volume_id;
    request.name = snapshot_name;
    request.files = fresh;
    request.append = append;
    absl::StatusOr<plugin::SnapshotInfo> made = v.volume.plugin->CreateSnapshot(request);
    if (!made.ok()) return made.status();  // the plug-in removed what this call added
    v.files.insert(fresh.begin(), fresh.end());
    if (!append) {
      v.snapshot = *std::move(made);
      return fault("storage-snapshot-done:" + volume_name);
    }
    if (made->method != v.snapshot->method) v.snapshot->method = "mixed";
    v.snapshot->files.insert(v.snapshot->files.end(), made->files.begin(), made->files.end());
    return absl::OkStatus();
  };
  const auto pipeline_vm = [&](size_t i) {
    VmWork& w = work[i];
    take_overlay(w);
    // This VM's files by volume, in the order of first use (its disks, then backing files).
    std::vector<std::pair<std::string, std::vector<std::string>>> by_volume;
    const auto add = [&](const HostServices::FileVolume& where, const std::string& file) {
      VolumeWork& v = volumes[where.volume.volume_id];
      if (v.volume.plugin == nullptr) v.volume = where;
      v.vms.insert(i);
      auto it = std::find_if(by_volume.begin(), by_volume.end(), [&](const auto& entry) {
        return entry.first == where.volume.volume_id;
      });
      if (it == by_volume.end()) {
        it = by_volume.insert(by_volume.end(), {where.volume.volume_id, {}});
      }
      if (std::find(it->second.begin(), it->second.end(), file) == it->second.end()) {
        it->second.push_back(file);
      }
    };
    if (!w.failed) {
      for (const DiskPlan& d : w.disks) add(d.volume, d.source_path);
      for (const DiskPlan& d : w.disks) {
        for (size_t k = 0; k < d.chain.size(); ++k) add(d.chain_volumes[k], d.chain[k]);
      }
    }
    for (const auto& [volume_id, files] : by_volume) {
      if (w.failed) break;
      if (absl::Status s = snapshot_files(w, volume_id, files); !s.ok()) {
        w.Fail(util::Cat("storage snapshot of volume '",
                         volumes.at(volume_id).volume.volume.volume_name, "' failed: ", Msg(s)));
      }
    }
    commit_vm(w);
    release_vm(w);
  };
  for (size_t i = 0; i < work.size(); ++i) {
    if (work[i].pipelined && !work[i].failed) pipeline_vm(i);
  }

  if (coordinated) {
    std::vector<TakenSnapshot> taken;
    for (const auto& [volume_id, v] : volumes) {
      if (!v.snapshot) continue;
      taken.push_back({volume_id, v.volume.volume.volume_name, v.volume.volume.root,
                       v.volume.plugin->Name(), host_id, *v.snapshot});
    }
    report(nullptr, "hold", "waiting for the snapshots other hosts take", 70);
    absl::StatusOr<std::vector<TakenSnapshot>> others = params.coordination->Exchange(taken);
    for (const std::string& volume_id : elsewhere) {
      VolumeWork& v = volumes.at(volume_id);
      const TakenSnapshot* found = nullptr;
      if (others.ok()) {
        for (const TakenSnapshot& t : *others) {
          if (t.volume_id == volume_id) found = &t;
        }
      }
      if (found == nullptr) {
        fail_volume_vms(v, util::Cat("the cluster's snapshot of shared volume '",
                                     v.volume.volume.volume_name, "' was not taken: ",
                                     others.ok() ? "no host took it" : Msg(others.status())));
        continue;
      }
      v.snapshot = found->info;
      v.taken_by = found->host;
      v.taken_root = found->volume_root;
      v.taken_plugin = found->plugin;
    }
  }

  // ---- release the VMs as soon as the snapshots exist
  release();

  // ---- record each disk's copy; verify
  for (VmWork& w : work) {
    if (w.failed) continue;
    for (const DiskPlan& d : w.disks) {
      const VolumeWork& v = volumes.at(d.volume.volume.volume_id);
      backup::ManifestDisk disk;
      disk.target = d.target;
      disk.source_path = d.source_path;
      disk.format = d.format;
      disk.storage_volume = v.volume.volume.volume_id;
      disk.volume_name = v.volume.volume.volume_name;
      disk.snapshot_id = v.snapshot->snapshot_id;
      for (const plugin::SnapshotFile& f : v.snapshot->files) {
        if (f.source_path == d.source_path) {
          disk.path_in_snapshot = f.path_in_snapshot;
          disk.size_bytes = f.size_bytes;
        }
      }
      if (disk.path_in_snapshot.empty()) {
        w.Fail(util::Cat("storage snapshot of volume '", disk.volume_name, "' does not hold '",
                         d.source_path, "'"));
        break;
      }
      disk.snapshot_path =
          (std::filesystem::path(v.snapshot->path) / disk.path_in_snapshot).string();
      if (params.verify) {
        report(&w, "verify", util::Cat("checksum of disk '", d.target, "'"), 80);
        absl::Status s = fault("verify:" + w.vm.name);
        absl::StatusOr<std::string> sum =
            s.ok() ? storage::HashFile(disk.snapshot_path) : absl::StatusOr<std::string>(s);
        if (!sum.ok()) {
          w.Fail(util::Cat("checksum of disk '", d.target, "' of VM '", w.vm.name,
                           "' failed: ", Msg(sum.status())));
          break;
        }
        disk.checksum = *sum;
      }
      w.vm.disks.push_back(std::move(disk));
    }
  }

  // ---- roll back what no succeeded VM uses
  const auto rollback_vm_snapshot = [&](VmWork& w) {
    if (w.vm.vm_snapshot.empty()) return;
    absl::Status s = host_.WithHypervisor(
        [&](Hypervisor& h) { return h.DeleteVmSnapshot(w.domain.uuid, w.vm.vm_snapshot, false); });
    if (!s.ok()) {
      spdlog::warn("backup {}: removing VM snapshot '{}' of '{}' failed: {}", params.name,
                   w.vm.vm_snapshot, w.vm.name, Msg(s));
    }
    w.vm.vm_snapshot.clear();
    w.vm.vm_snapshot_kind.clear();
  };
  const auto rollback_volume = [&](VolumeWork& v) {
    if (!v.snapshot || v.shared || !v.taken_by.empty()) return;  // the coordinator's to decide
    absl::Status s =
        v.volume.plugin->DeleteSnapshot(v.volume.volume.volume_id, v.snapshot->snapshot_id);
    if (!s.ok()) {
      spdlog::warn("backup {}: removing snapshot '{}' of volume '{}' failed: {}", params.name,
                   v.snapshot->snapshot_id, v.volume.volume.volume_name, Msg(s));
    }
    v.snapshot.reset();
  };
  for (VmWork& w : work) {
    if (w.failed) rollback_vm_snapshot(w);
  }
  for (auto& [id, v] : volumes) {
    const bool used =
        std::any_of(v.vms.begin(), v.vms.end(), [&](size_t i) { return !work[i].failed; });
    if (!used) rollback_volume(v);
  }

  // ---- the manifest, beside every kept snapshot
  const auto finish = [&]() {
    manifest.vms.clear();
    manifest.snapshots.clear();
    size_t ok = 0;
    for (const VmWork& w : work) {
      manifest.vms.push_back(w.vm);
      if (!w.failed) ++ok;
    }
    for (const auto& [id, v] : volumes) {
      if (!v.snapshot) continue;
      backup::ManifestSnapshot snap;
      snap.snapshot_id = v.snapshot->snapshot_id;
      snap.storage_volume = id;
      snap.volume_name = v.volume.volume.volume_name;
      snap.volume_root = v.taken_by.empty() ? v.volume.volume.root : v.taken_root;
      snap.plugin = v.taken_by.empty() ? v.volume.plugin->Name() : v.taken_plugin;
      snap.host = v.taken_by.empty() ? host_id : v.taken_by;
      snap.path = v.snapshot->path;
      snap.method = v.snapshot->method;
      snap.created_at_ms = NowMs();
      manifest.snapshots.push_back(std::move(snap));
    }
    manifest.state = ok == work.size() ? "succeeded" : ok == 0 ? "failed" : "partial";
    manifest.finished_at_ms = NowMs();
  };
  finish();

  core::Graph graph;
  const auto build_graph = [&]() -> absl::Status {
    graph = core::Graph();
    absl::StatusOr<core::NodeIndex> root = graph.UpsertNode(
        core::NodeType::kBackup, util::Cat("backup:", params.backup_id), params.name,
        {{"consistency", manifest.consistency_requested}, {"state", manifest.state}});
    if (!root.ok()) return root.status();
    for (const backup::ManifestVm& vm : manifest.vms) {
      if (!vm.ok) continue;
      absl::StatusOr<core::NodeIndex> vm_node =
          graph.UpsertNode(core::NodeType::kVm, util::Cat("vm:", vm.uuid), vm.name, {});
      if (!vm_node.ok()) return vm_node.status();
      absl::StatusOr<core::NodeIndex> snap = graph.UpsertNode(
          core::NodeType::kVmSnapshot, util::Cat("vmsnap:", vm.uuid, ":", params.backup_id),
          vm.vm_snapshot.empty() ? params.name : vm.vm_snapshot,
          {{"consistency", vm.consistency_achieved},
           {"kind", vm.vm_snapshot_kind.empty() ? "none" : vm.vm_snapshot_kind},
           {"host", vm.host}});
      if (!snap.ok()) return snap.status();
      graph.AddEdge(*root, *snap, core::EdgeType::kContains);
      graph.AddEdge(*snap, *vm_node, core::EdgeType::kSnapshotOf);
    }
    for (const backup::ManifestSnapshot& s : manifest.snapshots) {
      absl::StatusOr<core::NodeIndex> volume =
          graph.UpsertNode(core::NodeType::kStorageVolume, s.storage_volume, s.volume_name, {});
      if (!volume.ok()) return volume.status();
      absl::StatusOr<core::NodeIndex> snap =
          graph.UpsertNode(core::NodeType::kStorageSnapshot,
                           util::Cat("ssnap:", s.storage_volume, "@", s.snapshot_id), s.snapshot_id,
                           {{"path", s.path}, {"method", s.method}, {"host", s.host}});
      if (!snap.ok()) return snap.status();
      graph.AddEdge(*root, *snap, core::EdgeType::kContains);
      graph.AddEdge(*snap, *volume, core::EdgeType::kSnapshotOf);
    }
    manifest.graph = core::ToJson(graph, core::WholeGraph(graph));
    return absl::OkStatus();
  };
  if (absl::Status s = build_graph(); !s.ok()) return s;

  report(nullptr, "manifest", util::Cat(manifest.snapshots.size(), " manifest files"), 95);
  // Beside a snapshot another host took (cluster backups), this host's part of the manifest
  // goes under its own name: "<snapshot>@<host>.manifest.json".
  const auto manifest_path = [&](const VolumeWork& v) {
    const std::string file_name =
        v.taken_by.empty()
            ? util::Cat(v.snapshot->snapshot_id, backup::kManifestSuffix)
            : util::Cat(v.snapshot->snapshot_id, "@", host_id, backup::kManifestSuffix);
    return std::filesystem::path(v.volume.volume.root) / plugin::kSnapshotDirName / file_name;
  };
  absl::Status written = fault("manifest");
  for (const auto& [id, v] : volumes) {
    if (!written.ok()) break;
    if (!v.snapshot) continue;
    written = backup::WriteManifestFile(manifest_path(v).string(), manifest);
  }
  if (!written.ok()) {
    // Without its manifests the backup could not be rebuilt from storage: roll it all back.
    for (VmWork& w : work) {
      w.Fail(util::Cat("writing the backup manifest failed: ", Msg(written)));
      rollback_vm_snapshot(w);
    }
    for (auto& [id, v] : volumes) {
      if (!v.snapshot) continue;
      std::error_code ec;
      std::filesystem::remove(manifest_path(v), ec);
      rollback_volume(v);
    }
    finish();
    if (absl::Status s = build_graph(); !s.ok()) return s;
  }
  for (const VmWork& w : work) {
    report(&w, w.failed ? "failed" : "done", w.failed ? w.vm.error : w.vm.consistency_achieved,
           100);
  }
  spdlog::info("backup '{}' ({}) on host '{}': {} ({} VMs, {} storage snapshots)", params.name,
               params.backup_id, host_id, manifest.state, manifest.vms.size(),
               manifest.snapshots.size());
  BackupOutcome outcome;
  outcome.manifest = std::move(manifest);
  outcome.graph = std::move(graph);
  return outcome;
}

std::vector<std::string> BackupEngine::RecoverInterrupted() {
  std::lock_guard run_lock(run_mutex_);
  std::vector<std::string> report;
  const std::string& state_dir = host_.config().state_dir;
  if (state_dir.empty()) return report;
  const std::filesystem::path dir = std::filesystem::path(state_dir) / kJournalDir;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return report;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    nlohmann::json doc = nlohmann::json::parse(in, nullptr, false);
    const std::string id = entry.path().stem().string();
    if (doc.is_discarded() || !doc.is_object()) {
      report.push_back(
          util::Cat("backup journal '", entry.path().string(), "' is unreadable; left in place"));
      continue;
    }
    const std::string name = doc.value("backup", id);
    int resumed = 0, thawed = 0, vm_snaps = 0, snaps = 0;
    std::vector<std::string> problems;
    auto list = [&](const char* key) {
      return doc.contains(key) && doc[key].is_array() ? doc[key] : nlohmann::json::array();
    };
    int committed = 0;
    for (const nlohmann::json& entry : list("overlays")) {
      absl::StatusOr<overlay::VmOverlayPlan> plan = overlay::VmOverlayPlan::FromJson(entry);
      absl::Status s = plan.status();
      if (s.ok()) {
        s = host_.WithHypervisor(
            [&](Hypervisor& h) { return overlay::Undo(h, *plan, std::chrono::minutes(10)); });
      }
      if (s.ok()) {
        ++committed;
      } else {
        problems.push_back(
            util::Cat("overlays of VM ", plan.ok() ? plan->vm_name : "?", ": ", Msg(s)));
      }
    }
    for (const nlohmann::json& uuid : list("frozen")) {
      absl::Status s = host_.WithHypervisor(
          [&](Hypervisor& h) { return h.ThawFilesystems(uuid.get<std::string>()); });
      if (s.ok()) ++thawed;
    }
    for (const nlohmann::json& uuid : list("paused")) {
      const std::string vm = uuid.get<std::string>();
      absl::Status s = host_.WithHypervisor([&](Hypervisor& h) { return h.Resume(vm); });
      if (s.ok()) {
        ++resumed;
      } else if (!absl::IsFailedPrecondition(s) && !absl::IsNotFound(s)) {
        problems.push_back(util::Cat("resume of VM ", vm, ": ", Msg(s)));
      }
    }
    for (const nlohmann::json& snap : list("vm_snapshots")) {
      absl::Status s = host_.WithHypervisor([&](Hypervisor& h) {
        return h.DeleteVmSnapshot(snap.value("vm", ""), snap.value("name", ""), false);
      });
      if (s.ok()) ++vm_snaps;
    }
    for (const nlohmann::json& snap : list("storage_snapshots")) {
      const std::string volume_id = snap.value("volume", "");
      const std::string snapshot = snap.value("snapshot", "");
      absl::StatusOr<HostServices::FileVolume> volume = host_.FindVolume(volume_id);
      if (!volume.ok()) {
        problems.push_back(Msg(volume.status()));
        continue;
      }
      absl::Status s = volume->plugin->DeleteSnapshot(volume_id, snapshot);
      std::filesystem::remove(std::filesystem::path(volume->volume.root) /
                                  plugin::kSnapshotDirName / (snapshot + backup::kManifestSuffix),
                              ec);
      if (s.ok()) {
        ++snaps;
      } else if (!absl::IsNotFound(s)) {
        problems.push_back(util::Cat("snapshot '", snapshot, "': ", Msg(s)));
      }
    }
    std::string line = util::Cat("interrupted backup '", name, "' (", id, "): resumed ", resumed,
                                 " VMs, thawed ", thawed, ", removed ", vm_snaps,
                                 " VM snapshots and ", snaps, " storage snapshots");
    if (!list("overlays").empty()) {
      line = util::Cat(line, ", brought ", committed, " VMs back from their overlays");
    }
    if (problems.empty()) {
      std::filesystem::remove(entry.path(), ec);
    } else {
      line = util::Cat(line, "; journal kept, could not undo: ", util::Join(problems, "; "));
    }
    spdlog::warn("{}", line);
    report.push_back(std::move(line));
  }
  return report;
}

absl::Status BackupEngine::DeleteSnapshot(const std::string& volume_id,
                                          const std::string& snapshot_id) {
  if (absl::Status s = backup::ValidateName("snapshot name", snapshot_id); !s.ok()) return s;
  std::lock_guard run_lock(run_mutex_);
  absl::StatusOr<HostServices::FileVolume> volume = host_.FindVolume(volume_id);
  if (!volume.ok()) return volume.status();
  absl::Status data = volume->plugin->DeleteSnapshot(volume_id, snapshot_id);
  // Its manifest, and the other hosts' parts of it when it served a cluster backup.
  const std::filesystem::path dir =
      std::filesystem::path(volume->volume.root) / plugin::kSnapshotDirName;
  std::error_code ec;
  bool had_manifest = std::filesystem::remove(dir / (snapshot_id + backup::kManifestSuffix), ec);
  const std::string part_prefix = snapshot_id + "@";
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string file = entry.path().filename().string();
    if (file.starts_with(part_prefix) && file.ends_with(backup::kManifestSuffix)) {
      std::error_code remove_ec;
      had_manifest = std::filesystem::remove(entry.path(), remove_ec) || had_manifest;
    }
  }
  if (absl::IsNotFound(data) && had_manifest) return absl::OkStatus();
  return data;
}

}  // namespace strata::agent
