// The commands of the `strata` CLI, over stratad's REST API (docs/api.md). apps/strata/main.cc
// parses the flags into these option structs and calls Cli; everything else lives here so that
// it can be tested against an in-process HTTP server.
//
// Exit codes: 0 success; 1 the server answered an error (printed as "strata: <message>"), the
// input is invalid, a confirmation was refused, or a followed job failed or backed up only some
// of its VMs; 2 stratad cannot be reached; 3 a graph query matched nothing; 130 following a job
// was interrupted (Ctrl-C; the job goes on in stratad).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <istream>
#include <memory>
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
inline constexpr int kExitInterrupted = 130;

struct GlobalOptions {
  std::string server = kDefaultServer;  // see ResolveServer
  bool json = false;                    // print the server's JSON instead of tables
  // Whether stdout is a terminal (main: isatty): a followed job is then drawn as a live display
  // redrawn in place (unless `json`); otherwise it prints one line per change.
  bool out_terminal = false;
  int columns = 0;  // the terminal's width; 0: unknown
  // Whether stdin is a terminal: only then may a command ask for a confirmation; otherwise it
  // needs --yes.
  bool in_terminal = false;
  // How often a followed job is asked for (GET /api/v1/jobs/{id}).
  std::chrono::milliseconds poll_interval{250};
  // How long following a job goes on without an answer from stratad before giving up (exit 2).
  std::chrono::milliseconds unreachable_grace{30000};
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

struct BackupsOptions {
  std::string state;  // running, succeeded or failed
  std::string vm;     // VM UUID, or the name of a VM in the inventory
  std::optional<int> limit;
};

struct JobsOptions {
  std::string state;  // queued, running, succeeded or failed
  std::string kind;   // backup, restore, ...
  std::optional<int> limit;
};

struct BackupOptions {
  std::vector<std::string> vms;       // names or UUIDs
  std::string host;                   // every VM of this host
  std::string select;                 // every VM the graph selector matches
  std::string cluster;                // every VM of the cluster's hosts
  std::string consistency = "crash";  // crash, pause or quiesce
  std::string fallback;               // "", pause or crash: when the consistency cannot be had
  std::string vm_snapshot;            // "", auto, internal, external or none
  std::string name;                   // empty: the server names it
  std::string policy;                 // retention policy
  bool verify = false;                // read the copies back and compare checksums
  bool wait = true;                   // follow the job to its end (--no-wait: false)
};

struct RestoreOptions {
  std::string backup;   // id or name; empty: the newest backup holding the VM
  std::string vm;       // name or UUID, as backed up
  std::string as_name;  // a new VM of this name; empty: in place (overwrites the VM's disks)
  std::vector<std::string> disks;  // targets (vda, ...); empty: every disk
  bool verify = false;
  std::optional<bool> start;  // start the VM afterwards; unset: the server's default
  std::string host;           // target host; empty: the host that took the backup
  std::string target_dir;     // where the disks of a new VM go; empty: the server's choice
  bool yes = false;           // no confirmation for an in-place restore
  bool wait = true;
};

struct PruneOptions {
  std::string policy;
  bool dry_run = false;
};

struct PolicyOptions {
  std::string name;
  // How many backups to keep: the newest N, and the newest of each of the last N hours, days,
  // weeks, months. Unset counts are sent as 0 (the PUT replaces the whole policy).
  std::optional<int> keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly;
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
std::string BackupsTarget(const BackupsOptions& options);
std::string JobsTarget(const JobsOptions& options);
// The bodies of POST /api/v1/backups, POST /api/v1/restores, POST /api/v1/backups/prune and
// PUT /api/v1/policies/{name}.
nlohmann::json BackupBody(const BackupOptions& options);
nlohmann::json RestoreBody(const RestoreOptions& options);
nlohmann::json PruneBody(const PruneOptions& options);
nlohmann::json PolicyBody(const PolicyOptions& options);
// What an in-place restore overwrites, for its confirmation:
// "This stops VM 'web01' on host 'host-a' and replaces its disks vda with their copies from
// backup 'nightly' (2026-11-26 08:00)." `vm_known`: the VM is in the inventory (otherwise the
// sentence says it is not); `backup_name` empty: "the newest backup holding it".
std::string InPlaceRestoreWarning(const std::string& vm, bool vm_known, const std::string& host,
                                  const std::vector<std::string>& disks,
                                  const std::string& backup_name, const std::string& backup_time);

// The message of an error answer: the JSON error's message, else "HTTP <status>: <body start>".
std::string ErrorMessage(int status, const std::string& body);

// ---- commands --------------------------------------------------------------------------------

class ProgressDisplay;

class Cli {
 public:
  // `in`: where confirmations are read from (with `globals.in_terminal`); nullptr: nothing can
  // confirm, commands that need a confirmation need --yes.
  Cli(GlobalOptions globals, std::ostream& out, std::ostream& err, std::istream* in = nullptr);
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
  // Thread-safe (call it from a signal-waiting thread): ends a running or future --follow of
  // events, or the following of a job (which then returns kExitInterrupted). Returns whether a
  // follow was running: when not, a caller may rather end the process.
  bool StopFollowing();

  // Backups, restores, jobs, retention. A followed job (Backup and Restore unless --no-wait,
  // JobWait) is polled every poll_interval until it ends, drawn by a ProgressDisplay (nothing
  // with --json), then summed up (RenderJobOutcome; the final job's JSON with --json). Exit 0
  // only when it succeeded; 1 when it failed or a backup was partial.
  int Backups(const BackupsOptions& options);
  int BackupShow(const std::string& id);
  // Asks for confirmation unless `yes` (refuses when stdin is not a terminal).
  int BackupDelete(const std::string& id, bool yes);
  // Exit 1 when the prune reports errors.
  int Prune(const PruneOptions& options);
  int Backup(const BackupOptions& options);
  // An in-place restore (no --as) asks for confirmation unless --yes, naming what it overwrites
  // (it looks up the VM and the backup first), and refuses when stdin is not a terminal.
  int Restore(const RestoreOptions& options);
  int Jobs(const JobsOptions& options);
  int JobShow(const std::string& id);
  int JobWait(const std::string& id);
  int Policies();
  int PolicySet(const PolicyOptions& options);
  int PolicyDelete(const std::string& name);

 private:
  // Sends the request; on a transport failure or an error answer prints the message and returns
  // nullopt with `exit_code` set.
  std::optional<ApiResponse> Call(const std::string& method, const std::string& target,
                                  const std::string& body, int& exit_code);
  // Prints why Send failed; returns the exit code (1: invalid server URL, 2: unreachable).
  int TransportFailure(const absl::Status& status);
  // Call, and the answer must be a JSON object.
  std::optional<nlohmann::json> CallJson(const std::string& method, const std::string& target,
                                         const std::string& body, int& exit_code);
  // Sends the request as it is: InvalidArgument for an invalid server URL, Unavailable when
  // stratad cannot be reached, else the answer whatever its status.
  absl::StatusOr<ApiResponse> Send(const std::string& method, const std::string& target,
                                   const std::string& body);
  // Follows a job from its first snapshot (the POST's answer, or a GET) to its end:
  //
  //   job ──poll every poll_interval──> queued, running ... ──> succeeded | failed ──> summary
  //    │ 5xx or unreachable: retry until unreachable_grace has passed (then exit 2)
  //    │ another error answer: exit 1;  StopFollowing(): exit 130, the job goes on in stratad
  //
  // Prints and returns as described above.
  int FollowJob(nlohmann::json job);
  // Follows the job on GET /api/v1/jobs/{id}/stream, drawing each event into `display`. False
  // when the stream failed (or the server has none) before the job ended: the caller polls.
  bool StreamJob(const std::string& id, nlohmann::json& job, ProgressDisplay& display);
  // After POST of a backup or restore: prints `started` and follows the job (`wait`), or prints
  // the answer (--json) or how to follow it.
  int StartedJob(const nlohmann::json& answer, const nlohmann::json& job,
                 const std::string& started, bool wait);
  // Prints `warning` + " Continue? [y/N] " on stderr and reads the answer. False with
  // `exit_code` set when it is refused or cannot be asked (stdin is not a terminal).
  bool Confirm(const std::string& warning, int& exit_code);
  // The warning of an in-place restore; nullopt with `exit_code` set on failure.
  std::optional<std::string> DescribeInPlaceRestore(const RestoreOptions& options, int& exit_code);
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
  bool following_ = false;              // guarded by follow_mu_

  GlobalOptions globals_;
  std::ostream& out_;
  std::ostream& err_;
  std::istream* in_;
  std::unique_ptr<ApiClient> client_;
};

}  // namespace strata::cli
