// strata-agent: the host services of one hypervisor host. This file only parses flags and wires
// library objects together; the work lives in src/agent and the plug-ins.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "strata/agent/agent.h"
#include "strata/agent/config.h"
#include "strata/agent/host_services.h"
#include "strata/agent/plugin_host.h"
#include "strata/agent/sample_site.h"
#include "strata/core/query.h"

namespace {

using strata::agent::AgentConfig;

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "strata-agent: %s\n", std::string(status.message()).c_str());
  return 1;
}

// Every config key as a flag; a flag given on the command line wins over the file.
struct ConfigFlags {
  std::string config_file;
  std::string host_id, cluster, connect, listen, server, plugin_dir, hypervisor, log_level;
  double reconcile_interval = -1;
  int64_t event_window_ms = -1;
  std::vector<std::string> dir_volumes;  // NAME=PATH
  CLI::Option* server_option = nullptr;

  void Add(CLI::App* cmd, bool daemon) {
    cmd->add_option("--config", config_file, "Agent config file (TOML)")->check(CLI::ExistingFile);
    cmd->add_option("--connect,-c", connect,
                    "Hypervisor URI, e.g. qemu:///system or test:///abs/path/host.xml");
    cmd->add_option("--host-id", host_id,
                    "This host's identity in the graph (default: the host name)");
    cmd->add_option("--dir-volume", dir_volumes,
                    "A dir storage volume as NAME=/path (repeatable; adds to the config's)");
    cmd->add_option(
        "--plugin-dir", plugin_dir,
        "Directory of plug-in shared objects (default: <exe dir>/../lib/strata/plugins)");
    cmd->add_option("--hypervisor", hypervisor, "Hypervisor plug-in name (default: libvirt)");
    cmd->add_option("--log-level", log_level,
                    "trace, debug, info, warn, error or off (default: info)");
    if (!daemon) return;
    cmd->add_option("--cluster", cluster, "Cluster name (optional)");
    cmd->add_option("--listen", listen,
                    "gRPC listen address HOST:PORT (default: 127.0.0.1:7071; port 0 = any free)");
    server_option =
        cmd->add_option("--server", server,
                        "stratad's gRPC address HOST:PORT (default: 127.0.0.1:7070; \"\" = "
                        "standalone, no registration)");
    cmd->add_option("--reconcile-interval", reconcile_interval,
                    "Seconds between reconciliation discoveries (default: 30; 0 = off)");
    cmd->add_option("--event-window-ms", event_window_ms,
                    "Event coalescing window in ms: one change set per window (default: 1000; "
                    "0 = no hypervisor events, discoveries only)")
        ->check(CLI::Range(int64_t{0}, int64_t{3600000}));
  }

  absl::StatusOr<AgentConfig> Resolve() const {
    AgentConfig config;
    if (!config_file.empty()) {
      absl::StatusOr<AgentConfig> loaded = strata::agent::LoadAgentConfig(config_file);
      if (!loaded.ok()) return loaded.status();
      config = *std::move(loaded);
    }
    auto set = [](std::string& target, const std::string& value) {
      if (!value.empty()) target = value;
    };
    set(config.connect, connect);
    set(config.host_id, host_id);
    set(config.cluster, cluster);
    set(config.listen, listen);
    set(config.plugin_dir, plugin_dir);
    set(config.hypervisor, hypervisor);
    set(config.log_level, log_level);
    if (server_option != nullptr && server_option->count() > 0) config.server = server;
    if (reconcile_interval >= 0) config.reconcile_interval_s = reconcile_interval;
    if (event_window_ms >= 0) config.event_window_ms = event_window_ms;
    if (config.host_id.empty()) config.host_id = strata::agent::DefaultHostId();
    if (config.plugin_dir.empty()) {
      config.plugin_dir = strata::agent::PluginHost::DefaultPluginDirectory();
    }
    for (const std::string& spec : dir_volumes) {
      const size_t eq = spec.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size() || spec[eq + 1] != '/') {
        return absl::InvalidArgumentError("--dir-volume '" + spec +
                                          "' must look like NAME=/absolute/path");
      }
      config.dir_volumes.push_back({spec.substr(0, eq), spec.substr(eq + 1)});
    }
    if (absl::Status status = strata::agent::CheckHostPort(config.listen, "listen"); !status.ok()) {
      return status;
    }
    if (!config.server.empty()) {
      if (absl::Status status = strata::agent::CheckHostPort(config.server, "server");
          !status.ok()) {
        return status;
      }
    }
    if (config.connect.empty()) {
      return absl::InvalidArgumentError(
          "no hypervisor to connect to: give --connect URI or a --config file with 'connect'");
    }
    return config;
  }
};

absl::Status SetUpLogging(const std::string& level_name) {
  spdlog::level::level_enum level = spdlog::level::from_str(level_name);
  if (level == spdlog::level::off && level_name != "off") {
    return absl::InvalidArgumentError("log level '" + level_name +
                                      "' is not one of trace, debug, info, warn, error, off");
  }
  // Logs go to stderr; stdout carries only the machine-readable lines.
  auto logger = spdlog::stderr_color_mt("strata-agent");
  logger->set_level(level);
  spdlog::set_default_logger(logger);
  return absl::OkStatus();
}

struct DiscoverFlags {
  std::vector<std::string> vms;
  std::string select;
  std::string to_type;
  bool upward = false;
  int depth = 0;
  bool json = false;
  bool tree = false;
};

int RunDiscover(const ConfigFlags& config_flags, const DiscoverFlags& flags) {
  absl::StatusOr<AgentConfig> config = config_flags.Resolve();
  if (!config.ok()) return Fail(config.status());
  if (absl::Status status = SetUpLogging(config->log_level == "info" ? "warn" : config->log_level);
      !status.ok()) {
    return Fail(status);
  }
  strata::agent::PluginHost plugins;
  absl::StatusOr<int> loaded = plugins.LoadDirectory(config->plugin_dir);
  if (!loaded.ok()) return Fail(loaded.status());
  for (const std::string& error : plugins.errors()) {
    std::fprintf(stderr, "strata-agent: %s\n", error.c_str());
  }
  strata::agent::HostServices services(plugins, *config);
  for (const std::string& error : services.PluginErrors()) {
    if (std::find(plugins.errors().begin(), plugins.errors().end(), error) ==
        plugins.errors().end()) {
      std::fprintf(stderr, "strata-agent: %s\n", error.c_str());
    }
  }
  strata::agent::DiscoverParams params;
  params.vms = flags.vms;
  // The CLI always prints a tree from the selected nodes (default: every VM) downward.
  params.select = flags.select.empty() ? "type=vm" : flags.select;
  params.to_type = flags.to_type;
  params.upward = flags.upward;
  params.max_depth = flags.depth < 0 ? 0 : flags.depth;
  absl::StatusOr<strata::agent::DiscoverResult> result = services.Discover(params);
  if (!result.ok()) return Fail(result.status());
  const auto direction =
      flags.upward ? strata::core::Direction::kUp : strata::core::Direction::kDown;
  if (flags.json) {
    std::cout << strata::core::ToJson(result->graph, result->selected).dump(2) << "\n";
  } else {
    std::cout << strata::core::ToTree(result->graph, result->selected, direction);
  }
  if (result->selected.roots.empty()) {
    std::fprintf(stderr, "strata-agent: no node matches '%s'\n", params.select.c_str());
    return 3;
  }
  return 0;
}

volatile std::sig_atomic_t g_signal = 0;
extern "C" void OnSignal(int signal) { g_signal = signal; }

int RunDaemon(const ConfigFlags& config_flags) {
  absl::StatusOr<AgentConfig> config = config_flags.Resolve();
  if (!config.ok()) return Fail(config.status());
  if (absl::Status status = SetUpLogging(config->log_level); !status.ok()) return Fail(status);
  // Block SIGINT/SIGTERM in every thread (gRPC's included); the main thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  strata::agent::AgentOptions options;
  options.config = *config;
  absl::StatusOr<std::unique_ptr<strata::agent::Agent>> agent =
      strata::agent::Agent::Start(std::move(options));
  if (!agent.ok()) return Fail(agent.status());
  std::printf("strata-agent: listening grpc=%s host=%s\n", (*agent)->endpoint().c_str(),
              config->host_id.c_str());
  std::fflush(stdout);
  int signal = 0;
  sigwait(&signals, &signal);
  spdlog::info("received signal {}; shutting down", signal);
  (*agent)->Stop();
  agent->reset();
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "strata-agent: host services for one hypervisor host (discovery of VMs and of where\n"
      "every disk lives, down to the storage system)."};
  app.require_subcommand(1);

  ConfigFlags run_config;
  CLI::App* run_cmd = app.add_subcommand(
      "run",
      "Run the agent: serve the gRPC host services (Agent, Discovery, Events, Backup, Restore),\n"
      "reconcile periodically and register with stratad. Prints\n"
      "'strata-agent: listening grpc=HOST:PORT host=HOST_ID' on stdout once serving.");
  run_config.Add(run_cmd, /*daemon=*/true);

  ConfigFlags discover_config;
  DiscoverFlags discover;
  CLI::App* discover_cmd = app.add_subcommand(
      "discover",
      "Print this host's resource graph: every VM (or those selected) and the chain below each\n"
      "disk: file -> mount -> file-system volume -> block device -> LUN -> storage volume ->\n"
      "storage system.");
  discover_config.Add(discover_cmd, /*daemon=*/false);
  discover_cmd->add_option("--vm", discover.vms, "Only this VM, by name or UUID (repeatable)");
  discover_cmd->add_option("--select", discover.select,
                           "Start from the nodes that match, e.g. 'type=storage_volume name=gold'"
                           " (default: type=vm)");
  discover_cmd->add_option("--to", discover.to_type,
                           "Keep only paths that reach this node type, e.g. storage_system");
  discover_cmd->add_flag("--up", discover.upward,
                         "Traverse upward (what depends on the selected nodes) instead of down");
  discover_cmd->add_option("--depth", discover.depth, "Maximum traversal depth (default: none)");
  auto* json_flag = discover_cmd->add_flag("--json", discover.json, "Print JSON");
  discover_cmd->add_flag("--tree", discover.tree, "Print an indented tree (default)")
      ->excludes(json_flag);

  std::string site_dir;
  CLI::App* site_cmd = app.add_subcommand(
      "sample-site",
      "Generate the embedded-default sample site: test-driver host files with a dozen VMs whose\n"
      "disks are real files on two dir storage volumes, and one agent config per host.");
  site_cmd->add_option("dir", site_dir, "Directory to create the site in")->required();

  CLI11_PARSE(app, argc, argv);

  if (*run_cmd) return RunDaemon(run_config);
  if (*discover_cmd) {
    if (discover.vms.size() > 0 && !discover.select.empty()) {
      return Fail(absl::InvalidArgumentError("--vm and --select cannot be combined"));
    }
    return RunDiscover(discover_config, discover);
  }
  if (*site_cmd) {
    absl::StatusOr<strata::agent::SampleSite> site = strata::agent::GenerateSampleSite(site_dir);
    if (!site.ok()) return Fail(site.status());
    std::printf("sample site in %s: %d VMs on %zu hosts, %d disk images\n", site->dir.c_str(),
                site->vm_count, site->hosts.size(), site->image_count);
    for (size_t i = 0; i < site->hosts.size(); ++i) {
      std::printf("  %-8s %s\n", site->hosts[i].c_str(), site->agent_configs[i].c_str());
    }
    return 0;
  }
  return 0;
}
