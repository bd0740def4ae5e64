// A cancel flag a long download can also sleep on: Cancel() sets it and wakes
// every WaitUntil() at once (on any Clock, FakeClock included). The HubClient
// polls flag() between chunks.
//
//   Cancellation cancel;
//   if (cancel.WaitUntil(clock, clock->Now() + backoff)) return Cancelled();
//   ...   // elsewhere: cancel.Cancel();
#ifndef HANGAR_SERVICES_CATALOG_CANCELLATION_H_
#define HANGAR_SERVICES_CATALOG_CANCELLATION_H_

#include <atomic>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"

namespace hangar::catalog {

class Cancellation {
 public:
  void Cancel() {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    flag_ = true;
  }
  bool cancelled() const { return flag_.load(); }
  // For HubClient::Download, which polls it.
  const std::atomic<bool>* flag() const { return &flag_; }

  // Waits on `clock` until Cancel() or Now() >= deadline; returns
  // cancelled().
  bool WaitUntil(Clock* clock, absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    clock->AwaitWithDeadline(&mu_, absl::Condition(&cancelled_), deadline);
    return cancelled_;
  }

 private:
  std::atomic<bool> flag_{false};
  absl::Mutex mu_;  // Protects cancelled_ (flag_ mirrors it, lock-free).
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_CANCELLATION_H_
