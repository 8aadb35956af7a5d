// Small string helpers for src/core. Debian's Abseil is built with its own absl::string_view
// (ABSL_OPTION_USE_STD_STRING_VIEW 0), which does not convert from std::string_view, so
// absl::StrCat cannot take the std::string_view the public API uses.
#pragma once

#include <concepts>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace strata::core::internal {

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

// Concatenates strings, string views, characters and integers.
template <class... Args>
std::string Cat(const Args&... args) {
  std::string out;
  (AppendPiece(out, args), ...);
  return out;
}

template <class... Args>
void Append(std::string& out, const Args&... args) {
  (AppendPiece(out, args), ...);
}

inline std::string_view ToStd(absl::string_view s) { return {s.data(), s.size()}; }

}  // namespace strata::core::internal
