// Where optimization jobs, their idempotency keys and the finished
// artifacts live: a small interface (PostgreSQL in pg_job_store.h, memory in
// testing/in_memory_job_store.h).
//
// Jobs are stored whole (the v1::OptimizationJob) with the fields that are
// queried in columns; the source path travels beside the job because the
// API does not show it. Request ids map to jobs in a table of their own, so
// two requests with different ids and the same input can share one job.
//
// Holds and garbage collection: every request id holds the artifact of its
// job (an artifact key, "<source_sha256>-<recipe slug>") while its job is
// PENDING, RUNNING or SUCCEEDED and the request is not released. Whatever
// touches an artifact key's files in a way that must not race with the
// collector runs under that key's lock (PostgreSQL: a transaction-scoped
// advisory lock on the key): CreateReusingJob (a job reusing the key's
// artifact) and CreateJob take it, and the collector decides and removes
// each key inside WithKeyLocked.
#ifndef HANGAR_SERVICES_OPTIMIZER_JOB_STORE_H_
#define HANGAR_SERVICES_OPTIMIZER_JOB_STORE_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hangar/v1/optimizer.pb.h"

namespace hangar::optimizer {

struct StoredJob {
  v1::OptimizationJob job;
  // The prepared source to convert and where the artifact goes.
  std::string source_path;
  std::string output_path;
};

struct JobFilter {
  std::string model;  // empty: any
  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
};

struct JobPage {
  std::vector<StoredJob> jobs;
  bool more = false;
};

struct ArtifactPage {
  std::vector<v1::Artifact> artifacts;
  bool more = false;
};

class JobStore {
 public:
  virtual ~JobStore() = default;

  // Inserts `job` and binds `request_id` (with the request's fingerprint)
  // to it in one transaction. When the request id is already bound, nothing
  // is written and the bound job and fingerprint are returned instead.
  struct Claimed {
    StoredJob job;
    std::string fingerprint;
    bool created = false;
  };
  virtual absl::StatusOr<Claimed> CreateJob(const StoredJob& job,
                                            const std::string& request_id,
                                            const std::string& fingerprint) = 0;
  // Binds `request_id` to an existing job (a second request for the same
  // input); like CreateJob, an id already bound returns its job.
  virtual absl::StatusOr<Claimed> BindRequest(const std::string& request_id,
                                              const std::string& fingerprint,
                                              const std::string& job_name) = 0;
  // The job bound to `request_id`, if any, with the fingerprint it was
  // bound with.
  virtual absl::StatusOr<std::optional<Claimed>> FindRequest(
      const std::string& request_id) = 0;
  // NOT_FOUND naming the job when absent.
  virtual absl::StatusOr<StoredJob> GetJob(const std::string& name) = 0;
  // Replaces the job (by name); NOT_FOUND when absent.
  virtual absl::Status UpdateJob(const StoredJob& job) = 0;
  // Jobs by name after `after_name`, at most `limit`.
  virtual absl::StatusOr<JobPage> ListJobs(const JobFilter& filter,
                                           const std::string& after_name,
                                           int limit) = 0;
  // Every PENDING or RUNNING job (for the start-up resume).
  virtual absl::StatusOr<std::vector<StoredJob>> ListUnfinishedJobs() = 0;
  // A PENDING or RUNNING job converting the same source with the same
  // recipe, if any.
  virtual absl::StatusOr<std::optional<StoredJob>> FindUnfinishedJob(
      const std::string& source_sha256, const std::string& recipe_slug) = 0;

  // CreateJob for a job that reuses its key's finished artifact, in one
  // transaction under the key's lock, only while the artifact is recorded:
  // nullopt when it is not (the collector removed it; convert instead).
  virtual absl::StatusOr<std::optional<Claimed>> CreateReusingJob(
      const StoredJob& job, const std::string& request_id,
      const std::string& fingerprint, const std::string& recipe_slug) = 0;

  // Releases `request_id`'s hold at `now` (kept when already released).
  // NOT_FOUND naming the request id when it is unknown.
  struct Released {
    StoredJob job;
    // The release time (the first release's when it was released before).
    absl::Time release_time;
    bool released_now = false;
  };
  virtual absl::StatusOr<Released> ReleaseRequest(const std::string& request_id,
                                                  absl::Time now) = 0;

  // What the collector knows about one artifact key, read under its lock.
  struct KeyState {
    std::string key;
    std::optional<v1::Artifact> artifact;
    // Unreleased request ids bound to PENDING/RUNNING/SUCCEEDED jobs of the
    // key.
    int live_holds = 0;
    // A PENDING or RUNNING job of the key (it may be writing).
    bool unfinished = false;
    // The latest release of a request bound to a job of the key, if any.
    std::optional<absl::Time> last_release;
  };
  // Runs `decide` in one transaction holding the key's lock; when it
  // returns true the key's artifact row is deleted in that transaction.
  // Returns what `decide` returned.
  virtual absl::StatusOr<bool> WithKeyLocked(
      const std::string& key,
      const std::function<absl::StatusOr<bool>(const KeyState&)>& decide) = 0;
  // Keys of every recorded artifact.
  virtual absl::StatusOr<std::vector<std::string>> ListArtifactKeys() = 0;

  // Artifacts, keyed by (source_sha256, recipe slug); putting one that
  // exists replaces it.
  virtual absl::Status PutArtifact(const v1::Artifact& artifact,
                                   const std::string& recipe_slug) = 0;
  virtual absl::StatusOr<std::optional<v1::Artifact>> FindArtifact(
      const std::string& source_sha256, const std::string& recipe_slug) = 0;
  // Newest first; `after` is the last artifact name of the previous page.
  virtual absl::StatusOr<ArtifactPage> ListArtifacts(const std::string& model,
                                                     const std::string& after,
                                                     int limit) = 0;
};

}  // namespace hangar::optimizer

#endif  // HANGAR_SERVICES_OPTIMIZER_JOB_STORE_H_
