// Entry point of the btrfs storage plug-in (libstrata_btrfs.so).
#include <string>

#include "btrfs_plugin.h"
#include "strata/plugin/plugin.h"

STRATA_PLUGIN_EXPORT_API_VERSION()

extern "C" __attribute__((visibility("default"))) int strata_plugin_init(
    uint32_t api_version, strata::plugin::Registry* registry) {
  // Built for another API: touch nothing (the registry's layout may differ).
  if (api_version != strata::plugin::kPluginApiVersion) return strata::plugin::kPluginApiMismatch;
  strata::plugin::PluginDescriptor descriptor;
  descriptor.kind = strata::plugin::PluginKind::kStorage;
  descriptor.name = strata::plugins::btrfs::kPluginName;
  descriptor.version = "0.1.0";
  descriptor.capabilities = {"discovery", "snapshot"};
  registry->RegisterStorage(std::move(descriptor),
                            [](const strata::plugin::StoragePluginConfig& config)
                                -> absl::StatusOr<std::unique_ptr<strata::plugin::StoragePlugin>> {
                              for (const auto& volume : config.volumes) {
                                if (volume.path.empty() || volume.path.front() != '/') {
                                  return absl::InvalidArgumentError("btrfs volume '" + volume.name +
                                                                    "': path '" + volume.path +
                                                                    "' must be absolute");
                                }
                              }
                              return strata::plugins::btrfs::MakeBtrfsPlugin(config);
                            });
  return 0;
}
