#include "common/concurrency/task_group.h"

#include <atomic>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/testing/fake_clock.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar {
namespace {

using ::hangar::testing::FakeClock;
using ::hangar::testing::IsOk;
using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;

// Real-time bound for waiting on another thread's progress: generous, since
// a test only reaches it when the behaviour is wrong.
constexpr absl::Duration kPatience = absl::Seconds(30);

// A gate tasks block on until the test opens it; counts who entered.
class Gate {
 public:
  void Enter() {
    absl::MutexLock lock(&mu_);
    ++entered_;
    mu_.Await(absl::Condition(&open_));
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }
  bool AwaitEntered(int count) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return entered_ >= count;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), kPatience);
  }
  int entered() {
    absl::MutexLock lock(&mu_);
    return entered_;
  }

 private:
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  int entered_ ABSL_GUARDED_BY(mu_) = 0;
};

// Waits in real time (bounded) until `predicate` holds.
template <typename Predicate>
bool Eventually(Predicate predicate) {
  absl::Time deadline = absl::Now() + kPatience;
  while (!predicate()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

TEST(TaskGroupTest, CreateValidatesOptions) {
  EXPECT_THAT(TaskGroup::Create({.max_threads = 0}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "max_threads: must be in [1, 256]; was 0"));
  EXPECT_THAT(
      TaskGroup::Create({.max_threads = 257}).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("was 257")));
  EXPECT_THAT(TaskGroup::Create({.max_queued = -1}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "max_queued: must be in [0, 1048576]; was -1"));
  EXPECT_THAT(
      TaskGroup::Create({.clock = nullptr}).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, "clock: must not be null"));
}

TEST(TaskGroupTest, RunsTasksOnReusedThreads) {
  ASSERT_OK_AND_ASSIGN(auto group, TaskGroup::Create({.max_threads = 2}));
  std::atomic<int> done{0};
  for (int i = 0; i < 50; ++i) {
    // One at a time, so that a free thread always exists: no new threads.
    ASSERT_THAT(group->Submit([&](const StopToken&) { ++done; }), IsOk());
    ASSERT_TRUE(Eventually([&] { return done.load() == i + 1; }));
    ASSERT_TRUE(Eventually([&] { return group->running() == 0; }));
  }
  EXPECT_EQ(group->threads(), 1);
}

TEST(TaskGroupTest, AtMostMaxThreadsRunAndTheNextWaits) {
  ASSERT_OK_AND_ASSIGN(auto group,
                       TaskGroup::Create({.max_threads = 3, .max_queued = 8}));
  Gate gate;
  std::atomic<int> finished{0};
  for (int i = 0; i < 4; ++i) {
    ASSERT_THAT(group->Submit([&](const StopToken&) {
      gate.Enter();
      ++finished;
    }),
                IsOk());
  }
  ASSERT_TRUE(gate.AwaitEntered(3));
  EXPECT_EQ(group->running(), 3);
  EXPECT_EQ(group->queued(), 1);
  EXPECT_EQ(group->threads(), 3);
  EXPECT_EQ(gate.entered(), 3);  // The fourth has no thread.

  gate.Open();
  ASSERT_TRUE(Eventually([&] { return finished.load() == 4; }));
  EXPECT_EQ(gate.entered(), 4);
  EXPECT_EQ(group->threads(), 3);
}

TEST(TaskGroupTest, FullQueueIsResourceExhausted) {
  ASSERT_OK_AND_ASSIGN(
      auto group, TaskGroup::Create(
                      {.name = "imports", .max_threads = 1, .max_queued = 2}));
  Gate gate;
  ASSERT_THAT(group->Submit([&](const StopToken&) { gate.Enter(); }), IsOk());
  ASSERT_TRUE(gate.AwaitEntered(1));
  std::atomic<int> later{0};
  EXPECT_THAT(group->Submit([&](const StopToken&) { ++later; }), IsOk());
  EXPECT_THAT(group->Submit([&](const StopToken&) { ++later; }), IsOk());
  EXPECT_EQ(group->queued(), 2);
  EXPECT_THAT(group->Submit([&](const StopToken&) { ++later; }),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("imports: 1 tasks running and 2 waiting")));
  gate.Open();
  ASSERT_TRUE(Eventually([&] { return later.load() == 2; }));
  // Room again once the queue drained.
  EXPECT_THAT(group->Submit([&](const StopToken&) { ++later; }), IsOk());
  ASSERT_TRUE(Eventually([&] { return later.load() == 3; }));
}

TEST(TaskGroupTest, ZeroQueueAcceptsOnlyWhatAThreadCanStart) {
  ASSERT_OK_AND_ASSIGN(auto group,
                       TaskGroup::Create({.max_threads = 1, .max_queued = 0}));
  Gate gate;
  ASSERT_THAT(group->Submit([&](const StopToken&) { gate.Enter(); }), IsOk());
  EXPECT_THAT(group->Submit([](const StopToken&) {}),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("")));
  gate.Open();
}

TEST(TaskGroupTest, ShutdownWakesTaskWaitingOnFakeClock) {
  FakeClock clock;
  ASSERT_OK_AND_ASSIGN(auto group, TaskGroup::Create({.clock = &clock}));
  absl::Notification returned;
  std::atomic<bool> woke_by_stop{false};
  ASSERT_THAT(group->Submit([&](const StopToken& stop) {
    woke_by_stop = stop.WaitUntil(group->clock(), clock.Now() + absl::Hours(1));
    returned.Notify();
  }),
              IsOk());
  ASSERT_TRUE(clock.BlockUntilWaiters(1));
  EXPECT_FALSE(returned.HasBeenNotified());
  group->Shutdown();  // Fake time never moved: only the stop can wake it.
  EXPECT_TRUE(returned.HasBeenNotified());
  EXPECT_TRUE(woke_by_stop);
}

TEST(TaskGroupTest, WaitUntilEndsWhenFakeTimePassesTheDeadline) {
  FakeClock clock;
  ASSERT_OK_AND_ASSIGN(auto group, TaskGroup::Create({.clock = &clock}));
  absl::Notification returned;
  std::atomic<bool> stopped{true};
  absl::Time deadline = clock.Now() + absl::Seconds(30);
  ASSERT_THAT(group->Submit([&](const StopToken& stop) {
    stopped = stop.WaitUntil(&clock, deadline);
    returned.Notify();
  }),
              IsOk());
  ASSERT_TRUE(clock.BlockUntilWaiters(1));
  clock.Advance(absl::Seconds(29));
  EXPECT_FALSE(returned.WaitForNotificationWithTimeout(absl::Milliseconds(20)));
  clock.Advance(absl::Seconds(1));
  ASSERT_TRUE(returned.WaitForNotificationWithTimeout(kPatience));
  EXPECT_FALSE(stopped);
}

TEST(TaskGroupTest, ShutdownWaitsForRunningTasksAndDropsQueuedOnes) {
  ASSERT_OK_AND_ASSIGN(auto group, TaskGroup::Create({.max_threads = 1}));
  absl::Mutex mu;
  bool release = false;
  std::atomic<bool> running_task_finished{false};
  std::atomic<bool> queued_task_ran{false};
  absl::Notification started;
  ASSERT_THAT(group->Submit([&](const StopToken& stop) {
    started.Notify();
    // Ignores the stop request until the test releases it, like work that
    // must finish a step before it can look at the token.
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&release));
    EXPECT_TRUE(stop.stop_requested());
    running_task_finished = true;
  }),
              IsOk());
  ASSERT_THAT(group->Submit([&](const StopToken&) { queued_task_ran = true; }),
              IsOk());
  started.WaitForNotification();

  absl::Notification shutdown_returned;
  std::thread shutdown([&] {
    group->Shutdown();
    shutdown_returned.Notify();
  });
  // Shutdown refuses new work at once but does not return while a task runs.
  ASSERT_TRUE(
      Eventually([&] { return !group->Submit([](const StopToken&) {}).ok(); }));
  EXPECT_THAT(group->Submit([](const StopToken&) {}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("shutting down")));
  EXPECT_FALSE(
      shutdown_returned.WaitForNotificationWithTimeout(absl::Milliseconds(20)));
  EXPECT_FALSE(running_task_finished);
  {
    absl::MutexLock lock(&mu);
    release = true;
  }
  shutdown.join();
  EXPECT_TRUE(running_task_finished);
  EXPECT_FALSE(queued_task_ran);
  EXPECT_EQ(group->running(), 0);
  EXPECT_EQ(group->queued(), 0);
  group->Shutdown();  // Idempotent.
}

TEST(TaskGroupTest, DestructorShutsDown) {
  FakeClock clock;
  std::atomic<bool> returned{false};
  {
    ASSERT_OK_AND_ASSIGN(auto group, TaskGroup::Create({.clock = &clock}));
    ASSERT_THAT(group->Submit([&](const StopToken& stop) {
      stop.WaitUntil(&clock, absl::InfiniteFuture());
      returned = true;
    }),
                IsOk());
    ASSERT_TRUE(clock.BlockUntilWaiters(1));
  }
  EXPECT_TRUE(returned);
}

}  // namespace
}  // namespace hangar
