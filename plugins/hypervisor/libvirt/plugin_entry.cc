// Entry point of the libvirt hypervisor plug-in (libstrata_libvirt.so).
#include "libvirt_hypervisor.h"
#include "strata/plugin/plugin.h"

STRATA_PLUGIN_EXPORT_API_VERSION()

extern "C" __attribute__((visibility("default"))) int strata_plugin_init(
    uint32_t api_version, strata::plugin::Registry* registry) {
  // Built for another API: touch nothing (the registry's layout may differ).
  if (api_version != strata::plugin::kPluginApiVersion) return strata::plugin::kPluginApiMismatch;
  strata::plugin::PluginDescriptor descriptor;
  descriptor.name = "libvirt";
  descriptor.version = "0.1.0";
  descriptor.capabilities = {"discovery", "domain-xml", "storage-pools", "events"};
  registry->RegisterHypervisor(
      std::move(descriptor),
      [](const std::string& uri)
          -> absl::StatusOr<std::unique_ptr<strata::hypervisor::Hypervisor>> {
        auto opened = strata::hypervisor::LibvirtHypervisor::Open(uri);
        if (!opened.ok()) return opened.status();
        return std::unique_ptr<strata::hypervisor::Hypervisor>(std::move(*opened));
      });
  return 0;
}
