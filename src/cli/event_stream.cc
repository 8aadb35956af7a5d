#include "event_stream.h"

#include <algorithm>

#include "strata/util/strings.h"

namespace strata::cli {

bool SseParser::Feed(const char* data, size_t size,
                     const std::function<bool(const SseEvent&)>& on_event) {
  for (size_t i = 0; i < size; ++i) {
    const char c = data[i];
    if (c == '\n' && last_was_cr_) {  // the LF of a CRLF whose CR already ended the line
      last_was_cr_ = false;
      continue;
    }
    last_was_cr_ = c == '\r';
    if (c == '\n' || c == '\r') {
      std::string line;
      line.swap(line_);
      if (!Line(line, on_event)) return false;
    } else {
      line_.push_back(c);
    }
  }
  return true;
}

void SseParser::Reset() {
  line_.clear();
  last_was_cr_ = false;
  pending_ = {};
  has_data_ = false;
}

bool SseParser::Line(const std::string& line,
                     const std::function<bool(const SseEvent&)>& on_event) {
  if (line.empty()) {  // dispatch
    const bool dispatch = has_data_;
    SseEvent event = std::move(pending_);
    pending_ = {};
    has_data_ = false;
    return !dispatch || on_event(event);
  }
  if (line.front() == ':') return true;  // comment
  const size_t colon = line.find(':');
  std::string field = line.substr(0, colon);
  std::string value;
  if (colon != std::string::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.erase(0, 1);
  }
  if (field == "data") {
    if (has_data_) pending_.data += '\n';
    pending_.data += value;
    has_data_ = true;
  } else if (field == "id") {
    if (value.find('\0') == std::string::npos) pending_.id = value;
  } else if (field == "event") {
    pending_.event = value;
  } else if (field == "retry") {
    uint64_t ms = 0;
    if (util::ParseUint(value, ms))
      retry_ = std::chrono::milliseconds(std::min<uint64_t>(ms, 3600000));
  }
  return true;
}

std::chrono::milliseconds Backoff::Next() {
  const std::chrono::milliseconds now = next_;
  next_ = std::min(max_, next_ * 2);
  return now;
}

void Backoff::SetInitial(std::chrono::milliseconds initial) {
  initial_ = std::min(initial, max_);
  next_ = std::max(next_, initial_);
}

}  // namespace strata::cli
