// Generates the embedded-default sample site: libvirt test-driver host files whose VMs have real
// disk files (sparse raw and qcow2 made with qemu-img) on two `dir` storage volumes, a pass-through
// block disk and an rbd network disk, plus one agent config per host.
//
//   <dir>/volumes/{gold,silver}/...   disk images
//   <dir>/hosts/<host>.xml            test-driver host files (open as test:///<abs path>)
//   <dir>/agents/<host>.toml          strata-agent configs
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace strata::agent {

struct SampleSite {
  std::string dir;
  std::vector<std::string> hosts;          // host ids
  std::vector<std::string> agent_configs;  // one per host, same order
  int vm_count = 0;
  int image_count = 0;
};

// Creates (or re-creates) the site in `dir`, which must be an absolute path or is made one.
// Existing images are kept when already present, so a second run is quick.
absl::StatusOr<SampleSite> GenerateSampleSite(const std::string& dir);

}  // namespace strata::agent
