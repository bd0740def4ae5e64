// The one clock every timer in Hangar reads.
//
// Batchers, the autoscaler, the reconciler and retry loops never call
// absl::Now() or sleep directly; they take a `Clock*` in their Options. In
// production that is `Clock::Real()`. In tests it is a `FakeClock` (in
// common/testing/fake_clock.h) whose time only moves when the test calls
// `Advance()`, so timing logic is proven without sleeping.
//
// Waiting is expressed against a mutex and a condition, because every timed
// wait in a server is "until something changes or a deadline passes":
//
//   absl::MutexLock lock(&mu_);
//   clock_->AwaitWithDeadline(&mu_, absl::Condition(this,
//   &Batcher::HasFullBatch),
//                             oldest_enqueue_time + max_queue_delay);
#ifndef HANGAR_COMMON_TIME_CLOCK_H_
#define HANGAR_COMMON_TIME_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace hangar {

class Clock {
 public:
  virtual ~Clock() = default;

  // The current time on this clock.
  virtual absl::Time Now() = 0;

  // Blocks the calling thread until Now() >= deadline.
  virtual void SleepUntil(absl::Time deadline) = 0;

  // `mu` must be held. Releases it and waits until `condition` holds or
  // Now() >= deadline, then reacquires it. Returns whether the condition
  // holds, like absl::Mutex::AwaitWithDeadline.
  virtual bool AwaitWithDeadline(absl::Mutex* mu,
                                 const absl::Condition& condition,
                                 absl::Time deadline) = 0;

  void SleepFor(absl::Duration duration) { SleepUntil(Now() + duration); }

  // The process-wide wall clock. Never null, never deleted.
  static Clock* Real();
};

}  // namespace hangar

#endif  // HANGAR_COMMON_TIME_CLOCK_H_
