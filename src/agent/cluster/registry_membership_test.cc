// The registry membership against a real stratad registry in process: the real RegistryService
// over a real HostRegistry (SQLite catalog in a temporary file) on loopback gRPC. Hosts register
// through the registry; host-b's agent is a fake answering Agent/Health, so that a coordinator on
// top of the membership sees it join and leave.
#include "registry_membership.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "coordinator.h"
#include "registry_service.h"
#include "strata/server/host_registry.h"
#include "strata/v1/agent.grpc.pb.h"

namespace strata::agent {
namespace {

using std::chrono::milliseconds;

class HealthyAgent final : public v1::Agent::Service {
 public:
  HealthyAgent() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~HealthyAgent() override { server_->Shutdown(std::chrono::system_clock::now()); }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }

  grpc::Status Health(grpc::ServerContext*, const v1::HealthRequest*,
                      v1::HealthResponse* out) override {
    out->set_serving(true);
    return grpc::Status::OK;
  }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

class RegistryMembershipTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (std::filesystem::temp_directory_path() /
             ("registry_membership_test_" + std::to_string(::getpid()) + "_" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".db"))
                .string();
    std::filesystem::remove(path_);
    catalog_ = server::OpenSqliteCatalog(path_).value();
    events_ = std::make_unique<server::EventLog>(*catalog_);
    graphs_ = std::make_unique<server::GraphStore>();
    server::RegistryOptions options;
    options.server_id = "server-1";
    // No refresh workers: the hosts' graphs do not matter here.
    registry_ =
        std::make_unique<server::HostRegistry>(*catalog_, *graphs_, *events_, *connector_, options);
    ASSERT_TRUE(registry_->Load().ok());
    service_ = std::make_unique<server::RegistryService>(*registry_);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    server_endpoint_ = "127.0.0.1:" + std::to_string(port);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
    server_.reset();
    registry_.reset();
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path_ + suffix);
  }

  void Register(const std::string& host, const std::string& cluster, const std::string& endpoint) {
    server::RegisterInfo info;
    info.host_id = host;
    info.cluster = cluster;
    info.endpoint = endpoint;
    ASSERT_TRUE(registry_->Register(info).ok()) << host;
  }

  std::unique_ptr<ClusterMembership> Membership() {
    RegistryMembershipOptions options;
    options.server = server_endpoint_;
    options.cluster = "prod";
    options.self_host_id = "host-a";
    options.self_endpoint = [] { return std::string("127.0.0.1:7101"); };
    options.timeout = milliseconds(2000);
    return MakeRegistryMembership(std::move(options));
  }

  std::string path_;
  std::unique_ptr<server::AgentConnector> connector_ =
      server::MakeGrpcAgentConnector({std::chrono::seconds(1)});
  std::unique_ptr<server::Catalog> catalog_;
  std::unique_ptr<server::EventLog> events_;
  std::unique_ptr<server::GraphStore> graphs_;
  std::unique_ptr<server::HostRegistry> registry_;
  std::unique_ptr<server::RegistryService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string server_endpoint_;
};

TEST_F(RegistryMembershipTest, MembersAreTheClustersRegisteredHostsAndThisAgent) {
  std::unique_ptr<ClusterMembership> membership = Membership();
  EXPECT_EQ(membership->name(), "registry");
  // Nobody registered yet, this agent included: it is a member all the same.
  absl::StatusOr<std::vector<ClusterMember>> members = membership->Members();
  ASSERT_TRUE(members.ok()) << members.status();
  EXPECT_EQ(*members, (std::vector<ClusterMember>{{"host-a", "127.0.0.1:7101"}}));

  Register("host-c", "prod", "10.0.0.3:7071");
  Register("host-b", "prod", "10.0.0.2:7071");
  Register("host-x", "test", "10.0.0.9:7071");
  Register("host-n", "", "10.0.0.10:7071");
  // This agent as the server last heard of it (an older endpoint): its own endpoint wins.
  Register("host-a", "prod", "10.0.0.1:7000");
  members = membership->Members();
  ASSERT_TRUE(members.ok()) << members.status();
  EXPECT_EQ(*members, (std::vector<ClusterMember>{{"host-a", "127.0.0.1:7101"},
                                                  {"host-b", "10.0.0.2:7071"},
                                                  {"host-c", "10.0.0.3:7071"}}));
}

TEST_F(RegistryMembershipTest, AServerThatCannotBeAskedIsUnavailableNamingIt) {
  std::unique_ptr<ClusterMembership> membership = Membership();
  ASSERT_TRUE(membership->Members().ok());
  server_->Shutdown(std::chrono::system_clock::now());
  absl::StatusOr<std::vector<ClusterMember>> members = membership->Members();
  ASSERT_EQ(members.status().code(), absl::StatusCode::kUnavailable) << members.status();
  const std::string prefix =
      "the members of cluster 'prod' cannot be read from stratad at '" + server_endpoint_ + "': ";
  EXPECT_EQ(std::string(members.status().message()).rfind(prefix, 0), 0u)
      << members.status().message();
  EXPECT_GT(members.status().message().size(), prefix.size()) << "no reason given";
}

TEST_F(RegistryMembershipTest, ACoordinatorSeesHostsJoinAndLeaveThroughTheRegistry) {
  HealthyAgent self;
  HealthyAgent b;
  RegistryMembershipOptions options;
  options.server = server_endpoint_;
  options.cluster = "prod";
  options.self_host_id = "host-a";
  options.self_endpoint = [&self] { return self.endpoint(); };
  ChangeLog log;
  ClusterCoordinatorOptions coordinator_options;
  coordinator_options.cluster = "prod";
  coordinator_options.self_host_id = "host-a";
  coordinator_options.health_timeout = milliseconds(2000);
  ClusterCoordinator coordinator(MakeRegistryMembership(options), log, coordinator_options);
  std::vector<std::string> events;
  coordinator.SetEventSink([&events](const std::string& event) { events.push_back(event); });

  coordinator.CheckMembers();
  EXPECT_TRUE(events.empty());  // this host alone: no events about itself
  Register("host-b", "prod", b.endpoint());
  coordinator.CheckMembers();
  EXPECT_EQ(events, std::vector<std::string>{"member-joined:host-b"});
  ASSERT_EQ(coordinator.Members().size(), 2u);
  EXPECT_EQ(coordinator.Members()[1].state, MemberState::kUp);

  // host-b registers under another cluster: it has left this one.
  Register("host-b", "test", b.endpoint());
  coordinator.CheckMembers();
  EXPECT_EQ(events, (std::vector<std::string>{"member-joined:host-b", "member-left:host-b"}));
  ASSERT_EQ(coordinator.Members().size(), 1u);
  EXPECT_EQ(coordinator.Members()[0].member.host_id, "host-a");

  // The server going away is not the members leaving: the coordinator keeps its last view.
  Register("host-b", "prod", b.endpoint());
  coordinator.CheckMembers();
  server_->Shutdown(std::chrono::system_clock::now());
  coordinator.CheckMembers();
  EXPECT_EQ(events, (std::vector<std::string>{"member-joined:host-b", "member-left:host-b",
                                              "member-joined:host-b"}));
  EXPECT_EQ(coordinator.Members().size(), 2u);
}

}  // namespace
}  // namespace strata::agent
