#include "strata/server/stratad.h"

#include <grpcpp/grpcpp.h>

#include "registry_service.h"
#include "spdlog/spdlog.h"
#include "strata/server/catalog.h"
#include "strata/server/event_log.h"
#include "strata/server/graph_store.h"
#include "strata/server/host_monitor.h"
#include "strata/server/metrics.h"
#include "strata/util/strings.h"

namespace strata::server {

absl::Status ParseListenAddress(const std::string& text, std::string* host, int* port) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(
        util::Cat("bad listen address '", text, "': expected host:port (port 0: any free port)"));
  }
  std::string h = text.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  uint64_t p = 0;
  if (!util::ParseUint(std::string_view(text).substr(colon + 1), p) || p > 65535) {
    return absl::InvalidArgumentError(
        util::Cat("bad listen address '", text, "': the port must be a number from 0 to 65535"));
  }
  *host = h;
  *port = static_cast<int>(p);
  return absl::OkStatus();
}

namespace {

std::string JoinAddress(const std::string& host, int port) {
  if (host.find(':') != std::string::npos) return util::Cat("[", host, "]:", port);
  return util::Cat(host, ":", port);
}

}  // namespace

struct Stratad::Impl {
  StratadOptions options;
  std::unique_ptr<Catalog> catalog;
  std::unique_ptr<EventLog> events;
  GraphStore graphs;
  std::unique_ptr<AgentConnector> own_agents;
  std::unique_ptr<HostRegistry> registry;
  std::unique_ptr<HostMonitor> monitor;
  HttpMetrics metrics;
  std::unique_ptr<RegistryService> service;
  std::unique_ptr<grpc::Server> grpc_server;
  std::unique_ptr<JobManager> jobs;  // before rest: the API calls it
  std::unique_ptr<RestApi> rest;
  std::string grpc_address;
  std::string http_address;
  bool started = false;
};

Stratad::Stratad(StratadOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  if (impl_->options.heartbeat_timeout.count() <= 0) {
    impl_->options.heartbeat_timeout = 3 * impl_->options.heartbeat_interval;
  }
}

Stratad::~Stratad() { Stop(); }

absl::Status Stratad::Start() {
  Impl& s = *impl_;
  const StratadOptions& o = s.options;
  std::string grpc_host, http_host;
  int grpc_port = 0, http_port = 0;
  if (absl::Status st = ParseListenAddress(o.grpc_listen, &grpc_host, &grpc_port); !st.ok()) {
    return st;
  }
  if (absl::Status st = ParseListenAddress(o.http_listen, &http_host, &http_port); !st.ok()) {
    return st;
  }

  absl::StatusOr<std::unique_ptr<Catalog>> catalog = OpenSqliteCatalog(o.db_path);
  if (!catalog.ok()) {
    return absl::Status(catalog.status().code(),
                        util::Cat("catalog '", o.db_path, "': ", catalog.status().message()));
  }
  s.catalog = *std::move(catalog);
  s.events = std::make_unique<EventLog>(*s.catalog);
  for (const absl::Status& error : s.graphs.LoadFromCatalog(*s.catalog)) {
    spdlog::warn("rebuilding the merged graph: {}", util::ToStd(error.message()));
  }
  const GraphStats stats = s.graphs.Stats();
  spdlog::info("catalog {}: merged graph of {} hosts, {} nodes, {} edges", o.db_path, stats.hosts,
               stats.nodes, stats.edges);

  AgentConnector* agents = o.agents;
  if (agents == nullptr) {
    s.own_agents = MakeGrpcAgentConnector(GrpcAgentConnectorOptions{o.agent_deadline});
    agents = s.own_agents.get();
  }
  RegistryOptions ropts;
  ropts.heartbeat_interval = o.heartbeat_interval;
  ropts.heartbeat_timeout = o.heartbeat_timeout;
  ropts.refresh_workers = o.refresh_workers;
  ropts.clock = o.clock;
  s.registry = std::make_unique<HostRegistry>(*s.catalog, s.graphs, *s.events, *agents, ropts);
  if (absl::Status st = s.registry->Load(); !st.ok()) return st;
  s.registry->Start();

  s.service = std::make_unique<RegistryService>(*s.registry);
  grpc::ServerBuilder builder;
  int bound_grpc = 0;
  // Without this gRPC sets SO_REUSEPORT, and a second stratad on a taken port would "succeed"
  // and share the agents' connections with the first.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(JoinAddress(grpc_host, grpc_port), grpc::InsecureServerCredentials(),
                           &bound_grpc);
  builder.RegisterService(s.service.get());
  s.grpc_server = builder.BuildAndStart();
  if (!s.grpc_server || bound_grpc == 0) {
    s.registry->Stop();
    return absl::UnavailableError(util::Cat("gRPC: cannot listen on ", o.grpc_listen));
  }
  s.grpc_address = JoinAddress(grpc_host, bound_grpc);

  RestOptions rest_options;
  rest_options.host = http_host;
  rest_options.port = http_port;
  rest_options.threads = o.http_threads;
  rest_options.max_event_streams = o.max_event_streams;
  rest_options.stream_keepalive = o.stream_keepalive;
  rest_options.web_root = o.web_root;
  s.jobs = std::make_unique<JobManager>(*s.catalog, *s.registry, s.graphs, *agents);
  s.rest = std::make_unique<RestApi>(*s.catalog, s.graphs, *s.registry, *s.events, s.metrics,
                                     rest_options);
  s.rest->SetJobManager(s.jobs.get());
  absl::StatusOr<int> bound_http = s.rest->Start();
  if (!bound_http.ok()) {
    s.grpc_server->Shutdown();
    s.registry->Stop();
    return bound_http.status();
  }
  s.http_address = JoinAddress(http_host, *bound_http);

  // Check a few times per timeout so a host is marked within ~1.25 timeouts.
  auto period =
      std::max<std::chrono::milliseconds>(std::chrono::milliseconds(10), o.heartbeat_timeout / 4);
  s.monitor = std::make_unique<HostMonitor>(*s.registry, period);
  s.monitor->Start();
  s.started = true;
  return absl::OkStatus();
}

void Stratad::Stop() {
  Impl& s = *impl_;
  if (!s.started) return;
  s.started = false;
  s.monitor->Stop();
  s.events->Shutdown();  // ends event streams
  s.rest->Stop();
  s.jobs->Stop();  // running jobs finish and store their outcome
  s.grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  s.grpc_server->Wait();
  s.registry->Stop();
}

std::string Stratad::grpc_address() const { return impl_->grpc_address; }
std::string Stratad::http_address() const { return impl_->http_address; }
HostRegistry& Stratad::registry() { return *impl_->registry; }
GraphStore& Stratad::graphs() { return impl_->graphs; }
Catalog& Stratad::catalog() { return *impl_->catalog; }
EventLog& Stratad::events() { return *impl_->events; }

}  // namespace strata::server
