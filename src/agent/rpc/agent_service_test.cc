// The agent's gRPC services with a real gRPC client on loopback, the real plug-ins from the
// build tree and the libvirt test driver on the sample site's host files (real disk images).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <libvirt/libvirt.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <thread>

#include "channel.h"
#include "graph_proto.h"
#include "strata/agent/agent.h"
#include "strata/agent/agent_server.h"
#include "strata/agent/sample_site.h"
#include "strata/v1/agent.grpc.pb.h"

namespace strata::agent {
namespace {

class AgentServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    site_dir_ = new std::string(std::filesystem::temp_directory_path() /
                                ("strata-agent-service-test-" + std::to_string(getpid())));
    absl::StatusOr<SampleSite> site = GenerateSampleSite(*site_dir_);
    ASSERT_TRUE(site.ok()) << site.status();
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*site_dir_);
    delete site_dir_;
  }

  void StartAgent(const std::string& connect_override = "") {
    absl::StatusOr<AgentConfig> config = LoadAgentConfig(*site_dir_ + "/agents/host-a.toml");
    ASSERT_TRUE(config.ok()) << config.status();
    AgentOptions options;
    options.config = *config;
    if (!connect_override.empty()) options.config.connect = connect_override;
    options.config.server = "";  // standalone
    options.config.plugin_dir = STRATA_PLUGIN_DIR;
    options.config.reconcile_interval_s = 0;  // discoveries only on request
    options.config.event_window_ms = 0;       // no event manager: the log is fed by discoveries
    absl::StatusOr<std::unique_ptr<Agent>> agent = Agent::Start(std::move(options));
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = *std::move(agent);
    channel_ = rpc::ConnectedChannel(agent_->endpoint(),
                                     std::chrono::system_clock::now() + std::chrono::seconds(10));
  }

  v1::DiscoverResponse Discover(const v1::DiscoverRequest& request, grpc::Status* status) {
    auto stub = v1::Discovery::NewStub(channel_);
    grpc::ClientContext context;
    v1::DiscoverResponse response;
    *status = stub->Discover(&context, request, &response);
    return response;
  }

  static std::set<std::string> NamesOf(const v1::Graph& graph, const std::string& type) {
    std::set<std::string> names;
    for (const auto& node : graph.nodes()) {
      if (node.type() == type) names.insert(node.name());
    }
    return names;
  }

  static std::string* site_dir_;
  std::unique_ptr<Agent> agent_;
  std::shared_ptr<grpc::Channel> channel_;
};
std::string* AgentServiceTest::site_dir_ = nullptr;

TEST_F(AgentServiceTest, GetAgentInfoListsIdentityPluginsAndCapabilities) {
  StartAgent();
  auto stub = v1::Agent::NewStub(channel_);
  grpc::ClientContext context;
  v1::AgentInfo info;
  grpc::Status status = stub->GetAgentInfo(&context, v1::GetAgentInfoRequest(), &info);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(info.host_id(), "host-a");
  EXPECT_EQ(info.endpoint(), "127.0.0.1:" + std::to_string(agent_->port()));
  EXPECT_NE(agent_->port(), 0);
  EXPECT_EQ(info.hypervisor_uri(), "test://" + *site_dir_ + "/hosts/host-a.xml");
  EXPECT_EQ(info.version(), AgentVersion());
  EXPECT_GT(info.started_at_unix_ms(), 0);
  EXPECT_EQ(info.plugin_errors_size(), 0);
  std::map<std::string, std::string> plugins;
  for (const auto& p : info.plugins()) {
    std::string caps;
    for (const auto& c : p.capabilities()) caps += c + ",";
    plugins[p.kind() + "/" + p.name()] = caps;
    EXPECT_TRUE(p.file().starts_with(STRATA_PLUGIN_DIR)) << p.file();
  }
  EXPECT_EQ(plugins, (std::map<std::string, std::string>{
                         {"hypervisor/libvirt", "discovery,domain-xml,storage-pools,events,"},
                         {"storage/btrfs", "discovery,snapshot,"},
                         {"storage/dir", "discovery,snapshot,reflink,"}}));

  grpc::ClientContext health_context;
  v1::HealthResponse health;
  ASSERT_TRUE(stub->Health(&health_context, v1::HealthRequest(), &health).ok());
  EXPECT_TRUE(health.serving());
  EXPECT_EQ(health.hypervisor_status(), "ok");
}

TEST_F(AgentServiceTest, HealthReportsAnUnreachableHypervisor) {
  StartAgent("test:///nonexistent/host.xml");
  auto stub = v1::Agent::NewStub(channel_);
  grpc::ClientContext context;
  v1::HealthResponse health;
  ASSERT_TRUE(stub->Health(&context, v1::HealthRequest(), &health).ok());
  EXPECT_TRUE(health.serving());
  EXPECT_TRUE(health.hypervisor_status().starts_with(
      "cannot connect to hypervisor 'test:///nonexistent/host.xml': "))
      << health.hypervisor_status();
}

TEST_F(AgentServiceTest, DiscoverReturnsTheWholeGraphAndIncreasingVersions) {
  StartAgent();
  grpc::Status status;
  v1::DiscoverResponse first = Discover(v1::DiscoverRequest(), &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(first.host_id(), "host-a");
  EXPECT_EQ(NamesOf(first.graph(), "host"), std::set<std::string>{"host-a"});
  EXPECT_EQ(NamesOf(first.graph(), "vm"),
            (std::set<std::string>{"cache01", "db01", "mail01", "web01", "web02"}));
  EXPECT_EQ(NamesOf(first.graph(), "storage_volume").count("gold"), 1u);
  EXPECT_EQ(first.vms_size(), 5);
  std::set<std::string> states;
  for (const auto& vm : first.vms()) states.insert(vm.name() + "=" + vm.state());
  EXPECT_EQ(states.count("cache01=paused"), 1u);
  // The message converts back into a graph.
  absl::StatusOr<core::Graph> graph = rpc::GraphFromProto(first.graph());
  ASSERT_TRUE(graph.ok()) << graph.status();
  EXPECT_TRUE(graph->Find("sv:dir:").has_value() || graph->node_count() > 10);
  v1::DiscoverResponse second = Discover(v1::DiscoverRequest(), &status);
  ASSERT_TRUE(status.ok());
  EXPECT_GT(second.version(), first.version());
}

TEST_F(AgentServiceTest, DiscoverAppliesTheFilters) {
  StartAgent();
  grpc::Status status;
  v1::DiscoverRequest by_vm;
  by_vm.add_vms("web01");
  v1::DiscoverResponse one = Discover(by_vm, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(NamesOf(one.graph(), "vm"), std::set<std::string>{"web01"});
  ASSERT_EQ(one.vms_size(), 1);
  EXPECT_EQ(one.vms(0).name(), "web01");

  // Which VMs rest on the gold volume: upward to vm.
  v1::DiscoverRequest up;
  up.set_select("type=storage_volume name=gold");
  up.set_upward(true);
  up.set_to_type("vm");
  v1::DiscoverResponse gold = Discover(up, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(NamesOf(gold.graph(), "vm"), (std::set<std::string>{"db01", "web01", "web02"}));
  EXPECT_TRUE(NamesOf(gold.graph(), "storage_system").empty());

  // Down from web01 to storage systems, and a depth limit.
  v1::DiscoverRequest down;
  down.set_select("type=vm name=web01");
  down.set_to_type("storage_system");
  v1::DiscoverResponse systems = Discover(down, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(NamesOf(systems.graph(), "storage_system").empty());
  EXPECT_TRUE(NamesOf(systems.graph(), "vm_config").empty());
  v1::DiscoverRequest shallow;
  shallow.set_select("type=vm name=web01");
  shallow.set_max_depth(1);
  v1::DiscoverResponse depth1 = Discover(shallow, &status);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(NamesOf(depth1.graph(), "virtual_disk"), std::set<std::string>{"vda"});
  EXPECT_TRUE(NamesOf(depth1.graph(), "file").empty());
}

TEST_F(AgentServiceTest, UnknownVmIsNotFoundAndBadFiltersAreInvalid) {
  StartAgent();
  grpc::Status status;
  v1::DiscoverRequest request;
  request.add_vms("nope");
  Discover(request, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(status.error_message(),
            "VM 'nope' not found on hypervisor 'test://" + *site_dir_ + "/hosts/host-a.xml'");
  v1::DiscoverRequest bad;
  bad.set_to_type("vmm");
  Discover(bad, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("vmm"), std::string::npos) << status.error_message();
  // The agent still answers afterwards.
  Discover(v1::DiscoverRequest(), &status);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(AgentServiceTest, BadBackupAndRestoreRequestsAreInvalidArguments) {
  StartAgent();
  auto backup = v1::Backup::NewStub(channel_);
  grpc::ClientContext context;
  v1::BackupRequest request;
  request.set_backup_id("b1");
  request.set_name("nightly");
  auto reader = backup->RunBackup(&context, request);
  v1::BackupEvent event;
  EXPECT_FALSE(reader->Read(&event));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            "backup request: consistency is not set (crash, pause or quiesce)");

  grpc::ClientContext traversal_context;
  request.set_consistency(v1::CONSISTENCY_CRASH);
  request.set_name("../etc");
  reader = backup->RunBackup(&traversal_context, request);
  EXPECT_FALSE(reader->Read(&event));
  status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("invalid backup name '../etc'"), std::string::npos)
      << status.error_message();

  auto restore = v1::Restore::NewStub(channel_);
  grpc::ClientContext restore_context;
  v1::RestoreRequest restore_request;
  restore_request.set_manifest_json("{not json");
  auto restore_reader = restore->RunRestore(&restore_context, restore_request);
  v1::RestoreEvent restore_event;
  EXPECT_FALSE(restore_reader->Read(&restore_event));
  status = restore_reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("restore request: "), std::string::npos);
}

TEST_F(AgentServiceTest, ListenFailureIsReported) {
  StartAgent();
  absl::StatusOr<AgentConfig> config = LoadAgentConfig(*site_dir_ + "/agents/host-a.toml");
  ASSERT_TRUE(config.ok());
  AgentOptions options;
  options.config = *config;
  options.config.server = "";
  options.config.plugin_dir = STRATA_PLUGIN_DIR;
  options.config.reconcile_interval_s = 0;
  options.config.listen = agent_->endpoint();  // taken
  absl::StatusOr<std::unique_ptr<Agent>> second = Agent::Start(std::move(options));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().message(),
            "cannot listen on '" + agent_->endpoint() + "': address in use or not available");
}

// libvirt's test:///default is one shared, in-process host: the test changes it through its own
// connection and the agent sees the changes in its discoveries.
class SharedTestHost {
 public:
  SharedTestHost() : conn_(virConnectOpen("test:///default")) {}
  ~SharedTestHost() {
    if (conn_ != nullptr) virConnectClose(conn_);
  }
  virConnectPtr get() const { return conn_; }

 private:
  virConnectPtr conn_;
};

std::vector<v1::VmChange> ReadChanges(grpc::ClientReader<v1::ChangeSet>& reader, size_t count) {
  std::vector<v1::VmChange> changes;
  v1::ChangeSet set;
  while (changes.size() < count && reader.Read(&set)) {
    EXPECT_EQ(set.host_id(), "host-a");
    EXPECT_EQ(set.first_sequence(), set.changes(0).sequence());
    EXPECT_EQ(set.last_sequence(), set.changes(set.changes_size() - 1).sequence());
    for (const auto& c : set.changes()) changes.push_back(c);
  }
  return changes;
}

std::string Describe(const std::vector<v1::VmChange>& changes) {
  std::string out;
  for (const auto& c : changes) {
    out += std::to_string(c.sequence()) + ":" + v1::ChangeKind_Name(c.kind()) + ":" + c.vm_name() +
           ":" + c.source() + " ";
  }
  return out;
}

TEST_F(AgentServiceTest, DiscoveryDiffsFeedTheChangeLogAndSubscribeStreamsThem) {
  SharedTestHost host;
  ASSERT_NE(host.get(), nullptr);
  StartAgent("test:///default");
  grpc::Status status;
  Discover(v1::DiscoverRequest(), &status);  // the default host's one VM, "test"
  ASSERT_TRUE(status.ok()) << status.error_message();

  const char* kExtra =
      "<domain type='test'><name>extra</name><uuid>7e000000-0000-4000-8000-000000000001</uuid>"
      "<memory>65536</memory><os><type>hvm</type></os></domain>";
  virDomainPtr extra = virDomainDefineXML(host.get(), kExtra);
  ASSERT_NE(extra, nullptr);
  Discover(v1::DiscoverRequest(), &status);
  ASSERT_TRUE(status.ok());
  virDomainPtr test = virDomainLookupByName(host.get(), "test");
  ASSERT_NE(test, nullptr);
  ASSERT_EQ(virDomainSuspend(test), 0);
  ASSERT_EQ(virDomainUndefine(extra), 0);
  virDomainFree(extra);
  Discover(v1::DiscoverRequest(), &status);
  ASSERT_TRUE(status.ok());
  // Within one discovery, changes are in uuid order ("test" 6695eb01-... before "extra" 7e...).
  // A filtered discovery does not feed the log (it sees only part of the host).
  v1::DiscoverRequest filtered;
  filtered.add_vms("test");
  Discover(filtered, &status);
  ASSERT_TRUE(status.ok());

  auto events = v1::Events::NewStub(channel_);
  {
    grpc::ClientContext context;
    v1::SubscribeRequest request;
    request.set_from_sequence(0);
    auto reader = events->Subscribe(&context, request);
    EXPECT_EQ(Describe(ReadChanges(*reader, 4)),
              "1:CHANGE_KIND_ADDED:test:discovery 2:CHANGE_KIND_ADDED:extra:discovery "
              "3:CHANGE_KIND_MODIFIED:test:discovery 4:CHANGE_KIND_REMOVED:extra:discovery ");
    context.TryCancel();
  }
  // From a sequence: only what follows it, then new entries as they come.
  grpc::ClientContext context;
  v1::SubscribeRequest request;
  request.set_from_sequence(3);
  auto reader = events->Subscribe(&context, request);
  EXPECT_EQ(Describe(ReadChanges(*reader, 1)), "4:CHANGE_KIND_REMOVED:extra:discovery ");
  ASSERT_EQ(virDomainResume(test), 0);
  virDomainFree(test);
  std::thread later([&] {
    grpc::Status s;
    Discover(v1::DiscoverRequest(), &s);
  });
  EXPECT_EQ(Describe(ReadChanges(*reader, 1)), "5:CHANGE_KIND_MODIFIED:test:discovery ");
  later.join();
  context.TryCancel();
  reader->Finish();
  // Stopping the agent with an open stream returns promptly.
  grpc::ClientContext open_context;
  auto open_reader = events->Subscribe(&open_context, request);
  const auto start = std::chrono::steady_clock::now();
  agent_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

}  // namespace
}  // namespace strata::agent
