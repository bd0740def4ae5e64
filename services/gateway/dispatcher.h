// The gateway's dispatcher: it drives one Batcher per deployment revision
// and carries out the batches the batchers form as RunnerService.Generate
// calls, demultiplexing each call's per-sequence stream back to the client
// calls waiting on it.
//
// Threads. Work is dispatched inline, on the thread of the event that makes
// it possible: a Submit (the gRPC server thread of the client call), a
// finished sequence (the gRPC thread that read the runner's message), a
// retry or a cancel. Each of these polls the revision it touched; a batch
// that may go (full, or its oldest request has waited `max_queue_delay`,
// and a replica has free slots) is started right there, after the lock is
// released, so with queue delay 0 or a full batch no other thread is woken
// between the client's call and the runner's. One loop per gateway (Run(),
// a TaskGroup task) handles only time: a queue delay that ends, a queued
// deadline, a replica's cooldown, the drain. It sleeps on the injected
// clock until the earliest of those and is woken only when an event needs
// an earlier wake than the one it sleeps towards. Runner calls use gRPC's
// callback client API (one grpc::ClientReadReactor per dispatch), so no
// thread waits on a runner either.
//
// One dispatch is ONE RunnerService.Generate call carrying the batch's
// sequences, each with its own sequence id (the gateway's id of the
// request), its own timeout (from its client's deadline) and its own
// overrides. A sequence's end frees its replica slot at once (the runner
// batches continuously, so the next dispatch joins the running batch).
//
// Failures. A client that cancels while queued leaves the queue
// (Batcher::CancelQueued); once dispatched its sequence alone is cancelled
// on the runner (RunnerService.Cancel by id; the runner's last message for
// it still carries the tokens it spent, which are metered) and the client is
// answered CANCELLED at once; the other sequences of the batch go on. A call or
// sequence that fails with UNAVAILABLE before anything reached the client (the
// observer agrees to Restart()) is queued again, up to `max_attempts`
// dispatches; the failed replica is treated as draining for `replica_cooldown`,
// so the retry goes to another one. Queued requests of a revision that stops
// serving move to the deployment's serving revision, and in-flight ones finish
// where they are: a revision switch fails nothing.
//
// Observers (the gRPC server reactors) get OnDelta* and Restart() with the
// dispatcher's lock held, then exactly one OnFinish, after which the
// observer is never touched again. OnFinish comes after the lock is
// released (the request is forgotten first, so nothing else can reach the
// observer), and after the runner calls the same event made possible were
// started: a freed replica slot is refilled before the client hears back.
// It may come before Submit() returns. Observers must not call back into
// the dispatcher from OnDelta or Restart.
#ifndef HANGAR_SERVICES_GATEWAY_DISPATCHER_H_
#define HANGAR_SERVICES_GATEWAY_DISPATCHER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/concurrency/task_group.h"
#include "common/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "hangar/v1/runner.grpc.pb.h"
#include "hangar/v1/scheduler.pb.h"
#include "services/gateway/batcher.h"
#include "services/gateway/gateway_metrics.h"
#include "services/gateway/usage_meter.h"

namespace hangar::gateway {

// How a request ended, besides its status.
struct GenerateOutcome {
  v1::FinishReason finish_reason = v1::FINISH_REASON_UNSPECIFIED;
  v1::TokenUsage usage;
  std::string deployment;
  int64_t revision = 0;
  // The deployment's metric handles (null without metrics).
  GatewayMetrics::Deployment* metrics = nullptr;
};

// A client call waiting for its sequence (see the locking note above).
class RequestObserver {
 public:
  virtual ~RequestObserver() = default;
  // New text of the sequence (never empty).
  virtual void OnDelta(const std::string& delta) = 0;
  // The sequence starts over on another replica: returns false when some
  // of it already reached the client (no retry then), else discards what it
  // holds and returns true.
  virtual bool Restart() = 0;
  // The last call.
  virtual void OnFinish(const absl::Status& status,
                        const GenerateOutcome& outcome) = 0;
};

// One request handed to Submit().
struct SubmitRequest {
  std::string deployment;
  int64_t revision = 0;
  // prompt and sampling overrides; the id and timeout are set here.
  v1::RunnerSequence sequence;
  // The client's deadline.
  absl::Time deadline = absl::InfiniteFuture();
  // Whose tokens (metering).
  UsageKey usage_key;
  // Not owned; see RequestObserver.
  RequestObserver* observer = nullptr;
};

class Dispatcher {
 public:
  struct Options {
    // Prefix of every sequence id ("<prefix>-<n>"), 1 to 40 printable
    // ASCII characters; unique per gateway instance.
    std::string sequence_prefix = "gw";
    // Batcher settings shared by every revision (see Batcher::Options).
    absl::Duration max_queue_delay = absl::Milliseconds(5);
    int max_queue_size = 1024;
    // Dispatches of one request at most (1 = no retry), in [1, 10].
    int max_attempts = 3;
    // How long a replica that failed a call gets no new work, >= 0.
    absl::Duration replica_cooldown = absl::Seconds(5);

    // --- injected (not owned) ---
    GatewayMetrics* metrics = nullptr;  // optional
    UsageMeter* usage = nullptr;        // optional
    Clock* clock = Clock::Real();
  };

  static absl::StatusOr<std::unique_ptr<Dispatcher>> Create(Options options);
  // Cancels every runner call and waits for their reactors to finish.
  ~Dispatcher();

  // The loop; returns after Stop(). Run it on a TaskGroup thread.
  void Run();
  // Ends Run() (idempotent). Requests still held are answered UNAVAILABLE.
  void Stop();

  // Queues a request on its revision's batcher and, when a batch may go
  // now, starts it on this thread. UNAVAILABLE when the revision is unknown
  // or the gateway is draining; RESOURCE_EXHAUSTED when the queue is full,
  // with `*retry_after` set; DEADLINE_EXCEEDED when `deadline` has passed.
  // On OK the observer will get OnFinish exactly once (possibly before
  // Submit returns). Returns the request's id.
  absl::StatusOr<uint64_t> Submit(SubmitRequest request,
                                  absl::Duration* retry_after);

  // The client of request `id` went away: see the header comment. Unknown
  // ids (already finished) are ignored. The observer gets OnFinish
  // (CANCELLED) unless it already had it.
  void Cancel(uint64_t id);

  // Every route now (from the RouteTable): creates, updates and forgets
  // revisions' batchers and replicas.
  void UpdateRoutes(const std::vector<v1::Route>& routes);

  // Shutdown begins: Submit refuses from now on; requests still held at
  // `deadline` are answered UNAVAILABLE and cancelled on their runners.
  void Drain(absl::Time deadline);

  // Queued and in-flight requests per revision (ReportLoad).
  std::vector<v1::RevisionLoad> Load() const;
  // Requests held now (queued or dispatched).
  int pending() const;

  // -------------------------------------------------------------------------
 private:
  using RevKey = std::pair<std::string, int64_t>;
  class RunnerCall;
  class Locked;

  struct Replica {
    v1::RouteReplica route;
    // The channel's stub for route.address() (owned by stubs_).
    v1::RunnerService::Stub* stub = nullptr;
  };

  struct Revision {
    std::string deployment;
    int64_t revision = 0;
    bool serving = false;
    std::unique_ptr<Batcher> batcher;
    // By replica name.
    std::map<std::string, Replica> replicas;
    // Metric handles (null without metrics).
    GatewayMetrics::Deployment* metrics = nullptr;
    prometheus::Gauge* queue_depth = nullptr;
  };

  struct Request {
    uint64_t id = 0;
    RevKey revision;
    // The prompt and overrides; while dispatched they live in the runner
    // call's request instead (moved there, and back for a retry).
    v1::RunnerSequence sequence;
    absl::Time arrival;
    absl::Time enqueued;
    absl::Time deadline;
    UsageKey usage_key;
    RequestObserver* observer = nullptr;
    GatewayMetrics::Deployment* metrics = nullptr;
    int attempts = 0;
    bool first_token = false;
    // Set while dispatched.
    RunnerCall* call = nullptr;
    int index = -1;
  };

  // An answer decided under the lock, delivered after it (see the header).
  struct Answer {
    RequestObserver* observer;
    absl::Status status;
    GenerateOutcome outcome;
  };

  explicit Dispatcher(Options options) : options_(std::move(options)) {}

  bool Wakeable() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return kicked_ || stopping_;
  }
  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return calls_.empty() && dying_ == 0;
  }
  void KickLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { kicked_ = true; }

  absl::StatusOr<Revision*> RevisionLocked(const RevKey& key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyReplicasLocked(Revision& revision)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The revision queued requests of `deployment` should go to now.
  Revision* ServingLocked(const std::string& deployment)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues `request` (new or retried) on `revision`; the caller then polls
  // the revision (DispatchLocked).
  absl::Status EnqueueLocked(Request& request, Revision& revision)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Polls one revision's batcher: expired requests are answered, the
  // batches that may go become runner calls in to_start_. Returns the
  // batcher's next_wake.
  absl::Time PollRevisionLocked(const RevKey& key, Revision& revision,
                                absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // PollRevisionLocked on behalf of an event (not the loop): wakes the loop
  // only when it must run before the time it sleeps towards.
  void DispatchLocked(const RevKey& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The loop's round: cooldowns, then every revision. Returns its wake.
  absl::Time PollLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Releases mu_, then starts the calls in to_start_ and delivers the
  // answers in answers_, in that order.
  void UnlockAndFlush() ABSL_UNLOCK_FUNCTION(mu_);
  void FinishLocked(uint64_t id, const absl::Status& status,
                    const GenerateOutcome& outcome)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Retries request `id` after an UNAVAILABLE failure when allowed, else
  // finishes it with `status`.
  void RetryOrFinishLocked(uint64_t id, const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailAllLocked(const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops sequence `index` of `call` on its runner with
  // RunnerService.Cancel by id (the whole call once the dispatcher stops).
  void CancelSequenceLocked(RunnerCall* call, int index)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CompleteSlotLocked(RunnerCall* call, int index)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::RunnerService::Stub* StubLocked(const std::string& address)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // From RunnerCall: OnDone, then Forget once the call object is gone.
  void Forget();
  void OnMessage(RunnerCall* call, const v1::RunnerGenerateResponse& message);
  void OnCallDone(RunnerCall* call, const grpc::Status& status);

  const Options options_;

  mutable absl::Mutex mu_;  // Protects everything below.
  bool kicked_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time drain_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<RevKey, Revision> revisions_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Request> requests_ ABSL_GUARDED_BY(mu_);
  // Replica address -> when it may take new work again.
  absl::flat_hash_map<std::string, absl::Time> cooldown_until_
      ABSL_GUARDED_BY(mu_);
  // Calls whose reactor has not had OnDone yet.
  std::set<RunnerCall*> calls_ ABSL_GUARDED_BY(mu_);
  // Calls past OnDone whose object is not deleted yet.
  int dying_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, std::unique_ptr<v1::RunnerService::Stub>> stubs_
      ABSL_GUARDED_BY(mu_);
  // When the loop polls next on its own (InfinitePast until its first
  // round, which needs no wake).
  absl::Time loop_wake_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Filled under the lock, emptied by UnlockAndFlush().
  std::vector<RunnerCall*> to_start_ ABSL_GUARDED_BY(mu_);
  std::vector<Answer> answers_ ABSL_GUARDED_BY(mu_);

  // Cancel RPCs whose callback has not run yet (taken after mu_; the
  // callbacks take only this one).
  absl::Mutex cancel_mu_ ABSL_ACQUIRED_AFTER(mu_);
  int cancels_in_flight_ ABSL_GUARDED_BY(cancel_mu_) = 0;
};

}  // namespace hangar::gateway

#endif  // HANGAR_SERVICES_GATEWAY_DISPATCHER_H_
