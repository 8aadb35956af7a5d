// The hypervisor interface the agent programs against. The libvirt implementation lives in
// plugins/hypervisor/libvirt; tests and other hypervisors implement the same interface.
//
// Threading: one Hypervisor object is used by one thread at a time unless an implementation
// says otherwise. Ownership: the caller owns what Open* returns.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
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
};

}  // namespace strata::hypervisor
