// Small string helpers shared by every module. Debian's Abseil has its own absl::string_view
// (not std::string_view), so absl::StrCat/StrSplit cannot take the std::string_view the API uses.
#pragma once

#include <cctype>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"

namespace strata::util {

inline void AppendPiece(std::string& out, std::string_view s) { out.append(s); }
inline void AppendPiece(std::string& out, const char* s) { out.append(s); }
inline void AppendPiece(std::string& out, const std::string& s) { out.append(s); }
template <class T>
requires std::same_as<T, absl::string_view>
inline void AppendPiece(std::string& out, const T& s) { out.append(s.data(), s.size()); }
inline void AppendPiece(std::string& out, char c) { out.push_back(c); }
template <std::integral T>
requires(!std::same_as<T, char>) inline void AppendPiece(std::string& out, T value) {
  out += std::to_string(value);
}

// Concatenates strings, string views (std and absl), characters and integers.
template <class... Args>
std::string Cat(const Args&... args) {
  std::string out;
  (AppendPiece(out, args), ...);
  return out;
}

inline std::vector<std::string_view> Split(std::string_view text, char sep,
                                           bool skip_empty = false) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t end = text.find(sep, start);
    std::string_view part =
        text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (!skip_empty || !part.empty()) parts.push_back(part);
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return parts;
}

template <class Container>
std::string Join(const Container& parts, std::string_view sep) {
  std::string out;
  bool first = true;
  for (const auto& p : parts) {
    if (!first) out.append(sep);
    first = false;
    out.append(p);
  }
  return out;
}

inline bool StartsWith(std::string_view text, std::string_view prefix) {
  return text.starts_with(prefix);
}

inline std::string_view StripPrefix(std::string_view text, std::string_view prefix) {
  return text.starts_with(prefix) ? text.substr(prefix.size()) : text;
}

inline std::string_view Trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  return text;
}

inline std::string ToLower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Decimal digits only, no sign, no overflow.
inline bool ParseUint(std::string_view text, uint64_t& out) {
  if (text.empty() || text.size() > 19) return false;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  out = value;
  return true;
}

template <class... Args>
void Append(std::string& out, const Args&... args) {
  (AppendPiece(out, args), ...);
}

// Debian's absl::string_view is its own type; this views it as std::string_view.
inline std::string_view ToStd(absl::string_view s) { return {s.data(), s.size()}; }

}  // namespace strata::util
