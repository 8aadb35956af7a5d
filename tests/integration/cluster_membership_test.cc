// Cluster membership from outside the agent's config, with real stratad and strata-agent
// processes on the sample site:
// - `registry`: the hosts registered with stratad under the agent's cluster. host-a and host-b
//   start first; host-c, started later, registers with the same cluster and is then a member for
//   the others: their cluster discovery includes its VMs and each of them reports
//   member-joined:host-c to the server.
// - `pacemaker`: the nodes of a real Pacemaker cluster, read with `crm_mon --output-as=xml`.
//   scripts/pacemaker-env.sh starts a one-node cluster "strata-test" whose corosync node is
//   host-a; the test adds host-b and host-c as remote nodes (cibadmin) and removes host-c again,
//   and the agents follow: joined, in cluster discovery, then left. It runs only on a cluster of
//   that name (it changes the cluster's configuration) and skips, saying why, elsewhere.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "channel.h"
#include "processes.h"
#include "strata/agent/config.h"
#include "strata/util/child_process.h"
#include "strata/util/process.h"
#include "strata/util/strings.h"
#include "strata/v1/agent.grpc.pb.h"
#include "test_support.h"

namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using strata::testing::FreePort;
using strata::testing::WaitUntil;
using strata::util::ChildProcess;
using strata::util::ChildProcessOptions;
namespace v1 = strata::v1;

constexpr milliseconds kStartTimeout{20000};

// Three agents of the sample site in cluster `cluster_`; the derived fixture says where their
// membership comes from (Configure). Agents are started by the test, one by one.
class ClusterMembershipTest : public ::testing::Test {
 protected:
  explicit ClusterMembershipTest(std::string cluster) : cluster_(std::move(cluster)) {}

  // Sets the membership of one agent's configuration (its listen address and server are set).
  virtual void Configure(strata::agent::AgentConfig& config) = 0;

  void SetUp() override {
    work_ = strata::testing::FreshWorkDir(
        "strata-cluster-membership",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    auto site = strata::util::RunProcessOrError(
        {STRATA_AGENT_BIN, "sample-site", (work_ / "site").string()});
    ASSERT_TRUE(site.ok()) << site.status();
    auto server = strata::testing::StartStratad(STRATAD_BIN, work_, 0, 200, 1000, kStartTimeout);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server->process);
    http_port_ = server->http_port;
    for (const std::string host : {"host-a", "host-b", "host-c"}) {
      endpoints_[host] = "127.0.0.1:" + std::to_string(FreePort());
    }
    for (const auto& [host, endpoint] : endpoints_) {
      const std::string file = (work_ / "site" / "agents" / (host + ".toml")).string();
      auto config = strata::agent::LoadAgentConfig(file);
      ASSERT_TRUE(config.ok()) << config.status();
      config->cluster = cluster_;
      config->cluster_interval_ms = 200;
      config->cluster_timeout_ms = 500;
      config->listen = endpoint;
      config->server = "127.0.0.1:" + std::to_string(server->grpc_port);
      Configure(*config);
      std::ofstream(file) << strata::agent::RenderAgentConfig(*config);
    }
  }

  void TearDown() override {
    agents_.clear();
    server_.reset();
    strata::testing::RemoveWorkDirUnlessFailed(work_, HasFailure());
  }

  void StartAgent(const std::string& host) {
    const std::string file = (work_ / "site" / "agents" / (host + ".toml")).string();
    ChildProcessOptions options;
    options.log_path = (work_ / ("agent-" + host + ".log")).string();
    auto agent = strata::testing::StartAgentProcess({STRATA_AGENT_BIN, "run", "--config", file},
                                                    options, kStartTimeout);
    ASSERT_TRUE(agent.ok()) << agent.status();
    ASSERT_EQ(agent->endpoint, endpoints_[host]);
    agents_[host] = std::move(agent->process);
  }

  grpc::Status Discover(const std::string& host, bool cluster, v1::DiscoverResponse* out) {
    auto stub = v1::Discovery::NewStub(strata::rpc::ConnectedChannel(
        endpoints_[host], std::chrono::system_clock::now() + std::chrono::seconds(10)));
    v1::DiscoverRequest request;
    if (cluster) request.set_cluster(cluster_);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return stub->Discover(&context, request, out);
  }

  // The host nodes of a cluster discovery asked of `asked`; empty when it failed.
  std::set<std::string> ClusterHosts(const std::string& asked, v1::DiscoverResponse* out) {
    out->Clear();
    std::set<std::string> hosts;
    if (!Discover(asked, true, out).ok()) return hosts;
    for (const v1::GraphNode& node : out->graph().nodes()) {
      if (node.type() == "host") hosts.insert(node.id());
    }
    return hosts;
  }

  // Which hosts reported the cluster event `event` to stratad.
  std::set<std::string> Reporters(const std::string& event, json* events) {
    std::set<std::string> reporters;
    httplib::Client client("127.0.0.1", http_port_);
    auto result = client.Get("/api/v1/events");
    if (!result || result->status != 200) return reporters;
    *events = json::parse(result->body, nullptr, false);
    if (!events->is_object() || !(*events)["events"].is_array()) return reporters;
    for (const json& e : (*events)["events"]) {
      if (e.value("kind", "") == "cluster" && e["detail"].is_object() &&
          e["detail"].value("vm_name", "") == event &&
          e["detail"].value("source", "") == "cluster") {
        reporters.insert(e.value("host", ""));
      }
    }
    return reporters;
  }

  // The VM UUIDs `host`'s agent reports of its own.
  std::set<std::string> OwnVms(const std::string& host) {
    v1::DiscoverResponse own;
    std::set<std::string> uuids;
    EXPECT_TRUE(Discover(host, false, &own).ok()) << host;
    for (const v1::VmSummary& vm : own.vms()) uuids.insert(vm.uuid());
    return uuids;
  }

  // Whether the cluster discovery asked of `asked` has exactly `hosts` as its members, none
  // unreachable, and every VM of `vms_of` among its VMs.
  bool SeesMembers(const std::string& asked, const std::set<std::string>& hosts,
                   const std::set<std::string>& vms_of, v1::DiscoverResponse* response) {
    std::set<std::string> host_ids;
    for (const std::string& host : hosts) host_ids.insert("host:" + host);
    if (ClusterHosts(asked, response) != host_ids) return false;
    if (response->unreachable_members_size() != 0) return false;
    std::set<std::string> seen;
    for (const v1::VmSummary& vm : response->vms()) {
      if (vms_of.contains(vm.uuid())) seen.insert(vm.uuid());
    }
    return seen == vms_of;
  }

  // Waits (15 s at most) until the cluster discovery asked of each of `askers` SeesMembers.
  ::testing::AssertionResult SeenBy(const std::vector<std::string>& askers,
                                    const std::set<std::string>& hosts,
                                    const std::set<std::string>& vms_of) {
    for (const std::string& asked : askers) {
      v1::DiscoverResponse response;
      if (!WaitUntil([&] { return SeesMembers(asked, hosts, vms_of, &response); },
                     milliseconds(15000))) {
        return ::testing::AssertionFailure()
               << asked
               << " does not see the expected members: " << response.DebugString().substr(0, 2000);
      }
    }
    return ::testing::AssertionSuccess();
  }

  // Waits (15 s at most) until exactly `hosts` have reported the cluster event `event` to stratad.
  ::testing::AssertionResult ReportedBy(const std::string& event,
                                        const std::set<std::string>& hosts) {
    json events;
    if (WaitUntil([&] { return Reporters(event, &events) == hosts; }, milliseconds(15000))) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << event << " not reported by exactly the expected "
                                         << "hosts: " << events.dump(1);
  }

  const std::string cluster_;
  std::filesystem::path work_;
  std::unique_ptr<ChildProcess> server_;
  int http_port_ = 0;
  std::map<std::string, std::string> endpoints_;
  std::map<std::string, std::unique_ptr<ChildProcess>> agents_;
};

class ClusterRegistryTest : public ClusterMembershipTest {
 protected:
  ClusterRegistryTest() : ClusterMembershipTest("prod") {}
  void Configure(strata::agent::AgentConfig& config) override {
    config.cluster_membership = "registry";
    config.cluster_members.clear();
  }
};

TEST_F(ClusterRegistryTest, AnAgentThatRegistersLaterIsAMemberForTheOthers) {
  ASSERT_NO_FATAL_FAILURE(StartAgent("host-a"));
  ASSERT_NO_FATAL_FAILURE(StartAgent("host-b"));
  // host-a and host-b know of each other from the registry alone.
  ASSERT_TRUE(SeenBy({"host-a"}, {"host-a", "host-b"}, {}));

  ASSERT_NO_FATAL_FAILURE(StartAgent("host-c"));
  const std::set<std::string> vms_of_c = OwnVms("host-c");
  ASSERT_FALSE(vms_of_c.empty());
  EXPECT_TRUE(SeenBy({"host-a", "host-b"}, {"host-a", "host-b", "host-c"}, vms_of_c));
  // host-a and host-b both saw host-c join, and told stratad.
  EXPECT_TRUE(ReportedBy("member-joined:host-c", {"host-a", "host-b"}));
}

// The nodes of the Pacemaker cluster "strata-test" (scripts/pacemaker-env.sh): host-a is its
// corosync node; host-b and host-c are remote nodes the test configures (an ocf:pacemaker:remote
// resource each, pointing at a port where no pacemaker_remote listens, so they stay offline for
// Pacemaker; membership is what they are configured as, their health is the agents' own check).
class ClusterPacemakerTest : public ClusterMembershipTest {
 protected:
  static constexpr const char* kCluster = "strata-test";

  ClusterPacemakerTest() : ClusterMembershipTest(kCluster) {}

  void SetUp() override {
    auto name = strata::util::RunProcessOrError({"corosync-cmapctl", "-g", "totem.cluster_name"});
    if (!name.ok()) {
      GTEST_SKIP() << "no Pacemaker cluster runs here (scripts/pacemaker-env.sh start starts one): "
                   << name.status().message();
    }
    // corosync-cmapctl prints "totem.cluster_name (str) = NAME".
    if (!strata::util::Trim(*name).ends_with(std::string(" = ") + kCluster)) {
      GTEST_SKIP() << "the running cluster is not '" << kCluster
                   << "', and this test changes its configuration: " << *name;
    }
    for (const std::string node : {"host-b", "host-c"}) RemoveRemoteNode(node);
    ClusterMembershipTest::SetUp();
  }

  void TearDown() override {
    if (IsSkipped()) return;  // nothing was set up
    for (const std::string node : {"host-b", "host-c"}) RemoveRemoteNode(node);
    ClusterMembershipTest::TearDown();
  }

  void Configure(strata::agent::AgentConfig& config) override {
    config.cluster_membership = "pacemaker";
    // Pacemaker names the nodes; these say where each node's agent listens.
    config.cluster_members.clear();
    for (const auto& [host, endpoint] : endpoints_) {
      config.cluster_members.push_back({host, endpoint});
    }
  }

  void AddRemoteNode(const std::string& node) {
    const std::string xml =
        "<primitive class=\"ocf\" provider=\"pacemaker\" type=\"remote\" id=\"" + node +
        "\"><instance_attributes id=\"" + node + "-ia\"><nvpair id=\"" + node +
        "-server\" name=\"server\" value=\"127.0.0.1\"/><nvpair id=\"" + node +
        "-port\" name=\"port\" value=\"" + std::to_string(FreePort()) +
        "\"/></instance_attributes></primitive>";
    auto added =
        strata::util::RunProcessOrError({"cibadmin", "--create", "-o", "resources", "-X", xml});
    ASSERT_TRUE(added.ok()) << added.status();
  }

  // Removes the remote node `node` if it is configured (a leftover of an earlier run included).
  static void RemoveRemoteNode(const std::string& node) {
    (void)strata::util::RunProcess(
        {"cibadmin", "--delete", "-o", "resources", "-X", "<primitive id=\"" + node + "\"/>"});
  }

  // Whether `crm_mon --output-as=xml` lists `node`.
  static bool CrmMonLists(const std::string& node) {
    auto xml = strata::util::RunProcessOrError({"crm_mon", "--output-as=xml", "-1"});
    return xml.ok() && xml->find("<node name=\"" + node + "\"") != std::string::npos;
  }
};

TEST_F(ClusterPacemakerTest, MembersFollowTheClustersNodesAsTheyJoinAndLeave) {
  ASSERT_NO_FATAL_FAILURE(AddRemoteNode("host-b"));
  ASSERT_TRUE(WaitUntil([] { return CrmMonLists("host-b"); }, milliseconds(10000)));
  ASSERT_NO_FATAL_FAILURE(StartAgent("host-a"));
  ASSERT_NO_FATAL_FAILURE(StartAgent("host-b"));
  ASSERT_NO_FATAL_FAILURE(StartAgent("host-c"));
  const std::set<std::string> vms_of_b = OwnVms("host-b");
  const std::set<std::string> vms_of_c = OwnVms("host-c");
  ASSERT_FALSE(vms_of_b.empty());
  ASSERT_FALSE(vms_of_c.empty());

  // host-c's agent runs, but host-c is no node of the cluster yet: not a member.
  ASSERT_TRUE(SeenBy({"host-a"}, {"host-a", "host-b"}, vms_of_b));

  // host-c joins the cluster: every agent's next crm_mon makes it a member.
  ASSERT_NO_FATAL_FAILURE(AddRemoteNode("host-c"));
  EXPECT_TRUE(SeenBy({"host-a", "host-b"}, {"host-a", "host-b", "host-c"}, vms_of_c));
  EXPECT_TRUE(ReportedBy("member-joined:host-c", {"host-a", "host-b"}));

  // host-c leaves the cluster: no longer a member, although its agent still answers.
  RemoveRemoteNode("host-c");
  EXPECT_TRUE(SeenBy({"host-a", "host-b"}, {"host-a", "host-b"}, vms_of_b));
  EXPECT_TRUE(ReportedBy("member-left:host-c", {"host-a", "host-b"}));
}

}  // namespace
