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
