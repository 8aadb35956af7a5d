// GCC 12 with -fsanitize=address reports a false maybe-uninitialized inside std::regex's
// std::function copies; the warning is computed after inlining, so it is off for this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "strata/util/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "strata/util/strings.h"

extern char** environ;

namespace strata::util {
namespace {

std::string KeyOf(const std::string& entry) { return entry.substr(0, entry.find('=')); }

std::vector<std::string> MergedEnvironment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry(*e);
    bool replaced = false;
    for (const std::string& x : extra) replaced = replaced || KeyOf(x) == KeyOf(entry);
    if (!replaced) env.push_back(std::move(entry));
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

std::string ReadFrom(const std::string& path, size_t offset) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(0, std::ios::end);
  const auto size = static_cast<size_t>(in.tellg());
  if (offset >= size) return {};
  in.seekg(static_cast<std::streamoff>(offset));
  std::string data(size - offset, '\0');
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<size_t>(in.gcount()));
  return data;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::vector<std::string>& argv, const ChildProcessOptions& options) {
  if (argv.empty()) return absl::InvalidArgumentError("cannot start an empty command");
  if (options.log_path.empty()) {
    return absl::InvalidArgumentError(Cat("no log file given for '", argv[0], "'"));
  }
  const int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (options.append_log ? 0 : O_TRUNC);
  const int log_fd = open(options.log_path.c_str(), flags, 0644);
  if (log_fd < 0) {
    return absl::FailedPreconditionError(Cat("cannot open log file '", options.log_path, "' for '",
                                             argv[0], "': ", std::string(strerror(errno))));
  }
  // Lines written before this start are not this child's (measured before the child can write).
  struct stat log_stat {};
  const size_t start_offset =
      fstat(log_fd, &log_stat) == 0 ? static_cast<size_t>(log_stat.st_size) : 0;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, log_fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, log_fd, STDERR_FILENO);

  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const std::vector<std::string> env = MergedEnvironment(options.env);
  std::vector<char*> envp;
  for (const std::string& entry : env) envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);

  pid_t pid = -1;
  const int error =
      posix_spawnp(&pid, argv[0].c_str(), &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(log_fd);
  if (error != 0) {
    return absl::FailedPreconditionError(
        Cat("cannot start '", argv[0], "': ", std::string(strerror(error))));
  }
  auto child = std::unique_ptr<ChildProcess>(new ChildProcess(pid, options.log_path, argv));
  child->scan_offset_ = start_offset;
  return child;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !Reap(false)) {
    kill(pid_, SIGKILL);
    Reap(true);
  }
}

bool ChildProcess::Reap(bool block) {
  if (pid_ <= 0) return true;
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return false;
  if (r == pid_) {
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  pid_ = -1;  // reaped (or not our child any more: ECHILD)
  return true;
}

bool ChildProcess::Running() { return !Reap(false); }

absl::Status ChildProcess::Kill(int signal) {
  if (pid_ <= 0) return absl::OkStatus();
  if (kill(pid_, signal) != 0 && errno != ESRCH) {
    return absl::InternalError(Cat("cannot send signal ", signal, " to '", argv_[0], "' (pid ",
                                   pid_, "): ", std::string(strerror(errno))));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> ChildProcess::Wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!Reap(false)) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return absl::DeadlineExceededError(
          Cat("'", argv_[0], "' (pid ", pid_, ") still running after ", timeout.count(), " ms"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return exit_code_;
}

std::string ChildProcess::Log(size_t max_bytes) const {
  std::string log = ReadFrom(log_path_, 0);
  if (log.size() > max_bytes) log.erase(0, log.size() - max_bytes);
  return log;
}

absl::StatusOr<std::vector<std::string>> ChildProcess::WaitForLine(
    const std::string& pattern, std::chrono::milliseconds timeout) {
  std::regex re;
  try {
    re = std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return absl::InvalidArgumentError(Cat("bad pattern '", pattern, "': ", e.what()));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    // Read the state before the log: output written before the exit is then surely seen.
    const bool running = Running();
    const std::string data = ReadFrom(log_path_, scan_offset_);
    size_t pos = 0;
    for (size_t nl; (nl = data.find('\n', pos)) != std::string::npos; pos = nl + 1) {
      const std::string line = data.substr(pos, nl - pos);
      std::smatch match;
      if (std::regex_search(line, match, re)) {
        scan_offset_ += nl + 1;
        std::vector<std::string> groups;
        for (const auto& group : match) groups.push_back(group.str());
        return groups;
      }
    }
    scan_offset_ += pos;
    if (!running) {
      return absl::FailedPreconditionError(Cat(
          "'", argv_[0], "' exited with code ", exit_code_, " before printing a line matching '",
          pattern, "'; its log (", log_path_, ") ends with:\n", Log(4000)));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return absl::DeadlineExceededError(Cat("'", argv_[0], "' printed no line matching '", pattern,
                                             "' within ", timeout.count(), " ms; its log (",
                                             log_path_, ") ends with:\n", Log(4000)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace strata::util
