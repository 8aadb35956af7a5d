// Loads plug-ins (shared objects) and hands out what their factories make.
//
// Lifetime: PluginHost keeps every loaded shared object open until it is destroyed, so it must
// outlive every object made through it (the agent declares it first). A plug-in that fails to
// load is recorded with a whole message naming its file; the rest keep working.
//
// Threading: load on one thread at start-up; afterwards the const accessors and the factories
// may be called from any thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "strata/hypervisor/hypervisor.h"
#include "strata/plugin/plugin.h"
#include "strata/plugin/storage.h"

namespace strata::agent {

struct LoadedPlugin {
  plugin::PluginDescriptor descriptor;
  std::string file;
};

class PluginHost {
 public:
  PluginHost();
  ~PluginHost();
  PluginHost(const PluginHost&) = delete;
  PluginHost& operator=(const PluginHost&) = delete;

  // Loads one shared object. Errors (also recorded in errors()):
  //   "plug-in '/x/libfoo.so' not found"
  //   "plug-in '/x/libfoo.so' cannot be loaded: <dlerror>"
  //   "plug-in '/x/libfoo.so' has no entry point 'strata_plugin_init'"
  //   "plug-in '/x/libfoo.so' was built for plug-in API 7, this agent speaks 1"
  //   "plug-in '/x/libfoo.so' was built for another plug-in API, this agent speaks 1"
  //     (no api-version symbol, and its entry point answered kPluginApiMismatch)
  //   "plug-in '/x/libfoo.so' failed to initialise: <its message>"
  //   "plug-in '/x/libfoo.so' registered nothing"
  absl::Status LoadFile(const std::string& path);
  // Loads every *.so in `dir` (sorted by name). A missing directory is an error (also recorded:
  // "plug-in directory '/x' cannot be read: <reason>"); a bad plug-in inside it is recorded and
  // skipped. Returns the number loaded.
  absl::StatusOr<int> LoadDirectory(const std::string& dir);

  const std::vector<LoadedPlugin>& plugins() const { return plugins_; }
  const std::vector<std::string>& errors() const { return errors_; }

  // NotFound naming the plug-in when none of that kind and name is loaded.
  absl::StatusOr<std::unique_ptr<hypervisor::Hypervisor>> OpenHypervisor(
      const std::string& name, const std::string& uri) const;
  absl::StatusOr<std::unique_ptr<plugin::StoragePlugin>> MakeStorage(
      const std::string& name, const plugin::StoragePluginConfig& config) const;
  bool HasStorage(const std::string& name) const;

  // Where plug-ins live relative to the running binary: <exe dir>/../lib/strata/plugins.
  static std::string DefaultPluginDirectory();

 private:
  class Registrar;
  struct Factories;
  std::vector<void*> handles_;
  std::vector<LoadedPlugin> plugins_;
  std::vector<std::string> errors_;
  std::unique_ptr<Factories> factories_;
};

}  // namespace strata::agent
