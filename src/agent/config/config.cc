#include "strata/agent/config.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

#include <toml++/toml.h>

#include "absl/strings/str_cat.h"

namespace strata::agent {
namespace {

absl::Status ConfigError(const std::string& origin, const toml::source_region& where,
                         const std::string& message) {
  return absl::InvalidArgumentError(
      absl::StrCat("config '", origin, "': line ", where.begin.line, ": ", message));
}

// Reads an optional string key; a present value of another type is an error.
absl::Status ReadString(const toml::table& table, std::string_view key, const std::string& origin,
                        std::string& out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return absl::OkStatus();
  const auto* value = node->as_string();
  if (value == nullptr) {
    return ConfigError(origin, node->source(),
                       absl::StrCat("'", std::string(key), "' must be a string"));
  }
  out = value->get();
  return absl::OkStatus();
}

}  // namespace

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
  if (auto status = ReadString(root, "connect", origin, config.connect); !status.ok()) {
    return status;
  }
  if (const toml::node* storage = root.get("storage"); storage != nullptr) {
    const toml::table* storage_table = storage->as_table();
    if (storage_table == nullptr) {
      return ConfigError(origin, storage->source(), "'storage' must be a table");
    }
    if (const toml::node* dirs = storage_table->get("dir"); dirs != nullptr) {
      const toml::array* dir_array = dirs->as_array();
      if (dir_array == nullptr) {
        return ConfigError(origin, dirs->source(),
                           "'storage.dir' must be an array of tables ([[storage.dir]])");
      }
      for (const toml::node& entry : *dir_array) {
        const toml::table* dir = entry.as_table();
        if (dir == nullptr) {
          return ConfigError(origin, entry.source(), "each [[storage.dir]] entry must be a table");
        }
        storage::DirVolume volume;
        if (auto status = ReadString(*dir, "name", origin, volume.name); !status.ok()) {
          return status;
        }
        if (auto status = ReadString(*dir, "path", origin, volume.path); !status.ok()) {
          return status;
        }
        if (volume.name.empty() || volume.path.empty()) {
          return ConfigError(origin, entry.source(),
                             "[[storage.dir]] needs both 'name' and 'path'");
        }
        if (volume.path.front() != '/') {
          return ConfigError(origin, entry.source(),
                             absl::StrCat("storage volume '", volume.name, "': path '", volume.path,
                                          "' must be absolute"));
        }
        config.dir_volumes.push_back(std::move(volume));
      }
    }
  }
  return config;
}

absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("config '", path, "' cannot be read"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseAgentConfig(buffer.str(), path);
}

std::string RenderAgentConfig(const AgentConfig& config) {
  toml::table root;
  if (!config.host_id.empty()) root.insert("host_id", config.host_id);
  if (!config.connect.empty()) root.insert("connect", config.connect);
  if (!config.dir_volumes.empty()) {
    toml::array dirs;
    for (const storage::DirVolume& volume : config.dir_volumes) {
      dirs.push_back(toml::table{{"name", volume.name}, {"path", volume.path}});
    }
    root.insert("storage", toml::table{{"dir", std::move(dirs)}});
  }
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
