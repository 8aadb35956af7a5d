// Test plug-in: its entry point fails with a message (and what it registered is dropped).
#include "strata/plugin/plugin.h"

STRATA_PLUGIN_EXPORT_API_VERSION()

extern "C" __attribute__((visibility("default"))) int strata_plugin_init(
    uint32_t, strata::plugin::Registry* registry) {
  strata::plugin::PluginDescriptor descriptor;
  descriptor.name = "half-made";
  registry->RegisterStorage(std::move(descriptor), nullptr);
  registry->SetError("cannot reach the frobnicator at /dev/frob0");
  return 1;
}
