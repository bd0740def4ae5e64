// Where the catalog keeps its models and connections: a small interface with
// a PostgreSQL implementation (pg_model_store.h).
//
// Models are `hangar::v1::Model` messages (protobuf data, not gRPC types).
// The store owns `create_time`, `update_time` and `etag`; the etag changes
// whenever the model's metadata changes (UpdateModel), not when only its
// preparation progress does (SetPreparation).
//
// Connections carry their token sealed (common/auth/secret_box.h); the store
// never sees a plaintext token.
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

// A connection as stored: the public fields plus the sealed token.
struct StoredConnection {
  v1::Connection connection;  // `token` always empty.
  std::string sealed_token;
};

class ModelStore {
 public:
  virtual ~ModelStore() = default;

  // Inserts or refreshes the curated models: metadata is replaced, state and
  // preparation of existing rows are kept. Curated rows no longer in
  // `models` are left alone.
  virtual absl::Status UpsertCurated(const std::vector<v1::Model>& models) = 0;

  // Inserts a new model. ALREADY_EXISTS when the name is taken.
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
  // metadata is written back (the preparation is not) and the etag
  // changes. `mutate` may run more than once; it must have no side effects.
  virtual absl::StatusOr<v1::Model> UpdateModel(
      const std::string& name,
      const std::function<absl::Status(v1::Model&)>& mutate) = 0;

  // Replaces the preparation of a model. NOT_FOUND if it does not exist.
  virtual absl::Status SetPreparation(const std::string& name,
                                      const v1::Preparation& preparation) = 0;

  // Deletes a model; `check` sees it (row locked) first and may refuse.
  virtual absl::Status DeleteModel(
      const std::string& name,
      const std::function<absl::Status(const v1::Model&)>& check) = 0;

  // Models per state, for the models-by-state gauge.
  virtual absl::StatusOr<std::map<v1::ModelState, int64_t>> CountByState() = 0;

  // Connections.
  virtual absl::StatusOr<v1::Connection> CreateConnection(
      const StoredConnection& connection) = 0;
  virtual absl::StatusOr<StoredConnection> GetConnection(
      const std::string& name) = 0;
  // In name order, after `after_name`, at most `limit` (+ whether more).
  virtual absl::StatusOr<std::pair<std::vector<v1::Connection>, bool>>
  ListConnections(const std::string& after_name, int limit) = 0;
  // FAILED_PRECONDITION while models imported through it exist.
  virtual absl::Status DeleteConnection(const std::string& name) = 0;
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_MODEL_STORE_H_
