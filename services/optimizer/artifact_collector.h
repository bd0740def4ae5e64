// ArtifactCollector: removes what the artifact store no longer needs.
//
// The artifact store is one directory (<model_store>/artifacts) of
// content-addressed artifacts, "<source_sha256>-<engine>-<quantization>/"
// (the artifact key), plus what conversions leave beside them:
// ".<key>.tmp-<pid>/" while hangar-optimize writes, "<key>.report.json"
// after a quality-gate failure. Every request id of CreateOptimizationJob
// holds its job's artifact until ReleaseOptimizationJob releases it
// (job_store.h). One collection:
//
//   1. lists the recorded artifacts' keys and the directory's entries;
//   2. decides each key inside JobStore::WithKeyLocked (the lock that a job
//      reusing the key's artifact and a new job of the key take too, so
//      nothing is removed that a running job writes or a request is about
//      to reuse), and removes
//        artifact   a recorded artifact with no live hold, no PENDING or
//                   RUNNING job of its key, and no use (its creation, the
//                   last release of a request bound to it) for `grace`:
//                   its row is deleted and its directory renamed to
//                   ".gc-<key>-<n>" in the same locked step;
//        orphan     a "<key>/" directory with no row and no unfinished job,
//                   unmodified for `grace` (a conversion whose artifact was
//                   never recorded);
//        temporary  ".<key>.tmp-*" with no PENDING or RUNNING job of the key
//                   (its writer was killed: every writer is a job);
//        report     "<key>.report.json" with no unfinished job, unmodified
//                   for `grace`;
//   3. deletes the renamed directories, and ".gc-*" left by an interrupted
//      collection ("trash").
// With `dry_run` nothing is renamed, deleted or written; the answer lists
// what would be removed. Sizes are the bytes of the files under each path.
// Repeating a collection is harmless (idempotent): what is gone is not
// listed again.
//
// Thread-safety: Collect may be called from any thread; collections run one
// at a time.
#ifndef HANGAR_SERVICES_OPTIMIZER_ARTIFACT_COLLECTOR_H_
#define HANGAR_SERVICES_OPTIMIZER_ARTIFACT_COLLECTOR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "hangar/v1/optimizer.pb.h"
#include "services/optimizer/job_store.h"

namespace hangar::optimizer {

class ArtifactCollector {
 public:
  struct Options {
    // The artifact store directory (<model_store>/artifacts). Required.
    std::string artifacts_dir;
    // How long an unheld artifact (or an orphan directory, a report) is
    // kept after its last use; >= 0.
    absl::Duration grace = absl::Hours(1);
    // --- Injected (not owned; required) ---
    JobStore* store = nullptr;
    Clock* clock = Clock::Real();
  };

  static absl::StatusOr<std::unique_ptr<ArtifactCollector>> Create(
      Options options);

  absl::StatusOr<v1::GarbageCollectArtifactsResponse> Collect(bool dry_run);

 private:
  explicit ArtifactCollector(Options options) : options_(std::move(options)) {}
  const Options options_;
  absl::Mutex mu_;  // one collection at a time
  int64_t trash_seq_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hangar::optimizer

#endif  // HANGAR_SERVICES_OPTIMIZER_ARTIFACT_COLLECTOR_H_
