#include "vm_overlay.h"

#include <filesystem>
#include <fstream>

#include "spdlog/spdlog.h"
#include "strata/util/strings.h"

namespace strata::agent::overlay {
namespace {

using hypervisor::DomainState;
using hypervisor::Hypervisor;

bool Active(DomainState state) {
  switch (state) {
    case DomainState::kRunning:
    case DomainState::kBlocked:
    case DomainState::kPaused:
    case DomainState::kShutdown:  // still running: shutting down
    case DomainState::kCrashed:
    case DomainState::kSuspended:
      return true;
    case DomainState::kUnknown:
    case DomainState::kShutoff:
      return false;
  }
  return false;
}

}  // namespace

nlohmann::json VmOverlayPlan::ToJson() const {
  nlohmann::json disks_json = nlohmann::json::array();
  for (const OverlayDisk& d : disks) {
    disks_json.push_back(
        {{"target", d.target}, {"base", d.base_path}, {"overlay", d.overlay_path}});
  }
  return {{"vm", vm_uuid}, {"name", vm_name}, {"snapshot", snapshot_name}, {"disks", disks_json}};
}

absl::StatusOr<VmOverlayPlan> VmOverlayPlan::FromJson(const nlohmann::json& json) {
  if (!json.is_object() || !json.contains("vm") || !json["vm"].is_string() ||
      !json.contains("disks") || !json["disks"].is_array()) {
    return absl::InvalidArgumentError(
        util::Cat("overlay journal entry is malformed: ", json.dump()));
  }
  VmOverlayPlan plan;
  plan.vm_uuid = json["vm"].get<std::string>();
  plan.vm_name = json.value("name", plan.vm_uuid);
  plan.snapshot_name = json.value("snapshot", "");
  const nlohmann::json& disks = json["disks"];
  for (size_t i = 0; i < disks.size(); ++i) {
    const nlohmann::json& d = disks[i];
    if (!d.is_object()) {
      return absl::InvalidArgumentError(
          util::Cat("overlay journal entry is malformed: ", json.dump()));
    }
    plan.disks.push_back({d.value("target", ""), d.value("base", ""), d.value("overlay", "")});
  }
  return plan;
}

bool Wanted(const std::string& mode, const hypervisor::Domain& domain) {
  if (!Active(domain.state)) return false;
  if (mode == "external") return true;
  return mode == "auto" && util::ToLower(domain.hypervisor_type) != "test";
}

std::string OverlayPath(const std::string& base_path, const std::string& snapshot_name) {
  const std::filesystem::path base(base_path);
  return (base.parent_path() /
          util::Cat(".", base.filename().string(), ".strata-", snapshot_name, ".overlay"))
      .string();
}

VmOverlayPlan MakePlan(const hypervisor::Domain& domain,
                       const std::vector<std::pair<std::string, std::string>>& target_and_base,
                       const std::string& snapshot_name) {
  VmOverlayPlan plan;
  plan.vm_uuid = domain.uuid;
  plan.vm_name = domain.name;
  plan.snapshot_name = snapshot_name;
  for (const auto& [target, base] : target_and_base) {
    plan.disks.push_back({target, base, OverlayPath(base, snapshot_name)});
  }
  return plan;
}

absl::Status Create(Hypervisor& h, const VmOverlayPlan& plan) {
  // A leftover of an earlier run with the same name would make libvirt refuse ("already
  // exists") or, worse, be reused: only files no VM uses can be left over (Undo removes them).
  for (const OverlayDisk& d : plan.disks) {
    std::error_code ec;
    if (std::filesystem::exists(d.overlay_path, ec)) {
      return absl::AlreadyExistsError(util::Cat("overlay '", d.overlay_path, "' of disk '",
                                                d.target, "' of VM '", plan.vm_name,
                                                "' already exists (left by an earlier backup?)"));
    }
  }
  hypervisor::VmSnapshotRequest request;
  request.name = plan.snapshot_name;
  request.description = util::Cat("strata backup overlay (", plan.snapshot_name, ")");
  request.disk_only = true;
  request.atomic = true;
  for (const OverlayDisk& d : plan.disks) request.overlays.emplace_back(d.target, d.overlay_path);
  absl::StatusOr<hypervisor::VmSnapshot> made = h.CreateVmSnapshot(plan.vm_uuid, request);
  return made.status();
}

absl::Status Undo(Hypervisor& h, const VmOverlayPlan& plan, std::chrono::milliseconds timeout) {
  hypervisor::ListOptions options;
  options.only = {plan.vm_uuid};
  absl::StatusOr<std::vector<hypervisor::Domain>> listed = h.ListDomains(options);
  const auto remove_files = [&](bool only_unused, const hypervisor::Domain* live) {
    for (const OverlayDisk& d : plan.disks) {
      bool used = false;
      if (only_unused && live != nullptr) {
        for (const hypervisor::Disk& disk : live->disks) {
          if (disk.source.path == d.overlay_path) used = true;
          for (const hypervisor::DiskSource& below : disk.backing_chain) {
            if (below.path == d.overlay_path) used = true;
          }
        }
      }
      if (used) continue;
      std::error_code ec;
      std::filesystem::remove(d.overlay_path, ec);
    }
  };
  if (!listed.ok()) {
    if (absl::IsNotFound(listed.status())) {  // the VM is gone: so is any use of its overlays
      remove_files(false, nullptr);
      return absl::OkStatus();
    }
    return listed.status();
  }
  if (listed->size() != 1) {
    return absl::InternalError(
        util::Cat("listing VM '", plan.vm_name, "' returned ", listed->size(), " VMs"));
  }
  const hypervisor::Domain& live = (*listed)[0];
  absl::Status first = absl::OkStatus();
  for (const OverlayDisk& d : plan.disks) {
    const hypervisor::Disk* disk = nullptr;
    for (const hypervisor::Disk& candidate : live.disks) {
      if (candidate.target == d.target) disk = &candidate;
    }
    if (disk == nullptr || disk->source.path != d.overlay_path) continue;  // not (or no longer)
    if (!Active(live.state)) {
      if (first.ok()) {
        first = absl::FailedPreconditionError(
            util::Cat("disk '", d.target, "' of VM '", plan.vm_name, "' is defined on overlay '",
                      d.overlay_path, "' but the VM is ", hypervisor::DomainStateName(live.state),
                      ": start it so that the overlay can be committed into '", d.base_path, "'"));
      }
      continue;
    }
    absl::Status s = h.CommitActiveOverlay(plan.vm_uuid, d.target, timeout);
    if (!s.ok() && first.ok()) first = s;
  }
  // Where the VM is now: only overlays it no longer uses go.
  absl::StatusOr<std::vector<hypervisor::Domain>> after = h.ListDomains(options);
  if (after.ok() && after->size() == 1) {
    remove_files(true, &(*after)[0]);
  } else if (first.ok()) {
    first = after.ok() ? absl::InternalError(util::Cat("VM '", plan.vm_name, "' disappeared"))
                       : after.status();
  }
  if (first.ok() && !plan.snapshot_name.empty()) {
    absl::Status s = h.DeleteVmSnapshot(plan.vm_uuid, plan.snapshot_name, /*metadata_only=*/true);
    if (!s.ok() && !absl::IsNotFound(s)) first = s;
  }
  return first;
}

absl::Status WriteLeftoverJournal(const std::string& journal_dir, const std::string& id,
                                  const std::string& backup_name,
                                  const std::vector<VmOverlayPlan>& plans) {
  nlohmann::json doc = {{"backup", backup_name}, {"overlays", nlohmann::json::array()}};
  for (const VmOverlayPlan& plan : plans) doc["overlays"].push_back(plan.ToJson());
  std::error_code ec;
  std::filesystem::create_directories(journal_dir, ec);
  const std::filesystem::path path = std::filesystem::path(journal_dir) / (id + ".json");
  const std::string tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << doc.dump();
    out.flush();
    if (!out) {
      return absl::FailedPreconditionError(
          util::Cat("cannot write the backup journal '", tmp, "'"));
    }
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        util::Cat("cannot write the backup journal '", path.string(), "': ", ec.message()));
  }
  spdlog::warn("backup {}: overlays left for the next start to commit: {}", backup_name,
               path.string());
  return absl::OkStatus();
}

}  // namespace strata::agent::overlay
