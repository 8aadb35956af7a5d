#include "strata/server/metrics.h"

#include <cstdio>

#include "strata/util/strings.h"

namespace strata::server {
namespace {

// Prometheus label values escape backslash, double quote and newline.
std::string Label(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void Metric(std::string& out, const char* name, const char* type, const char* help) {
  util::Append(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

}  // namespace

void HttpMetrics::Record(const std::string& method, const std::string& route, int code,
                         double seconds) {
  std::lock_guard lock(mu_);
  Cell& cell = requests_[{route, method, code}];
  ++cell.count;
  cell.seconds += seconds;
}

void HttpMetrics::StreamOpened() {
  std::lock_guard lock(mu_);
  ++open_streams_;
  ++streams_total_;
}

void HttpMetrics::StreamClosed() {
  std::lock_guard lock(mu_);
  --open_streams_;
}

int64_t HttpMetrics::open_streams() const {
  std::lock_guard lock(mu_);
  return open_streams_;
}

std::string HttpMetrics::Render(const GraphStats& graph, const RegistryCounters& registry) const {
  std::string out;
  {
    std::lock_guard lock(mu_);
    Metric(out, "strata_http_requests_total", "counter",
           "HTTP requests by route, method and code.");
    for (const auto& [key, cell] : requests_) {
      const auto& [route, method, code] = key;
      util::Append(out, "strata_http_requests_total{route=\"", Label(route), "\",method=\"",
                   Label(method), "\",code=\"", code, "\"} ", cell.count, "\n");
    }
    Metric(out, "strata_http_request_seconds_total", "counter",
           "Time spent answering HTTP requests, by route.");
    absl::btree_map<std::string, double> by_route;
    for (const auto& [key, cell] : requests_) by_route[std::get<0>(key)] += cell.seconds;
    for (const auto& [route, seconds] : by_route) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), "%.6f", seconds);
      util::Append(out, "strata_http_request_seconds_total{route=\"", Label(route), "\"} ", buf,
                   "\n");
    }
    Metric(out, "strata_event_streams", "gauge", "Open server-sent event streams.");
    util::Append(out, "strata_event_streams ", open_streams_, "\n");
    Metric(out, "strata_event_streams_total", "counter", "Event streams opened.");
    util::Append(out, "strata_event_streams_total ", streams_total_, "\n");
  }
  Metric(out, "strata_graph_nodes", "gauge", "Nodes in the merged resource graph.");
  util::Append(out, "strata_graph_nodes ", graph.nodes, "\n");
  Metric(out, "strata_graph_edges", "gauge", "Edges in the merged resource graph.");
  util::Append(out, "strata_graph_edges ", graph.edges, "\n");
  Metric(out, "strata_graph_hosts", "gauge", "Hosts contributing a graph.");
  util::Append(out, "strata_graph_hosts ", graph.hosts, "\n");
  Metric(out, "strata_graph_memory_bytes", "gauge", "Approximate heap bytes of the merged graph.");
  util::Append(out, "strata_graph_memory_bytes ", graph.memory_bytes, "\n");
  Metric(out, "strata_hosts", "gauge", "Hosts by state.");
  util::Append(out, "strata_hosts{state=\"reachable\"} ", registry.hosts_reachable, "\n");
  util::Append(out, "strata_hosts{state=\"unreachable\"} ", registry.hosts_unreachable, "\n");
  Metric(out, "strata_registrations_total", "counter", "Agent registrations.");
  util::Append(out, "strata_registrations_total ", registry.registrations, "\n");
  Metric(out, "strata_heartbeats_total", "counter", "Heartbeats from registered agents.");
  util::Append(out, "strata_heartbeats_total ", registry.heartbeats, "\n");
  Metric(out, "strata_heartbeats_unknown_total", "counter",
         "Heartbeats from agents not registered with this process (told to register).");
  util::Append(out, "strata_heartbeats_unknown_total ", registry.unknown_heartbeats, "\n");
  Metric(out, "strata_change_notifications_total", "counter", "Change sets received.");
  util::Append(out, "strata_change_notifications_total ", registry.notifications, "\n");
  Metric(out, "strata_change_sequence_gaps_total", "counter",
         "Change sets that showed a sequence gap (host resynchronised).");
  util::Append(out, "strata_change_sequence_gaps_total ", registry.sequence_gaps, "\n");
  Metric(out, "strata_refreshes_total", "counter", "Host graph refreshes by result.");
  util::Append(out, "strata_refreshes_total{result=\"ok\"} ", registry.refreshes_ok, "\n");
  util::Append(out, "strata_refreshes_total{result=\"error\"} ", registry.refreshes_failed, "\n");
  return out;
}

}  // namespace strata::server
