// The retention planner: restic-style keep rules over one policy's backups.
#include "strata/server/retention.h"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "strata/backup/manifest.h"
#include "strata/util/strings.h"

namespace strata::server {

namespace {

using std::chrono::system_clock;
using util::Cat;

std::string Pad(int64_t value, int width) {
  std::string digits = std::to_string(value);
  if (static_cast<int>(digits.size()) < width) {
    digits.insert(0, static_cast<size_t>(width) - digits.size(), '0');
  }
  return digits;
}

std::chrono::year_month_day Day(system_clock::time_point t) {
  return std::chrono::year_month_day(std::chrono::floor<std::chrono::days>(t));
}

std::string HourLabel(system_clock::time_point t) {
  const auto day = std::chrono::floor<std::chrono::days>(t);
  const std::chrono::year_month_day ymd(day);
  const auto hour = std::chrono::floor<std::chrono::hours>(t - day).count();
  return Cat(Pad(static_cast<int>(ymd.year()), 4), "-", Pad(static_cast<unsigned>(ymd.month()), 2),
             "-", Pad(static_cast<unsigned>(ymd.day()), 2), "T", Pad(hour, 2));
}

std::string DayLabel(system_clock::time_point t) {
  const std::chrono::year_month_day ymd = Day(t);
  return Cat(Pad(static_cast<int>(ymd.year()), 4), "-", Pad(static_cast<unsigned>(ymd.month()), 2),
             "-", Pad(static_cast<unsigned>(ymd.day()), 2));
}

// ISO 8601 week: weeks start on Monday; a week belongs to the year holding its Thursday.
std::string IsoWeekLabel(system_clock::time_point t) {
  using namespace std::chrono;
  const sys_days day = floor<days>(t);
  const unsigned iso_weekday = weekday(day).iso_encoding();  // Monday 1 .. Sunday 7
  const sys_days thursday = day + days(4 - static_cast<int>(iso_weekday));
  const year iso_year = year_month_day(thursday).year();
  const sys_days jan1 = sys_days(iso_year / January / 1);
  const int week = static_cast<int>((thursday - jan1).count() / 7) + 1;
  return Cat(Pad(static_cast<int>(iso_year), 4), "-W", Pad(week, 2));
}

std::string MonthLabel(system_clock::time_point t) {
  const std::chrono::year_month_day ymd = Day(t);
  return Cat(Pad(static_cast<int>(ymd.year()), 4), "-", Pad(static_cast<unsigned>(ymd.month()), 2));
}

// One "keep one per period" (or "keep the last N") rule while walking newest first.
struct Rule {
  const char* name;
  int count;
  std::string (*period)(system_clock::time_point);  // nullptr: every backup is its own period
  int used = 0;
  std::optional<std::string> last_period{};
};

}  // namespace

absl::Status ValidateRetentionPolicy(const RetentionPolicy& policy) {
  if (absl::Status s = backup::ValidateName("retention policy name", policy.name); !s.ok()) {
    return s;
  }
  const std::pair<const char*, int> counts[] = {{"keep_last", policy.keep_last},
                                                {"keep_hourly", policy.keep_hourly},
                                                {"keep_daily", policy.keep_daily},
                                                {"keep_weekly", policy.keep_weekly},
                                                {"keep_monthly", policy.keep_monthly}};
  for (const auto& [key, value] : counts) {
    if (value < 0 || value > kMaxRetentionCount) {
      return absl::InvalidArgumentError(Cat("retention policy '", policy.name, "': ", key, " ",
                                            value, " is out of range (0..", kMaxRetentionCount,
                                            ")"));
    }
  }
  return absl::OkStatus();
}

PrunePlan PlanPrune(const RetentionPolicy& policy, const std::vector<BackupRef>& backups,
                    system_clock::time_point now,
                    const std::set<std::string>& referenced_elsewhere) {
  std::vector<const BackupRef*> order;
  order.reserve(backups.size());
  for (const BackupRef& b : backups) order.push_back(&b);
  std::sort(order.begin(), order.end(), [](const BackupRef* a, const BackupRef* b) {
    if (a->started_at != b->started_at) return a->started_at > b->started_at;
    return a->id > b->id;
  });

  PrunePlan plan;
  Rule rules[] = {
      {"keep-last", std::max(policy.keep_last, 0), nullptr},
      {"keep-hourly", std::max(policy.keep_hourly, 0), &HourLabel},
      {"keep-daily", std::max(policy.keep_daily, 0), &DayLabel},
      {"keep-weekly", std::max(policy.keep_weekly, 0), &IsoWeekLabel},
      {"keep-monthly", std::max(policy.keep_monthly, 0), &MonthLabel},
  };
  plan.keep_all =
      std::all_of(std::begin(rules), std::end(rules), [](const Rule& r) { return r.count == 0; });

  // The newest succeeded backup not in the future: failed backups older than it expire.
  std::optional<system_clock::time_point> newest_succeeded;
  for (const BackupRef* b : order) {
    if (b->succeeded && b->started_at <= now) {
      newest_succeeded = b->started_at;
      break;
    }
  }

  std::vector<const BackupRef*> kept_refs;
  std::vector<const BackupRef*> expired_refs;
  for (const BackupRef* b : order) {
    std::vector<std::string> reasons;
    std::string expired_reason;
    if (plan.keep_all) {
      reasons.push_back("the policy keeps everything (all counts are zero)");
    } else if (b->started_at > now) {
      reasons.push_back("started after now");
    } else if (!b->succeeded) {
      if (newest_succeeded && b->started_at <= *newest_succeeded) {
        expired_reason = "failed, older than the newest succeeded backup";
      } else {
        reasons.push_back("failed, newer than the newest succeeded backup");
      }
    } else {
      for (Rule& rule : rules) {
        if (rule.used >= rule.count) continue;
        if (rule.period == nullptr) {
          ++rule.used;
          reasons.push_back(Cat(rule.name, " (", rule.used, " of ", rule.count, ")"));
          continue;
        }
        std::string period = rule.period(b->started_at);
        if (rule.last_period == period) continue;  // an older backup of a period already kept
        ++rule.used;
        reasons.push_back(Cat(rule.name, " ", period, " (", rule.used, " of ", rule.count, ")"));
        rule.last_period = std::move(period);
      }
      if (reasons.empty()) expired_reason = "no rule keeps it";
    }
    if (!reasons.empty()) {
      plan.kept.push_back(KeptBackup{b->id, b->name, std::move(reasons)});
      kept_refs.push_back(b);
    } else {
      plan.expired.push_back(ExpiredBackup{b->id, b->name, std::move(expired_reason)});
      expired_refs.push_back(b);
    }
  }

  std::set<std::string> still_used = referenced_elsewhere;
  for (const BackupRef* b : kept_refs)
    still_used.insert(b->snapshot_keys.begin(), b->snapshot_keys.end());
  std::set<std::string> deletable;
  for (const BackupRef* b : expired_refs) {
    for (const std::string& key : b->snapshot_keys) {
      if (!still_used.contains(key)) deletable.insert(key);
    }
  }
  plan.snapshots_to_delete.assign(deletable.begin(), deletable.end());
  return plan;
}

}  // namespace strata::server
