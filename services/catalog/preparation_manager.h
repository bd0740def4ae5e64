// PreparationManager: puts a model's weights in the model store
// (<model_store>/<owner>/<repo>/<commit>/), once per model and revision.
//
// Prepare(name) of a Hugging Face model asks the Hub for the revision first
// (an unreachable Hub or a missing connection is an error of the call, and
// nothing starts), then records the preparation DOWNLOADING and runs the
// download on the injected TaskGroup. Concurrent and repeated calls share
// one download. Each file goes through the FileDownloader (`.partial` plus
// Range resume, a short retry for blips, SHA-256 check); when every file is
// in place, `.hangar-prepared` holds the manifest whose SHA-256 is
// Preparation.sha256.
//
// A Hub outage longer than the downloader's short retry does not fail the
// preparation: it waits with capped exponential backoff (hub_retry), its
// Preparation showing retry_attempt, next_retry_time, last_error and the
// message "waiting for the Hub (attempt N, next in T s): <cause>", and
// resumes from the bytes it has when the Hub answers again. It fails only
// when one outage outlasts `hub_retry.budget` (progress restarts the
// budget). Local models, and curated models served from the local model
// root, are prepared in place.
//
// Live progress is kept in memory (Live()) and written to the store every
// `progress_interval`; every change is announced on the ChangeNotifier
// under the model's name, and every state change, download failure and
// retry is one EventLog line. Shutdown() cancels running downloads and
// leaves them DOWNLOADING; ResumeInterrupted() (at start) picks them up
// again, waiting for the Hub if it is down.
//
//   ASSIGN_OR_RETURN(auto preparations, PreparationManager::Create({
//       .model_store = "/var/lib/hangar/models", .context = context}));
//   ASSIGN_OR_RETURN(v1::Preparation p, preparations->Prepare("acme/m"));
//
// Thread-safe.
#ifndef HANGAR_SERVICES_CATALOG_PREPARATION_MANAGER_H_
#define HANGAR_SERVICES_CATALOG_PREPARATION_MANAGER_H_

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/concurrency/task_group.h"
#include "common/time/clock.h"
#include "common/watch/change_notifier.h"
#include "hangar/v1/catalog.pb.h"
#include "services/catalog/cancellation.h"
#include "services/catalog/catalog_metrics.h"
#include "services/catalog/domain_context.h"
#include "services/catalog/downloader.h"
#include "services/catalog/event_log.h"
#include "services/catalog/hub_client.h"
#include "services/catalog/model_store.h"

namespace hangar::catalog {

// How a preparation waits out a Hub outage: the first wait, doubling up to
// the cap, for at most `budget` per outage (progress starts a new outage).
struct HubRetryPolicy {
  // Positive, at most max_backoff.
  absl::Duration initial_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Seconds(60);
  // Not negative; zero fails at the first outage.
  absl::Duration budget = absl::Minutes(10);
};

// Written into a prepared directory once every file is verified.
inline constexpr char kPreparedMarker[] = ".hangar-prepared";

class PreparationManager {
 public:
  struct Options {
    // Directory holding prepared weights. Required.
    std::string model_store;
    // Root of local models (curated models with a local_path are served
    // from under it); empty: none.
    std::string local_model_root;
    // The connection whose token fetches curated models; empty: anonymous.
    std::string curated_connection;
    // How often a running download writes its progress to the store and
    // notifies watchers. Positive.
    absl::Duration progress_interval = absl::Seconds(1);
    // Per-file retry for short blips (its clock is replaced by `clock`).
    FileDownloader::Options download;
    // Waiting out a Hub outage.
    HubRetryPolicy hub_retry;

    // --- Injected dependencies ---
    DomainContext context;
  };

  static absl::StatusOr<std::unique_ptr<PreparationManager>> Create(
      Options options);
  ~PreparationManager();  // Shutdown()

  // Starts (or joins) the preparation of `name`; returns its state now.
  absl::StatusOr<v1::Preparation> Prepare(const std::string& name);

  // The live preparation of a running download, if any (fresher than the
  // store's copy).
  std::optional<v1::Preparation> Live(const std::string& name);

  // Stops the download of `name`, if any, and waits (up to `timeout`) until
  // it has let go of the model's files. The preparation is not updated.
  void CancelAndWait(const std::string& name, absl::Duration timeout);

  // Resumes preparations left DOWNLOADING by a restart, in the background.
  absl::Status ResumeInterrupted();

  // Cancels every download (they stay DOWNLOADING for the next start).
  // Idempotent; the TaskGroup's own Shutdown then joins them.
  void Shutdown();

  // ---------------------------------------------------------------------
  // Implementation details.
 private:
  // A download in flight.
  struct Job {
    absl::Mutex mu;  // Protects preparation.
    v1::Preparation preparation ABSL_GUARDED_BY(mu);
    Cancellation cancel;
  };
  // What a background download needs.
  struct Source {
    std::string name;
    std::string repo;
    std::string revision;
    std::string token;
    std::string directory;
  };

  explicit PreparationManager(Options options);

  absl::StatusOr<v1::Preparation> PrepareFromHub(const v1::Model& model,
                                                 bool background);
  absl::StatusOr<std::string> TokenFor(const v1::Model& model);
  void Run(const Source& source, std::shared_ptr<Job> job,
           std::optional<RepoInfo> info);
  // One pass over every needed file; adds the manifest lines.
  absl::Status DownloadAll(const Source& source, Job& job, const RepoInfo& info,
                           std::string* manifest);
  void Publish(const std::string& name, Job& job);
  void Finish(const Source& source, std::shared_ptr<Job> job,
              const absl::Status& status, const std::string& manifest,
              absl::Time start);
  void LogState(const std::string& name, const v1::Preparation& preparation);

  const Options options_;
  const DomainContext& context_;  // options_.context
  const FileDownloader downloader_;

  absl::Mutex mu_;  // Protects jobs_ and shutting_down_.
  std::map<std::string, std::shared_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

// Whether a repository file is one a replica needs: configs, tokenizer, and
// the top-level *.safetensors (plain names only: they become store paths).
bool IsNeededFile(const std::string& path);

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_PREPARATION_MANAGER_H_
