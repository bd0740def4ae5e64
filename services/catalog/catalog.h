// The catalog's domain logic: which models exist, how they got here, and
// whether their weights are in the model store. No gRPC types; the gRPC
// adapter (catalog_service.h) passes requests in and converts statuses out.
//
// Models come from three sources:
//   * curated: the data file (curated_models.h), upserted by Create();
//   * Hugging Face: ImportModel resolves the repository and revision at once
//     (bad ids, unknown repos/revisions, missing access and an unreachable
//     Hub are errors of the call itself, and nothing is written), records
//     the model IMPORTING and returns; a background task reads config.json
//     and the safetensors headers (HTTP range requests, never the weights),
//     refuses unsupported architectures, computes sizes, and moves the model
//     to READY or FAILED with the reason;
//   * local: a directory or .gguf file under `local_model_root`, inspected
//     the same way from disk; a local model is prepared as soon as it is
//     READY.
//
// PrepareModel puts a Hugging Face model's weights in the model store
// (<model_store>/<owner>/<repo>/<commit>/) once per model and revision:
// concurrent and repeated calls share one download; downloads resume after
// dropped connections and process restarts, verify each file's SHA-256 and
// report progress through GetModel and the change notifications that
// WatchModel streams. The Hub is asked about the revision before anything
// starts, so an unreachable Hub is an UNAVAILABLE naming the endpoint.
//
// Connections hold Hugging Face tokens sealed with the SecretBox; a token is
// validated, sealed and never returned, logged or put in a message.
//
// DeleteModel deletes imported models only, and only when the deployment
// service (DeploymentUsage) says no deployment uses them.
//
// Thread-safe. Background work (imports, downloads) runs on threads the
// catalog owns; the destructor cancels and joins them. Work interrupted by a
// restart (models IMPORTING, preparations DOWNLOADING) is resumed by Create().
//
//   ASSIGN_OR_RETURN(auto catalog, Catalog::Create({
//       .model_store = "/var/lib/hangar/models",
//       .curated_models = curated,
//       .store = &store, .hub = &hub, .deployment_usage = &usage,
//       .secrets = box.get(), .metrics = &metrics}));
#ifndef HANGAR_SERVICES_CATALOG_CATALOG_H_
#define HANGAR_SERVICES_CATALOG_CATALOG_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/auth/secret_box.h"
#include "common/time/clock.h"
#include "hangar/v1/catalog.pb.h"
#include "services/catalog/catalog_metrics.h"
#include "services/catalog/deployment_usage.h"
#include "services/catalog/downloader.h"
#include "services/catalog/hub_client.h"
#include "services/catalog/model_store.h"

namespace hangar::catalog {

class Catalog {
 public:
  struct Options {
    // Directory holding prepared weights. Required; created if missing.
    std::string model_store;
    // Local imports must lie under this directory; empty disables them.
    std::string local_model_root;
    // The curated list (see LoadCuratedModels), upserted by Create().
    std::vector<v1::Model> curated_models;
    // Imported models with at most this many parameters run on CPU.
    int64_t cpu_max_parameters = 2'000'000'000;
    // The connection whose token fetches curated models (several are gated
    // on the Hub); empty: curated models are fetched anonymously.
    std::string curated_connection;
    // How often a running download writes its progress to the database and
    // notifies watchers.
    absl::Duration progress_interval = absl::Seconds(1);
    // Download retry policy (its clock is replaced by `clock`).
    FileDownloader::Options download;

    // --- Injected dependencies: not owned, must outlive the catalog ---
    ModelStore* store = nullptr;
    const HubClient* hub = nullptr;
    DeploymentUsage* deployment_usage = nullptr;
    const auth::SecretBox* secrets = nullptr;
    // Optional.
    CatalogMetrics* metrics = nullptr;
    Clock* clock = Clock::Real();
  };

  // Validates `options`, upserts the curated models and resumes interrupted
  // work.
  static absl::StatusOr<std::unique_ptr<Catalog>> Create(Options options);

  ~Catalog();
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;

  // --- Models ---
  absl::StatusOr<v1::ListModelsResponse> ListModels(
      const v1::ListModelsRequest& request);
  absl::StatusOr<v1::Model> GetModel(const std::string& name);
  absl::StatusOr<v1::Model> ImportModel(const v1::ImportModelRequest& request);
  absl::StatusOr<v1::Model> UpdateModel(const v1::UpdateModelRequest& request);
  absl::Status DeleteModel(const v1::DeleteModelRequest& request);
  absl::StatusOr<v1::Preparation> PrepareModel(const std::string& name);

  // Change notifications for WatchModel: a counter per model name that
  // grows whenever the model (or its preparation progress) changes.
  uint64_t ChangeGeneration(const std::string& name);
  // Blocks until the counter of `name` differs from `seen`, `timeout`
  // passes on the catalog's clock, or the catalog shuts down; returns the
  // counter.
  uint64_t WaitForChange(const std::string& name, uint64_t seen,
                         absl::Duration timeout);

  // --- Connections ---
  absl::StatusOr<v1::Connection> CreateConnection(
      const v1::Connection& connection);
  absl::StatusOr<v1::Connection> GetConnection(const std::string& name);
  absl::StatusOr<v1::ListConnectionsResponse> ListConnections(
      const v1::ListConnectionsRequest& request);
  absl::Status DeleteConnection(const std::string& name);

 private:
  // A download in flight: its live preparation, read by GetModel.
  struct DownloadJob {
    absl::Mutex mu;  // Protects preparation.
    v1::Preparation preparation ABSL_GUARDED_BY(mu);
    std::atomic<bool> cancelled{false};
  };

  explicit Catalog(Options options);

  absl::Status Start();
  absl::StatusOr<v1::Model> ImportFromHub(
      const v1::ImportModelRequest& request);
  absl::StatusOr<v1::Model> ImportLocal(const v1::ImportModelRequest& request);
  // Background halves of the imports: inspect, then READY or FAILED.
  void FinishHubImport(const std::string& name, const std::string& token);
  void FinishLocalImport(const std::string& name);
  void CompleteImport(const std::string& name, v1::ModelSource source,
                      const absl::StatusOr<v1::Model>& inspected);
  absl::StatusOr<v1::Model> InspectHubModel(const v1::Model& model,
                                            const std::string& token);
  absl::StatusOr<v1::Model> InspectLocalModel(const v1::Model& model);

  absl::StatusOr<v1::Preparation> PrepareFromHub(const v1::Model& model);
  void RunDownload(const std::string& name, std::shared_ptr<DownloadJob> job,
                   std::string repo, RepoInfo info, std::string token,
                   std::string directory);

  // The plaintext token of connection `name`; `field` names it in errors.
  absl::StatusOr<std::string> OpenToken(const std::string& field,
                                        const std::string& name);
  // Replaces the stored preparation by a live download's, if any.
  void OverlayLiveProgress(v1::Model& model);
  void Notify(const std::string& name);
  void RefreshStateGauge();
  // Runs `work` on a thread the catalog owns; finished threads are joined
  // by the next call, the rest at destruction.
  void RunInBackground(std::function<void()> work);
  void JoinFinishedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  const FileDownloader downloader_;
  std::atomic<bool> stopping_{false};

  absl::Mutex mu_;  // Protects everything below.
  std::map<std::string, uint64_t> generations_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<DownloadJob>> downloads_
      ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::thread> workers_ ABSL_GUARDED_BY(mu_);
  // Workers whose work is done (their threads are about to exit).
  std::vector<uint64_t> finished_workers_ ABSL_GUARDED_BY(mu_);
  uint64_t next_worker_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_CATALOG_H_
