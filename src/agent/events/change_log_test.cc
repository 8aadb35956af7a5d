#include "strata/agent/change_log.h"

#include <gtest/gtest.h>

#include <thread>

namespace strata::agent {
namespace {

std::string Describe(const std::vector<VmChange>& changes) {
  std::string out;
  for (const VmChange& c : changes) {
    out += std::to_string(c.sequence) + ":" + std::string(ChangeKindName(c.kind)) + ":" +
           c.vm_name + "@" + std::to_string(c.time_unix_ms) + "/" + c.source + " ";
  }
  return out;
}

TEST(ChangeLogTest, DiffsDiscoveriesIntoAddedRemovedModifiedWithMonotonicSequences) {
  int64_t now = 1000;
  ChangeLog log([&] { return now; });
  EXPECT_EQ(Describe(log.Observe({{"u2", "b", "running", "d2"}, {"u1", "a", "running", "d1"}},
                                 "discovery")),
            "1:added:a@1000/discovery 2:added:b@1000/discovery ");
  now = 2000;
  // Same VMs, same state and config: nothing.
  EXPECT_EQ(Describe(log.Observe({{"u1", "a", "running", "d1"}, {"u2", "b", "running", "d2"}},
                                 "reconcile")),
            "");
  now = 3000;
  // a: new config digest; b: gone; c: new.
  EXPECT_EQ(Describe(log.Observe({{"u1", "a", "running", "d1-new"}, {"u3", "c", "shutoff", "d3"}},
                                 "reconcile")),
            "3:modified:a@3000/reconcile 4:removed:b@3000/reconcile 5:added:c@3000/reconcile ");
  now = 4000;
  // c: state change only.
  EXPECT_EQ(Describe(log.Observe({{"u1", "a", "running", "d1-new"}, {"u3", "c", "running", "d3"}},
                                 "reconcile")),
            "6:modified:c@4000/reconcile ");
  EXPECT_EQ(log.last_sequence(), 6u);
  EXPECT_EQ(Describe(log.Since(4)), "5:added:c@3000/reconcile 6:modified:c@4000/reconcile ");
  EXPECT_EQ(log.Since(6).size(), 0u);
  EXPECT_EQ(log.Since(0).size(), 6u);
}

TEST(ChangeLogTest, KeepsTheNewestEntriesUpToCapacity) {
  ChangeLog log({}, 2);
  log.Observe({{"u1", "a", "running", ""}, {"u2", "b", "running", ""}, {"u3", "c", "running", ""}},
              "discovery");
  std::vector<VmChange> kept = log.Since(0);
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].sequence, 2u);
  EXPECT_EQ(kept[1].sequence, 3u);
}

TEST(ChangeLogTest, WaitForNewerWakesOnChangeAndOnClose) {
  ChangeLog log;
  EXPECT_FALSE(log.WaitForNewer(0, std::chrono::milliseconds(10)));
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    log.Observe({{"u1", "a", "running", ""}}, "discovery");
  });
  EXPECT_TRUE(log.WaitForNewer(0, std::chrono::seconds(10)));
  writer.join();
  std::thread closer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    log.Close();
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(log.WaitForNewer(1, std::chrono::seconds(10)));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  closer.join();
  EXPECT_TRUE(log.closed());
}

}  // namespace
}  // namespace strata::agent

namespace strata::agent {
namespace {

TEST(ChangeLogClusterTest, ClusterEventsShareTheSequenceAndLeaveTheVmViewAlone) {
  ChangeLog log([] { return int64_t{42}; });
  log.Observe({{"u1", "web01", "running", "d1"}}, "discovery");
  VmChange event = log.AppendClusterEvent("member-unreachable:host-b");
  EXPECT_EQ(event.sequence, 2u);
  EXPECT_EQ(event.kind, ChangeKind::kCluster);
  EXPECT_EQ(event.vm_uuid, "");
  EXPECT_EQ(event.vm_name, "member-unreachable:host-b");
  EXPECT_EQ(event.source, "cluster");
  EXPECT_EQ(event.time_unix_ms, 42);
  EXPECT_EQ(ChangeKindName(event.kind), "cluster");
  // The next observation of the same VMs reports nothing: the VM view was not touched.
  EXPECT_TRUE(log.Observe({{"u1", "web01", "running", "d1"}}, "discovery").empty());
  ASSERT_EQ(log.Since(1).size(), 1u);
  EXPECT_EQ(log.Since(1)[0].vm_name, "member-unreachable:host-b");
}

}  // namespace
}  // namespace strata::agent
