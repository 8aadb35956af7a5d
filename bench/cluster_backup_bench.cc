// Cluster backup benchmark (printed, not asserted; issue 6). A cluster backup of N VMs (default
// 200) asked of one member, with the same VMs spread over 1 and over 4 nodes: real strata-agent
// processes on loopback (static membership, libvirt test-driver host files), every VM with one
// raw disk on ONE `dir` volume all nodes share (so the coordinator plans a single snapshot of it
// for the whole cluster). Per layout, over --runs runs (median printed):
//   total        the client's wall time, request to result
//   owners       the coordinator finding each VM's owner (one round of asking every member)
//   forwarded    first sub-request sent to last owner's answer
//   held         first owner holding its VMs to the last owner's answer (consistency reached,
//                the one snapshot taken, VMs released)
//   consolidate  merging the owners' answers into one
// and how the total changes from 1 to 4 nodes.
//
//   cluster_backup_bench [--vms N] [--runs N] [--consistency crash|pause] [--nodes 1,4]
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "channel.h"
#include "strata/agent/config.h"
#include "strata/util/child_process.h"
#include "strata/util/strings.h"
#include "strata/v1/agent.grpc.pb.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
namespace v1 = strata::v1;
using strata::util::Cat;
using strata::util::ChildProcess;
using strata::util::ChildProcessOptions;
using Clock = std::chrono::steady_clock;
using strata::testing::FreePort;

std::string VmUuid(int i) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "7c2d0000-0000-4000-8000-%012d", i);
  return buf;
}

// One test-driver host file holding `vms` (indexes), every VM running, its disk on `volume`.
void WriteHostFile(const fs::path& file, const std::vector<int>& vms, const fs::path& volume) {
  std::ofstream out(file);
  out << "<?xml version='1.0'?>\n<node>\n"
         "  <cpu><mhz>2400</mhz><model>x86_64</model><active>16</active><nodes>1</nodes>"
         "<sockets>1</sockets><cores>8</cores><threads>2</threads></cpu>\n"
         "  <memory>33554432</memory>\n";
  for (int i : vms) {
    out << "  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
        << "<name>vm" << i << "</name><uuid>" << VmUuid(i) << "</uuid>"
        << "<memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os><devices>"
        << "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='"
        << (volume / Cat("vm", i, ".raw")).string()
        << "'/><target dev='vda' bus='virtio'/></disk></devices>"
        << "<test:runstate>1</test:runstate></domain>\n";
  }
  out << "</node>\n";
}

struct RunResult {
  double total_ms = 0;
  std::map<std::string, int64_t> timings;
  int ok = 0;
  int failed = 0;
  int snapshots = 0;
  std::string first_error;
};

RunResult Backup(const std::string& endpoint, int vms, const std::string& name,
                 v1::Consistency consistency) {
  auto stub = v1::Backup::NewStub(strata::rpc::ConnectedChannel(
      endpoint, std::chrono::system_clock::now() + std::chrono::seconds(10)));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
  v1::BackupRequest request;
  request.set_backup_id("id-" + name);
  request.set_name(name);
  request.set_cluster("bench");
  for (int i = 0; i < vms; ++i) request.add_vms(VmUuid(i));
  request.set_consistency(consistency);
  RunResult r;
  const auto start = Clock::now();
  auto reader = stub->RunBackup(&context, request);
  v1::BackupEvent event;
  while (reader->Read(&event)) {
    if (!event.has_result()) continue;
    for (const v1::BackupVmResult& vm : event.result().results()) {
      if (vm.ok()) {
        ++r.ok;
      } else {
        ++r.failed;
        if (r.first_error.empty()) r.first_error = vm.vm_name() + ": " + vm.error();
      }
    }
    for (const auto& [step, ms] : event.result().timings_ms()) r.timings[step] = ms;
    // "snapshot_id" appears once per storage snapshot and once per disk (the caller subtracts
    // the disks: one per VM).
    const std::string& manifest = event.result().manifest_json();
    for (size_t at = manifest.find("\"snapshot_id\""); at != std::string::npos;
         at = manifest.find("\"snapshot_id\"", at + 1)) {
      ++r.snapshots;
    }
  }
  grpc::Status status = reader->Finish();
  r.total_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  if (!status.ok()) r.first_error = "RPC: " + status.error_message();
  return r;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct Layout {
  int nodes = 0;
  double total_ms = 0;
  std::map<std::string, double> timings;
  int ok = 0;
  int failed = 0;
  int snapshots = 0;
  std::string error;
};

Layout RunLayout(const fs::path& work, int nodes, int vms, int runs, v1::Consistency consistency) {
  Layout layout;
  layout.nodes = nodes;
  const fs::path dir = work / Cat("nodes-", nodes);
  const fs::path volume = work / "shared";
  fs::create_directories(dir);
  std::vector<strata::agent::ClusterMember> members;
  for (int n = 0; n < nodes; ++n) {
    members.push_back({Cat("node-", n), Cat("127.0.0.1:", FreePort())});
  }
  std::vector<std::unique_ptr<ChildProcess>> agents;
  for (int n = 0; n < nodes; ++n) {
    std::vector<int> mine;
    for (int i = n; i < vms; i += nodes) mine.push_back(i);
    WriteHostFile(dir / Cat("node-", n, ".xml"), mine, volume);
    strata::agent::AgentConfig config;
    config.host_id = members[n].host_id;
    config.connect = "test://" + (dir / Cat("node-", n, ".xml")).string();
    config.dir_volumes = {{"shared", volume.string()}};
    config.cluster = "bench";
    config.cluster_members = members;
    config.cluster_interval_ms = 500;
    config.cluster_timeout_ms = 2000;
    config.listen = members[n].endpoint;
    config.server = "";
    config.state_dir = (dir / Cat("state-", n)).string();
    config.log_level = "warn";
    const fs::path file = dir / Cat("node-", n, ".toml");
    std::ofstream(file) << strata::agent::RenderAgentConfig(config);
    ChildProcessOptions options;
    options.log_path = (dir / Cat("node-", n, ".log")).string();
    auto agent = ChildProcess::Start({STRATA_AGENT_BIN, "run", "--config", file.string()}, options);
    if (!agent.ok()) {
      layout.error = agent.status().ToString();
      return layout;
    }
    auto listening = (*agent)->WaitForLine(R"(^strata-agent: listening grpc=)",
                                           std::chrono::milliseconds(30000));
    if (!listening.ok()) {
      layout.error = listening.status().ToString();
      return layout;
    }
    agents.push_back(*std::move(agent));
  }
  // Every member up as the first one sees it (its cluster discovery leaves nobody out).
  auto discovery = v1::Discovery::NewStub(strata::rpc::ConnectedChannel(
      members[0].endpoint, std::chrono::system_clock::now() + std::chrono::seconds(10)));
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    v1::DiscoverRequest request;
    request.set_cluster("bench");
    v1::DiscoverResponse response;
    grpc::ClientContext context;
    if (discovery->Discover(&context, request, &response).ok() &&
        response.unreachable_members_size() == 0 && response.vms_size() == vms) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::vector<double> totals;
  std::map<std::string, std::vector<double>> timings;
  for (int run = 0; run <= runs; ++run) {  // run 0: warm-up, not counted
    std::error_code ec;
    fs::remove_all(volume / ".strata-snapshots", ec);
    RunResult r = Backup(members[0].endpoint, vms, Cat("n", nodes, "-r", run), consistency);
    if (run == 0) continue;
    totals.push_back(r.total_ms);
    for (const auto& [step, ms] : r.timings) timings[step].push_back(static_cast<double>(ms));
    layout.ok = r.ok;
    layout.failed = r.failed;
    layout.snapshots = r.snapshots - r.ok;  // one "snapshot_id" per disk too
    if (!r.first_error.empty()) layout.error = r.first_error;
  }
  layout.total_ms = Median(totals);
  for (const auto& [step, values] : timings) layout.timings[step] = Median(values);
  agents.clear();
  return layout;
}

}  // namespace

int main(int argc, char** argv) {
  int vms = 200;
  int runs = 3;
  std::vector<int> node_counts = {1, 4};
  v1::Consistency consistency = v1::CONSISTENCY_CRASH;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : "";
    if (arg == "--vms") {
      vms = std::atoi(value);
      ++i;
    } else if (arg == "--runs") {
      runs = std::max(1, std::atoi(value));
      ++i;
    } else if (arg == "--consistency") {
      consistency = std::string(value) == "pause" ? v1::CONSISTENCY_PAUSE : v1::CONSISTENCY_CRASH;
      ++i;
    } else if (arg == "--nodes") {
      node_counts.clear();
      for (std::string_view n : strata::util::Split(value, ',')) {
        node_counts.push_back(std::atoi(std::string(n).c_str()));
      }
      ++i;
    } else {
      std::fprintf(stderr,
                   "usage: cluster_backup_bench [--vms N] [--runs N] [--consistency crash|pause] "
                   "[--nodes 1,4]\n");
      return 2;
    }
  }
  const fs::path work = fs::temp_directory_path() / Cat("strata-cluster-bench-", getpid());
  fs::create_directories(work / "shared");
  const std::string block(256 * 1024, 'x');
  for (int i = 0; i < vms; ++i) {
    std::ofstream(work / "shared" / Cat("vm", i, ".raw"), std::ios::binary) << block;
  }
  std::printf(
      "cluster backup of %d VMs (one 256 KiB raw disk each, one shared dir volume), "
      "%s consistency, asked of node-0; median of %d runs after a warm-up\n\n",
      vms, consistency == v1::CONSISTENCY_PAUSE ? "pause" : "crash", runs);
  std::printf("%6s %6s %10s %10s %10s %10s %12s %10s %6s %6s\n", "nodes", "VMs", "total ms",
              "owners", "forwarded", "held", "consolidate", "snapshots", "ok", "failed");
  std::vector<Layout> layouts;
  for (int nodes : node_counts) {
    Layout l = RunLayout(work, nodes, vms, runs, consistency);
    std::printf("%6d %6d %10.1f %10.0f %10.0f %10.0f %12.0f %10d %6d %6d\n", l.nodes, vms,
                l.total_ms, l.timings["owners"], l.timings["forwarded"], l.timings["held"],
                l.timings["consolidate"], l.snapshots, l.ok, l.failed);
    if (!l.error.empty()) std::printf("       first error: %s\n", l.error.c_str());
    layouts.push_back(std::move(l));
  }
  if (layouts.size() >= 2 && layouts.front().total_ms > 0) {
    std::printf("\ntotal with %d nodes / total with %d node(s): %.2f\n", layouts.back().nodes,
                layouts.front().nodes, layouts.back().total_ms / layouts.front().total_ms);
  }
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) > 0) std::printf("load average: %.2f\n", load[0]);
  std::error_code ec;
  fs::remove_all(work, ec);
  bool all_ok = true;
  for (const Layout& l : layouts) all_ok = all_ok && l.failed == 0 && l.ok == vms;
  return all_ok ? 0 : 1;
}
