// strata-agent configuration: a TOML file, every key also settable by a command-line flag.
//
//   host_id = "host-a"                      # identity of this host in the resource graph
//   connect = "qemu:///system"              # hypervisor URI (libvirt)
//   [[storage.dir]]                         # directory-backed storage volumes (dir plug-in)
//   name = "gold"
//   path = "/srv/volumes/gold"
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "strata/storage/resolver.h"

namespace strata::agent {

struct AgentConfig {
  std::string host_id;
  std::string connect;
  std::vector<storage::DirVolume> dir_volumes;
};

// Reads and validates a config file. Errors name the file, and the line and key at fault:
// "config '/etc/strata/agent.toml': line 3: 'connect' must be a string".
absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path);
// Parses config text; `origin` names it in errors.
absl::StatusOr<AgentConfig> ParseAgentConfig(std::string_view text, const std::string& origin);
// Renders a config as TOML (used by the sample-site generator).
std::string RenderAgentConfig(const AgentConfig& config);

// The default host id when none is configured: the kernel's host name.
std::string DefaultHostId();

}  // namespace strata::agent
