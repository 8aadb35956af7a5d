#include "strata/server/host_monitor.h"

namespace strata::server {

HostMonitor::HostMonitor(HostRegistry& registry, std::chrono::milliseconds period, Clock clock)
    : registry_(registry), period_(period), clock_(std::move(clock)) {
  if (!clock_) clock_ = [this] { return registry_.Now(); };
}

HostMonitor::~HostMonitor() { Stop(); }

void HostMonitor::Start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, period_, [this] { return stop_; })) {
      lock.unlock();
      Tick();
      lock.lock();
    }
  });
}

void HostMonitor::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::vector<std::string> HostMonitor::Tick() { return registry_.CheckHeartbeats(clock_()); }

}  // namespace strata::server
