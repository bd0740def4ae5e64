// The gateway's batcher: one per deployment revision, it decides which
// queued requests go to which replica and when. It owns no threads and no
// gRPC types; a driver (the gateway's dispatcher) calls Poll() whenever
// something changed or the time it returned as `next_wake` has come, and
// carries out the dispatches.
//
// Policy (DESIGN.md §4, "Batching"):
//   * FIFO: requests leave the queue in arrival order.
//   * A batch is dispatched when `batch_size` requests are queued, or when
//     the oldest has waited `max_queue_delay`, and a replica has free slots.
//   * One dispatch sends at most `batch_size` requests to one replica, and
//     never more than the replica's free slots (capacity minus outstanding).
//     Runners batch continuously, so a dispatch to a replica that is already
//     decoding joins its running batch at the next token boundary.
//   * The replica is the one with the least outstanding work (fewest
//     sequences in flight); ties go to the one that got work least recently.
//     Draining replicas get no new work but keep their outstanding counts
//     until Complete().
//   * The queue is bounded: past `max_queue_size` Enqueue answers
//     RESOURCE_EXHAUSTED at once, with a retry hint (RetryAfter()) estimated
//     from the recent completion rate.
//   * Requests whose deadline passes while queued are dropped before any
//     dispatch and reported in PollResult::expired.
//   * A queued request can be withdrawn (CancelQueued); once dispatched, its
//     cancellation is the runner's (per-sequence Cancel), never a batch's.
//
// Every timer reads the injected clock, so the timing is proven in unit
// tests with a FakeClock.
//
//   ASSIGN_OR_RETURN(auto batcher, Batcher::Create({.batch_size = 8}));
//   batcher->SetReplicas({{.name = "r0", .capacity = 8}});
//   RETURN_IF_ERROR(batcher->Enqueue(/*id=*/1, deadline));
//   PollResult result = batcher->Poll();  // dispatches, expired, next_wake
//   ...                                    // later, per finished sequence:
//   batcher->Complete("r0");
//
// Thread-safe: every method may be called from any thread.
#ifndef HANGAR_SERVICES_GATEWAY_BATCHER_H_
#define HANGAR_SERVICES_GATEWAY_BATCHER_H_

#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"

namespace hangar::gateway {

// A replica the batcher may send work to, as routing sees it.
struct ReplicaSlots {
  // Unique among the revision's replicas.
  std::string name;
  // Sequences the runner decodes at once (its max_batch), >= 1.
  int capacity = 1;
  // Finishing what it holds; gets no new work.
  bool draining = false;
};

// Requests sent to one replica together.
struct Dispatch {
  std::string replica;
  // Request ids in arrival order.
  std::vector<uint64_t> requests;
};

struct PollResult {
  std::vector<Dispatch> dispatches;
  // Requests dropped because their deadline passed while they were queued.
  std::vector<uint64_t> expired;
  // When Poll() should run again if nothing else happens first (an
  // Enqueue, a Complete, a replica change): the oldest request's delay
  // ending, or the earliest deadline. InfiniteFuture when only an event can
  // help.
  absl::Time next_wake = absl::InfiniteFuture();
};

class Batcher {
 public:
  struct Options {
    // Requests per batch (the deployment's inference_batch_size), in
    // [1, 256].
    int batch_size = 8;
    // Longest a partial batch waits for company, in [0, 10 s].
    absl::Duration max_queue_delay = absl::Milliseconds(5);
    // Requests that may wait at once, in [1, 1 << 20].
    int max_queue_size = 1024;
    // The retry hint before any completion has been seen, in (0, 60 s].
    absl::Duration default_retry_after = absl::Milliseconds(100);

    // --- injected ---
    // Every timer reads it. Not owned.
    Clock* clock = Clock::Real();
  };

  static absl::StatusOr<std::unique_ptr<Batcher>> Create(
      const Options& options);

  // Queues request `id` (unique among queued ones) until
  // `deadline`. RESOURCE_EXHAUSTED when the queue is full (see
  // RetryAfter()), INVALID_ARGUMENT for a duplicate id.
  absl::Status Enqueue(uint64_t id, absl::Time deadline);

  // Withdraws a queued request. False when it is not queued (unknown, or
  // already dispatched or expired).
  bool CancelQueued(uint64_t id);

  // Replaces the set of replicas. Outstanding counts of replicas that stay
  // are kept; replicas that are gone are forgotten (their in-flight work is
  // the router's to retry or fail).
  void SetReplicas(const std::vector<ReplicaSlots>& replicas);

  // `sequences` dispatched to `replica` finished (any outcome); their slots
  // are free again. Unknown replicas are ignored.
  void Complete(absl::string_view replica, int sequences = 1);

  // Drops expired requests and forms every batch that may go now.
  PollResult Poll();

  // How long a refused client should wait before retrying: the time the
  // queue ahead needs at the recent completion rate, clamped to
  // [max_queue_delay, 30 s].
  absl::Duration RetryAfter();

  int queued() const;
  int outstanding() const;
  int outstanding(absl::string_view replica) const;

  // -------------------------------------------------------------------------
 private:
  struct Queued {
    uint64_t id;
    absl::Time enqueue_time;
    absl::Time deadline;
  };
  struct Replica {
    ReplicaSlots slots;
    int outstanding = 0;
    // Order of the last dispatch to it, for tie-breaking.
    uint64_t last_dispatch = 0;
  };

  explicit Batcher(const Options& options) : options_(options) {}

  // The replica to send to now, or null when none has a free slot.
  Replica* PickReplicaLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveLocked(std::list<Queued>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Duration RetryAfterLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;

  mutable absl::Mutex mu_;  // Protects everything below.
  // Arrival order.
  std::list<Queued> queue_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::list<Queued>::iterator> by_id_ ABSL_GUARDED_BY(mu_);
  // Queued requests by deadline, to find the earliest.
  std::set<std::pair<absl::Time, uint64_t>> deadlines_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Replica, std::less<>> replicas_ ABSL_GUARDED_BY(mu_);
  uint64_t dispatch_counter_ ABSL_GUARDED_BY(mu_) = 0;
  // Times of the most recent completions, for the retry hint.
  std::deque<absl::Time> completions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hangar::gateway

#endif  // HANGAR_SERVICES_GATEWAY_BATCHER_H_
