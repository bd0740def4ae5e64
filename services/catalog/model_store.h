// Where the catalog keeps its models: a small interface with a PostgreSQL
// implementation (pg_model_store.h) and an in-memory fake for domain unit
// tests (testing/in_memory_model_store.h). Connections live behind their own
// interface (connection_store.h).
//
// Models are `hangar::v1::Model` messages (protobuf data, not gRPC types).
// The store owns `create_time`, `update_time` and `etag`; the etag changes
// whenever the model's metadata changes (UpdateModel), not when only its
// preparation does (SetPreparation).
//
// Two pieces of row state are not in the proto:
//   * user-edited fields: UpdateModel records which of display_name,
//     description and tags a user set, and UpsertCurated leaves those alone;
//   * deleting: MarkDeleting hides a row from every read (a deleted model is
//     gone for callers at once) until FinishDelete removes it, after the
//     model's files are gone; ListNamesDeleting finds rows a crash left.
//
// Every method is thread-safe. Errors use canonical codes: NOT_FOUND,
// ALREADY_EXISTS, ABORTED (stale etag), UNAVAILABLE (database down).
#ifndef HANGAR_SERVICES_CATALOG_MODEL_STORE_H_
#define HANGAR_SERVICES_CATALOG_MODEL_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hangar/v1/catalog.pb.h"

namespace hangar::catalog {

// ListModels filters; a zero/empty field does not filter.
struct ModelFilter {
  v1::ModelSource source = v1::MODEL_SOURCE_UNSPECIFIED;
  std::string family;
  std::string tag;
  // Case-insensitive substring of name, display name or description.
  std::string query;
  v1::Engine supports_engine = v1::ENGINE_UNSPECIFIED;
  // A supported recipe (of `supports_engine`, when given) fits in this much.
  int64_t fits_gpu_memory_bytes = 0;
  bool runs_on_cpu = false;
};

struct ModelPage {
  std::vector<v1::Model> models;
  // Whether models after the last one returned match too.
  bool more = false;
  // Matches over all pages.
  int64_t total = 0;
};

// Where a row's prepared files are, for deletes and the orphan sweep.
struct StoredPath {
  std::string name;
  // Preparation.local_path; empty when nothing was prepared.
  std::string path;
  // Where a Hugging Face model's files go (with the store root:
  // <root>/<hf_repo>/<resolved_revision>), for rows whose path is not
  // recorded yet.
  std::string hf_repo;
  std::string resolved_revision;
  bool deleting = false;
};

// The fields a user may edit (UpdateModel paths), which curated updates
// then leave alone.
inline constexpr const char* kUserEditableFields[] = {"description",
                                                      "display_name", "tags"};

// `current` refreshed from the curated list's `curated`: every curated
// metadata field is replaced except those in `user_edited`; state,
// preparation and the store's fields are kept. Both stores use it.
v1::Model MergeCurated(const v1::Model& current, const v1::Model& curated,
                       const std::vector<std::string>& user_edited);

class ModelStore {
 public:
  virtual ~ModelStore() = default;

  // Inserts missing curated models and refreshes existing ones: metadata is
  // replaced except the fields a user edited; state and preparation are
  // kept; the etag changes only when something did. Curated rows no longer
  // in `models` are left alone.
  virtual absl::Status UpsertCurated(const std::vector<v1::Model>& models) = 0;

  // Inserts a new model. ALREADY_EXISTS when the name is taken (a row being
  // deleted included).
  virtual absl::StatusOr<v1::Model> CreateModel(const v1::Model& model) = 0;

  virtual absl::StatusOr<v1::Model> GetModel(const std::string& name) = 0;

  // Models matching `filter` with names after `after_name`, in name order,
  // at most `limit`.
  virtual absl::StatusOr<ModelPage> ListModels(const ModelFilter& filter,
                                               const std::string& after_name,
                                               int limit) = 0;

  // Names of models in `state`.
  virtual absl::StatusOr<std::vector<std::string>> ListNamesInState(
      v1::ModelState state) = 0;
  // Names of models whose preparation is in `state`.
  virtual absl::StatusOr<std::vector<std::string>> ListNamesPreparing(
      v1::PreparationState state) = 0;

  // Read-modify-write in one transaction: `mutate` receives the current
  // model (row locked) and edits it; its error aborts the update. The
  // metadata is written back (the preparation is not) and the etag changes.
  // `user_edited` (a subset of kUserEditableFields) is added to the row's
  // user-edited fields. `mutate` may run more than once; it must have no
  // side effects.
  virtual absl::StatusOr<v1::Model> UpdateModel(
      const std::string& name,
      const std::function<absl::Status(v1::Model&)>& mutate,
      const std::vector<std::string>& user_edited) = 0;

  // Replaces the preparation of a model. NOT_FOUND if it does not exist.
  virtual absl::Status SetPreparation(const std::string& name,
                                      const v1::Preparation& preparation) = 0;

  // Marks a model deleting; `check` sees it (row locked) first and may
  // refuse. Returns the model as it was.
  virtual absl::StatusOr<v1::Model> MarkDeleting(
      const std::string& name,
      const std::function<absl::Status(const v1::Model&)>& check) = 0;
  // Removes a row marked deleting. NOT_FOUND when there is none.
  virtual absl::Status FinishDelete(const std::string& name) = 0;
  // Rows marked deleting (an interrupted delete).
  virtual absl::StatusOr<std::vector<std::string>> ListNamesDeleting() = 0;
  // Every row's preparation path, deleting rows included.
  virtual absl::StatusOr<std::vector<StoredPath>> ListPreparationPaths() = 0;

  // Models per state, for the models-by-state gauge.
  virtual absl::StatusOr<std::map<v1::ModelState, int64_t>> CountByState() = 0;
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_MODEL_STORE_H_
