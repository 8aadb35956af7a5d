#include "api_client.h"

#include <fcntl.h>
#include <httplib.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "strata/util/strings.h"

namespace strata::cli {

using util::Cat;

std::string ResolveServer(const std::string& flag, const char* env_value) {
  if (!flag.empty()) return flag;
  if (env_value != nullptr && *env_value != '\0') return env_value;
  return kDefaultServer;
}

absl::StatusOr<std::unique_ptr<ApiClient>> ApiClient::Create(const std::string& server) {
  std::string url = server;
  if (url.find("://") == std::string::npos) url = "http://" + url;
  const bool https = url.starts_with("https://");
  if (!https && !url.starts_with("http://")) {
    return absl::InvalidArgumentError(
        Cat("invalid server URL '", server, "': expected http://HOST:PORT"));
  }
  const size_t authority = url.find("://") + 3;
  const size_t slash = url.find('/', authority);
  std::string prefix = slash == std::string::npos ? "" : url.substr(slash);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  const std::string scheme_host_port = url.substr(0, slash);
  if (scheme_host_port.size() == authority) {
    return absl::InvalidArgumentError(Cat("invalid server URL '", server, "': no host"));
  }
  auto client = std::make_unique<httplib::Client>(scheme_host_port);
  if (!client->is_valid()) {
    return absl::InvalidArgumentError(
        Cat("invalid server URL '", server, "': expected http://HOST:PORT"));
  }
  client->set_tcp_nodelay(true);
  client->set_keep_alive(true);
  client->set_connection_timeout(std::chrono::seconds(5));
  client->set_read_timeout(std::chrono::seconds(60));
  client->set_write_timeout(std::chrono::seconds(30));
  auto api = std::unique_ptr<ApiClient>(new ApiClient(server, prefix, std::move(client)));
  // host[:port] for messages; httplib does not say why a connection failed.
  std::string host_port = scheme_host_port.substr(authority);
  const size_t colon = host_port.rfind(':');
  const bool has_port =
      colon != std::string::npos && host_port.find(']', colon) == std::string::npos;
  api->host_ = has_port ? host_port.substr(0, colon) : host_port;
  if (api->host_.size() > 2 && api->host_.front() == '[')
    api->host_ = api->host_.substr(1, api->host_.size() - 2);
  api->port_ = has_port ? host_port.substr(colon + 1) : (https ? "443" : "80");
  return api;
}

ApiClient::ApiClient(std::string server, std::string prefix,
                     std::unique_ptr<httplib::Client> client)
    : server_(std::move(server)), prefix_(std::move(prefix)), client_(std::move(client)) {}

ApiClient::~ApiClient() = default;

namespace {

// Connects once more, plainly, to learn why httplib could not: "Connection refused", ...
std::string ConnectFailure(const std::string& host, const std::string& port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* addresses = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &addresses); rc != 0) {
    return Cat("cannot resolve '", host, "': ", std::string(gai_strerror(rc)));
  }
  std::string reason = "connection failed";
  for (addrinfo* a = addresses; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int error = 0;
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      error = errno;
      if (error == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        if (poll(&p, 1, 3000) == 1) {
          socklen_t len = sizeof error;
          getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
        } else {
          error = ETIMEDOUT;
        }
      }
    }
    close(fd);
    if (error == 0) {
      reason = "connection failed (the port accepts connections now)";
      break;
    }
    reason = strerror(error);
  }
  freeaddrinfo(addresses);
  return reason;
}

std::string Describe(httplib::Error error) {
  switch (error) {
    case httplib::Error::Read:
      return "connection closed while reading the answer";
    case httplib::Error::Write:
      return "connection closed while sending the request";
    case httplib::Error::ConnectionTimeout:
      return "connection timed out";
    case httplib::Error::SSLConnection:
      return "TLS connection failed";
    case httplib::Error::SSLServerVerification:
      return "TLS server verification failed";
    default:
      return Cat("HTTP client error '", httplib::to_string(error), "'");
  }
}

}  // namespace

absl::StatusOr<ApiResponse> ApiClient::Convert(const httplib::Result& result) {
  if (!result) {
    if (result.error() == httplib::Error::Connection) {
      return absl::UnavailableError(ConnectFailure(host_, port_));
    }
    return absl::UnavailableError(Describe(result.error()));
  }
  ApiResponse response;
  response.status = result->status;
  response.body = result->body;
  response.content_type = result->get_header_value("Content-Type");
  return response;
}

absl::StatusOr<ApiResponse> ApiClient::Get(const std::string& target) {
  return Convert(client_->Get(prefix_ + target));
}

absl::StatusOr<ApiResponse> ApiClient::Post(const std::string& target,
                                            const std::string& json_body) {
  return Convert(client_->Post(prefix_ + target, json_body, "application/json"));
}

absl::StatusOr<ApiResponse> ApiClient::Put(const std::string& target,
                                           const std::string& json_body) {
  return Convert(client_->Put(prefix_ + target, json_body, "application/json"));
}

absl::StatusOr<ApiResponse> ApiClient::Delete(const std::string& target) {
  return Convert(client_->Delete(prefix_ + target));
}

absl::StatusOr<int> ApiClient::GetStreaming(
    const std::string& target, const std::vector<std::pair<std::string, std::string>>& headers,
    const std::function<bool(int status, const std::string& content_type)>& on_response,
    const std::function<bool(const char* data, size_t size)>& on_data) {
  httplib::Headers request_headers(headers.begin(), headers.end());
  bool cancelled_by_us = false;
  httplib::Result result = client_->Get(
      prefix_ + target, request_headers,
      [&](const httplib::Response& response) {
        const bool go_on = on_response(response.status, response.get_header_value("Content-Type"));
        cancelled_by_us = !go_on;
        return go_on;
      },
      [&](const char* data, size_t size) {
        const bool go_on = on_data(data, size);
        cancelled_by_us = !go_on;
        return go_on;
      });
  if (result) return result->status;
  if (cancelled_by_us || result.error() == httplib::Error::Canceled) {
    return absl::CancelledError("request ended by the client");
  }
  if (result.error() == httplib::Error::Connection) {
    return absl::UnavailableError(ConnectFailure(host_, port_));
  }
  return absl::UnavailableError(Describe(result.error()));
}

void ApiClient::SetReadTimeout(std::chrono::milliseconds timeout) {
  client_->set_read_timeout(std::chrono::duration_cast<std::chrono::microseconds>(timeout));
}

void ApiClient::Stop() { client_->stop(); }

}  // namespace strata::cli
