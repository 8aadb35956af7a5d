// Marks hosts unreachable when their heartbeats stop: a thread that calls
// HostRegistry::CheckHeartbeats(clock()) every `period`. Hosts become reachable again through the
// registry itself (their next heartbeat or registration).
//
// Threading: Start/Stop from one owning thread; Tick may be called from any thread (tests call
// it directly with a fake clock instead of starting the thread).
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "strata/server/host_registry.h"

namespace strata::server {

class HostMonitor {
 public:
  // `clock` empty: the registry's clock.
  HostMonitor(HostRegistry& registry, std::chrono::milliseconds period, Clock clock = {});
  ~HostMonitor();  // Stop()
  HostMonitor(const HostMonitor&) = delete;
  HostMonitor& operator=(const HostMonitor&) = delete;

  void Start();
  void Stop();
  // One check now; returns the hosts it marked unreachable.
  std::vector<std::string> Tick();

 private:
  HostRegistry& registry_;
  const std::chrono::milliseconds period_;
  Clock clock_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace strata::server
