// The cluster coordinator against fake members: in-process gRPC servers on loopback answering
// Agent/Health and Discovery/Discover, which can be made to fail or to answer too late.
#include "coordinator.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "graph_proto.h"
#include "spdlog/sinks/ringbuffer_sink.h"
#include "spdlog/spdlog.h"
#include "strata/v1/agent.grpc.pb.h"

namespace strata::agent {
namespace {

using std::chrono::milliseconds;

enum class Mode { kUp, kFailing, kSlow };
// Generous for an answer on loopback even on a loaded 2-core CI machine (200 ms was not: a
// member counted unreachable made a transition test fail once); a slow member is well past it.
constexpr milliseconds kDeadline{1000};
constexpr milliseconds kSlowAnswer{1500};

class FakeMember final : public v1::Agent::Service, public v1::Discovery::Service {
 public:
  FakeMember(std::string host, std::vector<std::pair<std::string, std::string>> vms)
      : host_(std::move(host)), vms_(std::move(vms)) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(static_cast<v1::Agent::Service*>(this));
    builder.RegisterService(static_cast<v1::Discovery::Service*>(this));
    server_ = builder.BuildAndStart();
  }
  ~FakeMember() override { server_->Shutdown(std::chrono::system_clock::now()); }

  ClusterMember member() const { return {host_, "127.0.0.1:" + std::to_string(port_)}; }
  void set_mode(Mode mode) { mode_ = mode; }

  grpc::Status Health(grpc::ServerContext*, const v1::HealthRequest*,
                      v1::HealthResponse* out) override {
    if (grpc::Status s = Answer(); !s.ok()) return s;
    out->set_serving(true);
    return grpc::Status::OK;
  }

  grpc::Status Discover(grpc::ServerContext*, const v1::DiscoverRequest*,
                        v1::DiscoverResponse* out) override {
    if (grpc::Status s = Answer(); !s.ok()) return s;
    core::Graph graph;
    core::NodeIndex host = *graph.UpsertNode(core::NodeType::kHost, "host:" + host_, host_);
    // Every member sees the same shared volume.
    core::NodeIndex gold = *graph.UpsertNode(core::NodeType::kStorageVolume, "sv:dir:gold", "gold");
    for (const auto& [uuid, name] : vms_) {
      core::NodeIndex vm = *graph.UpsertNode(core::NodeType::kVm, "vm:" + uuid, name,
                                             {{"uuid", uuid}, {"state", "running"}});
      graph.AddEdge(host, vm, core::EdgeType::kRuns);
      graph.AddEdge(vm, gold, core::EdgeType::kBackedBy);
      v1::VmSummary* summary = out->add_vms();
      summary->set_uuid(uuid);
      summary->set_name(name);
      summary->set_state("running");
    }
    out->set_host_id(host_);
    rpc::GraphToProto(graph, out->mutable_graph());
    return grpc::Status::OK;
  }

 private:
  grpc::Status Answer() {
    if (mode_ == Mode::kFailing) return {grpc::StatusCode::UNAVAILABLE, "fake member is down"};
    if (mode_ == Mode::kSlow) std::this_thread::sleep_for(kSlowAnswer);
    return grpc::Status::OK;
  }

  std::string host_;
  std::vector<std::pair<std::string, std::string>> vms_;
  std::atomic<Mode> mode_{Mode::kUp};
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

std::vector<std::string> ClusterEvents(const ChangeLog& log) {
  std::vector<std::string> events;
  for (const VmChange& change : log.Since(0)) {
    EXPECT_EQ(change.kind, ChangeKind::kCluster);
    EXPECT_EQ(change.vm_uuid, "");
    EXPECT_EQ(change.source, "cluster");
    events.push_back(change.vm_name);
  }
  return events;
}

class CoordinatorTest : public ::testing::Test {
 protected:
  CoordinatorTest()
      : a_("host-a", {{"u-web01", "web01"}}),
        b_("host-b", {{"u-web02", "web02"}, {"u-db01", "db01"}}),
        c_("host-c", {{"u-app01", "app01"}}) {}

  std::unique_ptr<ClusterCoordinator> Make() {
    ClusterCoordinatorOptions options;
    options.cluster = "prod";
    options.self_host_id = "host-a";
    options.health_timeout = kDeadline;
    options.rpc_timeout = kDeadline;
    return std::make_unique<ClusterCoordinator>(
        std::make_unique<StaticMembership>(
            std::vector<ClusterMember>{a_.member(), b_.member(), c_.member()}),
        log_, options);
  }

  FakeMember a_, b_, c_;
  ChangeLog log_;
};

TEST_F(CoordinatorTest, TransitionsBecomeClusterEventsInTheChangeLog) {
  auto coordinator = Make();
  c_.set_mode(Mode::kFailing);
  coordinator->CheckMembers();
  // This host (host-a) gives no events about itself.
  EXPECT_EQ(ClusterEvents(log_),
            (std::vector<std::string>{"member-joined:host-b", "member-unreachable:host-c"}));
  coordinator->CheckMembers();  // no change, no event
  EXPECT_EQ(log_.last_sequence(), 2u);

  b_.set_mode(Mode::kSlow);  // answers after the deadline
  c_.set_mode(Mode::kUp);
  coordinator->CheckMembers();
  b_.set_mode(Mode::kUp);
  coordinator->CheckMembers();
  EXPECT_EQ(ClusterEvents(log_),
            (std::vector<std::string>{"member-joined:host-b", "member-unreachable:host-c",
                                      "member-unreachable:host-b", "member-joined:host-c",
                                      "member-back:host-b"}));
  std::vector<MemberStatus> members = coordinator->Members();
  ASSERT_EQ(members.size(), 3u);
  for (const MemberStatus& m : members) EXPECT_EQ(m.state, MemberState::kUp) << m.member.host_id;
}

// A membership whose reads fail while `failing` (as stratad down for "registry", crm_mon for
// "pacemaker").
class FlakyMembership final : public ClusterMembership {
 public:
  explicit FlakyMembership(std::vector<ClusterMember> members) : members_(std::move(members)) {}
  std::string_view name() const override { return "flaky"; }
  absl::StatusOr<std::vector<ClusterMember>> Members() override {
    if (failing) return absl::UnavailableError("stratad at 127.0.0.1:1 is down");
    return members_;
  }
  std::atomic<bool> failing{false};

 private:
  const std::vector<ClusterMember> members_;
};

TEST_F(CoordinatorTest, AMembershipThatCannotBeReadKeepsTheLastViewAndSaysSoOnce) {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(100);
  sink->set_pattern("[%l] %v");
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  spdlog::set_level(spdlog::level::info);

  auto membership =
      std::make_unique<FlakyMembership>(std::vector<ClusterMember>{a_.member(), b_.member()});
  FlakyMembership* flaky = membership.get();
  ClusterCoordinatorOptions options;
  options.cluster = "prod";
  options.self_host_id = "host-a";
  options.health_timeout = kDeadline;
  ClusterCoordinator coordinator(std::move(membership), log_, options);
  coordinator.CheckMembers();
  flaky->failing = true;
  for (int round = 0; round < 3; ++round) coordinator.CheckMembers();
  EXPECT_EQ(coordinator.Members().size(), 2u);  // the last view
  flaky->failing = false;
  coordinator.CheckMembers();

  spdlog::set_default_logger(previous);
  std::vector<std::string> lines;
  for (const std::string& line : sink->last_formatted()) {
    if (line.find("cluster membership") != std::string::npos) lines.push_back(line);
  }
  EXPECT_THAT(lines, ::testing::ElementsAre(
                         "[warning] cluster membership (flaky): stratad at 127.0.0.1:1 is down; "
                         "keeping the last view\n",
                         "[info] cluster membership (flaky): readable again after 3 failed "
                         "read(s)\n"));
}

TEST_F(CoordinatorTest, UnreachableStateNamesTheReason) {
  auto coordinator = Make();
  b_.set_mode(Mode::kFailing);
  coordinator->CheckMembers();
  std::vector<MemberStatus> members = coordinator->Members();
  ASSERT_EQ(members.size(), 3u);
  EXPECT_EQ(members[1].state, MemberState::kUnreachable);
  EXPECT_EQ(members[1].error,
            "health check of '" + b_.member().endpoint + "' failed: fake member is down");
}

TEST_F(CoordinatorTest, StartRunsChecksOnItsThread) {
  ClusterCoordinatorOptions options;
  options.cluster = "prod";
  options.self_host_id = "host-a";
  options.interval = milliseconds(50);
  options.health_timeout = kDeadline;
  ClusterCoordinator coordinator(
      std::make_unique<StaticMembership>(std::vector<ClusterMember>{a_.member(), b_.member()}),
      log_, options);
  coordinator.Start();
  ASSERT_TRUE(log_.WaitForNewer(0, milliseconds(5000)));
  b_.set_mode(Mode::kFailing);
  ASSERT_TRUE(log_.WaitForNewer(1, milliseconds(5000)));
  coordinator.Stop();
  EXPECT_EQ(ClusterEvents(log_),
            (std::vector<std::string>{"member-joined:host-b", "member-unreachable:host-b"}));
}

TEST_F(CoordinatorTest, OwnerByNameOrUuid) {
  auto coordinator = Make();
  coordinator->CheckMembers();
  absl::StatusOr<VmOwner> owner = coordinator->Owner("db01");
  ASSERT_TRUE(owner.ok()) << owner.status();
  EXPECT_EQ(owner->member.host_id, "host-b");
  EXPECT_TRUE(owner->reachable);
  EXPECT_EQ(owner->vm.uuid, "u-db01");
  owner = coordinator->Owner("u-app01");
  ASSERT_TRUE(owner.ok()) << owner.status();
  EXPECT_EQ(owner->member.host_id, "host-c");
  EXPECT_EQ(owner->member.endpoint, c_.member().endpoint);
}

TEST_F(CoordinatorTest, OwnerOfAVmOnAnUnreachableMember) {
  auto coordinator = Make();
  coordinator->CheckMembers();
  ASSERT_TRUE(coordinator->Owner("web02").ok());  // cached
  b_.set_mode(Mode::kFailing);
  coordinator->CheckMembers();
  absl::StatusOr<VmOwner> owner = coordinator->Owner("web02");
  ASSERT_TRUE(owner.ok()) << owner.status();
  EXPECT_EQ(owner->member.host_id, "host-b");
  EXPECT_FALSE(owner->reachable);
  EXPECT_EQ(owner->error,
            "health check of '" + b_.member().endpoint + "' failed: fake member is down");
}

TEST_F(CoordinatorTest, UnknownVmNamesTheMembersThatDidNotAnswer) {
  auto coordinator = Make();
  c_.set_mode(Mode::kFailing);
  coordinator->CheckMembers();
  absl::StatusOr<VmOwner> owner = coordinator->Owner("nope");
  ASSERT_EQ(owner.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(owner.status().message()),
              ::testing::StartsWith("VM 'nope' is on no member of cluster 'prod'; members that "
                                    "did not answer: host-c ("));
  EXPECT_THAT(std::string(owner.status().message()), ::testing::HasSubstr("fake member is down"));
}

TEST_F(CoordinatorTest, AMemberBackSinceTheLastRoundIsAskedAgainAndOwnsItsVms) {
  auto coordinator = Make();
  b_.set_mode(Mode::kFailing);
  coordinator->CheckMembers();  // host-b seen unreachable
  b_.set_mode(Mode::kUp);       // ... and back before the next round
  std::vector<absl::StatusOr<VmOwner>> owners = coordinator->Owners({"web02"});
  ASSERT_EQ(owners.size(), 1u);
  ASSERT_TRUE(owners[0].ok()) << owners[0].status();
  EXPECT_EQ(owners[0]->member.host_id, "host-b");
  EXPECT_TRUE(owners[0]->reachable) << owners[0]->error;
}

TEST_F(CoordinatorTest, DiscoverMergesMembersAndListsUnreachable) {
  auto coordinator = Make();
  c_.set_mode(Mode::kFailing);
  coordinator->CheckMembers();
  absl::StatusOr<ClusterView> view = coordinator->Discover();
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->members, (std::vector<std::string>{"host-a", "host-b"}));
  ASSERT_EQ(view->unreachable.size(), 1u);
  EXPECT_EQ(view->unreachable[0],
            "host-c: health check of '" + c_.member().endpoint + "' failed: fake member is down");
  EXPECT_EQ(view->vms.size(), 3u);
  EXPECT_EQ(view->graph.NodesOfType(core::NodeType::kStorageVolume).size(), 1u);
  std::optional<core::NodeIndex> cluster = view->graph.Find("cluster:prod");
  ASSERT_TRUE(cluster.has_value());
  EXPECT_EQ(view->graph.OutEdges(*cluster).size(), 2u);
}

}  // namespace
}  // namespace strata::agent
