#include "commands.h"

#include <algorithm>
#include <cstdint>
#include <set>
#include <tuple>

#include "event_stream.h"
#include "render.h"
#include "strata/util/strings.h"

namespace strata::cli {

using nlohmann::json;
using util::Cat;

// ---- requests --------------------------------------------------------------------------------

std::string EscapeQueryValue(const std::string& value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string QueryString(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string out;
  for (const auto& [key, value] : params) {
    if (value.empty()) continue;
    out += out.empty() ? '?' : '&';
    out += EscapeQueryValue(key);
    out += '=';
    out += EscapeQueryValue(value);
  }
  return out;
}

std::string VmsTarget(const VmsOptions& options) {
  return "/api/v1/vms" +
         QueryString({{"host", options.host}, {"name", options.name}, {"state", options.state}});
}

std::string GraphTarget(const std::string& select, const std::string& direction,
                        const std::string& to, std::optional<int> depth,
                        const std::string& format) {
  return "/api/v1/graph" + QueryString({{"select", select},
                                        {"direction", direction},
                                        {"to", to},
                                        {"depth", depth ? std::to_string(*depth) : ""},
                                        {"format", format}});
}

namespace {

bool IsUuid(const std::string& text) {
  if (text.size() != 36) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? text[i] != '-' : !std::isxdigit(static_cast<unsigned char>(text[i]))) return false;
  }
  return true;
}

}  // namespace

std::string VmSelector(const std::string& vm) {
  if (IsUuid(vm)) return "id=vm:" + vm;
  std::string name = vm;
  for (char& c : name) {
    if (c == ' ' || c == ',' || c == '\t') c = '?';
  }
  return "type=vm name=" + name;
}

std::vector<std::string> TreeTargets(const TreeOptions& options, bool json) {
  const std::string format = json ? "json" : "tree";
  std::vector<std::string> targets;
  if (options.vms.empty()) {
    targets.push_back(GraphTarget("type=vm", "down", options.to, std::nullopt, format));
  }
  for (const std::string& vm : options.vms) {
    targets.push_back(GraphTarget(VmSelector(vm), "down", options.to, std::nullopt, format));
  }
  return targets;
}

std::string FindTarget(const FindOptions& options, bool json) {
  return GraphTarget(options.selector, options.direction, options.to, options.depth,
                     options.tree && !json ? "tree" : "json");
}

std::string EventsTarget(const EventsOptions& options) {
  return "/api/v1/events" +
         QueryString({{"after", options.after ? std::to_string(*options.after) : ""},
                      {"limit", options.limit ? std::to_string(*options.limit) : ""},
                      {"host", options.host}});
}

std::string EventStreamTarget(const EventsOptions& options) {
  return "/api/v1/events/stream" +
         QueryString({{"after", options.after ? std::to_string(*options.after) : ""},
                      {"host", options.host}});
}

json BackupBody(const BackupOptions& options) {
  json body = json::object();
  body["vms"] = options.vms;
  if (!options.name.empty()) body["name"] = options.name;
  if (!options.consistency.empty()) body["consistency"] = options.consistency;
  if (!options.policy.empty()) body["policy"] = options.policy;
  return body;
}

json RestoreBody(const RestoreOptions& options) {
  json body = json::object();
  body["vm"] = options.vm;
  if (!options.backup.empty()) body["backup"] = options.backup;
  if (!options.target_host.empty()) body["target_host"] = options.target_host;
  return body;
}

std::string ErrorMessage(int status, const std::string& body) {
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_object() && parsed.contains("error")) {
    const json& error = parsed["error"];
    if (error.is_object() && error.contains("message") && error["message"].is_string()) {
      return error["message"].get<std::string>();
    }
    if (error.is_string()) return error.get<std::string>();
  }
  std::string start(util::Trim(body.substr(0, body.find('\n'))));
  if (start.size() > 200) start = start.substr(0, 200) + "...";
  return start.empty() ? Cat("HTTP ", status) : Cat("HTTP ", status, ": ", start);
}

// ---- commands --------------------------------------------------------------------------------

Cli::Cli(GlobalOptions globals, std::ostream& out, std::ostream& err)
    : globals_(std::move(globals)), out_(out), err_(err) {}

Cli::~Cli() = default;

int Cli::Fail(const std::string& message, int code) {
  err_ << "strata: " << message << "\n";
  return code;
}

std::optional<ApiResponse> Cli::Call(const std::string& method, const std::string& target,
                                     const std::string& body, int& exit_code) {
  if (client_ == nullptr) {
    absl::StatusOr<std::unique_ptr<ApiClient>> client = ApiClient::Create(globals_.server);
    if (!client.ok()) {
      exit_code = Fail(std::string(client.status().message()), kExitError);
      return std::nullopt;
    }
    client_ = *std::move(client);
  }
  absl::StatusOr<ApiResponse> response =
      method == "POST" ? client_->Post(target, body) : client_->Get(target);
  if (!response.ok()) {
    exit_code = Fail(Cat("cannot reach stratad at ", globals_.server, ": ",
                         std::string(response.status().message())),
                     kExitUnreachable);
    return std::nullopt;
  }
  if (response->status < 200 || response->status >= 300) {
    exit_code = Fail(ErrorMessage(response->status, response->body), kExitError);
    return std::nullopt;
  }
  exit_code = kExitOk;
  return *std::move(response);
}

void Cli::PrintJson(const std::string& body) {
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    out_ << body;
    if (!body.empty() && body.back() != '\n') out_ << "\n";
  } else {
    out_ << parsed.dump(2) << "\n";
  }
}

int Cli::List(const std::string& target, std::string (*render)(const json&)) {
  int code = kExitOk;
  std::optional<ApiResponse> response = Call("GET", target, "", code);
  if (!response) return code;
  if (globals_.json) {
    PrintJson(response->body);
    return kExitOk;
  }
  json parsed = json::parse(response->body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return Fail(Cat("stratad answered ", target,
                    " with something that is not JSON: ", response->body.substr(0, 200)),
                kExitError);
  }
  out_ << render(parsed);
  return kExitOk;
}

int Cli::Hosts() { return List("/api/v1/hosts", RenderHosts); }
int Cli::Vms(const VmsOptions& options) { return List(VmsTarget(options), RenderVms); }
int Cli::Events(const EventsOptions& options) {
  return options.follow ? Follow(options) : List(EventsTarget(options), RenderEvents);
}
int Cli::Backups() { return List("/api/v1/backups", RenderBackups); }
int Cli::Jobs() { return List("/api/v1/jobs", RenderJobs); }

void Cli::StopFollowing() {
  std::lock_guard lock(follow_mu_);
  stop_ = true;
  if (follow_client_ != nullptr) follow_client_->Stop();
  follow_cv_.notify_all();
}

namespace {

std::string Millis(std::chrono::milliseconds delay) {
  return delay.count() % 1000 == 0 ? Cat(delay.count() / 1000, " s") : Cat(delay.count(), " ms");
}

}  // namespace

int Cli::Follow(const EventsOptions& options) {
  if (options.limit) return Fail("--limit does not apply to --follow", kExitError);
  absl::StatusOr<std::unique_ptr<ApiClient>> created = ApiClient::Create(globals_.server);
  if (!created.ok()) return Fail(std::string(created.status().message()), kExitError);
  std::unique_ptr<ApiClient> client = *std::move(created);
  client->SetReadTimeout(options.stream_read_timeout);
  {
    std::lock_guard lock(follow_mu_);
    if (stop_) return kExitOk;
    follow_client_ = client.get();
  }
  struct Unregister {
    Cli* cli;
    ~Unregister() {
      std::lock_guard lock(cli->follow_mu_);
      cli->follow_client_ = nullptr;
    }
  } unregister{this};

  std::optional<int64_t> last_seq;  // of the last event printed: resume after it, skip repeats
  bool header_printed = false;
  bool connected_once = false;
  Backoff backoff(options.reconnect_initial, options.reconnect_max);
  SseParser parser;

  auto print = [&](const SseEvent& event) {
    json parsed = json::parse(event.data, nullptr, /*allow_exceptions=*/false);
    std::optional<int64_t> seq;
    if (parsed.is_object() && parsed.contains("seq") && parsed["seq"].is_number_integer()) {
      seq = parsed["seq"].get<int64_t>();
    } else if (uint64_t id = 0; util::ParseUint(event.id, id) && id <= INT64_MAX) {
      seq = static_cast<int64_t>(id);
    }
    if (seq && last_seq && *seq <= *last_seq) return !Stopping();  // seen already
    if (seq) last_seq = seq;
    if (!parsed.is_object()) {
      err_ << "strata: skipping an event that is not a JSON object: " << event.data.substr(0, 200)
           << "\n";
    } else if (globals_.json) {
      out_ << parsed.dump() << "\n";
    } else {
      if (!header_printed) out_ << RenderEventStreamHeader();
      header_printed = true;
      out_ << RenderEventStreamRow(parsed);
    }
    out_.flush();
    return !Stopping();
  };

  while (!Stopping()) {
    parser.Reset();
    std::vector<std::pair<std::string, std::string>> headers = {{"Accept", "text/event-stream"}};
    if (last_seq) headers.emplace_back("Last-Event-ID", std::to_string(*last_seq));
    int status = 0;
    std::string error_body;
    absl::StatusOr<int> result = client->GetStreaming(
        EventStreamTarget(options), headers,
        [&](int answer_status, const std::string&) {
          status = answer_status;
          if (status == 200) {
            connected_once = true;
            backoff.Reset();
          }
          return !Stopping();
        },
        [&](const char* data, size_t size) {
          if (status != 200) {
            if (error_body.size() < 65536) error_body.append(data, size);
            return !Stopping();
          }
          return parser.Feed(data, size, print) && !Stopping();
        });
    if (Stopping()) break;
    std::string why;
    if (result.ok() && *result != 200) {
      // 503 (too many streams) and other server-side trouble pass; a bad request does not.
      if (*result < 500 || *result == 501) {
        return Fail(ErrorMessage(*result, error_body), kExitError);
      }
      why = ErrorMessage(*result, error_body);
    } else if (result.ok()) {
      why = "the server ended the stream";
    } else if (!connected_once) {
      return Fail(Cat("cannot reach stratad at ", globals_.server, ": ",
                      std::string(result.status().message())),
                  kExitUnreachable);
    } else {
      why = std::string(result.status().message());
    }
    if (std::optional<std::chrono::milliseconds> retry = parser.retry()) {
      backoff.SetInitial(*retry);
    }
    const std::chrono::milliseconds delay = backoff.Next();
    err_ << "strata: event stream interrupted (" << why << "); reconnecting in " << Millis(delay)
         << "\n";
    err_.flush();
    std::unique_lock lock(follow_mu_);
    follow_cv_.wait_for(lock, delay, [&] { return stop_.load(); });
  }
  return kExitOk;
}

int Cli::Tree(const TreeOptions& options) {
  const std::vector<std::string> targets = TreeTargets(options, globals_.json);
  json merged = {{"nodes", json::array()}, {"edges", json::array()}};
  std::set<std::string> node_ids;
  std::set<std::tuple<std::string, std::string, std::string>> edge_keys;
  std::string text;
  for (size_t i = 0; i < targets.size(); ++i) {
    int code = kExitOk;
    std::optional<ApiResponse> response = Call("GET", targets[i], "", code);
    if (!response) return code;
    const std::string what = options.vms.empty() ? std::string("type=vm") : options.vms[i];
    if (!globals_.json) {
      if (util::Trim(response->body).empty()) {
        return Fail(Cat("no VM matches '", what, "'"), kExitNothingFound);
      }
      text += response->body;
      if (text.back() != '\n') text += '\n';
      continue;
    }
    json graph = json::parse(response->body, nullptr, /*allow_exceptions=*/false);
    if (!graph.is_object()) {
      return Fail(Cat("stratad answered with something that is not a JSON graph: ",
                      response->body.substr(0, 200)),
                  kExitError);
    }
    if (!graph.contains("nodes") || !graph["nodes"].is_array() || graph["nodes"].empty()) {
      return Fail(Cat("no VM matches '", what, "'"), kExitNothingFound);
    }
    for (const json& node : graph["nodes"]) {
      if (node_ids.insert(Field(node, "id")).second) merged["nodes"].push_back(node);
    }
    if (graph.contains("edges") && graph["edges"].is_array()) {
      for (const json& edge : graph["edges"]) {
        if (edge_keys.emplace(Field(edge, "from"), Field(edge, "to"), Field(edge, "type")).second) {
          merged["edges"].push_back(edge);
        }
      }
    }
  }
  if (globals_.json) {
    out_ << merged.dump(2) << "\n";
  } else {
    out_ << text;
  }
  return kExitOk;
}

int Cli::Find(const FindOptions& options) {
  if (options.direction != "down" && options.direction != "up" && options.direction != "none") {
    return Fail(Cat("direction must be down, up or none, not '", options.direction, "'"),
                kExitError);
  }
  if (options.depth && *options.depth < 0) {
    return Fail(Cat("--depth must be 0 or more, not ", *options.depth), kExitError);
  }
  int code = kExitOk;
  std::optional<ApiResponse> response = Call("GET", FindTarget(options, globals_.json), "", code);
  if (!response) return code;
  const std::string nothing =
      Cat("nothing matches '", options.selector, "'", options.to.empty() ? "" : " with a path to ",
          options.to.empty() ? "" : options.to);
  if (options.tree && !globals_.json) {
    if (util::Trim(response->body).empty()) return Fail(nothing, kExitNothingFound);
    out_ << response->body;
    if (response->body.back() != '\n') out_ << "\n";
    return kExitOk;
  }
  json graph = json::parse(response->body, nullptr, /*allow_exceptions=*/false);
  if (!graph.is_object()) {
    return Fail(Cat("stratad answered with something that is not a JSON graph: ",
                    response->body.substr(0, 200)),
                kExitError);
  }
  const bool empty =
      !graph.contains("nodes") || !graph["nodes"].is_array() || graph["nodes"].empty();
  if (globals_.json) {
    out_ << graph.dump(2) << "\n";
    return empty ? kExitNothingFound : kExitOk;
  }
  if (empty) return Fail(nothing, kExitNothingFound);
  out_ << RenderNodes(graph, options.to);
  return kExitOk;
}

int Cli::Backup(const BackupOptions& options) {
  if (options.consistency != "" && options.consistency != "crash" &&
      options.consistency != "pause" && options.consistency != "quiesce") {
    return Fail(
        Cat("--consistency must be crash, pause or quiesce, not '", options.consistency, "'"),
        kExitError);
  }
  int code = kExitOk;
  std::optional<ApiResponse> response =
      Call("POST", "/api/v1/backups", BackupBody(options).dump(), code);
  if (!response) return code;
  PrintJson(response->body);
  return kExitOk;
}

int Cli::Restore(const RestoreOptions& options) {
  int code = kExitOk;
  std::optional<ApiResponse> response =
      Call("POST", "/api/v1/restores", RestoreBody(options).dump(), code);
  if (!response) return code;
  PrintJson(response->body);
  return kExitOk;
}

}  // namespace strata::cli
