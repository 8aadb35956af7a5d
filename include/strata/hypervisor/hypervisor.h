// The hypervisor interface the agent programs against. The libvirt implementation lives in
// plugins/hypervisor/libvirt; tests and other hypervisors implement the same interface.
//
// Threading: one Hypervisor object is used by one thread at a time unless an implementation
// says otherwise. Ownership: the caller owns what Open* returns.
#pragma once

#include <memory>
#include <string>
#include <vector>

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

class Hypervisor {
 public:
  virtual ~Hypervisor() = default;

  virtual absl::StatusOr<HostInfo> GetHostInfo() = 0;
  // Every domain (running and defined) with state, persistence and parsed XML. Disks of kind
  // kVolume get `source.path` filled from their storage pool where the pool knows it.
  // A domain whose XML does not parse is not dropped silently: the call still succeeds, the
  // domain is returned with `disks` empty and `parse_error` set to the whole message.
  virtual absl::StatusOr<std::vector<Domain>> ListDomains(const ListOptions& options) = 0;
};

}  // namespace strata::hypervisor
