// The hosts stratad knows and what it does when agents talk to it: registration, heartbeats,
// change notifications, refreshing a host's graph from its agent, and heartbeat timeouts.
//
// The registry keeps one in-memory entry per host (loaded from the catalog at start, updated by
// agents). "Registered" means registered with THIS server process: a host loaded from the catalog
// is known but not registered, so its heartbeat answers known=false and the agent registers again.
//
// Refreshes (agent Discovery -> catalog PutHostGraph + ReplaceHostVms -> GraphStore) run on the
// registry's own worker threads, never inside an RPC handler, and are coalesced per host: a
// request while one is queued is dropped, a request while one runs queues exactly one more.
// RefreshNow runs one synchronously (REST POST /hosts/{id}/refresh); refreshes of one host are
// serialised by a per-host mutex.
//
// A change set in sequence asks the agent only for the VMs it names (added or modified; removed
// ones are just dropped) and splices them into the host's graph; a whole-host refresh happens at
// registration, after a sequence gap, a cluster event, a failed refresh, or when more than
// `partial_refresh_limit` VMs are pending.
//
// Threading: every public method is thread-safe. Lock order (outer first):
//   state_mu_ (serialises host-state writes to the catalog, so the catalog ends in the state the
//   memory holds) -> host refresh mutex -> mu_ (the host table, held only briefly, never while
//   calling the agent or the catalog) ; the catalog's and the GraphStore's and EventLog's locks are
//   leaves taken without holding mu_.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "strata/server/agent_client.h"
#include "strata/server/catalog.h"
#include "strata/server/event_log.h"
#include "strata/server/graph_store.h"

namespace strata::server {

using Clock = std::function<CatalogTime()>;

struct RegistryOptions {
  std::chrono::milliseconds heartbeat_interval{1000};  // told to agents
  std::chrono::milliseconds heartbeat_timeout{3000};   // older heartbeat -> unreachable
  int refresh_workers = 2;
  size_t partial_refresh_limit = 256;  // more pending changed VMs: refresh the whole host
  // After a failed refresh, the next heartbeat at least this much later schedules another.
  std::chrono::milliseconds refresh_retry{5000};
  std::string server_id;  // empty: generated (random) at construction
  Clock clock;            // empty: the system clock
};

// What an agent says when it registers (strata.v1.RegisterRequest without the proto).
struct RegisterInfo {
  std::string host_id;
  std::string cluster;
  std::string endpoint;
  std::string version;
  nlohmann::json plugins = nlohmann::json::array();  // [{kind,name,version,capabilities,file}]
  int64_t started_at_unix_ms = 0;
  uint64_t last_sequence = 0;
};

struct RegisterAnswer {
  std::string server_id;
  int heartbeat_interval_ms = 0;
  uint64_t acknowledged_sequence = 0;
};

struct ChangeInfo {
  uint64_t sequence = 0;
  std::string vm_uuid;
  std::string vm_name;
  EventKind kind = EventKind::kModified;
  CatalogTime time{};
  std::string source;
};

struct ChangeSetInfo {
  std::string host_id;
  uint64_t first_sequence = 0;
  uint64_t last_sequence = 0;
  std::vector<ChangeInfo> changes;
};

struct NotifyAnswer {
  uint64_t acknowledged_sequence = 0;
  bool resync = false;  // a gap was seen: a full refresh of the host is scheduled
};

// A host as the REST API shows it.
struct HostView {
  HostRecord record;        // catalog fields, with the live state and last heartbeat
  bool registered = false;  // registered with this server process
  std::string agent_version;
  int64_t agent_started_at_unix_ms = 0;
  int64_t graph_version = 0;  // 0: no graph yet
  size_t vm_count = 0;
  std::optional<CatalogTime> last_refresh;
  std::string last_refresh_error;
};

struct RefreshResult {
  std::string host;
  size_t vm_count = 0;
  int64_t version = 0;
};

struct RegistryCounters {
  uint64_t registrations = 0;
  uint64_t heartbeats = 0;
  uint64_t unknown_heartbeats = 0;
  uint64_t notifications = 0;
  uint64_t sequence_gaps = 0;
  uint64_t refreshes_ok = 0;
  uint64_t refreshes_failed = 0;
  uint64_t refreshes_partial = 0;  // of refreshes_ok: only the changed VMs were asked for
  uint64_t hosts_reachable = 0;
  uint64_t hosts_unreachable = 0;
};

class HostRegistry {
 public:
  // Every reference must outlive the registry.
  HostRegistry(Catalog& catalog, GraphStore& graphs, EventLog& events, AgentConnector& agents,
               RegistryOptions options);
  ~HostRegistry();  // Stop()
  HostRegistry(const HostRegistry&) = delete;
  HostRegistry& operator=(const HostRegistry&) = delete;

  // Loads hosts and graph versions from the catalog (before Start). Hosts marked reachable get
  // one heartbeat timeout of grace from now to register again.
  absl::Status Load();
  void Start();  // starts the refresh workers
  // Stops the workers (a running refresh finishes) and stores each registered host's last
  // heartbeat in the catalog. Idempotent.
  void Stop();

  absl::StatusOr<RegisterAnswer> Register(const RegisterInfo& info);
  // False when the host is not registered with this process (the agent must register again).
  bool Heartbeat(const std::string& host_id, uint64_t last_sequence);
  absl::StatusOr<NotifyAnswer> NotifyChanges(const ChangeSetInfo& change_set);

  void ScheduleRefresh(const std::string& host_id);
  absl::StatusOr<RefreshResult> RefreshNow(const std::string& host_id);
  // For tests: waits until no refresh is queued or running. False on timeout.
  bool WaitForIdle(std::chrono::milliseconds timeout);

  // Marks every reachable host whose last heartbeat is older than the timeout at `now`
  // unreachable (catalog state + a cluster event "host-unreachable"). Returns their ids.
  std::vector<std::string> CheckHeartbeats(CatalogTime now);

  std::vector<HostView> ListHosts() const;  // ordered by id
  absl::StatusOr<HostView> GetHost(const std::string& host_id) const;
  RegistryCounters counters() const;
  const std::string& server_id() const { return options_.server_id; }
  const RegistryOptions& options() const { return options_; }
  CatalogTime Now() const { return options_.clock(); }

 private:
  struct Entry;
  absl::Status WriteState(const std::string& host_id, const char* event, nlohmann::json detail);
  void AppendHostEvent(const std::string& host_id, const char* event, nlohmann::json detail);
  void WorkerLoop();
  // Runs the refresh the host's pending changes call for (partial or whole).
  absl::StatusOr<RefreshResult> RefreshPending(const std::string& host_id);
  struct Pending;
  absl::StatusOr<RefreshResult> Refresh(const std::string& host_id, const Pending* partial);
  HostView ViewOf(const Entry& entry) const;

  Catalog& catalog_;
  GraphStore& graphs_;
  EventLog& events_;
  AgentConnector& agents_;
  RegistryOptions options_;

  std::mutex state_mu_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable idle_cv_;
  absl::flat_hash_map<std::string, std::unique_ptr<Entry>> hosts_;
  std::deque<std::string> queue_;
  int running_ = 0;
  bool stop_ = false;
  bool started_ = false;
  std::vector<std::thread> workers_;
  RegistryCounters counters_;
};

}  // namespace strata::server
