// Host discovery: asks the hypervisor for its VMs, resolves every disk image through the storage
// resolver, and returns the host's resource graph:
//
//   host -> vm -> vm_config
//            \-> virtual_disk | passthrough_disk -> file | block_device | storage_volume -> ...
//
// Threading: DiscoverHost runs on the caller's thread and uses the hypervisor and resolver
// exclusively for its duration.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "strata/core/graph.h"
#include "strata/core/query.h"
#include "strata/hypervisor/hypervisor.h"
#include "strata/storage/resolver.h"

namespace strata::agent {

struct DiscoveryRequest {
  std::string host_id;           // node id becomes "host:<host_id>"
  std::vector<std::string> vms;  // names or UUIDs; empty = every VM
};

absl::StatusOr<core::Graph> DiscoverHost(hypervisor::Hypervisor& hypervisor,
                                         storage::StorageResolver& resolver,
                                         const DiscoveryRequest& request);

// Node ids of the things discovery creates itself (the resolver owns the storage ids).
std::string HostNodeId(std::string_view host_id);
std::string VmNodeId(std::string_view uuid);

}  // namespace strata::agent
