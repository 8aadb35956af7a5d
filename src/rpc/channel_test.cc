#include "channel.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "strata/v1/agent.grpc.pb.h"

namespace strata::rpc {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::system_clock;

// A loopback port nothing listens on: bound to pick it, closed again (never connected, so no
// TIME_WAIT keeps a server from binding it later).
int UnusedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), length), 0);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  close(fd);
  return ntohs(address.sin_port);
}

class HealthyAgent final : public v1::Agent::Service {
 public:
  grpc::Status Health(grpc::ServerContext*, const v1::HealthRequest*,
                      v1::HealthResponse* out) override {
    out->set_serving(true);
    return grpc::Status::OK;
  }
};

struct Server {
  explicit Server(const std::string& address) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service);
    server = builder.BuildAndStart();
  }
  ~Server() {
    if (server) server->Shutdown(system_clock::now());
  }
  HealthyAgent service;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
};

grpc::Status AskHealth(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::ClientContext context;
  context.set_deadline(system_clock::now() + seconds(5));
  v1::HealthResponse response;
  return v1::Agent::NewStub(channel)->Health(&context, v1::HealthRequest(), &response);
}

TEST(AwaitReadyTest, AListeningPeerIsConnectedAndAnswers) {
  Server server("127.0.0.1:0");
  ASSERT_NE(server.port, 0);
  auto channel = MakeChannel("127.0.0.1:" + std::to_string(server.port));
  EXPECT_EQ(channel->GetState(false), GRPC_CHANNEL_IDLE);
  EXPECT_TRUE(AwaitReady(*channel, system_clock::now() + seconds(10)));
  EXPECT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);
  EXPECT_TRUE(AskHealth(channel).ok());
}

TEST(AwaitReadyTest, APeerThatIsDownFailsLongBeforeTheDeadlineAndTheCallSaysWhy) {
  const std::string endpoint = "127.0.0.1:" + std::to_string(UnusedPort());
  auto channel = MakeChannel(endpoint);
  const auto deadline = system_clock::now() + seconds(30);
  EXPECT_FALSE(AwaitReady(*channel, deadline));
  EXPECT_LT(system_clock::now(), deadline - seconds(20));  // the retry window, not the deadline
  EXPECT_EQ(channel->GetState(false), GRPC_CHANNEL_TRANSIENT_FAILURE);
  grpc::Status status = AskHealth(channel);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(status.error_message().find("Connection refused"), std::string::npos)
      << status.error_message();
}

// What AwaitReady is for: a failed connect attempt (here: nobody listened yet) is not the end;
// the channel's next attempt, one back-off later, finds the peer.
TEST(AwaitReadyTest, OneFailedConnectIsNotTheEnd) {
  const std::string endpoint = "127.0.0.1:" + std::to_string(UnusedPort());
  // A long back-off leaves ample time to start the server between the two attempts.
  auto channel = MakeChannel(endpoint, {milliseconds(3000), milliseconds(3000)});
  grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
  const auto deadline = system_clock::now() + seconds(10);
  while (state != GRPC_CHANNEL_TRANSIENT_FAILURE && channel->WaitForStateChange(state, deadline)) {
    state = channel->GetState(false);
  }
  ASSERT_EQ(state, GRPC_CHANNEL_TRANSIENT_FAILURE);
  // Giving up at the first failure (what a plain call does) fails here.
  EXPECT_FALSE(AwaitReady(*channel, deadline, /*retry_window=*/milliseconds(0)));
  EXPECT_FALSE(AskHealth(channel).ok());

  Server server(endpoint);
  ASSERT_NE(server.port, 0) << "could not listen on " << endpoint;
  EXPECT_TRUE(AwaitReady(*channel, system_clock::now() + seconds(20), seconds(10)));
  EXPECT_TRUE(AskHealth(channel).ok());
}

TEST(AwaitReadyTest, TheDeadlineBoundsTheWait) {
  auto channel = MakeChannel("127.0.0.1:" + std::to_string(UnusedPort()));
  const auto start = system_clock::now();
  // With a retry window longer than the deadline, the deadline ends the wait.
  EXPECT_FALSE(AwaitReady(*channel, start + milliseconds(500), /*retry_window=*/seconds(60)));
  const auto waited = system_clock::now() - start;
  EXPECT_GE(waited, milliseconds(500));
  EXPECT_LT(waited, seconds(5));
}

}  // namespace
}  // namespace strata::rpc
