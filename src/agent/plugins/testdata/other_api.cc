// Test plug-in: built for plug-in API 99. Its entry point must never be called.
#include <cstdlib>

#include "strata/plugin/plugin.h"

extern "C" {
__attribute__((visibility("default"))) extern const uint32_t strata_plugin_api_version = 99;
__attribute__((visibility("default"))) int strata_plugin_init(uint32_t, strata::plugin::Registry*) {
  std::abort();  // the host must refuse before calling it
}
}
