#include "services/deployment/webhooks/retry_policy.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace hangar::deployment::webhooks {

absl::Status RetryPolicy::Validate() const {
  if (max_attempts < 1 || max_attempts > 100) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_attempts: must be in [1, 100]; was ", max_attempts));
  }
  if (max_backoff <= absl::ZeroDuration() || max_backoff > absl::Hours(24)) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_backoff: must be in (0, 24h]; was ",
                     absl::FormatDuration(max_backoff)));
  }
  if (initial_backoff <= absl::ZeroDuration() ||
      initial_backoff > max_backoff) {
    return absl::InvalidArgumentError(
        absl::StrCat("initial_backoff: must be in (0, max_backoff]; was ",
                     absl::FormatDuration(initial_backoff)));
  }
  if (!(jitter >= 0.0 && jitter < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("jitter: must be in [0, 1); was ", jitter));
  }
  return absl::OkStatus();
}

absl::Duration RetryPolicy::Delay(int attempts_made, double u) const {
  const int doublings = std::clamp(attempts_made, 1, 64) - 1;
  absl::Duration base = initial_backoff;
  for (int i = 0; i < doublings && base < max_backoff; ++i) base *= 2;
  base = std::min(base, max_backoff);
  if (!(u >= 0.0)) u = 0.0;  // NaN too.
  u = std::min(u, 1.0);
  return base * (1.0 - jitter * u);
}

}  // namespace hangar::deployment::webhooks
