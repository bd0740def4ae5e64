// The catalog's domain, behind one facade the gRPC adapter calls: which
// models exist, how they got here, and whether their weights are in the
// model store. No gRPC types.
//
// The work is split into plain classes, each unit-tested with the in-memory
// fakes of services/catalog/testing/:
//
//   ModelImporter       ImportModel: Hub and local inspection, in two phases
//   PreparationManager  PrepareModel: downloads, progress, resume, waiting
//                       out Hub outages
//   ConnectionRegistry  connections with sealed tokens
//
// The facade itself answers the queries (ListModels, GetModel with a running
// download's live progress), UpdateModel (description, display_name, tags
// through the field mask; a curated model remembers what a user edited) and
// DeleteModel, and runs the start-up work in Create():
//
//   1. upsert the curated list (user-edited fields kept);
//   2. finish deletes a crash interrupted (rows marked deleting);
//   3. sweep the model store: entries no row names are removed (one log
//      line and hangar_catalog_orphans_removed_total), never anything
//      outside the store or behind a link;
//   4. resume imports left IMPORTING and preparations left DOWNLOADING.
//
// DeleteModel deletes imported models only, only when the deployment
// service (DeploymentUsage) says no deployment uses them, and removes their
// prepared files from the model store (unless another model names the same
// directory): the row is marked deleting (gone for callers at once), the
// download, if any, is stopped, the files are removed, then the row.
//
// Every change is announced on the injected ChangeNotifier under the
// model's name (WatchModel's feed). Background work runs on two TaskGroups
// the catalog owns (imports, downloads); Shutdown() (also the destructor) stops
// downloads, leaving them to resume at the next start, and joins every task.
//
//   ASSIGN_OR_RETURN(auto catalog, Catalog::Create({
//       .model_store = "/var/lib/hangar/models", .curated_models = curated,
//       .models = &models, .connections = &connections, .hub = &hub,
//       .deployment_usage = &usage, .secrets = box.get(),
//       .notifier = &notifier}));
//
// Thread-safe.
#ifndef HANGAR_SERVICES_CATALOG_CATALOG_H_
#define HANGAR_SERVICES_CATALOG_CATALOG_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth/secret_box.h"
#include "common/concurrency/task_group.h"
#include "common/time/clock.h"
#include "common/watch/change_notifier.h"
#include "hangar/v1/catalog.pb.h"
#include "services/catalog/catalog_metrics.h"
#include "services/catalog/connection_registry.h"
#include "services/catalog/connection_store.h"
#include "services/catalog/deployment_usage.h"
#include "services/catalog/downloader.h"
#include "services/catalog/event_log.h"
#include "services/catalog/hub_client.h"
#include "services/catalog/model_importer.h"
#include "services/catalog/model_store.h"
#include "services/catalog/preparation_manager.h"

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
    // Per-file download retries for short blips (clock replaced by `clock`).
    FileDownloader::Options download;
    // Waiting out a Hub outage during a preparation.
    HubRetryPolicy hub_retry;
    // Imports (header inspections) and downloads running at once, each in
    // [1, 256]; more wait in a queue. Two groups, so that long downloads
    // (a Hub outage is waited out on its thread) never hold imports back.
    int max_imports = 4;
    int max_downloads = 8;

    // --- Injected dependencies: not owned, must outlive the catalog ---
    ModelStore* models = nullptr;
    ConnectionStore* connections = nullptr;
    const HubClient* hub = nullptr;
    DeploymentUsage* deployment_usage = nullptr;
    const auth::SecretBox* secrets = nullptr;
    ChangeNotifier* notifier = nullptr;
    // Optional.
    CatalogMetrics* metrics = nullptr;
    EventLog* log = nullptr;
    Clock* clock = Clock::Real();
  };

  // Validates `options` and runs the start-up work (see above).
  static absl::StatusOr<std::unique_ptr<Catalog>> Create(Options options);

  ~Catalog();  // Shutdown()
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

  // --- Connections ---
  ConnectionRegistry& connections() { return *connections_; }

  // Stops downloads (they resume at the next start) and joins every
  // background task. Idempotent.
  void Shutdown();

  // ---------------------------------------------------------------------
  // Implementation details.
 private:
  explicit Catalog(Options options) : options_(std::move(options)) {}

  absl::Status Start();
  // Removes the files of a row marked deleting (its directory, unless
  // another row names it), then the row.
  absl::Status FinishDelete(const StoredPath& row);
  // The directories of the store a row names: its preparation path and,
  // for a Hugging Face model, <store>/<repo>/<resolved revision>.
  std::vector<std::string> DirectoriesOf(const StoredPath& row) const;
  absl::Status FinishInterruptedDeletes();
  absl::Status SweepStore();
  void OverlayLiveProgress(v1::Model& model);

  Options options_;
  std::unique_ptr<TaskGroup> import_tasks_;
  std::unique_ptr<TaskGroup> download_tasks_;
  std::unique_ptr<ConnectionRegistry> connections_;
  std::unique_ptr<ModelImporter> importer_;
  std::unique_ptr<PreparationManager> preparations_;
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_CATALOG_H_
