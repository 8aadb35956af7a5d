// The VM-level step of a backup on real QEMU: an external disk-only snapshot diverts every
// write of a running VM to an overlay per disk, so that the base images stop changing while the
// storage snapshot is taken of them; then each overlay is merged back (active block commit,
// shallow, pivot), its file removed and libvirt's snapshot record dropped (metadata only: after
// an active commit libvirt cannot delete the snapshot otherwise).
//
//   Create ──> [VM writes to overlays; base frozen] ──> storage snapshot ──> Undo
//      │                                                                       │
//      └─ failed: nothing to undo (ATOMIC)   the VM runs: active commit, pivot ┤
//                    the VM is shut off (destroyed meanwhile, or stopped while ┤
//              the agent was down): qemu-img commit, redefine the disk on base ┤
//                                                                              v
//                          VM on its original chain, overlay file and snapshot record gone
//
// The offline path checks first that the overlay is ours and backs onto the planned base (in
// the VM's definition and in the overlay's header), and refuses a changed chain untouched. Its
// order loses nothing when a step fails: commit (the overlay keeps its data until the commit
// succeeded; committing an emptied overlay again writes nothing), then the redefinition, then
// the overlay file and the snapshot record. If the VM is started on its overlay before the
// repair, the active path applies.
//
// Undo is idempotent and reads the live chain first, so it also finishes a half-done undo and
// repairs what an agent that died while a VM ran on an overlay left behind (the backup journal
// holds each plan, written before Create; see BackupEngine::RecoverInterrupted).
//
// Threading: free functions; the caller serialises access to the Hypervisor.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "strata/hypervisor/domain.h"
#include "strata/hypervisor/hypervisor.h"

namespace strata::agent::overlay {

struct OverlayDisk {
  std::string target;        // "vda"
  std::string base_path;     // the disk's source before the snapshot (what is backed up)
  std::string overlay_path;  // where its writes go meanwhile
};

struct VmOverlayPlan {
  std::string vm_uuid;
  std::string vm_name;
  std::string snapshot_name;
  std::vector<OverlayDisk> disks;

  nlohmann::json ToJson() const;
  static absl::StatusOr<VmOverlayPlan> FromJson(const nlohmann::json& json);
};

// Whether a backup with VM snapshot mode `mode` ("auto", "external", ...) takes overlays for
// `domain`: "external" always for an active VM, "auto" for an active VM of a hypervisor that is
// not libvirt's test driver (which has no external snapshots). A shut-off VM's disks do not
// change: it needs none.
bool Wanted(const std::string& mode, const hypervisor::Domain& domain);

// The overlay of `base_path` for snapshot `snapshot_name`: beside the base image (QEMU can reach
// that directory), hidden: "<dir>/.<file>.strata-<snapshot_name>.overlay". It is never in the
// storage snapshot's file list (only the base paths are).
std::string OverlayPath(const std::string& base_path, const std::string& snapshot_name);

// The plan for `domain`'s disks (targets with their current source paths as bases).
VmOverlayPlan MakePlan(const hypervisor::Domain& domain,
                       const std::vector<std::pair<std::string, std::string>>& target_and_base,
                       const std::string& snapshot_name);

// Takes the external disk-only snapshot (DISK_ONLY | ATOMIC): all overlays or none.
absl::Status Create(hypervisor::Hypervisor& h, const VmOverlayPlan& plan);

// Brings the VM back onto its original chain: for each disk whose live source is still its
// overlay, an active shallow commit with pivot (at most `timeout` per disk) when the VM runs;
// when it is shut off, `qemu-img commit` of the overlay into its base and a redefinition of the
// disk on the base (Hypervisor::SetSavedDiskSource), after checking that the overlay backs onto
// the planned base (FailedPrecondition "cannot commit overlay 'O' of disk 'vda' of shut-off VM
// 'x' into 'B': its header has it backed by 'Z', not by the planned base; the chain was
// changed, nothing was done"). Then removes each overlay file the VM no longer uses and
// libvirt's snapshot record. Steps already done are skipped. A VM that no longer exists: its
// overlays are removed. A VM in an unknown state: FailedPrecondition naming the disk.
absl::Status Undo(hypervisor::Hypervisor& h, const VmOverlayPlan& plan,
                  std::chrono::milliseconds timeout);

// Writes `plans` as a journal file of their own (<journal_dir>/<id>.json, {"backup": name,
// "overlays": [...]}) for RecoverInterrupted, when an undo failed and the backup's own journal
// is about to go.
absl::Status WriteLeftoverJournal(const std::string& journal_dir, const std::string& id,
                                  const std::string& backup_name,
                                  const std::vector<VmOverlayPlan>& plans);

}  // namespace strata::agent::overlay
