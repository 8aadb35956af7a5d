// The libvirt implementation of strata::hypervisor::Hypervisor.
//
// Threading: libvirt connections are thread-safe, but this object is used by one thread at a
// time (it keeps no locks of its own). Ownership: Open returns the sole owner of the
// connection; destroying the object closes it.
//
// Process-wide side effects: the first Open installs a no-op libvirt error handler
// (virSetErrorFunc) so that libvirt does not print errors to stderr (errors are returned as
// absl::Status instead), and registers libvirt's default event loop
// (virEventRegisterDefaultImpl, before any connection is opened). While at least one
// LibvirtHypervisor exists, one thread of this plug-in runs that loop (virEventRunDefaultImpl,
// woken every 100 ms by a timer so that it can stop); the last object destroyed stops it.
//
// Events (SubscribeEvents): domain LIFECYCLE, DEVICE_ADDED, DEVICE_REMOVED, METADATA_CHANGE,
// DISK_CHANGE, TRAY_CHANGE and completed BLOCK_JOB_2 events, plus the connection's close
// callback (reported as kConnectionClosed). The callbacks run on the event-loop thread and only
// copy the event and call the sink. Reconnection is the caller's job: after kConnectionClosed
// the object is useless; destroy it and Open again (the agent's HostServices does, with
// back-off, and then reconciles).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "strata/hypervisor/domain.h"
#include "strata/hypervisor/hypervisor.h"

struct _virConnect;  // libvirt's connection (virConnectPtr); libvirt.h stays out of this header

namespace strata::hypervisor {

class LibvirtHypervisor final : public Hypervisor {
 public:
  // Connects to `uri` (e.g. "qemu:///system", "test:///default", "test:///ABS/host.xml"; empty:
  // libvirt's default URI). Failure: Unavailable
  // "cannot connect to hypervisor 'URI': <libvirt message>".
  static absl::StatusOr<std::unique_ptr<LibvirtHypervisor>> Open(const std::string& uri);

  LibvirtHypervisor(const LibvirtHypervisor&) = delete;
  LibvirtHypervisor& operator=(const LibvirtHypervisor&) = delete;
  ~LibvirtHypervisor() override;

  // hostname (virConnectGetHostname), uri, hypervisor_type (virConnectGetType, e.g. "QEMU",
  // "TEST"), version: the libvirt library version in use, "MAJOR.MINOR.RELEASE".
  absl::StatusOr<HostInfo> GetHostInfo() override;

  // Every domain, active and inactive, sorted by name. The XML is the live definition for
  // running VMs (virDomainGetXMLDesc flags 0). Disks of kind kVolume (also in backing chains)
  // get `path` from their storage pool; when that fails the disk is kept with `path` empty and
  // `resolve_error` = "cannot resolve volume 'V' in storage pool 'P': <libvirt message>".
  // A domain whose XML does not parse has `parse_error` =
  // "cannot parse the XML of VM 'NAME' (UUID): <parser message>" and no disks.
  // A domain that disappears while being listed (a transient VM that stops) is left out.
  // options.only: each entry is a UUID or a name (tried in that order, as virsh does);
  // duplicates are listed once; an unknown entry is NotFound
  // "VM 'X' not found on hypervisor 'URI'".
  absl::StatusOr<std::vector<Domain>> ListDomains(const ListOptions& options) override;

  // Registers the callbacks above on this connection (once; later calls replace the sink).
  // Failure to register LIFECYCLE: Unavailable "cannot subscribe to the events of hypervisor
  // 'URI': <libvirt message>"; the other event ids are best effort (a driver may lack them).
  absl::Status SubscribeEvents(EventSink sink) override;

  // ---- VM control (see Hypervisor). `vm` is a UUID or a name (tried in that order, as virsh
  // does). Common errors, each a whole message:
  //   unknown VM: NotFound "VM 'X' not found on hypervisor 'URI'";
  //   a libvirt failure: "cannot <verb> VM 'X' on hypervisor 'URI': <libvirt message>", with a
  //   code from libvirt's error number: invalid argument (e.g. "unsupported flags (0x10) in
  //   function ...") -> InvalidArgument; operation not valid in this state ("domain is not
  //   running", "domain is already running") -> FailedPrecondition; unsupported by the driver
  //   ("this function is not supported by the connection driver: ...", "argument
  //   unsupported: QEMU guest agent is not configured") -> Unimplemented; guest agent not
  //   responding -> Unavailable; otherwise as for ListDomains.

  absl::StatusOr<DomainState> GetState(const std::string& vm) override;
  // Pauses a running VM. A VM that is not running (paused, shut off, ...) is
  // FailedPrecondition "cannot suspend VM 'X' on hypervisor 'URI': it is already paused" or
  // "...: it is not running (state: shutoff)": the caller did not pause it and must not resume it.
  absl::Status Suspend(const std::string& vm) override;
  // Resumes a paused VM; any other state is FailedPrecondition
  // "cannot resume VM 'X' on hypervisor 'URI': it is not paused (state: running)".
  absl::Status Resume(const std::string& vm) override;
  // virDomainFSFreeze/FSThaw of every mounted file system through the guest agent.
  absl::Status FreezeFilesystems(const std::string& vm) override;
  absl::Status ThawFilesystems(const std::string& vm) override;
  // virDomainGetXMLDesc(VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE).
  absl::StatusOr<std::string> GetSavedXml(const std::string& vm) override;

  // !disk_only: an internal snapshot (flags: QUIESCE when asked). disk_only: an external
  // snapshot of the disks named in `overlays` (every other disk of the live definition gets
  // snapshot='no'), flags DISK_ONLY | ATOMIC (when asked) | QUIESCE (when asked); libvirt keeps
  // its metadata (so that DeleteVmSnapshot(metadata_only) can drop it after the commit).
  // An empty name lets libvirt choose one; the result carries the actual name and, for
  // disk_only, the overlays as libvirt recorded them (in the order of the VM's disks).
  // Errors before libvirt is asked, InvalidArgument:
  //   "cannot snapshot VM 'X' on hypervisor 'URI': a disk-only snapshot needs at least one overlay"
  //   "cannot snapshot VM 'X' on hypervisor 'URI': it has no disk 'vdz'"
  //   "cannot snapshot VM 'X' on hypervisor 'URI': overlays are only for disk-only snapshots"
  // A libvirt failure: "cannot snapshot VM 'X' on hypervisor 'URI': <libvirt message>".
  absl::StatusOr<VmSnapshot> CreateVmSnapshot(const std::string& vm,
                                              const VmSnapshotRequest& request) override;
  // virDomainSnapshotDelete (METADATA_ONLY when asked: after an external snapshot was
  // committed, a full delete fails on QEMU with "could not find base disk source in disk source
  // chain"; the test driver refuses METADATA_ONLY with "unsupported flags (0x2) ...").
  // An unknown snapshot is NotFound "VM snapshot 'S' of VM 'X' not found on hypervisor 'URI'";
  // a libvirt failure: "cannot delete VM snapshot 'S' of VM 'X' on hypervisor 'URI': <...>".
  absl::Status DeleteVmSnapshot(const std::string& vm, const std::string& snapshot,
                                bool metadata_only) override;
  // Names of every snapshot of the VM, sorted.
  absl::StatusOr<std::vector<std::string>> ListVmSnapshots(const std::string& vm) override;
  // virDomainBlockCommit(ACTIVE), then polls virDomainGetBlockJobInfo every 20 ms until the
  // job is ready (cur == end), pivots (virDomainBlockJobAbort PIVOT; retried while libvirt has
  // not yet seen the job ready) and waits until no block job remains on the disk. When
  // `timeout` passes first, the job is aborted without pivot (the VM keeps writing to the
  // overlay) and the answer is DeadlineExceeded "cannot commit disk 'vda' of VM 'X' on
  // hypervisor 'URI': the block commit did not finish within 100 ms; the job was aborted and
  // the VM still writes to the overlay" (or "...within 100 ms, and aborting the job failed:
  // <libvirt message>"). A libvirt failure: "cannot commit disk 'vda' of VM 'X' on hypervisor
  // 'URI': <libvirt message>", e.g. "invalid argument: could not find base image in chain for
  // 'vda'" for a disk without overlay (the job, if it started, is aborted).
  absl::Status CommitActiveOverlay(const std::string& vm, const std::string& target,
                                   std::chrono::milliseconds timeout) override;
  // Edits the saved definition (virDomainGetXMLDesc INACTIVE | SECURE) with pugixml: the
  // disk's <source file>, its <driver type> (when `format` is set), no <backingStore> (libvirt
  // probes the chain at the next start); then virDomainDefineXML. Errors, each
  // "cannot change the source of disk 'vda' of VM 'X' on hypervisor 'URI': ...":
  //   FailedPrecondition "...: it is not shut off (state: running)";
  //   InvalidArgument "...: it has no disk 'vdz'" (also for an empty path);
  //   FailedPrecondition "...: its saved source is 'A', not 'B'" (also for a non-file disk);
  //   Aborted "...: the VM was started meanwhile; its saved definition was put back" (the
  //   state is read again after the define: a running VM's next boot must not skip what it
  //   writes now);
  //   a libvirt failure with libvirt's message.
  absl::Status SetSavedDiskSource(const std::string& vm, const DiskSourceChange& change) override;
  // virDomainDefineXML; returns the UUID. Failure: "cannot define a VM on hypervisor 'URI':
  // <libvirt message>".
  absl::StatusOr<std::string> DefineXml(const std::string& xml) override;
  absl::Status Start(const std::string& vm) override;    // virDomainCreate
  absl::Status Destroy(const std::string& vm) override;  // virDomainDestroy
  // virDomainUndefineFlags with MANAGED_SAVE | SNAPSHOTS_METADATA | CHECKPOINTS_METADATA |
  // NVRAM; a driver that rejects some of these flags (the test driver rejects
  // CHECKPOINTS_METADATA and NVRAM) is asked again with fewer: MANAGED_SAVE |
  // SNAPSHOTS_METADATA, then none. The error is that of the last attempt.
  absl::Status Undefine(const std::string& vm) override;

  // The URI of the connection as libvirt reports it (virConnectGetURI).
  const std::string& uri() const { return uri_; }

  // Implementation detail: shared with the libvirt callbacks; outlives this object while
  // libvirt still holds a callback.
  struct EventState;

 private:
  struct ConnectionCloser {
    void operator()(_virConnect* connection) const;
  };
  using ConnectionPtr = std::unique_ptr<_virConnect, ConnectionCloser>;

  LibvirtHypervisor(ConnectionPtr connection, std::string uri);
  void UnsubscribeEvents();

  ConnectionPtr connection_;
  std::string uri_;
  std::shared_ptr<EventState> events_;
  std::vector<int> callback_ids_;
  bool close_callback_registered_ = false;
  std::shared_ptr<void> close_box_;  // the close callback's opaque (a shared_ptr<EventState>)
};

namespace libvirt_internal {

// The Domain for one listed VM from what libvirt reported about it: parses `xml`; on failure
// returns the domain with `parse_error` set and no disks. Exposed for tests.
Domain MakeListedDomain(std::string uuid, std::string name, DomainState state, bool persistent,
                        std::string xml);

}  // namespace libvirt_internal
}  // namespace strata::hypervisor
