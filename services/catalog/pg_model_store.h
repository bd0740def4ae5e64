// ModelStore on PostgreSQL, in the `catalog` schema built by
// services/catalog/migrations/*.sql (MigrateCatalogSchema). Its sibling
// PgConnectionStore (pg_connection_store.h) shares the schema.
//
//   ASSIGN_OR_RETURN(auto pool, db::Pool::Create({.conninfo = db}));
//   RETURN_IF_ERROR(MigrateCatalogSchema(*pool));
//   PgModelStore store(pool.get());
//
// Every query is parameterized (values never become SQL text), so any
// string, SQL metacharacters included, is stored verbatim. Scalar fields are
// columns; the computed lists (weight sizes, supported recipes) are jsonb so
// that filters can look inside them. Rows marked deleting are skipped by
// every read but ListNamesDeleting and ListPreparationPaths.
#ifndef HANGAR_SERVICES_CATALOG_PG_MODEL_STORE_H_
#define HANGAR_SERVICES_CATALOG_PG_MODEL_STORE_H_

#include "common/db/pool.h"
#include "services/catalog/model_store.h"

namespace hangar::catalog {

// Applies the catalog schema's migrations (idempotent).
absl::Status MigrateCatalogSchema(db::Pool& pool);

class PgModelStore final : public ModelStore {
 public:
  // `pool` is not owned and must outlive the store.
  explicit PgModelStore(db::Pool* pool) : pool_(pool) {}

  absl::Status UpsertCurated(const std::vector<v1::Model>& models) override;
  absl::StatusOr<v1::Model> CreateModel(const v1::Model& model) override;
  absl::StatusOr<v1::Model> GetModel(const std::string& name) override;
  absl::StatusOr<ModelPage> ListModels(const ModelFilter& filter,
                                       const std::string& after_name,
                                       int limit) override;
  absl::StatusOr<std::vector<std::string>> ListNamesInState(
      v1::ModelState state) override;
  absl::StatusOr<std::vector<std::string>> ListNamesPreparing(
      v1::PreparationState state) override;
  absl::StatusOr<v1::Model> UpdateModel(
      const std::string& name,
      const std::function<absl::Status(v1::Model&)>& mutate,
      const std::vector<std::string>& user_edited) override;
  absl::Status SetPreparation(const std::string& name,
                              const v1::Preparation& preparation) override;
  absl::StatusOr<v1::Model> MarkDeleting(
      const std::string& name,
      const std::function<absl::Status(const v1::Model&)>& check) override;
  absl::Status FinishDelete(const std::string& name) override;
  absl::StatusOr<std::vector<std::string>> ListNamesDeleting() override;
  absl::StatusOr<std::vector<StoredPath>> ListPreparationPaths() override;
  absl::StatusOr<std::map<v1::ModelState, int64_t>> CountByState() override;

 private:
  db::Pool* const pool_;
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_PG_MODEL_STORE_H_
