// Scheduler: the orchestrator behind hangar.v1.SchedulerService. It turns
// declared replica sets and submitted jobs into placed, running workloads
// and keeps them so.
//
// Pieces (all injected or built from Options):
//  - the Placer (placer.h) decides where: every replica and job is a Request
//    on its offering's pool. Serving replicas up to a set's min_replicas get
//    PRIORITY_SERVING, jobs PRIORITY_OPTIMIZATION, replicas beyond min
//    PRIORITY_SCALE_OUT; what does not fit waits with a reason and is placed
//    when GPUs free;
//  - the Executor (executor.h) makes placed work run and reports each
//    replica's and job's status through its observer;
//  - the Autoscaler (autoscaler.h) turns ReportLoad into a desired replica
//    count, evaluated every `autoscale_period` on the injected clock;
//  - the SchedulerStore (scheduler_store.h) remembers every set, replica and
//    job; the ChangeNotifier announces every change ("replica_sets" for sets,
//    replicas and routes; "jobs/<name>" for a job) to the Watch streams.
//
// State. The scheduler's working state lives in memory under one mutex and
// is written through to the store before it is announced; reads (Get, List,
// routes, the Watch snapshots) are served from memory.
//
// Threads. API calls mutate state directly (placing, starting, stopping).
// Executor callbacks only queue the status and wake the loop thread, which
// applies them (state, address, restarts; a stopped replica's GPUs go back
// to the Placer, which may start pending work) and runs the autoscaler when
// its period has passed on the clock. No busy polling: the loop waits on the
// clock until the next evaluation or the next executor event.
//
// Lifecycle of a replica: PENDING (no GPUs) → placed: STARTING (runner
// starting) → READY → on scale-in or deletion DRAINING → STOPPED, then its
// GPUs are released and the record removed. A runner that dies is FAILED
// and restarted by the executor with backoff; restarts are counted.
// A set under deletion drains every replica and disappears with the last.
//
// Recovery (Create). Everything stored is loaded: sets and their autoscaler
// policies; placed replicas and running jobs have their exact GPUs booked
// again in the Placer (Placer::Restore) and are handed to Executor::Adopt,
// which re-adopts a live runner whose Info names the replica and starts the
// others afresh (never two processes for one name), follows a running job's
// live process to its end or reports how it ended meanwhile; pending
// replicas and jobs are queued again. The destructor (a graceful stop)
// stores running jobs as PENDING before the executor stops them, so they
// run again after the next start.
//
//   ASSIGN_OR_RETURN(auto scheduler, Scheduler::Create({
//       .hardware = hardware, .make_executor = ..., .store = &store,
//       .notifier = &notifier}));
//   ASSIGN_OR_RETURN(v1::ReplicaSet set, scheduler->ApplyReplicaSet(spec));
#ifndef HANGAR_SERVICES_SCHEDULER_SCHEDULER_H_
#define HANGAR_SERVICES_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "common/watch/change_notifier.h"
#include "hangar/v1/scheduler.pb.h"
#include "services/scheduler/autoscaler.h"
#include "services/scheduler/executor.h"
#include "services/scheduler/hardware_config.pb.h"
#include "services/scheduler/placer.h"
#include "services/scheduler/scheduler_metrics.h"
#include "services/scheduler/scheduler_store.h"

namespace hangar::scheduler {

// The notifier key of every replica set, replica and route change.
inline constexpr char kReplicaSetsKey[] = "replica_sets";
// The notifier key of a job: "jobs/<name>".
std::string JobKey(absl::string_view name);

// Builds the executor once the scheduler knows where its events go.
using ExecutorFactory =
    std::function<absl::StatusOr<std::unique_ptr<Executor>>(ExecutorObserver)>;

class Scheduler {
 public:
  struct Options {
    // Pools and offerings (validated: LoadHardwareConfig). Required.
    config::HardwareConfig hardware;
    // "first-fit", "best-fit" or "fgd".
    std::string placement_policy = "best-fit";
    // How often every set's autoscaler is evaluated, in [10ms, 1h].
    absl::Duration autoscale_period = absl::Seconds(1);
    // DeleteReplicaSet's drain when the request sets none, and scale-in's.
    absl::Duration default_drain = absl::Seconds(30);
    // How long a load report counts when ReportLoad gives no ttl.
    absl::Duration default_report_ttl = absl::Seconds(10);

    // --- Injected ---
    // Called once by Create. Required.
    ExecutorFactory make_executor;
    // Not owned; never null.
    SchedulerStore* store = nullptr;
    ChangeNotifier* notifier = nullptr;
    // Optional.
    SchedulerMetrics* metrics = nullptr;
    Clock* clock = Clock::Real();
  };

  // Validates, loads the store and recovers (see the header), then starts
  // the loop thread.
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(Options options);
  // Stops the loop and destroys the executor (which stops its children).
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // --- Hardware ---
  absl::StatusOr<v1::ListHardwareResponse> ListHardware(
      const v1::ListHardwareRequest& request);
  absl::StatusOr<v1::ListPoolsResponse> ListPools(
      const v1::ListPoolsRequest& request);
  absl::StatusOr<v1::PoolStatus> GetPoolStatus(const std::string& pool);

  // --- Replica sets ---
  absl::StatusOr<v1::ReplicaSet> ApplyReplicaSet(
      const v1::ReplicaSetSpec& spec);
  absl::StatusOr<v1::ReplicaSet> GetReplicaSet(const std::string& deployment,
                                               int64_t revision);
  absl::StatusOr<v1::ListReplicaSetsResponse> ListReplicaSets(
      const v1::ListReplicaSetsRequest& request);
  absl::StatusOr<v1::ReplicaSet> DeleteReplicaSet(
      const v1::DeleteReplicaSetRequest& request);
  // Every set now (of `deployment`, or all when empty), in key order.
  std::vector<v1::ReplicaSet> ReplicaSets(const std::string& deployment);
  // Every route now, in (deployment, revision) order.
  std::vector<v1::Route> Routes();

  // --- Jobs ---
  absl::StatusOr<v1::Job> SubmitJob(const v1::SubmitJobRequest& request);
  absl::StatusOr<v1::Job> GetJob(const std::string& name);
  absl::StatusOr<v1::ListJobsResponse> ListJobs(
      const v1::ListJobsRequest& request);
  absl::StatusOr<v1::Job> CancelJob(const std::string& name);

  // --- Load ---
  absl::Status ReportLoad(const v1::ReportLoadRequest& request);

  // Evaluates the autoscaler for every set now (the loop does it every
  // autoscale_period).
  void EvaluateAutoscaler();
  // Blocks until the loop has applied every executor event queued before
  // the call (tests).
  void Sync();

  Executor& executor() { return *executor_; }
  Placer& placer() { return *placer_; }

 private:
  using SetKey = std::pair<std::string, int64_t>;

  struct ReplicaRec {
    StoredReplica stored;
    std::string pending_reason;
  };
  struct SetRec {
    StoredSet stored;
    std::map<int, ReplicaRec> replicas;  // By index.
    int64_t load = 0;
  };
  struct JobRec {
    StoredJob stored;
  };
  using Event = std::variant<ReplicaStatus, JobStatus>;

  explicit Scheduler(Options options);

  absl::Status Recover() ABSL_LOCKS_EXCLUDED(mu_);
  void Loop(absl::Time next_autoscale);

  // Every helper below runs with mu_ held.
  absl::Status ValidateSpec(const v1::ReplicaSetSpec& spec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Request MakeRequest(const std::string& workload, const std::string& hardware,
                      int64_t memory_bytes, Priority priority)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Brings the set's live replica count to its target (desired, or 0 while
  // deleting): creates and places, or drains the newest.
  void ReconcileLocked(SetRec& set) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Places a new or re-queued replica; starts it when placed.
  void PlaceReplicaLocked(SetRec& set, ReplicaRec& replica)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartReplicaLocked(SetRec& set, ReplicaRec& replica,
                          const Placement& placement)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StopReplicaLocked(SetRec& set, ReplicaRec& replica, absl::Duration drain)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // GPUs back to the Placer; starts whatever that let in.
  void ReleaseLocked(const std::string& workload)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartedLocked(const std::vector<Placer::Started>& started)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartJobLocked(JobRec& job, const Placement& placement)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishJobLocked(JobRec& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyReplicaStatus(const ReplicaStatus& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyJobStatus(const JobStatus& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes a STOPPED replica: GPUs, executor entry, record; the set too
  // when it was being deleted and this was its last replica.
  // Returns true when the set was erased (do not touch it afterwards).
  bool RemoveReplicaLocked(SetRec& set, int index)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PersistSetLocked(SetRec& set) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PersistReplicaLocked(const ReplicaRec& replica)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PersistJobLocked(const JobRec& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Pending reasons from the Placer onto the records; metrics.
  void RefreshLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::ReplicaSet ToProtoLocked(const SetRec& set)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  SetRec* FindSetLocked(const std::string& deployment, int64_t revision)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int LiveReplicasLocked(const SetRec& set) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EvaluateAutoscalerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Notifier keys of the jobs changed since the last call.
  std::vector<std::string> TakeDirtyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Notifies kReplicaSetsKey and `keys` (without mu_: watchers read back).
  void Announce(const std::vector<std::string>& keys) ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  std::vector<NodeSpec> nodes_;
  std::unique_ptr<Placer> placer_;
  std::unique_ptr<Autoscaler> autoscaler_;

  absl::Mutex mu_;  // Guards the state below and every Placer sequence.
  std::map<SetKey, SetRec> sets_ ABSL_GUARDED_BY(mu_);
  // Replica name -> its set.
  absl::flat_hash_map<std::string, SetKey> replica_sets_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, JobRec> jobs_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> jobs_by_request_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> dirty_jobs_ ABSL_GUARDED_BY(mu_);

  // Executor events, applied by the loop thread.
  absl::Mutex inbox_mu_;
  std::deque<Event> inbox_ ABSL_GUARDED_BY(inbox_mu_);
  uint64_t queued_ ABSL_GUARDED_BY(inbox_mu_) = 0;
  uint64_t applied_ ABSL_GUARDED_BY(inbox_mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(inbox_mu_) = false;
  bool kick_ ABSL_GUARDED_BY(inbox_mu_) = false;

  // Declared last: destroyed first, so no callback outlives the state.
  std::unique_ptr<Executor> executor_;
  std::thread loop_;
};

}  // namespace hangar::scheduler

#endif  // HANGAR_SERVICES_SCHEDULER_SCHEDULER_H_
