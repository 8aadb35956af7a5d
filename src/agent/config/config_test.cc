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
[[storage.btrfs]]
name = "fast"
path = "/srv/btrfs/fast"
)",
                                                        "agent.toml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->host_id, "host-a");
  EXPECT_EQ(config->connect, "test:///srv/host-a.xml");
  ASSERT_EQ(config->dir_volumes.size(), 2u);
  EXPECT_EQ(config->dir_volumes[1].name, "silver");
  EXPECT_EQ(config->dir_volumes[1].path, "/srv/volumes/silver dir");
  ASSERT_EQ(config->btrfs_volumes.size(), 1u);
  EXPECT_EQ(config->btrfs_volumes[0].name, "fast");
  EXPECT_EQ(config->btrfs_volumes[0].path, "/srv/btrfs/fast");
}

TEST(AgentConfigTest, RenderedConfigParsesBack) {
  AgentConfig config;
  config.host_id = "h1";
  config.connect = "qemu:///system";
  config.dir_volumes = {{"gold", "/a/b"}, {"ü vol", "/c/d e"}};
  config.btrfs_volumes = {{"fast", "/srv/btrfs/fast"}};
  config.cluster = "lab";
  config.listen = "127.0.0.1:0";
  config.server = "";
  config.plugin_dir = "/opt/strata/plugins";
  config.reconcile_interval_s = 0.5;
  absl::StatusOr<AgentConfig> parsed = ParseAgentConfig(RenderAgentConfig(config), "rendered");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->cluster, "lab");
  EXPECT_EQ(parsed->listen, "127.0.0.1:0");
  EXPECT_EQ(parsed->server, "");
  EXPECT_EQ(parsed->plugin_dir, "/opt/strata/plugins");
  EXPECT_EQ(parsed->reconcile_interval_s, 0.5);
  EXPECT_EQ(parsed->host_id, "h1");
  EXPECT_EQ(parsed->connect, "qemu:///system");
  ASSERT_EQ(parsed->dir_volumes.size(), 2u);
  EXPECT_EQ(parsed->dir_volumes[1].name, "ü vol");
  EXPECT_EQ(parsed->dir_volumes[1].path, "/c/d e");
  ASSERT_EQ(parsed->btrfs_volumes.size(), 1u);
  EXPECT_EQ(parsed->btrfs_volumes[0].name, "fast");
  EXPECT_EQ(parsed->btrfs_volumes[0].path, "/srv/btrfs/fast");
  // Only btrfs volumes: no empty [[storage.dir]] appears, and they still parse back.
  config.dir_volumes.clear();
  const std::string rendered = RenderAgentConfig(config);
  EXPECT_EQ(rendered.find("storage.dir"), std::string::npos) << rendered;
  parsed = ParseAgentConfig(rendered, "rendered");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->dir_volumes.empty());
  EXPECT_EQ(parsed->btrfs_volumes.size(), 1u);
}

TEST(AgentConfigTest, DaemonKeysAndDefaults) {
  absl::StatusOr<AgentConfig> defaults = ParseAgentConfig("", "empty.toml");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->listen, "127.0.0.1:7071");
  EXPECT_EQ(defaults->server, "127.0.0.1:7070");
  EXPECT_EQ(defaults->hypervisor, "libvirt");
  EXPECT_EQ(defaults->plugin_dir, "");
  EXPECT_EQ(defaults->reconcile_interval_s, 30);
  EXPECT_EQ(defaults->log_level, "info");
  absl::StatusOr<AgentConfig> config = ParseAgentConfig(R"(
cluster = "prod"
listen = "0.0.0.0:0"
server = "10.0.0.5:7070"
plugin_dir = "/usr/lib/strata/plugins"
hypervisor = "other"
reconcile_interval = 5
event_window_ms = 250
log_level = "debug"
)",
                                                        "d.toml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->cluster, "prod");
  EXPECT_EQ(config->listen, "0.0.0.0:0");
  EXPECT_EQ(config->server, "10.0.0.5:7070");
  EXPECT_EQ(config->plugin_dir, "/usr/lib/strata/plugins");
  EXPECT_EQ(config->hypervisor, "other");
  EXPECT_EQ(config->reconcile_interval_s, 5);
  EXPECT_EQ(config->event_window_ms, 250);
  EXPECT_EQ(config->log_level, "debug");
  absl::StatusOr<AgentConfig> standalone = ParseAgentConfig("server = \"\"\n", "s.toml");
  ASSERT_TRUE(standalone.ok()) << standalone.status();
  EXPECT_EQ(standalone->server, "");
}

TEST(AgentConfigTest, BadAddressesAndIntervalsNameTheKey) {
  absl::StatusOr<AgentConfig> config = ParseAgentConfig("\nlisten = \"localhost\"\n", "a.toml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(),
            "config 'a.toml': line 2: 'listen' must look like HOST:PORT, got 'localhost'");
  config = ParseAgentConfig("server = \"h:70000\"\n", "b.toml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(),
            "config 'b.toml': line 1: 'server' must look like HOST:PORT, got 'h:70000'");
  config = ParseAgentConfig("reconcile_interval = -1\n", "c.toml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(
      config.status().message(),
      "config 'c.toml': line 1: 'reconcile_interval' must be a number of seconds (0 or more)");
  for (const char* bad : {"event_window_ms = -1\n", "event_window_ms = 1.5\n",
                          "event_window_ms = \"1s\"\n", "event_window_ms = 3600001\n"}) {
    config = ParseAgentConfig(bad, "e.toml");
    ASSERT_FALSE(config.ok()) << bad;
    EXPECT_EQ(config.status().message(),
              "config 'e.toml': line 1: 'event_window_ms' must be a whole number of milliseconds "
              "(0 to 3600000)")
        << bad;
  }
}

TEST(AgentConfigTest, EventWindowDefaultsAndRoundTrips) {
  absl::StatusOr<AgentConfig> defaults = ParseAgentConfig("", "d.toml");
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->event_window_ms, 1000);
  AgentConfig config = *defaults;
  config.event_window_ms = 0;
  absl::StatusOr<AgentConfig> parsed = ParseAgentConfig(RenderAgentConfig(config), "r.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->event_window_ms, 0);
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

TEST(AgentConfigTest, BadBtrfsVolumesNameTheTable) {
  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"[[storage.btrfs]]\nname = \"fast\"\npath = \"rel\"\n",
       "config 'b.toml': line 1: storage volume 'fast': path 'rel' must be absolute"},
      {"[[storage.btrfs]]\nname = \"fast\"\n",
       "config 'b.toml': line 1: [[storage.btrfs]] needs both 'name' and 'path'"},
      {"[storage]\nbtrfs = \"x\"\n",
       "config 'b.toml': line 2: 'storage.btrfs' must be an array of tables ([[storage.btrfs]])"},
      {"[storage]\nbtrfs = [1]\n",
       "config 'b.toml': line 2: each [[storage.btrfs]] entry must be a table"},
      {"[[storage.btrfs]]\nname = 1\npath = \"/a\"\n",
       "config 'b.toml': line 2: 'name' must be a string"},
      {"[[storage.dir]]\nname = \"gold\"\n",
       "config 'b.toml': line 1: [[storage.dir]] needs both 'name' and 'path'"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<AgentConfig> config = ParseAgentConfig(c.text, "b.toml");
    ASSERT_FALSE(config.ok()) << c.text;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(config.status().message(), c.message);
  }
}

TEST(AgentConfigTest, ClusterMembersParseAndRoundTrip) {
  absl::StatusOr<AgentConfig> config = ParseAgentConfig(R"(
cluster = "prod"
cluster_members = ["host-a=127.0.0.1:7101", "host-b = 10.0.0.2:7071"]
cluster_interval_ms = 250
cluster_timeout_ms = 500
)",
                                                        "c.toml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->cluster_members, (std::vector<ClusterMember>{{"host-a", "127.0.0.1:7101"},
                                                                 {"host-b", "10.0.0.2:7071"}}));
  EXPECT_EQ(config->cluster_interval_ms, 250);
  EXPECT_EQ(config->cluster_timeout_ms, 500);
  absl::StatusOr<AgentConfig> again = ParseAgentConfig(RenderAgentConfig(*config), "again");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->cluster_members, config->cluster_members);
  EXPECT_EQ(again->cluster_interval_ms, 250);
  EXPECT_EQ(again->cluster_timeout_ms, 500);
  absl::StatusOr<AgentConfig> defaults = ParseAgentConfig("", "d.toml");
  ASSERT_TRUE(defaults.ok());
  EXPECT_TRUE(defaults->cluster_members.empty());
  EXPECT_EQ(defaults->cluster_interval_ms, 1000);
  EXPECT_EQ(defaults->cluster_timeout_ms, 1000);
}

TEST(AgentConfigTest, BadClusterMembersNameTheEntry) {
  EXPECT_EQ(ParseAgentConfig("cluster_members = [\"host-b\"]\n", "c.toml").status().message(),
            "config 'c.toml': line 1: cluster member 'host-b' must look like "
            "HOST_ID=HOST:PORT, e.g. host-b=10.0.0.2:7071");
  EXPECT_EQ(ParseAgentConfig("cluster_members = \"host-b=h:1\"\n", "c.toml").status().message(),
            "config 'c.toml': line 1: 'cluster_members' must be an array of "
            "\"HOST_ID=HOST:PORT\" strings");
  EXPECT_EQ(ParseAgentConfig("cluster_interval_ms = 0\n", "c.toml").status().message(),
            "config 'c.toml': line 1: 'cluster_interval_ms' must be a whole number of "
            "milliseconds (1 to 3600000)");
}

TEST(AgentConfigTest, MissingFileIsNotFound) {
  absl::StatusOr<AgentConfig> config = LoadAgentConfig("/nonexistent/strata.toml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(config.status().message(), "config '/nonexistent/strata.toml' cannot be read");
}

}  // namespace
}  // namespace strata::agent
