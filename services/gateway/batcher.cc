#include "services/gateway/batcher.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace hangar::gateway {
namespace {

// Completions remembered for the rate behind the retry hint.
constexpr size_t kCompletionWindow = 64;
constexpr absl::Duration kMaxRetryAfter = absl::Seconds(30);

}  // namespace

absl::StatusOr<std::unique_ptr<Batcher>> Batcher::Create(
    const Options& options) {
  if (options.batch_size < 1 || options.batch_size > 256) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch_size: must be in [1, 256]; was ", options.batch_size));
  }
  if (options.max_queue_delay < absl::ZeroDuration() ||
      options.max_queue_delay > absl::Seconds(10)) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_queue_delay: must be in [0, 10s]; was ",
                     absl::FormatDuration(options.max_queue_delay)));
  }
  if (options.max_queue_size < 1 || options.max_queue_size > (1 << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_queue_size: must be in [1, 1048576]; was ",
                     options.max_queue_size));
  }
  if (options.default_retry_after <= absl::ZeroDuration() ||
      options.default_retry_after > absl::Seconds(60)) {
    return absl::InvalidArgumentError(
        absl::StrCat("default_retry_after: must be in (0, 60s]; was ",
                     absl::FormatDuration(options.default_retry_after)));
  }
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("clock: required");
  }
  return std::unique_ptr<Batcher>(new Batcher(options));
}

absl::Status Batcher::Enqueue(uint64_t id, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  if (by_id_.contains(id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("request ", id, " is already queued"));
  }
  if (static_cast<int>(queue_.size()) >= options_.max_queue_size) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "queue full (", queue_.size(), " requests wait); retry after ",
        absl::ToInt64Milliseconds(RetryAfterLocked()), " ms"));
  }
  queue_.push_back(
      {.id = id, .enqueue_time = options_.clock->Now(), .deadline = deadline});
  by_id_[id] = std::prev(queue_.end());
  deadlines_.insert({deadline, id});
  return absl::OkStatus();
}

bool Batcher::CancelQueued(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto found = by_id_.find(id);
  if (found == by_id_.end()) return false;
  RemoveLocked(found->second);
  return true;
}

void Batcher::RemoveLocked(std::list<Queued>::iterator it) {
  deadlines_.erase({it->deadline, it->id});
  by_id_.erase(it->id);
  queue_.erase(it);
}

void Batcher::SetReplicas(const std::vector<ReplicaSlots>& replicas) {
  absl::MutexLock lock(&mu_);
  std::map<std::string, Replica, std::less<>> next;
  for (const ReplicaSlots& slots : replicas) {
    Replica& replica = next[slots.name];
    auto old = replicas_.find(slots.name);
    if (old != replicas_.end()) replica = old->second;
    replica.slots = slots;
    replica.slots.capacity = std::max(1, slots.capacity);
  }
  replicas_ = std::move(next);
}

void Batcher::Complete(absl::string_view replica, int sequences) {
  absl::MutexLock lock(&mu_);
  absl::Time now = options_.clock->Now();
  for (int i = 0; i < sequences; ++i) {
    completions_.push_back(now);
    if (completions_.size() > kCompletionWindow) completions_.pop_front();
  }
  auto found = replicas_.find(replica);
  if (found == replicas_.end()) return;
  found->second.outstanding =
      std::max(0, found->second.outstanding - sequences);
}

Batcher::Replica* Batcher::PickReplicaLocked() {
  Replica* best = nullptr;
  for (auto& [name, replica] : replicas_) {
    if (replica.slots.draining) continue;
    if (replica.outstanding >= replica.slots.capacity) continue;
    if (best == nullptr || replica.outstanding < best->outstanding ||
        (replica.outstanding == best->outstanding &&
         replica.last_dispatch < best->last_dispatch)) {
      best = &replica;
    }
  }
  return best;
}

PollResult Batcher::Poll() {
  absl::MutexLock lock(&mu_);
  PollResult result;
  const absl::Time now = options_.clock->Now();

  // Expired requests never reach a replica.
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    uint64_t id = deadlines_.begin()->second;
    result.expired.push_back(id);
    RemoveLocked(by_id_.at(id));
  }

  while (!queue_.empty()) {
    const bool full = static_cast<int>(queue_.size()) >= options_.batch_size;
    const bool waited_enough =
        now >= queue_.front().enqueue_time + options_.max_queue_delay;
    if (!full && !waited_enough) break;
    Replica* replica = PickReplicaLocked();
    if (replica == nullptr) break;
    const int take =
        std::min({static_cast<int>(queue_.size()), options_.batch_size,
                  replica->slots.capacity - replica->outstanding});
    Dispatch dispatch{.replica = replica->slots.name};
    dispatch.requests.reserve(take);
    for (int i = 0; i < take; ++i) {
      dispatch.requests.push_back(queue_.front().id);
      RemoveLocked(queue_.begin());
    }
    replica->outstanding += take;
    replica->last_dispatch = ++dispatch_counter_;
    result.dispatches.push_back(std::move(dispatch));
  }

  if (!queue_.empty()) {
    result.next_wake = deadlines_.begin()->first;
    const bool full = static_cast<int>(queue_.size()) >= options_.batch_size;
    const absl::Time delay_end =
        queue_.front().enqueue_time + options_.max_queue_delay;
    // Without a free slot only a Complete or a new replica can help; a
    // batch that may already go waits for one of those, not for time.
    if (!full && delay_end > now && PickReplicaLocked() != nullptr) {
      result.next_wake = std::min(result.next_wake, delay_end);
    }
  }
  return result;
}

absl::Duration Batcher::RetryAfter() {
  absl::MutexLock lock(&mu_);
  return RetryAfterLocked();
}

absl::Duration Batcher::RetryAfterLocked() {
  const absl::Time now = options_.clock->Now();
  // Completions per second over the remembered window, if it says anything.
  if (completions_.size() < 2 || completions_.back() <= completions_.front()) {
    return std::max(options_.default_retry_after, options_.max_queue_delay);
  }
  const double seconds = absl::ToDoubleSeconds(
      std::max(now, completions_.back()) - completions_.front());
  const double rate = (completions_.size() - 1) / seconds;
  const absl::Duration drain = absl::Seconds(
      std::ceil(static_cast<double>(queue_.size()) / rate * 1000.0) / 1000.0);
  return std::clamp(drain, options_.max_queue_delay, kMaxRetryAfter);
}

int Batcher::queued() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(queue_.size());
}

int Batcher::outstanding() const {
  absl::MutexLock lock(&mu_);
  int total = 0;
  for (const auto& [name, replica] : replicas_) total += replica.outstanding;
  return total;
}

int Batcher::outstanding(absl::string_view replica) const {
  absl::MutexLock lock(&mu_);
  auto found = replicas_.find(replica);
  return found == replicas_.end() ? 0 : found->second.outstanding;
}

}  // namespace hangar::gateway
