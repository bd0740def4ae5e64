// When a failed webhook delivery is tried again: exponential backoff with
// jitter, capped, for a bounded number of attempts.
//
// After the n-th failed attempt (n >= 1) the next one is due after
//
//   base(n)  = min(initial_backoff * 2^(n-1), max_backoff)
//   delay(n) = base(n) * (1 - jitter * u),   u uniform in [0, 1)
//
// so with the defaults 1 s, 2 s, 4 s, ... 64 s, each up to 20% earlier, so
// that deliveries failing together (a receiver that was down) do not all
// come back at the same instant. After `max_attempts` attempts in all the
// delivery is FAILED and no more are made.
//
//   RetryPolicy policy;                       // defaults
//   RETURN_IF_ERROR(policy.Validate());
//   absl::Time next = now + policy.Delay(attempts, absl::Uniform(gen, 0., 1.));
#ifndef HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_RETRY_POLICY_H_
#define HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_RETRY_POLICY_H_

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace hangar::deployment::webhooks {

struct RetryPolicy {
  // Attempts in all, the first included, in [1, 100].
  int max_attempts = 8;
  // Delay after the first failed attempt; positive, at most max_backoff.
  absl::Duration initial_backoff = absl::Seconds(1);
  // Longest delay between two attempts, at most a day.
  absl::Duration max_backoff = absl::Minutes(10);
  // Fraction of a delay that may be taken off at random, in [0, 1).
  double jitter = 0.2;

  // INVALID_ARGUMENT naming the first field out of its range.
  absl::Status Validate() const;

  // Whether another attempt may follow `attempts_made` attempts.
  bool MayRetry(int attempts_made) const {
    return attempts_made < max_attempts;
  }

  // The wait after the `attempts_made`-th failed attempt (>= 1), with the
  // random draw `u` in [0, 1) (clamped into it).
  absl::Duration Delay(int attempts_made, double u) const;
};

}  // namespace hangar::deployment::webhooks

#endif  // HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_RETRY_POLICY_H_
