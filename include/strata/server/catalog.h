// The catalog of stratad: hosts, clusters, VMs, the resource graph of each host, the event log,
// backups with their items, jobs, and retention policies. `Catalog` is the repository interface
// callers program against; `OpenSqliteCatalog` returns the embedded SQLite implementation (a
// PostgreSQL one can be added later behind the same interface).
//
// Threading: every Catalog implementation is thread-safe. The SQLite one keeps one connection
// guarded by a mutex, so calls from several threads are serialised; several processes (or several
// Catalog objects) may open the same file, SQLite's locking plus a busy timeout arbitrate.
// Ownership: the caller owns what OpenSqliteCatalog returns; every value returned is a copy.
//
// Errors: absl::Status with whole messages naming the object ("host 'host-a' not found").
// NotFound for unknown ids, AlreadyExists for conflicts, InvalidArgument for bad input,
// FailedPrecondition for a call the current state forbids (finishing a finished backup),
// Unavailable when the database stayed locked longer than the busy timeout, Internal otherwise.
//
// Times are wall-clock instants stored with microsecond precision (finer parts are truncated).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "strata/server/retention.h"

namespace strata::server {

using CatalogTime = std::chrono::system_clock::time_point;

// ---- value types ---------------------------------------------------------------------------

struct ClusterRecord {
  std::string name{};

  friend bool operator==(const ClusterRecord&, const ClusterRecord&) = default;
};

enum class HostState { kReachable, kUnreachable };

struct HostRecord {
  std::string id{};        // unique, e.g. "host-a"
  std::string cluster{};   // empty: not in a cluster; otherwise a cluster that exists
  std::string endpoint{};  // agent address, e.g. "10.0.0.5:7443"
  nlohmann::json plugins = nlohmann::json::array();  // plug-ins the agent reported
  HostState state = HostState::kReachable;
  CatalogTime last_heartbeat{};
  CatalogTime registered_at{};  // output only: set by the catalog when the host first appears

  friend bool operator==(const HostRecord&, const HostRecord&) = default;
};

struct VmRecord {
  std::string uuid{};        // unique across the fleet
  std::string name{};        // not necessarily unique across hosts
  std::string host{};        // owning host id (output; ReplaceHostVms sets it)
  std::string state{};       // hypervisor state as reported ("running", "shut off", ...)
  CatalogTime updated_at{};  // output only: when the catalog last saw name, host or state change

  friend bool operator==(const VmRecord&, const VmRecord&) = default;
};

struct HostGraphRecord {
  std::string host_id{};
  int64_t version = 0;
  std::string graph_json{};  // the host's resource graph, JSON text as the agent sent it
  CatalogTime updated_at{};  // output only

  friend bool operator==(const HostGraphRecord&, const HostGraphRecord&) = default;
};

enum class EventKind { kAdded, kRemoved, kModified, kCluster };

struct EventRecord {
  int64_t seq = 0;     // output only: assigned by AppendEvents, strictly increasing, never reused
  std::string host{};  // a known host id
  std::string vm_uuid{};  // empty for cluster events
  EventKind kind = EventKind::kModified;
  CatalogTime time{};
  nlohmann::json detail = nlohmann::json::object();

  friend bool operator==(const EventRecord&, const EventRecord&) = default;
};

enum class Consistency { kCrash, kPause, kQuiesce };
enum class BackupState { kRunning, kSucceeded, kFailed };

struct BackupItem {
  std::string vm_uuid{};
  std::string vm_name{};
  std::string disk_target{};  // e.g. "vda"; unique per (backup, VM)
  std::string source_path{};  // the disk's source when it was backed up
  std::string storage_volume{};
  std::string snapshot_id{};
  std::string path_in_snapshot{};
  int64_t size_bytes = 0;
  std::string checksum{};  // empty when not recorded

  friend bool operator==(const BackupItem&, const BackupItem&) = default;
};

struct BackupRecord {
  std::string id{};    // unique
  std::string name{};  // unique as well; calls taking a backup accept the id or the name
  std::string requester{};
  Consistency consistency = Consistency::kCrash;
  BackupState state = BackupState::kRunning;
  CatalogTime started_at{};
  std::optional<CatalogTime> finished_at{};  // set once the backup is no longer running
  std::string policy{};
  nlohmann::json metadata = nlohmann::json::object();
  std::vector<BackupItem> items{};  // filled by GetBackup; by ListBackups only when asked

  friend bool operator==(const BackupRecord&, const BackupRecord&) = default;
};

struct BackupFinish {
  std::string backup{};                         // id or name
  BackupState state = BackupState::kSucceeded;  // kSucceeded or kFailed
  CatalogTime finished_at{};
  std::vector<BackupItem> items{};  // appended in the same transaction
  // When set: merged into the stored metadata (top-level keys replace, JSON merge-patch).
  std::optional<nlohmann::json> metadata_patch{};
};

struct BackupListOptions {
  std::optional<BackupState> state{};
  std::optional<std::string> vm_uuid{};  // only backups holding an item of this VM
  bool with_items = false;
  int limit = 1000;  // 1..100000; newest first
};

// The newest succeeded backup holding the VM, and that VM's items in it.
struct RestorePoint {
  BackupRecord backup{};  // without items
  std::vector<BackupItem> items{};

  friend bool operator==(const RestorePoint&, const RestorePoint&) = default;
};

enum class JobState { kQueued, kRunning, kSucceeded, kFailed };

struct JobRecord {
  std::string id{};
  std::string kind{};  // e.g. "backup", "restore", "discovery"
  JobState state = JobState::kQueued;
  int progress = 0;  // 0..100
  std::string message{};
  CatalogTime created_at{};  // output only
  CatalogTime updated_at{};  // output only
  nlohmann::json detail = nlohmann::json::object();

  friend bool operator==(const JobRecord&, const JobRecord&) = default;
};

// Fields left empty are not changed. A job in a terminal state (succeeded, failed) cannot change,
// and no job goes back to queued.
struct JobUpdate {
  std::string id{};
  std::optional<JobState> state{};
  std::optional<int> progress{};
  std::optional<std::string> message{};
  std::optional<nlohmann::json> detail{};  // replaces the stored detail
};

struct JobListOptions {
  std::optional<JobState> state{};
  std::optional<std::string> kind{};
  int limit = 1000;  // 1..100000; newest first
};

const char* ToString(HostState state);
const char* ToString(EventKind kind);
const char* ToString(Consistency consistency);
const char* ToString(BackupState state);
const char* ToString(JobState state);
absl::StatusOr<HostState> ParseHostState(const std::string& text);
absl::StatusOr<EventKind> ParseEventKind(const std::string& text);
absl::StatusOr<Consistency> ParseConsistency(const std::string& text);
absl::StatusOr<BackupState> ParseBackupState(const std::string& text);
absl::StatusOr<JobState> ParseJobState(const std::string& text);

// ---- the repository ------------------------------------------------------------------------

class Catalog {
 public:
  virtual ~Catalog() = default;

  // Clusters and hosts. UpsertHost inserts or replaces every field but registered_at; a host
  // naming an unknown cluster is NotFound.
  virtual absl::Status UpsertCluster(const ClusterRecord& cluster) = 0;
  virtual absl::StatusOr<std::vector<ClusterRecord>> ListClusters() = 0;
  virtual absl::Status UpsertHost(const HostRecord& host) = 0;
  virtual absl::StatusOr<HostRecord> GetHost(const std::string& id) = 0;
  virtual absl::StatusOr<std::vector<HostRecord>> ListHosts() = 0;  // ordered by id
  // Changes the state; also the last heartbeat when given.
  virtual absl::Status SetHostState(const std::string& id, HostState state,
                                    std::optional<CatalogTime> last_heartbeat) = 0;

  // VMs. ReplaceHostVms makes `vms` the complete set of VMs of `host`, atomically: VMs of the
  // host that are not listed are removed, a listed VM known on another host moves here.
  virtual absl::Status ReplaceHostVms(const std::string& host,
                                      const std::vector<VmRecord>& vms) = 0;
  // Ordered by host, then name. With a host: only its VMs (an unknown host is NotFound).
  virtual absl::StatusOr<std::vector<VmRecord>> ListVms(const std::optional<std::string>& host) = 0;
  // By UUID first, then by name; a name held by several VMs is InvalidArgument listing them.
  virtual absl::StatusOr<VmRecord> GetVm(const std::string& uuid_or_name) = 0;

  // Resource graph per host: only the latest version is kept. A newer version replaces the
  // stored one; the same version with the same text is a no-op (a retry); anything else is
  // FailedPrecondition. `graph_json` must be valid JSON.
  virtual absl::Status PutHostGraph(const std::string& host, int64_t version,
                                    const std::string& graph_json) = 0;
  virtual absl::StatusOr<HostGraphRecord> GetHostGraph(const std::string& host) = 0;
  virtual absl::StatusOr<std::vector<HostGraphRecord>> ListHostGraphs() = 0;  // ordered by host

  // Events. AppendEvents stores the batch in one transaction and returns the assigned seqs in
  // batch order. ListEvents returns events with seq > after_seq, ascending, at most `limit`
  // (1..10000).
  virtual absl::StatusOr<std::vector<int64_t>> AppendEvents(
      const std::vector<EventRecord>& events) = 0;
  virtual absl::StatusOr<std::vector<EventRecord>> ListEvents(
      int64_t after_seq, int limit, const std::optional<std::string>& host) = 0;
  // The same for one VM's events (by UUID, on whichever host; a VM that is gone still has them).
  virtual absl::StatusOr<std::vector<EventRecord>> ListVmEvents(const std::string& vm_uuid,
                                                                int64_t after_seq, int limit) = 0;

  // Backups. CreateBackup stores the backup and its items in one transaction. AddBackupItems
  // appends items to a running backup. FinishBackup moves a running backup to succeeded or
  // failed (appending items and patching metadata in the same transaction). DeleteBackup
  // removes a backup and its items (not the snapshots: that is the caller's work).
  virtual absl::Status CreateBackup(const BackupRecord& backup) = 0;
  virtual absl::Status AddBackupItems(const std::string& backup,
                                      const std::vector<BackupItem>& items) = 0;
  virtual absl::Status FinishBackup(const BackupFinish& finish) = 0;
  virtual absl::StatusOr<BackupRecord> GetBackup(const std::string& id_or_name) = 0;
  virtual absl::StatusOr<std::vector<BackupRecord>> ListBackups(
      const BackupListOptions& options) = 0;  // newest (started_at) first
  virtual absl::Status DeleteBackup(const std::string& id_or_name) = 0;
  // The newest (by started_at) succeeded backup holding an item of the VM. NotFound when none.
  virtual absl::StatusOr<RestorePoint> LatestRestorePoint(const std::string& vm_uuid) = 0;

  // Jobs. CreateJob sets created_at/updated_at from the catalog's clock; so does UpdateJob for
  // updated_at, and it returns the job as stored.
  virtual absl::Status CreateJob(const JobRecord& job) = 0;
  virtual absl::StatusOr<JobRecord> UpdateJob(const JobUpdate& update) = 0;
  virtual absl::StatusOr<JobRecord> GetJob(const std::string& id) = 0;
  virtual absl::StatusOr<std::vector<JobRecord>> ListJobs(const JobListOptions& options) = 0;

  // Retention policies (strata/server/retention.h), by name. UpsertPolicy inserts or replaces the
  // counts (an invalid policy is InvalidArgument, see ValidateRetentionPolicy). GetPolicy of an
  // unknown name is NotFound "retention policy 'x' not found"; so is DeletePolicy. Backups name
  // their policy as text: deleting a policy leaves them (and their policy field) as they are.
  virtual absl::Status UpsertPolicy(const RetentionPolicy& policy) = 0;
  virtual absl::StatusOr<RetentionPolicy> GetPolicy(const std::string& name) = 0;
  virtual absl::StatusOr<std::vector<RetentionPolicy>> ListPolicies() = 0;  // ordered by name
  virtual absl::Status DeletePolicy(const std::string& name) = 0;
};

struct SqliteCatalogOptions {
  // Source of "now" for registered_at, updated_at, created_at and applied_at. Default: the
  // system clock.
  std::function<CatalogTime()> clock{};
  // How long a write waits for another connection's lock before giving up (Unavailable).
  std::chrono::milliseconds busy_timeout{5000};
};

// Opens (creating when missing) the SQLite catalog at `path` (":memory:" for a private in-memory
// database), sets WAL mode, foreign keys, the busy timeout and synchronous=NORMAL, and applies
// the embedded schema migrations not applied yet, each in its own transaction. A database whose
// schema is newer than this binary knows is refused (FailedPrecondition).
absl::StatusOr<std::unique_ptr<Catalog>> OpenSqliteCatalog(const std::string& path);
absl::StatusOr<std::unique_ptr<Catalog>> OpenSqliteCatalog(const std::string& path,
                                                           const SqliteCatalogOptions& options);

}  // namespace strata::server
