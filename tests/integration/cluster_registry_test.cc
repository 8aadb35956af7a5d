// A cluster whose members come from stratad's registry (`cluster_membership = "registry"`, no
// `cluster_members`): real stratad and strata-agent processes on the sample site. host-a and
// host-b start first; host-c, started later, registers with the same cluster and is then a member
// for the others: their cluster discovery includes its VMs and each of them reports
// member-joined:host-c to the server.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

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
using strata::testing::FreePort;
using strata::testing::WaitUntil;
using strata::util::ChildProcess;
using strata::util::ChildProcessOptions;
namespace v1 = strata::v1;

constexpr milliseconds kStartTimeout{20000};

class ClusterRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    work_ = strata::testing::FreshWorkDir(
        "strata-cluster-registry", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    auto site = strata::util::RunProcessOrError(
        {STRATA_AGENT_BIN, "sample-site", (work_ / "site").string()});
    ASSERT_TRUE(site.ok()) << site.status();
    auto server = strata::testing::StartStratad(STRATAD_BIN, work_, 0, 200, 1000, kStartTimeout);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server->process);
    http_port_ = server->http_port;
    for (const std::string host : {"host-a", "host-b", "host-c"}) {
      endpoints_[host] = "127.0.0.1:" + std::to_string(FreePort());
      const std::string file = (work_ / "site" / "agents" / (host + ".toml")).string();
      auto config = strata::agent::LoadAgentConfig(file);
      ASSERT_TRUE(config.ok()) << config.status();
      config->cluster = "prod";
      config->cluster_membership = "registry";
      config->cluster_members.clear();
      config->cluster_interval_ms = 200;
      config->cluster_timeout_ms = 500;
      config->listen = endpoints_[host];
      config->server = "127.0.0.1:" + std::to_string(server->grpc_port);
      std::ofstream(file) << strata::agent::RenderAgentConfig(*config);
    }
  }

  void TearDown() override {
    agents_.clear();
    server_.reset();
    if (!HasFailure()) {
      std::filesystem::remove_all(work_);
    } else {
      std::printf("logs kept in %s\n", work_.c_str());
    }
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
    if (cluster) request.set_cluster("prod");
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

  std::filesystem::path work_;
  std::unique_ptr<ChildProcess> server_;
  int http_port_ = 0;
  std::map<std::string, std::string> endpoints_;
  std::map<std::string, std::unique_ptr<ChildProcess>> agents_;
};

TEST_F(ClusterRegistryTest, AnAgentThatRegistersLaterIsAMemberForTheOthers) {
  ASSERT_NO_FATAL_FAILURE(StartAgent("host-a"));
  ASSERT_NO_FATAL_FAILURE(StartAgent("host-b"));
  // host-a and host-b know of each other from the registry alone.
  v1::DiscoverResponse response;
  ASSERT_TRUE(WaitUntil(
      [&] {
        return ClusterHosts("host-a", &response) ==
                   std::set<std::string>{"host:host-a", "host:host-b"} &&
               response.unreachable_members_size() == 0;
      },
      milliseconds(15000)))
      << response.DebugString().substr(0, 2000);

  ASSERT_NO_FATAL_FAILURE(StartAgent("host-c"));
  v1::DiscoverResponse own;
  ASSERT_TRUE(Discover("host-c", false, &own).ok());
  std::set<std::string> vms_of_c;
  for (const v1::VmSummary& vm : own.vms()) vms_of_c.insert(vm.uuid());
  ASSERT_FALSE(vms_of_c.empty());
  for (const std::string asked : {"host-a", "host-b"}) {
    std::set<std::string> seen;
    const bool found = WaitUntil(
        [&] {
          if (ClusterHosts(asked, &response).size() != 3) return false;
          seen.clear();
          for (const v1::VmSummary& vm : response.vms()) {
            if (vms_of_c.contains(vm.uuid())) seen.insert(vm.uuid());
          }
          return seen == vms_of_c;
        },
        milliseconds(15000));
    EXPECT_TRUE(found) << asked << ": " << response.DebugString().substr(0, 2000);
  }

  // host-a and host-b both saw host-c join, and told stratad.
  json events;
  std::set<std::string> reporters;
  EXPECT_TRUE(WaitUntil(
      [&] {
        reporters = Reporters("member-joined:host-c", &events);
        return reporters == std::set<std::string>{"host-a", "host-b"};
      },
      milliseconds(15000)))
      << events.dump(1);
}

}  // namespace
