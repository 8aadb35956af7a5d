// `strata-agent discover` as an operator runs it: the real binary against the sample site.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "strata/util/process.h"

namespace {

using nlohmann::json;
using strata::util::RunProcess;

class DiscoverCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    site_ = new std::string(std::filesystem::temp_directory_path() /
                            ("strata-cli-test-" + std::to_string(getpid())));
    auto result = RunProcess({STRATA_AGENT_BIN, "sample-site", *site_});
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_EQ(result->exit_code, 0) << result->output;
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*site_);
    delete site_;
  }
  static std::string Config(const std::string& host) {
    return *site_ + "/agents/" + host + ".toml";
  }
  static strata::util::ProcessResult Agent(std::vector<std::string> args) {
    args.insert(args.begin(), STRATA_AGENT_BIN);
    auto result = RunProcess(args);
    EXPECT_TRUE(result.ok()) << result.status();
    return *result;
  }
  static std::string* site_;
};
std::string* DiscoverCliTest::site_ = nullptr;

TEST_F(DiscoverCliTest, HelpNamesTheOptions) {
  auto result = Agent({"discover", "--help"});
  EXPECT_EQ(result.exit_code, 0);
  for (const char* option : {"--connect", "--vm", "--to", "--json", "--tree", "--up", "--select"}) {
    EXPECT_NE(result.output.find(option), std::string::npos) << option;
  }
}

TEST_F(DiscoverCliTest, JsonToStorageSystemHasEveryVmAndItsSystems) {
  auto result =
      Agent({"discover", "--config", Config("host-b"), "--to", "storage_system", "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  json graph = json::parse(result.output);
  std::set<std::string> vms;
  std::set<std::string> types;
  for (const json& node : graph["nodes"]) {
    types.insert(node["type"]);
    if (node["type"] == "vm") vms.insert(node["name"]);
  }
  EXPECT_EQ(vms, (std::set<std::string>{"app01", "app02", "db02", "web03", "web04"}));
  EXPECT_TRUE(types.contains("storage_system"));
  EXPECT_TRUE(types.contains("virtual_disk"));
  EXPECT_FALSE(graph["edges"].empty());
  for (const json& edge : graph["edges"]) {
    EXPECT_TRUE(edge.contains("from") && edge.contains("to") && edge.contains("type"));
  }
}

TEST_F(DiscoverCliTest, TreeShowsTheChainOfOneVm) {
  auto result = Agent({"discover", "--config", Config("host-a"), "--vm", "web01"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (const char* needle : {"vm web01", "virtual_disk vda", "file ", "mount_point ", "fs_volume ",
                             "block_device ", "storage_volume gold", "storage_system "}) {
    EXPECT_NE(result.output.find(needle), std::string::npos) << needle << "\n" << result.output;
  }
  EXPECT_EQ(result.output.find("vm web02"), std::string::npos);
}

TEST_F(DiscoverCliTest, UpwardQueryFromAStorageVolume) {
  auto result = Agent({"discover", "--config", Config("host-a"), "--select",
                       "type=storage_volume name=silver", "--up", "--to", "vm", "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::set<std::string> vms;
  const json graph = json::parse(result.output);
  for (const json& node : graph["nodes"]) {
    if (node["type"] == "vm") vms.insert(node["name"]);
  }
  EXPECT_EQ(vms, (std::set<std::string>{"cache01", "mail01"})) << result.output;
}

TEST_F(DiscoverCliTest, UnknownVmIsAClearError) {
  auto result = Agent({"discover", "--config", Config("host-a"), "--vm", "no-such-vm"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("VM 'no-such-vm' not found"), std::string::npos) << result.output;
}

TEST_F(DiscoverCliTest, UnknownTypeIsAClearError) {
  auto result = Agent({"discover", "--config", Config("host-a"), "--to", "storage_sytem"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("unknown node type 'storage_sytem'"), std::string::npos)
      << result.output;
}

TEST_F(DiscoverCliTest, MissingConnectionIsAClearError) {
  auto result = Agent({"discover"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("no hypervisor to connect to"), std::string::npos) << result.output;
}

TEST_F(DiscoverCliTest, UnreachableHypervisorNamesTheUri) {
  auto result = Agent({"discover", "--connect", "test:///nonexistent/host.xml"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("test:///nonexistent/host.xml"), std::string::npos) << result.output;
}

}  // namespace
