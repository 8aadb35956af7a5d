// strata-agent: the host services of one hypervisor host. This file only parses flags and wires
// library objects together; the work lives in src/agent and the plug-ins.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "libvirt_hypervisor.h"
#include "strata/agent/config.h"
#include "strata/agent/discovery.h"
#include "strata/agent/sample_site.h"
#include "strata/core/query.h"

namespace {

using strata::agent::AgentConfig;

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "strata-agent: %s\n", std::string(status.message()).c_str());
  return 1;
}

struct DiscoverFlags {
  std::string config_file;
  std::string connect;
  std::string host_id;
  std::vector<std::string> dir_volumes;  // NAME=PATH
  std::vector<std::string> vms;
  std::string select;
  std::string to_type;
  bool upward = false;
  int depth = -1;
  bool json = false;
  bool tree = false;
};

absl::StatusOr<AgentConfig> ResolveConfig(const DiscoverFlags& flags) {
  AgentConfig config;
  if (!flags.config_file.empty()) {
    absl::StatusOr<AgentConfig> loaded = strata::agent::LoadAgentConfig(flags.config_file);
    if (!loaded.ok()) return loaded.status();
    config = *std::move(loaded);
  }
  if (!flags.connect.empty()) config.connect = flags.connect;
  if (!flags.host_id.empty()) config.host_id = flags.host_id;
  if (config.host_id.empty()) config.host_id = strata::agent::DefaultHostId();
  for (const std::string& spec : flags.dir_volumes) {
    const size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size() || spec[eq + 1] != '/') {
      return absl::InvalidArgumentError("--dir-volume '" + spec +
                                        "' must look like NAME=/absolute/path");
    }
    config.dir_volumes.push_back({spec.substr(0, eq), spec.substr(eq + 1)});
  }
  if (config.connect.empty()) {
    return absl::InvalidArgumentError(
        "no hypervisor to connect to: give --connect URI or a --config file with 'connect'");
  }
  return config;
}

absl::StatusOr<strata::core::Query> BuildQuery(const DiscoverFlags& flags) {
  strata::core::Query query;
  std::string select = flags.select.empty() ? "type=vm" : flags.select;
  absl::StatusOr<strata::core::Selector> selector = strata::core::ParseSelector(select);
  if (!selector.ok()) return selector.status();
  query.select = *std::move(selector);
  query.direction = flags.upward ? strata::core::Direction::kUp : strata::core::Direction::kDown;
  if (!flags.to_type.empty()) {
    absl::StatusOr<strata::core::NodeType> type = strata::core::ParseNodeType(flags.to_type);
    if (!type.ok()) return type.status();
    query.to_type = *type;
  }
  query.max_depth = flags.depth;
  return query;
}

int RunDiscover(const DiscoverFlags& flags) {
  absl::StatusOr<AgentConfig> config = ResolveConfig(flags);
  if (!config.ok()) return Fail(config.status());
  absl::StatusOr<strata::core::Query> query = BuildQuery(flags);
  if (!query.ok()) return Fail(query.status());

  auto hypervisor = strata::hypervisor::LibvirtHypervisor::Open(config->connect);
  if (!hypervisor.ok()) return Fail(hypervisor.status());
  strata::storage::ResolverOptions resolver_options;
  resolver_options.host_id = config->host_id;
  resolver_options.dir_volumes = config->dir_volumes;
  strata::storage::StorageResolver resolver(resolver_options);

  strata::agent::DiscoveryRequest request;
  request.host_id = config->host_id;
  request.vms = flags.vms;
  absl::StatusOr<strata::core::Graph> graph =
      strata::agent::DiscoverHost(**hypervisor, resolver, request);
  if (!graph.ok()) return Fail(graph.status());

  absl::StatusOr<strata::core::Subgraph> result = strata::core::RunQuery(*graph, *query);
  if (!result.ok()) return Fail(result.status());
  if (flags.json) {
    std::cout << strata::core::ToJson(*graph, *result).dump(2) << "\n";
  } else {
    std::cout << strata::core::ToTree(*graph, *result, query->direction);
  }
  if (result->roots.empty()) {
    std::fprintf(stderr, "strata-agent: no node matches '%s'\n",
                 (flags.select.empty() ? std::string("type=vm") : flags.select).c_str());
    return 3;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "strata-agent: host services for one hypervisor host (discovery of VMs and of where\n"
      "every disk lives, down to the storage system)."};
  app.require_subcommand(1);

  DiscoverFlags discover;
  CLI::App* discover_cmd = app.add_subcommand(
      "discover",
      "Print this host's resource graph: every VM (or those selected) and the chain below each\n"
      "disk: file -> mount -> file-system volume -> block device -> LUN -> storage volume ->\n"
      "storage system.");
  discover_cmd->add_option("--config", discover.config_file, "Agent config file (TOML)")
      ->check(CLI::ExistingFile);
  discover_cmd->add_option("--connect,-c", discover.connect,
                           "Hypervisor URI, e.g. qemu:///system or test:///abs/path/host.xml");
  discover_cmd->add_option("--host-id", discover.host_id,
                           "This host's identity in the graph (default: the host name)");
  discover_cmd->add_option("--dir-volume", discover.dir_volumes,
                           "A dir storage volume as NAME=/path (repeatable)");
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

  if (*discover_cmd) {
    if (discover.vms.size() > 0 && !discover.select.empty()) {
      return Fail(absl::InvalidArgumentError("--vm and --select cannot be combined"));
    }
    if (!discover.vms.empty()) {
      // The hypervisor filtered the VMs already; select every VM that remains.
      discover.select = "type=vm";
    }
    return RunDiscover(discover);
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
