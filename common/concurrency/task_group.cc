#include "common/concurrency/task_group.h"

#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status/status_util.h"

namespace hangar {

bool StopToken::stop_requested() const {
  absl::MutexLock lock(&state_->mu);
  return state_->stop;
}

bool StopToken::WaitUntil(Clock* clock, absl::Time deadline) const {
  absl::MutexLock lock(&state_->mu);
  clock->AwaitWithDeadline(&state_->mu, absl::Condition(&state_->stop),
                           deadline);
  return state_->stop;
}

absl::StatusOr<std::unique_ptr<TaskGroup>> TaskGroup::Create(Options options) {
  if (options.max_threads < 1 || options.max_threads > 256) {
    return InvalidField("max_threads", absl::StrCat("must be in [1, 256]; was ",
                                                    options.max_threads));
  }
  if (options.max_queued < 0 || options.max_queued > (1 << 20)) {
    return InvalidField(
        "max_queued",
        absl::StrCat("must be in [0, 1048576]; was ", options.max_queued));
  }
  if (options.clock == nullptr) {
    return InvalidField("clock", "must not be null");
  }
  return std::unique_ptr<TaskGroup>(new TaskGroup(std::move(options)));
}

TaskGroup::TaskGroup(Options options)
    : options_(std::move(options)),
      stop_state_(std::make_shared<StopToken::State>()) {}

TaskGroup::~TaskGroup() { Shutdown(); }

int TaskGroup::WaitingLocked() const {
  // Threads that are not running a task are about to take one from the
  // queue; only the tasks beyond them really wait.
  int free_threads = static_cast<int>(threads_.size()) - running_;
  int waiting = static_cast<int>(queue_.size()) - free_threads;
  return waiting > 0 ? waiting : 0;
}

absl::Status TaskGroup::Submit(std::function<void(const StopToken&)> task) {
  absl::MutexLock lock(&mu_);
  if (shutting_down_) {
    return absl::FailedPreconditionError(
        absl::StrCat(options_.name, ": shutting down; no new tasks"));
  }
  int free_threads = static_cast<int>(threads_.size()) - running_;
  bool claimed_by_free_thread = free_threads > static_cast<int>(queue_.size());
  if (!claimed_by_free_thread) {
    if (static_cast<int>(threads_.size()) < options_.max_threads) {
      threads_.emplace_back([this] { WorkerLoop(); });
    } else if (WaitingLocked() >= options_.max_queued) {
      return absl::ResourceExhaustedError(absl::StrCat(
          options_.name, ": ", options_.max_threads, " tasks running and ",
          options_.max_queued, " waiting; try again later"));
    }
  }
  queue_.push_back(std::move(task));
  return absl::OkStatus();
}

void TaskGroup::WorkerLoop() {
  const StopToken token(stop_state_);
  absl::MutexLock lock(&mu_);
  while (true) {
    auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return shutting_down_ || !queue_.empty();
    };
    mu_.Await(absl::Condition(&has_work));
    if (shutting_down_) return;
    std::function<void(const StopToken&)> task = std::move(queue_.front());
    queue_.pop_front();
    ++running_;
    mu_.Unlock();
    task(token);
    task = nullptr;  // Destroy what it captured outside the lock too.
    mu_.Lock();
    --running_;
  }
}

void TaskGroup::Shutdown() {
  absl::MutexLock shutdown_lock(&shutdown_mu_);
  std::deque<std::function<void(const StopToken&)>> dropped;
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    dropped.swap(queue_);
    threads.swap(threads_);
  }
  {
    absl::MutexLock lock(&stop_state_->mu);
    stop_state_->stop = true;
  }
  if (!dropped.empty()) {
    std::cerr << options_.name << ": shutdown dropped " << dropped.size()
              << " queued tasks that had not started\n";
  }
  dropped.clear();
  for (std::thread& thread : threads) thread.join();
}

int TaskGroup::running() const {
  absl::MutexLock lock(&mu_);
  return running_;
}

int TaskGroup::queued() const {
  absl::MutexLock lock(&mu_);
  return WaitingLocked();
}

int TaskGroup::threads() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(threads_.size());
}

}  // namespace hangar
