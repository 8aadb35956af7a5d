// Small helpers the multi-process tests and benchmarks share.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>

namespace strata::testing {

// Polls `condition` every `step` until it holds (true) or `timeout` passed (its last answer).
inline bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                      std::chrono::milliseconds step = std::chrono::milliseconds(50)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(step);
  }
  return condition();
}

// A loopback port free now (bound to 0, read back, released), for processes that must know each
// other's endpoints before they start (cluster members). 0 when none could be had.
inline int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// A fresh (emptied) directory <tmp>/<prefix>-<pid>-<name>: one per test process and test, so
// that tests running side by side never share files, and a failed test's logs can be kept.
inline std::filesystem::path FreshWorkDir(const std::string& prefix, const std::string& name) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    (prefix + "-" + std::to_string(getpid()) + "-" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// The end of a FreshWorkDir: removed after a test that passed, kept (and named) after one that
// failed, so that its logs can be read.
inline void RemoveWorkDirUnlessFailed(const std::filesystem::path& dir, bool failed) {
  if (failed) {
    std::printf("logs kept in %s\n", dir.c_str());
  } else if (!dir.empty()) {
    std::filesystem::remove_all(dir);
  }
}

}  // namespace strata::testing
