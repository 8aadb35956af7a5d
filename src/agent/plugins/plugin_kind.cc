#include "strata/plugin/plugin.h"

namespace strata::plugin {

std::string_view PluginKindName(PluginKind kind) {
  switch (kind) {
    case PluginKind::kHypervisor:
      return "hypervisor";
    case PluginKind::kStorage:
      return "storage";
    case PluginKind::kCluster:
      return "cluster";
  }
  return "unknown";
}

}  // namespace strata::plugin
