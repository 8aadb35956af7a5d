#include "strata/agent/config.h"

#include <gtest/gtest.h>

namespace strata::agent {
namespace {

TEST(AgentConfigTest, ParsesEveryKey) {
  absl::StatusOr<AgentConfig> config = ParseAgentConfig(R"(
host_id = "host-a"
connect = "test:///srv/host-a.xml"
[[storage.dir]]
name = "gold"
path = "/srv/volumes/gold"
[[storage.dir]]
name = "silver"
path = "/srv/volumes/silver dir"
)",
                                                        "agent.toml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->host_id, "host-a");
  EXPECT_EQ(config->connect, "test:///srv/host-a.xml");
  ASSERT_EQ(config->dir_volumes.size(), 2u);
  EXPECT_EQ(config->dir_volumes[1].name, "silver");
  EXPECT_EQ(config->dir_volumes[1].path, "/srv/volumes/silver dir");
}

TEST(AgentConfigTest, RenderedConfigParsesBack) {
  AgentConfig config{"h1", "qemu:///system", {{"gold", "/a/b"}, {"ü vol", "/c/d e"}}};
  absl::StatusOr<AgentConfig> parsed = ParseAgentConfig(RenderAgentConfig(config), "rendered");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->host_id, "h1");
  EXPECT_EQ(parsed->connect, "qemu:///system");
  ASSERT_EQ(parsed->dir_volumes.size(), 2u);
  EXPECT_EQ(parsed->dir_volumes[1].name, "ü vol");
  EXPECT_EQ(parsed->dir_volumes[1].path, "/c/d e");
}

TEST(AgentConfigTest, WrongTypeNamesFileLineAndKey) {
  absl::StatusOr<AgentConfig> config =
      ParseAgentConfig("host_id = \"a\"\nconnect = 42\n", "x.toml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(), "config 'x.toml': line 2: 'connect' must be a string");
}

TEST(AgentConfigTest, SyntaxErrorNamesLine) {
  absl::StatusOr<AgentConfig> config = ParseAgentConfig("host_id = \n", "bad.toml");
  ASSERT_FALSE(config.ok());
  EXPECT_TRUE(std::string(config.status().message()).starts_with("config 'bad.toml': line 1: "))
      << config.status();
}

TEST(AgentConfigTest, RelativeVolumePathIsRejected) {
  absl::StatusOr<AgentConfig> config =
      ParseAgentConfig("[[storage.dir]]\nname = \"gold\"\npath = \"rel/dir\"\n", "v.toml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(),
            "config 'v.toml': line 1: storage volume 'gold': path 'rel/dir' must be absolute");
}

TEST(AgentConfigTest, MissingFileIsNotFound) {
  absl::StatusOr<AgentConfig> config = LoadAgentConfig("/nonexistent/strata.toml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(config.status().message(), "config '/nonexistent/strata.toml' cannot be read");
}

}  // namespace
}  // namespace strata::agent
