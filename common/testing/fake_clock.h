// A Clock whose time moves only when a test says so.
//
//   FakeClock clock(absl::FromUnixSeconds(1000));
//   std::thread worker([&] { autoscaler.RunLoop(); });   // sleeps on `clock`
//   clock.BlockUntilWaiters(1);       // the worker is now waiting on the clock
//   clock.Advance(absl::Seconds(30)); // its timer fires
//
// Waiters notice an Advance() within about a millisecond of real time; they
// never wake because real time passed, so results do not depend on how busy
// the machine is.
#ifndef HANGAR_COMMON_TESTING_FAKE_CLOCK_H_
#define HANGAR_COMMON_TESTING_FAKE_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"

namespace hangar::testing {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000))
      : now_(start) {}

  absl::Time Now() override;
  void SleepUntil(absl::Time deadline) override;
  bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& condition,
                         absl::Time deadline) override;

  // Moves time forward (never backward) and wakes every waiter whose
  // deadline has passed.
  void Advance(absl::Duration duration);
  void SetTime(absl::Time time);

  // Blocks (in real time, up to `timeout`) until at least `count` threads are
  // waiting on this clock. Returns false on timeout.
  bool BlockUntilWaiters(int count, absl::Duration timeout = absl::Seconds(30));

  int waiters();

 private:
  absl::Mutex mu_;  // Protects now_ and waiters_.
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  int waiters_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hangar::testing

#endif  // HANGAR_COMMON_TESTING_FAKE_CLOCK_H_
