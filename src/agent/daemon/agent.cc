#include "strata/agent/agent.h"

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "cluster/coordinator.h"
#include "cluster/registry_membership.h"
#include "strata/agent/agent_server.h"
#include "strata/agent/event_manager.h"

namespace strata::agent {

struct Agent::Impl {
  PluginHost plugins;
  std::unique_ptr<HostServices> services;
  std::unique_ptr<ClusterCoordinator> cluster;  // config.cluster and a membership set
  std::unique_ptr<AgentServer> server;
  std::unique_ptr<RegistrationClient> registration;
  std::unique_ptr<EventManager> events;  // event_window_ms > 0
  std::thread reconciler;                // event_window_ms == 0: discoveries only
  std::mutex mutex;
  std::condition_variable stop_cv;
  bool stopping = false;
  std::once_flag stop_once;

  void Reconcile(std::chrono::milliseconds interval) {
    // The first pass runs at once, so the change log (and stratad) learn every VM at start.
    std::unique_lock lock(mutex);
    while (!stopping) {
      lock.unlock();
      DiscoverParams params;
      params.source = "reconcile";
      absl::StatusOr<DiscoverResult> result = services->Discover(params);
      if (!result.ok()) {
        spdlog::warn("reconciliation discovery failed: {}", std::string(result.status().message()));
      } else if (!result->changes.empty()) {
        spdlog::info("reconciliation: {} change(s), last sequence {}", result->changes.size(),
                     result->changes.back().sequence);
      }
      lock.lock();
      stop_cv.wait_for(lock, interval, [&] { return stopping; });
    }
  }
};

Agent::Agent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Agent::~Agent() { Stop(); }

absl::StatusOr<std::unique_ptr<Agent>> Agent::Start(AgentOptions options) {
  auto impl = std::make_unique<Impl>();
  AgentConfig& config = options.config;
  if (config.plugin_dir.empty()) config.plugin_dir = PluginHost::DefaultPluginDirectory();
  absl::StatusOr<int> loaded = impl->plugins.LoadDirectory(config.plugin_dir);
  if (loaded.ok()) {
    spdlog::info("loaded {} plug-in(s) from {}", *loaded, config.plugin_dir);
  }
  for (const std::string& error : impl->plugins.errors()) spdlog::error("{}", error);
  for (const LoadedPlugin& p : impl->plugins.plugins()) {
    spdlog::info("plug-in {} '{}' {} from {}", plugin::PluginKindName(p.descriptor.kind),
                 p.descriptor.name, p.descriptor.version, p.file);
  }
  impl->services = std::make_unique<HostServices>(impl->plugins, config, std::move(options.system));
  const bool pacemaker = config.cluster_membership == "pacemaker";
  const bool registry = config.cluster_membership == "registry";
  if (!config.cluster.empty() && (pacemaker || registry || !config.cluster_members.empty())) {
    ClusterCoordinatorOptions cluster;
    cluster.cluster = config.cluster;
    cluster.self_host_id = config.host_id;
    cluster.interval = std::chrono::milliseconds(config.cluster_interval_ms);
    cluster.health_timeout = std::chrono::milliseconds(config.cluster_timeout_ms);
    std::unique_ptr<ClusterMembership> membership;
    if (pacemaker) {
      membership = std::make_unique<PacemakerMembership>(
          PacemakerMembership::DefaultCommand(), static_cast<int>(config.cluster_agent_port),
          config.cluster_members);
    } else if (registry) {
      RegistryMembershipOptions options;
      options.server = config.server;
      options.cluster = config.cluster;
      options.self_host_id = config.host_id;
      // The endpoint this agent registers with, once serving (listen may have port 0).
      options.self_endpoint = [services = impl->services.get(), listen = config.listen] {
        std::string endpoint = services->endpoint();
        return endpoint.empty() ? listen : endpoint;
      };
      options.timeout = std::chrono::milliseconds(config.cluster_timeout_ms);
      membership = MakeRegistryMembership(std::move(options));
    } else {
      membership = std::make_unique<StaticMembership>(config.cluster_members);
    }
    spdlog::info("cluster '{}': {} membership", config.cluster, membership->name());
    impl->cluster = std::make_unique<ClusterCoordinator>(std::move(membership),
                                                         impl->services->change_log(), cluster);
  }
  absl::StatusOr<std::unique_ptr<AgentServer>> server =
      AgentServer::Start(*impl->services, config.listen, impl->cluster.get());
  if (!server.ok()) return server.status();
  impl->server = *std::move(server);
  spdlog::info("serving gRPC on {} as host '{}'", impl->server->endpoint(), config.host_id);
  if (impl->cluster) {
    impl->cluster->Start();
    spdlog::info("cluster '{}': members checked every {} ms", config.cluster,
                 config.cluster_interval_ms);
  }
  auto interval =
      std::chrono::milliseconds(static_cast<int64_t>(config.reconcile_interval_s * 1000));
  if (config.reconcile_interval_s > 0 && interval.count() < 1) {
    interval = std::chrono::milliseconds(1);
  }
  if (config.event_window_ms > 0) {
    EventManagerOptions events;
    events.window = std::chrono::milliseconds(config.event_window_ms);
    // reconcile_interval 0: no periodic and no start-up reconciliation (as before); a lost
    // connection still reconciles.
    events.reconcile_interval = interval;
    events.initial_reconcile = interval.count() > 0;
    impl->events =
        std::make_unique<EventManager>(*impl->services, impl->services->change_log(), events);
    if (impl->cluster) {
      impl->cluster->SetEventSink([manager = impl->events.get()](const std::string& event) {
        manager->OnClusterEvent(event);
      });
    }
    impl->events->Start();
    EventManagerStats stats = impl->events->stats();
    if (stats.events_status == "ok") {
      spdlog::info("hypervisor events: subscribed, window {} ms", config.event_window_ms);
    } else {
      spdlog::warn("hypervisor events: {}; relying on reconciliation every {} s",
                   stats.events_status, config.reconcile_interval_s);
    }
  } else if (interval.count() > 0) {
    Impl* raw = impl.get();
    impl->reconciler = std::thread([raw, interval] { raw->Reconcile(interval); });
  }
  if (!config.server.empty()) {
    RegistrationOptions registration = options.registration;
    registration.server = config.server;
    impl->registration = std::make_unique<RegistrationClient>(*impl->services, registration);
    impl->registration->Start();
  } else {
    spdlog::info("standalone: no stratad configured");
  }
  return std::unique_ptr<Agent>(new Agent(std::move(impl)));
}

std::string Agent::endpoint() const { return impl_->server->endpoint(); }
int Agent::port() const { return impl_->server->port(); }
HostServices& Agent::services() { return *impl_->services; }
const PluginHost& Agent::plugins() const { return impl_->plugins; }
const RegistrationClient* Agent::registration() const { return impl_->registration.get(); }
const EventManager* Agent::events() const { return impl_->events.get(); }

void Agent::Stop() {
  std::call_once(impl_->stop_once, [this] {
    if (impl_->registration) impl_->registration->Stop();
    {
      std::lock_guard lock(impl_->mutex);
      impl_->stopping = true;
    }
    impl_->stop_cv.notify_all();
    if (impl_->reconciler.joinable()) impl_->reconciler.join();
    if (impl_->events) impl_->events->Stop();
    if (impl_->cluster) impl_->cluster->Stop();
    impl_->server->Shutdown();
    impl_->services->change_log().Close();
  });
}

}  // namespace strata::agent
