// Cluster membership plug-ins: static (the config), Pacemaker (crm_mon's XML), and the config
// of the registry membership (its RPC: registry_membership_test.cc).
// tests/data/pacemaker/crm_mon-2.1.5-recorded.xml was recorded from Debian 12's Pacemaker 2.1.5
// (scripts/pacemaker-env.sh: corosync node host-a, remote nodes host-b and host-c, which a
// one-node cluster on one machine can have). crm_mon-2.1.xml is written by hand after that
// output, for what such a cluster cannot show: an offline member, a node in standby, a ping
// node. The agents against a live cluster: tests/integration/cluster_membership_test.cc.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "strata/agent/cluster.h"
#include "strata/agent/config.h"

namespace strata::agent {
namespace {

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

const std::string kCrmMon = std::string(STRATA_TEST_DATA_DIR) + "/pacemaker/crm_mon-2.1.xml";

TEST(PacemakerMembershipTest, MembersAndRemoteNodesOnlineOrNotWithTheirAgentEndpoints) {
  absl::StatusOr<std::vector<ClusterMember>> members =
      ParseCrmMonNodes(Read(kCrmMon), 7071, {{"kvm-02", "10.0.0.12:7443"}});
  ASSERT_TRUE(members.ok()) << members.status();
  // kvm-03 is offline (the coordinator's health checks will say unreachable), kvm-02 in standby
  // (still runs VMs it has), the ping node is no hypervisor.
  EXPECT_EQ(*members, (std::vector<ClusterMember>{{"kvm-01", "kvm-01:7071"},
                                                  {"kvm-02", "10.0.0.12:7443"},
                                                  {"kvm-03", "kvm-03:7071"},
                                                  {"edge-01", "edge-01:7071"}}));
}

TEST(PacemakerMembershipTest, RecordedOutputOfARealClusterListsItsMemberAndRemoteNodes) {
  absl::StatusOr<std::vector<ClusterMember>> members = ParseCrmMonNodes(
      Read(std::string(STRATA_TEST_DATA_DIR) + "/pacemaker/crm_mon-2.1.5-recorded.xml"), 7071,
      {{"host-c", "127.0.0.1:7443"}});
  ASSERT_TRUE(members.ok()) << members.status();
  // The <node> entries under <resources> and <node_history> are not nodes of the cluster.
  EXPECT_EQ(*members, (std::vector<ClusterMember>{{"host-a", "host-a:7071"},
                                                  {"host-b", "host-b:7071"},
                                                  {"host-c", "127.0.0.1:7443"}}));
}

TEST(PacemakerMembershipTest, TheOlderCrmMonRootIsReadToo) {
  absl::StatusOr<std::vector<ClusterMember>> members = ParseCrmMonNodes(
      R"(<?xml version="1.0"?><crm_mon version="2.0.0"><nodes>
         <node name="a" id="1" online="true" type="member"/></nodes></crm_mon>)",
      7000, {});
  ASSERT_TRUE(members.ok()) << members.status();
  EXPECT_EQ(*members, (std::vector<ClusterMember>{{"a", "a:7000"}}));
}

TEST(PacemakerMembershipTest, OutputThatIsNotCrmMonsIsAClearError) {
  EXPECT_EQ(ParseCrmMonNodes("not xml <", 7071, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseCrmMonNodes("<html/>", 7071, {}).status().message(),
            "crm_mon output has root <html>, not <pacemaker-result> or <crm_mon>");
  EXPECT_EQ(
      ParseCrmMonNodes(R"(<pacemaker-result><status code="102"/></pacemaker-result>)", 7071, {})
          .status()
          .message(),
      "crm_mon output has no <nodes> (cluster not running?)");
}

TEST(PacemakerMembershipTest, MembersRunsTheCommandEachTime) {
  const std::string copy =
      (std::filesystem::temp_directory_path() / ("crm_mon-" + std::to_string(getpid()) + ".xml"))
          .string();
  std::filesystem::copy_file(kCrmMon, copy, std::filesystem::copy_options::overwrite_existing);
  PacemakerMembership membership({"cat", copy}, 7071, {});
  EXPECT_EQ(membership.name(), "pacemaker");
  absl::StatusOr<std::vector<ClusterMember>> first = membership.Members();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->size(), 4u);
  // A node removed from the cluster is gone at the next call (the coordinator: member-left).
  std::ofstream(copy) << R"(<pacemaker-result><nodes>
      <node name="kvm-01" online="true" type="member"/></nodes></pacemaker-result>)";
  absl::StatusOr<std::vector<ClusterMember>> second = membership.Members();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*second, (std::vector<ClusterMember>{{"kvm-01", "kvm-01:7071"}}));
  std::filesystem::remove(copy);
}

TEST(PacemakerMembershipTest, AFailingCommandIsUnavailableAndQuoted) {
  PacemakerMembership membership({"false"}, 7071, {});
  absl::StatusOr<std::vector<ClusterMember>> members = membership.Members();
  EXPECT_EQ(members.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(members.status().message().find("false"), std::string::npos)
      << members.status().message();
}

TEST(PacemakerMembershipTest, ConfigChoosesIt) {
  absl::StatusOr<AgentConfig> config = ParseAgentConfig(
      "host_id = 'kvm-01'\ncluster = 'prod'\ncluster_membership = 'pacemaker'\n"
      "cluster_agent_port = 7443\n",
      "test");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->cluster_membership, "pacemaker");
  EXPECT_EQ(config->cluster_agent_port, 7443);
  absl::StatusOr<AgentConfig> again = ParseAgentConfig(RenderAgentConfig(*config), "rendered");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->cluster_membership, "pacemaker");
  EXPECT_EQ(again->cluster_agent_port, 7443);
  absl::StatusOr<AgentConfig> bad =
      ParseAgentConfig("host_id = 'a'\ncluster_membership = 'corosync'\n", "test");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(
                "'cluster_membership' must be \"static\", \"pacemaker\" or \"registry\", not "
                "'corosync'"),
            std::string::npos)
      << bad.status().message();
}

TEST(RegistryMembershipConfigTest, ConfigChoosesItAndItNeedsAServer) {
  absl::StatusOr<AgentConfig> config = ParseAgentConfig(
      "host_id = 'host-a'\ncluster = 'prod'\ncluster_membership = 'registry'\n"
      "server = '10.0.0.1:7070'\n",
      "test");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->cluster_membership, "registry");
  EXPECT_TRUE(config->cluster_members.empty());
  absl::StatusOr<AgentConfig> again = ParseAgentConfig(RenderAgentConfig(*config), "rendered");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->cluster_membership, "registry");
  EXPECT_EQ(again->server, "10.0.0.1:7070");
  EXPECT_EQ(
      ParseAgentConfig("host_id = 'a'\ncluster_membership = 'registry'\nserver = ''\n", "c.toml")
          .status()
          .message(),
      "config 'c.toml': line 2: 'cluster_membership' \"registry\" reads the members from "
      "stratad, but 'server' is empty");
}

}  // namespace
}  // namespace strata::agent
