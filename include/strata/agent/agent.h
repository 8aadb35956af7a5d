// strata-agent as a running daemon: loads the plug-ins, serves the gRPC host services, runs the
// event manager (hypervisor events coalesced per window, plus periodic reconciliation, feeding
// the change log; with event_window_ms = 0 only a periodic reconciliation discovery), and
// registers with stratad.
//
// Order of construction (and reverse order of destruction): PluginHost, HostServices,
// AgentServer, EventManager (or reconciliation thread), RegistrationClient.
//
// Threading: Start and Stop on the owner's thread; the rest runs on threads of its own.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "strata/agent/config.h"
#include "strata/agent/event_manager.h"
#include "strata/agent/host_services.h"
#include "strata/agent/plugin_host.h"
#include "strata/agent/registration.h"
#include "strata/storage/resolver.h"

namespace strata::agent {

struct AgentOptions {
  AgentConfig config;                // plugin_dir empty: PluginHost::DefaultPluginDirectory()
  storage::SystemView system;        // where the resolver reads /proc, /sys, /dev
  RegistrationOptions registration;  // `server` is taken from config.server
};

class Agent {
 public:
  // Fails only when the gRPC services cannot listen; plug-in problems are logged and listed in
  // GetAgentInfo's plugin_errors, and the agent runs with what loaded.
  static absl::StatusOr<std::unique_ptr<Agent>> Start(AgentOptions options);
  ~Agent();  // Stop()
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  std::string endpoint() const;
  int port() const;
  HostServices& services();
  const PluginHost& plugins() const;
  // nullptr when standalone (config.server empty).
  const RegistrationClient* registration() const;
  // nullptr when config.event_window_ms is 0.
  const EventManager* events() const;

  void Stop();  // idempotent

 private:
  struct Impl;
  explicit Agent(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::agent
