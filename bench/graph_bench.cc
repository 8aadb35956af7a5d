// Resource-graph benchmark: builds a synthetic data centre, measures build time, memory and the
// three questions the graph exists to answer, then loads the same graph into an in-memory SQLite
// database and asks the same questions as recursive CTEs.
//
//   graph_bench [--vms N] [--no-configs]   (default 100000; CI runs --vms 2000)
//
// --no-configs leaves out the vm_config nodes (the ~700k-node / ~1M-edge shape some reports use).
//
// Shape: 20 storage systems, 1,000 storage volumes (50 per system), 100 hosts, N VMs, each with a
// vm_config and 3 virtual disks; disk -> file -> storage volume, disk i of VM v on volume
// (3v + i) % 1000 (so ~3N/1000 VMs per volume).
#include <fnmatch.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "strata/core/graph.h"
#include "strata/core/query.h"

namespace {

using strata::core::Direction;
using strata::core::EdgeType;
using strata::core::Graph;
using strata::core::NodeIndex;
using strata::core::NodeType;
using Clock = std::chrono::steady_clock;

constexpr int kStorageSystems = 20;
constexpr int kVolumes = 1000;
constexpr int kHosts = 100;
constexpr int kDisksPerVm = 3;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "graph_bench: %s\n", what.c_str());
  std::exit(1);
}

long RssKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// A deterministic uuid-shaped string for (kind, i).
std::string Uuid(unsigned kind, unsigned i) {
  char buf[40];
  const unsigned long long h =
      (static_cast<unsigned long long>(kind) << 40) ^ (i * 0x9E3779B97F4A7C15ull);
  std::snprintf(buf, sizeof buf, "%08x-%04x-4%03x-8%03x-%012llx", i, kind, (i >> 4) & 0xfff,
                (i >> 16) & 0xfff, h & 0xffffffffffffull);
  return buf;
}

struct Percentiles {
  double p50, p99;
};
Percentiles Summarize(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  auto at = [&](double q) {
    return us[std::min(us.size() - 1, static_cast<size_t>(q * us.size()))];
  };
  return {at(0.50), at(0.99)};
}
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

NodeIndex Must(absl::StatusOr<NodeIndex> n) {
  if (!n.ok()) Die(std::string(n.status().message()));
  return *n;
}

Graph BuildGraph(int vms, bool configs) {
  Graph g;
  char id[160], name[96];
  std::vector<NodeIndex> systems, volumes, hosts;
  std::vector<std::string> volume_uuids;
  for (int s = 0; s < kStorageSystems; ++s) {
    std::snprintf(id, sizeof id, "ss:ceph:%s", Uuid(1, s).c_str());
    std::snprintf(name, sizeof name, "ceph-%02d", s);
    systems.push_back(Must(g.UpsertNode(NodeType::kStorageSystem, id, name, {{"vendor", "ceph"}})));
  }
  for (int v = 0; v < kVolumes; ++v) {
    volume_uuids.push_back(Uuid(2, v));
    std::snprintf(id, sizeof id, "sv:%s", volume_uuids.back().c_str());
    std::snprintf(name, sizeof name, "vol-%04d", v);
    volumes.push_back(
        Must(g.UpsertNode(NodeType::kStorageVolume, id, name, {{"size_gib", "4096"}})));
    g.AddEdge(volumes.back(), systems[v / (kVolumes / kStorageSystems)], EdgeType::kInSystem);
  }
  for (int h = 0; h < kHosts; ++h) {
    std::snprintf(id, sizeof id, "host:%s", Uuid(3, h).c_str());
    std::snprintf(name, sizeof name, "host-%03d", h);
    hosts.push_back(Must(g.UpsertNode(NodeType::kHost, id, name)));
  }
  const strata::core::Attributes vm_attrs = {
      {"state", "running"}, {"vcpus", "4"}, {"memory_mib", "8192"}};
  const strata::core::Attributes disk_attrs = {{"bus", "virtio"}};
  const strata::core::Attributes file_attrs = {{"format", "qcow2"}};
  for (int v = 0; v < vms; ++v) {
    const std::string uuid = Uuid(4, v);
    std::snprintf(id, sizeof id, "vm:%s", uuid.c_str());
    std::snprintf(name, sizeof name, "vm-%06d", v);
    const NodeIndex vm = Must(g.UpsertNode(NodeType::kVm, id, name, vm_attrs));
    g.AddEdge(hosts[v % kHosts], vm, EdgeType::kRuns);
    if (configs) {
      std::snprintf(id, sizeof id, "vmcfg:%s", uuid.c_str());
      std::snprintf(name, sizeof name, "/etc/libvirt/qemu/vm-%06d.xml", v);
      g.AddEdge(vm, Must(g.UpsertNode(NodeType::kVmConfig, id, name)), EdgeType::kHasConfig);
    }
    for (int i = 0; i < kDisksPerVm; ++i) {
      const char dev[4] = {'v', 'd', static_cast<char>('a' + i), 0};
      std::snprintf(id, sizeof id, "vdisk:%s:%s", uuid.c_str(), dev);
      const NodeIndex disk = Must(g.UpsertNode(NodeType::kVirtualDisk, id, dev, disk_attrs));
      g.AddEdge(vm, disk, EdgeType::kHasDisk);
      const int vol = (v * kDisksPerVm + i) % kVolumes;
      std::snprintf(name, sizeof name, "/images/vm-%06d-%s.qcow2", v, dev);
      std::snprintf(id, sizeof id, "file:%s:%s", volume_uuids[vol].c_str(), name);
      const NodeIndex file = Must(g.UpsertNode(NodeType::kFile, id, name, file_attrs));
      g.AddEdge(disk, file, EdgeType::kBackedBy);
      g.AddEdge(file, volumes[vol], EdgeType::kInVolume);
    }
  }
  return g;
}

// ---- SQLite ---------------------------------------------------------------------------------

void Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    Die(std::string("sqlite: ") + msg + " in: " + sql);
  }
}

sqlite3_stmt* Prepare(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) {
    Die(std::string("sqlite prepare: ") + sqlite3_errmsg(db));
  }
  return stmt;
}

void Bind(sqlite3_stmt* stmt, int i, std::string_view text) {
  sqlite3_bind_text(stmt, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
}

void LoadSqlite(sqlite3* db, const Graph& g) {
  Exec(db, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;");
  Exec(db,
       "CREATE TABLE nodes(id INTEGER PRIMARY KEY, type TEXT, name TEXT, ext_id TEXT);"
       "CREATE TABLE edges(src INTEGER, dst INTEGER, type TEXT);");
  Exec(db, "BEGIN");
  sqlite3_stmt* node = Prepare(db, "INSERT INTO nodes VALUES(?1, ?2, ?3, ?4)");
  sqlite3_stmt* edge = Prepare(db, "INSERT INTO edges VALUES(?1, ?2, ?3)");
  for (NodeIndex n : g.AllNodes()) {
    sqlite3_bind_int64(node, 1, n);
    Bind(node, 2, strata::core::NodeTypeName(g.Type(n)));
    Bind(node, 3, g.Name(n));
    Bind(node, 4, g.Id(n));
    if (sqlite3_step(node) != SQLITE_DONE) Die(sqlite3_errmsg(db));
    sqlite3_reset(node);
    for (const auto& e : g.OutEdges(n)) {
      sqlite3_bind_int64(edge, 1, n);
      sqlite3_bind_int64(edge, 2, e.node);
      Bind(edge, 3, strata::core::EdgeTypeName(e.type));
      if (sqlite3_step(edge) != SQLITE_DONE) Die(sqlite3_errmsg(db));
      sqlite3_reset(edge);
    }
  }
  sqlite3_finalize(node);
  sqlite3_finalize(edge);
  Exec(db,
       "CREATE INDEX nodes_name ON nodes(name);"
       "CREATE INDEX edges_src ON edges(src);"
       "CREATE INDEX edges_dst ON edges(dst);");
  Exec(db, "COMMIT");
}

constexpr const char* kSqlStorageOfVm = R"sql(
WITH RECURSIVE down(n, t) AS (
  SELECT id, type FROM nodes WHERE name = ?1 AND type = 'vm'
  UNION
  SELECT e.dst, x.type FROM down d JOIN edges e ON e.src = d.n JOIN nodes x ON x.id = e.dst
  WHERE d.t <> 'storage_system')
SELECT n FROM down WHERE t = 'storage_system')sql";

constexpr const char* kSqlVmsOnVolume = R"sql(
WITH RECURSIVE up(n, t) AS (
  SELECT id, type FROM nodes WHERE name = ?1 AND type = 'storage_volume'
  UNION
  SELECT e.src, x.type FROM up u JOIN edges e ON e.dst = u.n JOIN nodes x ON x.id = e.src
  WHERE u.t <> 'vm')
SELECT n FROM up WHERE t = 'vm')sql";

constexpr const char* kSqlGlob = "SELECT id FROM nodes WHERE type = 'vm' AND name GLOB ?1";

std::set<NodeIndex> RunSql(sqlite3_stmt* stmt, std::string_view arg) {
  std::set<NodeIndex> out;
  Bind(stmt, 1, arg);
  while (sqlite3_step(stmt) == SQLITE_ROW)
    out.insert(static_cast<NodeIndex>(sqlite3_column_int64(stmt, 0)));
  sqlite3_reset(stmt);
  return out;
}

// ---- Strata queries -----------------------------------------------------------------------

strata::core::Query TraversalQuery(NodeType from, std::string name, Direction dir, NodeType to) {
  strata::core::Query q;
  q.select.type = from;
  q.select.matches.push_back({"name", std::move(name)});
  q.direction = dir;
  q.to_type = to;
  return q;
}

std::set<NodeIndex> OfType(const Graph& g, const strata::core::Subgraph& sg, NodeType type) {
  std::set<NodeIndex> out;
  for (NodeIndex n : sg.nodes) {
    if (g.Type(n) == type) out.insert(n);
  }
  return out;
}

std::string Fmt(const char* format, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, value);
  return buf;
}

void Row(const std::string& what, const std::string& strata, const std::string& goal,
         const std::string& sqlite = "", const std::string& ratio = "") {
  std::printf("%-38s %14s %12s %14s %10s\n", what.c_str(), strata.c_str(), goal.c_str(),
              sqlite.c_str(), ratio.c_str());
}
std::string Ratio(double sqlite, double ours) { return Fmt("%.1fx", sqlite / ours); }

}  // namespace

int main(int argc, char** argv) {
  int vms = 100000;
  bool configs = true;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--vms") == 0 && i + 1 < argc) {
      vms = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--no-configs") == 0) {
      configs = false;
    } else {
      Die(std::string("usage: graph_bench [--vms N] [--no-configs]; unknown argument '") + argv[i] +
          "'");
    }
  }
  if (vms < 1) Die("--vms must be at least 1");
  std::mt19937 rng(42);

  // ---- build ----
  const long rss_before = RssKb();
  const auto t0 = Clock::now();
  Graph g = BuildGraph(vms, configs);
  const double build_s = Seconds(Clock::now() - t0);
  const long rss_after = RssKb();
  const double rss_mb = (rss_after - rss_before) / 1024.0;
  const double mem_mb = g.MemoryBytes() / (1024.0 * 1024.0);

  // ---- storage systems of VM X ----
  const int vm_samples = 10000;
  std::vector<std::string> vm_names;
  for (int i = 0; i < vm_samples; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "vm-%06d", static_cast<int>(rng() % vms));
    vm_names.push_back(name);
  }
  std::vector<strata::core::Query> q1;
  for (const auto& name : vm_names) {
    q1.push_back(TraversalQuery(NodeType::kVm, name, Direction::kDown, NodeType::kStorageSystem));
  }
  std::vector<double> q1_us;
  size_t q1_found = 0;
  for (int round = 0; round < 2; ++round) {  // first round warms caches
    q1_us.clear();
    for (const auto& q : q1) {
      const auto s = Clock::now();
      auto r = strata::core::RunQuery(g, q);
      q1_us.push_back(Micros(Clock::now() - s));
      if (!r.ok()) Die(std::string(r.status().message()));
      q1_found += r->nodes.size();
    }
  }
  const Percentiles q1_p = Summarize(q1_us);

  // ---- all VMs on storage volume Y ----
  std::vector<strata::core::Query> q2;
  for (int v = 0; v < kVolumes; ++v) {
    char name[32];
    std::snprintf(name, sizeof name, "vol-%04d", v);
    q2.push_back(TraversalQuery(NodeType::kStorageVolume, name, Direction::kUp, NodeType::kVm));
  }
  std::vector<double> q2_us;
  size_t q2_vms = 0;
  for (int round = 0; round < 2; ++round) {
    q2_us.clear();
    q2_vms = 0;
    for (const auto& q : q2) {
      const auto s = Clock::now();
      auto r = strata::core::RunQuery(g, q);
      q2_us.push_back(Micros(Clock::now() - s));
      if (!r.ok()) Die(std::string(r.status().message()));
      for (NodeIndex n : r->nodes) q2_vms += g.Type(n) == NodeType::kVm;
    }
  }
  const Percentiles q2_p = Summarize(q2_us);

  // ---- glob over all VM names ----
  const std::vector<std::string> globs = {"vm-0042*", "*00?42*"};
  std::vector<double> glob_ms, glob_first_ms, glob_fnmatch_ms;
  std::vector<size_t> glob_hits;
  for (const auto& pattern : globs) {
    strata::core::Selector sel;
    sel.type = NodeType::kVm;
    sel.matches.push_back({"name", pattern});
    std::vector<double> runs, fn_runs;
    size_t hits = 0;
    for (int i = 0; i < 15; ++i) {
      auto s = Clock::now();
      hits = strata::core::Select(g, sel).size();
      runs.push_back(Micros(Clock::now() - s) / 1000);
      // The same scan with fnmatch(3), which needs NUL-terminated copies.
      s = Clock::now();
      size_t fn_hits = 0;
      std::string buf;
      for (NodeIndex n : g.NodesOfType(NodeType::kVm)) {
        buf.assign(g.Name(n));
        fn_hits += fnmatch(pattern.c_str(), buf.c_str(), 0) == 0;
      }
      fn_runs.push_back(Micros(Clock::now() - s) / 1000);
      if (fn_hits != hits) Die("GlobMatch and fnmatch disagree on " + pattern);
    }
    glob_first_ms.push_back(runs[0]);  // the first call builds the name index
    glob_ms.push_back(Median(runs));
    glob_fnmatch_ms.push_back(Median(fn_runs));
    glob_hits.push_back(hits);
  }

  // ---- SQLite ----
  sqlite3* db = nullptr;
  if (sqlite3_open(":memory:", &db) != SQLITE_OK) Die("cannot open SQLite");
  const auto l0 = Clock::now();
  LoadSqlite(db, g);
  const double load_s = Seconds(Clock::now() - l0);
  const double sqlite_mb = sqlite3_memory_used() / (1024.0 * 1024.0);
  sqlite3_stmt* s1 = Prepare(db, kSqlStorageOfVm);
  sqlite3_stmt* s2 = Prepare(db, kSqlVmsOnVolume);
  sqlite3_stmt* s3 = Prepare(db, kSqlGlob);

  // The answers must agree before the timings mean anything.
  int disagreements = 0;
  for (int i = 0; i < 200; ++i) {
    auto r = strata::core::RunQuery(g, q1[i]);
    if (OfType(g, *r, NodeType::kStorageSystem) != RunSql(s1, vm_names[i])) ++disagreements;
  }
  for (int v = 0; v < kVolumes; v += 50) {
    auto r = strata::core::RunQuery(g, q2[v]);
    if (OfType(g, *r, NodeType::kVm) != RunSql(s2, q2[v].select.matches[0].pattern))
      ++disagreements;
  }
  for (size_t i = 0; i < globs.size(); ++i) {
    if (RunSql(s3, globs[i]).size() != glob_hits[i]) ++disagreements;
  }

  std::vector<double> s1_us, s2_us;
  for (int i = 0; i < 2000; ++i) {
    const auto s = Clock::now();
    RunSql(s1, vm_names[i]);
    s1_us.push_back(Micros(Clock::now() - s));
  }
  for (int v = 0; v < kVolumes; ++v) {
    const auto s = Clock::now();
    RunSql(s2, q2[v].select.matches[0].pattern);
    s2_us.push_back(Micros(Clock::now() - s));
  }
  std::vector<double> s3_ms;
  for (const auto& pattern : globs) {
    std::vector<double> runs;
    for (int i = 0; i < 7; ++i) {
      const auto s = Clock::now();
      RunSql(s3, pattern);
      runs.push_back(Micros(Clock::now() - s) / 1000);
    }
    s3_ms.push_back(Median(runs));
  }
  const Percentiles s1_p = Summarize(s1_us), s2_p = Summarize(s2_us);
  sqlite3_finalize(s1);
  sqlite3_finalize(s2);
  sqlite3_finalize(s3);
  sqlite3_close(db);

  // ---- report ----
  std::printf("Strata resource graph benchmark (--vms %d)\n", vms);
  std::printf(
      "graph: %zu nodes, %zu edges (%d storage systems, %d volumes, %d hosts, %d VMs, "
      "%d vm_configs, %d disks, %d files)\n",
      g.node_count(), g.edge_count(), kStorageSystems, kVolumes, kHosts, vms, configs ? vms : 0,
      vms * kDisksPerVm, vms * kDisksPerVm);
  std::printf("goals apply to the default 100,000-VM graph\n\n");
  Row("measure", "strata", "goal", "sqlite", "sqlite/us");
  Row("build / load (s)", Fmt("%.3f", build_s), "<= 1", Fmt("%.3f", load_s),
      Ratio(load_s, build_s));
  Row("resident memory, VmRSS delta (MB)", Fmt("%.1f", rss_mb), "<= 100", Fmt("%.1f", sqlite_mb),
      Ratio(sqlite_mb, rss_mb));
  Row("Graph::MemoryBytes() (MB)", Fmt("%.1f", mem_mb), "");
  Row("storage systems of VM, p50 (us)", Fmt("%.2f", q1_p.p50), "", Fmt("%.2f", s1_p.p50),
      Ratio(s1_p.p50, q1_p.p50));
  Row("storage systems of VM, p99 (us)", Fmt("%.2f", q1_p.p99), "<= 2", Fmt("%.2f", s1_p.p99),
      Ratio(s1_p.p99, q1_p.p99));
  Row("VMs on storage volume, p50 (us)", Fmt("%.1f", q2_p.p50), "", Fmt("%.1f", s2_p.p50),
      Ratio(s2_p.p50, q2_p.p50));
  Row("VMs on storage volume, p99 (us)", Fmt("%.1f", q2_p.p99), "<= 100", Fmt("%.1f", s2_p.p99),
      Ratio(s2_p.p99, q2_p.p99));
  for (size_t i = 0; i < globs.size(); ++i) {
    Row("glob '" + globs[i] + "' over VM names (ms)", Fmt("%.2f", glob_ms[i]), "<= 5",
        Fmt("%.2f", s3_ms[i]), Ratio(s3_ms[i], glob_ms[i]));
    Row("  first call, included above (ms)", Fmt("%.2f", glob_first_ms[i]), "");
    Row("  same scan with fnmatch(3) (ms)", Fmt("%.2f", glob_fnmatch_ms[i]), "");
  }
  std::printf(
      "\n%d storage-system queries (10000 VMs, 2nd pass), %zu nodes returned in all; "
      "%d volume queries: %.0f VMs per volume on average; glob hits: %zu, %zu\n",
      vm_samples, q1_found, kVolumes, static_cast<double>(q2_vms) / kVolumes, glob_hits[0],
      glob_hits[1]);
  std::printf(
      "SQLite: same graph in :memory:, indexes on nodes(name), edges(src), edges(dst); "
      "memory = sqlite3_memory_used(); SQLite p50/p99 over %zu and %zu queries\n",
      s1_us.size(), s2_us.size());
  std::printf("answers agree with SQLite: %s\n", disagreements == 0 ? "yes" : "NO");
  return disagreements == 0 ? 0 : 1;
}
