// ConnectionStore on PostgreSQL: the `connections` table of the catalog
// schema (migrated by MigrateCatalogSchema, pg_model_store.h). Tokens are
// stored sealed; queries are parameterized.
//
//   PgConnectionStore connections(pool.get());
#ifndef HANGAR_SERVICES_CATALOG_PG_CONNECTION_STORE_H_
#define HANGAR_SERVICES_CATALOG_PG_CONNECTION_STORE_H_

#include "common/db/pool.h"
#include "services/catalog/connection_store.h"

namespace hangar::catalog {

class PgConnectionStore final : public ConnectionStore {
 public:
  // `pool` is not owned and must outlive the store.
  explicit PgConnectionStore(db::Pool* pool) : pool_(pool) {}

  absl::StatusOr<v1::Connection> CreateConnection(
      const StoredConnection& connection) override;
  absl::StatusOr<StoredConnection> GetConnection(
      const std::string& name) override;
  absl::StatusOr<ConnectionPage> ListConnections(const std::string& after_name,
                                                 int limit) override;
  absl::Status DeleteConnection(const std::string& name) override;

 private:
  db::Pool* const pool_;
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_PG_CONNECTION_STORE_H_
