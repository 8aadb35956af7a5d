// What the event manager needs from the host: observations of VMs, and the hypervisor's events.
// HostServices implements it over the hypervisor plug-in and the storage resolver; tests and the
// benchmark implement it in memory.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "strata/agent/change_log.h"
#include "strata/hypervisor/hypervisor.h"

namespace strata::agent {

class HostView {
 public:
  virtual ~HostView() = default;
  // Every VM of the host (a full listing: uuid, name, state, digest of the saved XML).
  virtual absl::StatusOr<std::vector<VmObservation>> ObserveAll() = 0;
  // Those of `uuids` that exist, with their full details collected (domain XML, storage
  // resolution); absent ones are left out, not an error.
  virtual absl::StatusOr<std::vector<VmObservation>> ObserveVms(
      const std::vector<std::string>& uuids) = 0;
  // Delivers the hypervisor's raw events to `sink` (on another thread) from now on, across
  // re-connections. After the connection was lost and opened again, `sink` receives a
  // kConnectionClosed event with detail "reopened": events may have been missed meanwhile.
  // Unimplemented when the hypervisor plug-in delivers no events.
  // An empty `sink` ends the delivery; it returns once no delivery is in progress, so the old
  // sink's owner may be destroyed afterwards.
  virtual absl::Status SubscribeEvents(hypervisor::EventSink sink) = 0;
};

}  // namespace strata::agent
