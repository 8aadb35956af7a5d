// Client channels to our peers (agents, stratad, cluster members) and waiting for one to be ready.
#pragma once

#include <chrono>
#include <memory>
#include <string>

namespace grpc {
class Channel;
}

namespace strata::rpc {

struct ChannelOptions {
  // Reconnect back-off after a failed connect: a peer back after a restart is seen within a
  // second, not after gRPC's default back-off of up to two minutes.
  std::chrono::milliseconds initial_backoff{100};
  std::chrono::milliseconds max_backoff{1000};
};

// An insecure channel to `endpoint` ("host:port") with the back-off above.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& endpoint,
                                           const ChannelOptions& options = {});

// Waits until `channel` is connected, starting a connect if it is idle, at most until
// `deadline`. Once a connect has failed, the channel's next attempt (one back-off later) is
// awaited for at most `retry_window`; false then, and the call made next fails at once with the
// channel's own reason ("Connection refused", ...), sending nothing.
//
// Why not give up at the first failure: Debian 12's gRPC (1.51) reads errno after other calls
// that follow connect(), so now and then a connect to a listening peer fails spuriously with
// whatever errno was left ("No such file or directory"); fixed upstream in grpc/grpc#35064. The
// next attempt connects. A peer that is really down costs `retry_window` more.
bool AwaitReady(grpc::Channel& channel, std::chrono::system_clock::time_point deadline,
                std::chrono::milliseconds retry_window = std::chrono::milliseconds(1000));

// MakeChannel then AwaitReady: a channel for a call or two to a peer expected to be up.
std::shared_ptr<grpc::Channel> ConnectedChannel(const std::string& endpoint,
                                                std::chrono::system_clock::time_point deadline);

}  // namespace strata::rpc
