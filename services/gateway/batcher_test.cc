#include "services/gateway/batcher.h"

#include <random>
#include <set>

#include "common/testing/fake_clock.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::gateway {
namespace {

using ::hangar::testing::FakeClock;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class BatcherTest : public ::testing::Test {
 protected:
  std::unique_ptr<Batcher> Make(Batcher::Options options) {
    options.clock = &clock_;
    absl::StatusOr<std::unique_ptr<Batcher>> batcher = Batcher::Create(options);
    EXPECT_TRUE(batcher.ok()) << batcher.status();
    return *std::move(batcher);
  }
  absl::Time Far() { return clock_.Now() + absl::Hours(1); }
  void EnqueueRange(Batcher& batcher, uint64_t first, uint64_t last) {
    for (uint64_t id = first; id <= last; ++id) {
      ASSERT_TRUE(batcher.Enqueue(id, Far()).ok());
    }
  }

  FakeClock clock_;
};

TEST_F(BatcherTest, FullBatchGoesAtOnceInArrivalOrder) {
  auto batcher = Make({.batch_size = 4});
  batcher->SetReplicas({{.name = "r0", .capacity = 4}});
  EnqueueRange(*batcher, 1, 4);
  PollResult result = batcher->Poll();
  ASSERT_EQ(result.dispatches.size(), 1u);
  EXPECT_EQ(result.dispatches[0].replica, "r0");
  EXPECT_THAT(result.dispatches[0].requests, ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(batcher->queued(), 0);
  EXPECT_EQ(batcher->outstanding("r0"), 4);
  EXPECT_EQ(result.next_wake, absl::InfiniteFuture());
}

TEST_F(BatcherTest, PartialBatchWaitsForTheQueueDelay) {
  auto batcher =
      Make({.batch_size = 8, .max_queue_delay = absl::Milliseconds(5)});
  batcher->SetReplicas({{.name = "r0", .capacity = 8}});
  const absl::Time start = clock_.Now();
  EnqueueRange(*batcher, 1, 3);

  PollResult result = batcher->Poll();
  EXPECT_THAT(result.dispatches, IsEmpty());
  EXPECT_EQ(result.next_wake, start + absl::Milliseconds(5));

  clock_.Advance(absl::Milliseconds(4));
  EXPECT_THAT(batcher->Poll().dispatches, IsEmpty());

  clock_.Advance(absl::Milliseconds(1));
  result = batcher->Poll();
  ASSERT_EQ(result.dispatches.size(), 1u);
  EXPECT_THAT(result.dispatches[0].requests, ElementsAre(1, 2, 3));
}

TEST_F(BatcherTest, TheDelayCountsFromTheOldestRequest) {
  auto batcher =
      Make({.batch_size = 8, .max_queue_delay = absl::Milliseconds(5)});
  batcher->SetReplicas({{.name = "r0", .capacity = 8}});
  ASSERT_TRUE(batcher->Enqueue(1, Far()).ok());
  clock_.Advance(absl::Milliseconds(3));
  ASSERT_TRUE(batcher->Enqueue(2, Far()).ok());
  clock_.Advance(absl::Milliseconds(2));
  PollResult result = batcher->Poll();
  ASSERT_EQ(result.dispatches.size(), 1u);
  EXPECT_THAT(result.dispatches[0].requests, ElementsAre(1, 2));
}

TEST_F(BatcherTest, ZeroDelayDispatchesEveryRequestAtOnce) {
  auto batcher =
      Make({.batch_size = 8, .max_queue_delay = absl::ZeroDuration()});
  batcher->SetReplicas({{.name = "r0", .capacity = 8}});
  ASSERT_TRUE(batcher->Enqueue(1, Far()).ok());
  PollResult result = batcher->Poll();
  ASSERT_EQ(result.dispatches.size(), 1u);
  EXPECT_THAT(result.dispatches[0].requests, ElementsAre(1));
}

TEST_F(BatcherTest, NeverMoreThanTheBatchSizeToOneReplicaAtOnce) {
  auto batcher = Make({.batch_size = 4});
  batcher->SetReplicas(
      {{.name = "r0", .capacity = 16}, {.name = "r1", .capacity = 16}});
  EnqueueRange(*batcher, 1, 10);
  PollResult result = batcher->Poll();
  // Two full batches, one per replica (least outstanding work); the two
  // left over wait for the delay.
  ASSERT_EQ(result.dispatches.size(), 2u);
  EXPECT_EQ(result.dispatches[0].replica, "r0");
  EXPECT_THAT(result.dispatches[0].requests, ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(result.dispatches[1].replica, "r1");
  EXPECT_THAT(result.dispatches[1].requests, ElementsAre(5, 6, 7, 8));
  EXPECT_EQ(batcher->queued(), 2);
  for (const Dispatch& dispatch : result.dispatches) {
    EXPECT_LE(dispatch.requests.size(), 4u);
  }
}

TEST_F(BatcherTest, NeverMoreThanTheReplicasFreeSlots) {
  auto batcher = Make({.batch_size = 8});
  batcher->SetReplicas({{.name = "r0", .capacity = 8}});
  EnqueueRange(*batcher, 1, 6);
  clock_.Advance(absl::Milliseconds(5));
  ASSERT_EQ(batcher->Poll().dispatches.size(), 1u);  // 6 outstanding
  EnqueueRange(*batcher, 7, 14);                     // a full batch
  PollResult result = batcher->Poll();
  ASSERT_EQ(result.dispatches.size(), 1u);
  EXPECT_THAT(result.dispatches[0].requests, ElementsAre(7, 8));
  EXPECT_EQ(batcher->outstanding("r0"), 8);

  // Full replica: the rest wait for a slot, not for time.
  result = batcher->Poll();
  EXPECT_THAT(result.dispatches, IsEmpty());
  EXPECT_EQ(result.next_wake, Far());  // only the deadlines remain

  batcher->Complete("r0", 3);
  result = batcher->Poll();  // 6 queued: a partial batch waits its delay
  EXPECT_THAT(result.dispatches, IsEmpty());
  clock_.Advance(absl::Milliseconds(5));
  result = batcher->Poll();
  ASSERT_EQ(result.dispatches.size(), 1u);
  EXPECT_THAT(result.dispatches[0].requests, ElementsAre(9, 10, 11));
}

TEST_F(BatcherTest, WithoutReplicasNothingIsDispatched) {
  auto batcher = Make({.batch_size = 2});
  EnqueueRange(*batcher, 1, 2);
  PollResult result = batcher->Poll();
  EXPECT_THAT(result.dispatches, IsEmpty());
  EXPECT_EQ(batcher->queued(), 2);
  batcher->SetReplicas({{.name = "r0", .capacity = 2}});
  EXPECT_EQ(batcher->Poll().dispatches.size(), 1u);
}

TEST_F(BatcherTest, LeastOutstandingWorkThenLeastRecentlyUsed) {
  auto batcher = Make({.batch_size = 1});
  batcher->SetReplicas({{.name = "a", .capacity = 4},
                        {.name = "b", .capacity = 4},
                        {.name = "c", .capacity = 4}});
  EnqueueRange(*batcher, 1, 3);
  PollResult result = batcher->Poll();
  ASSERT_EQ(result.dispatches.size(), 3u);
  EXPECT_EQ(result.dispatches[0].replica, "a");
  EXPECT_EQ(result.dispatches[1].replica, "b");
  EXPECT_EQ(result.dispatches[2].replica, "c");

  batcher->Complete("b");  // b now has the least outstanding work
  ASSERT_TRUE(batcher->Enqueue(4, Far()).ok());
  result = batcher->Poll();
  ASSERT_EQ(result.dispatches.size(), 1u);
  EXPECT_EQ(result.dispatches[0].replica, "b");

  ASSERT_TRUE(batcher->Enqueue(5, Far()).ok());  // all at 1: a is oldest
  result = batcher->Poll();
  ASSERT_EQ(result.dispatches.size(), 1u);
  EXPECT_EQ(result.dispatches[0].replica, "a");
}

TEST_F(BatcherTest, DrainingReplicasGetNoNewWorkButKeepTheirCounts) {
  auto batcher = Make({.batch_size = 2});
  batcher->SetReplicas({{.name = "old", .capacity = 2}});
  EnqueueRange(*batcher, 1, 2);
  ASSERT_EQ(batcher->Poll().dispatches.size(), 1u);

  batcher->SetReplicas({{.name = "old", .capacity = 2, .draining = true},
                        {.name = "new", .capacity = 2}});
  EXPECT_EQ(batcher->outstanding("old"), 2);
  batcher->Complete("old");
  EnqueueRange(*batcher, 3, 4);
  PollResult result = batcher->Poll();
  ASSERT_EQ(result.dispatches.size(), 1u);
  EXPECT_EQ(result.dispatches[0].replica, "new");
  EXPECT_EQ(batcher->outstanding("old"), 1);
}

TEST_F(BatcherTest, AFullQueueRefusesAtOnceWithARetryHint) {
  auto batcher = Make({.batch_size = 4,
                       .max_queue_size = 3,
                       .default_retry_after = absl::Milliseconds(100)});
  EnqueueRange(*batcher, 1, 3);
  absl::Status refused = batcher->Enqueue(4, Far());
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.message(), HasSubstr("retry after 100 ms"));
  EXPECT_EQ(batcher->RetryAfter(), absl::Milliseconds(100));
  EXPECT_EQ(batcher->queued(), 3);
}

TEST_F(BatcherTest, TheRetryHintFollowsTheCompletionRate) {
  auto batcher = Make({.batch_size = 1, .max_queue_size = 100});
  batcher->SetReplicas({{.name = "r0", .capacity = 1}});
  // 11 completions 10 ms apart: 100 sequences per second.
  for (int i = 0; i <= 10; ++i) {
    batcher->Complete("r0");
    clock_.Advance(absl::Milliseconds(10));
  }
  EnqueueRange(*batcher, 1, 50);
  // 50 waiting at 100/s: half a second. (The clock moved 10 ms past the
  // last completion, which the window includes.)
  absl::Duration hint = batcher->RetryAfter();
  EXPECT_GE(hint, absl::Milliseconds(450));
  EXPECT_LE(hint, absl::Milliseconds(550));
}

TEST_F(BatcherTest, ExpiredRequestsAreDroppedBeforeDispatch) {
  auto batcher =
      Make({.batch_size = 4, .max_queue_delay = absl::Milliseconds(5)});
  batcher->SetReplicas({{.name = "r0", .capacity = 4}});
  const absl::Time start = clock_.Now();
  ASSERT_TRUE(batcher->Enqueue(1, start + absl::Milliseconds(2)).ok());
  ASSERT_TRUE(batcher->Enqueue(2, Far()).ok());

  PollResult result = batcher->Poll();
  EXPECT_EQ(result.next_wake, start + absl::Milliseconds(2));

  clock_.Advance(absl::Milliseconds(2));
  result = batcher->Poll();
  EXPECT_THAT(result.expired, ElementsAre(1));
  EXPECT_THAT(result.dispatches, IsEmpty());
  EXPECT_EQ(result.next_wake, start + absl::Milliseconds(5));

  clock_.Advance(absl::Milliseconds(3));
  result = batcher->Poll();
  ASSERT_EQ(result.dispatches.size(), 1u);
  EXPECT_THAT(result.dispatches[0].requests, ElementsAre(2));
}

TEST_F(BatcherTest, CancellingOneQueuedRequestLeavesTheOthers) {
  auto batcher = Make({.batch_size = 3});
  batcher->SetReplicas({{.name = "r0", .capacity = 8}});
  EnqueueRange(*batcher, 1, 3);
  EXPECT_TRUE(batcher->CancelQueued(2));
  EXPECT_FALSE(batcher->CancelQueued(2));
  ASSERT_TRUE(batcher->Enqueue(4, Far()).ok());
  PollResult result = batcher->Poll();
  ASSERT_EQ(result.dispatches.size(), 1u);
  EXPECT_THAT(result.dispatches[0].requests, ElementsAre(1, 3, 4));
  // Once dispatched, cancellation is the runner's (per sequence).
  EXPECT_FALSE(batcher->CancelQueued(1));
}

TEST_F(BatcherTest, DuplicateIdsAreRefused) {
  auto batcher = Make({});
  ASSERT_TRUE(batcher->Enqueue(7, Far()).ok());
  EXPECT_EQ(batcher->Enqueue(7, Far()).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(BatcherTest, OptionsAreValidated) {
  FakeClock clock;
  struct Case {
    Batcher::Options options;
    const char* field;
  };
  const Case cases[] = {
      {{.batch_size = 0, .clock = &clock}, "batch_size"},
      {{.batch_size = 257, .clock = &clock}, "batch_size"},
      {{.max_queue_delay = absl::Milliseconds(-1), .clock = &clock},
       "max_queue_delay"},
      {{.max_queue_delay = absl::Seconds(11), .clock = &clock},
       "max_queue_delay"},
      {{.max_queue_size = 0, .clock = &clock}, "max_queue_size"},
      {{.default_retry_after = absl::ZeroDuration(), .clock = &clock},
       "default_retry_after"},
      {{.clock = nullptr}, "clock"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::unique_ptr<Batcher>> batcher =
        Batcher::Create(c.options);
    ASSERT_FALSE(batcher.ok()) << c.field;
    EXPECT_EQ(batcher.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(batcher.status().message(), HasSubstr(c.field));
  }
}

// Random enqueues, cancels, completions, replica changes and time: no
// replica ever holds more than its capacity, no dispatch exceeds the batch
// size, every request is dispatched, expired or cancelled at most once, and
// dispatches keep arrival order.
TEST_F(BatcherTest, RandomOperationsKeepTheInvariants) {
  constexpr int kBatch = 4;
  auto batcher = Make({.batch_size = kBatch,
                       .max_queue_delay = absl::Milliseconds(5),
                       .max_queue_size = 64});
  std::mt19937 random(12345);
  std::map<std::string, int> capacity = {{"a", 3}, {"b", 8}};
  std::map<std::string, int> held;
  auto apply_replicas = [&] {
    std::vector<ReplicaSlots> slots;
    for (const auto& [name, cap] : capacity) {
      slots.push_back({.name = name, .capacity = cap});
    }
    batcher->SetReplicas(slots);
  };
  apply_replicas();
  uint64_t next_id = 1;
  uint64_t last_dispatched = 0;
  std::set<uint64_t> queued;
  std::set<uint64_t> seen;
  for (int step = 0; step < 5000; ++step) {
    switch (random() % 5) {
      case 0:
      case 1: {
        absl::Time deadline =
            clock_.Now() + absl::Milliseconds(1 + random() % 40);
        if (batcher->Enqueue(next_id, deadline).ok()) queued.insert(next_id);
        ++next_id;
        break;
      }
      case 2:
        if (!queued.empty() && random() % 4 == 0) {
          uint64_t id = *queued.begin();
          EXPECT_TRUE(batcher->CancelQueued(id));
          queued.erase(id);
          EXPECT_TRUE(seen.insert(id).second);
        }
        break;
      case 3:
        for (auto& [name, count] : held) {
          if (count > 0 && random() % 2 == 0) {
            batcher->Complete(name);
            --count;
          }
        }
        break;
      case 4:
        clock_.Advance(absl::Milliseconds(random() % 3));
        break;
    }
    PollResult result = batcher->Poll();
    for (uint64_t id : result.expired) {
      EXPECT_EQ(queued.erase(id), 1u);
      EXPECT_TRUE(seen.insert(id).second);
    }
    for (const Dispatch& dispatch : result.dispatches) {
      EXPECT_LE(static_cast<int>(dispatch.requests.size()), kBatch);
      held[dispatch.replica] += dispatch.requests.size();
      EXPECT_LE(held[dispatch.replica], capacity[dispatch.replica]);
      for (uint64_t id : dispatch.requests) {
        EXPECT_GT(id, last_dispatched);
        last_dispatched = id;
        EXPECT_EQ(queued.erase(id), 1u);
        EXPECT_TRUE(seen.insert(id).second);
      }
    }
    ASSERT_EQ(batcher->queued(), static_cast<int>(queued.size()));
  }
  EXPECT_GT(last_dispatched, 100u);
}

}  // namespace
}  // namespace hangar::gateway
