// strata-agent configuration: a TOML file, every key also settable by a command-line flag.
//
//   host_id = "host-a"                      # identity of this host in the resource graph
//   cluster = "prod"                        # cluster name (optional)
//   connect = "qemu:///system"              # hypervisor URI (libvirt)
//   listen = "127.0.0.1:7071"               # gRPC services; port 0 = any free port
//   server = "127.0.0.1:7070"               # stratad's gRPC address; "" = standalone
//   plugin_dir = "/usr/lib/strata/plugins"  # default: <exe dir>/../lib/strata/plugins
//   hypervisor = "libvirt"                  # name of the hypervisor plug-in
//   reconcile_interval = 30.0               # seconds between reconciliation discoveries; 0 = off
//   event_window_ms = 1000                  # event coalescing window; 0 = no event manager
//   log_level = "info"                      # trace, debug, info, warn, error, off
//   cluster_members = ["host-a=10.0.0.1:7071", "host-b=10.0.0.2:7071"]  # static membership
//   cluster_interval_ms = 1000              # members' health checked this often
//   cluster_timeout_ms = 1000               # deadline of one health check (and of registry's)
//   cluster_membership = "static"           # or "pacemaker" (crm_mon) or "registry" (stratad)
//   [[storage.dir]]                         # directory-backed storage volumes (dir plug-in)
//   name = "gold"
//   path = "/srv/volumes/gold"
//   [[storage.btrfs]]                       # btrfs subvolumes (btrfs plug-in)
//   name = "fast"
//   path = "/srv/btrfs/fast"                # must be a subvolume to be snapshotted
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "strata/agent/cluster.h"
#include "strata/plugin/storage.h"

namespace strata::agent {

inline constexpr char kDefaultListen[] = "127.0.0.1:7071";
inline constexpr char kDefaultServer[] = "127.0.0.1:7070";
inline constexpr char kDefaultStateDir[] = "/var/lib/strata-agent";

struct AgentConfig {
  std::string host_id;
  std::string connect;
  std::vector<plugin::StorageVolumeConfig> dir_volumes;    // [[storage.dir]]
  std::vector<plugin::StorageVolumeConfig> btrfs_volumes;  // [[storage.btrfs]]
  std::string cluster;
  // Static cluster membership (this host may be listed too). With `cluster` set and members
  // listed (or a pacemaker or registry membership), the agent runs the cluster coordinator.
  std::vector<ClusterMember> cluster_members;
  // "static" (cluster_members), "pacemaker" (crm_mon's nodes; cluster_members then only
  // names endpoints that are not "<node>:<cluster_agent_port>") or "registry" (the hosts
  // registered with `server` under `cluster`; `server` must be set).
  std::string cluster_membership = "static";
  int64_t cluster_agent_port = 7071;
  int64_t cluster_interval_ms = 1000;
  int64_t cluster_timeout_ms = 1000;
  std::string listen = kDefaultListen;
  std::string server = kDefaultServer;  // empty: standalone, no registration
  std::string plugin_dir;               // empty: PluginHost::DefaultPluginDirectory()
  std::string hypervisor = "libvirt";
  double reconcile_interval_s = 30;
  // Window of the event manager (hypervisor events coalesced per VM, one change set per
  // window). 0: no event manager; the change log is then fed by whole-host discoveries only.
  int64_t event_window_ms = 1000;
  std::string log_level = "info";
  // Where the agent keeps what must survive a crash (the backup journal).
  std::string state_dir = kDefaultStateDir;
};

// Splits "HOST:PORT" ("[::1]:7071" for IPv6); the port must be 0..65535. The error names `what`:
// "'listen' must look like HOST:PORT, got 'x'".
absl::Status CheckHostPort(const std::string& address, const std::string& what);

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
