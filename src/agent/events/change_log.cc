#include "strata/agent/change_log.h"

#include <algorithm>

namespace strata::agent {

std::string_view ChangeKindName(ChangeKind kind) {
  switch (kind) {
    case ChangeKind::kAdded:
      return "added";
    case ChangeKind::kRemoved:
      return "removed";
    case ChangeKind::kModified:
      return "modified";
    case ChangeKind::kCluster:
      return "cluster";
  }
  return "unknown";
}

ChangeLog::ChangeLog(Clock clock, size_t capacity)
    : clock_(std::move(clock)), capacity_(std::max<size_t>(capacity, 1)) {
  if (!clock_) {
    clock_ = [] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
  }
}

std::vector<VmChange> ChangeLog::Observe(const std::vector<VmObservation>& vms,
                                         const std::string& source) {
  std::map<std::string, VmObservation> current;
  for (const VmObservation& vm : vms) current.emplace(vm.uuid, vm);
  const int64_t now = clock_();
  std::vector<VmChange> added;
  std::lock_guard lock(mutex_);
  auto append = [&](const VmObservation& vm, ChangeKind kind) {
    VmChange change{++last_sequence_, vm.uuid, vm.name, kind, now, source};
    entries_.push_back(change);
    added.push_back(std::move(change));
    if (entries_.size() > capacity_) entries_.pop_front();
  };
  const std::map<std::string, VmObservation> empty;
  const std::map<std::string, VmObservation>& before = previous_ ? *previous_ : empty;
  // Both maps are sorted by uuid: one merge pass yields the changes in uuid order.
  auto old_it = before.begin();
  auto new_it = current.begin();
  while (old_it != before.end() || new_it != current.end()) {
    if (new_it == current.end() || (old_it != before.end() && old_it->first < new_it->first)) {
      append(old_it->second, ChangeKind::kRemoved);
      ++old_it;
    } else if (old_it == before.end() || new_it->first < old_it->first) {
      append(new_it->second, ChangeKind::kAdded);
      ++new_it;
    } else {
      if (old_it->second.state != new_it->second.state ||
          old_it->second.config_digest != new_it->second.config_digest ||
          old_it->second.name != new_it->second.name) {
        append(new_it->second, ChangeKind::kModified);
      }
      ++old_it;
      ++new_it;
    }
  }
  previous_ = std::move(current);
  if (!added.empty()) changed_.notify_all();
  return added;
}

std::vector<VmChange> ChangeLog::ObserveSome(const std::vector<std::string>& scope,
                                             const std::vector<VmObservation>& present,
                                             const std::string& source) {
  std::map<std::string, const VmObservation*> now_present;
  for (const VmObservation& vm : present) now_present.emplace(vm.uuid, &vm);
  const int64_t now = clock_();
  std::vector<VmChange> added;
  std::lock_guard lock(mutex_);
  if (!previous_) previous_.emplace();
  std::map<std::string, VmObservation>& reported = *previous_;
  auto append = [&](const VmObservation& vm, ChangeKind kind) {
    VmChange change{++last_sequence_, vm.uuid, vm.name, kind, now, source};
    entries_.push_back(change);
    added.push_back(std::move(change));
    if (entries_.size() > capacity_) entries_.pop_front();
  };
  for (const std::string& uuid : scope) {
    auto was = reported.find(uuid);
    auto is = now_present.find(uuid);
    if (is == now_present.end()) {
      if (was == reported.end()) continue;  // came and went unseen, or never there
      append(was->second, ChangeKind::kRemoved);
      reported.erase(was);
    } else if (was == reported.end()) {
      append(*is->second, ChangeKind::kAdded);
      reported.emplace(uuid, *is->second);
    } else {
      const VmObservation& vm = *is->second;
      if (was->second.state != vm.state || was->second.config_digest != vm.config_digest ||
          was->second.name != vm.name) {
        append(vm, ChangeKind::kModified);
        was->second = vm;
      }
    }
  }
  if (!added.empty()) changed_.notify_all();
  return added;
}

VmChange ChangeLog::AppendClusterEvent(const std::string& event, const std::string& source) {
  const int64_t now = clock_();
  VmChange change;
  {
    std::lock_guard lock(mutex_);
    change = VmChange{++last_sequence_, "", event, ChangeKind::kCluster, now, source};
    entries_.push_back(change);
    if (entries_.size() > capacity_) entries_.pop_front();
  }
  changed_.notify_all();
  return change;
}

std::vector<VmChange> ChangeLog::Since(uint64_t sequence) const {
  std::lock_guard lock(mutex_);
  std::vector<VmChange> out;
  auto it = std::upper_bound(
      entries_.begin(), entries_.end(), sequence,
      [](uint64_t value, const VmChange& change) { return value < change.sequence; });
  out.assign(it, entries_.end());
  return out;
}

uint64_t ChangeLog::last_sequence() const {
  std::lock_guard lock(mutex_);
  return last_sequence_;
}

bool ChangeLog::WaitForNewer(uint64_t sequence, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, timeout, [&] { return closed_ || last_sequence_ > sequence; });
  return !closed_ && last_sequence_ > sequence;
}

void ChangeLog::Close() {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  changed_.notify_all();
}

bool ChangeLog::closed() const {
  std::lock_guard lock(mutex_);
  return closed_;
}

}  // namespace strata::agent
