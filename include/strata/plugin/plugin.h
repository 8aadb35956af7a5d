// The plug-in SDK. A plug-in is a shared object with one C entry point:
//
//   extern "C" int strata_plugin_init(uint32_t api_version, strata::plugin::Registry* registry);
//
// and, written by STRATA_PLUGIN_EXPORT_API_VERSION(), the data symbol
// `strata_plugin_api_version` holding the API it was built for. The agent reads that symbol
// first and does not call a plug-in built for another API (its types may have another layout);
// without the symbol, the entry point's own check is the guard.
//
// The agent calls strata_plugin_init once, right after dlopen, on the agent's main thread. The
// plug-in checks `api_version` (returns kPluginApiMismatch, touching nothing, when it was built
// for another one), then registers one factory per thing it offers. No static initialisers are
// relied on. It returns 0 on success, any other value on failure (then Registry::SetError
// explains why).
//
// Ownership: the registry owns nothing of the plug-in's code. Objects made by factories are
// owned by the caller (unique_ptr); the agent's PluginHost outlives them. Shared objects are
// never unloaded (RTLD_NODELETE): libraries such as libvirt leave thread-local destructors and
// exit handlers behind that must not outlive their code.
//
// Plug-ins are C++ and are built with the same compiler and the same Debian libraries as the
// agent (the api version guards the layout of the types below).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "strata/hypervisor/hypervisor.h"
#include "strata/plugin/storage.h"

namespace strata::plugin {

// Bump whenever a type in this header, hypervisor.h, domain.h or storage.h changes layout.
// 2: Hypervisor::SubscribeEvents (vtable), HypervisorEvent, EventKind, EventSink.
// 3: VM control and snapshots on Hypervisor; storage snapshots (SnapshotRequest) on
//    StoragePlugin.
// 4: SnapshotRequest::append, StoragePlugin::CanAppendToSnapshot (vtable).
inline constexpr uint32_t kPluginApiVersion = 4;
inline constexpr int kPluginApiMismatch = 2;
inline constexpr char kPluginEntryPoint[] = "strata_plugin_init";

enum class PluginKind { kHypervisor, kStorage, kCluster };
std::string_view PluginKindName(PluginKind kind);

struct PluginDescriptor {
  PluginKind kind = PluginKind::kHypervisor;
  std::string name;                       // "libvirt", "dir", "btrfs"
  std::string version;                    // the plug-in's own version
  std::vector<std::string> capabilities;  // "discovery", "events", "snapshot", "reflink", ...
};

// Opens a connection to a hypervisor by URI. Called on the agent's thread that needs it.
using HypervisorFactory =
    std::function<absl::StatusOr<std::unique_ptr<hypervisor::Hypervisor>>(const std::string& uri)>;
// Makes a storage plug-in instance from its configuration.
using StorageFactory = std::function<absl::StatusOr<std::unique_ptr<StoragePlugin>>(
    const StoragePluginConfig& config)>;

// Handed to strata_plugin_init; valid only during that call. Registering two things of the same
// kind and name (in one or two plug-ins) keeps the first and records an error.
class Registry {
 public:
  virtual ~Registry() = default;
  virtual void RegisterHypervisor(PluginDescriptor descriptor, HypervisorFactory factory) = 0;
  virtual void RegisterStorage(PluginDescriptor descriptor, StorageFactory factory) = 0;
  // A whole message explaining a non-zero return of strata_plugin_init.
  virtual void SetError(std::string message) = 0;
};

using PluginInitFunction = int (*)(uint32_t api_version, Registry* registry);
inline constexpr char kPluginApiVersionSymbol[] = "strata_plugin_api_version";

}  // namespace strata::plugin

// Defines `strata_plugin_api_version` in a plug-in (once, at namespace scope).
#define STRATA_PLUGIN_EXPORT_API_VERSION()                                                 \
  extern "C" {                                                                             \
  __attribute__((visibility("default"))) extern const uint32_t strata_plugin_api_version = \
      ::strata::plugin::kPluginApiVersion;                                                 \
  }

namespace strata::plugin {}  // namespace strata::plugin
