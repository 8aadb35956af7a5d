#include "strata/server/rest_api.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"
#include "strata/core/query.h"
#include "strata/util/strings.h"
#include "time_format.h"

namespace strata::server {
namespace {

using nlohmann::json;
using Params = std::vector<std::string>;  // the {placeholders} of the route, in order

constexpr const char* kJson = "application/json";

std::string Msg(const absl::Status& s) { return std::string(util::ToStd(s.message())); }

// ---- errors: the one place where absl::Status becomes an HTTP status --------------------------

struct HttpError {
  int code;
  const char* status;
};

HttpError HttpErrorFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return {400, "INVALID_ARGUMENT"};
    case absl::StatusCode::kNotFound:
      return {404, "NOT_FOUND"};
    case absl::StatusCode::kAlreadyExists:
      return {409, "ALREADY_EXISTS"};
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAborted:
      return {409, "FAILED_PRECONDITION"};
    case absl::StatusCode::kUnimplemented:
      return {501, "UNIMPLEMENTED"};
    case absl::StatusCode::kUnavailable:
      return {503, "UNAVAILABLE"};
    case absl::StatusCode::kDeadlineExceeded:
      return {504, "DEADLINE_EXCEEDED"};
    case absl::StatusCode::kResourceExhausted:
      return {503, "UNAVAILABLE"};
    default:
      return {500, "INTERNAL"};
  }
}

void WriteError(httplib::Response& res, int code, const char* status, const std::string& message) {
  res.status = code;
  json body = {{"error", {{"code", code}, {"status", status}, {"message", message}}}};
  res.set_content(body.dump(), kJson);
}

void WriteError(httplib::Response& res, const absl::Status& status) {
  const HttpError e = HttpErrorFor(status.code());
  WriteError(res, e.code, e.status, Msg(status));
}

// Errors cpp-httplib produces itself (no handler ran), by HTTP code.
void WriteProtocolError(httplib::Response& res, size_t max_body) {
  switch (res.status) {
    case 413:
      WriteError(res, 413, "PAYLOAD_TOO_LARGE",
                 util::Cat("request body is larger than the limit of ", max_body, " bytes"));
      break;
    case 414:
      WriteError(res, 414, "URI_TOO_LONG", "request URI is too long");
      break;
    case 404:
      WriteError(res, 404, "NOT_FOUND", "not found");
      break;
    case 400:
      WriteError(res, 400, "INVALID_ARGUMENT", "malformed HTTP request");
      break;
    default:
      WriteError(res, res.status, res.status >= 500 ? "INTERNAL" : "INVALID_ARGUMENT",
                 util::Cat("HTTP error ", res.status));
  }
}

void WriteJson(httplib::Response& res, const json& body) {
  res.status = 200;
  res.set_content(body.dump(), kJson);
}

// ---- parameters ----------------------------------------------------------------------------

// What the pre-routing step found for the request being served on this thread.
// A JSON request body with typed, optional fields; errors name the field.
class Body {
 public:
  static absl::StatusOr<Body> Parse(const std::string& text) {
    json parsed = json::parse(text.empty() ? std::string("{}") : text, nullptr, false);
    if (parsed.is_discarded()) return absl::InvalidArgumentError("request body is not valid JSON");
    if (!parsed.is_object())
      return absl::InvalidArgumentError("request body must be a JSON object");
    return Body(std::move(parsed));
  }
  bool Has(const char* key) const { return json_.contains(key) && !json_[key].is_null(); }
  absl::Status String(const char* key, std::string& out) const {
    if (!Has(key)) return absl::OkStatus();
    if (!json_[key].is_string()) {
      return absl::InvalidArgumentError(util::Cat("field '", key, "' must be a string"));
    }
    out = json_[key].get<std::string>();
    return absl::OkStatus();
  }
  absl::Status Bool(const char* key, bool& out) const {
    if (!Has(key)) return absl::OkStatus();
    if (!json_[key].is_boolean()) {
      return absl::InvalidArgumentError(util::Cat("field '", key, "' must be true or false"));
    }
    out = json_[key].get<bool>();
    return absl::OkStatus();
  }
  absl::Status Int(const char* key, int& out) const {
    if (!Has(key)) return absl::OkStatus();
    if (!json_[key].is_number_integer() || json_[key].get<int64_t>() < 0 ||
        json_[key].get<int64_t>() > 1000000) {
      return absl::InvalidArgumentError(
          util::Cat("field '", key, "' must be a whole number from 0 to 1000000"));
    }
    out = json_[key].get<int>();
    return absl::OkStatus();
  }
  // A string or a list of strings.
  absl::Status Strings(const char* key, std::vector<std::string>& out) const {
    if (!Has(key)) return absl::OkStatus();
    const json& value = json_[key];
    if (value.is_string()) {
      out.push_back(value.get<std::string>());
      return absl::OkStatus();
    }
    if (!value.is_array()) {
      return absl::InvalidArgumentError(util::Cat("field '", key, "' must be a list of strings"));
    }
    for (const json& item : value) {
      if (!item.is_string()) {
        return absl::InvalidArgumentError(util::Cat("field '", key, "' must be a list of strings"));
      }
      out.push_back(item.get<std::string>());
    }
    return absl::OkStatus();
  }

 private:
  explicit Body(json j) : json_(std::move(j)) {}
  json json_;
};

struct Route;
struct RequestContext {
  const Route* route = nullptr;
  Params params;
  std::string route_name = "unmatched";
  std::string allowed;  // methods allowed on the path when the method did not match
  std::chrono::steady_clock::time_point start;
  // Query parameters, split at the FIRST '=' of each term and then URL-decoded, so that
  // `?select=type=vm` works as typed (cpp-httplib 0.11 splits at every '=').
  std::map<std::string, std::string> query;
};
thread_local RequestContext t_request;

std::map<std::string, std::string> ParseQuery(const std::string& target) {
  std::map<std::string, std::string> out;
  const size_t q = target.find('?');
  if (q == std::string::npos) return out;
  for (std::string_view term : util::Split(std::string_view(target).substr(q + 1), '&', true)) {
    const size_t eq = term.find('=');
    std::string key(term.substr(0, eq));
    std::string value(eq == std::string_view::npos ? std::string_view() : term.substr(eq + 1));
    key = httplib::detail::decode_url(key, true);
    value = httplib::detail::decode_url(value, true);
    out.emplace(std::move(key), std::move(value));  // the first occurrence wins
  }
  return out;
}

bool HasParam(const std::string& name) { return t_request.query.contains(name); }
std::string Param(const std::string& name) {
  auto it = t_request.query.find(name);
  return it == t_request.query.end() ? std::string() : it->second;
}

absl::StatusOr<int64_t> IntParam(const httplib::Request&, const std::string& name, int64_t fallback,
                                 int64_t min, int64_t max) {
  if (!HasParam(name)) return fallback;
  const std::string text = Param(name);
  uint64_t value = 0;
  if (!util::ParseUint(text, value) || value > static_cast<uint64_t>(max) ||
      static_cast<int64_t>(value) < min) {
    return absl::InvalidArgumentError(util::Cat("bad value '", text, "' for '", name,
                                                "': expected a whole number from ", min, " to ",
                                                max));
  }
  return static_cast<int64_t>(value);
}

std::optional<std::string> OptParam(const httplib::Request&, const std::string& name) {
  if (!HasParam(name)) return std::nullopt;
  std::string value = Param(name);
  if (value.empty()) return std::nullopt;
  return value;
}

// ---- JSON forms ----------------------------------------------------------------------------

json HostJson(const HostView& h) {
  json j = {{"id", h.record.id},
            {"cluster", h.record.cluster},
            {"endpoint", h.record.endpoint},
            {"state", ToString(h.record.state)},
            {"last_heartbeat", FormatTime(h.record.last_heartbeat)},
            {"registered_at", FormatTime(h.record.registered_at)},
            {"vm_count", h.vm_count},
            {"plugins", h.record.plugins},
            {"registered", h.registered},
            {"agent_version", h.agent_version},
            {"graph_version", h.graph_version},
            {"last_refresh", h.last_refresh ? FormatTime(*h.last_refresh) : ""}};
  if (!h.last_refresh_error.empty()) j["last_refresh_error"] = h.last_refresh_error;
  return j;
}

json EventJson(const EventRecord& e) {
  return {{"seq", e.seq},
          {"host", e.host},
          {"vm_uuid", e.vm_uuid},
          {"kind", ToString(e.kind)},
          {"time", FormatTime(e.time)},
          {"detail", e.detail}};
}

json ItemJson(const BackupItem& i) {
  return {{"vm_uuid", i.vm_uuid},
          {"vm_name", i.vm_name},
          {"disk_target", i.disk_target},
          {"source_path", i.source_path},
          {"storage_volume", i.storage_volume},
          {"snapshot_id", i.snapshot_id},
          {"path_in_snapshot", i.path_in_snapshot},
          {"size_bytes", i.size_bytes},
          {"checksum", i.checksum}};
}

json BackupJson(const BackupRecord& b, bool with_items) {
  json j = {{"id", b.id},
            {"name", b.name},
            {"requester", b.requester},
            {"consistency", ToString(b.consistency)},
            {"state", ToString(b.state)},
            {"started_at", FormatTime(b.started_at)},
            {"finished_at", b.finished_at ? FormatTime(*b.finished_at) : ""},
            {"policy", b.policy},
            {"metadata", b.metadata}};
  if (with_items) {
    json items = json::array();
    for (const BackupItem& i : b.items) items.push_back(ItemJson(i));
    j["items"] = std::move(items);
  }
  return j;
}

json PolicyJson(const RetentionPolicy& p) {
  return {{"name", p.name},
          {"keep_last", p.keep_last},
          {"keep_hourly", p.keep_hourly},
          {"keep_daily", p.keep_daily},
          {"keep_weekly", p.keep_weekly},
          {"keep_monthly", p.keep_monthly}};
}

json JobJson(const JobRecord& j) {
  return {{"id", j.id},
          {"kind", j.kind},
          {"state", ToString(j.state)},
          {"progress", j.progress},
          {"message", j.message},
          {"created_at", FormatTime(j.created_at)},
          {"updated_at", FormatTime(j.updated_at)},
          {"detail", j.detail}};
}

// A VM node of the graph as the VM listing shows it.
json VmJson(const core::Graph& g, core::NodeIndex n) {
  std::string uuid(g.Attr(n, "uuid").value_or(util::StripPrefix(g.Id(n), "vm:")));
  std::string host(g.Attr(n, "host").value_or(""));
  if (host.empty()) {
    for (const core::EdgeRef& e : g.InEdges(n)) {
      if (e.type == core::EdgeType::kRuns) host = util::StripPrefix(g.Id(e.node), "host:");
    }
  }
  return {{"uuid", uuid},
          {"name", g.Name(n)},
          {"host", host},
          {"state", g.Attr(n, "state").value_or("")}};
}

// ---- graph queries -------------------------------------------------------------------------

struct GraphRequest {
  core::Query query;
  bool tree = false;
};

absl::StatusOr<GraphRequest> BuildGraphRequest(const std::string& select,
                                               const std::string& direction, const std::string& to,
                                               int64_t depth, const std::string& format) {
  GraphRequest out;
  absl::StatusOr<core::Selector> selector =
      core::ParseSelector(select.empty() ? "type=vm" : select);
  if (!selector.ok()) {
    return absl::InvalidArgumentError(
        util::Cat("bad selector '", select, "': ", selector.status().message()));
  }
  out.query.select = *std::move(selector);
  if (direction.empty() || direction == "down") {
    out.query.direction = core::Direction::kDown;
  } else if (direction == "up") {
    out.query.direction = core::Direction::kUp;
  } else if (direction == "none") {
    out.query.direction = core::Direction::kNone;
  } else {
    return absl::InvalidArgumentError(
        util::Cat("bad direction '", direction, "': expected down, up or none"));
  }
  if (!to.empty()) {
    absl::StatusOr<core::NodeType> type = core::ParseNodeType(to);
    if (!type.ok()) return type.status();
    out.query.to_type = *type;
  }
  if (depth < 0) {
    return absl::InvalidArgumentError(
        util::Cat("bad depth ", depth, ": expected 0 (unlimited) or more"));
  }
  out.query.max_depth = depth == 0 ? -1 : static_cast<int>(depth);
  if (format == "tree") {
    out.tree = true;
  } else if (!format.empty() && format != "json") {
    return absl::InvalidArgumentError(
        util::Cat("bad format '", format, "': expected json or tree"));
  }
  return out;
}

// ---- routing -------------------------------------------------------------------------------

using Handler =
    std::function<absl::Status(const httplib::Request&, httplib::Response&, const Params&)>;

struct Route {
  std::string method;
  std::string pattern;  // "/api/v1/hosts/{id}"
  std::vector<std::string> segments;
  Handler handler;
};

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> parts;
  for (std::string_view p : util::Split(path, '/', /*skip_empty=*/true)) parts.emplace_back(p);
  return parts;
}

bool MatchRoute(const Route& route, const std::vector<std::string>& parts, Params* params) {
  if (route.segments.size() != parts.size()) return false;
  Params found;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& seg = route.segments[i];
    if (seg.size() > 2 && seg.front() == '{' && seg.back() == '}') {
      found.push_back(parts[i]);
    } else if (seg != parts[i]) {
      return false;
    }
  }
  if (params) *params = std::move(found);
  return true;
}

// ---- the web console's static files ----------------------------------------------------------

const char* ContentTypeFor(std::string_view path) {
  static const std::pair<std::string_view, const char*> kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".map", "application/json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".woff2", "font/woff2"},
      {".txt", "text/plain; charset=utf-8"},
  };
  for (const auto& [ext, type] : kTypes) {
    if (path.size() >= ext.size() && path.substr(path.size() - ext.size()) == ext) return type;
  }
  return "application/octet-stream";
}

// The file under `root` that the (already URL-decoded) request path names, or NotFound. "/" is
// index.html. Every segment must be a plain name: "..", ".", hidden names, backslashes and NUL
// are refused, and the resolved file (symlinks followed) must still lie under the root.
absl::StatusOr<std::filesystem::path> ConsoleFile(const std::string& root, std::string_view path) {
  const absl::Status not_found = absl::NotFoundError(util::Cat("no such path '", path, "'"));
  std::filesystem::path relative;
  for (std::string_view segment : util::Split(path, '/', /*skip_empty=*/true)) {
    if (segment.front() == '.' || segment.find('\\') != std::string_view::npos ||
        segment.find('\0') != std::string_view::npos) {
      return not_found;
    }
    relative /= std::string(segment);
  }
  if (relative.empty()) relative = "index.html";
  std::error_code ec;
  const std::filesystem::path base = std::filesystem::canonical(root, ec);
  if (ec) return absl::NotFoundError(util::Cat("web console directory '", root, "' not found"));
  const std::filesystem::path file = std::filesystem::canonical(base / relative, ec);
  if (ec || !std::filesystem::is_regular_file(file, ec)) return not_found;
  const std::string base_text = base.string() + "/";
  if (file.string().compare(0, base_text.size(), base_text) != 0) return not_found;
  return file;
}

absl::Status ServeConsoleFile(const std::string& root, const httplib::Request& req,
                              httplib::Response& res) {
  absl::StatusOr<std::filesystem::path> file = ConsoleFile(root, req.path);
  if (!file.ok()) return file.status();
  std::ifstream in(*file, std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) {
    return absl::InternalError(util::Cat("cannot read '", file->string(), "'"));
  }
  // Vite names the files under assets/ after their content: they never change.
  const bool hashed = util::StartsWith(req.path, "/assets/");
  res.set_header("Cache-Control", hashed ? "public, max-age=31536000, immutable" : "no-cache");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.status = 200;
  res.set_content(std::move(content), ContentTypeFor(file->string()));
  return absl::OkStatus();
}

}  // namespace

struct RestApi::Impl {
  Catalog& catalog;
  GraphStore& graphs;
  HostRegistry& registry;
  EventLog& events;
  HttpMetrics& metrics;
  RestOptions options;
  JobManager* jobs = nullptr;  // set before Start; nullptr: backup routes answer 503
  httplib::Server server;
  std::vector<Route> routes;
  std::thread thread;
  int port = 0;
  std::atomic<bool> stopping{false};

  Impl(Catalog& c, GraphStore& g, HostRegistry& r, EventLog& e, HttpMetrics& m, RestOptions o)
      : catalog(c), graphs(g), registry(r), events(e), metrics(m), options(std::move(o)) {
    if (options.threads < 2) options.threads = 2;
    if (options.max_event_streams < 0)
      options.max_event_streams = std::max(1, options.threads - 64);
    AddRoutes();
    AddConsoleRoutes();
  }

  void Add(std::string method, std::string pattern, Handler handler) {
    Route route{std::move(method), pattern, SplitPath(pattern), std::move(handler)};
    routes.push_back(std::move(route));
  }

  // Finds the route of a request; records the allowed methods when only the method is wrong.
  void Resolve(const httplib::Request& req) {
    t_request = RequestContext{};
    t_request.start = std::chrono::steady_clock::now();
    t_request.query = ParseQuery(req.target);
    const std::vector<std::string> parts = SplitPath(req.path);
    const std::string method = req.method == "HEAD" ? "GET" : req.method;
    std::vector<std::string> allowed;
    for (const Route& route : routes) {
      Params params;
      if (!MatchRoute(route, parts, &params)) continue;
      if (route.method == method) {
        t_request.route = &route;
        t_request.params = std::move(params);
        t_request.route_name = route.pattern;
        return;
      }
      allowed.push_back(route.method);
      t_request.route_name = route.pattern;
    }
    t_request.allowed = util::Join(allowed, ", ");
  }

  void Dispatch(const httplib::Request& req, httplib::Response& res) {
    if (t_request.route == nullptr) {
      if (!t_request.allowed.empty()) {
        res.set_header("Allow", t_request.allowed);
        WriteError(res, 405, "METHOD_NOT_ALLOWED",
                   util::Cat("method ", req.method, " is not allowed on '", req.path,
                             "' (allowed: ", t_request.allowed, ")"));
      } else if (ServesConsole(req)) {
        t_request.route_name = "console";
        if (absl::Status s = ServeConsoleFile(options.web_root, req, res); !s.ok()) {
          WriteError(res, s);
        }
      } else {
        WriteError(res, 404, "NOT_FOUND", util::Cat("no such path '", req.path, "'"));
      }
      return;
    }
    absl::Status status;
    try {
      status = t_request.route->handler(req, res, t_request.params);
    } catch (const std::exception& e) {
      status = absl::InternalError(util::Cat("internal error: ", e.what()));
    }
    if (!status.ok()) WriteError(res, status);
  }

  absl::StatusOr<int> Start() {
    const int threads = options.threads;
    server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    server.set_tcp_nodelay(true);
    server.set_keep_alive_max_count(options.keep_alive_max_count);
    server.set_keep_alive_timeout(options.keep_alive_timeout_sec);
    server.set_payload_max_length(options.max_body_bytes);
    server.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response&) {
      Resolve(req);
      return httplib::Server::HandlerResponse::Unhandled;
    });
    auto dispatch = [this](const httplib::Request& req, httplib::Response& res) {
      Dispatch(req, res);
    };
    server.Get(".*", dispatch);
    server.Post(".*", dispatch);
    server.Put(".*", dispatch);
    server.Patch(".*", dispatch);
    server.Delete(".*", dispatch);
    server.Options(".*", dispatch);
    server.set_error_handler(httplib::Server::HandlerWithResponse(
        [this](const httplib::Request&, httplib::Response& res) {
          if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // ours
          WriteProtocolError(res, options.max_body_bytes);
          return httplib::Server::HandlerResponse::Handled;
        }));
    server.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t_request.start).count();
      metrics.Record(req.method, t_request.route_name, res.status, seconds);
    });
    // httplib's default sets SO_REUSEPORT, with which a second server on a taken port would
    // bind too and take half the requests; SO_REUSEADDR alone still allows a quick restart.
    server.set_socket_options([](int sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    if (options.port == 0) {
      port = server.bind_to_any_port(options.host);
      if (port <= 0) {
        return absl::UnavailableError(util::Cat("HTTP: cannot listen on ", options.host, ":0"));
      }
    } else {
      if (!server.bind_to_port(options.host, options.port)) {
        return absl::UnavailableError(
            util::Cat("HTTP: cannot listen on ", options.host, ":", options.port));
      }
      port = options.port;
    }
    thread = std::thread([this] { server.listen_after_bind(); });
    return port;
  }

  void Stop() {
    stopping = true;
    if (jobs != nullptr) jobs->WakeWaiters();  // job streams see `stopping` now
    if (thread.joinable()) {
      server.stop();
      thread.join();
    }
  }

  // ---- handlers ----------------------------------------------------------------------------

  void AddRoutes();
  // Server-sent events, one stream per request (the thread stays with it): OpenStream is what
  // every stream route shares — the cap on open streams, the headers, the greeting (a comment
  // and the reconnection delay), keep-alive comments when idle, the end when the server stops.
  // `next` appends what is new to `out` (SseEvent), waiting at most `poll` when nothing is, and
  // returns false when the stream is over (once `out` is sent).
  using StreamNext = std::function<bool(std::string& out, std::chrono::milliseconds poll)>;
  absl::Status OpenStream(httplib::Response& res, const char* greeting, StreamNext next);
  absl::Status StreamEvents(const httplib::Request& req, httplib::Response& res);
  absl::Status StreamJob(const std::string& id, httplib::Response& res);

  // ---- what the web console needs (docs/api.md "Web console") -------------------------------

  // GET and HEAD outside /api/ go to the console's files when there is a web root.
  bool ServesConsole(const httplib::Request& req) const {
    return !options.web_root.empty() && (req.method == "GET" || req.method == "HEAD") &&
           !util::StartsWith(req.path, "/api/");
  }
  // GET /api/v1/graph/children: one level of the tree at a time.
  void AddConsoleRoutes();
  // The filters of GET /api/v1/vms beyond host/name/state: cluster, depends_on,
  // no_backup_since_hours. Removes the VMs (VmJson entries) that do not pass.
  absl::Status ApplyVmFilters(const httplib::Request& req, json& vms);
};

void RestApi::Impl::AddRoutes() {
  Add("GET", "/healthz", [this](const httplib::Request&, httplib::Response& res, const Params&) {
    RegistryCounters c = registry.counters();
    WriteJson(res, {{"status", "ok"},
                    {"hosts", c.hosts_reachable + c.hosts_unreachable},
                    {"reachable", c.hosts_reachable}});
    return absl::OkStatus();
  });
  Add("GET", "/metrics", [this](const httplib::Request&, httplib::Response& res, const Params&) {
    res.set_content(metrics.Render(graphs.Stats(), registry.counters()),
                    "text/plain; version=0.0.4");
    return absl::OkStatus();
  });

  // ---- inventory
  Add("GET", "/api/v1/hosts",
      [this](const httplib::Request&, httplib::Response& res, const Params&) {
        json hosts = json::array();
        for (const HostView& h : registry.ListHosts()) hosts.push_back(HostJson(h));
        WriteJson(res, {{"hosts", std::move(hosts)}});
        return absl::OkStatus();
      });
  Add("GET", "/api/v1/hosts/{id}",
      [this](const httplib::Request&, httplib::Response& res, const Params& p) {
        absl::StatusOr<HostView> host = registry.GetHost(p[0]);
        if (!host.ok()) return host.status();
        WriteJson(res, HostJson(*host));
        return absl::OkStatus();
      });
  Add("POST", "/api/v1/hosts/{id}/refresh",
      [this](const httplib::Request&, httplib::Response& res, const Params& p) {
        absl::StatusOr<RefreshResult> done = registry.RefreshNow(p[0]);
        if (!done.ok()) return done.status();
        WriteJson(res,
                  {{"host", done->host}, {"vm_count", done->vm_count}, {"version", done->version}});
        return absl::OkStatus();
      });
  Add("GET", "/api/v1/clusters",
      [this](const httplib::Request&, httplib::Response& res, const Params&) {
        absl::StatusOr<std::vector<ClusterRecord>> clusters = catalog.ListClusters();
        if (!clusters.ok()) return clusters.status();
        std::map<std::string, json> members;
        for (const ClusterRecord& c : *clusters) members[c.name] = json::array();
        for (const HostView& h : registry.ListHosts()) {
          if (!h.record.cluster.empty()) members[h.record.cluster].push_back(h.record.id);
        }
        json out = json::array();
        for (auto& [name, hosts] : members) out.push_back({{"name", name}, {"hosts", hosts}});
        WriteJson(res, {{"clusters", std::move(out)}});
        return absl::OkStatus();
      });
  Add("GET", "/api/v1/vms",
      [this](const httplib::Request& req, httplib::Response& res, const Params&) {
        const std::optional<std::string> host = OptParam(req, "host");
        const std::optional<std::string> name = OptParam(req, "name");
        const std::optional<std::string> state = OptParam(req, "state");
        if (host) {
          if (absl::StatusOr<HostView> h = registry.GetHost(*host); !h.ok()) return h.status();
        }
        auto keep = [&](const core::Graph& g, core::NodeIndex n) {
          if (name && !core::GlobMatch(*name, g.Name(n))) return false;
          if (state && !core::GlobMatch(*state, g.Attr(n, "state").value_or(""))) return false;
          return true;
        };
        json vms = json::array();
        if (host) {
          graphs.ReadHost(*host, [&](const core::Graph* g) {
            if (g == nullptr) return;
            for (core::NodeIndex n : g->NodesOfType(core::NodeType::kVm)) {
              if (keep(*g, n)) vms.push_back(VmJson(*g, n));
            }
          });
        } else {
          graphs.Read([&](const core::Graph& g) {
            for (core::NodeIndex n : g.NodesOfType(core::NodeType::kVm)) {
              if (keep(g, n)) vms.push_back(VmJson(g, n));
            }
          });
        }
        if (absl::Status s = ApplyVmFilters(req, vms); !s.ok()) return s;
        std::sort(vms.begin(), vms.end(), [](const json& a, const json& b) {
          const auto& ha = a["host"].get_ref<const std::string&>();
          const auto& hb = b["host"].get_ref<const std::string&>();
          if (ha != hb) return ha < hb;
          return a["name"].get_ref<const std::string&>() < b["name"].get_ref<const std::string&>();
        });
        WriteJson(res, {{"vms", std::move(vms)}});
        return absl::OkStatus();
      });
  Add("GET", "/api/v1/vms/{vm}",
      [this](const httplib::Request&, httplib::Response& res, const Params& p) {
        const std::string& key = p[0];
        return graphs.Read([&](const core::Graph& g) -> absl::Status {
          std::optional<core::NodeIndex> vm = g.Find(util::Cat("vm:", key));
          if (vm && g.Type(*vm) != core::NodeType::kVm) vm.reset();
          if (!vm) {
            std::vector<core::NodeIndex> named;
            for (core::NodeIndex n : g.FindByName(key)) {
              if (g.Type(n) == core::NodeType::kVm) named.push_back(n);
            }
            if (named.size() > 1) {
              std::vector<std::string> ids;
              for (core::NodeIndex n : named) ids.emplace_back(g.Id(n));
              return absl::InvalidArgumentError(util::Cat(
                  "VM name '", key, "' is ambiguous: ", util::Join(ids, ", "), "; use the UUID"));
            }
            if (named.empty()) return absl::NotFoundError(util::Cat("VM '", key, "' not found"));
            vm = named[0];
          }
          core::Query query;
          query.select.type = core::NodeType::kVm;
          query.select.matches.push_back({"id", std::string(g.Id(*vm))});
          query.direction = core::Direction::kDown;
          absl::StatusOr<core::Subgraph> found = core::RunQuery(g, query);
          if (!found.ok()) return found.status();
          json out = VmJson(g, *vm);
          json attrs = json::object();
          for (const auto& [k, v] : g.Attrs(*vm)) attrs[std::string(k)] = v;
          out["id"] = g.Id(*vm);
          out["attrs"] = std::move(attrs);
          out["graph"] = core::ToJson(g, *found);
          WriteJson(res, out);
          return absl::OkStatus();
        });
      });

  // ---- graph queries
  auto run_query = [this](const GraphRequest& request, httplib::Response& res) {
    return graphs.Read([&](const core::Graph& g) -> absl::Status {
      absl::StatusOr<core::Subgraph> sub = core::RunQuery(g, request.query);
      if (!sub.ok()) return sub.status();
      if (request.tree) {
        const core::Direction d = request.query.direction == core::Direction::kUp
                                      ? core::Direction::kUp
                                      : core::Direction::kDown;
        res.status = 200;
        res.set_content(core::ToTree(g, *sub, d), "text/plain; charset=utf-8");
      } else {
        WriteJson(res, core::ToJson(g, *sub));
      }
      return absl::OkStatus();
    });
  };
  Add("GET", "/api/v1/graph",
      [run_query](const httplib::Request& req, httplib::Response& res, const Params&) {
        absl::StatusOr<int64_t> depth = IntParam(req, "depth", 0, 0, 1000000);
        if (!depth.ok()) return depth.status();
        absl::StatusOr<GraphRequest> request = BuildGraphRequest(
            Param("select"), Param("direction"), Param("to"), *depth, Param("format"));
        if (!request.ok()) return request.status();
        return run_query(*request, res);
      });
  Add("POST", "/api/v1/graph/query",
      [run_query](const httplib::Request& req, httplib::Response& res, const Params&) {
        json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
        if (body.is_discarded()) {
          return absl::InvalidArgumentError("request body is not valid JSON");
        }
        if (!body.is_object())
          return absl::InvalidArgumentError("request body must be a JSON object");
        auto text = [&](const char* key) -> absl::StatusOr<std::string> {
          if (!body.contains(key) || body[key].is_null()) return std::string();
          if (!body[key].is_string()) {
            return absl::InvalidArgumentError(util::Cat("field '", key, "' must be a string"));
          }
          return body[key].get<std::string>();
        };
        absl::StatusOr<std::string> select = text("select");
        absl::StatusOr<std::string> direction = text("direction");
        absl::StatusOr<std::string> to = text("to");
        absl::StatusOr<std::string> format = text("format");
        for (const auto* s : {&select, &direction, &to, &format}) {
          if (!s->ok()) return s->status();
        }
        int64_t depth = 0;
        if (body.contains("depth") && !body["depth"].is_null()) {
          if (!body["depth"].is_number_integer()) {
            return absl::InvalidArgumentError("field 'depth' must be a whole number");
          }
          depth = body["depth"].get<int64_t>();
        }
        absl::StatusOr<GraphRequest> request =
            BuildGraphRequest(*select, *direction, *to, depth, *format);
        if (!request.ok()) return request.status();
        return run_query(*request, res);
      });

  // ---- events
  Add("GET", "/api/v1/events",
      [this](const httplib::Request& req, httplib::Response& res, const Params&) {
        absl::StatusOr<int64_t> after = IntParam(req, "after", 0, 0, INT64_MAX);
        if (!after.ok()) return after.status();
        absl::StatusOr<int64_t> limit = IntParam(req, "limit", 100, 1, 10000);
        if (!limit.ok()) return limit.status();
        const std::optional<std::string> host = OptParam(req, "host");
        const std::optional<std::string> vm = OptParam(req, "vm");
        if (host && vm) {
          return absl::InvalidArgumentError("filter events by host or by vm, not both");
        }
        if (host) {
          if (absl::StatusOr<HostView> h = registry.GetHost(*host); !h.ok()) return h.status();
        }
        absl::StatusOr<std::vector<EventRecord>> list =
            vm ? events.ListVm(*vm, *after, static_cast<int>(*limit))
               : events.List(*after, static_cast<int>(*limit), host);
        if (!list.ok()) return list.status();
        json out = json::array();
        for (const EventRecord& e : *list) out.push_back(EventJson(e));
        WriteJson(res, {{"events", std::move(out)}});
        return absl::OkStatus();
      });
  Add("GET", "/api/v1/events/stream",
      [this](const httplib::Request& req, httplib::Response& res, const Params&) {
        return StreamEvents(req, res);
      });

  // ---- backups, restores, jobs
  Add("GET", "/api/v1/backups",
      [this](const httplib::Request& req, httplib::Response& res, const Params&) {
        BackupListOptions opts;
        if (auto state = OptParam(req, "state")) {
          absl::StatusOr<BackupState> parsed = ParseBackupState(*state);
          if (!parsed.ok()) return parsed.status();
          opts.state = *parsed;
        }
        opts.vm_uuid = OptParam(req, "vm");
        absl::StatusOr<int64_t> limit = IntParam(req, "limit", 1000, 1, 100000);
        if (!limit.ok()) return limit.status();
        opts.limit = static_cast<int>(*limit);
        absl::StatusOr<std::vector<BackupRecord>> list = catalog.ListBackups(opts);
        if (!list.ok()) return list.status();
        json out = json::array();
        for (const BackupRecord& b : *list) out.push_back(BackupJson(b, false));
        WriteJson(res, {{"backups", std::move(out)}});
        return absl::OkStatus();
      });
  Add("GET", "/api/v1/backups/{id}",
      [this](const httplib::Request&, httplib::Response& res, const Params& p) {
        absl::StatusOr<BackupRecord> b = catalog.GetBackup(p[0]);
        if (!b.ok()) return b.status();
        WriteJson(res, BackupJson(*b, true));
        return absl::OkStatus();
      });
  Add("POST", "/api/v1/backups",
      [this](const httplib::Request& req, httplib::Response& res, const Params&) {
        if (jobs == nullptr) return absl::UnavailableError("backups are not served here");
        absl::StatusOr<Body> body = Body::Parse(req.body);
        if (!body.ok()) return body.status();
        BackupSpec spec;
        absl::Status s = body->Strings("vms", spec.vms);
        if (s.ok()) s = body->String("host", spec.host);
        if (s.ok()) s = body->String("select", spec.select);
        if (s.ok()) s = body->String("cluster", spec.cluster);
        if (s.ok()) s = body->String("consistency", spec.consistency);
        if (s.ok()) s = body->String("fallback", spec.fallback);
        if (s.ok()) s = body->String("name", spec.name);
        if (s.ok()) s = body->String("policy", spec.policy);
        if (s.ok()) s = body->Bool("verify", spec.verify);
        if (s.ok()) s = body->String("requester", spec.requester);
        if (s.ok()) s = body->String("vm_snapshot", spec.vm_snapshot);
        if (!s.ok()) return s;
        if (spec.requester.empty()) spec.requester = req.get_header_value("X-Strata-User");
        if (spec.requester.empty()) spec.requester = req.remote_addr;
        absl::StatusOr<JobStarted> started = jobs->StartBackup(spec);
        if (!started.ok()) return started.status();
        WriteJson(res, {{"job", JobJson(started->job)},
                        {"backup_id", started->backup_id},
                        {"backup_name", started->backup_name}});
        res.status = 202;
        res.set_header("Location", "/api/v1/jobs/" + started->job.id);
        return absl::OkStatus();
      });
  Add("POST", "/api/v1/restores",
      [this](const httplib::Request& req, httplib::Response& res, const Params&) {
        if (jobs == nullptr) return absl::UnavailableError("restores are not served here");
        absl::StatusOr<Body> body = Body::Parse(req.body);
        if (!body.ok()) return body.status();
        RestoreSpec spec;
        absl::Status s = body->String("backup", spec.backup);
        if (s.ok()) s = body->String("vm", spec.vm);
        if (s.ok()) s = body->String("as", spec.as_name);
        if (s.ok()) s = body->Strings("disks", spec.disks);
        if (s.ok()) s = body->Bool("verify", spec.verify);
        bool start = false;
        if (s.ok() && body->Has("start")) {
          s = body->Bool("start", start);
          spec.start = start;
        }
        if (s.ok()) s = body->String("host", spec.host);
        if (s.ok()) s = body->String("target_dir", spec.target_dir);
        if (s.ok()) s = body->String("requester", spec.requester);
        if (!s.ok()) return s;
        if (spec.requester.empty()) spec.requester = req.get_header_value("X-Strata-User");
        absl::StatusOr<JobStarted> started = jobs->StartRestore(spec);
        if (!started.ok()) return started.status();
        WriteJson(res, {{"job", JobJson(started->job)}});
        res.status = 202;
        res.set_header("Location", "/api/v1/jobs/" + started->job.id);
        return absl::OkStatus();
      });
  Add("POST", "/api/v1/backups/prune",
      [this](const httplib::Request& req, httplib::Response& res, const Params&) {
        if (jobs == nullptr) return absl::UnavailableError("backups are not served here");
        absl::StatusOr<Body> body = Body::Parse(req.body);
        if (!body.ok()) return body.status();
        PruneSpec spec;
        absl::Status s = body->String("policy", spec.policy);
        if (s.ok()) s = body->Bool("dry_run", spec.dry_run);
        if (!s.ok()) return s;
        if (spec.policy.empty()) return absl::InvalidArgumentError("field 'policy' is required");
        absl::StatusOr<json> report = jobs->Prune(spec);
        if (!report.ok()) return report.status();
        WriteJson(res, *report);
        return absl::OkStatus();
      });
  Add("GET", "/api/v1/policies",
      [this](const httplib::Request&, httplib::Response& res, const Params&) {
        absl::StatusOr<std::vector<RetentionPolicy>> list = catalog.ListPolicies();
        if (!list.ok()) return list.status();
        json out = json::array();
        for (const RetentionPolicy& p : *list) out.push_back(PolicyJson(p));
        WriteJson(res, {{"policies", std::move(out)}});
        return absl::OkStatus();
      });
  Add("GET", "/api/v1/policies/{name}",
      [this](const httplib::Request&, httplib::Response& res, const Params& p) {
        absl::StatusOr<RetentionPolicy> policy = catalog.GetPolicy(p[0]);
        if (!policy.ok()) return policy.status();
        WriteJson(res, PolicyJson(*policy));
        return absl::OkStatus();
      });
  Add("PUT", "/api/v1/policies/{name}",
      [this](const httplib::Request& req, httplib::Response& res, const Params& p) {
        absl::StatusOr<Body> body = Body::Parse(req.body);
        if (!body.ok()) return body.status();
        RetentionPolicy policy;
        policy.name = p[0];
        absl::Status s = body->Int("keep_last", policy.keep_last);
        if (s.ok()) s = body->Int("keep_hourly", policy.keep_hourly);
        if (s.ok()) s = body->Int("keep_daily", policy.keep_daily);
        if (s.ok()) s = body->Int("keep_weekly", policy.keep_weekly);
        if (s.ok()) s = body->Int("keep_monthly", policy.keep_monthly);
        if (s.ok()) s = ValidateRetentionPolicy(policy);
        if (s.ok()) s = catalog.UpsertPolicy(policy);
        if (!s.ok()) return s;
        WriteJson(res, PolicyJson(policy));
        return absl::OkStatus();
      });
  Add("DELETE", "/api/v1/policies/{name}",
      [this](const httplib::Request&, httplib::Response& res, const Params& p) {
        if (absl::Status s = catalog.DeletePolicy(p[0]); !s.ok()) return s;
        WriteJson(res, {{"deleted", p[0]}});
        return absl::OkStatus();
      });
  Add("DELETE", "/api/v1/backups/{id}",
      [this](const httplib::Request&, httplib::Response& res, const Params& p) {
        if (jobs == nullptr) return absl::UnavailableError("backups are not served here");
        absl::StatusOr<json> report = jobs->DeleteBackup(p[0]);
        if (!report.ok()) return report.status();
        WriteJson(res, *report);
        return absl::OkStatus();
      });
  Add("GET", "/api/v1/jobs",
      [this](const httplib::Request& req, httplib::Response& res, const Params&) {
        JobListOptions opts;
        if (auto state = OptParam(req, "state")) {
          absl::StatusOr<JobState> parsed = ParseJobState(*state);
          if (!parsed.ok()) return parsed.status();
          opts.state = *parsed;
        }
        opts.kind = OptParam(req, "kind");
        absl::StatusOr<int64_t> limit = IntParam(req, "limit", 1000, 1, 100000);
        if (!limit.ok()) return limit.status();
        opts.limit = static_cast<int>(*limit);
        absl::StatusOr<std::vector<JobRecord>> list = catalog.ListJobs(opts);
        if (!list.ok()) return list.status();
        json out = json::array();
        for (const JobRecord& j : *list) out.push_back(JobJson(j));
        WriteJson(res, {{"jobs", std::move(out)}});
        return absl::OkStatus();
      });
  Add("GET", "/api/v1/jobs/{id}",
      [this](const httplib::Request&, httplib::Response& res, const Params& p) {
        absl::StatusOr<JobRecord> j = catalog.GetJob(p[0]);
        if (!j.ok()) return j.status();
        WriteJson(res, JobJson(*j));
        return absl::OkStatus();
      });
  Add("GET", "/api/v1/jobs/{id}/stream",
      [this](const httplib::Request&, httplib::Response& res, const Params& p) {
        return StreamJob(p[0], res);
      });
}

namespace {
// The events of every stream route: "id: <id>\n" (and "event: <event>\n" unless empty), then
// the data line.
std::string SseEvent(const char* event, int64_t id, const std::string& data) {
  std::string text;
  if (*event != '\0') util::Append(text, "event: ", event, "\n");
  util::Append(text, "id: ", id, "\ndata: ", data, "\n\n");
  return text;
}
}  // namespace

absl::Status RestApi::Impl::OpenStream(httplib::Response& res, const char* greeting,
                                       StreamNext next) {
  if (metrics.open_streams() >= options.max_event_streams) {
    return absl::UnavailableError(util::Cat("too many event streams open (limit ",
                                            options.max_event_streams, "); try again later"));
  }
  struct StreamState {
    bool greeted = false;
    bool ended = false;
    std::chrono::steady_clock::time_point last_write;
  };
  auto state =
      std::make_shared<StreamState>(StreamState{false, false, std::chrono::steady_clock::now()});
  metrics.StreamOpened();
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  const auto keepalive = options.stream_keepalive;
  const auto poll = std::min<std::chrono::milliseconds>(keepalive, std::chrono::milliseconds(500));
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, state, greeting = std::string(greeting), next = std::move(next), keepalive, poll](
          size_t, httplib::DataSink& sink) {
        auto write = [&](const std::string& text) {
          state->last_write = std::chrono::steady_clock::now();
          return sink.write(text.data(), text.size());
        };
        if (!state->greeted) {
          state->greeted = true;
          return write(greeting);
        }
        if (stopping || state->ended) {
          sink.done();
          return true;
        }
        std::string text;
        state->ended = !next(text, poll);
        if (!text.empty()) return write(text);
        if (state->ended) {
          sink.done();
          return true;
        }
        if (std::chrono::steady_clock::now() - state->last_write >= keepalive) {
          return write(": keepalive\n\n");
        }
        return true;
      },
      [this](bool) { metrics.StreamClosed(); });
  return absl::OkStatus();
}

// Server-sent events: "id: <seq>\ndata: <event json>\n\n" for each new event, a comment line
// when idle. Starts after Last-Event-ID (a reconnecting EventSource), else after ?after=, else
// at the newest event (only what happens from now on).
absl::Status RestApi::Impl::StreamEvents(const httplib::Request& req, httplib::Response& res) {
  int64_t after;
  if (req.has_header("Last-Event-ID")) {
    const std::string text = req.get_header_value("Last-Event-ID");
    uint64_t value = 0;
    if (!util::ParseUint(text, value) || value > static_cast<uint64_t>(INT64_MAX)) {
      return absl::InvalidArgumentError(
          util::Cat("bad Last-Event-ID '", text, "': expected an event sequence number"));
    }
    after = static_cast<int64_t>(value);
  } else if (HasParam("after")) {
    absl::StatusOr<int64_t> parsed = IntParam(req, "after", 0, 0, INT64_MAX);
    if (!parsed.ok()) return parsed.status();
    after = *parsed;
  } else {
    after = events.LatestSeq();
  }
  const std::optional<std::string> host = OptParam(req, "host");
  if (host) {
    if (absl::StatusOr<HostView> h = registry.GetHost(*host); !h.ok()) return h.status();
  }
  auto state = std::make_shared<std::pair<int64_t, std::optional<std::string>>>(after, host);
  return OpenStream(res, ": strata event stream\nretry: 1000\n\n",
                    [this, state](std::string& out, std::chrono::milliseconds poll) {
                      auto& [after, host] = *state;
                      if (events.shut_down()) return false;
                      const int64_t latest = events.LatestSeq();
                      if (latest > after) {
                        absl::StatusOr<std::vector<EventRecord>> page =
                            events.List(after, 1000, host);
                        if (!page.ok()) {
                          spdlog::warn("event stream: {}", Msg(page.status()));
                          return false;
                        }
                        for (const EventRecord& e : *page) {
                          out += SseEvent("", e.seq, EventJson(e).dump());
                          after = e.seq;
                        }
                        if (page->size() < 1000) after = std::max(after, latest);
                        return true;
                      }
                      events.WaitForNewer(after, poll);
                      return true;
                    });
}

// "event: job" with the job as GET /api/v1/jobs/{id} answers it, at once and after each change
// (ids 1, 2, ...); the stream ends after the event that shows the job ended.
absl::Status RestApi::Impl::StreamJob(const std::string& id, httplib::Response& res) {
  if (jobs == nullptr) return absl::UnavailableError("job streams are not served here");
  if (absl::StatusOr<JobRecord> j = catalog.GetJob(id); !j.ok()) return j.status();
  struct JobStream {
    std::string id;
    int64_t seq = 0;
    std::string last;  // the data sent last: a change that shows nothing new is not sent
  };
  auto state = std::make_shared<JobStream>(JobStream{id, 0, ""});
  return OpenStream(res, ": strata job stream\nretry: 1000\n\n",
                    [this, state](std::string& out, std::chrono::milliseconds poll) {
                      // The version before the read: a change after it ends the wait below.
                      const uint64_t version = jobs->JobVersion(state->id);
                      absl::StatusOr<JobRecord> j = catalog.GetJob(state->id);
                      if (!j.ok()) {
                        spdlog::warn("stream of job {}: {}", state->id, Msg(j.status()));
                        return false;
                      }
                      std::string data = JobJson(*j).dump();
                      if (data != state->last) {
                        out = SseEvent("job", ++state->seq, data);
                        state->last = std::move(data);
                      }
                      if (j->state == JobState::kSucceeded || j->state == JobState::kFailed) {
                        return false;
                      }
                      if (out.empty()) jobs->WaitForJobChange(state->id, version, poll);
                      return true;
                    });
}

namespace {
// One node as the console's tree shows it: `children` counts its neighbours in `direction`.
json TreeNodeJson(const core::Graph& g, core::NodeIndex n, core::Direction direction) {
  json attrs = json::object();
  for (const auto& [k, v] : g.Attrs(n)) attrs[std::string(k)] = v;
  const size_t children =
      direction == core::Direction::kUp ? g.InEdges(n).size() : g.OutEdges(n).size();
  return {{"id", g.Id(n)},
          {"type", core::NodeTypeName(g.Type(n))},
          {"name", g.Name(n)},
          {"attrs", std::move(attrs)},
          {"children", children}};
}
}  // namespace

void RestApi::Impl::AddConsoleRoutes() {
  // ?limit=N: the newest N events (1..1000, default 20), ascending, and the newest sequence
  // number, so that a client shows the recent past and then follows the stream from there
  // (GET /api/v1/events/stream?after=latest) without a gap.
  Add("GET", "/api/v1/events/recent",
      [this](const httplib::Request& req, httplib::Response& res, const Params&) {
        absl::StatusOr<int64_t> limit = IntParam(req, "limit", 20, 1, 1000);
        if (!limit.ok()) return limit.status();
        const int64_t latest = events.LatestSeq();
        absl::StatusOr<std::vector<EventRecord>> list = events.List(
            std::max<int64_t>(0, latest - *limit), static_cast<int>(*limit), std::nullopt);
        if (!list.ok()) return list.status();
        json out = json::array();
        for (const EventRecord& e : *list) {
          if (e.seq <= latest) out.push_back(EventJson(e));
        }
        WriteJson(res, {{"events", std::move(out)}, {"latest", latest}});
        return absl::OkStatus();
      });

  // ?id=NODE&direction=down|up: the node and its neighbours one edge away (down: what it rests
  // on; up: what rests on it). Without id: the roots, i.e. clusters and the hosts outside any
  // cluster. Children are ordered by type (top to bottom of the graph), then name.
  Add("GET", "/api/v1/graph/children",
      [this](const httplib::Request& req, httplib::Response& res, const Params&) {
        const std::string direction_text = Param("direction");
        core::Direction direction = core::Direction::kDown;
        if (direction_text == "up") {
          direction = core::Direction::kUp;
        } else if (!direction_text.empty() && direction_text != "down") {
          return absl::InvalidArgumentError(
              util::Cat("bad direction '", direction_text, "': expected down or up"));
        }
        const std::optional<std::string> id = OptParam(req, "id");
        return graphs.Read([&](const core::Graph& g) -> absl::Status {
          struct Child {
            core::NodeIndex node;
            std::string edge;
          };
          std::vector<Child> children;
          json node = nullptr;
          if (id) {
            std::optional<core::NodeIndex> n = g.Find(*id);
            if (!n) return absl::NotFoundError(util::Cat("node '", *id, "' not found"));
            node = TreeNodeJson(g, *n, direction);
            auto edges = direction == core::Direction::kUp ? g.InEdges(*n) : g.OutEdges(*n);
            for (const core::EdgeRef& e : edges) {
              children.push_back({e.node, std::string(core::EdgeTypeName(e.type))});
            }
          } else {
            for (core::NodeIndex n : g.NodesOfType(core::NodeType::kCluster)) {
              children.push_back({n, ""});
            }
            for (core::NodeIndex n : g.NodesOfType(core::NodeType::kHost)) {
              bool member = false;
              for (const core::EdgeRef& e : g.InEdges(n)) {
                member = member || e.type == core::EdgeType::kHasMember;
              }
              if (!member) children.push_back({n, ""});
            }
          }
          std::sort(children.begin(), children.end(), [&](const Child& a, const Child& b) {
            if (g.Type(a.node) != g.Type(b.node)) return g.Type(a.node) < g.Type(b.node);
            if (g.Name(a.node) != g.Name(b.node)) return g.Name(a.node) < g.Name(b.node);
            return g.Id(a.node) < g.Id(b.node);
          });
          json out = json::array();
          for (const Child& c : children) {
            json child = TreeNodeJson(g, c.node, direction);
            if (!c.edge.empty()) child["edge"] = c.edge;
            out.push_back(std::move(child));
          }
          WriteJson(res, {{"node", std::move(node)},
                          {"direction", direction == core::Direction::kUp ? "up" : "down"},
                          {"children", std::move(out)}});
          return absl::OkStatus();
        });
      });
}

absl::Status RestApi::Impl::ApplyVmFilters(const httplib::Request& req, json& vms) {
  std::vector<std::function<bool(const json&)>> keep;

  // cluster=NAME: the VMs of the cluster's hosts.
  if (const std::optional<std::string> cluster = OptParam(req, "cluster")) {
    std::set<std::string> hosts;
    for (const HostView& h : registry.ListHosts()) {
      if (h.record.cluster == *cluster) hosts.insert(h.record.id);
    }
    if (hosts.empty()) {
      absl::StatusOr<std::vector<ClusterRecord>> known = catalog.ListClusters();
      if (!known.ok()) return known.status();
      if (std::none_of(known->begin(), known->end(),
                       [&](const ClusterRecord& c) { return c.name == *cluster; })) {
        return absl::NotFoundError(util::Cat("cluster '", *cluster, "' not found"));
      }
    }
    keep.push_back(
        [hosts](const json& vm) { return hosts.contains(vm["host"].get<std::string>()); });
  }

  // depends_on=NODE_ID: the VMs that rest, through any number of edges, on that node (the
  // upward view of a storage volume, a storage system, a file system...).
  if (const std::optional<std::string> node_id = OptParam(req, "depends_on")) {
    std::set<std::string> uuids;
    absl::Status found = graphs.Read([&](const core::Graph& g) -> absl::Status {
      std::optional<core::NodeIndex> start = g.Find(*node_id);
      if (!start) return absl::NotFoundError(util::Cat("node '", *node_id, "' not found"));
      std::vector<core::NodeIndex> stack = {*start};
      std::set<core::NodeIndex> seen = {*start};
      while (!stack.empty()) {
        const core::NodeIndex n = stack.back();
        stack.pop_back();
        if (g.Type(n) == core::NodeType::kVm) {
          uuids.insert(VmJson(g, n)["uuid"].get<std::string>());
          continue;  // what rests on a VM (its host) is not a dependant
        }
        for (const core::EdgeRef& e : g.InEdges(n)) {
          if (seen.insert(e.node).second) stack.push_back(e.node);
        }
      }
      return absl::OkStatus();
    });
    if (!found.ok()) return found;
    keep.push_back(
        [uuids](const json& vm) { return uuids.contains(vm["uuid"].get<std::string>()); });
  }

  // no_backup_since_hours=N: the VMs that no succeeded backup started in the last N hours holds.
  if (HasParam("no_backup_since_hours")) {
    absl::StatusOr<int64_t> hours = IntParam(req, "no_backup_since_hours", 0, 0, 876000);
    if (!hours.ok()) return hours.status();
    const CatalogTime cutoff = std::chrono::system_clock::now() - std::chrono::hours(*hours);
    BackupListOptions opts;
    opts.state = BackupState::kSucceeded;
    opts.with_items = true;
    opts.limit = 100000;
    absl::StatusOr<std::vector<BackupRecord>> backups = catalog.ListBackups(opts);
    if (!backups.ok()) return backups.status();
    std::set<std::string> recent;
    for (const BackupRecord& b : *backups) {
      if (b.started_at < cutoff) break;  // newest first
      for (const BackupItem& item : b.items) recent.insert(item.vm_uuid);
    }
    keep.push_back(
        [recent](const json& vm) { return !recent.contains(vm["uuid"].get<std::string>()); });
  }

  if (keep.empty()) return absl::OkStatus();
  json kept = json::array();
  for (json& vm : vms) {
    if (std::all_of(keep.begin(), keep.end(), [&](const auto& k) { return k(vm); })) {
      kept.push_back(std::move(vm));
    }
  }
  vms = std::move(kept);
  return absl::OkStatus();
}

RestApi::RestApi(Catalog& catalog, GraphStore& graphs, HostRegistry& registry, EventLog& events,
                 HttpMetrics& metrics, RestOptions options)
    : impl_(
          std::make_unique<Impl>(catalog, graphs, registry, events, metrics, std::move(options))) {}

RestApi::~RestApi() { Stop(); }

void RestApi::SetJobManager(JobManager* jobs) { impl_->jobs = jobs; }
absl::StatusOr<int> RestApi::Start() { return impl_->Start(); }
void RestApi::Stop() { impl_->Stop(); }
int RestApi::port() const { return impl_->port; }

}  // namespace strata::server
