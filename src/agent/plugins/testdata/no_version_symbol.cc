// Test plug-in: no api-version symbol; its entry point answers kPluginApiMismatch, as a plug-in
// built for another API does.
#include "strata/plugin/plugin.h"

extern "C" __attribute__((visibility("default"))) int strata_plugin_init(
    uint32_t, strata::plugin::Registry*) {
  return strata::plugin::kPluginApiMismatch;
}
