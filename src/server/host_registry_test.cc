// HostRegistry through the real gRPC AgentRegistry service (a real client on loopback), with a
// fake agent (a real gRPC Discovery server), a SQLite catalog in a temporary file and fake time.
#include "strata/server/host_registry.h"
#include "channel.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <tuple>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registry_service.h"
#include "strata/server/host_monitor.h"
#include "strata/v1/server.grpc.pb.h"
#include "testing/fake_agent.h"
#include "time_format.h"

namespace strata::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (std::filesystem::temp_directory_path() /
             ("registry_test_" + std::to_string(::getpid()) + "_" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".db"))
                .string();
    std::filesystem::remove(path_);
    core::Graph graph;
    testing::AddVm(graph, "host-a", "u1", "web01", "nas");
    testing::AddVm(graph, "host-a", "u2", "db01", "nas");
    agent_.SetGraph(std::move(graph), {{"u1", "web01", "running"}, {"u2", "db01", "shut off"}});
    agent_.Start();
    StartServer();
  }
  void TearDown() override {
    StopServer();
    agent_.Stop();
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path_ + suffix);
  }

  void StartServer() {
    catalog_ = OpenSqliteCatalog(path_).value();
    events_ = std::make_unique<EventLog>(*catalog_);
    graphs_ = std::make_unique<GraphStore>();
    graphs_->LoadFromCatalog(*catalog_);
    RegistryOptions options;
    options.clock = [this] { return FromUnixMs(now_ms_.load()); };
    options.server_id = "server-1";
    registry_ = std::make_unique<HostRegistry>(*catalog_, *graphs_, *events_, *connector_, options);
    ASSERT_TRUE(registry_->Load().ok());
    registry_->Start();
    service_ = std::make_unique<RegistryService>(*registry_);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    stub_ = v1::AgentRegistry::NewStub(
        rpc::ConnectedChannel("127.0.0.1:" + std::to_string(port),
                              std::chrono::system_clock::now() + std::chrono::seconds(10)));
  }
  void StopServer() {
    if (server_) server_->Shutdown();
    server_.reset();
    registry_.reset();
    graphs_.reset();
    events_.reset();
    catalog_.reset();
  }

  grpc::Status Register(const std::string& host, uint64_t last_sequence,
                        v1::RegisterResponse* response, const std::string& endpoint = "") {
    v1::RegisterRequest request;
    request.set_host_id(host);
    request.set_endpoint(endpoint.empty() ? agent_.endpoint() : endpoint);
    request.set_version("1.0");
    request.set_started_at_unix_ms(1000);
    request.set_last_sequence(last_sequence);
    v1::PluginInfo* plugin = request.add_plugins();
    plugin->set_kind("hypervisor");
    plugin->set_name("libvirt");
    plugin->add_capabilities("discover");
    grpc::ClientContext context;
    return stub_->Register(&context, request, response);
  }
  bool Heartbeat(const std::string& host) {
    v1::HeartbeatRequest request;
    request.set_host_id(host);
    v1::HeartbeatResponse response;
    grpc::ClientContext context;
    EXPECT_TRUE(stub_->Heartbeat(&context, request, &response).ok());
    return response.known();
  }
  grpc::Status Notify(const std::string& host, uint64_t first, uint64_t last,
                      v1::NotifyChangesResponse* response) {
    v1::NotifyChangesRequest request;
    v1::ChangeSet* cs = request.mutable_change_set();
    cs->set_host_id(host);
    cs->set_first_sequence(first);
    cs->set_last_sequence(last);
    for (uint64_t seq = first; seq <= last; ++seq) {
      v1::VmChange* c = cs->add_changes();
      c->set_sequence(seq);
      c->set_vm_uuid("u1");
      c->set_vm_name("web01");
      c->set_kind(seq % 2 ? v1::CHANGE_KIND_MODIFIED : v1::CHANGE_KIND_ADDED);
      c->set_time_unix_ms(5000 + static_cast<int64_t>(seq));
      c->set_source("libvirt-event");
    }
    grpc::ClientContext context;
    return stub_->NotifyChanges(&context, request, response);
  }
  std::vector<std::string> EventNames() {
    std::vector<std::string> names;
    absl::StatusOr<std::vector<EventRecord>> events = catalog_->ListEvents(0, 1000, std::nullopt);
    EXPECT_TRUE(events.ok()) << events.status();
    if (!events.ok()) return names;
    for (const EventRecord& e : *events) {
      names.push_back(e.kind == EventKind::kCluster ? e.detail.value("event", "?")
                                                    : std::string(ToString(e.kind)));
    }
    return names;
  }

  std::string path_;
  std::atomic<int64_t> now_ms_{1'700'000'000'000};
  testing::FakeAgent agent_{"host-a"};
  std::unique_ptr<AgentConnector> connector_ = MakeGrpcAgentConnector({std::chrono::seconds(5)});
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<EventLog> events_;
  std::unique_ptr<GraphStore> graphs_;
  std::unique_ptr<HostRegistry> registry_;
  std::unique_ptr<RegistryService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::AgentRegistry::Stub> stub_;
};

TEST_F(RegistryTest, RegisterStoresTheHostAndFetchesItsGraph) {
  v1::RegisterResponse response;
  ASSERT_TRUE(Register("host-a", 0, &response).ok());
  EXPECT_EQ(response.server_id(), "server-1");
  EXPECT_EQ(response.heartbeat_interval_ms(), 1000);
  ASSERT_TRUE(registry_->WaitForIdle(std::chrono::seconds(10)));
  EXPECT_EQ(agent_.discover_calls(), 1);

  HostRecord host = catalog_->GetHost("host-a").value();
  EXPECT_EQ(host.endpoint, agent_.endpoint());
  EXPECT_EQ(host.state, HostState::kReachable);
  EXPECT_EQ(host.plugins[0]["name"], "libvirt");
  std::vector<VmRecord> vms = catalog_->ListVms("host-a").value();
  ASSERT_EQ(vms.size(), 2u);
  EXPECT_EQ(vms[0].name, "db01");
  EXPECT_EQ(vms[0].state, "shut off");
  EXPECT_EQ(catalog_->GetHostGraph("host-a").value().version, 1);
  graphs_->Read([](const core::Graph& g) {
    EXPECT_TRUE(g.Find("vm:u1"));
    EXPECT_TRUE(g.Find("ss:nas"));
  });
  HostView view = registry_->GetHost("host-a").value();
  EXPECT_TRUE(view.registered);
  EXPECT_EQ(view.vm_count, 2u);
  EXPECT_EQ(view.graph_version, 1);
  EXPECT_THAT(EventNames(), ElementsAre("host-registered"));
  EXPECT_EQ(registry_->counters().registrations, 1u);
}

TEST_F(RegistryTest, ClusterHostGetsAClusterNode) {
  v1::RegisterRequest request;
  request.set_host_id("host-a");
  request.set_cluster("prod");
  request.set_endpoint(agent_.endpoint());
  v1::RegisterResponse response;
  grpc::ClientContext context;
  ASSERT_TRUE(stub_->Register(&context, request, &response).ok());
  ASSERT_TRUE(registry_->WaitForIdle(std::chrono::seconds(10)));
  EXPECT_EQ(catalog_->ListClusters().value().size(), 1u);
  graphs_->Read([](const core::Graph& g) {
    auto cluster = g.Find("cluster:prod");
    ASSERT_TRUE(cluster);
    ASSERT_EQ(g.OutEdges(*cluster).size(), 1u);
    EXPECT_EQ(g.Id(g.OutEdges(*cluster)[0].node), "host:host-a");
  });
}

TEST_F(RegistryTest, ListClusterMembersNamesTheHostsOfThatClusterOnly) {
  // host-b and host-x have no agent: their refreshes fail, which does not matter here.
  for (auto [host, cluster, endpoint] :
       {std::tuple<std::string, std::string, std::string>{"host-a", "prod", agent_.endpoint()},
        {"host-b", "prod", "127.0.0.1:7102"},
        {"host-x", "test", "127.0.0.1:7109"},
        {"host-n", "", "127.0.0.1:7110"}}) {
    v1::RegisterRequest request;
    request.set_host_id(host);
    request.set_cluster(cluster);
    request.set_endpoint(endpoint);
    v1::RegisterResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->Register(&context, request, &response).ok()) << host;
  }
  ASSERT_TRUE(registry_->WaitForIdle(std::chrono::seconds(10)));
  auto list = [&](const std::string& cluster, v1::ListClusterMembersResponse* response) {
    v1::ListClusterMembersRequest request;
    request.set_cluster(cluster);
    response->Clear();
    grpc::ClientContext context;
    return stub_->ListClusterMembers(&context, request, response);
  };
  v1::ListClusterMembersResponse prod;
  ASSERT_TRUE(list("prod", &prod).ok());
  ASSERT_EQ(prod.members_size(), 2) << prod.DebugString();
  EXPECT_EQ(prod.members(0).host_id(), "host-a");
  EXPECT_EQ(prod.members(0).endpoint(), agent_.endpoint());
  EXPECT_EQ(prod.members(0).state(), "reachable");
  EXPECT_TRUE(prod.members(0).registered());
  EXPECT_EQ(prod.members(0).last_heartbeat_unix_ms(), now_ms_.load());
  EXPECT_EQ(prod.members(1).host_id(), "host-b");
  EXPECT_EQ(prod.members(1).endpoint(), "127.0.0.1:7102");

  // host-b stops beating: the registry's view says so; it is still a member.
  HostMonitor monitor(*registry_, std::chrono::hours(1));  // ticks only by hand
  now_ms_ += 3001;
  EXPECT_TRUE(Heartbeat("host-a"));
  EXPECT_THAT(monitor.Tick(), ::testing::UnorderedElementsAre("host-b", "host-x", "host-n"));
  ASSERT_TRUE(list("prod", &prod).ok());
  ASSERT_EQ(prod.members_size(), 2);
  EXPECT_EQ(prod.members(0).state(), "reachable");
  EXPECT_EQ(prod.members(1).state(), "unreachable");

  v1::ListClusterMembersResponse other;
  ASSERT_TRUE(list("test", &other).ok());
  ASSERT_EQ(other.members_size(), 1);
  EXPECT_EQ(other.members(0).host_id(), "host-x");
  ASSERT_TRUE(list("nowhere", &other).ok());
  EXPECT_EQ(other.members_size(), 0);
  grpc::Status empty = list("", &other);
  EXPECT_EQ(empty.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(empty.error_message(), "list cluster members: cluster is empty");

  // A new server process knows the hosts from the catalog, not yet registered with it.
  StopServer();
  StartServer();
  ASSERT_TRUE(list("prod", &prod).ok());
  ASSERT_EQ(prod.members_size(), 2);
  EXPECT_FALSE(prod.members(0).registered());
  EXPECT_EQ(prod.members(0).endpoint(), agent_.endpoint());
}

TEST_F(RegistryTest, MalformedRegistrationIsInvalidArgument) {
  v1::RegisterResponse response;
  grpc::Status status = Register("", 0, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "register: host_id is empty");
  v1::RegisterRequest request;
  request.set_host_id("host-a");
  grpc::ClientContext context;
  status = stub_->Register(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "register of host 'host-a': endpoint is empty");
}

TEST_F(RegistryTest, HeartbeatFromAnUnknownHostAsksToRegister) {
  EXPECT_FALSE(Heartbeat("host-a"));
  v1::RegisterResponse response;
  ASSERT_TRUE(Register("host-a", 0, &response).ok());
  EXPECT_TRUE(Heartbeat("host-a"));
  ASSERT_TRUE(registry_->WaitForIdle(std::chrono::seconds(10)));
  // A new server process on the same catalog knows the host but it is not registered with it.
  StopServer();
  StartServer();
  EXPECT_TRUE(registry_->GetHost("host-a").ok());
  EXPECT_FALSE(Heartbeat("host-a"));
  EXPECT_EQ(registry_->counters().unknown_heartbeats, 1u);
  // The graph was rebuilt from the catalog before any agent spoke.
  graphs_->Read([](const core::Graph& g) { EXPECT_TRUE(g.Find("vm:u2")); });
  EXPECT_EQ(registry_->GetHost("host-a").value().graph_version, 1);
  ASSERT_TRUE(Register("host-a", 0, &response).ok());
  EXPECT_TRUE(Heartbeat("host-a"));
  ASSERT_TRUE(registry_->WaitForIdle(std::chrono::seconds(10)));
  EXPECT_EQ(catalog_->GetHostGraph("host-a").value().version, 2);
}

TEST_F(RegistryTest, NotifyChangesStoresEventsAndDetectsGaps) {
  v1::RegisterResponse reg;
  ASSERT_TRUE(Register("host-a", 5, &reg).ok());
  EXPECT_EQ(reg.acknowledged_sequence(), 5u);
  ASSERT_TRUE(registry_->WaitForIdle(std::chrono::seconds(10)));
  const int calls = agent_.discover_calls();

  v1::NotifyChangesResponse response;
  ASSERT_TRUE(Notify("host-a", 6, 7, &response).ok());
  EXPECT_EQ(response.acknowledged_sequence(), 7u);
  EXPECT_FALSE(response.resync());
  // The same change set again (a retry) stores nothing twice.
  ASSERT_TRUE(Notify("host-a", 6, 7, &response).ok());
  EXPECT_EQ(response.acknowledged_sequence(), 7u);
  EXPECT_FALSE(response.resync());
  // 8 and 9 never arrived.
  ASSERT_TRUE(Notify("host-a", 10, 10, &response).ok());
  EXPECT_EQ(response.acknowledged_sequence(), 10u);
  EXPECT_TRUE(response.resync());
  ASSERT_TRUE(registry_->WaitForIdle(std::chrono::seconds(10)));
  EXPECT_GT(agent_.discover_calls(), calls);  // refreshed from the agent

  std::vector<EventRecord> events = catalog_->ListEvents(0, 100, "host-a").value();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[1].kind, EventKind::kAdded);     // seq 6
  EXPECT_EQ(events[2].kind, EventKind::kModified);  // seq 7
  EXPECT_EQ(events[2].vm_uuid, "u1");
  EXPECT_EQ(events[2].detail["sequence"], 7);
  EXPECT_EQ(events[2].detail["source"], "libvirt-event");
  EXPECT_EQ(ToUnixMs(events[2].time), 5007);
  EXPECT_EQ(events[3].detail["sequence"], 10);
  EXPECT_EQ(registry_->counters().sequence_gaps, 1u);
}

TEST_F(RegistryTest, AChangeSetInSequenceAsksOnlyForTheChangedVms) {
  v1::RegisterResponse reg;
  ASSERT_TRUE(Register("host-a", 0, &reg).ok());
  ASSERT_TRUE(registry_->WaitForIdle(std::chrono::seconds(10)));
  ASSERT_EQ(agent_.partial_discover_calls(), 0);

  // On the host: web01 is paused, db01 is undefined, app01 is defined.
  core::Graph after;
  testing::AddVm(after, "host-a", "u1", "web01", "nas", "paused");
  testing::AddVm(after, "host-a", "u3", "app01", "nas");
  agent_.SetGraph(after, {{"u1", "web01", "paused"}, {"u3", "app01", "running"}});
  v1::NotifyChangesRequest request;
  v1::ChangeSet* cs = request.mutable_change_set();
  cs->set_host_id("host-a");
  cs->set_first_sequence(1);
  cs->set_last_sequence(3);
  const std::pair<const char*, v1::ChangeKind> changes[] = {{"u1", v1::CHANGE_KIND_MODIFIED},
                                                            {"u2", v1::CHANGE_KIND_REMOVED},
                                                            {"u3", v1::CHANGE_KIND_ADDED}};
  uint64_t seq = 0;
  for (const auto& [uuid, kind] : changes) {
    v1::VmChange* c = cs->add_changes();
    c->set_sequence(++seq);
    c->set_vm_uuid(uuid);
    c->set_kind(kind);
  }
  v1::NotifyChangesResponse response;
  grpc::ClientContext context;
  ASSERT_TRUE(stub_->NotifyChanges(&context, request, &response).ok());
  EXPECT_FALSE(response.resync());
  ASSERT_TRUE(registry_->WaitForIdle(std::chrono::seconds(10)));

  EXPECT_EQ(agent_.partial_discover_calls(), 1);
  EXPECT_EQ(registry_->counters().refreshes_partial, 1u);
  // The spliced graph is what a whole-host discovery gives (plus the server's host node).
  graphs_->ReadHost("host-a", [&](const core::Graph* g) {
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(g->Attr(*g->Find("vm:u1"), "state"), "paused");
    EXPECT_FALSE(g->Find("vm:u2"));
    EXPECT_FALSE(g->Find("disk:u2:vda"));
    EXPECT_TRUE(g->Find("vm:u3"));
    std::vector<std::string> got, want;
    for (core::NodeIndex n : g->AllNodes()) got.emplace_back(g->Id(n));
    for (core::NodeIndex n : after.AllNodes()) want.emplace_back(after.Id(n));
    std::sort(got.begin(), got.end());
    std::sort(want.begin(), want.end());
    EXPECT_EQ(got, want);
    EXPECT_EQ(g->edge_count(), after.edge_count());
  });
  std::vector<VmRecord> vms = catalog_->ListVms("host-a").value();
  ASSERT_EQ(vms.size(), 2u);
  EXPECT_EQ(vms[0].name, "app01");
  EXPECT_EQ(vms[1].name, "web01");
  EXPECT_EQ(vms[1].state, "paused");

  // A change naming a VM that is gone again falls back to the whole host.
  agent_.SetGraph(core::Graph(), {});
  v1::NotifyChangesRequest again;
  again.mutable_change_set()->set_host_id("host-a");
  again.mutable_change_set()->set_first_sequence(4);
  again.mutable_change_set()->set_last_sequence(4);
  v1::VmChange* c = again.mutable_change_set()->add_changes();
  c->set_sequence(4);
  c->set_vm_uuid("u3");
  c->set_kind(v1::CHANGE_KIND_MODIFIED);
  grpc::ClientContext context2;
  ASSERT_TRUE(stub_->NotifyChanges(&context2, again, &response).ok());
  ASSERT_TRUE(registry_->WaitForIdle(std::chrono::seconds(10)));
  EXPECT_TRUE(catalog_->ListVms("host-a").value().empty());
  EXPECT_EQ(registry_->counters().refreshes_partial, 1u);
}

TEST_F(RegistryTest, NotifyFromAHostNotRegisteredFails) {
  v1::NotifyChangesResponse response;
  grpc::Status status = Notify("host-z", 1, 1, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(status.error_message(),
            "host 'host-z' is not registered with this server; register again");
}

TEST_F(RegistryTest, MonitorMarksHostsUnreachableAndReachableAgain) {
  v1::RegisterResponse reg;
  ASSERT_TRUE(Register("host-a", 0, &reg).ok());
  ASSERT_TRUE(registry_->WaitForIdle(std::chrono::seconds(10)));
  HostMonitor monitor(*registry_, std::chrono::hours(1));  // ticks only by hand
  now_ms_ += 2000;
  EXPECT_TRUE(monitor.Tick().empty());
  EXPECT_TRUE(Heartbeat("host-a"));
  now_ms_ += 3001;  // timeout is 3 x 1000 ms after the last heartbeat
  EXPECT_THAT(monitor.Tick(), ElementsAre("host-a"));
  EXPECT_TRUE(monitor.Tick().empty());  // only once
  EXPECT_EQ(catalog_->GetHost("host-a").value().state, HostState::kUnreachable);
  EXPECT_EQ(registry_->GetHost("host-a").value().record.state, HostState::kUnreachable);
  EXPECT_EQ(registry_->counters().hosts_unreachable, 1u);

  const int calls = agent_.discover_calls();
  EXPECT_TRUE(Heartbeat("host-a"));
  EXPECT_EQ(catalog_->GetHost("host-a").value().state, HostState::kReachable);
  ASSERT_TRUE(registry_->WaitForIdle(std::chrono::seconds(10)));
  EXPECT_EQ(agent_.discover_calls(), calls + 1);  // refreshed on its return
  EXPECT_THAT(EventNames(), ElementsAre("host-registered", "host-unreachable", "host-reachable"));
}

TEST_F(RegistryTest, HostsLoadedFromTheCatalogGetAGracePeriod) {
  v1::RegisterResponse reg;
  ASSERT_TRUE(Register("host-a", 0, &reg).ok());
  ASSERT_TRUE(registry_->WaitForIdle(std::chrono::seconds(10)));
  StopServer();
  now_ms_ += 60'000;  // the server was down for a minute
  StartServer();
  HostMonitor monitor(*registry_, std::chrono::hours(1));
  EXPECT_TRUE(monitor.Tick().empty());
  now_ms_ += 3001;
  EXPECT_THAT(monitor.Tick(), ElementsAre("host-a"));  // it never came back
}

TEST_F(RegistryTest, RefreshFailureIsReportedAndRetried) {
  agent_.SetError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "agent is busy"));
  v1::RegisterResponse reg;
  ASSERT_TRUE(Register("host-a", 0, &reg).ok());
  ASSERT_TRUE(registry_->WaitForIdle(std::chrono::seconds(10)));
  HostView view = registry_->GetHost("host-a").value();
  EXPECT_EQ(view.graph_version, 0);
  EXPECT_THAT(view.last_refresh_error, HasSubstr("discovery of host 'host-a' by its agent at '"));
  EXPECT_THAT(view.last_refresh_error, HasSubstr("agent is busy"));
  absl::StatusOr<RefreshResult> now = registry_->RefreshNow("host-a");
  EXPECT_EQ(now.status().code(), absl::StatusCode::kUnavailable);

  agent_.SetError(grpc::Status::OK);
  now_ms_ += 6000;  // past the retry interval: the next heartbeat schedules a refresh
  EXPECT_TRUE(Heartbeat("host-a"));
  ASSERT_TRUE(registry_->WaitForIdle(std::chrono::seconds(10)));
  view = registry_->GetHost("host-a").value();
  EXPECT_EQ(view.last_refresh_error, "");
  EXPECT_EQ(view.vm_count, 2u);
  EXPECT_EQ(registry_->RefreshNow("nope").status().message(), "host 'nope' not found");
}

TEST_F(RegistryTest, AgentAnsweringAsAnotherHostIsRefused) {
  v1::RegisterResponse reg;
  ASSERT_TRUE(Register("host-b", 0, &reg).ok());  // but the agent says it is host-a
  ASSERT_TRUE(registry_->WaitForIdle(std::chrono::seconds(10)));
  absl::StatusOr<RefreshResult> result = registry_->RefreshNow("host-b");
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(result.status().message(),
            "the agent at '" + agent_.endpoint() + "' answers as host 'host-a', not 'host-b'");
  graphs_->Read([](const core::Graph& g) { EXPECT_FALSE(g.Find("vm:u1")); });
}

}  // namespace
}  // namespace strata::server
