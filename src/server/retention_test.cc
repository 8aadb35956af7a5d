#include "strata/server/retention.h"

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace strata::server {
namespace {

using std::chrono::system_clock;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// 2026-11-26 10:00:00 UTC is a Thursday.
system_clock::time_point At(int y, unsigned m, unsigned d, int hour = 0, int minute = 0) {
  using namespace std::chrono;
  return sys_days(year(y) / month(m) / day(d)) + hours(hour) + minutes(minute);
}

BackupRef Ok(const std::string& id, system_clock::time_point t, std::set<std::string> keys = {}) {
  return BackupRef{id, "name-" + id, t, true, std::move(keys)};
}
BackupRef Failed(const std::string& id, system_clock::time_point t,
                 std::set<std::string> keys = {}) {
  return BackupRef{id, "name-" + id, t, false, std::move(keys)};
}

std::vector<std::string> KeptIds(const PrunePlan& plan) {
  std::vector<std::string> ids;
  for (const KeptBackup& k : plan.kept) ids.push_back(k.id);
  return ids;
}
std::vector<std::string> ExpiredIds(const PrunePlan& plan) {
  std::vector<std::string> ids;
  for (const ExpiredBackup& e : plan.expired) ids.push_back(e.id);
  return ids;
}
std::map<std::string, std::vector<std::string>> Reasons(const PrunePlan& plan) {
  std::map<std::string, std::vector<std::string>> out;
  for (const KeptBackup& k : plan.kept) out[k.id] = k.reasons;
  return out;
}

const system_clock::time_point kNow = At(2026, 12, 31, 23);

TEST(RetentionTest, KeepLastKeepsTheNewestSucceeded) {
  RetentionPolicy p{.name = "p", .keep_last = 2};
  // Given out of order: the planner sorts by started_at.
  const std::vector<BackupRef> backups = {Ok("b2", At(2026, 11, 2)), Ok("b4", At(2026, 11, 4)),
                                          Ok("b1", At(2026, 11, 1)), Ok("b3", At(2026, 11, 3))};
  PrunePlan plan = PlanPrune(p, backups, kNow);
  EXPECT_FALSE(plan.keep_all);
  EXPECT_THAT(KeptIds(plan), ElementsAre("b4", "b3"));
  EXPECT_THAT(ExpiredIds(plan), ElementsAre("b2", "b1"));
  EXPECT_THAT(Reasons(plan)["b4"], ElementsAre("keep-last (1 of 2)"));
  EXPECT_THAT(Reasons(plan)["b3"], ElementsAre("keep-last (2 of 2)"));
  EXPECT_EQ(plan.expired[0].reason, "no rule keeps it");
  EXPECT_EQ(plan.expired[0].name, "name-b2");
}

TEST(RetentionTest, SameStartTimeIsOrderedById) {
  RetentionPolicy p{.name = "p", .keep_last = 1};
  PrunePlan plan = PlanPrune(p, {Ok("a", At(2026, 11, 1)), Ok("b", At(2026, 11, 1))}, kNow);
  EXPECT_THAT(KeptIds(plan), ElementsAre("b"));
}

TEST(RetentionTest, KeepHourlyTakesTheNewestOfEachRecentHour) {
  RetentionPolicy p{.name = "p", .keep_hourly = 3};
  const std::vector<BackupRef> backups = {
      Ok("h10a", At(2026, 11, 26, 10, 5)),  Ok("h10b", At(2026, 11, 26, 10, 50)),
      Ok("h11", At(2026, 11, 26, 11, 0)),   Ok("h13a", At(2026, 11, 26, 13, 10)),
      Ok("h13b", At(2026, 11, 26, 13, 20)), Ok("h09", At(2026, 11, 26, 9, 59)),
  };
  PrunePlan plan = PlanPrune(p, backups, kNow);
  // Hours with a backup, newest first: 13, 11, 10 (12 has none and does not count).
  EXPECT_THAT(KeptIds(plan), ElementsAre("h13b", "h11", "h10b"));
  EXPECT_THAT(ExpiredIds(plan), ElementsAre("h13a", "h10a", "h09"));
  EXPECT_THAT(Reasons(plan)["h13b"], ElementsAre("keep-hourly 2026-11-26T13 (1 of 3)"));
  EXPECT_THAT(Reasons(plan)["h10b"], ElementsAre("keep-hourly 2026-11-26T10 (3 of 3)"));
}

TEST(RetentionTest, KeepDailyUsesUtcDays) {
  RetentionPolicy p{.name = "p", .keep_daily = 2};
  const std::vector<BackupRef> backups = {
      Ok("d24", At(2026, 11, 24, 12)),
      Ok("d25-early", At(2026, 11, 25, 0, 0)),
      Ok("d25-late", At(2026, 11, 25, 23, 59)),
      Ok("d26", At(2026, 11, 26, 0, 1)),
  };
  PrunePlan plan = PlanPrune(p, backups, kNow);
  EXPECT_THAT(KeptIds(plan), ElementsAre("d26", "d25-late"));
  EXPECT_THAT(Reasons(plan)["d25-late"], ElementsAre("keep-daily 2026-11-25 (2 of 2)"));
  EXPECT_THAT(ExpiredIds(plan), ElementsAre("d25-early", "d24"));
}

TEST(RetentionTest, KeepWeeklyFollowsIsoWeeks) {
  RetentionPolicy p{.name = "p", .keep_weekly = 3};
  // 2026-01-01 is a Thursday: ISO week 2026-W01 runs Mon 2025-12-29 .. Sun 2026-01-04.
  // 2025-12-28 (Sunday) is in 2025-W52. 2026-01-05 (Monday) starts 2026-W02.
  const std::vector<BackupRef> backups = {
      Ok("sun-w52", At(2025, 12, 28, 22)),   Ok("mon-w01", At(2025, 12, 29, 1)),
      Ok("sun-w01", At(2026, 1, 4, 23, 59)), Ok("mon-w02", At(2026, 1, 5, 0, 0)),
      Ok("sat-w51", At(2025, 12, 20, 12)),
  };
  PrunePlan plan = PlanPrune(p, backups, kNow);
  EXPECT_THAT(KeptIds(plan), ElementsAre("mon-w02", "sun-w01", "sun-w52"));
  EXPECT_THAT(Reasons(plan)["mon-w02"], ElementsAre("keep-weekly 2026-W02 (1 of 3)"));
  EXPECT_THAT(Reasons(plan)["sun-w01"], ElementsAre("keep-weekly 2026-W01 (2 of 3)"));
  EXPECT_THAT(Reasons(plan)["sun-w52"], ElementsAre("keep-weekly 2025-W52 (3 of 3)"));
  EXPECT_THAT(ExpiredIds(plan), ElementsAre("mon-w01", "sat-w51"));
}

TEST(RetentionTest, IsoWeek53AndYearStartBelongingToThePreviousYear) {
  RetentionPolicy p{.name = "p", .keep_weekly = 2};
  // 2020 has 53 ISO weeks; Friday 2021-01-01 is in 2020-W53, Monday 2021-01-04 in 2021-W01.
  PrunePlan plan =
      PlanPrune(p, {Ok("fri", At(2021, 1, 1, 12)), Ok("mon", At(2021, 1, 4, 12))}, kNow);
  EXPECT_THAT(Reasons(plan)["mon"], ElementsAre("keep-weekly 2021-W01 (1 of 2)"));
  EXPECT_THAT(Reasons(plan)["fri"], ElementsAre("keep-weekly 2020-W53 (2 of 2)"));
  // Monday 2024-12-30 is in 2025-W01.
  plan = PlanPrune(p, {Ok("x", At(2024, 12, 30, 1))}, kNow);
  EXPECT_THAT(Reasons(plan)["x"], ElementsAre("keep-weekly 2025-W01 (1 of 2)"));
}

TEST(RetentionTest, KeepMonthly) {
  RetentionPolicy p{.name = "p", .keep_monthly = 2};
  const std::vector<BackupRef> backups = {
      Ok("sep", At(2026, 9, 30, 23)),
      Ok("oct1", At(2026, 10, 1)),
      Ok("oct31", At(2026, 10, 31, 23)),
      Ok("nov", At(2026, 11, 1, 0, 30)),
  };
  PrunePlan plan = PlanPrune(p, backups, kNow);
  EXPECT_THAT(KeptIds(plan), ElementsAre("nov", "oct31"));
  EXPECT_THAT(Reasons(plan)["oct31"], ElementsAre("keep-monthly 2026-10 (2 of 2)"));
  EXPECT_THAT(ExpiredIds(plan), ElementsAre("oct1", "sep"));
}

TEST(RetentionTest, RulesCombineAndEveryReasonIsRecorded) {
  RetentionPolicy p{.name = "p", .keep_last = 1, .keep_daily = 2, .keep_monthly = 2};
  const std::vector<BackupRef> backups = {
      Ok("oct", At(2026, 10, 15)),
      Ok("nov25", At(2026, 11, 25, 8)),
      Ok("nov26a", At(2026, 11, 26, 8)),
      Ok("nov26b", At(2026, 11, 26, 20)),
  };
  PrunePlan plan = PlanPrune(p, backups, kNow);
  EXPECT_THAT(KeptIds(plan), ElementsAre("nov26b", "nov25", "oct"));
  EXPECT_THAT(Reasons(plan)["nov26b"],
              ElementsAre("keep-last (1 of 1)", "keep-daily 2026-11-26 (1 of 2)",
                          "keep-monthly 2026-11 (1 of 2)"));
  EXPECT_THAT(Reasons(plan)["nov25"], ElementsAre("keep-daily 2026-11-25 (2 of 2)"));
  EXPECT_THAT(Reasons(plan)["oct"], ElementsAre("keep-monthly 2026-10 (2 of 2)"));
  EXPECT_THAT(ExpiredIds(plan), ElementsAre("nov26a"));
}

TEST(RetentionTest, FailedBackupsCountForNoRule) {
  RetentionPolicy p{.name = "p", .keep_last = 1, .keep_daily = 5};
  const std::vector<BackupRef> backups = {
      Failed("f-old", At(2026, 11, 20)),
      Ok("ok", At(2026, 11, 21)),
      Failed("f-same-day", At(2026, 11, 21, 5)),  // newer than "ok": kept
      Failed("f-new", At(2026, 11, 22)),
  };
  PrunePlan plan = PlanPrune(p, backups, kNow);
  EXPECT_THAT(KeptIds(plan), ElementsAre("f-new", "f-same-day", "ok"));
  EXPECT_THAT(Reasons(plan)["f-new"],
              ElementsAre("failed, newer than the newest succeeded backup"));
  // The failed backups took no daily slot: "ok" is the first of each rule.
  EXPECT_THAT(Reasons(plan)["ok"],
              ElementsAre("keep-last (1 of 1)", "keep-daily 2026-11-21 (1 of 5)"));
  ASSERT_THAT(ExpiredIds(plan), ElementsAre("f-old"));
  EXPECT_EQ(plan.expired[0].reason, "failed, older than the newest succeeded backup");
}

TEST(RetentionTest, OnlyFailedBackupsAreAllKept) {
  RetentionPolicy p{.name = "p", .keep_last = 1};
  PrunePlan plan =
      PlanPrune(p, {Failed("f1", At(2026, 11, 1)), Failed("f2", At(2026, 11, 2))}, kNow);
  EXPECT_THAT(KeptIds(plan), ElementsAre("f2", "f1"));
  EXPECT_THAT(plan.expired, IsEmpty());
}

TEST(RetentionTest, BackupsFromTheFutureAreKeptAndCountForNoRule) {
  RetentionPolicy p{.name = "p", .keep_last = 1};
  const system_clock::time_point now = At(2026, 11, 26, 12);
  PrunePlan plan = PlanPrune(p,
                             {Ok("future", At(2026, 11, 27)), Ok("now", At(2026, 11, 26, 11)),
                              Ok("old", At(2026, 11, 25))},
                             now);
  EXPECT_THAT(KeptIds(plan), ElementsAre("future", "now"));
  EXPECT_THAT(Reasons(plan)["future"], ElementsAre("started after now"));
  EXPECT_THAT(Reasons(plan)["now"], ElementsAre("keep-last (1 of 1)"));
  EXPECT_THAT(ExpiredIds(plan), ElementsAre("old"));
}

TEST(RetentionTest, AllZeroPolicyKeepsEverything) {
  RetentionPolicy p{.name = "p"};
  PrunePlan plan =
      PlanPrune(p,
                {Ok("a", At(2026, 1, 1), {"v/s1"}), Failed("b", At(2026, 1, 2), {"v/s2"}),
                 Ok("c", At(2026, 1, 3), {"v/s3"})},
                kNow);
  EXPECT_TRUE(plan.keep_all);
  EXPECT_THAT(KeptIds(plan), ElementsAre("c", "b", "a"));
  EXPECT_THAT(Reasons(plan)["a"], ElementsAre("the policy keeps everything (all counts are zero)"));
  EXPECT_THAT(plan.expired, IsEmpty());
  EXPECT_THAT(plan.snapshots_to_delete, IsEmpty());
  // Negative counts count as zero.
  plan = PlanPrune(RetentionPolicy{.name = "p", .keep_last = -3}, {Ok("a", At(2026, 1, 1))}, kNow);
  EXPECT_TRUE(plan.keep_all);
}

TEST(RetentionTest, SharedSnapshotIsNeverDeletedWhileAKeptBackupReferencesIt) {
  RetentionPolicy p{.name = "p", .keep_last = 1};
  // b1 and b2 share snapshot vol/s-shared (e.g. the same volume snapshot held VMs of both).
  const std::vector<BackupRef> backups = {
      Ok("b1", At(2026, 11, 1), {"vol/s1", "vol/s-shared", "other/s9"}),
      Ok("b2", At(2026, 11, 2), {"vol/s-shared", "vol/s2"}),
      Failed("b0", At(2026, 10, 31), {"vol/s0"}),
  };
  PrunePlan plan = PlanPrune(p, backups, kNow);
  EXPECT_THAT(KeptIds(plan), ElementsAre("b2"));
  EXPECT_THAT(ExpiredIds(plan), ElementsAre("b1", "b0"));
  EXPECT_THAT(plan.snapshots_to_delete, ElementsAre("other/s9", "vol/s0", "vol/s1"));

  // A snapshot used by a backup of another policy stays too.
  plan = PlanPrune(p, backups, kNow, {"vol/s1"});
  EXPECT_THAT(plan.snapshots_to_delete, ElementsAre("other/s9", "vol/s0"));
}

TEST(RetentionTest, EmptyInput) {
  PrunePlan plan = PlanPrune(RetentionPolicy{.name = "p", .keep_last = 3}, {}, kNow);
  EXPECT_THAT(plan.kept, IsEmpty());
  EXPECT_THAT(plan.expired, IsEmpty());
  EXPECT_THAT(plan.snapshots_to_delete, IsEmpty());
}

TEST(RetentionTest, ValidatePolicy) {
  EXPECT_TRUE(ValidateRetentionPolicy({.name = "nightly", .keep_daily = 7}).ok());
  absl::Status s = ValidateRetentionPolicy({.name = "nightly", .keep_daily = -1});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(s.message()),
            "retention policy 'nightly': keep_daily -1 is out of range (0..100000)");
  s = ValidateRetentionPolicy({.name = "a/b", .keep_last = 1});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(std::string(s.message()),
            "invalid retention policy name 'a/b': character '/' is not allowed (letters, digits, "
            "'.', '_' and '-' are)");
  s = ValidateRetentionPolicy({.name = "p", .keep_monthly = 100001});
  EXPECT_EQ(std::string(s.message()),
            "retention policy 'p': keep_monthly 100001 is out of range (0..100000)");
}

}  // namespace
}  // namespace strata::server
