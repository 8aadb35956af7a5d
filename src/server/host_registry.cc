#include "strata/server/host_registry.h"

#include <algorithm>
#include <random>

#include "absl/container/flat_hash_set.h"
#include "spdlog/spdlog.h"
#include "strata/core/query.h"
#include "strata/util/strings.h"
#include "time_format.h"

namespace strata::server {
namespace {

std::string RandomServerId() {
  std::random_device rd;
  std::mt19937_64 rng((uint64_t{rd()} << 32) ^ rd());
  char buf[32];
  std::snprintf(buf, sizeof(buf), "stratad-%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

std::string Msg(const absl::Status& s) { return std::string(util::ToStd(s.message())); }

// Adds what the server knows about the host to the graph the agent sent: the host node (in case
// the agent left it out) and, for a host in a cluster, the cluster node with its member edge.
absl::Status Enrich(core::Graph& graph, const std::string& host_id, const std::string& cluster) {
  const std::string host_node_id = util::Cat("host:", host_id);
  absl::StatusOr<core::NodeIndex> host_node =
      graph.UpsertNode(core::NodeType::kHost, host_node_id, "");
  if (!host_node.ok()) return host_node.status();
  if (graph.Name(*host_node).empty())
    graph.UpsertNode(core::NodeType::kHost, host_node_id, host_id).IgnoreError();
  if (!cluster.empty()) {
    absl::StatusOr<core::NodeIndex> cluster_node =
        graph.UpsertNode(core::NodeType::kCluster, util::Cat("cluster:", cluster), cluster);
    if (!cluster_node.ok()) return cluster_node.status();
    graph.AddEdge(*cluster_node, *host_node, core::EdgeType::kHasMember);
  }
  return absl::OkStatus();
}

// VM records from the graph, for agents that send no VM summaries.
std::vector<VmRecord> VmsFromGraph(const core::Graph& graph) {
  std::vector<VmRecord> vms;
  for (core::NodeIndex n : graph.NodesOfType(core::NodeType::kVm)) {
    VmRecord vm;
    vm.uuid = std::string(util::StripPrefix(graph.Id(n), "vm:"));
    vm.name = std::string(graph.Name(n));
    vm.state = std::string(graph.Attr(n, "state").value_or(""));
    vms.push_back(std::move(vm));
  }
  return vms;
}

}  // namespace

struct HostRegistry::Pending {
  std::vector<std::string> changed;  // sorted UUIDs
  std::vector<std::string> removed;
};

struct HostRegistry::Entry {
  HostRecord record;
  bool registered = false;
  std::string agent_version;
  int64_t agent_started_at_unix_ms = 0;
  CatalogTime grace_from{};  // loaded hosts: the timeout counts from here if later
  uint64_t acked_sequence = 0;
  int64_t graph_version = 0;
  size_t vm_count = 0;
  std::optional<CatalogTime> last_refresh;
  std::string last_refresh_error;
  bool needs_refresh = false;  // the last refresh failed
  CatalogTime last_refresh_attempt{};
  bool queued = false;
  bool running = false;
  bool again = false;
  // Changes not yet applied to the graph. `full` wins over the VM sets.
  bool full_refresh = true;
  absl::flat_hash_set<std::string> changed_vms;
  absl::flat_hash_set<std::string> removed_vms;
  std::shared_ptr<std::mutex> refresh_mu = std::make_shared<std::mutex>();
};

HostRegistry::HostRegistry(Catalog& catalog, GraphStore& graphs, EventLog& events,
                           AgentConnector& agents, RegistryOptions options)
    : catalog_(catalog),
      graphs_(graphs),
      events_(events),
      agents_(agents),
      options_(std::move(options)) {
  if (options_.server_id.empty()) options_.server_id = RandomServerId();
  if (!options_.clock) options_.clock = [] { return std::chrono::system_clock::now(); };
  if (options_.refresh_workers < 1) options_.refresh_workers = 1;
}

HostRegistry::~HostRegistry() { Stop(); }

absl::Status HostRegistry::Load() {
  absl::StatusOr<std::vector<HostRecord>> hosts = catalog_.ListHosts();
  if (!hosts.ok()) return hosts.status();
  absl::StatusOr<std::vector<HostGraphRecord>> graphs = catalog_.ListHostGraphs();
  if (!graphs.ok()) return graphs.status();
  const CatalogTime now = Now();
  std::lock_guard lock(mu_);
  for (HostRecord& host : *hosts) {
    auto entry = std::make_unique<Entry>();
    entry->grace_from = now;
    entry->record = std::move(host);
    hosts_[entry->record.id] = std::move(entry);
  }
  for (const HostGraphRecord& graph : *graphs) {
    auto it = hosts_.find(graph.host_id);
    if (it == hosts_.end()) continue;
    it->second->graph_version = graph.version;
    it->second->vm_count = graphs_.ReadHost(graph.host_id, [](const core::Graph* g) {
      return g ? g->NodesOfType(core::NodeType::kVm).size() : size_t{0};
    });
  }
  return absl::OkStatus();
}

void HostRegistry::Start() {
  std::lock_guard lock(mu_);
  if (started_) return;
  started_ = true;
  stop_ = false;
  for (int i = 0; i < options_.refresh_workers; ++i)
    workers_.emplace_back([this] { WorkerLoop(); });
}

void HostRegistry::Stop() {
  std::vector<std::thread> workers;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    workers.swap(workers_);
  }
  work_cv_.notify_all();
  for (std::thread& t : workers) t.join();
  // Heartbeats are kept in memory while running; store the last one of each registered host.
  std::vector<std::pair<std::string, std::pair<HostState, CatalogTime>>> beats;
  {
    std::lock_guard lock(mu_);
    if (!started_) return;
    started_ = false;
    for (const auto& [id, entry] : hosts_) {
      if (entry->registered) {
        beats.push_back({id, {entry->record.state, entry->record.last_heartbeat}});
      }
    }
  }
  std::lock_guard state_lock(state_mu_);
  for (const auto& [id, beat] : beats) {
    if (absl::Status s = catalog_.SetHostState(id, beat.first, beat.second); !s.ok()) {
      spdlog::warn("storing the last heartbeat of host '{}': {}", id, Msg(s));
    }
  }
}

void HostRegistry::AppendHostEvent(const std::string& host_id, const char* event,
                                   nlohmann::json detail) {
  detail["event"] = event;
  EventRecord record;
  record.host = host_id;
  record.kind = EventKind::kCluster;
  record.time = Now();
  record.detail = std::move(detail);
  if (auto seqs = events_.Append({record}); !seqs.ok()) {
    spdlog::warn("recording event '{}' of host '{}': {}", event, host_id, Msg(seqs.status()));
  }
}

absl::Status HostRegistry::WriteState(const std::string& host_id, const char* event,
                                      nlohmann::json detail) {
  std::lock_guard state_lock(state_mu_);
  HostState state;
  CatalogTime last_heartbeat;
  {
    std::lock_guard lock(mu_);
    auto it = hosts_.find(host_id);
    if (it == hosts_.end()) return absl::NotFoundError(util::Cat("host '", host_id, "' not found"));
    state = it->second->record.state;
    last_heartbeat = it->second->record.last_heartbeat;
  }
  absl::Status status = catalog_.SetHostState(host_id, state, last_heartbeat);
  if (!status.ok()) {
    spdlog::warn("storing state of host '{}': {}", host_id, Msg(status));
  }
  detail["state"] = ToString(state);
  detail["last_heartbeat"] = FormatTime(last_heartbeat);
  AppendHostEvent(host_id, event, std::move(detail));
  return status;
}

absl::StatusOr<RegisterAnswer> HostRegistry::Register(const RegisterInfo& info) {
  if (info.host_id.empty()) return absl::InvalidArgumentError("register: host_id is empty");
  if (info.endpoint.empty()) {
    return absl::InvalidArgumentError(
        util::Cat("register of host '", info.host_id, "': endpoint is empty"));
  }
  if (!info.plugins.is_array()) {
    return absl::InvalidArgumentError(
        util::Cat("register of host '", info.host_id, "': plugins must be a list"));
  }
  const CatalogTime now = Now();
  bool restarted = false;
  bool was_unreachable = false;
  {
    std::lock_guard state_lock(state_mu_);
    if (!info.cluster.empty()) {
      if (absl::Status s = catalog_.UpsertCluster(ClusterRecord{info.cluster}); !s.ok()) return s;
    }
    HostRecord record;
    record.id = info.host_id;
    record.cluster = info.cluster;
    record.endpoint = info.endpoint;
    record.plugins = info.plugins;
    record.state = HostState::kReachable;
    record.last_heartbeat = now;
    if (absl::Status s = catalog_.UpsertHost(record); !s.ok()) return s;
    absl::StatusOr<HostRecord> stored = catalog_.GetHost(info.host_id);
    if (!stored.ok()) return stored.status();
    std::lock_guard lock(mu_);
    auto& slot = hosts_[info.host_id];
    if (!slot) slot = std::make_unique<Entry>();
    Entry& entry = *slot;
    restarted = entry.registered && entry.agent_started_at_unix_ms != info.started_at_unix_ms;
    was_unreachable = entry.record.state == HostState::kUnreachable && !entry.record.id.empty();
    entry.record = *std::move(stored);
    entry.record.last_heartbeat = now;
    entry.registered = true;
    entry.agent_version = info.version;
    entry.agent_started_at_unix_ms = info.started_at_unix_ms;
    entry.acked_sequence = info.last_sequence;
    entry.full_refresh = true;
    ++counters_.registrations;
  }
  spdlog::info("host '{}' registered (agent {} at {}, cluster '{}', {} plug-ins{})", info.host_id,
               info.version, info.endpoint, info.cluster, info.plugins.size(),
               restarted ? ", agent restarted" : "");
  if (was_unreachable) spdlog::info("host '{}' is reachable again", info.host_id);
  AppendHostEvent(info.host_id, "host-registered",
                  {{"endpoint", info.endpoint},
                   {"version", info.version},
                   {"restarted", restarted},
                   {"state", "reachable"}});
  ScheduleRefresh(info.host_id);
  RegisterAnswer answer;
  answer.server_id = options_.server_id;
  answer.heartbeat_interval_ms = static_cast<int>(options_.heartbeat_interval.count());
  answer.acknowledged_sequence = info.last_sequence;
  return answer;
}

bool HostRegistry::Heartbeat(const std::string& host_id, uint64_t /*last_sequence*/) {
  const CatalogTime now = Now();
  bool became_reachable = false;
  bool refresh = false;
  {
    std::lock_guard lock(mu_);
    auto it = hosts_.find(host_id);
    if (it == hosts_.end() || !it->second->registered) {
      ++counters_.unknown_heartbeats;
      return false;
    }
    Entry& entry = *it->second;
    ++counters_.heartbeats;
    entry.record.last_heartbeat = now;
    if (entry.record.state == HostState::kUnreachable) {
      entry.record.state = HostState::kReachable;
      entry.full_refresh = true;  // what happened while it was away is not known
      became_reachable = true;
      refresh = true;
    } else if (entry.needs_refresh && now - entry.last_refresh_attempt >= options_.refresh_retry) {
      refresh = true;
    }
  }
  if (became_reachable) {
    spdlog::info("host '{}' is reachable again", host_id);
    WriteState(host_id, "host-reachable", nlohmann::json::object()).IgnoreError();
  }
  if (refresh) ScheduleRefresh(host_id);
  return true;
}

absl::StatusOr<NotifyAnswer> HostRegistry::NotifyChanges(const ChangeSetInfo& change_set) {
  const std::string& host_id = change_set.host_id;
  if (host_id.empty()) return absl::InvalidArgumentError("change set: host_id is empty");
  if (change_set.last_sequence < change_set.first_sequence) {
    return absl::InvalidArgumentError(
        util::Cat("change set of host '", host_id, "': last_sequence ", change_set.last_sequence,
                  " is before first_sequence ", change_set.first_sequence));
  }
  NotifyAnswer answer;
  std::vector<EventRecord> records;
  {
    std::lock_guard lock(mu_);
    auto it = hosts_.find(host_id);
    if (it == hosts_.end() || !it->second->registered) {
      return absl::FailedPreconditionError(
          util::Cat("host '", host_id, "' is not registered with this server; register again"));
    }
    Entry& entry = *it->second;
    entry.record.last_heartbeat = Now();  // a notification shows the agent is alive
    answer.resync = change_set.first_sequence > entry.acked_sequence + 1;
    if (answer.resync) entry.full_refresh = true;
    for (const ChangeInfo& change : change_set.changes) {
      if (change.sequence != 0 && change.sequence <= entry.acked_sequence) continue;  // a retry
      if (change.kind == EventKind::kCluster || change.vm_uuid.empty()) {
        entry.full_refresh = true;
      } else if (change.kind == EventKind::kRemoved) {
        entry.changed_vms.erase(change.vm_uuid);
        entry.removed_vms.insert(change.vm_uuid);
      } else {
        entry.changed_vms.insert(change.vm_uuid);
      }
      EventRecord record;
      record.host = host_id;
      record.vm_uuid = change.kind == EventKind::kCluster ? "" : change.vm_uuid;
      record.kind = change.kind;
      record.time = change.time.time_since_epoch().count() == 0 ? Now() : change.time;
      record.detail = {
          {"sequence", change.sequence}, {"vm_name", change.vm_name}, {"source", change.source}};
      if (change.kind == EventKind::kCluster && !change.vm_uuid.empty()) {
        record.detail["vm_uuid"] = change.vm_uuid;
      }
      records.push_back(std::move(record));
    }
    if (entry.changed_vms.size() + entry.removed_vms.size() > options_.partial_refresh_limit) {
      entry.full_refresh = true;
    }
    answer.acknowledged_sequence = std::max(entry.acked_sequence, change_set.last_sequence);
  }
  if (!records.empty()) {
    absl::StatusOr<std::vector<int64_t>> seqs = events_.Append(records);
    if (!seqs.ok()) return seqs.status();  // not acknowledged: the agent sends them again
  }
  {
    std::lock_guard lock(mu_);
    auto it = hosts_.find(host_id);
    if (it != hosts_.end()) {
      it->second->acked_sequence =
          std::max(it->second->acked_sequence, answer.acknowledged_sequence);
    }
    ++counters_.notifications;
    if (answer.resync) ++counters_.sequence_gaps;
  }
  if (answer.resync) {
    spdlog::warn("host '{}': change sequence gap (got {}..{}), resynchronising the host", host_id,
                 change_set.first_sequence, change_set.last_sequence);
  }
  ScheduleRefresh(host_id);
  return answer;
}

void HostRegistry::ScheduleRefresh(const std::string& host_id) {
  {
    std::lock_guard lock(mu_);
    auto it = hosts_.find(host_id);
    if (it == hosts_.end()) return;
    Entry& entry = *it->second;
    if (entry.running) {
      entry.again = true;
      return;
    }
    if (entry.queued) return;
    entry.queued = true;
    queue_.push_back(host_id);
  }
  work_cv_.notify_one();
}

void HostRegistry::WorkerLoop() {
  std::unique_lock lock(mu_);
  while (true) {
    work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (stop_) break;
    std::string host_id = std::move(queue_.front());
    queue_.pop_front();
    auto it = hosts_.find(host_id);
    if (it == hosts_.end()) continue;
    it->second->queued = false;
    it->second->running = true;
    ++running_;
    lock.unlock();
    absl::StatusOr<RefreshResult> result = RefreshPending(host_id);
    if (!result.ok())
      spdlog::warn("refresh of host '{}' failed: {}", host_id, Msg(result.status()));
    lock.lock();
    --running_;
    it = hosts_.find(host_id);
    if (it != hosts_.end()) {
      it->second->running = false;
      if (it->second->again) {
        it->second->again = false;
        it->second->queued = true;
        queue_.push_back(host_id);
      }
    }
    if (queue_.empty() && running_ == 0) idle_cv_.notify_all();
  }
}

bool HostRegistry::WaitForIdle(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return idle_cv_.wait_for(lock, timeout, [&] { return queue_.empty() && running_ == 0; });
}

absl::StatusOr<RefreshResult> HostRegistry::RefreshNow(const std::string& host_id) {
  return Refresh(host_id, nullptr);
}

absl::StatusOr<RefreshResult> HostRegistry::RefreshPending(const std::string& host_id) {
  Pending pending;
  bool full = false;
  {
    std::lock_guard lock(mu_);
    auto it = hosts_.find(host_id);
    if (it == hosts_.end()) return absl::NotFoundError(util::Cat("host '", host_id, "' not found"));
    Entry& entry = *it->second;
    full = entry.full_refresh || entry.needs_refresh || entry.graph_version == 0;
    if (!full) {
      pending.changed.assign(entry.changed_vms.begin(), entry.changed_vms.end());
      pending.removed.assign(entry.removed_vms.begin(), entry.removed_vms.end());
      entry.changed_vms.clear();
      entry.removed_vms.clear();
    }
  }
  if (full) return Refresh(host_id, nullptr);
  if (pending.changed.empty() && pending.removed.empty()) {
    return RefreshResult{host_id, 0, 0};  // nothing pending (e.g. only retries were sent)
  }
  std::sort(pending.changed.begin(), pending.changed.end());
  std::sort(pending.removed.begin(), pending.removed.end());
  return Refresh(host_id, &pending);
}

absl::StatusOr<RefreshResult> HostRegistry::Refresh(const std::string& host_id,
                                                    const Pending* partial) {
  std::shared_ptr<std::mutex> host_mu;
  std::string endpoint;
  std::string cluster;
  {
    std::lock_guard lock(mu_);
    auto it = hosts_.find(host_id);
    if (it == hosts_.end()) return absl::NotFoundError(util::Cat("host '", host_id, "' not found"));
    host_mu = it->second->refresh_mu;
    endpoint = it->second->record.endpoint;
    cluster = it->second->record.cluster;
    it->second->last_refresh_attempt = Now();
    if (partial == nullptr) {
      // Everything pending until now is covered by this whole-host discovery.
      it->second->full_refresh = false;
      it->second->changed_vms.clear();
      it->second->removed_vms.clear();
    }
  }
  std::lock_guard host_lock(*host_mu);
  auto fail = [&](absl::Status status) {
    std::lock_guard lock(mu_);
    ++counters_.refreshes_failed;
    if (auto it = hosts_.find(host_id); it != hosts_.end()) {
      it->second->needs_refresh = true;
      it->second->full_refresh = true;
      it->second->last_refresh_error = Msg(status);
    }
    return status;
  };
  static const std::vector<std::string> kWholeHost;
  absl::StatusOr<DiscoveryResult> found;
  if (partial == nullptr || !partial->changed.empty()) {
    found = agents_.Discover(host_id, endpoint, partial ? partial->changed : kWholeHost);
    if (!found.ok() && partial != nullptr && absl::IsNotFound(found.status())) {
      // A changed VM is gone again (its removal is on its way): ask for the whole host.
      spdlog::debug("host '{}': partial refresh: {}; refreshing the whole host", host_id,
                    Msg(found.status()));
      found = agents_.Discover(host_id, endpoint, kWholeHost);
      partial = nullptr;
    }
    if (!found.ok()) return fail(found.status());
    if (!found->host_id.empty() && found->host_id != host_id) {
      return fail(
          absl::FailedPreconditionError(util::Cat("the agent at '", endpoint, "' answers as host '",
                                                  found->host_id, "', not '", host_id, "'")));
    }
  } else {
    found = DiscoveryResult{};
  }
  core::Graph graph;
  if (partial == nullptr) {
    graph = std::move(found->graph);
  } else {
    // Splice: drop the changed and removed VMs' parts of the current graph, merge the new parts.
    bool had_graph = graphs_.ReadHost(host_id, [&](const core::Graph* current) {
      if (current != nullptr) graph = *current;
      return current != nullptr;
    });
    if (!had_graph)
      return fail(absl::FailedPreconditionError(
          util::Cat("host '", host_id, "' has no graph to apply changes to")));
    for (const auto* uuids : {&partial->removed, &partial->changed}) {
      for (const std::string& uuid : *uuids) {
        if (std::optional<core::NodeIndex> vm = graph.Find(util::Cat("vm:", uuid))) {
          core::RemoveWithOrphans(graph, *vm);
        }
      }
    }
    if (absl::Status s = graph.Merge(found->graph); !s.ok()) return fail(s);
  }
  if (absl::Status s = Enrich(graph, host_id, cluster); !s.ok()) return fail(s);
  std::vector<VmRecord> vms =
      partial != nullptr || found->vms.empty() ? VmsFromGraph(graph) : std::move(found->vms);
  const std::string json = core::ToJson(graph, core::WholeGraph(graph)).dump();
  int64_t version;
  {
    std::lock_guard lock(mu_);
    auto it = hosts_.find(host_id);
    if (it == hosts_.end()) return absl::NotFoundError(util::Cat("host '", host_id, "' not found"));
    version = ++it->second->graph_version;
  }
  if (absl::Status s = catalog_.PutHostGraph(host_id, version, json); !s.ok()) return fail(s);
  if (absl::Status s = catalog_.ReplaceHostVms(host_id, vms); !s.ok()) return fail(s);
  if (absl::Status s = graphs_.ReplaceHost(host_id, std::move(graph)); !s.ok()) return fail(s);
  {
    std::lock_guard lock(mu_);
    ++counters_.refreshes_ok;
    if (partial != nullptr) ++counters_.refreshes_partial;
    if (auto it = hosts_.find(host_id); it != hosts_.end()) {
      it->second->vm_count = vms.size();
      it->second->last_refresh = Now();
      it->second->last_refresh_error.clear();
      it->second->needs_refresh = false;
    }
  }
  spdlog::debug("host '{}' refreshed ({}): {} VMs, graph version {}", host_id,
                partial ? util::Cat(partial->changed.size(), " changed, ", partial->removed.size(),
                                    " removed VMs")
                        : std::string("whole host"),
                vms.size(), version);
  return RefreshResult{host_id, vms.size(), version};
}

std::vector<std::string> HostRegistry::CheckHeartbeats(CatalogTime now) {
  std::vector<std::string> lost;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, entry] : hosts_) {
      if (entry->record.state != HostState::kReachable) continue;
      const CatalogTime base = std::max(entry->record.last_heartbeat, entry->grace_from);
      if (now - base > options_.heartbeat_timeout) {
        entry->record.state = HostState::kUnreachable;
        lost.push_back(id);
      }
    }
  }
  std::sort(lost.begin(), lost.end());
  for (const std::string& id : lost) {
    spdlog::warn("host '{}' is unreachable: no heartbeat for more than {} ms", id,
                 options_.heartbeat_timeout.count());
    WriteState(id, "host-unreachable", {{"timeout_ms", options_.heartbeat_timeout.count()}})
        .IgnoreError();
  }
  return lost;
}

HostView HostRegistry::ViewOf(const Entry& entry) const {
  HostView view;
  view.record = entry.record;
  view.registered = entry.registered;
  view.agent_version = entry.agent_version;
  view.agent_started_at_unix_ms = entry.agent_started_at_unix_ms;
  view.graph_version = entry.graph_version;
  view.vm_count = entry.vm_count;
  view.last_refresh = entry.last_refresh;
  view.last_refresh_error = entry.last_refresh_error;
  return view;
}

std::vector<HostView> HostRegistry::ListHosts() const {
  std::vector<HostView> views;
  {
    std::lock_guard lock(mu_);
    views.reserve(hosts_.size());
    for (const auto& [id, entry] : hosts_) views.push_back(ViewOf(*entry));
  }
  std::sort(views.begin(), views.end(),
            [](const HostView& a, const HostView& b) { return a.record.id < b.record.id; });
  return views;
}

absl::StatusOr<HostView> HostRegistry::GetHost(const std::string& host_id) const {
  std::lock_guard lock(mu_);
  auto it = hosts_.find(host_id);
  if (it == hosts_.end()) return absl::NotFoundError(util::Cat("host '", host_id, "' not found"));
  return ViewOf(*it->second);
}

RegistryCounters HostRegistry::counters() const {
  std::lock_guard lock(mu_);
  RegistryCounters c = counters_;
  for (const auto& [id, entry] : hosts_) {
    if (entry->record.state == HostState::kReachable) {
      ++c.hosts_reachable;
    } else {
      ++c.hosts_unreachable;
    }
  }
  return c;
}

}  // namespace strata::server
