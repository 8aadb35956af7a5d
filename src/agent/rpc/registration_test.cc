// The registration client against an in-process fake stratad (a real gRPC AgentRegistry server
// on loopback): register, heartbeat, change notifications, register again after known=false and
// after the server restarts on the same port, and back-pressure when the server is slow.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "strata/agent/agent.h"
#include "strata/agent/sample_site.h"
#include "strata/v1/server.grpc.pb.h"

namespace strata::agent {
namespace {

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return condition();
}

class FakeRegistry final : public v1::AgentRegistry::Service {
 public:
  grpc::Status Register(grpc::ServerContext*, const v1::RegisterRequest* request,
                        v1::RegisterResponse* response) override {
    std::lock_guard lock(mutex_);
    registers_.push_back(*request);
    known_ = true;
    response->set_server_id("fake-1");
    response->set_heartbeat_interval_ms(100);
    response->set_acknowledged_sequence(0);
    return grpc::Status::OK;
  }
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override {
    std::lock_guard lock(mutex_);
    ++heartbeats_;
    EXPECT_EQ(request->host_id(), "host-a");
    response->set_known(known_);
    return grpc::Status::OK;
  }
  // One NotifyChanges as the fake saw it.
  struct NotifyCall {
    uint64_t first_sequence = 0;
    uint64_t last_sequence = 0;
    size_t changes = 0;
    // The agent's newest change-log sequence just before this call was acknowledged: the next
    // call must carry at least up to it.
    uint64_t log_last_at_ack = 0;
  };

  grpc::Status NotifyChanges(grpc::ServerContext*, const v1::NotifyChangesRequest* request,
                             v1::NotifyChangesResponse* response) override {
    const int in_flight = ++in_flight_;
    std::chrono::milliseconds delay;
    std::function<uint64_t()> log_last;
    {
      std::lock_guard lock(mutex_);
      max_in_flight_ = std::max(max_in_flight_, in_flight);
      for (const auto& c : request->change_set().changes()) changes_.push_back(c);
      delay = notify_delay_;
      log_last = log_last_;
    }
    if (delay.count() > 0) std::this_thread::sleep_for(delay);  // a slow server
    NotifyCall call;
    call.first_sequence = request->change_set().first_sequence();
    call.last_sequence = request->change_set().last_sequence();
    call.changes = static_cast<size_t>(request->change_set().changes_size());
    call.log_last_at_ack = log_last ? log_last() : 0;
    {
      std::lock_guard lock(mutex_);
      calls_.push_back(call);
    }
    --in_flight_;
    response->set_acknowledged_sequence(request->change_set().last_sequence());
    return grpc::Status::OK;
  }

  // Every NotifyChanges from now on takes `delay`; `log_last` reads the agent's newest sequence.
  void SetSlowNotify(std::chrono::milliseconds delay, std::function<uint64_t()> log_last) {
    std::lock_guard lock(mutex_);
    notify_delay_ = delay;
    log_last_ = std::move(log_last);
  }
  std::vector<NotifyCall> calls() {
    std::lock_guard lock(mutex_);
    return calls_;
  }
  int max_in_flight() {
    std::lock_guard lock(mutex_);
    return max_in_flight_;
  }

  void Forget() {
    std::lock_guard lock(mutex_);
    known_ = false;
  }
  std::vector<v1::RegisterRequest> registers() {
    std::lock_guard lock(mutex_);
    return registers_;
  }
  int heartbeats() {
    std::lock_guard lock(mutex_);
    return heartbeats_;
  }
  std::vector<v1::VmChange> changes() {
    std::lock_guard lock(mutex_);
    return changes_;
  }

 private:
  std::mutex mutex_;
  bool known_ = true;
  std::vector<v1::RegisterRequest> registers_;
  int heartbeats_ = 0;
  std::vector<v1::VmChange> changes_;
  std::chrono::milliseconds notify_delay_{0};
  std::function<uint64_t()> log_last_;
  std::vector<NotifyCall> calls_;
  std::atomic<int> in_flight_{0};
  int max_in_flight_ = 0;
};

struct FakeServer {
  explicit FakeServer(const std::string& address) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&registry);
    server = builder.BuildAndStart();
  }
  ~FakeServer() {
    if (server) server->Shutdown(std::chrono::system_clock::now());
  }
  FakeRegistry registry;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
};

class RegistrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    site_dir_ = new std::string(std::filesystem::temp_directory_path() /
                                ("strata-registration-test-" + std::to_string(getpid())));
    absl::StatusOr<SampleSite> site = GenerateSampleSite(*site_dir_);
    ASSERT_TRUE(site.ok()) << site.status();
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*site_dir_);
    delete site_dir_;
  }

  std::unique_ptr<Agent> StartAgent(int server_port, double reconcile_s = 30) {
    absl::StatusOr<AgentConfig> config = LoadAgentConfig(*site_dir_ + "/agents/host-a.toml");
    EXPECT_TRUE(config.ok()) << config.status();
    AgentOptions options;
    options.config = *config;
    options.config.cluster = "lab";
    options.config.server = "127.0.0.1:" + std::to_string(server_port);
    options.config.plugin_dir = STRATA_PLUGIN_DIR;
    options.config.reconcile_interval_s = reconcile_s;
    absl::StatusOr<std::unique_ptr<Agent>> agent = Agent::Start(std::move(options));
    EXPECT_TRUE(agent.ok()) << agent.status();
    return agent.ok() ? *std::move(agent) : nullptr;
  }

  static std::string* site_dir_;
};
std::string* RegistrationTest::site_dir_ = nullptr;

TEST_F(RegistrationTest, RegistersHeartbeatsAndPushesChanges) {
  FakeServer fake("127.0.0.1:0");
  ASSERT_NE(fake.port, 0);
  std::unique_ptr<Agent> agent = StartAgent(fake.port);
  ASSERT_NE(agent, nullptr);
  ASSERT_TRUE(
      WaitFor([&] { return !fake.registry.registers().empty(); }, std::chrono::seconds(10)));
  v1::RegisterRequest request = fake.registry.registers().front();
  EXPECT_EQ(request.host_id(), "host-a");
  EXPECT_EQ(request.cluster(), "lab");
  EXPECT_EQ(request.endpoint(), agent->endpoint());
  EXPECT_EQ(request.version(), AgentVersion());
  EXPECT_EQ(request.started_at_unix_ms(), agent->services().started_at_unix_ms());
  std::set<std::string> plugins;
  for (const auto& p : request.plugins()) plugins.insert(p.kind() + "/" + p.name());
  // Every plug-in built into the directory is loaded; these two are always there (the test
  // depends on them).
  EXPECT_TRUE(plugins.contains("hypervisor/libvirt")) << ::testing::PrintToString(plugins);
  EXPECT_TRUE(plugins.contains("storage/dir")) << ::testing::PrintToString(plugins);
  // Heartbeats at the server's interval (100 ms).
  EXPECT_TRUE(WaitFor([&] { return fake.registry.heartbeats() >= 3; }, std::chrono::seconds(10)));
  // The first reconciliation's five VMs arrive as added changes, sequences 1..5.
  ASSERT_TRUE(
      WaitFor([&] { return fake.registry.changes().size() >= 5; }, std::chrono::seconds(10)));
  std::vector<v1::VmChange> changes = fake.registry.changes();
  ASSERT_EQ(changes.size(), 5u);
  for (size_t i = 0; i < changes.size(); ++i) {
    EXPECT_EQ(changes[i].sequence(), i + 1);
    EXPECT_EQ(changes[i].kind(), v1::CHANGE_KIND_ADDED);
    EXPECT_EQ(changes[i].source(), "reconcile");
  }
  RegistrationStats stats = agent->registration()->stats();
  EXPECT_TRUE(stats.registered);
  EXPECT_EQ(stats.server_id, "fake-1");
  EXPECT_EQ(stats.acknowledged_sequence, 5u);
  EXPECT_EQ(fake.registry.registers().size(), 1u);
}

TEST_F(RegistrationTest, RegistersAgainWhenTheServerForgetsTheAgent) {
  FakeServer fake("127.0.0.1:0");
  std::unique_ptr<Agent> agent = StartAgent(fake.port);
  ASSERT_NE(agent, nullptr);
  ASSERT_TRUE(WaitFor([&] { return fake.registry.heartbeats() >= 1; }, std::chrono::seconds(10)));
  EXPECT_EQ(fake.registry.registers().size(), 1u);
  fake.registry.Forget();  // the next heartbeat answers known=false
  ASSERT_TRUE(
      WaitFor([&] { return fake.registry.registers().size() >= 2; }, std::chrono::seconds(10)));
  EXPECT_EQ(fake.registry.registers()[1].started_at_unix_ms(),
            fake.registry.registers()[0].started_at_unix_ms());
  EXPECT_EQ(fake.registry.registers()[1].last_sequence(), 5u);
}

TEST_F(RegistrationTest, RegistersAgainAfterTheServerRestartsOnTheSamePort) {
  auto fake = std::make_unique<FakeServer>("127.0.0.1:0");
  const int port = fake->port;
  std::unique_ptr<Agent> agent = StartAgent(port);
  ASSERT_NE(agent, nullptr);
  ASSERT_TRUE(WaitFor([&] { return fake->registry.heartbeats() >= 1; }, std::chrono::seconds(10)));
  fake.reset();  // stratad goes away
  ASSERT_TRUE(WaitFor([&] { return !agent->registration()->stats().registered; },
                      std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // a few failed attempts
  fake = std::make_unique<FakeServer>("127.0.0.1:" + std::to_string(port));
  ASSERT_EQ(fake->port, port);
  // Back-off is capped at 2 s: the agent is back well within that plus a reconnect.
  ASSERT_TRUE(
      WaitFor([&] { return !fake->registry.registers().empty(); }, std::chrono::seconds(6)));
  EXPECT_EQ(fake->registry.registers().front().endpoint(), agent->endpoint());
  EXPECT_TRUE(WaitFor([&] { return agent->registration()->stats().registrations >= 2; },
                      std::chrono::seconds(5)));
  EXPECT_TRUE(WaitFor([&] { return fake->registry.heartbeats() >= 1; }, std::chrono::seconds(5)));
}

TEST_F(RegistrationTest, SlowServerGetsEveryChangeOnceInFewerBiggerNotifications) {
  // Back-pressure: each NotifyChanges takes 300 ms while the agent's change log grows by one
  // change every 5 ms for 2 s. The agent keeps one call in flight and sends, in each, everything
  // since the last acknowledged sequence: no change lost, none twice, far fewer calls.
  FakeServer fake("127.0.0.1:0");
  ASSERT_NE(fake.port, 0);
  std::unique_ptr<Agent> agent = StartAgent(fake.port);
  ASSERT_NE(agent, nullptr);
  ChangeLog& log = agent->services().change_log();
  // The first reconciliation's five VMs first, so that the stream below is all that follows.
  ASSERT_TRUE(
      WaitFor([&] { return fake.registry.changes().size() >= 5; }, std::chrono::seconds(10)));
  fake.registry.SetSlowNotify(std::chrono::milliseconds(300),
                              [&log] { return log.last_sequence(); });

  int produced = 0;
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(2)) {
    // A VM appears: one "added" change in the agent's log, as the event manager writes them.
    const std::string uuid = "5f0a0000-0000-4000-8000-" + std::to_string(100000000000 + produced);
    ASSERT_EQ(
        log.ObserveSome({uuid}, {{uuid, "stream-" + std::to_string(produced), "running", "digest"}},
                        "test")
            .size(),
        1u);
    ++produced;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const uint64_t last = log.last_sequence();
  ASSERT_TRUE(WaitFor(
      [&] {
        std::vector<v1::VmChange> got = fake.registry.changes();
        return !got.empty() && got.back().sequence() >= last;
      },
      std::chrono::seconds(10)))
      << "the server did not get every change up to " << last;
  agent.reset();  // no call after this point

  // Every change exactly once, in sequence order, without a gap: 1..last.
  std::vector<v1::VmChange> changes = fake.registry.changes();
  ASSERT_EQ(changes.size(), last) << "changes lost or sent twice";
  for (size_t i = 0; i < changes.size(); ++i) {
    ASSERT_EQ(changes[i].sequence(), i + 1) << "at position " << i;
  }
  EXPECT_EQ(last, 5u + static_cast<uint64_t>(produced));

  // Few, big calls: each one carries everything since the previous one was acknowledged.
  std::vector<FakeRegistry::NotifyCall> calls = fake.registry.calls();
  ASSERT_FALSE(calls.empty());
  EXPECT_LE(calls.size() * 10, static_cast<size_t>(produced))
      << calls.size() << " NotifyChanges calls for " << produced << " changes";
  for (size_t i = 1; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].first_sequence, calls[i - 1].last_sequence + 1) << "call " << i;
    EXPECT_GE(calls[i].last_sequence, calls[i - 1].log_last_at_ack)
        << "call " << i << " left out changes the log had when call " << i - 1
        << " was acknowledged";
    EXPECT_EQ(calls[i].changes, calls[i].last_sequence - calls[i].first_sequence + 1)
        << "call " << i;
  }
  // Never more than one NotifyChanges in flight.
  EXPECT_EQ(fake.registry.max_in_flight(), 1);
  std::printf("[ slow     ] %d changes in %zu NotifyChanges calls (largest %zu)\n", produced,
              calls.size(),
              std::max_element(calls.begin(), calls.end(), [](const auto& a, const auto& b) {
                return a.changes < b.changes;
              })->changes);
}

TEST_F(RegistrationTest, RpcHandlersDoNotWaitForAnUnreachableServer) {
  // Nothing listens on the server port; the agent still serves at once.
  FakeServer placeholder("127.0.0.1:0");
  const int port = placeholder.port;
  placeholder.server->Shutdown(std::chrono::system_clock::now());
  placeholder.server.reset();
  std::unique_ptr<Agent> agent = StartAgent(port, 0);
  ASSERT_NE(agent, nullptr);
  EXPECT_FALSE(agent->registration()->stats().registered);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<DiscoverResult> result = agent->services().Discover({});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_FALSE(agent->registration()->stats().registered);
}

}  // namespace
}  // namespace strata::agent
