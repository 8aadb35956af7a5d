// A VM that moves between two cluster members between two backups. Two private libvirtds
// (tests/integration/private_libvirtd.h), one per "host", so that the test can change the
// hypervisors from outside the agents as an operator (or a live migration) would; two agents in
// cluster "prod" (static membership) sharing a `dir` volume; one stratad. The VM is undefined on
// host-a and defined on host-b with the same UUID and disk: the server's graph follows, and the
// next cluster backup, which stratad sends to host-a, is forwarded to host-b.
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "private_libvirtd.h"
#include "processes.h"
#include "strata/agent/config.h"
#include "strata/util/child_process.h"
#include "strata/util/strings.h"
#include "test_support.h"

namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using strata::testing::PrivateLibvirtd;
using strata::util::Cat;
using strata::util::ChildProcess;
using strata::util::ChildProcessOptions;
using Clock = std::chrono::steady_clock;
using strata::testing::FreePort;
using strata::testing::WaitUntil;

constexpr milliseconds kStartTimeout{20000};
constexpr char kVmUuid[] = "6b1c0000-0000-4000-8000-00000000a001";

class ClusterMigrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!PrivateLibvirtd::Available()) {
      GTEST_SKIP() << strata::testing::kLibvirtdPath
                   << " or virsh is not installed (scripts/install-deps.sh installs them)";
    }
    // Short: the libvirtd sockets live below it (AF_UNIX paths are limited to 107 bytes).
    work_ = std::filesystem::temp_directory_path() / Cat("strata-mig-", getpid());
    std::filesystem::remove_all(work_);
    std::filesystem::create_directories(work_ / "shared");
    std::ofstream(work_ / "shared" / "mover.raw").write("strata", 6);
    std::filesystem::resize_file(work_ / "shared" / "mover.raw", 1 << 20);
    auto server = strata::testing::StartStratad(STRATAD_BIN, work_, 0, 200, 1000, kStartTimeout);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server->process);
    http_port_ = server->http_port;
    std::vector<strata::agent::ClusterMember> members;
    for (const std::string host : {"host-a", "host-b"}) {
      auto libvirtd = PrivateLibvirtd::Start((work_ / ("lv-" + host)).string());
      ASSERT_TRUE(libvirtd.ok()) << libvirtd.status();
      libvirtds_[host] = *std::move(libvirtd);
      // The test driver's default domain "test" has the same UUID on both: not part of this.
      ASSERT_EQ(Virsh(host, {"destroy", "test"}).first, 0);
      ASSERT_EQ(Virsh(host, {"undefine", "test"}).first, 0);
      endpoints_[host] = Cat("127.0.0.1:", FreePort());
      members.push_back({host, endpoints_[host]});
    }
    for (const std::string host : {"host-a", "host-b"}) {
      strata::agent::AgentConfig config;
      config.host_id = host;
      config.connect = libvirtds_[host]->uri();
      config.dir_volumes = {{"shared", (work_ / "shared").string()}};
      config.cluster = "prod";
      config.cluster_members = members;
      config.cluster_interval_ms = 200;
      config.cluster_timeout_ms = 500;
      config.listen = endpoints_[host];
      config.server = Cat("127.0.0.1:", server->grpc_port);
      config.event_window_ms = 200;
      config.state_dir = (work_ / ("state-" + host)).string();
      const std::string file = (work_ / (host + ".toml")).string();
      std::ofstream(file) << strata::agent::RenderAgentConfig(config);
      ChildProcessOptions options;
      options.log_path = (work_ / ("agent-" + host + ".log")).string();
      auto agent = strata::testing::StartAgentProcess({STRATA_AGENT_BIN, "run", "--config", file},
                                                      options, kStartTimeout);
      ASSERT_TRUE(agent.ok()) << agent.status();
      ASSERT_EQ(agent->endpoint, endpoints_[host]);
      agents_[host] = std::move(agent->process);
    }
  }

  void TearDown() override {
    agents_.clear();
    server_.reset();
    libvirtds_.clear();
    strata::testing::RemoveWorkDirUnlessFailed(work_, HasFailure());
  }

  std::pair<int, std::string> Virsh(const std::string& host, const std::vector<std::string>& args) {
    auto result = libvirtds_[host]->Virsh(args);
    if (!result.ok()) return {-1, result.status().ToString()};
    return *result;
  }

  std::string VmXml() const {
    return Cat("<domain type='test'><name>mover</name><uuid>", kVmUuid,
               "</uuid><memory unit='MiB'>64</memory><os><type>hvm</type></os><devices>"
               "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='",
               (work_ / "shared" / "mover.raw").string(),
               "'/><target dev='vda' bus='virtio'/></disk></devices></domain>");
  }

  // Defines and starts the VM on `host` from outside the agents.
  void DefineOn(const std::string& host) {
    const std::string file = (work_ / "mover.xml").string();
    std::ofstream(file) << VmXml();
    auto defined = Virsh(host, {"define", file});
    ASSERT_EQ(defined.first, 0) << defined.second;
    auto started = Virsh(host, {"start", "mover"});
    ASSERT_EQ(started.first, 0) << started.second;
  }

  // The host stratad's inventory places the VM on ("" when absent).
  std::string ServerHostOfVm() {
    httplib::Client client("127.0.0.1", http_port_);
    auto got = client.Get(Cat("/api/v1/vms/", kVmUuid));
    if (!got || got->status != 200) return "";
    json vm = json::parse(got->body, nullptr, false);
    return vm.is_object() ? vm.value("host", "") : "";
  }

  json Backup(const std::string& name) {
    httplib::Client client("127.0.0.1", http_port_);
    auto started = client.Post("/api/v1/backups", json{{"vms", {"mover"}}, {"name", name}}.dump(),
                               "application/json");
    if (!started || started->status != 202) {
      ADD_FAILURE() << "POST /api/v1/backups: " << (started ? started->body : "no answer");
      return json::object();
    }
    const std::string job_id = json::parse(started->body)["job"].value("id", "");
    json job;
    EXPECT_TRUE(WaitUntil(
        [&] {
          auto got = client.Get("/api/v1/jobs/" + job_id);
          if (!got || got->status != 200) return false;
          job = json::parse(got->body, nullptr, false);
          const std::string state = job.is_object() ? job.value("state", "") : "";
          return state == "succeeded" || state == "failed";
        },
        milliseconds(60000)))
        << job.dump(1);
    return job;
  }

  std::filesystem::path work_;
  std::unique_ptr<ChildProcess> server_;
  int http_port_ = 0;
  std::map<std::string, std::unique_ptr<PrivateLibvirtd>> libvirtds_;
  std::map<std::string, std::string> endpoints_;
  std::map<std::string, std::unique_ptr<ChildProcess>> agents_;
};

TEST_F(ClusterMigrationTest, AVmMovedBetweenTwoBackupsIsBackedUpWhereItRunsNow) {
  ASSERT_NO_FATAL_FAILURE(DefineOn("host-a"));
  ASSERT_TRUE(WaitUntil([&] { return ServerHostOfVm() == "host-a"; }, milliseconds(15000)));
  json first = Backup("before-move");
  ASSERT_EQ(first.value("state", ""), "succeeded") << first.dump(1);
  ASSERT_EQ(first["detail"]["vms"].size(), 1u);
  EXPECT_EQ(first["detail"]["vms"][0].value("host", ""), "host-a") << first.dump(1);

  // The move: gone from host-a, defined and running on host-b (same UUID, same disk).
  auto destroyed = Virsh("host-a", {"destroy", "mover"});
  ASSERT_EQ(destroyed.first, 0) << destroyed.second;
  auto undefined = Virsh("host-a", {"undefine", "mover", "--snapshots-metadata"});
  ASSERT_EQ(undefined.first, 0) << undefined.second;
  ASSERT_NO_FATAL_FAILURE(DefineOn("host-b"));
  const auto moved = Clock::now();
  ASSERT_TRUE(WaitUntil([&] { return ServerHostOfVm() == "host-b"; }, milliseconds(15000)))
      << ServerHostOfVm();
  std::printf("[ moved    ] the server's graph placed the VM on host-b after %lld ms\n",
              static_cast<long long>(
                  std::chrono::duration_cast<milliseconds>(Clock::now() - moved).count()));

  // stratad sends the cluster's request to host-a (first live member by id), which finds the
  // VM's new owner and forwards it there.
  json second = Backup("after-move");
  ASSERT_EQ(second.value("state", ""), "succeeded") << second.dump(1);
  ASSERT_EQ(second["detail"]["vms"].size(), 1u);
  EXPECT_EQ(second["detail"]["vms"][0].value("host", ""), "host-b") << second.dump(1);
  EXPECT_EQ(second["detail"]["coordination"]["cluster:prod"].value("member", ""), "host-a")
      << second.dump(1);
  EXPECT_TRUE(
      std::filesystem::exists(work_ / "shared" / ".strata-snapshots" / "after-move" / "mover.raw"));
}

}  // namespace
