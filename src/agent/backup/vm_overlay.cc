#include "vm_overlay.h"

#include <filesystem>
#include <fstream>

#include "qemu_img.h"
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

bool SamePath(const std::string& a, const std::string& b) {
  return std::filesystem::path(a).lexically_normal() == std::filesystem::path(b).lexically_normal();
}

// Disk `d` of a shut-off VM is still defined on its overlay (an active commit needs a running
// QEMU): commits the overlay into its base with qemu-img, then points the saved definition back
// at the base. Only our overlay over the planned base is touched: a chain someone changed is
// refused before anything is written. Each step can be repeated after a later one failed: the
// overlay keeps its data until the commit succeeded, and committing an emptied overlay again
// writes nothing.
absl::Status CommitOffline(Hypervisor& h, const VmOverlayPlan& plan, const OverlayDisk& d,
                           const hypervisor::Disk& disk) {
  const std::string what =
      util::Cat("cannot commit overlay '", d.overlay_path, "' of disk '", d.target,
                "' of shut-off VM '", plan.vm_name, "' into '", d.base_path, "'");
  const hypervisor::DiskSource* below =
      disk.backing_chain.empty() ? nullptr : &disk.backing_chain[0];
  if (below != nullptr && !below->path.empty() && !SamePath(below->path, d.base_path)) {
    return absl::FailedPreconditionError(
        util::Cat(what, ": the VM's definition has it backed by '", below->path,
                  "', not by the planned base; the chain was changed, nothing was done"));
  }
  absl::StatusOr<qemu_img::ImageInfo> info = qemu_img::Info(d.overlay_path);
  if (!info.ok()) {
    return absl::Status(info.status().code(), util::Cat(what, ": ", info.status().message()));
  }
  if (info->format != "qcow2") {
    return absl::FailedPreconditionError(
        util::Cat(what, ": it is a '", info->format, "' image, not the qcow2 overlay planned"));
  }
  if (!SamePath(info->backing_path, d.base_path)) {
    return absl::FailedPreconditionError(
        util::Cat(what, ": its header has it backed by '", info->backing_path,
                  "', not by the planned base; the chain was changed, nothing was done"));
  }
  std::string format = info->backing_format;
  if (format.empty() && below != nullptr) format = below->format;
  if (format.empty()) {
    return absl::FailedPreconditionError(util::Cat(
        what, ": neither the overlay's header nor the VM's definition names the base's format"));
  }
  if (absl::Status s = qemu_img::CommitQcow2(d.overlay_path); !s.ok()) {
    return absl::Status(s.code(), util::Cat(what, ": ", s.message()));
  }
  hypervisor::DiskSourceChange change;
  change.target = d.target;
  change.expected_path = d.overlay_path;
  change.path = d.base_path;
  change.format = format;
  return h.SetSavedDiskSource(plan.vm_uuid, change);
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
    if (live.state == DomainState::kShutoff) {
      absl::Status s = CommitOffline(h, plan, d, *disk);
      if (!s.ok() && first.ok()) first = s;
      continue;
    }
    if (!Active(live.state)) {  // unknown: neither QEMU's job nor ours
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
    // E.g. a VM started between an offline commit and the redefinition of its disk.
    for (const OverlayDisk& d : plan.disks) {
      for (const hypervisor::Disk& disk : (*after)[0].disks) {
        if (disk.target == d.target && disk.source.path == d.overlay_path && first.ok()) {
          first = absl::FailedPreconditionError(util::Cat("disk '", d.target, "' of VM '",
                                                          plan.vm_name, "' is still on overlay '",
                                                          d.overlay_path, "'"));
        }
      }
    }
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
