// The client side of stratad's server-sent-events stream (/api/v1/events/stream): a parser of the
// text/event-stream format and the reconnection policy of `strata events --follow`.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace strata::cli {

struct SseEvent {
  std::string id;     // the "id:" field ("" when the event had none)
  std::string event;  // the "event:" field ("" means "message")
  std::string data;   // the "data:" lines joined with '\n'
};

// Incremental parser of text/event-stream (the WHATWG format): lines end with LF, CRLF or CR;
// ':' starts a comment (stratad's keepalive); a blank line dispatches the event being built
// (when it has data). Bytes may arrive split anywhere, mid-line or mid-CRLF.
class SseParser {
 public:
  // Feeds the next bytes; calls `on_event` for every event completed by them and stops early
  // (returning false) when it returns false.
  bool Feed(const char* data, size_t size, const std::function<bool(const SseEvent&)>& on_event);

  // The "retry:" field most recently received (the server's reconnection delay), if any.
  std::optional<std::chrono::milliseconds> retry() const { return retry_; }

  // Forgets a partly received event (a new connection starts a new stream).
  void Reset();

 private:
  bool Line(const std::string& line, const std::function<bool(const SseEvent&)>& on_event);

  std::string line_;
  bool last_was_cr_ = false;  // a CR ended the previous line: a following LF belongs to it
  SseEvent pending_;
  bool has_data_ = false;
  std::optional<std::chrono::milliseconds> retry_;
};

// Reconnection delays: `initial` after a connection that worked, then doubling up to `max`.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max)
      : initial_(initial), max_(max), next_(initial) {}
  std::chrono::milliseconds Next();  // the delay to wait now; the following one doubles
  void Reset() { next_ = initial_; }
  void SetInitial(std::chrono::milliseconds initial);

 private:
  std::chrono::milliseconds initial_, max_, next_;
};

}  // namespace strata::cli
