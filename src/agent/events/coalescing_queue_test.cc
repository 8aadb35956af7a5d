#include "strata/agent/coalescing_queue.h"

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace strata::agent {
namespace {

constexpr ChangeKind kAdded = ChangeKind::kAdded;
constexpr ChangeKind kRemoved = ChangeKind::kRemoved;
constexpr ChangeKind kModified = ChangeKind::kModified;

std::string Uuid(int i) {
  char buffer[40];
  std::snprintf(buffer, sizeof(buffer), "00000000-0000-4000-8000-%012d", i);
  return buffer;
}

// "uuid-suffix:kind/source" per entry, in drain order.
std::string Describe(const QueueBatch& batch) {
  std::string out;
  for (const QueueEntry& e : batch.entries) {
    out += e.vm_uuid.substr(e.vm_uuid.size() - 2) + ":" + std::string(ChangeKindName(e.kind)) +
           "/" + e.source + " ";
  }
  return out;
}

std::string Fold(std::vector<ChangeKind> kinds) {
  CoalescingQueue queue;
  for (ChangeKind kind : kinds) queue.Push(Uuid(1), "vm1", kind, "event");
  return Describe(queue.Drain());
}

TEST(CoalesceTest, EachRule) {
  EXPECT_EQ(Fold({kAdded, kRemoved}), "");
  EXPECT_EQ(Fold({kRemoved, kAdded}), "01:modified/event ");
  EXPECT_EQ(Fold({kModified, kModified, kModified, kModified}), "01:modified/event ");
  EXPECT_EQ(Fold({kAdded, kModified, kModified}), "01:added/event ");
  EXPECT_EQ(Fold({kModified, kRemoved}), "01:removed/event ");
  EXPECT_EQ(Fold({kAdded, kAdded}), "01:added/event ");
  EXPECT_EQ(Fold({kRemoved, kRemoved}), "01:removed/event ");
  EXPECT_EQ(Fold({kRemoved, kModified}), "01:modified/event ");
  EXPECT_EQ(Fold({kModified, kAdded}), "01:modified/event ");
  // A cancelled entry starts afresh.
  EXPECT_EQ(Fold({kAdded, kRemoved, kModified}), "01:modified/event ");
  EXPECT_EQ(Fold({kAdded, kModified, kRemoved}), "");
}

TEST(CoalescingQueueTest, DrainIsTheWindowsChangeSetInSequenceOrder) {
  int64_t now = 1000;
  CoalescingQueue queue(100, [&] { return now; });
  queue.Push(Uuid(2), "b", kAdded, "event");
  now = 1100;
  queue.Push(Uuid(1), "a", kModified, "event");
  queue.Push(Uuid(2), "b", kModified, "reconcile");  // newest sequence for b now
  queue.Push(Uuid(3), "c", kAdded, "event");
  queue.Push(Uuid(3), "c", kRemoved, "event");
  QueueBatch batch = queue.Drain();
  EXPECT_EQ(Describe(batch), "01:modified/event 02:added/reconcile ");
  EXPECT_EQ(batch.first_sequence, 1u);
  EXPECT_EQ(batch.last_sequence, 5u);
  EXPECT_EQ(batch.raw_events, 5u);
  EXPECT_EQ(batch.oldest_unix_ms, 1000);
  EXPECT_EQ(batch.entries[1].time_unix_ms, 1000);  // the oldest raw event's time
  EXPECT_FALSE(batch.resync);
  // The next window starts empty; sequences go on.
  EXPECT_TRUE(queue.Drain().empty());
  queue.Push(Uuid(2), "b", kRemoved, "event");
  batch = queue.Drain();
  EXPECT_EQ(Describe(batch), "02:removed/event ");
  EXPECT_EQ(batch.first_sequence, 6u);
  EXPECT_EQ(batch.last_sequence, 6u);
  QueueStats stats = queue.stats();
  EXPECT_EQ(stats.pushed, 6u);
  EXPECT_EQ(stats.coalesced, 2u);
  EXPECT_EQ(stats.cancelled, 1u);
  EXPECT_EQ(stats.drains, 2u);
}

TEST(CoalescingQueueTest, ResyncAndWaiting) {
  CoalescingQueue queue;
  EXPECT_FALSE(queue.WaitNonEmpty(std::chrono::milliseconds(10)));
  queue.RequestResync();
  EXPECT_TRUE(queue.WaitNonEmpty(std::chrono::milliseconds(10)));
  QueueBatch batch = queue.Drain();
  EXPECT_TRUE(batch.resync);
  EXPECT_FALSE(batch.overflowed);
  EXPECT_FALSE(queue.Drain().resync);
  std::thread producer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    queue.Push(Uuid(1), "a", kAdded, "event");
  });
  EXPECT_TRUE(queue.WaitNonEmpty(std::chrono::seconds(10)));
  producer.join();
  queue.Close();
  EXPECT_FALSE(queue.WaitNonEmpty(std::chrono::seconds(10)));
}

TEST(CoalescingQueueTest, StormStaysBoundedByTheNumberOfVms) {
  CoalescingQueue queue;
  std::vector<std::string> uuids;
  for (int i = 0; i < 10000; ++i) uuids.push_back(Uuid(i));
  // 100,000 raw events over 10,000 VMs: each VM added, then modified 9 times.
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < 10000; ++i) {
      queue.Push(uuids[i], "vm", round == 0 ? kAdded : kModified, "event");
    }
  }
  QueueStats stats = queue.stats();
  EXPECT_EQ(stats.pushed, 100000u);
  EXPECT_EQ(stats.pending, 10000u);
  EXPECT_EQ(stats.high_water, 10000u);
  QueueBatch batch = queue.Drain();
  ASSERT_EQ(batch.entries.size(), 10000u);
  for (const QueueEntry& e : batch.entries) ASSERT_EQ(e.kind, kAdded) << e.vm_uuid;
  EXPECT_EQ(batch.raw_events, 100000u);
}

TEST(CoalescingQueueTest, OverflowAsksForAResyncInsteadOfGrowing) {
  CoalescingQueue queue(3);
  for (int i = 0; i < 5; ++i) queue.Push(Uuid(i), "vm", kAdded, "event");
  queue.Push(Uuid(0), "vm", kModified, "event");  // folds into a stored entry
  QueueStats stats = queue.stats();
  EXPECT_EQ(stats.pending, 3u);
  EXPECT_EQ(stats.dropped, 2u);
  QueueBatch batch = queue.Drain();
  EXPECT_EQ(batch.entries.size(), 3u);
  EXPECT_TRUE(batch.overflowed);
  EXPECT_TRUE(batch.resync);
}

// A slow consumer and four producers: producers never wait, and applying every drained batch
// to the consumer's view yields exactly the final state of every VM (nothing lost).
TEST(CoalescingQueueTest, SlowConsumerLosesNothing) {
  CoalescingQueue queue;
  constexpr int kProducers = 4;
  constexpr int kVmsPerProducer = 500;
  constexpr int kRounds = 40;
  std::atomic<bool> done{false};
  std::map<std::string, bool> exists;  // consumer's view, fed by drained batches only
  int batches = 0;
  auto apply = [&](const QueueBatch& batch) {
    for (const QueueEntry& e : batch.entries) {
      if (e.kind == kRemoved) {
        exists.erase(e.vm_uuid);
      } else {
        exists[e.vm_uuid] = true;
      }
    }
    if (!batch.entries.empty()) ++batches;
  };
  std::thread consumer([&] {
    while (!done.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // slow
      apply(queue.Drain());
    }
    apply(queue.Drain());
  });
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&queue, p] {
      for (int round = 0; round < kRounds; ++round) {
        for (int i = 0; i < kVmsPerProducer; ++i) {
          const std::string uuid = Uuid(p * kVmsPerProducer + i);
          // Even rounds add (then modify), odd rounds remove; VM i of producer p ends removed
          // when (i + p) is odd: it skips the last add.
          const bool last = round == kRounds - 1;
          if (round % 2 == 0) {
            queue.Push(uuid, "vm", kAdded, "event");
            queue.Push(uuid, "vm", kModified, "event");
          } else if (!last || (i + p) % 2 == 1) {
            queue.Push(uuid, "vm", kRemoved, "event");
          }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));  // spread over windows
      }
    });
  }
  for (std::thread& t : producers) t.join();
  done.store(true);
  consumer.join();
  size_t expected = 0;
  for (int p = 0; p < kProducers; ++p) {
    for (int i = 0; i < kVmsPerProducer; ++i) {
      const bool should_exist = (i + p) % 2 == 0;
      expected += should_exist;
      EXPECT_EQ(exists.count(Uuid(p * kVmsPerProducer + i)), should_exist ? 1u : 0u)
          << "producer " << p << " vm " << i;
    }
  }
  EXPECT_EQ(exists.size(), expected);
  EXPECT_GT(batches, 1);  // the consumer really ran concurrently
  EXPECT_EQ(queue.stats().pushed, uint64_t{kProducers} * kVmsPerProducer * (kRounds / 2 * 2) +
                                      uint64_t{kProducers} * kVmsPerProducer * (kRounds / 2 - 1) +
                                      uint64_t{kProducers} * kVmsPerProducer / 2);
}

}  // namespace
}  // namespace strata::agent
