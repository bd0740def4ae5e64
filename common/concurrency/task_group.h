// TaskGroup: a bounded pool of background threads for a service's long work
// (imports, downloads, preparations), with a shutdown that waits.
//
// A service hands work to the group instead of starting a std::thread per
// task. At most `max_threads` tasks run at once; threads are created lazily,
// only when a task arrives and none is free, and are reused afterwards. When
// every thread is busy a task waits in a FIFO queue of at most `max_queued`
// entries; past that, Submit() refuses with RESOURCE_EXHAUSTED so the caller
// can turn the overload into an error for its client instead of piling up
// memory.
//
// Every task receives a StopToken. Long work checks `stop_requested()`
// between steps, and waits on the group's clock with `WaitUntil()` instead
// of sleeping, so that Shutdown() wakes it at once:
//
//   ASSIGN_OR_RETURN(std::unique_ptr<TaskGroup> tasks,
//                    TaskGroup::Create({.name = "imports", .max_threads = 2}));
//   RETURN_IF_ERROR(tasks->Submit([this, name](const StopToken& stop) {
//     for (int attempt = 0; !stop.stop_requested(); ++attempt) {
//       if (TryImport(name).ok()) return;
//       if (stop.WaitUntil(clock_, clock_->Now() + Backoff(attempt))) return;
//     }
//   }));
//
// Shutdown() (also run by the destructor) refuses new tasks, requests stop
// on every token, drops the queued tasks that have not started, and returns
// only when every running task has returned and every thread is joined, so
// nothing a task touches may be destroyed before it. It must not be called
// from inside a task of the same group (it would wait for itself).
//
// Thread-safety: every method may be called from any thread.
#ifndef HANGAR_COMMON_CONCURRENCY_TASK_GROUP_H_
#define HANGAR_COMMON_CONCURRENCY_TASK_GROUP_H_

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"

namespace hangar {

// Handed to each task; lets long work stop early and wait on the clock.
// Cheap to copy; every copy observes the same stop request.
class StopToken {
 public:
  // Whether the group is shutting down (the task should return soon).
  bool stop_requested() const;

  // Waits on `clock` until stop is requested or Now() >= deadline; returns
  // stop_requested(). Works with FakeClock (the wait ends when fake time
  // passes the deadline or Shutdown() is called).
  bool WaitUntil(Clock* clock, absl::Time deadline) const;

 private:
  friend class TaskGroup;
  struct State {
    mutable absl::Mutex mu;  // Protects stop.
    bool stop ABSL_GUARDED_BY(mu) = false;
  };
  explicit StopToken(std::shared_ptr<State> state) : state_(std::move(state)) {}

  std::shared_ptr<State> state_;
};

class TaskGroup {
 public:
  struct Options {
    // Names the group in log lines ("imports: dropped 3 queued tasks").
    std::string name = "tasks";
    // How many tasks may run at once, in [1, 256]; also the most threads
    // the group ever holds.
    int max_threads = 4;
    // How many tasks may wait for a free thread, in [0, 1 << 20]. With 0 a
    // task is accepted only when a thread can start it at once.
    int max_queued = 1024;

    // Injected dependencies.
    // The clock tasks usually wait on (see clock()); never null.
    Clock* clock = Clock::Real();
  };

  static absl::StatusOr<std::unique_ptr<TaskGroup>> Create(Options options);

  ~TaskGroup();  // Shutdown()
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  // Runs `task` on one of the group's threads. RESOURCE_EXHAUSTED when
  // max_queued tasks already wait; FAILED_PRECONDITION after Shutdown.
  absl::Status Submit(std::function<void(const StopToken&)> task);

  // Idempotent. No new tasks; requests stop on every token; drops queued
  // tasks that have not started; returns when every running task has
  // returned and every worker thread is joined. Concurrent callers all
  // return only once that is done.
  void Shutdown();

  // Tasks running now.
  int running() const;
  // Tasks waiting for a thread (accepted, not started).
  int queued() const;
  // Worker threads started so far (never more than max_threads).
  int threads() const;

  Clock* clock() const { return options_.clock; }

  // ---------------------------------------------------------------------
  // Implementation details.
 private:
  explicit TaskGroup(Options options);

  void WorkerLoop();
  // Queued tasks no free thread has claimed yet.
  int WaitingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  const std::shared_ptr<StopToken::State> stop_state_;

  // Serializes Shutdown() callers so a second one returns only after the
  // first has joined every thread.
  absl::Mutex shutdown_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  mutable absl::Mutex mu_;  // Protects everything below.
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::function<void(const StopToken&)>> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hangar

#endif  // HANGAR_COMMON_CONCURRENCY_TASK_GROUP_H_
