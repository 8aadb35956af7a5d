// A long-running child process (a daemon under test, a server a benchmark drives): started
// without a shell, its stdout and stderr appended to a log file, with a way to wait until it
// prints a line (e.g. "stratad: listening grpc=127.0.0.1:41234 http=127.0.0.1:41235").
//
// Threading: one ChildProcess is used from one thread at a time. Ownership: the object owns the
// child; the destructor kills it (SIGKILL) and reaps it when it is still running.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace strata::util {

struct ChildProcessOptions {
  // Where stdout and stderr go (created, or truncated unless `append_log`). Required.
  std::string log_path{};
  bool append_log = false;
  // Extra environment entries, "KEY=VALUE", added to (or replacing in) the parent's environment.
  std::vector<std::string> env{};
};

class ChildProcess {
 public:
  // Starts argv[0] (searched in PATH when it has no '/') with the arguments. Fails when the log
  // file cannot be opened or the program cannot be started (FailedPrecondition naming it).
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(const std::vector<std::string>& argv,
                                                             const ChildProcessOptions& options);

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  const std::vector<std::string>& argv() const { return argv_; }

  // Waits until a complete line of the log matches `pattern` (ECMAScript regex, searched
  // anywhere in the line) and returns the whole match followed by its capture groups. Lines are
  // consumed: the next call looks only at lines after the one that matched. DeadlineExceeded
  // after `timeout`, FailedPrecondition when the process exits first; both quote the log's tail.
  absl::StatusOr<std::vector<std::string>> WaitForLine(const std::string& pattern,
                                                       std::chrono::milliseconds timeout);

  // Sends `signal` (no-op returning OK when the child has already been reaped).
  absl::Status Kill(int signal);

  // Waits for the child to end and returns its exit code (128 + signal number when killed).
  // DeadlineExceeded when it is still running after `timeout`.
  absl::StatusOr<int> Wait(std::chrono::milliseconds timeout);

  // True until the child has exited (reaps it when it has).
  bool Running();

  // The whole log, or its last `max_bytes`.
  std::string Log(size_t max_bytes = 1 << 20) const;

 private:
  ChildProcess(pid_t pid, std::string log_path, std::vector<std::string> argv)
      : pid_(pid), log_path_(std::move(log_path)), argv_(std::move(argv)) {}
  bool Reap(bool block);

  pid_t pid_ = -1;
  int exit_code_ = -1;
  std::string log_path_;
  std::vector<std::string> argv_;
  size_t scan_offset_ = 0;  // WaitForLine has consumed the log up to here
};

}  // namespace strata::util
