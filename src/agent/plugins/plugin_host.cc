#include "strata/agent/plugin_host.h"

#include <dlfcn.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "strata/util/strings.h"

namespace strata::agent {

struct PluginHost::Factories {
  std::map<std::string, plugin::HypervisorFactory> hypervisors;
  std::map<std::string, plugin::StorageFactory> storage;
};

// The Registry a plug-in sees during its init call; it stages registrations so that a plug-in
// whose init fails leaves nothing behind.
class PluginHost::Registrar final : public plugin::Registry {
 public:
  void RegisterHypervisor(plugin::PluginDescriptor descriptor,
                          plugin::HypervisorFactory factory) override {
    descriptor.kind = plugin::PluginKind::kHypervisor;
    hypervisors.emplace_back(std::move(descriptor), std::move(factory));
  }
  void RegisterStorage(plugin::PluginDescriptor descriptor,
                       plugin::StorageFactory factory) override {
    descriptor.kind = plugin::PluginKind::kStorage;
    storage.emplace_back(std::move(descriptor), std::move(factory));
  }
  void SetError(std::string message) override { error = std::move(message); }

  std::vector<std::pair<plugin::PluginDescriptor, plugin::HypervisorFactory>> hypervisors;
  std::vector<std::pair<plugin::PluginDescriptor, plugin::StorageFactory>> storage;
  std::string error;
};

PluginHost::PluginHost() : factories_(std::make_unique<Factories>()) {}

PluginHost::~PluginHost() {
  factories_.reset();  // the factories' code lives in the shared objects
  for (auto it = handles_.rbegin(); it != handles_.rend(); ++it) dlclose(*it);
}

absl::Status PluginHost::LoadFile(const std::string& path) {
  auto fail = [&](std::string message) {
    errors_.push_back(message);
    return absl::FailedPreconditionError(std::move(message));
  };
  std::error_code exists_error;
  if (!std::filesystem::exists(path, exists_error)) {
    return fail(util::Cat("plug-in '", path, "' not found"));
  }
  // A name without a slash would be searched on the library path instead.
  const std::string open_path = path.find('/') == std::string::npos ? "./" + path : path;
  // RTLD_NODELETE: see plugin.h (plug-ins are never unloaded).
  void* handle = dlopen(open_path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (handle == nullptr) {
    const char* error = dlerror();
    return fail(util::Cat("plug-in '", path,
                          "' cannot be loaded: ", error != nullptr ? error : "unknown error"));
  }
  auto init =
      reinterpret_cast<plugin::PluginInitFunction>(dlsym(handle, plugin::kPluginEntryPoint));
  if (init == nullptr) {
    dlclose(handle);
    return fail(
        util::Cat("plug-in '", path, "' has no entry point '", plugin::kPluginEntryPoint, "'"));
  }
  if (const auto* version =
          static_cast<const uint32_t*>(dlsym(handle, plugin::kPluginApiVersionSymbol));
      version != nullptr && *version != plugin::kPluginApiVersion) {
    const uint32_t built_for = *version;
    dlclose(handle);
    return fail(util::Cat("plug-in '", path, "' was built for plug-in API ", built_for,
                          ", this agent speaks ", plugin::kPluginApiVersion));
  }
  Registrar registrar;
  const int rc = init(plugin::kPluginApiVersion, &registrar);
  if (rc == plugin::kPluginApiMismatch) {
    dlclose(handle);
    return fail(util::Cat("plug-in '", path,
                          "' was built for another plug-in API, this agent speaks ",
                          plugin::kPluginApiVersion));
  }
  if (rc != 0) {
    dlclose(handle);
    return fail(util::Cat("plug-in '", path, "' failed to initialise: ",
                          registrar.error.empty() ? "no reason given" : registrar.error));
  }
  if (registrar.hypervisors.empty() && registrar.storage.empty()) {
    dlclose(handle);
    return fail(util::Cat("plug-in '", path, "' registered nothing"));
  }
  for (auto& [descriptor, factory] : registrar.hypervisors) {
    if (factories_->hypervisors.contains(descriptor.name)) {
      errors_.push_back(util::Cat("plug-in '", path, "': hypervisor plug-in '", descriptor.name,
                                  "' is already loaded; ignoring this one"));
      continue;
    }
    factories_->hypervisors.emplace(descriptor.name, std::move(factory));
    plugins_.push_back({std::move(descriptor), path});
  }
  for (auto& [descriptor, factory] : registrar.storage) {
    if (factories_->storage.contains(descriptor.name)) {
      errors_.push_back(util::Cat("plug-in '", path, "': storage plug-in '", descriptor.name,
                                  "' is already loaded; ignoring this one"));
      continue;
    }
    factories_->storage.emplace(descriptor.name, std::move(factory));
    plugins_.push_back({std::move(descriptor), path});
  }
  handles_.push_back(handle);
  return absl::OkStatus();
}

absl::StatusOr<int> PluginHost::LoadDirectory(const std::string& dir) {
  std::error_code error;
  std::vector<std::string> files;
  for (std::filesystem::directory_iterator it(dir, error), end; !error && it != end;
       it.increment(error)) {
    if (it->path().extension() == ".so") files.push_back(it->path().string());
  }
  if (error) {
    std::string message =
        util::Cat("plug-in directory '", dir, "' cannot be read: ", error.message());
    errors_.push_back(message);
    return absl::NotFoundError(std::move(message));
  }
  std::sort(files.begin(), files.end());
  int loaded = 0;
  for (const std::string& file : files) {
    if (LoadFile(file).ok()) ++loaded;
  }
  return loaded;
}

absl::StatusOr<std::unique_ptr<hypervisor::Hypervisor>> PluginHost::OpenHypervisor(
    const std::string& name, const std::string& uri) const {
  auto it = factories_->hypervisors.find(name);
  if (it == factories_->hypervisors.end()) {
    return absl::NotFoundError(util::Cat("no hypervisor plug-in '", name, "' is loaded"));
  }
  return it->second(uri);
}

absl::StatusOr<std::unique_ptr<plugin::StoragePlugin>> PluginHost::MakeStorage(
    const std::string& name, const plugin::StoragePluginConfig& config) const {
  auto it = factories_->storage.find(name);
  if (it == factories_->storage.end()) {
    return absl::NotFoundError(util::Cat("no storage plug-in '", name, "' is loaded"));
  }
  return it->second(config);
}

bool PluginHost::HasStorage(const std::string& name) const {
  return factories_->storage.contains(name);
}

std::string PluginHost::DefaultPluginDirectory() {
  std::error_code error;
  std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return "/usr/lib/strata/plugins";
  return (exe.parent_path() / ".." / "lib" / "strata" / "plugins").lexically_normal().string();
}

}  // namespace strata::agent
