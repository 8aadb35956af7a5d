// Starts a real stratad for the multi-process tests, on the test's own database, and reads the
// ports it listens on from its start-up line.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "strata/util/child_process.h"

namespace strata::testing {

struct RunningStratad {
  std::unique_ptr<util::ChildProcess> process;
  int grpc_port = 0;
  int http_port = 0;
};

// `grpc_port` 0 picks any port; a non-zero one must be the port stratad reports. The log is
// appended to <work>/stratad.log so that restarts keep the earlier runs' lines.
inline absl::StatusOr<RunningStratad> StartStratad(const std::string& binary,
                                                   const std::filesystem::path& work, int grpc_port,
                                                   int heartbeat_interval_ms,
                                                   int heartbeat_timeout_ms,
                                                   std::chrono::milliseconds timeout) {
  util::ChildProcessOptions options;
  options.log_path = (work / "stratad.log").string();
  options.append_log = true;
  auto process = util::ChildProcess::Start(
      {binary, "--db", (work / "catalog.db").string(), "--grpc-listen",
       "127.0.0.1:" + std::to_string(grpc_port), "--http-listen", "127.0.0.1:0",
       "--heartbeat-interval-ms", std::to_string(heartbeat_interval_ms), "--heartbeat-timeout-ms",
       std::to_string(heartbeat_timeout_ms)},
      options);
  if (!process.ok()) return process.status();
  RunningStratad running;
  running.process = *std::move(process);
  auto groups = running.process->WaitForLine(
      R"(^stratad: listening grpc=127\.0\.0\.1:(\d+) http=127\.0\.0\.1:(\d+))", timeout);
  if (!groups.ok()) return groups.status();
  running.grpc_port = std::stoi((*groups)[1]);
  running.http_port = std::stoi((*groups)[2]);
  if (grpc_port != 0 && running.grpc_port != grpc_port) {
    return absl::FailedPreconditionError("stratad listens on gRPC port " +
                                         std::to_string(running.grpc_port) + ", not on " +
                                         std::to_string(grpc_port));
  }
  return running;
}

}  // namespace strata::testing
