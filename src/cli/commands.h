// The commands of the `strata` CLI, over stratad's REST API (docs/api.md). apps/strata/main.cc
// parses the flags into these option structs and calls Cli; everything else lives here so that
// it can be tested against an in-process HTTP server.
//
// Exit codes: 0 success; 1 the server answered an error (printed as "strata: <message>") or the
// input is invalid; 2 stratad cannot be reached; 3 a graph query matched nothing.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "api_client.h"
#include "nlohmann/json.hpp"

namespace strata::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUnreachable = 2;
inline constexpr int kExitNothingFound = 3;

struct GlobalOptions {
  std::string server = kDefaultServer;  // see ResolveServer
  bool json = false;                    // print the server's JSON instead of tables
};

struct VmsOptions {
  std::string host;
  std::string name;  // glob
  std::string state;
};

struct TreeOptions {
  std::vector<std::string> vms;  // names (globs allowed) or UUIDs; empty: every VM
  std::string to = "storage_system";
};

struct FindOptions {
  std::string selector;
  std::string direction = "down";  // down, up or none
  std::string to;                  // node type; empty: every node reached
  std::optional<int> depth;
  bool tree = false;  // the server's text tree instead of a node table
};

struct EventsOptions {
  std::optional<int64_t> after;
  std::optional<int> limit;
  std::string host;
  // --follow: stream /api/v1/events/stream until StopFollowing() (SIGINT), reconnecting with
  // Last-Event-ID after a dropped connection. Without `after` the stream starts at the newest
  // event.
  bool follow = false;
  // Reconnection back-off: the first delay (or the server's "retry:", when it sends one),
  // doubling up to the second.
  std::chrono::milliseconds reconnect_initial{250};
  std::chrono::milliseconds reconnect_max{5000};
  // A stream silent this long counts as dropped (stratad sends a keepalive every 2 s).
  std::chrono::milliseconds stream_read_timeout{10000};
};

struct BackupOptions {
  std::vector<std::string> vms;
  std::string name;
  std::string consistency;  // crash, pause or quiesce; empty: the server's default
  std::string policy;
};

struct RestoreOptions {
  std::string vm;
  std::string backup;       // id or name; empty: the newest backup holding the VM
  std::string target_host;  // empty: where the VM is
};

// ---- requests (exposed for tests) ------------------------------------------------------------

// Percent-encodes everything but RFC 3986 unreserved characters.
std::string EscapeQueryValue(const std::string& value);
// "?k=v&k2=v2" from the pairs whose value is not empty ("" when none).
std::string QueryString(const std::vector<std::pair<std::string, std::string>>& params);

std::string VmsTarget(const VmsOptions& options);
std::string GraphTarget(const std::string& select, const std::string& direction,
                        const std::string& to, std::optional<int> depth, const std::string& format);
// The selector for one VM argument: "id=vm:<uuid>" for a UUID, else "type=vm name=<name>" (spaces
// and commas, which separate selector terms, become the glob '?').
std::string VmSelector(const std::string& vm);
std::vector<std::string> TreeTargets(const TreeOptions& options, bool json);
std::string FindTarget(const FindOptions& options, bool json);
std::string EventsTarget(const EventsOptions& options);
// The stream's target: `after` and `host` (the reconnections send Last-Event-ID instead).
std::string EventStreamTarget(const EventsOptions& options);
nlohmann::json BackupBody(const BackupOptions& options);
nlohmann::json RestoreBody(const RestoreOptions& options);

// The message of an error answer: the JSON error's message, else "HTTP <status>: <body start>".
std::string ErrorMessage(int status, const std::string& body);

// ---- commands --------------------------------------------------------------------------------

class Cli {
 public:
  Cli(GlobalOptions globals, std::ostream& out, std::ostream& err);
  ~Cli();

  int Hosts();
  int Vms(const VmsOptions& options);
  int Tree(const TreeOptions& options);
  int Find(const FindOptions& options);
  // Lists events, or follows the stream when `options.follow`: prints each event as a table row
  // (one compact JSON object per line with --json) as it arrives, reconnects after a dropped
  // connection without printing an event twice, and returns kExitOk once StopFollowing() is
  // called. Exit 2 when the first connection fails, 1 on an error answer other than 5xx.
  int Events(const EventsOptions& options);
  // Thread-safe (call it from a signal-waiting thread): ends a running or future --follow.
  void StopFollowing();
  int Backups();
  int Jobs();
  int Backup(const BackupOptions& options);
  int Restore(const RestoreOptions& options);

 private:
  // Sends the request; on a transport failure or an error answer prints the message and returns
  // nullopt with `exit_code` set.
  std::optional<ApiResponse> Call(const std::string& method, const std::string& target,
                                  const std::string& body, int& exit_code);
  // GET of a JSON listing, printed as JSON or through `render`.
  int List(const std::string& target, std::string (*render)(const nlohmann::json&));
  int Fail(const std::string& message, int code);
  void PrintJson(const std::string& body);
  int Follow(const EventsOptions& options);
  bool Stopping() const { return stop_.load(); }

  std::mutex follow_mu_;
  std::condition_variable follow_cv_;
  std::atomic<bool> stop_{false};
  ApiClient* follow_client_ = nullptr;  // guarded by follow_mu_

  GlobalOptions globals_;
  std::ostream& out_;
  std::ostream& err_;
  std::unique_ptr<ApiClient> client_;
};

}  // namespace strata::cli
