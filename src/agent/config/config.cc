#include "strata/agent/config.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

#include <toml++/toml.h>

#include "strata/util/strings.h"

namespace strata::agent {
namespace {

absl::Status ConfigError(const std::string& origin, const toml::source_region& where,
                         const std::string& message) {
  return absl::InvalidArgumentError(
      util::Cat("config '", origin, "': line ", where.begin.line, ": ", message));
}

// Reads an optional string key; a present value of another type is an error.
absl::Status ReadString(const toml::table& table, std::string_view key, const std::string& origin,
                        std::string& out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return absl::OkStatus();
  const auto* value = node->as_string();
  if (value == nullptr) {
    return ConfigError(origin, node->source(),
                       util::Cat("'", std::string(key), "' must be a string"));
  }
  out = value->get();
  return absl::OkStatus();
}

absl::Status ReadNumber(const toml::table& table, std::string_view key, const std::string& origin,
                        double& out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return absl::OkStatus();
  if (auto value = node->value<double>(); value.has_value() && *value >= 0) {
    out = *value;
    return absl::OkStatus();
  }
  return ConfigError(origin, node->source(),
                     util::Cat("'", key, "' must be a number of seconds (0 or more)"));
}

// Reads the [[storage.<kind>]] entries (name, path) into `out`.
absl::Status ReadVolumes(const toml::table& storage, std::string_view kind,
                         const std::string& origin, std::vector<plugin::StorageVolumeConfig>& out) {
  const toml::node* node = storage.get(kind);
  if (node == nullptr) return absl::OkStatus();
  const std::string table = util::Cat("[[storage.", kind, "]]");
  const toml::array* entries = node->as_array();
  if (entries == nullptr) {
    return ConfigError(origin, node->source(),
                       util::Cat("'storage.", kind, "' must be an array of tables (", table, ")"));
  }
  for (const toml::node& entry : *entries) {
    const toml::table* fields = entry.as_table();
    if (fields == nullptr) {
      return ConfigError(origin, entry.source(),
                         util::Cat("each ", table, " entry must be a table"));
    }
    plugin::StorageVolumeConfig volume;
    if (auto status = ReadString(*fields, "name", origin, volume.name); !status.ok()) {
      return status;
    }
    if (auto status = ReadString(*fields, "path", origin, volume.path); !status.ok()) {
      return status;
    }
    if (volume.name.empty() || volume.path.empty()) {
      return ConfigError(origin, entry.source(), util::Cat(table, " needs both 'name' and 'path'"));
    }
    if (volume.path.front() != '/') {
      return ConfigError(origin, entry.source(),
                         util::Cat("storage volume '", volume.name, "': path '", volume.path,
                                   "' must be absolute"));
    }
    out.push_back(std::move(volume));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckHostPort(const std::string& address, const std::string& what) {
  const size_t colon = address.rfind(':');
  uint64_t port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !util::ParseUint(std::string_view(address).substr(colon + 1), port) || port > 65535) {
    return absl::InvalidArgumentError(
        util::Cat("'", what, "' must look like HOST:PORT, got '", address, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<AgentConfig> ParseAgentConfig(std::string_view text, const std::string& origin) {
  toml::table root;
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& error) {
    return ConfigError(origin, error.source(), std::string(error.description()));
  }
  AgentConfig config;
  if (auto status = ReadString(root, "host_id", origin, config.host_id); !status.ok()) {
    return status;
  }
  for (auto [key, target] : {std::pair<std::string_view, std::string*>{"connect", &config.connect},
                             {"cluster", &config.cluster},
                             {"cluster_membership", &config.cluster_membership},
                             {"listen", &config.listen},
                             {"server", &config.server},
                             {"plugin_dir", &config.plugin_dir},
                             {"hypervisor", &config.hypervisor},
                             {"log_level", &config.log_level},
                             {"state_dir", &config.state_dir}}) {
    if (auto status = ReadString(root, key, origin, *target); !status.ok()) return status;
  }
  if (auto status = ReadNumber(root, "reconcile_interval", origin, config.reconcile_interval_s);
      !status.ok()) {
    return status;
  }
  if (const toml::node* node = root.get("event_window_ms"); node != nullptr) {
    std::optional<int64_t> value = node->value_exact<int64_t>();
    if (!value.has_value() || *value < 0 || *value > 3600000) {
      return ConfigError(origin, node->source(),
                         "'event_window_ms' must be a whole number of milliseconds (0 to 3600000)");
    }
    config.event_window_ms = *value;
  }
  for (auto [key, target] :
       {std::pair<std::string_view, int64_t*>{"cluster_interval_ms", &config.cluster_interval_ms},
        {"cluster_timeout_ms", &config.cluster_timeout_ms}}) {
    const toml::node* node = root.get(key);
    if (node == nullptr) continue;
    std::optional<int64_t> value = node->value_exact<int64_t>();
    if (!value.has_value() || *value < 1 || *value > 3600000) {
      return ConfigError(
          origin, node->source(),
          util::Cat("'", key, "' must be a whole number of milliseconds (1 to 3600000)"));
    }
    *target = *value;
  }
  if (config.cluster_membership != "static" && config.cluster_membership != "pacemaker" &&
      config.cluster_membership != "registry") {
    return ConfigError(origin, root.get("cluster_membership")->source(),
                       util::Cat("'cluster_membership' must be \"static\", \"pacemaker\" or "
                                 "\"registry\", not '",
                                 config.cluster_membership, "'"));
  }
  // The registry's members are read from stratad: a standalone agent has none to read.
  if (config.cluster_membership == "registry" && config.server.empty()) {
    return ConfigError(origin, root.get("cluster_membership")->source(),
                       "'cluster_membership' \"registry\" reads the members from stratad, but "
                       "'server' is empty");
  }
  if (const toml::node* node = root.get("cluster_agent_port"); node != nullptr) {
    std::optional<int64_t> value = node->value_exact<int64_t>();
    if (!value.has_value() || *value < 1 || *value > 65535) {
      return ConfigError(origin, node->source(),
                         "'cluster_agent_port' must be a port (1 to 65535)");
    }
    config.cluster_agent_port = *value;
  }
  if (const toml::node* node = root.get("cluster_members"); node != nullptr) {
    const toml::array* entries = node->as_array();
    if (entries == nullptr) {
      return ConfigError(origin, node->source(),
                         "'cluster_members' must be an array of \"HOST_ID=HOST:PORT\" strings");
    }
    for (const toml::node& entry : *entries) {
      const auto* text = entry.as_string();
      if (text == nullptr) {
        return ConfigError(origin, entry.source(),
                           "'cluster_members' must be an array of \"HOST_ID=HOST:PORT\" strings");
      }
      absl::StatusOr<ClusterMember> member = ParseClusterMember(text->get());
      if (!member.ok()) {
        return ConfigError(origin, entry.source(), std::string(member.status().message()));
      }
      config.cluster_members.push_back(*std::move(member));
    }
  }
  for (auto [key, value] :
       {std::pair<std::string_view, const std::string*>{"listen", &config.listen},
        {"server", &config.server}}) {
    if (key == "server" && value->empty()) continue;  // standalone
    if (auto status = CheckHostPort(*value, std::string(key)); !status.ok()) {
      return ConfigError(origin, root.get(key)->source(), std::string(status.message()));
    }
  }
  if (const toml::node* storage = root.get("storage"); storage != nullptr) {
    const toml::table* storage_table = storage->as_table();
    if (storage_table == nullptr) {
      return ConfigError(origin, storage->source(), "'storage' must be a table");
    }
    for (auto [kind, volumes] :
         {std::pair<std::string_view, std::vector<plugin::StorageVolumeConfig>*>{
              "dir", &config.dir_volumes},
          {"btrfs", &config.btrfs_volumes}}) {
      if (auto status = ReadVolumes(*storage_table, kind, origin, *volumes); !status.ok()) {
        return status;
      }
    }
  }
  return config;
}

absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(util::Cat("config '", path, "' cannot be read"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseAgentConfig(buffer.str(), path);
}

std::string RenderAgentConfig(const AgentConfig& config) {
  toml::table root;
  if (!config.host_id.empty()) root.insert("host_id", config.host_id);
  if (!config.cluster.empty()) root.insert("cluster", config.cluster);
  if (!config.connect.empty()) root.insert("connect", config.connect);
  root.insert("listen", config.listen);
  root.insert("server", config.server);
  if (!config.plugin_dir.empty()) root.insert("plugin_dir", config.plugin_dir);
  if (config.hypervisor != "libvirt") root.insert("hypervisor", config.hypervisor);
  if (config.reconcile_interval_s != 30)
    root.insert("reconcile_interval", config.reconcile_interval_s);
  if (config.event_window_ms != 1000) root.insert("event_window_ms", config.event_window_ms);
  if (config.log_level != "info") root.insert("log_level", config.log_level);
  if (config.state_dir != kDefaultStateDir) root.insert("state_dir", config.state_dir);
  if (!config.cluster_members.empty()) {
    toml::array members;
    for (const ClusterMember& member : config.cluster_members) {
      members.push_back(ClusterMemberText(member));
    }
    root.insert("cluster_members", std::move(members));
  }
  if (config.cluster_interval_ms != 1000) {
    root.insert("cluster_interval_ms", config.cluster_interval_ms);
  }
  if (config.cluster_timeout_ms != 1000)
    root.insert("cluster_timeout_ms", config.cluster_timeout_ms);
  if (config.cluster_membership != "static") {
    root.insert("cluster_membership", config.cluster_membership);
  }
  if (config.cluster_agent_port != 7071) {
    root.insert("cluster_agent_port", config.cluster_agent_port);
  }
  toml::table storage;
  for (auto [kind, volumes] :
       {std::pair<std::string_view, const std::vector<plugin::StorageVolumeConfig>*>{
            "dir", &config.dir_volumes},
        {"btrfs", &config.btrfs_volumes}}) {
    if (volumes->empty()) continue;
    toml::array entries;
    for (const plugin::StorageVolumeConfig& volume : *volumes) {
      entries.push_back(toml::table{{"name", volume.name}, {"path", volume.path}});
    }
    storage.insert(kind, std::move(entries));
  }
  if (!storage.empty()) root.insert("storage", std::move(storage));
  std::ostringstream out;
  out << root << "\n";
  return out.str();
}

std::string DefaultHostId() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

}  // namespace strata::agent
