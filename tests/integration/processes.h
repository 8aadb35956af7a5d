// Starts the real stratad and strata-agent processes of the multi-process tests and benchmarks,
// and reads where they listen from their start-up lines.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

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

struct RunningAgent {
  std::unique_ptr<util::ChildProcess> process;
  std::string endpoint;  // "127.0.0.1:PORT" its gRPC services listen on
  std::string host_id;   // as it names itself
};

// `strata-agent run <run_args...>` (binary first in `argv`), waited for until it serves. The
// error carries the end of its log: why an agent did not start is in there.
inline absl::StatusOr<RunningAgent> StartAgentProcess(const std::vector<std::string>& argv,
                                                      const util::ChildProcessOptions& options,
                                                      std::chrono::milliseconds timeout) {
  auto process = util::ChildProcess::Start(argv, options);
  if (!process.ok()) return process.status();
  RunningAgent running;
  running.process = *std::move(process);
  auto groups = running.process->WaitForLine(
      R"(^strata-agent: listening grpc=(127\.0\.0\.1:\d+) host=(\S+))", timeout);
  if (!groups.ok()) {
    return absl::Status(groups.status().code(),
                        std::string(groups.status().message()) + "\n" + running.process->Log(3000));
  }
  running.endpoint = (*groups)[1];
  running.host_id = (*groups)[2];
  return running;
}

}  // namespace strata::testing
