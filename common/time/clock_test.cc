#include "common/time/clock.h"

#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/testing/fake_clock.h"
#include "gtest/gtest.h"

namespace hangar {
namespace {

using ::hangar::testing::FakeClock;

TEST(FakeClockTest, TimeMovesOnlyWhenAdvanced) {
  FakeClock clock(absl::FromUnixSeconds(100));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(100));
  clock.Advance(absl::Seconds(5));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(105));
  clock.Advance(absl::Seconds(-50));  // never backwards
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(105));
}

TEST(FakeClockTest, SleepUntilWakesOnlyAfterAdvancePastDeadline) {
  FakeClock clock(absl::FromUnixSeconds(0));
  absl::Notification woke;
  std::thread sleeper([&] {
    clock.SleepFor(absl::Seconds(10));
    woke.Notify();
  });
  ASSERT_TRUE(clock.BlockUntilWaiters(1));
  clock.Advance(absl::Seconds(9));
  // Still asleep: one more waiter check after the advance proves it.
  ASSERT_TRUE(clock.BlockUntilWaiters(1));
  EXPECT_FALSE(woke.HasBeenNotified());
  clock.Advance(absl::Seconds(1));
  sleeper.join();
  EXPECT_TRUE(woke.HasBeenNotified());
  EXPECT_EQ(clock.waiters(), 0);
}

TEST(FakeClockTest, AwaitReturnsTrueWhenConditionBecomesTrue) {
  FakeClock clock;
  absl::Mutex mu;
  bool ready = false;
  bool result = false;
  std::thread waiter([&] {
    absl::MutexLock lock(&mu);
    result = clock.AwaitWithDeadline(&mu, absl::Condition(&ready),
                                     clock.Now() + absl::Hours(1));
  });
  ASSERT_TRUE(clock.BlockUntilWaiters(1));
  {
    absl::MutexLock lock(&mu);
    ready = true;
  }
  waiter.join();
  EXPECT_TRUE(result);
}

TEST(FakeClockTest, AwaitReturnsFalseWhenFakeDeadlinePasses) {
  FakeClock clock;
  absl::Mutex mu;
  bool never = false;
  bool result = true;
  std::thread waiter([&] {
    absl::MutexLock lock(&mu);
    result = clock.AwaitWithDeadline(&mu, absl::Condition(&never),
                                     clock.Now() + absl::Seconds(5));
  });
  ASSERT_TRUE(clock.BlockUntilWaiters(1));
  clock.Advance(absl::Seconds(5));
  waiter.join();
  EXPECT_FALSE(result);
}

TEST(RealClockTest, NowIsCloseToAbslNow) {
  absl::Duration skew = Clock::Real()->Now() - absl::Now();
  EXPECT_LT(absl::AbsDuration(skew), absl::Seconds(1));
}

}  // namespace
}  // namespace hangar
