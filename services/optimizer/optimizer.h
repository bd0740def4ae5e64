// Optimizer: durable optimization jobs run as scheduled work.
//
// CreateOptimizationJob validates the request, then, in this order:
//   1. request_id already seen: the same job again (a different input under
//      the same id is INVALID_ARGUMENT);
//   2. a finished artifact of the same source checksum and recipe exists
//      (and is on disk): a new job, SUCCEEDED at once, `reused` true;
//   3. a job converting the same source and recipe is still PENDING or
//      RUNNING: the request is bound to that job (one conversion, one
//      artifact);
//   4. otherwise a new PENDING job, stored, then submitted to the
//      scheduler's SubmitJob (argv = hangar-optimize --source --recipe --out,
//      hardware = the job's offering, request_id "optimizer-<job name>", so
//      a resubmission after a restart never runs twice) and followed.
//
// Following a job (one TaskGroup task per job): WatchJob on the scheduler
// job, in slices of `watch_slice` so a shutdown never waits long; each state
// the scheduler sends is mapped onto the job and stored, then announced on
// the ChangeNotifier (WatchOptimizationJob's feed):
//   scheduler PENDING   -> PENDING, pending_reason from the scheduler
//   scheduler RUNNING   -> RUNNING, progress parsed from the log tail
//                          (hangar-optimize's JSON lines, conversion.h)
//   scheduler SUCCEEDED -> SUCCEEDED with the report and the artifact
//                          (recorded under (source_sha256, recipe))
//   scheduler FAILED    -> FAILED with the reason; a quality-gate failure
//                          keeps its report
//   scheduler CANCELLED -> CANCELLED
// A scheduler that no longer knows the job (NOT_FOUND) gets it submitted
// again under the same request id.
//
// Start() resumes every PENDING/RUNNING job found in the store after a
// restart: a job with a scheduler job is watched again (the conversion kept
// running), one without is submitted (idempotent), so a job is never lost
// or run twice.
//
// CancelOptimizationJob cancels the scheduler job (hangar-optimize removes
// its temporary directory on SIGTERM) and records CANCELLED at once; a
// finished job is FAILED_PRECONDITION.
//
// ReleaseJob drops a request id's hold on its job's artifact (job_store.h);
// CollectGarbage removes unheld artifacts after `gc_grace`, orphan
// directories and dead conversions' temporaries (artifact_collector.h).
// With `collect_at_start`, Start() runs one collection after resuming the
// jobs (a failure is logged, not fatal).
//
// Thread-safety: every method may be called from any thread.
#ifndef HANGAR_SERVICES_OPTIMIZER_OPTIMIZER_H_
#define HANGAR_SERVICES_OPTIMIZER_OPTIMIZER_H_

#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/concurrency/task_group.h"
#include "common/time/clock.h"
#include "common/watch/change_notifier.h"
#include "hangar/v1/optimizer.pb.h"
#include "services/optimizer/artifact_collector.h"
#include "services/optimizer/job_store.h"
#include "services/optimizer/optimizer_metrics.h"
#include "services/optimizer/recipes.h"
#include "services/optimizer/scheduler_client.h"

namespace hangar::optimizer {

class Optimizer {
 public:
  struct Options {
    // Directory of prepared models; artifacts go to
    // <model_store>/artifacts/<source_sha256>-<engine>-<quantization>/.
    // Required.
    std::string model_store;
    // The hangar-optimize binary the scheduler runs (absolute path or a name
    // its executor resolves). Required.
    std::string optimize_binary = "hangar-optimize";
    // Per-recipe bound overrides ("CTRANSLATE2/int8" -> bound), passed as
    // --max_logit_error; recipes not named use recipes.h's table.
    std::map<std::string, double> max_logit_error_bounds;
    // Longest one WatchJob call lasts before it is renewed.
    absl::Duration watch_slice = absl::Seconds(2);
    // Wait after a failed scheduler call before the next try.
    absl::Duration retry_backoff = absl::Milliseconds(200);
    // Jobs followed at once, in [1, 256].
    int max_jobs = 64;
    // An unheld artifact is kept this long after its last use (>= 0).
    absl::Duration gc_grace = absl::Hours(1);
    // Start() collects garbage once.
    bool collect_at_start = false;
    // --- Injected (not owned; all but metrics required) ---
    JobStore* store = nullptr;
    SchedulerClient* scheduler = nullptr;
    ChangeNotifier* notifier = nullptr;
    OptimizerMetrics* metrics = nullptr;
    Clock* clock = Clock::Real();
  };

  static absl::StatusOr<std::unique_ptr<Optimizer>> Create(Options options);
  // Stops following jobs (they go on in the scheduler; Start resumes them).
  ~Optimizer();

  // Resumes every unfinished job (after a restart).
  absl::Status Start();

  absl::StatusOr<v1::OptimizationJob> CreateJob(
      const v1::CreateOptimizationJobRequest& request);
  absl::StatusOr<v1::OptimizationJob> GetJob(const std::string& name);
  absl::StatusOr<v1::ListOptimizationJobsResponse> ListJobs(
      const v1::ListOptimizationJobsRequest& request);
  absl::StatusOr<v1::OptimizationJob> CancelJob(const std::string& name);
  absl::StatusOr<v1::ListArtifactsResponse> ListArtifacts(
      const v1::ListArtifactsRequest& request);
  absl::StatusOr<v1::OptimizationJob> ReleaseJob(
      const v1::ReleaseOptimizationJobRequest& request);
  absl::StatusOr<v1::GarbageCollectArtifactsResponse> CollectGarbage(
      const v1::GarbageCollectArtifactsRequest& request);

  // Jobs followed now (for tests).
  int followed() const;

  // "CTRANSLATE2/int8" from the API's recipe; INVALID_ARGUMENT naming
  // `field` for a pair the engines do not allow.
  static absl::StatusOr<RecipeName> RecipeFromProto(
      const v1::OptimizationRecipe& recipe, const std::string& field);

 private:
  explicit Optimizer(Options options);
  // Starts following `name` unless it already is.
  absl::Status Follow(const std::string& name);
  void FollowLoop(const std::string& name, const StopToken& stop);
  // Applies one scheduler state to the job; returns whether the job ended.
  bool Apply(const std::string& name, const v1::Job& sched);
  absl::Status Store(const StoredJob& before, StoredJob& after);
  v1::JobSpec SpecFor(const StoredJob& job) const;

  const Options options_;
  std::unique_ptr<TaskGroup> tasks_;
  std::unique_ptr<ArtifactCollector> collector_;
  mutable absl::Mutex mu_;
  std::set<std::string> following_ ABSL_GUARDED_BY(mu_);
  // Serializes read-modify-write of one job between its follower and
  // CancelJob.
  absl::Mutex write_mu_;
};

}  // namespace hangar::optimizer

#endif  // HANGAR_SERVICES_OPTIMIZER_OPTIMIZER_H_
