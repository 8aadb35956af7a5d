#include "dir_plugin.h"

#include <string_view>
#include <utility>

namespace strata::plugins::dir {
namespace {

// True when `prefix` is `path` or one of its parent directories ("/" holds everything).
bool IsPathPrefix(std::string_view prefix, std::string_view path) {
  if (prefix == "/" || prefix == path) return true;
  return path.size() > prefix.size() && path.starts_with(prefix) && path[prefix.size()] == '/';
}

std::string StripFs(const std::string& fs_id) {
  return fs_id.starts_with("fs:") ? fs_id.substr(3) : fs_id;
}

class DirPlugin final : public plugin::StoragePlugin {
 public:
  explicit DirPlugin(plugin::StoragePluginConfig config) : config_(std::move(config)) {}

  std::string Name() const override { return kPluginName; }

  std::vector<plugin::VolumeClaim> ClaimFile(const plugin::FileLocation& file,
                                             plugin::PathLocator& locator) override {
    std::vector<plugin::VolumeClaim> claims;
    for (const plugin::StorageVolumeConfig& volume : config_.volumes) {
      std::optional<plugin::FileLocation> root = locator.Locate(volume.path);
      if (!root.has_value() || root->fs_id != file.fs_id ||
          !IsPathPrefix(root->path_in_fs, file.path_in_fs)) {
        continue;
      }
      claims.push_back(Claim(volume, *root));
    }
    return claims;
  }

  std::vector<plugin::VolumeClaim> Volumes(plugin::PathLocator& locator) override {
    std::vector<plugin::VolumeClaim> claims;
    for (const plugin::StorageVolumeConfig& volume : config_.volumes) {
      if (std::optional<plugin::FileLocation> root = locator.Locate(volume.path)) {
        claims.push_back(Claim(volume, *root));
      }
    }
    return claims;
  }

 private:
  static plugin::VolumeClaim Claim(const plugin::StorageVolumeConfig& volume,
                                   const plugin::FileLocation& root) {
    plugin::VolumeClaim claim;
    claim.volume_id = "sv:dir:" + StripFs(root.fs_id) + ":" + root.path_in_fs;
    claim.volume_name = volume.name;
    claim.root = root.path;
    claim.attrs = {{"kind", "dir"}, {"path", volume.path}};
    return claim;
  }

  plugin::StoragePluginConfig config_;
};

}  // namespace

std::unique_ptr<plugin::StoragePlugin> MakeDirPlugin(plugin::StoragePluginConfig config) {
  return std::make_unique<DirPlugin>(std::move(config));
}

}  // namespace strata::plugins::dir
