// Event pipeline benchmark (printed, not asserted):
//  1. queue ingest rate on one core (goal >= 2,000,000 events/s);
//  2. a storm of 100,000 raw events over 10,000 VMs within one second, through the event
//     manager with its default 1 s window on an in-memory host: notifications sent (goal <= 2)
//     and change-log entries written;
//  3. the same storm delivered as one notification per raw event (no coalescing), with the
//     ratio of work (notifications, changes written) on the agent side;
//  4. the server side of that comparison, in the same run: an in-process stratad registry
//     (HostRegistry on a SQLite catalog in a temporary file, EventLog, GraphStore) whose agent
//     connector answers Discover from a prebuilt host graph of the same VMs. It is fed
//       (a) the change sets the storm produced (one NotifyChanges per notification, with the
//           sequence ranges the agent's change log gave them, at the time they were produced),
//       (b) the same storm as one NotifyChanges per raw event (sequences 1..N, on a fresh
//           registry and catalog, at the storm's own pace),
//     and each is measured from the storm's start until the registry is idle again (every
//     refresh done): requests, catalog rows written, refreshes, Discover calls and VMs asked
//     for, process CPU time (getrusage) minus the in-process agent's Discover CPU, wall time.
//
//   event_bench [--vms N] [--events N] [--ingest N] [--per-event-limit N]
//     defaults 10,000 VMs, 100,000 raw events, 5,000,000 ingest pushes; --per-event-limit feeds
//     (b) only the first N raw events and scales its figures to the whole storm (labelled).
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "spdlog/spdlog.h"
#include "strata/agent/change_log.h"
#include "strata/agent/coalescing_queue.h"
#include "strata/agent/event_manager.h"
#include "strata/core/graph.h"
#include "strata/core/query.h"
#include "strata/server/agent_client.h"
#include "strata/server/catalog.h"
#include "strata/server/event_log.h"
#include "strata/server/graph_store.h"
#include "strata/server/host_registry.h"
#include "strata/util/strings.h"
#include "testing/fake_agent.h"

using namespace strata::agent;
using Clock = std::chrono::steady_clock;
namespace srv = strata::server;
namespace core = strata::core;
using strata::util::Cat;

namespace {

constexpr char kHost[] = "bench-host";

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "event_bench: %s\n", message.c_str());
  std::exit(2);
}

std::string Uuid(int i) {
  char buffer[40];
  std::snprintf(buffer, sizeof(buffer), "00000000-0000-4000-8000-%012d", i);
  return buffer;
}

std::string VmName(int i) { return Cat("vm", i); }

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// User + system CPU of the whole process (every thread), seconds.
double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return s(usage.ru_utime) + s(usage.ru_stime);
}

double ThreadCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + t.tv_nsec / 1e9;
}

class MemoryHost : public HostView {
 public:
  explicit MemoryHost(int vms) {
    for (int i = 0; i < vms; ++i) vms_[Uuid(i)] = {Uuid(i), VmName(i), "running", "d"};
  }
  absl::StatusOr<std::vector<VmObservation>> ObserveAll() override {
    std::vector<VmObservation> out;
    for (const auto& [uuid, vm] : vms_) out.push_back(vm);
    return out;
  }
  absl::StatusOr<std::vector<VmObservation>> ObserveVms(
      const std::vector<std::string>& uuids) override {
    std::vector<VmObservation> out;
    for (const std::string& uuid : uuids) {
      if (auto it = vms_.find(uuid); it != vms_.end()) out.push_back(it->second);
    }
    return out;
  }
  absl::Status SubscribeEvents(strata::hypervisor::EventSink) override { return absl::OkStatus(); }

 private:
  std::map<std::string, VmObservation> vms_;
};

// ---- the server side ---------------------------------------------------------------------------

struct AgentWork {
  uint64_t calls = 0;
  uint64_t whole_host_calls = 0;
  uint64_t vms_asked = 0;     // VMs named by partial calls
  uint64_t vms_returned = 0;  // VMs in the answers (a whole-host call returns every VM)
  double cpu_s = 0;           // CPU of the Discover calls (on the registry's threads)
};

// The agent, in process: answers Discover from a prebuilt graph of the host (the shape of
// src/server/testing/fake_agent.h's AddVm: vm -> disk -> file -> volume -> storage system).
// A partial Discover returns only the asked VMs, what they rest on and the host node (what
// cutting the whole graph with core::RemoveWithOrphans would leave, at a cost proportional to
// the asked VMs, as for the real agent); an unknown VM is NotFound.
class InProcessAgent final : public srv::AgentConnector {
 public:
  explicit InProcessAgent(int vms) {
    for (int i = 0; i < vms; ++i) {
      srv::testing::AddVm(graph_, kHost, Uuid(i), VmName(i), Cat("filer-", i % 8));
      srv::VmRecord record;
      record.uuid = Uuid(i);
      record.name = VmName(i);
      record.state = "running";
      vms_.push_back(std::move(record));
      index_[Uuid(i)] = static_cast<size_t>(i);
    }
    host_node_ = graph_.Find(Cat("host:", kHost)).value();
  }

  absl::StatusOr<srv::DiscoveryResult> Discover(const std::string& host_id, const std::string&,
                                                const std::vector<std::string>& vms) override {
    const double cpu0 = ThreadCpuSeconds();
    absl::StatusOr<srv::DiscoveryResult> result = Answer(host_id, vms);
    const double cpu = ThreadCpuSeconds() - cpu0;
    std::lock_guard lock(mu_);
    ++work_.calls;
    if (vms.empty()) ++work_.whole_host_calls;
    work_.vms_asked += vms.size();
    if (result.ok()) work_.vms_returned += result->vms.size();
    work_.cpu_s += cpu;
    return result;
  }

  AgentWork work() const {
    std::lock_guard lock(mu_);
    return work_;
  }
  const core::Graph& graph() const { return graph_; }
  size_t vm_count() const { return vms_.size(); }

 private:
  absl::StatusOr<srv::DiscoveryResult> Answer(const std::string& host_id,
                                              const std::vector<std::string>& vms) const {
    srv::DiscoveryResult result;
    result.host_id = host_id;
    result.agent_version = ++version_;
    if (vms.empty()) {
      result.graph = graph_;
      result.vms = vms_;
      return result;
    }
    std::unordered_map<core::NodeIndex, core::NodeIndex> copied;  // whole graph -> part
    auto copy = [&](core::NodeIndex n) -> core::NodeIndex {
      if (auto it = copied.find(n); it != copied.end()) return it->second;
      core::Attributes attrs;
      for (const auto& [k, v] : graph_.Attrs(n)) attrs.emplace_back(k, v);
      const core::NodeIndex m =
          result.graph.UpsertNode(graph_.Type(n), graph_.Id(n), graph_.Name(n), attrs).value();
      copied[n] = m;
      return m;
    };
    const core::NodeIndex host = copy(host_node_);
    for (const std::string& uuid : vms) {
      auto it = index_.find(uuid);
      std::optional<core::NodeIndex> vm = graph_.Find(Cat("vm:", uuid));
      if (it == index_.end() || !vm) return absl::NotFoundError(Cat("VM '", uuid, "' not found"));
      result.graph.AddEdge(host, copy(*vm), core::EdgeType::kRuns);
      std::vector<core::NodeIndex> stack{*vm};
      while (!stack.empty()) {
        const core::NodeIndex n = stack.back();
        stack.pop_back();
        for (const core::EdgeRef& edge : graph_.OutEdges(n)) {
          const bool seen = copied.contains(edge.node);
          result.graph.AddEdge(copy(n), copy(edge.node), edge.type);
          if (!seen) stack.push_back(edge.node);
        }
      }
      result.vms.push_back(vms_[it->second]);
    }
    return result;
  }

  core::Graph graph_;
  core::NodeIndex host_node_ = core::kNoNode;
  std::vector<srv::VmRecord> vms_;
  std::unordered_map<std::string, size_t> index_;
  mutable std::atomic<uint64_t> version_{0};
  mutable std::mutex mu_;
  AgentWork work_;
};

// One stratad registry on its own catalog file.
struct Server {
  Server(const std::filesystem::path& path, InProcessAgent& agent) {
    std::filesystem::remove(path);
    absl::StatusOr<std::unique_ptr<srv::Catalog>> opened = srv::OpenSqliteCatalog(path.string());
    if (!opened.ok())
      Die(Cat("opening the catalog ", path.string(), ": ", opened.status().ToString()));
    catalog = *std::move(opened);
    events = std::make_unique<srv::EventLog>(*catalog);
    registry = std::make_unique<srv::HostRegistry>(*catalog, graphs, *events, agent,
                                                   srv::RegistryOptions{});
    if (absl::Status s = registry->Load(); !s.ok()) Die(Cat("registry: ", s.ToString()));
    registry->Start();
    srv::RegisterInfo info;
    info.host_id = kHost;
    info.endpoint = "in-process:0";
    info.version = "event_bench";
    info.started_at_unix_ms = 1;
    info.last_sequence = 0;
    if (absl::StatusOr<srv::RegisterAnswer> a = registry->Register(info); !a.ok()) {
      Die(Cat("register: ", a.status().ToString()));
    }
    if (!registry->WaitForIdle(std::chrono::minutes(5))) Die("the first refresh did not end");
    if (registry->counters().refreshes_ok != 1) Die("the first refresh failed");
  }
  ~Server() { registry->Stop(); }

  // Event rows (VM changes, not the registry's own host events) stored for the host.
  uint64_t ChangeRowsStored() {
    uint64_t rows = 0;
    int64_t after = 0;
    while (true) {
      absl::StatusOr<std::vector<srv::EventRecord>> page =
          catalog->ListEvents(after, 10000, std::string(kHost));
      if (!page.ok()) Die(Cat("listing events: ", page.status().ToString()));
      if (page->empty()) break;
      for (const srv::EventRecord& e : *page) rows += e.kind != srv::EventKind::kCluster;
      after = page->back().seq;
    }
    return rows;
  }

  std::unique_ptr<srv::Catalog> catalog;
  std::unique_ptr<srv::EventLog> events;
  srv::GraphStore graphs;
  std::unique_ptr<srv::HostRegistry> registry;
};

// A change set as the agent sends it, and when (seconds after the storm's start).
struct TimedChangeSet {
  double at_s = 0;
  srv::ChangeSetInfo set;
};

srv::EventKind ServerKind(ChangeKind kind) {
  switch (kind) {
    case ChangeKind::kAdded:
      return srv::EventKind::kAdded;
    case ChangeKind::kRemoved:
      return srv::EventKind::kRemoved;
    case ChangeKind::kCluster:
      return srv::EventKind::kCluster;
    case ChangeKind::kModified:
      break;
  }
  return srv::EventKind::kModified;
}

srv::ChangeSetInfo ToChangeSet(const std::vector<VmChange>& changes) {
  srv::ChangeSetInfo set;
  set.host_id = kHost;
  set.first_sequence = changes.front().sequence;
  set.last_sequence = changes.back().sequence;
  for (const VmChange& c : changes) {
    srv::ChangeInfo info;
    info.sequence = c.sequence;
    info.vm_uuid = c.vm_uuid;
    info.vm_name = c.vm_name;
    info.kind = ServerKind(c.kind);
    info.time = srv::CatalogTime(std::chrono::milliseconds(c.time_unix_ms));
    info.source = c.source;
    set.changes.push_back(std::move(info));
  }
  return set;
}

struct ServerWork {
  uint64_t requests = 0;
  uint64_t changes_sent = 0;
  uint64_t resyncs = 0;  // answers that asked for a resync (sequence gaps): should be 0
  uint64_t event_rows = 0;
  uint64_t refreshes = 0;
  uint64_t refreshes_partial = 0;
  uint64_t refreshes_failed = 0;
  uint64_t vm_rows = 0;  // ReplaceHostVms upserts every VM row of the host per refresh
  double graph_mb = 0;   // PutHostGraph writes the whole host graph (JSON) per refresh
  AgentWork agent;
  double process_cpu_s = 0;
  double server_cpu_s = 0;  // process CPU minus the in-process agent's Discover CPU
  double notify_s = 0;      // inside NotifyChanges (the gRPC handlers' share)
  double wall_s = 0;        // storm start -> registry idle
  double drain_s = 0;       // last request -> registry idle
};

// Feeds the change sets at their times (from the phase's start, which stands for the storm's
// start) and waits until every refresh is done.
ServerWork FeedServer(const std::filesystem::path& catalog_path, InProcessAgent& agent,
                      const std::vector<TimedChangeSet>& sets, double graph_json_mb) {
  Server server(catalog_path, agent);
  const srv::RegistryCounters c0 = server.registry->counters();
  const AgentWork a0 = agent.work();
  const double cpu0 = ProcessCpuSeconds();
  ServerWork work;
  const auto start = Clock::now();
  for (const TimedChangeSet& timed : sets) {
    std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(
                                              std::chrono::duration<double>(timed.at_s)));
    const auto n0 = Clock::now();
    absl::StatusOr<srv::NotifyAnswer> answer = server.registry->NotifyChanges(timed.set);
    work.notify_s += Seconds(Clock::now() - n0);
    if (!answer.ok()) Die(Cat("NotifyChanges: ", answer.status().ToString()));
    ++work.requests;
    work.changes_sent += timed.set.changes.size();
    work.resyncs += answer->resync;
  }
  const auto last_request = Clock::now();
  if (!server.registry->WaitForIdle(std::chrono::minutes(10))) Die("the registry did not settle");
  const auto end = Clock::now();
  const double cpu = ProcessCpuSeconds() - cpu0;
  const srv::RegistryCounters c1 = server.registry->counters();
  const AgentWork a1 = agent.work();
  work.wall_s = Seconds(end - start);
  work.drain_s = Seconds(end - last_request);
  work.refreshes = c1.refreshes_ok - c0.refreshes_ok;
  work.refreshes_partial = c1.refreshes_partial - c0.refreshes_partial;
  work.refreshes_failed = c1.refreshes_failed - c0.refreshes_failed;
  work.vm_rows = work.refreshes * agent.vm_count();
  work.graph_mb = static_cast<double>(work.refreshes) * graph_json_mb;
  work.agent.calls = a1.calls - a0.calls;
  work.agent.whole_host_calls = a1.whole_host_calls - a0.whole_host_calls;
  work.agent.vms_asked = a1.vms_asked - a0.vms_asked;
  work.agent.vms_returned = a1.vms_returned - a0.vms_returned;
  work.agent.cpu_s = a1.cpu_s - a0.cpu_s;
  work.process_cpu_s = cpu;
  work.server_cpu_s = cpu - work.agent.cpu_s;
  work.event_rows = server.ChangeRowsStored();  // read back, after the measurement
  return work;
}

}  // namespace

int main(int argc, char** argv) {
  int vms = 10000;
  int events = 100000;
  int ingest = 5000000;
  int per_event_limit = 0;
  for (int i = 1; i < argc; ++i) {
    auto value = [&](const char* flag) {
      if (i + 1 >= argc) Die(Cat(flag, " needs a value"));
      const int v = std::atoi(argv[++i]);
      if (v < 1) Die(Cat(flag, " must be a positive number"));
      return v;
    };
    if (std::strcmp(argv[i], "--vms") == 0) {
      vms = value("--vms");
    } else if (std::strcmp(argv[i], "--events") == 0) {
      events = value("--events");
    } else if (std::strcmp(argv[i], "--ingest") == 0) {
      ingest = value("--ingest");
    } else if (std::strcmp(argv[i], "--per-event-limit") == 0) {
      per_event_limit = value("--per-event-limit");
    } else {
      Die(
          Cat("usage: event_bench [--vms N] [--events N] [--ingest N] [--per-event-limit N]; "
              "unknown argument '",
              argv[i], "'"));
    }
  }
  if (events < vms) Die("--events must be at least --vms (every VM is defined first)");
  spdlog::set_level(spdlog::level::warn);  // not the registry's "host registered" lines
  const int fed = per_event_limit > 0 ? std::min(per_event_limit, events) : events;
  const int burst = std::max(1, events / 100);  // 100 bursts over ~1 s
  std::vector<std::string> uuids;
  for (int i = 0; i < vms; ++i) uuids.push_back(Uuid(i));

  // 1. Ingest on one core: pushes over the VMs, drained every 100,000.
  CoalescingQueue queue;
  const auto t0 = Clock::now();
  for (int i = 0; i < ingest; ++i) {
    queue.Push(uuids[i % vms], "vm", i < vms ? ChangeKind::kAdded : ChangeKind::kModified, "event",
               1);
    if (i % 100000 == 99999) (void)queue.Drain();
  }
  const double ingest_s = Seconds(Clock::now() - t0);
  const double rate = ingest / ingest_s;

  // 2. The storm through the event manager (1 s window), spread over ~1 s. A collector thread
  // takes the change log's new entries as the registration client does (one change set per
  // wake-up: one per window), to be replayed to the server in step 4.
  MemoryHost host(vms);
  ChangeLog log;
  EventManagerOptions options;  // window 1000 ms
  options.initial_reconcile = false;
  options.reconcile_interval = std::chrono::milliseconds(0);
  options.details_limit = static_cast<size_t>(vms) * 2;  // the changed VMs' details
  EventManager manager(host, log, options);
  std::vector<TimedChangeSet> coalesced_sets;
  std::atomic<bool> collecting{true};
  Clock::time_point storm_start;
  std::thread collector([&] {
    uint64_t notified = 0;
    auto take = [&] {
      std::vector<VmChange> changes = log.Since(notified);
      if (changes.empty()) return;
      notified = changes.back().sequence;
      coalesced_sets.push_back({Seconds(Clock::now() - storm_start), ToChangeSet(changes)});
    };
    while (collecting.load()) {
      if (log.WaitForNewer(notified, std::chrono::milliseconds(50))) take();
    }
    take();  // what came between the last wait and the end
  });
  manager.Start();
  storm_start = Clock::now();
  for (int i = 0; i < events; ++i) {
    strata::hypervisor::HypervisorEvent event;
    event.vm_uuid = uuids[i % vms];
    event.kind = i < vms ? strata::hypervisor::EventKind::kDefined
                         : strata::hypervisor::EventKind::kModified;
    event.time_unix_ms = 1;
    manager.OnHypervisorEvent(std::move(event));
    if (i % burst == burst - 1) {
      std::this_thread::sleep_until(storm_start + std::chrono::milliseconds(10 * (i / burst + 1)));
    }
  }
  const double storm_s = Seconds(Clock::now() - storm_start);
  while (manager.stats().raw_events < static_cast<uint64_t>(events)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const double settle_s = Seconds(Clock::now() - storm_start);
  manager.Stop();
  collecting = false;
  collector.join();
  EventManagerStats coalesced = manager.stats();

  // 3. The same storm, one notification per raw event: each raw event is its own change set.
  ChangeLog naive_log;
  uint64_t naive_notifications = 0, naive_changes = 0;
  const auto n0 = Clock::now();
  for (int i = 0; i < events; ++i) {
    const std::string& uuid = uuids[i % vms];
    // Without coalescing, every raw event is a change sent and written (the "modified" a raw
    // event claims is not checked against a digest first).
    VmObservation vm{uuid, "vm", "running", i < vms ? "d" : std::to_string(i)};
    std::vector<VmChange> changes = naive_log.ObserveSome({uuid}, {vm}, "event");
    ++naive_notifications;
    naive_changes += changes.size();
  }
  const double naive_s = Seconds(Clock::now() - n0);

  // 4. The server side.
  InProcessAgent agent(vms);
  const double graph_json_mb =
      static_cast<double>(
          core::ToJson(agent.graph(), core::WholeGraph(agent.graph())).dump().size()) /
      1e6;
  std::vector<TimedChangeSet> per_event_sets;
  per_event_sets.reserve(static_cast<size_t>(fed));
  for (int i = 0; i < fed; ++i) {
    srv::ChangeSetInfo set;
    set.host_id = kHost;
    set.first_sequence = set.last_sequence = static_cast<uint64_t>(i) + 1;
    srv::ChangeInfo change;
    change.sequence = set.first_sequence;
    change.vm_uuid = uuids[i % vms];
    change.vm_name = VmName(i % vms);
    change.kind = i < vms ? srv::EventKind::kAdded : srv::EventKind::kModified;
    change.time = std::chrono::system_clock::now();
    change.source = "event";
    set.changes.push_back(std::move(change));
    // The storm's pace: burst k of 100 at k * 10 ms.
    per_event_sets.push_back({0.010 * (i / burst), std::move(set)});
  }
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / Cat("strata-event-bench-", getpid());
  std::filesystem::create_directories(dir);
  const ServerWork a = FeedServer(dir / "coalesced.db", agent, coalesced_sets, graph_json_mb);
  const ServerWork b = FeedServer(dir / "per-event.db", agent, per_event_sets, graph_json_mb);
  std::filesystem::remove_all(dir);
  const double scale = static_cast<double>(events) / fed;

  std::printf("event_bench (printed, not asserted): %d VMs, %d raw events\n\n", vms, events);
  std::printf("%-58s %16s %10s\n", "measure", "value", "goal");
  std::printf("%-58s %16.0f %10s\n",
              Cat("queue ingest, events/s (one core, ", vms, " VMs)").c_str(), rate, ">= 2e6");
  std::printf("%-58s %16.3f %10s\n", Cat("storm: seconds to push ", events, " raw events").c_str(),
              storm_s, "~1");
  std::printf("%-58s %16.3f %10s\n", "storm: seconds until all were processed", settle_s, "");
  std::printf("%-58s %16llu %10s\n", "storm, coalesced (1 s window): notifications",
              static_cast<unsigned long long>(coalesced.notifications), "<= 2");
  std::printf("%-58s %16llu %10s\n", "storm, coalesced: windows processed",
              static_cast<unsigned long long>(coalesced.windows), "");
  std::printf("%-58s %16llu %10s\n", "storm, coalesced: changes written",
              static_cast<unsigned long long>(coalesced.changes_written), "");
  std::printf("%-58s %16llu %10s\n", "storm, one per raw event: notifications",
              static_cast<unsigned long long>(naive_notifications), "");
  std::printf("%-58s %16llu %10s\n", "storm, one per raw event: changes written",
              static_cast<unsigned long long>(naive_changes), "");
  std::printf("%-58s %16.3f %10s\n", "storm, one per raw event: agent-side seconds", naive_s, "");
  std::printf(
      "%-58s %16.0f %10s\n", "work ratio, notifications (per-event / coalesced)",
      static_cast<double>(naive_notifications) / std::max<uint64_t>(coalesced.notifications, 1),
      "");
  std::printf("%-58s %16.1f %10s\n", "work ratio, changes written (per-event / coalesced)",
              static_cast<double>(naive_changes) / std::max<uint64_t>(coalesced.changes_written, 1),
              "");

  // The server's side of the same storm.
  const bool scaled = fed < events;
  std::printf(
      "\nserver side (in-process stratad registry, SQLite catalog in a temporary file;\n"
      "host of %d VMs; measured from the storm's start until every refresh is done)\n",
      vms);
  if (scaled) {
    std::printf("per-event: measured on %d of %d raw events, scaled x%.2f (column \"measured\")\n",
                fed, events, scale);
  }
  std::printf("\n%-46s %12s %12s %10s", "server work", "coalesced", "per-event", "ratio");
  if (scaled) std::printf(" %12s", "measured");
  std::printf("\n");
  // Wall times are not scaled: they depend on the pace of the storm, not on its size only.
  auto row = [&](const char* what, double coal, double per, const char* format,
                 bool scalable = true) {
    const double per_scaled = scalable ? per * scale : per;
    char c[32], p[32], m[32];
    std::snprintf(c, sizeof c, format, coal);
    std::snprintf(p, sizeof p, format, per_scaled);
    std::snprintf(m, sizeof m, format, per);
    char ratio[32] = "-";
    if (coal > 0) std::snprintf(ratio, sizeof ratio, "%.1f", per_scaled / coal);
    std::printf("%-46s %12s %12s %10s", what, c, p, ratio);
    if (scaled) std::printf(" %12s", m);
    std::printf("\n");
  };
  auto d = [](uint64_t v) { return static_cast<double>(v); };
  row("NotifyChanges requests", d(a.requests), d(b.requests), "%.0f");
  row("changes sent", d(a.changes_sent), d(b.changes_sent), "%.0f");
  row("catalog event rows written (read back)", d(a.event_rows), d(b.event_rows), "%.0f");
  row("refreshes (ok)", d(a.refreshes), d(b.refreshes), "%.0f");
  row("  of which partial (only the changed VMs)", d(a.refreshes_partial), d(b.refreshes_partial),
      "%.0f");
  row("catalog VM rows upserted (refreshes x VMs)", d(a.vm_rows), d(b.vm_rows), "%.0f");
  row("catalog graph JSON written, MB (refreshes x)", a.graph_mb, b.graph_mb, "%.1f");
  row("agent Discover calls", d(a.agent.calls), d(b.agent.calls), "%.0f");
  row("  of which whole-host", d(a.agent.whole_host_calls), d(b.agent.whole_host_calls), "%.0f");
  row("  VMs asked for (partial calls)", d(a.agent.vms_asked), d(b.agent.vms_asked), "%.0f");
  row("  VMs returned", d(a.agent.vms_returned), d(b.agent.vms_returned), "%.0f");
  row("server CPU s (process - agent Discover)", a.server_cpu_s, b.server_cpu_s, "%.3f");
  row("  process CPU s (getrusage user+sys)", a.process_cpu_s, b.process_cpu_s, "%.3f");
  row("  in-process agent Discover CPU s", a.agent.cpu_s, b.agent.cpu_s, "%.3f");
  row("  inside NotifyChanges, s (handlers)", a.notify_s, b.notify_s, "%.3f");
  row(scaled ? "wall s, storm start -> up to date (NOT scaled)"
             : "wall s, storm start -> catalog up to date",
      a.wall_s, b.wall_s, "%.3f", false);
  row("  of which after the last request", a.drain_s, b.drain_s, "%.3f", false);
  if (a.resyncs + b.resyncs + a.refreshes_failed + b.refreshes_failed > 0) {
    std::printf("WARNING: %llu resync answers, %llu failed refreshes (expected none)\n",
                static_cast<unsigned long long>(a.resyncs + b.resyncs),
                static_cast<unsigned long long>(a.refreshes_failed + b.refreshes_failed));
  }
  return 0;
}
