#include "mountinfo.h"

#include <charconv>
#include <map>
#include <set>

#include "absl/status/status.h"
#include "str_util.h"

namespace strata::storage {
namespace {

bool ParseInt(std::string_view text, int& out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

bool ParseU32(std::string_view text, uint32_t& out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

bool IsOctal(char c) { return c >= '0' && c <= '7'; }

}  // namespace

std::string MountEntry::DevNum() const { return Cat(major, ":", minor); }

std::string UnescapeMountField(std::string_view field) {
  std::string out;
  out.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && IsOctal(field[i + 1]) &&
        IsOctal(field[i + 2]) && IsOctal(field[i + 3])) {
      int value = (field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 + (field[i + 3] - '0');
      out.push_back(static_cast<char>(value & 0xff));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

absl::StatusOr<std::vector<MountEntry>> ParseMountInfo(std::string_view text) {
  std::vector<MountEntry> entries;
  int line_no = 0;
  for (std::string_view line : Split(text, '\n')) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    std::vector<std::string_view> f = Split(line, ' ');
    auto bad = [&](std::string_view what) {
      return absl::InvalidArgumentError(
          Cat("mountinfo line ", line_no, ": ", what, ": '", line, "'"));
    };
    if (f.size() < 10) return bad("too few fields");
    MountEntry e;
    if (!ParseInt(f[0], e.id)) return bad("bad mount id");
    if (!ParseInt(f[1], e.parent_id)) return bad("bad parent id");
    std::vector<std::string_view> devnum = Split(f[2], ':');
    if (devnum.size() != 2 || !ParseU32(devnum[0], e.major) || !ParseU32(devnum[1], e.minor)) {
      return bad("bad major:minor");
    }
    e.root = UnescapeMountField(f[3]);
    e.mount_point = UnescapeMountField(f[4]);
    if (e.mount_point.empty() || e.mount_point[0] != '/') return bad("mount point is not absolute");
    e.options = std::string(f[5]);
    size_t i = 6;
    while (i < f.size() && f[i] != "-") e.optional_fields.emplace_back(f[i++]);
    if (i >= f.size()) return bad("no '-' separator");
    if (f.size() - i < 3) return bad("too few fields after '-'");
    e.fstype = UnescapeMountField(f[i + 1]);
    e.source = UnescapeMountField(f[i + 2]);
    if (f.size() - i >= 4) e.super_options = std::string(f[i + 3]);
    entries.push_back(std::move(e));
  }
  return entries;
}

bool IsPathPrefix(std::string_view prefix, std::string_view path) {
  if (prefix == "/") return !path.empty() && path[0] == '/';
  if (path.size() < prefix.size() || path.substr(0, prefix.size()) != prefix) return false;
  return path.size() == prefix.size() || path[prefix.size()] == '/';
}

std::string JoinFsPath(std::string_view root, std::string_view relative) {
  while (root.size() > 1 && root.back() == '/') root.remove_suffix(1);
  if (root.empty() || root == "/") return relative.empty() ? "/" : std::string(relative);
  return Cat(root, relative);
}

MountTable::MountTable(std::vector<MountEntry> entries) : entries_(std::move(entries)) {}

const MountEntry* MountTable::FindMount(std::string_view path) const {
  std::set<int> ids;
  std::map<int, std::vector<size_t>> children;
  std::vector<size_t> orphans;
  for (const MountEntry& e : entries_) ids.insert(e.id);
  for (size_t i = 0; i < entries_.size(); ++i) {
    const MountEntry& e = entries_[i];
    if (e.parent_id == e.id || !ids.contains(e.parent_id)) {
      orphans.push_back(i);
    } else {
      children[e.parent_id].push_back(i);
    }
  }
  const MountEntry* current = nullptr;
  const std::vector<size_t>* candidates = &orphans;
  // Each step goes one level down the tree; the bound guards against parent cycles.
  for (size_t step = 0; step <= entries_.size(); ++step) {
    const MountEntry* best = nullptr;
    bool best_stacked = false;
    for (size_t index : *candidates) {
      const MountEntry& c = entries_[index];
      if (&c == current || !IsPathPrefix(c.mount_point, path)) continue;
      bool stacked = current != nullptr && c.mount_point == current->mount_point;
      if (best == nullptr || (stacked && !best_stacked) ||
          (stacked == best_stacked && c.mount_point.size() >= best->mount_point.size())) {
        best = &c;
        best_stacked = stacked;
      }
    }
    if (best == nullptr) break;
    current = best;
    auto it = children.find(best->id);
    if (it == children.end()) break;
    candidates = &it->second;
  }
  return current;
}

std::string MountTable::PathInFs(const MountEntry& entry, std::string_view path) {
  std::string_view rel;
  if (entry.mount_point == "/") {
    rel = path == "/" ? std::string_view() : path;
  } else if (path.size() > entry.mount_point.size()) {
    rel = path.substr(entry.mount_point.size());
  }
  return JoinFsPath(entry.root, rel);
}

}  // namespace strata::storage
