// The reconciler: drives every deployment from the desired state in the
// store (its newest revision, or UNDEPLOYED, or DELETING) to what runs,
// through the catalog, the optimizer and the scheduler (clients.h).
//
// Level-triggered. A pass over one deployment reads the row and its
// revisions, looks at what the other services report, makes the calls that
// move it one or more steps, and writes the outcome in one transaction (the
// deployment and the revisions it touched). Nothing is remembered between
// passes except in the store, so a pass after a crash, or by another
// process, continues where the last one left off. Passes run
//  - at once for a deployment the API changed (Wake(id), which the
//    Deployments domain calls after each of its writes),
//  - every `active_interval` while a deployment is on its way (FETCHING,
//    OPTIMIZING, SCHEDULING, DEPLOYING, DELETING, or a rollout or release
//    in flight): the catalog's download, the optimizer's job and the
//    replicas' start are read then,
//  - for every live deployment every `resync_interval` (catches anything
//    missed: a replica set the scheduler lost is applied again).
// The loop sleeps on the clock between them; it never spins.
//
// One revision's life (the newest, N; S is the revision serving now):
//   PENDING/FETCHING  PrepareModel until PREPARED (progress: bytes).
//   OPTIMIZING        CreateOptimizationJob(request id "<dep>-r<N>-opt")
//                     then the job until SUCCEEDED (progress: tensors);
//                     skipped for ENGINE_NONE (the prepared copy is served).
//   SCHEDULING        ApplyReplicaSet (serving = no other revision serves),
//   DEPLOYING         until min_replicas are READY (SCHEDULING while a
//                     replica waits for GPUs, with the scheduler's reason);
//                     FAILED "deploy_timeout: ..." naming the replicas'
//                     states when that takes longer than deploy_timeout.
//   DEPLOYED          N serves. With S != N: apply N serving, apply S not
//                     serving, delete S's set; S gets retire_time.
//   FAILED            with the reason ("optimizer job opt-...: quality gate
//                     failed: ..."); its set is released; S keeps serving
//                     and the deployment's state_reason says so.
// A newer revision supersedes one still in flight: its optimizer job is
// cancelled, its replica set deleted, its state FAILED "superseded by
// revision N". UNDEPLOYED and DELETING release every set and cancel every
// job; DELETING then becomes DELETED.
//
// Several processes may run reconcilers over one database: a pass first
// takes the deployment's row lease (AcquireLease: owner + expiry, renewed
// every pass) and writes only while holding it (Mutation.lease_owner), so
// two processes never act on one deployment at once; a dead process's
// deployments move to another when its leases expire.
//
// Replica time: every pass reads each set's replicas and records their
// cumulative replica-seconds (DeploymentStore::RecordReplicaUsage, idempotent
// per replica and value); a set's final figures are recorded when it is
// deleted.
#ifndef HANGAR_SERVICES_DEPLOYMENT_RECONCILER_H_
#define HANGAR_SERVICES_DEPLOYMENT_RECONCILER_H_

#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "common/watch/change_notifier.h"
#include "hangar/v1/deployment.pb.h"
#include "services/deployment/clients.h"
#include "services/deployment/deployment_events.h"
#include "services/deployment/deployment_store.h"
#include "services/deployment/facts.h"

namespace hangar::deployment {

// The optimizer request id of revision `revision` of `deployment`.
std::string OptimizationRequestId(const std::string& deployment,
                                  int64_t revision);

class Reconciler {
 public:
  struct Options {
    // This process's name in leases; unique among processes sharing the
    // database. Required.
    std::string owner;
    // How long a lease lasts without a renewal; another process takes the
    // deployment over after that. Must exceed active_interval and
    // resync_interval's share of a pass; in [1 s, 1 h].
    absl::Duration lease_duration = absl::Seconds(30);
    // Every live deployment is looked at this often, > 0.
    absl::Duration resync_interval = absl::Seconds(10);
    // A deployment on its way is looked at this often, > 0.
    absl::Duration active_interval = absl::Seconds(1);
    // How long a released replica may finish its requests, in [0, 3600].
    int drain_seconds = 10;
    // Engine threads per replica, in [1, 256].
    int threads_per_replica = 1;
    // Tokens per sequence a replica reserves KV cache for: the model's
    // context length, at most this (a 32k-token context x the batch would
    // take gigabytes on a CPU runner), in [1, 1 << 20].
    int max_context_length = 8192;
    // Longest a revision may stay DEPLOYING (its replicas placed, fewer
    // than min_replicas READY) before it goes FAILED; time spent waiting
    // for GPUs (SCHEDULING) does not count. Counted from the first pass of
    // this process that saw it DEPLOYING (not stored: a restart or a lease
    // taken over starts it again). Must be positive.
    absl::Duration deploy_timeout = absl::Minutes(10);

    // --- Injected (not owned; must outlive this) ---
    DeploymentStore* store = nullptr;
    CatalogClient* catalog = nullptr;
    OptimizerClient* optimizer = nullptr;
    SchedulerClient* scheduler = nullptr;
    // The model's context length (ReplicaSetSpec.context_length) and the
    // offering's price (Deployment.hourly_cost).
    ModelFactsSource* models = nullptr;
    OfferingFactsSource* offerings = nullptr;
    // Told (key = deployment id) after every write, so watchers see it.
    ChangeNotifier* notifier = nullptr;
    // Optional: told after every committed state change, and once per
    // deployment by Start().
    DeploymentEventSink* events = nullptr;
    Clock* clock = Clock::Real();
  };

  static absl::StatusOr<std::unique_ptr<Reconciler>> Create(Options options);
  // Stops the loop and gives up every lease held.
  ~Reconciler();
  Reconciler(const Reconciler&) = delete;
  Reconciler& operator=(const Reconciler&) = delete;

  // Tells the event sink every live deployment's current state, then starts
  // the loop on its own thread.
  void Start();
  // Stops the loop (waits for the pass in progress) and releases leases.
  void Stop();

  // One pass over every live deployment, on the caller's thread (tests, and
  // the loop's resync). Returns the first error met (after trying all).
  absl::Status ReconcileAll();
  // One pass over one deployment (by id). OK when another process holds
  // its lease (nothing done).
  absl::Status ReconcileOne(const std::string& name);

  // Asks for a pass over `name` (an id) at once; thread-safe, never blocks.
  void Wake(const std::string& name);

  // Passes made so far (any deployment), for tests that wait on the loop.
  int64_t passes() const;

 private:
  explicit Reconciler(Options options);

  void Loop();
  // Schedules `name` no later than `when`.
  void Due(const std::string& name, absl::Time when)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The pass; `again` is set when the deployment should be looked at again
  // soon (on its way).
  absl::Status Pass(const std::string& name, bool* again);

  const Options options_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Deployment id -> when its next pass is due.
  std::map<std::string, absl::Time> due_ ABSL_GUARDED_BY(mu_);
  absl::Time next_resync_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int64_t passes_ ABSL_GUARDED_BY(mu_) = 0;
  // Leases this process holds (released at Stop).
  std::map<std::string, bool> leased_ ABSL_GUARDED_BY(mu_);
  // Serializes passes (the loop's and callers' of ReconcileOne).
  absl::Mutex pass_mu_;
  // (deployment id, revision) -> when a pass first saw it DEPLOYING.
  std::map<std::pair<std::string, int64_t>, absl::Time> deploying_since_
      ABSL_GUARDED_BY(pass_mu_);
  std::thread thread_;
};

}  // namespace hangar::deployment

#endif  // HANGAR_SERVICES_DEPLOYMENT_RECONCILER_H_
