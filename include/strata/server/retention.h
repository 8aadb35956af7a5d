// Retention: which backups a policy keeps, and which storage snapshots may go. Pure functions over
// values (no catalog, no clock, no I/O), so the prune job (and the CLI's dry run) can show the
// plan before anything is deleted.
//
// Semantics (like restic/borg `forget`), over the finished backups of one policy:
//   keep_last N     the N newest succeeded backups;
//   keep_hourly N   the newest succeeded backup of each of the N most recent hours that have one;
//   keep_daily N    likewise per day; keep_weekly N per ISO 8601 week (Monday to Sunday, the week
//                   belongs to the year of its Thursday); keep_monthly N per calendar month.
// Periods are UTC. "Newest" is by started_at (ties: the greater id). A backup kept by any rule
// is kept, with every reason recorded. Failed backups count for no rule: one older than the
// newest succeeded backup is expired; a newer one is kept (it is the latest news about the
// policy and may hold usable VMs). Backups started after `now` (clock skew) are kept and count
// for no rule. A policy whose counts are all zero keeps everything: pruning never deletes every
// backup by accident (PrunePlan::keep_all says so).
//
// Running backups must not be passed in: they are never planned for deletion.
#pragma once

#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace strata::server {

struct RetentionPolicy {
  std::string name{};  // [A-Za-z0-9._-], 1..128 characters, not starting with '.' or '-'
  int keep_last = 0;
  int keep_hourly = 0;
  int keep_daily = 0;
  int keep_weekly = 0;
  int keep_monthly = 0;

  friend bool operator==(const RetentionPolicy&, const RetentionPolicy&) = default;
};

inline constexpr int kMaxRetentionCount = 100000;

// InvalidArgument naming the policy unless the name is valid and every count is in
// 0..kMaxRetentionCount: "retention policy 'p': keep_daily -1 is out of range (0..100000)".
absl::Status ValidateRetentionPolicy(const RetentionPolicy& policy);

// One finished backup as the planner sees it.
struct BackupRef {
  std::string id{};
  std::string name{};
  std::chrono::system_clock::time_point started_at{};
  bool succeeded = false;
  // "<storage_volume>/<snapshot_id>" of every storage snapshot the backup's items live in.
  std::set<std::string> snapshot_keys{};
};

struct KeptBackup {
  std::string id{};
  std::string name{};
  // In rule order, e.g. "keep-last (1 of 3)", "keep-hourly 2026-11-26T10 (1 of 24)",
  // "keep-daily 2026-11-26 (1 of 7)", "keep-weekly 2026-W48 (2 of 4)",
  // "keep-monthly 2026-11 (1 of 12)", "failed, newer than the newest succeeded backup",
  // "started after now", "the policy keeps everything (all counts are zero)".
  std::vector<std::string> reasons{};

  friend bool operator==(const KeptBackup&, const KeptBackup&) = default;
};

struct ExpiredBackup {
  std::string id{};
  std::string name{};
  // "no rule keeps it" or "failed, older than the newest succeeded backup".
  std::string reason{};

  friend bool operator==(const ExpiredBackup&, const ExpiredBackup&) = default;
};

struct PrunePlan {
  std::vector<KeptBackup> kept{};        // newest first
  std::vector<ExpiredBackup> expired{};  // newest first
  // Keys referenced by an expired backup and by no kept backup nor `referenced_elsewhere`.
  // Sorted.
  std::vector<std::string> snapshots_to_delete{};
  bool keep_all = false;  // the policy's counts are all zero: everything kept
};

// Plans one policy's prune. Negative counts count as zero (ValidateRetentionPolicy refuses them
// earlier). `referenced_elsewhere`: snapshot keys used by backups outside `backups` (other
// policies, or none); they are never in snapshots_to_delete.
PrunePlan PlanPrune(const RetentionPolicy& policy, const std::vector<BackupRef>& backups,
                    std::chrono::system_clock::time_point now,
                    const std::set<std::string>& referenced_elsewhere = {});

}  // namespace strata::server
