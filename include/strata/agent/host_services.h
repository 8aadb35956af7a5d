// The agent's host services without any transport: discovery through the hypervisor plug-in,
// the storage resolver and the storage plug-ins, the change log, identity and health. The gRPC
// services (src/agent/rpc) are thin adapters over this class.
//
// Hypervisor connection: opened lazily on first use, dropped after a failure that is not the
// caller's fault (anything but NotFound / InvalidArgument) or after the plug-in reported the
// connection closed, and re-opened on the next call (the event manager retries with back-off).
// With an event sink subscribed, every newly opened connection is subscribed too.
//
// Threading: every method may be called from any thread. Discoveries (and health probes, which
// use the hypervisor) are serialised by one mutex: a Hypervisor and the resolver are used by one
// thread at a time. Ownership: borrows the PluginHost, which must outlive this object.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "strata/agent/change_log.h"
#include "strata/agent/config.h"
#include "strata/agent/host_view.h"
#include "strata/agent/plugin_host.h"
#include "strata/core/graph.h"
#include "strata/core/query.h"
#include "strata/storage/resolver.h"

namespace strata::agent {

// The agent's version (the project's).
std::string AgentVersion();

struct DiscoverParams {
  std::vector<std::string> vms;  // names or UUIDs; empty = the whole host
  // Filters as in `strata find`. With none of them set the whole graph is returned (host node
  // included); otherwise `select` (default "type=vm") and a downward (or upward) traversal.
  std::string select;
  std::string to_type;
  bool upward = false;
  int max_depth = 0;                 // 0 = unlimited
  std::string source = "discovery";  // change-log source of this discovery
};

struct VmSummary {
  std::string uuid;
  std::string name;
  std::string state;
  bool persistent = false;
};

struct DiscoverResult {
  core::Graph graph;        // the whole discovered graph
  core::Subgraph selected;  // what the filters kept
  std::vector<VmSummary> vms;
  uint64_t version = 0;
  std::vector<VmChange> changes;  // change-log entries this discovery produced
};

// The filters of `params` (select, to_type, upward, max_depth) applied to a graph: the whole
// graph when none is set. Used for a host's and for a cluster's graph.
absl::StatusOr<core::Subgraph> ApplyDiscoverFilters(const core::Graph& graph,
                                                    const DiscoverParams& params);

class HostServices : public HostView {
 public:
  // `system`: where the resolver reads /proc, /sys, /dev (default: the live machine).
  HostServices(const PluginHost& plugins, AgentConfig config, storage::SystemView system = {});
  ~HostServices() override;
  HostServices(const HostServices&) = delete;
  HostServices& operator=(const HostServices&) = delete;

  // Discovers (scope: params.vms), feeds the change log when the scope is the whole host, and
  // applies the filters. Errors: the hypervisor's (e.g. NotFound "VM 'x' not found on hypervisor
  // 'URI'"), InvalidArgument for bad filters, NotFound when no hypervisor plug-in of the
  // configured name is loaded.
  absl::StatusOr<DiscoverResult> Discover(const DiscoverParams& params);

  // HostView (for the event manager). ObserveAll/ObserveVms do not feed the change log.
  absl::StatusOr<std::vector<VmObservation>> ObserveAll() override;
  absl::StatusOr<std::vector<VmObservation>> ObserveVms(
      const std::vector<std::string>& uuids) override;
  // Unimplemented "hypervisor plug-in 'NAME' does not deliver events"; Unavailable when the
  // hypervisor cannot be reached now (the sink stays, and is subscribed once it can).
  absl::Status SubscribeEvents(hypervisor::EventSink sink) override;

  // "ok", or the whole message of why the hypervisor cannot be reached.
  std::string HypervisorStatus();

  // ---- for backup and restore (host_services_storage.cc)

  // Runs `fn` with the hypervisor (opened when needed), serialised with discoveries: keep each
  // call short (one hypervisor operation). A failure that is not the caller's fault drops the
  // connection, as for discoveries.
  absl::Status WithHypervisor(const std::function<absl::Status(hypervisor::Hypervisor&)>& fn);
  // The storage volume holding each file and the plug-in managing it; nullopt for a file no
  // configured volume holds (or that does not exist). The innermost volume wins when nested.
  struct FileVolume {
    plugin::StoragePlugin* plugin = nullptr;  // owned by this object
    plugin::VolumeClaim volume;
    plugin::FileLocation location;
  };
  std::vector<std::optional<FileVolume>> ClaimFiles(const std::vector<std::string>& paths);
  // The plug-in managing a volume (by node id), with the volume's claim. NotFound when no
  // configured volume has that id on this host.
  absl::StatusOr<FileVolume> FindVolume(const std::string& volume_id);

  const AgentConfig& config() const { return config_; }
  const PluginHost& plugins() const { return plugins_; }
  // Plug-in load errors plus storage plug-in set-up errors, whole messages.
  std::vector<std::string> PluginErrors() const;
  ChangeLog& change_log() { return change_log_; }
  int64_t started_at_unix_ms() const { return started_at_unix_ms_; }
  uint64_t version() const { return version_.load(); }

  // The endpoint the gRPC services listen on (set once serving).
  void set_endpoint(std::string endpoint);
  std::string endpoint() const;

 private:
  absl::Status EnsureHypervisorLocked();
  void DropHypervisorIfBrokenLocked(const absl::Status& status);

  const PluginHost& plugins_;
  const AgentConfig config_;
  const int64_t started_at_unix_ms_;
  ChangeLog change_log_;
  std::vector<std::string> setup_errors_;
  std::vector<std::unique_ptr<plugin::StoragePlugin>> storage_;  // before the resolver
  std::mutex mutex_;  // guards hypervisor_ and resolver_, serialises discoveries
  std::unique_ptr<hypervisor::Hypervisor> hypervisor_;
  std::unique_ptr<storage::StorageResolver> resolver_;
  hypervisor::EventSink event_sink_;  // guarded by mutex_; wraps the subscriber's
  bool subscribed_once_ = false;      // guarded by mutex_
  absl::Status subscribe_status_;     // guarded by mutex_; of the last subscription attempt
  std::shared_ptr<std::atomic<bool>> connection_closed_ =
      std::make_shared<std::atomic<bool>>(false);
  std::atomic<uint64_t> version_{0};
  mutable std::mutex endpoint_mutex_;
  std::string endpoint_;
};

}  // namespace strata::agent
