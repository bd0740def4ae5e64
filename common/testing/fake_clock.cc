#include "common/testing/fake_clock.h"

#include "absl/time/clock.h"

namespace hangar::testing {
namespace {
// How often a waiter re-reads fake time. Only latency, never correctness,
// depends on it: waiters compare against fake time, not real time.
constexpr absl::Duration kPollInterval = absl::Milliseconds(1);
}  // namespace

absl::Time FakeClock::Now() {
  absl::MutexLock lock(&mu_);
  return now_;
}

void FakeClock::SleepUntil(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  ++waiters_;
  auto reached = [this, deadline]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return now_ >= deadline;
  };
  mu_.Await(absl::Condition(&reached));
  --waiters_;
}

bool FakeClock::AwaitWithDeadline(absl::Mutex* mu,
                                  const absl::Condition& condition,
                                  absl::Time deadline) {
  {
    absl::MutexLock lock(&mu_);
    ++waiters_;
  }
  bool satisfied = false;
  while (true) {
    // `mu` is held here: the condition is evaluated under the caller's lock.
    if (mu->AwaitWithTimeout(condition, kPollInterval)) {
      satisfied = true;
      break;
    }
    if (Now() >= deadline) break;
  }
  absl::MutexLock lock(&mu_);
  --waiters_;
  return satisfied;
}

void FakeClock::Advance(absl::Duration duration) {
  absl::MutexLock lock(&mu_);
  if (duration > absl::ZeroDuration()) now_ += duration;
}

void FakeClock::SetTime(absl::Time time) {
  absl::MutexLock lock(&mu_);
  if (time > now_) now_ = time;
}

bool FakeClock::BlockUntilWaiters(int count, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto enough = [this, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return waiters_ >= count;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

int FakeClock::waiters() {
  absl::MutexLock lock(&mu_);
  return waiters_;
}

}  // namespace hangar::testing
