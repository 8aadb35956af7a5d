// How stratad calls agents back: discovery of a host's resource graph through the agent's
// `strata.v1.Discovery` service.
//
// Threading: implementations are thread-safe; calls block the calling thread (a refresh worker or
// an HTTP worker) for at most the configured deadline.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "strata/core/graph.h"
#include "strata/server/catalog.h"

namespace strata::server {

struct DiscoveryResult {
  std::string host_id;         // as the agent names itself
  core::Graph graph;           // the host's resource graph (or the asked VMs' part of it)
  std::vector<VmRecord> vms;   // uuid, name, state (host is filled by the catalog)
  uint64_t agent_version = 0;  // the agent's discovery counter
};

// What stratad asks an agent to back up (strata.v1.BackupRequest without the proto).
struct AgentBackupParams {
  std::string backup_id;
  std::string name;
  std::vector<std::string> vms;  // UUIDs on that host
  std::string consistency;       // "crash", "pause", "quiesce"
  std::string fallback;          // "", "pause", "crash"
  bool verify = false;
  std::string requester;
  std::string policy;
  std::string snapshot_name;  // empty: `name`
  bool forwarded = false;
  // Non-empty: a cluster backup; the agent asked coordinates it (forwards each VM to its owner).
  std::string cluster;
  std::string vm_snapshot;  // "": the agent's default ("auto")
};

// One progress step reported by an agent (backup or restore).
struct AgentProgress {
  std::string vm_uuid;  // empty: a step of the whole operation
  std::string vm_name;
  std::string step;
  std::string message;
  int percent = 0;
};
using AgentProgressFn = std::function<void(const AgentProgress&)>;

struct AgentBackupResult {
  std::string manifest_json;  // strata/backup/manifest.h
  core::Graph graph;
  std::map<std::string, int64_t> timings_ms;  // a cluster coordinator's (BackupResponse)
};

struct AgentRestoreParams {
  std::string restore_id;
  std::string vm;
  std::string as_name;
  std::vector<std::string> disks;
  std::string manifest_json;
  bool verify = false;
  bool start = false;
  std::string target_dir;
};

struct AgentRestoreResult {
  std::string vm_uuid;
  std::string vm_name;
  std::vector<std::string> disk_paths;
  bool verified = false;
  std::string message;
};

class AgentConnector {
 public:
  virtual ~AgentConnector() = default;
  // Discovery from the agent listening at `endpoint` (host:port): the whole host when `vms` is
  // empty, otherwise only those VMs (UUIDs) with the host node (a VM that is gone is NotFound).
  // Errors keep their code (Unavailable when the agent cannot be reached, DeadlineExceeded when
  // it is too slow) and name the host and the endpoint.
  virtual absl::StatusOr<DiscoveryResult> Discover(const std::string& host_id,
                                                   const std::string& endpoint,
                                                   const std::vector<std::string>& vms) = 0;

  // Backup and restore on one agent, with progress (called on the calling thread). Errors keep
  // the agent's code; a stream that breaks off is Unavailable naming the host.
  virtual absl::StatusOr<AgentBackupResult> RunBackup(const std::string& host_id,
                                                      const std::string& endpoint,
                                                      const AgentBackupParams& params,
                                                      const AgentProgressFn& progress) {
    (void)endpoint, (void)params, (void)progress;
    return absl::UnimplementedError("backup through host '" + host_id + "' is not supported");
  }
  virtual absl::StatusOr<AgentRestoreResult> RunRestore(const std::string& host_id,
                                                        const std::string& endpoint,
                                                        const AgentRestoreParams& params,
                                                        const AgentProgressFn& progress) {
    (void)endpoint, (void)params, (void)progress;
    return absl::UnimplementedError("restore through host '" + host_id + "' is not supported");
  }
  // True when the snapshot existed.
  virtual absl::StatusOr<bool> DeleteSnapshot(const std::string& host_id,
                                              const std::string& endpoint,
                                              const std::string& storage_volume,
                                              const std::string& snapshot_id) {
    (void)endpoint, (void)storage_volume, (void)snapshot_id;
    return absl::UnimplementedError("snapshot deletion through host '" + host_id +
                                    "' is not supported");
  }
};

struct GrpcAgentConnectorOptions {
  std::chrono::milliseconds deadline{30000};
  std::chrono::milliseconds operation_deadline{std::chrono::hours(12)};  // backup, restore
};

// gRPC implementation; one channel per endpoint, created on first use and kept.
std::unique_ptr<AgentConnector> MakeGrpcAgentConnector(const GrpcAgentConnectorOptions& options);

}  // namespace strata::server
