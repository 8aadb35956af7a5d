// The HTTP side of the `strata` CLI: one keep-alive connection to stratad's REST API.
//
// Transport failures (nothing listening, connection reset, timeout) are errors (Unavailable);
// every HTTP answer, error statuses included, is a response for the caller to judge.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace httplib {
class Client;
class Result;
}  // namespace httplib

namespace strata::cli {

inline constexpr char kDefaultServer[] = "http://127.0.0.1:8080";
inline constexpr char kServerEnv[] = "STRATA_SERVER";

// The server URL to use: the flag when given, else the environment variable when set and not
// empty, else kDefaultServer.
std::string ResolveServer(const std::string& flag, const char* env_value);

struct ApiResponse {
  int status = 0;
  std::string body;
  std::string content_type;
};

class ApiClient {
 public:
  // `server`: "http://HOST:PORT" (or "HOST:PORT"), optionally with a path prefix.
  // InvalidArgument when it is not such a URL.
  static absl::StatusOr<std::unique_ptr<ApiClient>> Create(const std::string& server);
  ~ApiClient();

  const std::string& server() const { return server_; }

  // `target` is the path with its (already escaped) query, e.g. "/api/v1/vms?host=a".
  absl::StatusOr<ApiResponse> Get(const std::string& target);
  absl::StatusOr<ApiResponse> Post(const std::string& target, const std::string& json_body);
  absl::StatusOr<ApiResponse> Put(const std::string& target, const std::string& json_body);
  absl::StatusOr<ApiResponse> Delete(const std::string& target);

  // A GET whose answer is handed over as it arrives (a server-sent-events stream):
  // `on_response(status, content_type)` once the headers are in, then `on_data` for each piece
  // of the body, error answers included. Either returning false ends the request. Returns the
  // HTTP status once the answer has ended; Cancelled when a callback or Stop() ended it;
  // Unavailable on a transport failure (nothing listening, connection reset, read timeout).
  absl::StatusOr<int> GetStreaming(
      const std::string& target, const std::vector<std::pair<std::string, std::string>>& headers,
      const std::function<bool(int status, const std::string& content_type)>& on_response,
      const std::function<bool(const char* data, size_t size)>& on_data);

  // How long a read may wait for data (default 60 s).
  void SetReadTimeout(std::chrono::milliseconds timeout);

  // Thread-safe: shuts down the connection of a request in flight, whose call then returns
  // (GetStreaming: Cancelled). A no-op when nothing is in flight.
  void Stop();

 private:
  ApiClient(std::string server, std::string prefix, std::unique_ptr<httplib::Client> client);

  std::string server_;  // as given, for messages
  std::string prefix_;  // path prefix, without trailing '/'
  absl::StatusOr<ApiResponse> Convert(const httplib::Result& result);

  std::string host_;  // for messages about failed connections
  std::string port_;
  std::unique_ptr<httplib::Client> client_;
};

}  // namespace strata::cli
