// A cluster of real processes: stratad and three strata-agent processes on the sample site
// (host-a/b/c share the storage volumes gold and silver), configured as cluster "prod" with
// static membership, each listing all three. Cluster discovery asked of one member answers the
// whole cluster's graph; a killed member shows up as unreachable and as a cluster event on the
// server.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "channel.h"
#include "processes.h"
#include "strata/agent/config.h"
#include "strata/util/child_process.h"
#include "strata/util/process.h"
#include "strata/v1/agent.grpc.pb.h"
#include "test_support.h"

namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using strata::util::ChildProcess;
using strata::util::ChildProcessOptions;
using Clock = std::chrono::steady_clock;
using strata::testing::FreePort;
using strata::testing::WaitUntil;
namespace v1 = strata::v1;

constexpr milliseconds kStartTimeout{20000};
const std::vector<std::string> kHosts = {"host-a", "host-b", "host-c"};

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    work_ = strata::testing::FreshWorkDir(
        "strata-cluster", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    auto site = strata::util::RunProcessOrError(
        {STRATA_AGENT_BIN, "sample-site", (work_ / "site").string()});
    ASSERT_TRUE(site.ok()) << site.status();
    auto server = strata::testing::StartStratad(STRATAD_BIN, work_, 0, 200, 1000, kStartTimeout);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server->process);
    http_port_ = server->http_port;
    std::vector<strata::agent::ClusterMember> members;
    for (const std::string& host : kHosts) {
      endpoints_[host] = "127.0.0.1:" + std::to_string(FreePort());
      members.push_back({host, endpoints_[host]});
    }
    for (const std::string& host : kHosts) {
      const std::string file = (work_ / "site" / "agents" / (host + ".toml")).string();
      auto config = strata::agent::LoadAgentConfig(file);
      ASSERT_TRUE(config.ok()) << config.status();
      config->cluster = "prod";
      config->cluster_members = members;
      config->cluster_interval_ms = 200;
      config->cluster_timeout_ms = 500;
      config->listen = endpoints_[host];
      config->server = "127.0.0.1:" + std::to_string(server->grpc_port);
      std::ofstream(file) << strata::agent::RenderAgentConfig(*config);
      // The rendered file reads back the same.
      auto again = strata::agent::LoadAgentConfig(file);
      ASSERT_TRUE(again.ok()) << again.status();
      ASSERT_EQ(again->cluster_members, members);
      ASSERT_EQ(again->cluster_interval_ms, 200);
      ASSERT_NO_FATAL_FAILURE(StartAgent(host, {}));
    }
    // Members started before the others saw them unreachable; wait until every member sees
    // every other one up (a cluster discovery then leaves nobody out).
    for (const std::string& host : kHosts) {
      v1::DiscoverResponse response;
      const bool settled = WaitUntil(
          [&] {
            response.Clear();
            return DiscoverCluster(host, &response).ok() &&
                   response.unreachable_members_size() == 0;
          },
          milliseconds(15000));
      ASSERT_TRUE(settled) << host << ": " << response.DebugString().substr(0, 2000);
    }
  }

  // Starts (or restarts) `host`'s agent; `env`: extra "KEY=VALUE" entries (fault injection).
  void StartAgent(const std::string& host, const std::vector<std::string>& env) {
    agents_.erase(host);
    const std::string file = (work_ / "site" / "agents" / (host + ".toml")).string();
    ChildProcessOptions options;
    options.log_path = (work_ / ("agent-" + host + ".log")).string();
    options.env = env;
    auto agent = strata::testing::StartAgentProcess({STRATA_AGENT_BIN, "run", "--config", file},
                                                    options, kStartTimeout);
    ASSERT_TRUE(agent.ok()) << agent.status();
    ASSERT_EQ(agent->endpoint, endpoints_[host]);
    agents_[host] = std::move(agent->process);
  }

  // The state of `vm` as its own host's agent reports it.
  std::string VmState(const std::string& host, const std::string& vm) {
    auto stub = v1::Discovery::NewStub(strata::rpc::ConnectedChannel(
        endpoints_[host], std::chrono::system_clock::now() + std::chrono::seconds(10)));
    v1::DiscoverRequest request;
    request.add_vms(vm);
    v1::DiscoverResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!stub->Discover(&context, request, &response).ok()) return "unknown";
    for (const v1::VmSummary& summary : response.vms()) {
      if (summary.name() == vm) return summary.state();
    }
    return "absent";
  }

  // A backup through stratad's REST API, waited for; the job's JSON.
  json BackupThroughServer(const json& body) {
    httplib::Client client("127.0.0.1", http_port_);
    client.set_read_timeout(std::chrono::seconds(60));
    auto started = client.Post("/api/v1/backups", body.dump(), "application/json");
    if (!started || started->status != 202) {
      ADD_FAILURE() << "POST /api/v1/backups: " << (started ? started->body : "no answer");
      return json::object();
    }
    const std::string job_id = json::parse(started->body)["job"].value("id", "");
    json job;
    const bool ended = WaitUntil(
        [&] {
          auto got = client.Get("/api/v1/jobs/" + job_id);
          if (!got || got->status != 200) return false;
          job = json::parse(got->body, nullptr, false);
          const std::string state = job.is_object() ? job.value("state", "") : "";
          return state == "succeeded" || state == "failed";
        },
        milliseconds(60000));
    EXPECT_TRUE(ended) << job.dump(1);
    return job;
  }

  void TearDown() override {
    agents_.clear();
    server_.reset();
    strata::testing::RemoveWorkDirUnlessFailed(work_, HasFailure());
  }

  grpc::Status DiscoverCluster(const std::string& host, v1::DiscoverResponse* out,
                               const std::string& select = "") {
    auto stub = strata::v1::Discovery::NewStub(strata::rpc::ConnectedChannel(
        endpoints_[host], std::chrono::system_clock::now() + std::chrono::seconds(10)));
    strata::v1::DiscoverRequest request;
    request.set_cluster("prod");
    request.set_select(select);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return stub->Discover(&context, request, out);
  }

  json Events() {
    httplib::Client client("127.0.0.1", http_port_);
    auto result = client.Get("/api/v1/events");
    if (!result || result->status != 200) return json::object();
    return json::parse(result->body, nullptr, false);
  }

  std::filesystem::path work_;
  std::unique_ptr<ChildProcess> server_;
  int http_port_ = 0;
  std::map<std::string, std::string> endpoints_;
  std::map<std::string, std::unique_ptr<ChildProcess>> agents_;
};

std::vector<const v1::GraphNode*> NodesOfType(const v1::DiscoverResponse& r,
                                              const std::string& type) {
  std::vector<const v1::GraphNode*> out;
  for (const v1::GraphNode& node : r.graph().nodes()) {
    if (node.type() == type) out.push_back(&node);
  }
  return out;
}

TEST_F(ClusterTest, DiscoveryFromAnyMemberAnswersTheWholeClusterWithSharedStorageMerged) {
  std::map<std::string, int> vms_per_host;
  for (const std::string& host : kHosts) {
    v1::DiscoverResponse single;
    auto stub = v1::Discovery::NewStub(strata::rpc::ConnectedChannel(
        endpoints_[host], std::chrono::system_clock::now() + std::chrono::seconds(10)));
    v1::DiscoverRequest request;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->Discover(&context, request, &single).ok());
    vms_per_host[host] = single.vms_size();
  }
  const int total = vms_per_host["host-a"] + vms_per_host["host-b"] + vms_per_host["host-c"];
  for (const std::string& asked : {std::string("host-a"), std::string("host-c")}) {
    v1::DiscoverResponse response;
    grpc::Status status = DiscoverCluster(asked, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.unreachable_members_size(), 0);
    EXPECT_EQ(response.vms_size(), total);
    EXPECT_EQ(NodesOfType(response, "vm").size(), static_cast<size_t>(total));
    EXPECT_EQ(NodesOfType(response, "host").size(), 3u);
    ASSERT_EQ(NodesOfType(response, "cluster").size(), 1u);
    EXPECT_EQ(NodesOfType(response, "cluster")[0]->id(), "cluster:prod");
    int has_member = 0;
    for (const v1::GraphEdge& edge : response.graph().edges()) {
      if (edge.type() == "has_member" && edge.from() == "cluster:prod") ++has_member;
    }
    EXPECT_EQ(has_member, 3);
    std::map<std::string, int> volumes;
    for (const v1::GraphNode* node : NodesOfType(response, "storage_volume")) {
      ++volumes[node->name()];
    }
    EXPECT_EQ(volumes["gold"], 1);
    EXPECT_EQ(volumes["silver"], 1);
  }
  // Filters apply to the cluster's graph.
  v1::DiscoverResponse filtered;
  ASSERT_TRUE(DiscoverCluster("host-b", &filtered, "type=storage_volume name=gold").ok());
  EXPECT_EQ(NodesOfType(filtered, "vm").size(), 0u);
  EXPECT_EQ(NodesOfType(filtered, "host").size(), 0u);
  int gold = 0;
  for (const v1::GraphNode* node : NodesOfType(filtered, "storage_volume")) {
    if (node->name() == "gold") ++gold;
  }
  EXPECT_EQ(gold, 1);
}

TEST_F(ClusterTest, KilledMemberIsUnreachableAndAClusterEventReachesTheServer) {
  v1::DiscoverResponse before;
  ASSERT_TRUE(DiscoverCluster("host-a", &before).ok());
  const int vms_of_c = [&] {
    int n = 0;
    for (const v1::GraphEdge& edge : before.graph().edges()) {
      if (edge.from() == "host:host-c" && edge.type() == "runs") ++n;
    }
    return n;
  }();
  ASSERT_GT(vms_of_c, 0);
  ASSERT_TRUE(agents_["host-c"]->Kill(SIGKILL).ok());
  v1::DiscoverResponse after;
  ASSERT_TRUE(DiscoverCluster("host-a", &after).ok());
  ASSERT_EQ(after.unreachable_members_size(), 1) << after.DebugString().substr(0, 2000);
  EXPECT_EQ(after.unreachable_members(0).rfind("host-c: ", 0), 0u) << after.unreachable_members(0);
  EXPECT_EQ(after.vms_size(), before.vms_size() - vms_of_c);
  EXPECT_EQ(NodesOfType(after, "host").size(), 2u);

  // host-a and host-b both see host-c go, and tell stratad.
  json events;
  std::set<std::string> reporters;
  const bool seen = WaitUntil(
      [&] {
        events = Events();
        reporters.clear();
        if (!events.is_object() || !events["events"].is_array()) return false;
        for (const json& e : events["events"]) {
          if (e.value("kind", "") == "cluster" && e["detail"].is_object() &&
              e["detail"].value("vm_name", "") == "member-unreachable:host-c" &&
              e["detail"].value("source", "") == "cluster") {
            reporters.insert(e.value("host", ""));
          }
        }
        return reporters.size() == 2;
      },
      milliseconds(15000));
  EXPECT_TRUE(seen) << events.dump(1);
}

}  // namespace

namespace {

// A backup asked of one member's agent directly (as stratad will), read to its result.
struct BackupAnswer {
  grpc::Status status;
  std::map<std::string, std::pair<bool, std::string>> vms;  // name -> (ok, error)
  std::set<std::string> hosts;                              // of the VMs that succeeded
  std::set<std::string> snapshots;
  std::multimap<std::string, std::string> snapshot_hosts;  // volume name -> host that took it
  json manifest;
  std::map<std::string, int64_t> timings;
};

BackupAnswer RunBackup(const std::string& endpoint, const std::vector<std::string>& vms,
                       const std::string& name, bool forwarded,
                       v1::Consistency consistency = v1::CONSISTENCY_CRASH) {
  auto stub = v1::Backup::NewStub(strata::rpc::ConnectedChannel(
      endpoint, std::chrono::system_clock::now() + std::chrono::seconds(10)));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::BackupRequest request;
  request.set_backup_id("id-" + name);
  request.set_name(name);
  for (const std::string& vm : vms) request.add_vms(vm);
  request.set_consistency(consistency);
  request.set_forwarded(forwarded);
  auto reader = stub->RunBackup(&context, request);
  v1::BackupEvent event;
  BackupAnswer answer;
  while (reader->Read(&event)) {
    if (!event.has_result()) continue;
    for (const v1::BackupVmResult& r : event.result().results()) {
      answer.vms[r.vm_name()] = {r.ok(), r.error()};
      if (r.ok()) answer.hosts.insert(r.host_id());
    }
    json manifest = json::parse(event.result().manifest_json(), nullptr, false);
    if (manifest.is_object()) {
      for (const json& s : manifest.value("snapshots", json::array())) {
        answer.snapshots.insert(s.value("snapshot_id", ""));
        answer.snapshot_hosts.emplace(s.value("volume_name", ""), s.value("host", ""));
      }
      answer.manifest = manifest;
    }
    for (const auto& [step, ms] : event.result().timings_ms()) answer.timings[step] = ms;
  }
  answer.status = reader->Finish();
  return answer;
}

}  // namespace

TEST_F(ClusterTest, ABackupAskedOfOneMemberReachesEveryOwnerAndComesBackAsOneAnswer) {
  BackupAnswer answer =
      RunBackup(endpoints_["host-a"], {"web01", "web03", "report01"}, "cb", false);
  ASSERT_TRUE(answer.status.ok()) << answer.status.error_message();
  for (const char* vm : {"web01", "web03", "report01"}) {
    EXPECT_TRUE(answer.vms[vm].first) << vm << ": " << answer.vms[vm].second << " "
                                      << answer.manifest.value("vms", json::array()).dump(1);
  }
  EXPECT_EQ(answer.hosts, (std::set<std::string>{"host-a", "host-b", "host-c"}));
  // web01 (host-a) and web03 (host-b) are both on the shared volume gold: ONE snapshot of it,
  // taken by the coordinator host-a for both; report01's silver by its owner host-c.
  EXPECT_EQ(answer.snapshots, std::set<std::string>{"cb"});
  EXPECT_EQ(answer.snapshot_hosts,
            (std::multimap<std::string, std::string>{{"gold", "host-a"}, {"silver", "host-c"}}));
  const std::filesystem::path gold = work_ / "site" / "volumes" / "gold" / ".strata-snapshots";
  EXPECT_TRUE(std::filesystem::exists(gold / "cb" / "web01.qcow2"));
  EXPECT_TRUE(std::filesystem::exists(gold / "cb" / "web03.qcow2"));
  EXPECT_FALSE(std::filesystem::exists(gold / "cb.host-b"));
  // host-a's manifest, and host-b's part beside the snapshot host-a took.
  EXPECT_TRUE(std::filesystem::exists(gold / "cb.manifest.json"));
  EXPECT_TRUE(std::filesystem::exists(gold / "cb@host-b.manifest.json"));
  for (const json& vm : answer.manifest["vms"]) {
    for (const json& disk : vm["disks"]) {
      if (disk.value("volume_name", "") != "gold") continue;
      EXPECT_EQ(disk.value("snapshot_id", ""), "cb") << vm.value("name", "");
      EXPECT_TRUE(std::filesystem::exists(disk.value("snapshot_path", ""))) << disk.dump();
    }
  }
  for (const char* step : {"owners", "forwarded", "held", "consolidate"}) {
    EXPECT_TRUE(answer.timings.contains(step)) << step;
  }
}

TEST_F(ClusterTest, AMemberKilledMidBackupFailsItsVmsAndTheSharedSnapshotServesTheOthers) {
  // host-b dies as it is about to pause web03.
  ASSERT_NO_FATAL_FAILURE(StartAgent("host-b", {"STRATA_AGENT_FAULTS=pause:web03=exit"}));
  BackupAnswer answer = RunBackup(endpoints_["host-a"], {"web01", "web03", "app03"}, "mk", false,
                                  v1::CONSISTENCY_PAUSE);
  ASSERT_TRUE(answer.status.ok()) << answer.status.error_message();
  EXPECT_TRUE(answer.vms["web01"].first) << answer.vms["web01"].second;
  EXPECT_TRUE(answer.vms["app03"].first) << answer.vms["app03"].second;
  EXPECT_FALSE(answer.vms["web03"].first);
  EXPECT_NE(answer.vms["web03"].second.find("backup on member host-b failed"), std::string::npos)
      << answer.vms["web03"].second;
  const std::filesystem::path gold = work_ / "site" / "volumes" / "gold" / ".strata-snapshots";
  EXPECT_TRUE(std::filesystem::exists(gold / "mk" / "web01.qcow2"));
  EXPECT_FALSE(std::filesystem::exists(gold / "mk" / "web03.qcow2"));
  EXPECT_EQ(VmState("host-a", "web01"), "running");
  EXPECT_EQ(VmState("host-c", "app03"), "running");
}

TEST_F(ClusterTest, ACoordinatorDyingMidBackupFailsTheJobAndLeavesNoVmPaused) {
  // stratad sends a cluster request to one live member: host-a (the first by id). host-a takes
  // the shared gold snapshot and dies right there, while host-b and host-c hold their VMs.
  ASSERT_NO_FATAL_FAILURE(StartAgent("host-a", {"STRATA_AGENT_FAULTS=storage-snapshot:gold=exit"}));
  json job = BackupThroughServer(
      {{"vms", {"web01", "web03", "app03"}}, {"consistency", "pause"}, {"name", "cd"}});
  EXPECT_EQ(job.value("state", ""), "failed") << job.dump(1);
  EXPECT_NE(job.value("message", "").find("host-a"), std::string::npos) << job.dump(1);
  ASSERT_TRUE(agents_["host-a"]->Wait(milliseconds(10000)).ok());
  // The members that held VMs released them when their coordinator went away (each notices on
  // its own, within its poll of the mailbox, then resumes).
  EXPECT_TRUE(
      WaitUntil([&] { return VmState("host-b", "web03") == "running"; }, milliseconds(10000)));
  EXPECT_TRUE(
      WaitUntil([&] { return VmState("host-c", "app03") == "running"; }, milliseconds(10000)));
  // host-a comes back: its journal undoes what it did (the gold snapshot), its VM runs.
  ASSERT_NO_FATAL_FAILURE(StartAgent("host-a", {}));
  EXPECT_EQ(VmState("host-a", "web01"), "running");
  EXPECT_FALSE(
      std::filesystem::exists(work_ / "site" / "volumes" / "gold" / ".strata-snapshots" / "cd"));
}

TEST_F(ClusterTest, ACoordinatorDyingBeforeItAnswersLeavesWhatCompletedOnRecord) {
  // Every owner finishes; host-a dies while consolidating: the job fails, and the VMs their
  // hosts reported done are recorded as such.
  ASSERT_NO_FATAL_FAILURE(StartAgent("host-a", {"STRATA_AGENT_FAULTS=consolidate=exit"}));
  json job = BackupThroughServer({{"cluster", "prod"}, {"name", "cc"}});
  EXPECT_EQ(job.value("state", ""), "failed") << job.dump(1);
  int reported_done = 0;
  for (const json& vm : job["detail"]["vms"]) {
    EXPECT_EQ(vm.value("state", ""), "failed") << vm.dump();
    if (vm.value("reported_done", false)) ++reported_done;
  }
  EXPECT_GT(reported_done, 0) << job.dump(1);
}

TEST_F(ClusterTest, AForwardedRequestIsNeverForwardedAgain) {
  BackupAnswer answer = RunBackup(endpoints_["host-a"], {"web01", "web03"}, "loop", true);
  ASSERT_TRUE(answer.status.ok()) << answer.status.error_message();
  EXPECT_TRUE(answer.vms["web01"].first) << answer.vms["web01"].second;
  EXPECT_FALSE(answer.vms["web03"].first);
  EXPECT_EQ(answer.vms["web03"].second,
            "VM 'web03' is not on host 'host-a'; a forwarded request is never forwarded again");
}

TEST_F(ClusterTest, AVmWhoseOwnerIsUnreachableFailsAndTheOthersComplete) {
  ASSERT_TRUE(agents_["host-c"]->Kill(SIGKILL).ok());
  BackupAnswer answer;
  // Once host-a's coordinator has seen host-c go (one health round).
  ASSERT_TRUE(WaitUntil(
      [&] {
        answer = RunBackup(endpoints_["host-a"], {"web01", "report01"},
                           "u" + std::to_string(std::rand() % 100000), false);
        return answer.status.ok() && !answer.vms["report01"].first &&
               answer.vms["report01"].second.find("host-c") != std::string::npos;
      },
      milliseconds(15000)))
      << answer.status.error_message() << " report01: " << answer.vms["report01"].second;
  EXPECT_TRUE(answer.vms["web01"].first) << answer.vms["web01"].second;
}
