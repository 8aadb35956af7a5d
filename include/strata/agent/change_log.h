// The agent's change log: an in-memory, sequence-numbered list of VM changes (added, removed,
// modified), fed by comparing observations of VMs with what the log last reported (its
// "reported" view): a whole-host observation (discovery, reconciliation) or the observation of
// some VMs (the event manager, once per window). A VM is "modified" when its state, name or
// saved configuration (the vm_config digest) changed.
//
// Each Observe* call appends its entries under one lock and wakes waiters once, so that one
// call becomes one notification to stratad. Sequences are monotonic and never reused within
// one agent process. The log keeps the newest `capacity` entries.
//
// Besides VM changes the log carries cluster events (kind kCluster, vm_uuid empty), appended by
// the cluster coordinator: they reach stratad through the same notifications.
//
// Threading: every method may be called from any thread (one internal mutex).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace strata::agent {

enum class ChangeKind { kAdded, kRemoved, kModified, kCluster };
// "added", "removed", "modified", "cluster"
std::string_view ChangeKindName(ChangeKind kind);

struct VmChange {
  uint64_t sequence = 0;
  std::string vm_uuid;
  std::string vm_name;  // kCluster: the event, e.g. "member-unreachable:host-b"
  ChangeKind kind = ChangeKind::kAdded;
  int64_t time_unix_ms = 0;
  std::string source;  // "discovery", "reconcile", "cluster"
};

// What the log compares between two discoveries.
struct VmObservation {
  std::string uuid;
  std::string name;
  std::string state;
  std::string config_digest;
};

class ChangeLog {
 public:
  using Clock = std::function<int64_t()>;  // unix milliseconds
  explicit ChangeLog(Clock clock = {}, size_t capacity = 100000);

  // Compares `vms` (every VM of the host) with the previous observation, appends one entry per
  // difference (sorted by uuid within one observation) and returns the new entries. The first
  // observation reports every VM as added.
  std::vector<VmChange> Observe(const std::vector<VmObservation>& vms, const std::string& source);
  // The same for the VMs in `scope` only (uuids): those of `scope` absent from `present` are
  // gone. Entries in the order of `scope`. VMs outside `scope` are left as they are.
  std::vector<VmChange> ObserveSome(const std::vector<std::string>& scope,
                                    const std::vector<VmObservation>& present,
                                    const std::string& source);

  // Appends one cluster event (kind kCluster, vm_uuid empty, `event` in vm_name) and wakes
  // waiters. It does not touch the reported view of VMs.
  VmChange AppendClusterEvent(const std::string& event, const std::string& source = "cluster");

  // Entries with a sequence greater than `sequence`, oldest first.
  std::vector<VmChange> Since(uint64_t sequence) const;
  uint64_t last_sequence() const;
  // Blocks until an entry newer than `sequence` exists (true), or Close() or the timeout (false).
  bool WaitForNewer(uint64_t sequence, std::chrono::milliseconds timeout) const;
  // Wakes every waiter for good (shutdown).
  void Close();
  bool closed() const;

 private:
  Clock clock_;
  size_t capacity_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::deque<VmChange> entries_;
  uint64_t last_sequence_ = 0;
  std::optional<std::map<std::string, VmObservation>> previous_;
  bool closed_ = false;
};

}  // namespace strata::agent
