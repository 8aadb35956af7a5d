#include "channel.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <optional>

namespace strata::rpc {

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& endpoint,
                                           const ChannelOptions& options) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(options.initial_backoff.count()));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, static_cast<int>(options.initial_backoff.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(options.max_backoff.count()));
  return grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
}

bool AwaitReady(grpc::Channel& channel, std::chrono::system_clock::time_point deadline,
                std::chrono::milliseconds retry_window) {
  using std::chrono::system_clock;
  std::optional<system_clock::time_point> failed_at;
  grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY) {
    if (state == GRPC_CHANNEL_SHUTDOWN) return false;
    system_clock::time_point until = deadline;
    // A channel in failure stays there while it retries (gRPC's pick_first reports failure
    // until a connect succeeds), so the next attempt shows only as READY.
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE) {
      if (!failed_at) failed_at = system_clock::now();
      until = std::min(deadline, *failed_at + retry_window);
    }
    if (!channel.WaitForStateChange(state, until)) return false;  // `until` passed
    state = channel.GetState(/*try_to_connect=*/true);
  }
  return true;
}

std::shared_ptr<grpc::Channel> ConnectedChannel(const std::string& endpoint,
                                                std::chrono::system_clock::time_point deadline) {
  std::shared_ptr<grpc::Channel> channel = MakeChannel(endpoint);
  AwaitReady(*channel, deadline);
  return channel;
}

}  // namespace strata::rpc
