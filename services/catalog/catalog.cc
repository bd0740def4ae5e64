#include "services/catalog/catalog.h"

#include <filesystem>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/api/etag.h"
#include "common/api/field_mask.h"
#include "common/api/page_token.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "services/catalog/model_files.h"
#include "services/catalog/model_validation.h"

namespace hangar::catalog {
namespace {

namespace fs = std::filesystem;

// How long DeleteModel waits for a running download to let go of its files.
constexpr absl::Duration kDownloadStopTimeout = absl::Seconds(30);

// The paths UpdateModel may change (the user-editable fields).
const std::vector<std::string>& UpdatablePaths() {
  static const auto* const paths = new std::vector<std::string>(
      std::begin(kUserEditableFields), std::end(kUserEditableFields));
  return *paths;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Catalog>> Catalog::Create(Options options) {
  if (options.models == nullptr || options.connections == nullptr ||
      options.hub == nullptr || options.deployment_usage == nullptr ||
      options.secrets == nullptr || options.notifier == nullptr ||
      options.clock == nullptr) {
    return absl::InvalidArgumentError(
        "Catalog needs models, connections, a hub client, a deployment "
        "usage, a secret box, a notifier and a clock");
  }
  if (options.model_store.empty()) {
    return InvalidField("model_store", "required (a directory)");
  }
  std::error_code error;
  fs::create_directories(options.model_store, error);
  if (error || !fs::is_directory(options.model_store)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model_store: cannot use ", options.model_store, " as a directory",
        error ? absl::StrCat(": ", error.message()) : ""));
  }
  if (options.log == nullptr) options.log = EventLog::Stderr();
  std::unique_ptr<Catalog> catalog(new Catalog(std::move(options)));
  RETURN_IF_ERROR(catalog->Start());
  return catalog;
}

absl::Status Catalog::Start() {
  const Options& o = options_;
  ASSIGN_OR_RETURN(import_tasks_,
                   TaskGroup::Create({.name = "catalog imports",
                                      .max_threads = o.max_imports,
                                      .clock = o.clock}));
  ASSIGN_OR_RETURN(download_tasks_,
                   TaskGroup::Create({.name = "catalog downloads",
                                      .max_threads = o.max_downloads,
                                      .clock = o.clock}));
  ASSIGN_OR_RETURN(connections_,
                   ConnectionRegistry::Create(
                       {.store = o.connections, .secrets = o.secrets}));
  DomainContext context{.models = o.models,
                        .hub = o.hub,
                        .connections = connections_.get(),
                        .tasks = import_tasks_.get(),
                        .notifier = o.notifier,
                        .metrics = o.metrics,
                        .log = o.log,
                        .clock = o.clock};
  ASSIGN_OR_RETURN(importer_, ModelImporter::Create(
                                  {.local_model_root = o.local_model_root,
                                   .cpu_max_parameters = o.cpu_max_parameters,
                                   .context = context}));
  context.tasks = download_tasks_.get();
  ASSIGN_OR_RETURN(
      preparations_,
      PreparationManager::Create({.model_store = o.model_store,
                                  .local_model_root = o.local_model_root,
                                  .curated_connection = o.curated_connection,
                                  .progress_interval = o.progress_interval,
                                  .download = o.download,
                                  .hub_retry = o.hub_retry,
                                  .context = context}));
  RETURN_IF_ERROR(o.models->UpsertCurated(o.curated_models));
  RETURN_IF_ERROR(FinishInterruptedDeletes());
  RETURN_IF_ERROR(SweepStore());
  RETURN_IF_ERROR(importer_->ResumeInterrupted());
  RETURN_IF_ERROR(preparations_->ResumeInterrupted());
  if (o.metrics != nullptr) o.metrics->RefreshModelsByState(*o.models);
  return absl::OkStatus();
}

Catalog::~Catalog() { Shutdown(); }

void Catalog::Shutdown() {
  if (preparations_ != nullptr) preparations_->Shutdown();
  if (import_tasks_ != nullptr) import_tasks_->Shutdown();
  if (download_tasks_ != nullptr) download_tasks_->Shutdown();
}

absl::Status Catalog::FinishInterruptedDeletes() {
  ASSIGN_OR_RETURN(std::vector<StoredPath> rows,
                   options_.models->ListPreparationPaths());
  for (const StoredPath& row : rows) {
    if (!row.deleting) continue;
    options_.log->Write("delete_resumed", {{"model", row.name}});
    RETURN_IF_ERROR(FinishDelete(row));
  }
  return absl::OkStatus();
}

absl::Status Catalog::SweepStore() {
  ASSIGN_OR_RETURN(bool marked, MarkStoreIfFresh(options_.model_store));
  if (!marked) {
    options_.log->Write(
        "store_sweep_skipped",
        {{"model_store", options_.model_store},
         {"why", absl::StrCat("the directory held other files when the "
                              "catalog first used it (no ",
                              kStoreMarker, ")")}});
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::vector<StoredPath> rows,
                   options_.models->ListPreparationPaths());
  std::set<std::string> in_use;
  for (const StoredPath& row : rows) {
    for (const std::string& directory : DirectoriesOf(row)) {
      in_use.insert(directory);
    }
  }
  ASSIGN_OR_RETURN(SweepReport report,
                   SweepOrphans(options_.model_store, in_use));
  options_.log->Write("store_sweep",
                      {{"model_store", options_.model_store},
                       {"orphans_removed", absl::StrCat(report.removed.size())},
                       {"removed", absl::StrJoin(report.removed, ",")}});
  if (options_.metrics != nullptr && !report.removed.empty()) {
    options_.metrics->OrphansRemoved(
        static_cast<int64_t>(report.removed.size()));
  }
  return absl::OkStatus();
}

std::vector<std::string> Catalog::DirectoriesOf(const StoredPath& row) const {
  std::vector<std::string> directories;
  if (!row.path.empty()) directories.push_back(row.path);
  if (!row.hf_repo.empty() && !row.resolved_revision.empty()) {
    directories.push_back(
        (fs::path(options_.model_store) / row.hf_repo / row.resolved_revision)
            .string());
  }
  return directories;
}

absl::Status Catalog::FinishDelete(const StoredPath& deleted) {
  ASSIGN_OR_RETURN(std::vector<StoredPath> rows,
                   options_.models->ListPreparationPaths());
  std::set<std::string> others;
  for (const StoredPath& row : rows) {
    if (row.name == deleted.name) continue;
    for (const std::string& directory : DirectoriesOf(row)) {
      others.insert(fs::path(directory).lexically_normal().string());
    }
  }
  for (const std::string& directory : DirectoriesOf(deleted)) {
    if (!IsInsideStore(options_.model_store, directory) ||
        others.count(fs::path(directory).lexically_normal().string()) > 0) {
      continue;  // Local files, or shared with another model.
    }
    RETURN_IF_ERROR(RemoveStoreDirectory(options_.model_store, directory));
    options_.log->Write("model_files_removed",
                        {{"model", deleted.name}, {"path", directory}});
  }
  RETURN_IF_ERROR(options_.models->FinishDelete(deleted.name));
  options_.log->Write("model_deleted", {{"model", deleted.name}});
  return absl::OkStatus();
}

void Catalog::OverlayLiveProgress(v1::Model& model) {
  if (std::optional<v1::Preparation> live = preparations_->Live(model.name())) {
    *model.mutable_preparation() = *std::move(live);
  }
}

// --- Models ---

absl::StatusOr<v1::ListModelsResponse> Catalog::ListModels(
    const v1::ListModelsRequest& request) {
  RETURN_IF_ERROR(ValidateText("family", request.family(), kMaxTagLength));
  RETURN_IF_ERROR(ValidateText("tag", request.tag(), kMaxTagLength));
  RETURN_IF_ERROR(ValidateText("query", request.query(), kMaxQueryLength));
  if (request.fits_gpu_memory_bytes() < 0) {
    return InvalidField("fits_gpu_memory_bytes", "must not be negative");
  }
  if (!v1::ModelSource_IsValid(request.source()) ||
      !v1::Engine_IsValid(request.supports_engine())) {
    return absl::InvalidArgumentError(
        "source/supports_engine: unknown enum value");
  }
  ASSIGN_OR_RETURN(int limit, ResolvePageSize(request.page_size()));
  const std::string filters = FilterFingerprint(request);
  ASSIGN_OR_RETURN(std::string after,
                   DecodePageToken(request.page_token(), filters));
  ModelFilter filter{.source = request.source(),
                     .family = request.family(),
                     .tag = request.tag(),
                     .query = request.query(),
                     .supports_engine = request.supports_engine(),
                     .fits_gpu_memory_bytes = request.fits_gpu_memory_bytes(),
                     .runs_on_cpu = request.runs_on_cpu()};
  ASSIGN_OR_RETURN(ModelPage models,
                   options_.models->ListModels(filter, after, limit));
  v1::ListModelsResponse response;
  for (v1::Model& model : models.models) {
    OverlayLiveProgress(model);
    *response.add_models() = std::move(model);
  }
  if (models.more && response.models_size() > 0) {
    response.set_next_page_token(EncodePageToken(
        response.models(response.models_size() - 1).name(), filters));
  }
  response.set_total_size(static_cast<int32_t>(models.total));
  return response;
}

absl::StatusOr<v1::Model> Catalog::GetModel(const std::string& name) {
  RETURN_IF_ERROR(ValidateModelName("name", name));
  ASSIGN_OR_RETURN(v1::Model model, options_.models->GetModel(name));
  OverlayLiveProgress(model);
  return model;
}

absl::StatusOr<v1::Model> Catalog::ImportModel(
    const v1::ImportModelRequest& request) {
  return importer_->Import(request);
}

absl::StatusOr<v1::Preparation> Catalog::PrepareModel(const std::string& name) {
  return preparations_->Prepare(name);
}

absl::StatusOr<v1::Model> Catalog::UpdateModel(
    const v1::UpdateModelRequest& request) {
  const v1::Model& changes = request.model();
  RETURN_IF_ERROR(ValidateModelName("model.name", changes.name()));
  RETURN_IF_ERROR(ValidateFieldMask(request.update_mask(), UpdatablePaths()));
  const std::vector<std::string> paths(request.update_mask().paths().begin(),
                                       request.update_mask().paths().end());
  for (const std::string& path : paths) {
    if (path == "description") {
      RETURN_IF_ERROR(ValidateText("model.description", changes.description(),
                                   kMaxDescriptionLength));
    } else if (path == "display_name") {
      RETURN_IF_ERROR(ValidateText("model.display_name", changes.display_name(),
                                   kMaxDisplayNameLength));
    } else if (path == "tags") {
      RETURN_IF_ERROR(ValidateTags(
          "model.tags", std::vector<std::string>(changes.tags().begin(),
                                                 changes.tags().end())));
    }
  }
  ASSIGN_OR_RETURN(
      v1::Model updated,
      options_.models->UpdateModel(
          changes.name(),
          [&](v1::Model& current) -> absl::Status {
            RETURN_IF_ERROR(
                CheckEtag(changes.etag(), current.etag(), false, "model.etag"));
            ApplyFieldMask(changes, request.update_mask(), &current);
            return absl::OkStatus();
          },
          paths));
  options_.notifier->Notify(changes.name());
  OverlayLiveProgress(updated);
  return updated;
}

absl::Status Catalog::DeleteModel(const v1::DeleteModelRequest& request) {
  RETURN_IF_ERROR(ValidateModelName("name", request.name()));
  ASSIGN_OR_RETURN(v1::Model model, options_.models->GetModel(request.name()));
  if (model.source() == v1::MODEL_SOURCE_CURATED) {
    return absl::FailedPreconditionError(
        absl::StrCat("name: \"", request.name(),
                     "\" is a curated model and cannot be deleted"));
  }
  auto check_etag = [&](const v1::Model& current) {
    return CheckEtag(request.etag(), current.etag());
  };
  RETURN_IF_ERROR(check_etag(model));
  ASSIGN_OR_RETURN(std::vector<std::string> users,
                   options_.deployment_usage->DeploymentsUsing(request.name()));
  if (!users.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("name: \"", request.name(), "\" is used by deployment(s) ",
                     absl::StrJoin(users, ", "), "; delete them first"));
  }
  ASSIGN_OR_RETURN(v1::Model marked,
                   options_.models->MarkDeleting(request.name(), check_etag));
  options_.notifier->Notify(request.name());
  preparations_->CancelAndWait(request.name(), kDownloadStopTimeout);
  absl::Status finished =
      FinishDelete({.name = request.name(),
                    .path = marked.preparation().local_path(),
                    .hf_repo = marked.hf_repo(),
                    .resolved_revision = marked.resolved_revision()});
  if (!finished.ok()) {
    // The row stays marked (hidden); the next start finishes the delete.
    options_.log->Write("delete_incomplete",
                        {{"model", request.name()},
                         {"error", std::string(finished.message())}});
  }
  if (options_.metrics != nullptr) {
    options_.metrics->RefreshModelsByState(*options_.models);
  }
  return absl::OkStatus();
}

}  // namespace hangar::catalog
