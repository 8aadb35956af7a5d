// The agent's backup and restore engines: VM consistency (pause, guest file-system freeze),
// VM-level snapshots through the hypervisor plug-in, storage snapshots through the storage
// plug-ins (one per storage volume, serving every disk on it), the manifest written beside every
// snapshot, and restores from a manifest (in place, as a new VM, single disks).
//
// Guarantees (also across a crash of the agent: see RecoverInterrupted):
//  - A VM this engine paused or froze is resumed or thawed before Run returns, whatever failed
//    in between (a scope guard releases in reverse order; its own failures are reported).
//  - A VM this engine put on overlays (real QEMU, external disk-only snapshot) is back on its
//    original disk chain before Run returns, overlay files and snapshot record gone; if merging
//    failed twice, the overlays are in a journal of their own that RecoverInterrupted finishes.
//    Each VM is released as soon as the storage snapshots of its own volumes exist. A backup
//    this host runs alone in crash consistency takes such VMs one at a time when every volume
//    they use can add files to a snapshot later (dir): overlay, its files added to each
//    volume's one snapshot, commit; so each VM is held for its own steps only.
//  - A backup's storage snapshots that no succeeded VM uses are deleted before Run returns; so
//    are VM-level snapshots of failed VMs. What stays is described by the returned manifest and
//    by the manifest files on the volumes.
//  - A restore never leaves a half-written disk: each disk is copied (or cloned) to a temporary
//    name and renamed over the target; a restore as a new VM that fails removes what it made.
//
// Threading: Run/Restore/DeleteSnapshot may be called from any thread; one operation runs at a
// time per engine (others wait), so two backups of the same VM never interleave.
// Ownership: borrows the HostServices, which must outlive the engine.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "strata/agent/host_services.h"
#include "strata/backup/manifest.h"
#include "strata/plugin/storage.h"

namespace strata::agent {

enum class ConsistencyMode { kCrash, kPause, kQuiesce };
std::string_view ConsistencyName(ConsistencyMode mode);  // "crash", "pause", "quiesce"
absl::StatusOr<ConsistencyMode> ParseConsistency(std::string_view text);

// Failure injection for tests: called with the step name before each step ("pause:<vm>",
// "freeze:<vm>", "vm-snapshot:<vm>", "overlay:<vm>", "overlay-done:<vm>" (after the external
// snapshot exists), "commit:<vm>" and "commit-retry:<vm>" (bringing it back from its overlays),
// "storage-snapshot:<volume>", "storage-snapshot-done:<volume>"
// (after it was taken), "storage-snapshot-append:<volume>" (the per-VM pipeline adding a later
// VM's files to the volume's snapshot), "resume:<vm>", "verify:<vm>", "manifest",
// "copy:<vm>:<disk>", "define:<vm>", "start:<vm>"). A non-OK status fails that step as if the
// operation had failed.
using FaultInjector = std::function<absl::Status(const std::string& step)>;

// Cluster backups: the files a backup needs on one storage volume, and a snapshot one host took
// for every host that needs the volume.
struct VolumeNeed {
  std::string volume_id;
  std::string volume_name;
  std::vector<std::string> files;
};
struct TakenSnapshot {
  std::string volume_id;
  std::string volume_name;
  std::string volume_root;  // on the host that took it
  std::string plugin;
  std::string host;
  plugin::SnapshotInfo info;
};

// Lets a cluster coordinator take each storage snapshot once for several hosts. The engine calls
// Plan once every VM here is at its consistency (VM snapshots taken), then takes the volumes
// Plan returned (with every host's files on them), then calls Exchange with what it took and
// receives what the other hosts took, then releases its VMs. Both calls block while the other
// hosts catch up; an error fails the VMs that needed what is missing (never leaves them held).
class SnapshotCoordination {
 public:
  virtual ~SnapshotCoordination() = default;
  // `needs`: this host's volumes. Returns the volumes this host snapshots (files: every host's).
  virtual absl::StatusOr<std::vector<VolumeNeed>> Plan(const std::vector<VolumeNeed>& needs) = 0;
  virtual absl::StatusOr<std::vector<TakenSnapshot>> Exchange(
      const std::vector<TakenSnapshot>& taken_here) = 0;
};

struct BackupParams {
  std::string backup_id;
  std::string name;  // validated (backup::ValidateName); names the VM and storage snapshots
  std::string snapshot_name;     // the storage snapshots' name when not `name`
  std::vector<std::string> vms;  // names or UUIDs; empty: every VM of the host
  ConsistencyMode consistency = ConsistencyMode::kCrash;
  std::optional<ConsistencyMode> fallback;  // allowed when quiesce is impossible
  bool verify = false;                      // xxh3 checksum of every disk copy
  std::string requester;
  std::string policy;
  // "auto": internal VM snapshots on libvirt's test driver; on real QEMU an external disk-only
  // snapshot of every running VM (overlays beside its disks, so that the storage snapshot is
  // taken of frozen base images), merged back (active commit, pivot) as soon as the storage
  // snapshots of its volumes exist. "external" asks for that on any hypervisor.
  std::string vm_snapshot = "auto";  // "auto", "internal", "external", "none"
  // The longest an overlay's active commit may take (per disk) before it is aborted.
  std::chrono::milliseconds commit_timeout = std::chrono::minutes(10);
  // Cluster backups (forwarded by a coordinator): who takes which storage snapshot. Null: this
  // host snapshots every volume it needs. Borrowed for the duration of Run.
  SnapshotCoordination* coordination = nullptr;
};

struct BackupStep {
  std::string vm_uuid;  // empty: a step of the whole backup
  std::string vm_name;
  std::string step;
  std::string message;
  int percent = 0;
};
using ProgressFn = std::function<void(const BackupStep&)>;

struct BackupOutcome {
  backup::BackupManifest manifest;  // also written beside every kept snapshot
  core::Graph graph;                // backup -> vm_snapshot / storage_snapshot nodes
};

struct RestoreParams {
  std::string restore_id;
  std::string vm;                  // UUID or name of the backed-up VM in the manifest
  std::string as_name;             // non-empty: restore as a new VM
  std::vector<std::string> disks;  // targets; empty = all
  bool verify = false;             // compare recorded checksums (fails when none recorded)
  std::optional<bool> start;       // default: in place, as it was; as new, false
  std::string target_dir;          // as new: where the disks go (default beside the originals)
};

struct RestoreOutcome {
  std::string vm_uuid;
  std::string vm_name;
  std::vector<std::string> disk_paths;
  bool verified = false;
  bool started = false;
  std::string message;
};

class BackupEngine {
 public:
  explicit BackupEngine(HostServices& host, FaultInjector faults = nullptr);

  // Errors of the whole request: InvalidArgument (bad name, no VMs), NotFound (unknown VM).
  // Everything else is a per-VM failure inside the manifest (ok=false, error) and the outcome
  // is still returned; manifest.state is "succeeded", "partial" or "failed".
  absl::StatusOr<BackupOutcome> Run(const BackupParams& params, const ProgressFn& progress);

  absl::StatusOr<RestoreOutcome> Restore(const backup::BackupManifest& manifest,
                                         const RestoreParams& params, const ProgressFn& progress);

  // Undoes the backups a previous run of the agent left unfinished (it died half-way): resumes
  // and thaws the VMs their journals name, removes their VM and storage snapshots and manifests.
  // Returns one line per journal found. Call once at start, before serving.
  std::vector<std::string> RecoverInterrupted();

  // Deletes a storage snapshot and its manifest file. NotFound when neither exists.
  absl::Status DeleteSnapshot(const std::string& volume_id, const std::string& snapshot_id);

 private:
  HostServices& host_;
  FaultInjector faults_;
  std::mutex run_mutex_;
};

}  // namespace strata::agent
