#include "strata/agent/registration.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "change_set_proto.h"
#include "channel.h"
#include "strata/util/strings.h"
#include "strata/v1/server.grpc.pb.h"

namespace strata::agent {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

struct RegistrationClient::Impl {
  Impl(HostServices& s, RegistrationOptions o) : services(s), options(std::move(o)) {
    // Reconnect quickly when stratad comes back (gRPC's default back-off grows to minutes).
    channel = rpc::MakeChannel(options.server, {options.initial_backoff, options.max_backoff});
    stub = v1::AgentRegistry::NewStub(channel);
  }

  // Each call waits for a connected channel first: one failed connect is not a server down.
  void Configure(grpc::ClientContext& context) const {
    const auto deadline = std::chrono::system_clock::now() + options.rpc_timeout;
    rpc::AwaitReady(*channel, deadline);
    context.set_deadline(deadline);
  }

  // Waits for `duration` or Stop(); false when stopping.
  bool Sleep(std::chrono::milliseconds duration) {
    std::unique_lock lock(mutex);
    stop_cv.wait_for(lock, duration, [&] { return stopping; });
    return !stopping;
  }

  bool Stopping() {
    std::lock_guard lock(mutex);
    return stopping;
  }

  void ReportUnreachable(const std::string& what, const grpc::Status& status) {
    if (!unreachable_logged) {
      spdlog::warn("stratad at {}: {} failed: {}; retrying with back-off up to {} ms",
                   options.server, what, status.error_message(), options.max_backoff.count());
      unreachable_logged = true;
    }
  }

  bool Register() {
    v1::RegisterRequest request;
    const AgentConfig& config = services.config();
    request.set_host_id(config.host_id);
    request.set_cluster(config.cluster);
    request.set_endpoint(services.endpoint());
    for (const LoadedPlugin& loaded : services.plugins().plugins()) {
      v1::PluginInfo* info = request.add_plugins();
      info->set_kind(std::string(plugin::PluginKindName(loaded.descriptor.kind)));
      info->set_name(loaded.descriptor.name);
      info->set_version(loaded.descriptor.version);
      for (const std::string& c : loaded.descriptor.capabilities) info->add_capabilities(c);
      info->set_file(loaded.file);
    }
    request.set_version(AgentVersion());
    request.set_started_at_unix_ms(services.started_at_unix_ms());
    const uint64_t last = services.change_log().last_sequence();
    request.set_last_sequence(last);
    v1::RegisterResponse response;
    grpc::ClientContext context;
    Configure(context);
    grpc::Status status = stub->Register(&context, request, &response);
    if (!status.ok()) {
      ReportUnreachable("Register", status);
      return false;
    }
    unreachable_logged = false;
    heartbeat_interval = response.heartbeat_interval_ms() > 0
                             ? std::chrono::milliseconds(response.heartbeat_interval_ms())
                             : options.default_heartbeat;
    // The server holds everything up to its acknowledged sequence (never beyond ours).
    notified = std::min<uint64_t>(response.acknowledged_sequence(), last);
    std::lock_guard lock(mutex);
    stats.registered = true;
    ++stats.registrations;
    stats.server_id = response.server_id();
    stats.acknowledged_sequence = notified;
    spdlog::info("registered with stratad at {} (server {}) as {} at {}; heartbeat every {} ms",
                 options.server, response.server_id(), config.host_id, services.endpoint(),
                 heartbeat_interval.count());
    return true;
  }

  // Returns false when the server did not answer.
  bool Heartbeat(bool& known) {
    v1::HeartbeatRequest request;
    request.set_host_id(services.config().host_id);
    request.set_last_sequence(services.change_log().last_sequence());
    v1::HeartbeatResponse response;
    grpc::ClientContext context;
    Configure(context);
    grpc::Status status = stub->Heartbeat(&context, request, &response);
    if (!status.ok()) {
      ReportUnreachable("Heartbeat", status);
      return false;
    }
    known = response.known();
    if (known) {
      std::lock_guard lock(mutex);
      ++stats.heartbeats;
    }
    return true;
  }

  bool Notify() {
    std::vector<VmChange> changes = services.change_log().Since(notified);
    if (changes.empty()) return true;
    v1::NotifyChangesRequest request;
    FillChangeSet(services.config().host_id, changes, request.mutable_change_set());
    v1::NotifyChangesResponse response;
    grpc::ClientContext context;
    Configure(context);
    grpc::Status status = stub->NotifyChanges(&context, request, &response);
    if (!status.ok()) {
      ReportUnreachable("NotifyChanges", status);
      return false;
    }
    // Sent is sent: a resync request means the server rediscovers the host itself.
    notified = changes.back().sequence;
    std::lock_guard lock(mutex);
    ++stats.notifications;
    stats.acknowledged_sequence = response.acknowledged_sequence();
    return true;
  }

  void SetUnregistered() {
    std::lock_guard lock(mutex);
    stats.registered = false;
  }

  void Run() {
    std::chrono::milliseconds backoff = options.initial_backoff;
    bool registered = false;
    Clock::time_point next_heartbeat;
    while (!Stopping()) {
      if (!registered) {
        if (!Register()) {
          if (!Sleep(backoff)) break;
          backoff = std::min(backoff * 2, options.max_backoff);
          continue;
        }
        registered = true;
        backoff = options.initial_backoff;
        next_heartbeat = Clock::now() + heartbeat_interval;
      }
      if (services.change_log().last_sequence() > notified && !Notify()) {
        registered = false;
        SetUnregistered();
        continue;
      }
      if (Clock::now() >= next_heartbeat) {
        bool known = false;
        if (!Heartbeat(known)) {
          registered = false;
          SetUnregistered();
          continue;
        }
        if (!known) {
          spdlog::info("stratad at {} does not know this agent any more; registering again",
                       options.server);
          registered = false;
          SetUnregistered();
          continue;
        }
        next_heartbeat = Clock::now() + heartbeat_interval;
      }
      // Wake for a new change, the next heartbeat, or Stop (checked every 50 ms).
      auto until =
          std::chrono::duration_cast<std::chrono::milliseconds>(next_heartbeat - Clock::now());
      until = std::clamp(until, std::chrono::milliseconds(0), std::chrono::milliseconds(50));
      services.change_log().WaitForNewer(notified, until);
    }
  }

  HostServices& services;
  const RegistrationOptions options;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::AgentRegistry::Stub> stub;
  // Owned by the thread:
  std::chrono::milliseconds heartbeat_interval{5000};
  uint64_t notified = 0;
  bool unreachable_logged = false;
  // Shared:
  mutable std::mutex mutex;
  std::condition_variable stop_cv;
  bool stopping = false;
  RegistrationStats stats;
  std::thread thread;
};

RegistrationClient::RegistrationClient(HostServices& services, RegistrationOptions options)
    : impl_(std::make_unique<Impl>(services, std::move(options))) {}

RegistrationClient::~RegistrationClient() { Stop(); }

void RegistrationClient::Start() {
  if (impl_->thread.joinable()) return;
  impl_->thread = std::thread([this] { impl_->Run(); });
}

void RegistrationClient::Stop() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->stop_cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

RegistrationStats RegistrationClient::stats() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->stats;
}

}  // namespace strata::agent
