// The hypervisor interface the agent programs against. The libvirt implementation lives in
// plugins/hypervisor/libvirt; tests and other hypervisors implement the same interface.
//
// Threading: one Hypervisor object is used by one thread at a time unless an implementation
// says otherwise. Ownership: the caller owns what Open* returns.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "strata/hypervisor/domain.h"

namespace strata::hypervisor {

struct ListOptions {
  // When non-empty: only these VMs, each given by name or UUID. An unknown one is NotFound,
  // naming it.
  std::vector<std::string> only;
};

struct HostInfo {
  std::string hostname;         // as the hypervisor reports it
  std::string uri;              // connection URI
  std::string hypervisor_type;  // "QEMU", "TEST", ...
  std::string version;          // e.g. "9.0.0"
};

// What a hypervisor reports about one raw event, copied out of the hypervisor's callback.
enum class EventKind {
  kDefined,    // a new persistent VM
  kRedefined,  // the saved definition of an existing VM was replaced (or renamed)
  kUndefined,  // the saved definition was removed (a running VM lives on as transient)
  kStarted,    // may be a new transient VM
  kStopped,    // a transient VM is gone after this
  kSuspended,
  kResumed,
  kOtherLifecycle,  // shutdown in progress, crashed, pm-suspended, ...
  kDeviceAdded,
  kDeviceRemoved,
  kModified,          // another configuration change: metadata, disk or tray change, block job
  kConnectionClosed,  // no vm: the connection closed; events may have been missed
};
std::string_view EventKindName(EventKind kind);  // "defined", "device-added", ...

struct HypervisorEvent {
  std::string vm_uuid;  // empty for kConnectionClosed
  std::string vm_name;
  EventKind kind = EventKind::kModified;
  std::string detail;  // e.g. "destroyed", "from-snapshot", a device alias, a close reason
  int64_t time_unix_ms = 0;
};

// Called on a thread of the plug-in (never on the caller's), possibly concurrently with the
// Hypervisor's other methods. It must return quickly and must not call back into the
// Hypervisor.
using EventSink = std::function<void(HypervisorEvent event)>;

// A VM-level snapshot request. On the test driver only internal snapshots exist; real QEMU
// takes external disk-only snapshots (an overlay per disk) so that the base images stop changing
// while the storage snapshot is taken.
struct VmSnapshotRequest {
  std::string name;
  std::string description;
  bool disk_only = false;  // external disk-only snapshot (VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
  bool atomic = true;      // all disks or none
  bool quiesce = false;    // freeze guest file systems during the snapshot (needs a guest agent)
  // disk_only: overlay file per disk target; a disk not named here is excluded from the snapshot.
  std::vector<std::pair<std::string, std::string>> overlays;  // (target, overlay path)
};

// A change of one disk's source in a shut-off VM's saved definition (SetSavedDiskSource).
struct DiskSourceChange {
  std::string target;         // "vda"
  std::string expected_path;  // the disk's saved source now; any other source is refused
  std::string path;           // the new source: a file
  std::string format;         // its driver type ("qcow2", "raw"); empty: left as it is
};

struct VmSnapshot {
  std::string name;
  bool external = false;
  // external: (target, overlay path) actually created, to be committed and removed afterwards.
  std::vector<std::pair<std::string, std::string>> overlays;
};

class Hypervisor {
 public:
  virtual ~Hypervisor() = default;

  virtual absl::StatusOr<HostInfo> GetHostInfo() = 0;
  // Every domain (running and defined) with state, persistence and parsed XML. Disks of kind
  // kVolume get `source.path` filled from their storage pool where the pool knows it.
  // A domain whose XML does not parse is not dropped silently: the call still succeeds, the
  // domain is returned with `disks` empty and `parse_error` set to the whole message.
  virtual absl::StatusOr<std::vector<Domain>> ListDomains(const ListOptions& options) = 0;

  // Optional: delivers the hypervisor's raw VM events to `sink` from now until the object is
  // destroyed (the destructor returns only once no call of `sink` is running or will start).
  // Subscribing again replaces the sink. Default: Unimplemented
  // "this hypervisor plug-in does not deliver events".
  virtual absl::Status SubscribeEvents(EventSink sink) {
    (void)sink;
    return absl::UnimplementedError("this hypervisor plug-in does not deliver events");
  }

  // ---- VM control for backup and restore (optional; defaults answer Unimplemented naming the
  // operation). `vm` is a name or a UUID; an unknown VM is NotFound "VM 'x' not found on
  // hypervisor 'URI'". Errors of the hypervisor keep its whole message.

  virtual absl::StatusOr<DomainState> GetState(const std::string& vm) {
    return Missing(vm, "state");
  }
  virtual absl::Status Suspend(const std::string& vm) { return Missing(vm, "suspend"); }
  virtual absl::Status Resume(const std::string& vm) { return Missing(vm, "resume"); }
  // Guest file-system freeze/thaw through the guest agent (virDomainFSFreeze/Thaw).
  virtual absl::Status FreezeFilesystems(const std::string& vm) { return Missing(vm, "fs-freeze"); }
  virtual absl::Status ThawFilesystems(const std::string& vm) { return Missing(vm, "fs-thaw"); }
  // The saved (inactive) configuration, secure fields included: what a restore redefines.
  virtual absl::StatusOr<std::string> GetSavedXml(const std::string& vm) {
    return Missing(vm, "saved XML");
  }
  virtual absl::StatusOr<VmSnapshot> CreateVmSnapshot(const std::string& vm,
                                                      const VmSnapshotRequest& request) {
    (void)request;
    return Missing(vm, "VM snapshots");
  }
  // metadata_only: drop libvirt's record only (after an external snapshot was committed).
  virtual absl::Status DeleteVmSnapshot(const std::string& vm, const std::string& snapshot,
                                        bool metadata_only) {
    (void)snapshot;
    (void)metadata_only;
    return Missing(vm, "VM snapshots");
  }
  virtual absl::StatusOr<std::vector<std::string>> ListVmSnapshots(const std::string& vm) {
    return Missing(vm, "VM snapshots");
  }
  // Merges the active overlay of disk `target` back into its immediate backing image (never
  // deeper) and pivots to it (virDomainBlockCommit ACTIVE|SHALLOW, then virDomainBlockJobAbort
  // PIVOT once ready), waiting at most
  // `timeout`. Used after an external disk-only snapshot.
  virtual absl::Status CommitActiveOverlay(const std::string& vm, const std::string& target,
                                           std::chrono::milliseconds timeout) {
    (void)target;
    (void)timeout;
    return Missing(vm, "block commit");
  }
  // Points disk `change.target` of a shut-off VM's saved definition at `change.path`: the
  // offline undo of an external snapshot, once the overlay was committed into its base with
  // qemu-img (an active commit needs a running QEMU). Whatever the definition says about the
  // old source's backing chain is dropped, so that the hypervisor probes the new one. A VM that
  // runs is refused (its saved definition must keep naming what QEMU writes to), and so is a
  // disk whose saved source is not `change.expected_path`.
  virtual absl::Status SetSavedDiskSource(const std::string& vm, const DiskSourceChange& change) {
    (void)change;
    return Missing(vm, "changing a saved disk source");
  }
  // Defines (or redefines, same UUID) a persistent VM; returns its UUID.
  virtual absl::StatusOr<std::string> DefineXml(const std::string& xml) {
    (void)xml;
    return absl::UnimplementedError("this hypervisor plug-in cannot define VMs");
  }
  virtual absl::Status Start(const std::string& vm) { return Missing(vm, "start"); }
  // Hard stop (virDomainDestroy): a VM without an OS ignores a shutdown request.
  virtual absl::Status Destroy(const std::string& vm) { return Missing(vm, "destroy"); }
  // Removes the saved definition (and libvirt's snapshot/checkpoint metadata with it).
  virtual absl::Status Undefine(const std::string& vm) { return Missing(vm, "undefine"); }

 protected:
  static absl::Status Missing(const std::string& vm, std::string_view what) {
    return absl::UnimplementedError("this hypervisor plug-in does not support " +
                                    std::string(what) + " (VM '" + vm + "')");
  }
};

}  // namespace strata::hypervisor
