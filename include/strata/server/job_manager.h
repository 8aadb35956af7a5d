// Backups, restores and prunes as jobs of stratad.
//
// A backup request names VMs (names or UUIDs), a host, a graph selector or a cluster; the
// manager resolves them against the catalog and the merged graph, stores a running backup and a
// job, and runs one agent backup per host (in parallel, one thread per host). Progress from the
// agents' streams goes into the job's detail (per VM: step, message, state) and percentage.
// When every host has answered, the catalog gets the backup's items (the disks of the VMs that
// succeeded) and the manifests, and the backup ends succeeded (every VM), partial (some; stored
// as succeeded with metadata.state = "partial") or failed (none). A host whose agent cannot be
// reached, or whose stream breaks off, fails its VMs with the reason.
//
// A restore finds the manifest holding the VM in the backup's catalog record and asks the agent
// of the target host (default: where the VM was backed up) to restore from it.
//
// Prune applies a retention policy to the succeeded and failed backups that name it, asks the
// agents to delete the snapshots no kept backup references, and removes the expired backups.
//
// Threading: every public method is thread-safe; jobs run on threads of their own, joined by
// Stop(). Ownership: borrows everything, which must outlive the manager.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "strata/server/agent_client.h"
#include "strata/server/catalog.h"
#include "strata/server/graph_store.h"
#include "strata/server/host_registry.h"

namespace strata::server {

struct BackupSpec {
  std::vector<std::string> vms;  // names or UUIDs
  std::string host;              // every VM of this host
  std::string select;            // a graph selector, e.g. "type=vm name=web*"
  std::string cluster;           // every VM of the cluster's hosts
  std::string consistency = "crash";
  std::string fallback;  // "", "pause", "crash"
  std::string name;      // empty: "<policy|backup>-YYYYMMDD-HHMMSS"
  std::string policy;
  bool verify = false;
  std::string requester;
  // The VM-level snapshot: "" or "auto" (internal on the test driver, an external overlay on
  // QEMU), "internal", "external", "none".
  std::string vm_snapshot;
};

struct RestoreSpec {
  std::string backup;  // id or name; empty: the newest succeeded backup holding the VM
  std::string vm;      // name or UUID as backed up
  std::string as_name;
  std::vector<std::string> disks;
  bool verify = false;
  std::optional<bool> start;
  std::string host;  // target host; empty: the host that took the backup
  std::string target_dir;
  std::string requester;
};

struct PruneSpec {
  std::string policy;  // the policy's name (catalog); its backups are the candidates
  bool dry_run = false;
};

struct JobStarted {
  JobRecord job;
  std::string backup_id;  // backups only
  std::string backup_name;
};

class JobManager {
 public:
  JobManager(Catalog& catalog, HostRegistry& registry, GraphStore& graphs, AgentConnector& agents);
  ~JobManager();  // Stop()
  JobManager(const JobManager&) = delete;
  JobManager& operator=(const JobManager&) = delete;

  // Validation errors (InvalidArgument, NotFound, AlreadyExists) come back at once; everything
  // after the job starts is in the job.
  absl::StatusOr<JobStarted> StartBackup(const BackupSpec& spec);
  absl::StatusOr<JobStarted> StartRestore(const RestoreSpec& spec);
  // Synchronous. Returns {"policy","dry_run","kept":[{id,name,reasons}],"expired":[{id,name}],
  // "snapshots_deleted":[...],"errors":[...]}.
  absl::StatusOr<nlohmann::json> Prune(const PruneSpec& spec);
  // Deletes one backup: its snapshots that no other backup references, then its record.
  absl::StatusOr<nlohmann::json> DeleteBackup(const std::string& id_or_name);

  // Change notification for job streams (GET /api/v1/jobs/{id}/stream): a counter per job that
  // grows with each change this manager stores (progress, a VM's result, state). 0 for a job it
  // has not written, or once the job has ended (a waiter then sees a change and reads the end).
  uint64_t JobVersion(const std::string& id);
  // Waits until JobVersion(id) differs from `seen`, WakeWaiters() is called or `timeout` passes;
  // returns the version. Waits on a lock of its own, never on one a job's worker holds.
  uint64_t WaitForJobChange(const std::string& id, uint64_t seen,
                            std::chrono::milliseconds timeout);
  // Wakes every WaitForJobChange at once (the HTTP server stops: its streams must end now).
  void WakeWaiters();

  // For tests: waits until no job runs. False on timeout.
  bool WaitForIdle(std::chrono::milliseconds timeout);
  // Joins running jobs (they finish; agents' operations are not interrupted).
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::server
