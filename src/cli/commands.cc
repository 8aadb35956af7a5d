#include "commands.h"

#include <algorithm>
#include <cstdint>
#include <set>
#include <tuple>
#include <utility>

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

std::string BackupsTarget(const BackupsOptions& options) {
  return "/api/v1/backups" +
         QueryString({{"state", options.state},
                      {"vm", options.vm},
                      {"limit", options.limit ? std::to_string(*options.limit) : ""}});
}

std::string JobsTarget(const JobsOptions& options) {
  return "/api/v1/jobs" +
         QueryString({{"state", options.state},
                      {"kind", options.kind},
                      {"limit", options.limit ? std::to_string(*options.limit) : ""}});
}

json BackupBody(const BackupOptions& options) {
  json body = json::object();
  body["vms"] = options.vms;
  using Key = std::pair<const char*, const std::string*>;
  for (const auto& [key, value] :
       {Key{"host", &options.host}, Key{"select", &options.select},
        Key{"cluster", &options.cluster}, Key{"consistency", &options.consistency},
        Key{"fallback", &options.fallback}, Key{"name", &options.name},
        Key{"policy", &options.policy}, Key{"vm_snapshot", &options.vm_snapshot}}) {
    if (!value->empty()) body[key] = *value;
  }
  body["verify"] = options.verify;
  return body;
}

json RestoreBody(const RestoreOptions& options) {
  json body = json::object();
  if (!options.backup.empty()) body["backup"] = options.backup;
  body["vm"] = options.vm;
  if (!options.as_name.empty()) body["as"] = options.as_name;
  if (!options.disks.empty()) body["disks"] = options.disks;
  body["verify"] = options.verify;
  if (options.start) body["start"] = *options.start;
  if (!options.host.empty()) body["host"] = options.host;
  if (!options.target_dir.empty()) body["target_dir"] = options.target_dir;
  return body;
}

json PruneBody(const PruneOptions& options) {
  return {{"policy", options.policy}, {"dry_run", options.dry_run}};
}

json PolicyBody(const PolicyOptions& options) {
  return {{"keep_last", options.keep_last.value_or(0)},
          {"keep_hourly", options.keep_hourly.value_or(0)},
          {"keep_daily", options.keep_daily.value_or(0)},
          {"keep_weekly", options.keep_weekly.value_or(0)},
          {"keep_monthly", options.keep_monthly.value_or(0)}};
}

std::string InPlaceRestoreWarning(const std::string& vm, bool vm_known, const std::string& host,
                                  const std::vector<std::string>& disks,
                                  const std::string& backup_name, const std::string& backup_time) {
  const std::string backup =
      backup_name.empty()
          ? std::string("the newest backup holding it")
          : Cat("backup '", backup_name, "'",
                backup_time.empty() ? std::string() : Cat(" (", ShortTime(backup_time), ")"));
  const std::string on_host = host.empty() ? std::string() : Cat(" on host '", host, "'");
  if (!vm_known) {
    return Cat("VM '", vm, "' is not in the inventory: this restores it in place", on_host,
               " from ", backup, ", overwriting whatever is at its disks' original paths.");
  }
  return Cat("This stops VM '", vm, "'", on_host, " and replaces its disks",
             disks.empty() ? std::string() : " " + util::Join(disks, ", "),
             " with their copies from ", backup, ".");
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

Cli::Cli(GlobalOptions globals, std::ostream& out, std::ostream& err, std::istream* in)
    : globals_(std::move(globals)), out_(out), err_(err), in_(in) {}

Cli::~Cli() = default;

int Cli::Fail(const std::string& message, int code) {
  err_ << "strata: " << message << "\n";
  return code;
}

absl::StatusOr<ApiResponse> Cli::Send(const std::string& method, const std::string& target,
                                      const std::string& body) {
  if (client_ == nullptr) {
    absl::StatusOr<std::unique_ptr<ApiClient>> client = ApiClient::Create(globals_.server);
    if (!client.ok()) return client.status();
    client_ = *std::move(client);
  }
  if (method == "POST") return client_->Post(target, body);
  if (method == "PUT") return client_->Put(target, body);
  if (method == "DELETE") return client_->Delete(target);
  return client_->Get(target);
}

int Cli::TransportFailure(const absl::Status& status) {
  if (client_ == nullptr) return Fail(std::string(status.message()), kExitError);
  return Fail(Cat("cannot reach stratad at ", globals_.server, ": ", std::string(status.message())),
              kExitUnreachable);
}

std::optional<ApiResponse> Cli::Call(const std::string& method, const std::string& target,
                                     const std::string& body, int& exit_code) {
  absl::StatusOr<ApiResponse> response = Send(method, target, body);
  if (!response.ok()) {
    exit_code = TransportFailure(response.status());
    return std::nullopt;
  }
  if (response->status < 200 || response->status >= 300) {
    exit_code = Fail(ErrorMessage(response->status, response->body), kExitError);
    return std::nullopt;
  }
  exit_code = kExitOk;
  return *std::move(response);
}

std::optional<json> Cli::CallJson(const std::string& method, const std::string& target,
                                  const std::string& body, int& exit_code) {
  std::optional<ApiResponse> response = Call(method, target, body, exit_code);
  if (!response) return std::nullopt;
  json parsed = json::parse(response->body, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object()) {
    exit_code =
        Fail(Cat("stratad answered ", method, " ", target,
                 " with something that is not a JSON object: ", response->body.substr(0, 200)),
             kExitError);
    return std::nullopt;
  }
  return parsed;
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
bool Cli::StopFollowing() {
  std::lock_guard lock(follow_mu_);
  stop_ = true;
  if (follow_client_ != nullptr) follow_client_->Stop();
  follow_cv_.notify_all();
  return following_;
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
    following_ = true;
  }
  struct Unregister {
    Cli* cli;
    ~Unregister() {
      std::lock_guard lock(cli->follow_mu_);
      cli->follow_client_ = nullptr;
      cli->following_ = false;
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

// ---- backups, restores, jobs, retention ------------------------------------------------------

namespace {

std::string Str(const json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

// One path segment of a target (ids and names may hold anything).
std::string Segment(const std::string& text) { return EscapeQueryValue(text); }

}  // namespace

bool Cli::Confirm(const std::string& warning, int& exit_code) {
  if (!globals_.in_terminal || in_ == nullptr) {
    err_ << warning << "\n";
    exit_code = Fail("stdin is not a terminal, so nothing can confirm this: pass --yes to go ahead",
                     kExitError);
    return false;
  }
  err_ << warning << " Continue? [y/N] ";
  err_.flush();
  std::string answer;
  if (!std::getline(*in_, answer)) answer.clear();
  answer = util::ToLower(util::Trim(answer));
  if (answer == "y" || answer == "yes") return true;
  exit_code = Fail("cancelled: nothing was changed", kExitError);
  return false;
}

int Cli::FollowJob(json job) {
  const std::string id = Str(job, "id");
  if (id.empty()) return Fail("stratad's answer names no job", kExitError);
  ProgressDisplay display(out_, globals_.out_terminal && !globals_.json, globals_.columns);
  {
    std::lock_guard lock(follow_mu_);
    following_ = true;
    follow_client_ = client_.get();
  }
  struct Unregister {
    Cli* cli;
    ~Unregister() {
      std::lock_guard lock(cli->follow_mu_);
      cli->follow_client_ = nullptr;
      cli->following_ = false;
    }
  } unregister{this};

  if (!globals_.json) display.Update(job);
  // The stream first; polling as before when it fails.
  if (!JobFinished(job) && !Stopping()) StreamJob(id, job, display);
  auto last_answer = std::chrono::steady_clock::now();
  bool complained = false;
  while (!JobFinished(job) && !Stopping()) {
    {
      std::unique_lock lock(follow_mu_);
      follow_cv_.wait_for(lock, globals_.poll_interval, [&] { return stop_.load(); });
    }
    if (Stopping()) break;
    const std::string target = "/api/v1/jobs/" + Segment(id);
    absl::StatusOr<ApiResponse> response = Send("GET", target, "");
    if (Stopping()) break;
    std::string trouble;
    if (!response.ok()) {
      trouble = std::string(response.status().message());
    } else if (response->status >= 500) {
      trouble = ErrorMessage(response->status, response->body);
    } else if (response->status < 200 || response->status >= 300) {
      display.Break();
      return Fail(ErrorMessage(response->status, response->body), kExitError);
    }
    if (!trouble.empty()) {
      if (std::chrono::steady_clock::now() - last_answer > globals_.unreachable_grace) {
        display.Break();
        return Fail(Cat("lost contact with stratad at ", globals_.server, " while following job ",
                        id, ": ", trouble),
                    kExitUnreachable);
      }
      if (!complained) {
        display.Break();
        err_ << "strata: no answer from stratad (" << trouble << "); still trying\n";
        err_.flush();
        complained = true;
      }
      continue;
    }
    json next = json::parse(response->body, nullptr, /*allow_exceptions=*/false);
    if (!next.is_object() || Str(next, "id") != id) {
      display.Break();
      return Fail(Cat("stratad answered ", target,
                      " with something that is not the job: ", response->body.substr(0, 200)),
                  kExitError);
    }
    last_answer = std::chrono::steady_clock::now();
    complained = false;
    job = std::move(next);
    if (!globals_.json) display.Update(job);
  }
  if (!JobFinished(job)) {
    // On a terminal the line below the frame holds the echoed "^C".
    if (globals_.out_terminal && !globals_.json) out_ << "\n" << std::flush;
    return Fail(Cat("stopped following job ", id, "; it goes on in stratad ('strata jobs wait ", id,
                    "' follows it again)"),
                kExitInterrupted);
  }
  if (globals_.json) {
    out_ << job.dump(2) << "\n";
  } else {
    out_ << "\n" << RenderJobOutcome(job);
  }
  out_.flush();
  return JobSucceeded(job) ? kExitOk : kExitError;
}

bool Cli::StreamJob(const std::string& id, json& job, ProgressDisplay& display) {
  SseParser parser;
  int status = 0;
  bool broken = false;  // an event that is not the job: trust the polling instead
  auto on_event = [&](const SseEvent& event) {
    if (event.event != "job") return !Stopping();
    json next = json::parse(event.data, nullptr, /*allow_exceptions=*/false);
    if (!next.is_object() || Str(next, "id") != id) {
      broken = true;
      return false;
    }
    job = std::move(next);
    if (!globals_.json) display.Update(job);
    return !JobFinished(job) && !Stopping();
  };
  // Ending it ourselves (the job ended) is Cancelled: `status` and `job` tell more.
  client_
      ->GetStreaming(
          "/api/v1/jobs/" + Segment(id) + "/stream", {{"Accept", "text/event-stream"}},
          [&](int answer_status, const std::string&) {
            status = answer_status;
            return status == 200 && !Stopping();
          },
          [&](const char* data, size_t size) {
            return parser.Feed(data, size, on_event) && !Stopping();
          })
      .IgnoreError();
  // Whatever went wrong (an older stratad without job streams answers 404), polling still
  // knows: it reports errors as before.
  return status == 200 && !broken && JobFinished(job);
}

int Cli::Backups(const BackupsOptions& options) {
  if (options.limit && *options.limit < 1) {
    return Fail(Cat("--limit must be 1 or more, not ", *options.limit), kExitError);
  }
  BackupsOptions query = options;
  if (!query.vm.empty() && !IsUuid(query.vm)) {
    // The server filters by VM UUID: look the name up in the inventory.
    int code = kExitOk;
    std::optional<json> vm = CallJson("GET", "/api/v1/vms/" + Segment(query.vm), "", code);
    if (!vm) return code;
    if (Str(*vm, "uuid").empty()) return Fail(Cat("VM '", query.vm, "' has no UUID"), kExitError);
    query.vm = Str(*vm, "uuid");
  }
  return List(BackupsTarget(query), RenderBackups);
}

int Cli::BackupShow(const std::string& id) {
  int code = kExitOk;
  std::optional<json> backup = CallJson("GET", "/api/v1/backups/" + Segment(id), "", code);
  if (!backup) return code;
  out_ << (globals_.json ? backup->dump(2) + "\n" : RenderBackupDetail(*backup));
  return kExitOk;
}

int Cli::BackupDelete(const std::string& id, bool yes) {
  int code = kExitOk;
  std::optional<json> backup = CallJson("GET", "/api/v1/backups/" + Segment(id), "", code);
  if (!backup) return code;
  const std::string backup_id = Str(*backup, "id").empty() ? id : Str(*backup, "id");
  if (!yes) {
    std::set<std::string> vms;
    size_t disks = 0;
    if (backup->contains("items") && (*backup)["items"].is_array()) {
      for (const json& item : (*backup)["items"]) {
        vms.insert(Str(item, "vm_uuid").empty() ? Str(item, "vm_name") : Str(item, "vm_uuid"));
        ++disks;
      }
    }
    const std::string warning =
        Cat("This deletes backup '", Str(*backup, "name"), "' (", backup_id, ", ",
            ShortTime(Str(*backup, "started_at")), ", ", disks,
            disks == 1 ? " disk of " : " disks of ", vms.size(), vms.size() == 1 ? " VM" : " VMs",
            ") and the snapshots that no other backup uses.");
    if (!Confirm(warning, code)) return code;
  }
  std::optional<json> answer =
      CallJson("DELETE", "/api/v1/backups/" + Segment(backup_id), "", code);
  if (!answer) return code;
  out_ << (globals_.json ? answer->dump(2) + "\n" : RenderBackupDeletion(*answer));
  return kExitOk;
}

int Cli::Prune(const PruneOptions& options) {
  if (options.policy.empty()) return Fail("prune needs --policy NAME", kExitError);
  int code = kExitOk;
  std::optional<json> answer =
      CallJson("POST", "/api/v1/backups/prune", PruneBody(options).dump(), code);
  if (!answer) return code;
  out_ << (globals_.json ? answer->dump(2) + "\n" : RenderPrunePlan(*answer));
  const json errors = answer->value("errors", json::array());
  if (errors.is_array() && !errors.empty()) {
    out_.flush();
    return Fail(Cat("pruning policy '", options.policy, "' met ", errors.size(),
                    errors.size() == 1 ? " error" : " errors"),
                kExitError);
  }
  return kExitOk;
}

int Cli::Backup(const BackupOptions& options) {
  if (options.consistency != "crash" && options.consistency != "pause" &&
      options.consistency != "quiesce") {
    return Fail(
        Cat("--consistency must be crash, pause or quiesce, not '", options.consistency, "'"),
        kExitError);
  }
  if (!options.fallback.empty() && options.fallback != "pause" && options.fallback != "crash") {
    return Fail(Cat("--fallback must be pause or crash, not '", options.fallback, "'"), kExitError);
  }
  if (options.vms.empty() && options.host.empty() && options.select.empty() &&
      options.cluster.empty()) {
    return Fail("nothing to back up: name VMs, or pass --host, --select or --cluster", kExitError);
  }
  int code = kExitOk;
  std::optional<json> answer =
      CallJson("POST", "/api/v1/backups", BackupBody(options).dump(), code);
  if (!answer) return code;
  const json job = answer->value("job", json::object());
  const std::string started =
      Cat("Backup '", Str(*answer, "backup_name"), "' (", Str(*answer, "backup_id"),
          ") started as job ", Str(job, "id"), ".\n");
  return StartedJob(*answer, job, started, options.wait);
}

int Cli::StartedJob(const json& answer, const json& job, const std::string& started, bool wait) {
  if (!wait) {
    if (globals_.json) {
      out_ << answer.dump(2) << "\n";
    } else {
      out_ << started << "Follow it with: strata jobs wait " << Str(job, "id") << "\n";
    }
    return kExitOk;
  }
  if (!globals_.json) out_ << started;
  return FollowJob(job);
}

std::optional<std::string> Cli::DescribeInPlaceRestore(const RestoreOptions& options,
                                                       int& exit_code) {
  // The VM as it is now (it may be gone).
  std::string vm_name = options.vm;
  std::string vm_uuid = IsUuid(options.vm) ? options.vm : "";
  std::string host = options.host;
  bool vm_known = false;
  {
    const std::string target = "/api/v1/vms/" + Segment(options.vm);
    absl::StatusOr<ApiResponse> response = Send("GET", target, "");
    if (!response.ok()) {
      exit_code = TransportFailure(response.status());
      return std::nullopt;
    }
    if (response->status != 404) {
      if (response->status < 200 || response->status >= 300) {
        exit_code = Fail(ErrorMessage(response->status, response->body), kExitError);
        return std::nullopt;
      }
      const json vm = json::parse(response->body, nullptr, /*allow_exceptions=*/false);
      vm_known = true;
      if (!Str(vm, "name").empty()) vm_name = Str(vm, "name");
      if (!Str(vm, "uuid").empty()) vm_uuid = Str(vm, "uuid");
      if (host.empty()) host = Str(vm, "host");
    }
  }
  // The backup it would come from.
  std::optional<json> backup;
  if (!options.backup.empty()) {
    backup = CallJson("GET", "/api/v1/backups/" + Segment(options.backup), "", exit_code);
    if (!backup) return std::nullopt;
  } else if (!vm_uuid.empty()) {
    std::optional<json> list =
        CallJson("GET", BackupsTarget({"succeeded", vm_uuid, 1}), "", exit_code);
    if (!list) return std::nullopt;
    const json backups = list->value("backups", json::array());
    if (!backups.is_array() || backups.empty() || Str(backups[0], "id").empty()) {
      exit_code = Fail(Cat("no backup holds VM '", options.vm, "'"), kExitError);
      return std::nullopt;
    }
    backup = CallJson("GET", "/api/v1/backups/" + Segment(Str(backups[0], "id")), "", exit_code);
    if (!backup) return std::nullopt;
  }
  std::vector<std::string> disks = options.disks;
  if (disks.empty() && backup && backup->contains("items") && (*backup)["items"].is_array()) {
    for (const json& item : (*backup)["items"]) {
      const bool ours =
          vm_uuid.empty() ? Str(item, "vm_name") == options.vm : Str(item, "vm_uuid") == vm_uuid;
      const std::string disk = Str(item, "disk_target");
      if (ours && !disk.empty() && std::find(disks.begin(), disks.end(), disk) == disks.end()) {
        disks.push_back(disk);
      }
    }
  }
  return InPlaceRestoreWarning(vm_name, vm_known, host, disks, backup ? Str(*backup, "name") : "",
                               backup ? Str(*backup, "started_at") : "");
}

int Cli::Restore(const RestoreOptions& options) {
  if (options.vm.empty()) return Fail("restore needs --vm VM", kExitError);
  int code = kExitOk;
  if (options.as_name.empty() && !options.yes) {
    std::optional<std::string> warning = DescribeInPlaceRestore(options, code);
    if (!warning) return code;
    if (!Confirm(*warning, code)) return code;
  }
  std::optional<json> answer =
      CallJson("POST", "/api/v1/restores", RestoreBody(options).dump(), code);
  if (!answer) return code;
  const json job = answer->value("job", json::object());
  const std::string started =
      Cat("Restore of VM '", options.vm, "' started as job ", Str(job, "id"), ".\n");
  return StartedJob(*answer, job, started, options.wait);
}

int Cli::Jobs(const JobsOptions& options) {
  if (options.limit && *options.limit < 1) {
    return Fail(Cat("--limit must be 1 or more, not ", *options.limit), kExitError);
  }
  return List(JobsTarget(options), RenderJobs);
}

int Cli::JobShow(const std::string& id) {
  int code = kExitOk;
  std::optional<json> job = CallJson("GET", "/api/v1/jobs/" + Segment(id), "", code);
  if (!job) return code;
  out_ << (globals_.json ? job->dump(2) + "\n" : RenderJob(*job));
  return kExitOk;
}

int Cli::JobWait(const std::string& id) {
  int code = kExitOk;
  std::optional<json> job = CallJson("GET", "/api/v1/jobs/" + Segment(id), "", code);
  if (!job) return code;
  return FollowJob(*std::move(job));
}

int Cli::Policies() { return List("/api/v1/policies", RenderPolicies); }

int Cli::PolicySet(const PolicyOptions& options) {
  if (options.name.empty()) return Fail("a policy needs a name", kExitError);
  bool keeps = false;
  for (const auto& [flag, count] :
       {std::pair<const char*, std::optional<int>>{"--keep-last", options.keep_last},
        {"--keep-hourly", options.keep_hourly},
        {"--keep-daily", options.keep_daily},
        {"--keep-weekly", options.keep_weekly},
        {"--keep-monthly", options.keep_monthly}}) {
    if (count && *count < 0) return Fail(Cat(flag, " must be 0 or more, not ", *count), kExitError);
    keeps = keeps || count.value_or(0) > 0;
  }
  if (!keeps) {
    return Fail(Cat("policy '", options.name,
                    "' would keep no backup: pass at least one of --keep-last, --keep-hourly, "
                    "--keep-daily, --keep-weekly, --keep-monthly with a count above 0"),
                kExitError);
  }
  int code = kExitOk;
  std::optional<json> policy = CallJson("PUT", "/api/v1/policies/" + Segment(options.name),
                                        PolicyBody(options).dump(), code);
  if (!policy) return code;
  if (globals_.json) {
    out_ << policy->dump(2) << "\n";
  } else {
    out_ << RenderPolicies(*policy);
  }
  return kExitOk;
}

int Cli::PolicyDelete(const std::string& name) {
  int code = kExitOk;
  std::optional<json> answer = CallJson("DELETE", "/api/v1/policies/" + Segment(name), "", code);
  if (!answer) return code;
  if (globals_.json) {
    out_ << answer->dump(2) << "\n";
  } else {
    out_ << "Deleted policy '" << (Str(*answer, "deleted").empty() ? name : Str(*answer, "deleted"))
         << "'.\n";
  }
  return kExitOk;
}

}  // namespace strata::cli
