#include "strata/agent/host_services.h"

#include <chrono>

#include "strata/agent/discovery.h"
#include "strata/util/strings.h"

#ifndef STRATA_VERSION
#define STRATA_VERSION "0.0.0"
#endif

namespace strata::agent {
namespace {

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string AttrOr(const core::Graph& graph, core::NodeIndex node, std::string_view key) {
  std::optional<std::string_view> value = graph.Attr(node, key);
  return value ? std::string(*value) : std::string();
}

}  // namespace

absl::StatusOr<core::Subgraph> ApplyDiscoverFilters(const core::Graph& graph,
                                                    const DiscoverParams& p) {
  if (p.select.empty() && p.to_type.empty() && !p.upward && p.max_depth == 0) {
    return core::WholeGraph(graph);
  }
  core::Query query;
  absl::StatusOr<core::Selector> selector =
      core::ParseSelector(p.select.empty() ? "type=vm" : p.select);
  if (!selector.ok()) return selector.status();
  query.select = *std::move(selector);
  query.direction = p.upward ? core::Direction::kUp : core::Direction::kDown;
  if (!p.to_type.empty()) {
    absl::StatusOr<core::NodeType> type = core::ParseNodeType(p.to_type);
    if (!type.ok()) return type.status();
    query.to_type = *type;
  }
  if (p.max_depth < 0) {
    return absl::InvalidArgumentError(util::Cat("max_depth ", p.max_depth, " is negative"));
  }
  query.max_depth = p.max_depth == 0 ? -1 : p.max_depth;
  return core::RunQuery(graph, query);
}

namespace {

// One observation per VM node of a discovered graph (and its summary).
std::vector<VmObservation> Observations(const core::Graph& graph,
                                        std::vector<VmSummary>* summaries = nullptr) {
  std::vector<VmObservation> observed;
  for (core::NodeIndex node : graph.NodesOfType(core::NodeType::kVm)) {
    VmSummary vm{AttrOr(graph, node, "uuid"), std::string(graph.Name(node)),
                 AttrOr(graph, node, "state"), AttrOr(graph, node, "persistent") == "true"};
    std::string digest;
    if (auto config = graph.Find(util::Cat("vm_config:", vm.uuid))) {
      digest = AttrOr(graph, *config, "digest");
    }
    observed.push_back({vm.uuid, vm.name, vm.state, std::move(digest)});
    if (summaries != nullptr) summaries->push_back(std::move(vm));
  }
  return observed;
}

}  // namespace

std::string AgentVersion() { return STRATA_VERSION; }

HostServices::HostServices(const PluginHost& plugins, AgentConfig config,
                           storage::SystemView system)
    : plugins_(plugins), config_(std::move(config)), started_at_unix_ms_(NowUnixMs()) {
  bool dir_loaded = false;
  bool btrfs_loaded = false;
  for (const LoadedPlugin& loaded : plugins_.plugins()) {
    if (loaded.descriptor.kind != plugin::PluginKind::kStorage) continue;
    plugin::StoragePluginConfig storage_config;
    storage_config.host_id = config_.host_id;
    if (loaded.descriptor.name == "dir") {
      dir_loaded = true;
      storage_config.volumes = config_.dir_volumes;
    } else if (loaded.descriptor.name == "btrfs") {
      btrfs_loaded = true;
      storage_config.volumes = config_.btrfs_volumes;
    }
    absl::StatusOr<std::unique_ptr<plugin::StoragePlugin>> made =
        plugins_.MakeStorage(loaded.descriptor.name, storage_config);
    if (made.ok()) {
      storage_.push_back(*std::move(made));
    } else {
      setup_errors_.push_back(util::Cat("storage plug-in '", loaded.descriptor.name, "' ('",
                                        loaded.file, "'): ", made.status().message()));
    }
  }
  if (!dir_loaded && !config_.dir_volumes.empty()) {
    setup_errors_.push_back(
        "[[storage.dir]] volumes are configured but no 'dir' storage plug-in is loaded");
  }
  if (!btrfs_loaded && !config_.btrfs_volumes.empty()) {
    setup_errors_.push_back(
        "[[storage.btrfs]] volumes are configured but no 'btrfs' storage plug-in is loaded");
  }
  storage::ResolverOptions options;
  options.host_id = config_.host_id;
  options.system = std::move(system);
  for (const auto& storage : storage_) options.storage_plugins.push_back(storage.get());
  resolver_ = std::make_unique<storage::StorageResolver>(std::move(options));
}

HostServices::~HostServices() {
  change_log_.Close();
  std::lock_guard lock(mutex_);
  resolver_.reset();
  hypervisor_.reset();
}

std::vector<std::string> HostServices::PluginErrors() const {
  std::vector<std::string> errors = plugins_.errors();
  errors.insert(errors.end(), setup_errors_.begin(), setup_errors_.end());
  return errors;
}

absl::Status HostServices::EnsureHypervisorLocked() {
  if (hypervisor_ != nullptr && connection_closed_->exchange(false)) {
    hypervisor_.reset();  // the plug-in reported it closed: open a new one
  }
  if (hypervisor_ != nullptr) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<hypervisor::Hypervisor>> opened =
      plugins_.OpenHypervisor(config_.hypervisor, config_.connect);
  if (!opened.ok()) return opened.status();
  hypervisor_ = *std::move(opened);
  connection_closed_->store(false);
  if (event_sink_) {
    // A failure here does not fail the caller (discovery works without events); the event
    // manager learns it from SubscribeEvents and reconciles periodically instead.
    subscribe_status_ = hypervisor_->SubscribeEvents(event_sink_);
    if (!subscribe_status_.ok()) return absl::OkStatus();
    if (subscribed_once_) {
      // Events between the old connection's end and now are lost: ask for a reconciliation.
      hypervisor::HypervisorEvent reopened;
      reopened.kind = hypervisor::EventKind::kConnectionClosed;
      reopened.detail = "reopened";
      event_sink_(std::move(reopened));
    }
    subscribed_once_ = true;
  }
  return absl::OkStatus();
}

absl::Status HostServices::SubscribeEvents(hypervisor::EventSink sink) {
  std::lock_guard lock(mutex_);
  if (!sink) {
    // Replacing the plug-in's sink waits for a delivery in progress to finish.
    event_sink_ = nullptr;
    if (hypervisor_ != nullptr) (void)hypervisor_->SubscribeEvents(nullptr);
    return absl::OkStatus();
  }
  std::shared_ptr<std::atomic<bool>> closed = connection_closed_;
  event_sink_ = [closed, sink = std::move(sink)](hypervisor::HypervisorEvent event) {
    if (event.kind == hypervisor::EventKind::kConnectionClosed && event.detail != "reopened") {
      closed->store(true);  // never touch the hypervisor from the plug-in's thread
    }
    sink(std::move(event));
  };
  subscribed_once_ = false;
  subscribe_status_ = absl::OkStatus();
  absl::Status status;
  if (hypervisor_ != nullptr) {
    status = hypervisor_->SubscribeEvents(event_sink_);
    if (status.ok()) subscribed_once_ = true;
  } else {
    status = EnsureHypervisorLocked();  // subscribes a newly opened hypervisor
    if (status.ok()) status = subscribe_status_;
  }
  if (absl::IsUnimplemented(status)) {
    event_sink_ = nullptr;
    return absl::UnimplementedError(
        util::Cat("hypervisor plug-in '", config_.hypervisor, "' does not deliver events"));
  }
  return status;
}

absl::StatusOr<std::vector<VmObservation>> HostServices::ObserveAll() {
  std::lock_guard lock(mutex_);
  if (absl::Status status = EnsureHypervisorLocked(); !status.ok()) return status;
  absl::StatusOr<core::Graph> graph =
      DiscoverHost(*hypervisor_, *resolver_, DiscoveryRequest{config_.host_id, {}});
  if (!graph.ok()) {
    DropHypervisorIfBrokenLocked(graph.status());
    return graph.status();
  }
  return Observations(*graph);
}

absl::StatusOr<std::vector<VmObservation>> HostServices::ObserveVms(
    const std::vector<std::string>& uuids) {
  std::lock_guard lock(mutex_);
  if (absl::Status status = EnsureHypervisorLocked(); !status.ok()) return status;
  if (uuids.empty()) return std::vector<VmObservation>{};
  // All at once; when one of them is gone, one by one (leaving the missing ones out).
  absl::StatusOr<core::Graph> graph =
      DiscoverHost(*hypervisor_, *resolver_, DiscoveryRequest{config_.host_id, uuids});
  if (graph.ok()) return Observations(*graph);
  if (!absl::IsNotFound(graph.status())) {
    DropHypervisorIfBrokenLocked(graph.status());
    return graph.status();
  }
  std::vector<VmObservation> observed;
  for (const std::string& uuid : uuids) {
    graph = DiscoverHost(*hypervisor_, *resolver_, DiscoveryRequest{config_.host_id, {uuid}});
    if (absl::IsNotFound(graph.status())) continue;
    if (!graph.ok()) {
      DropHypervisorIfBrokenLocked(graph.status());
      return graph.status();
    }
    for (VmObservation& vm : Observations(*graph)) observed.push_back(std::move(vm));
  }
  return observed;
}

void HostServices::DropHypervisorIfBrokenLocked(const absl::Status& status) {
  if (status.ok() || absl::IsNotFound(status) || absl::IsInvalidArgument(status)) return;
  hypervisor_.reset();  // re-opened by the next call
}

absl::StatusOr<DiscoverResult> HostServices::Discover(const DiscoverParams& params) {
  std::lock_guard lock(mutex_);
  if (absl::Status status = EnsureHypervisorLocked(); !status.ok()) return status;
  absl::StatusOr<core::Graph> graph =
      DiscoverHost(*hypervisor_, *resolver_, DiscoveryRequest{config_.host_id, params.vms});
  if (!graph.ok()) {
    DropHypervisorIfBrokenLocked(graph.status());
    return graph.status();
  }
  DiscoverResult result;
  result.graph = *std::move(graph);
  result.version = ++version_;
  std::vector<VmObservation> observed = Observations(result.graph, &result.vms);
  if (params.vms.empty()) result.changes = change_log_.Observe(observed, params.source);
  absl::StatusOr<core::Subgraph> selected = ApplyDiscoverFilters(result.graph, params);
  if (!selected.ok()) return selected.status();
  result.selected = *std::move(selected);
  return result;
}

std::string HostServices::HypervisorStatus() {
  std::lock_guard lock(mutex_);
  absl::Status status = EnsureHypervisorLocked();
  if (status.ok()) status = hypervisor_->GetHostInfo().status();
  if (status.ok()) return "ok";
  hypervisor_.reset();
  return std::string(status.message());
}

void HostServices::set_endpoint(std::string endpoint) {
  std::lock_guard lock(endpoint_mutex_);
  endpoint_ = std::move(endpoint);
}

std::string HostServices::endpoint() const {
  std::lock_guard lock(endpoint_mutex_);
  return endpoint_;
}

}  // namespace strata::agent
