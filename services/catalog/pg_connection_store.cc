#include "services/catalog/pg_connection_store.h"

#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/api/time.h"
#include "common/status/status_macros.h"

namespace hangar::catalog {
namespace {

v1::Connection RowToConnection(const pqxx::row& row) {
  v1::Connection connection;
  connection.set_name(row[0].as<std::string>());
  connection.set_description(row[1].as<std::string>());
  connection.set_token_prefix(row[2].as<std::string>());
  *connection.mutable_create_time() =
      ToProtoTimestamp(absl::FromUnixMicros(row[3].as<int64_t>()));
  return connection;
}

constexpr char kConnectionColumns[] =
    "name, description, token_prefix, "
    "(extract(epoch FROM create_time) * 1000000)::bigint";

}  // namespace

absl::StatusOr<v1::Connection> PgConnectionStore::CreateConnection(
    const StoredConnection& stored) {
  return pool_->Transact<v1::Connection>(
      [&](pqxx::work& tx) -> absl::StatusOr<v1::Connection> {
        pqxx::result rows = tx.exec_params(
            absl::StrCat("INSERT INTO catalog.connections (name, description, "
                         "sealed_token, token_prefix) VALUES ($1, $2, "
                         "$3, $4) ON CONFLICT (name) DO NOTHING "
                         "RETURNING ",
                         kConnectionColumns),
            stored.connection.name(), stored.connection.description(),
            stored.sealed_token, stored.connection.token_prefix());
        if (rows.empty()) {
          return absl::AlreadyExistsError(
              absl::StrCat("connection.name: connection \"",
                           stored.connection.name(), "\" already exists"));
        }
        return RowToConnection(rows[0]);
      });
}

absl::StatusOr<StoredConnection> PgConnectionStore::GetConnection(
    const std::string& name) {
  return pool_->Transact<StoredConnection>(
      [&](pqxx::work& tx) -> absl::StatusOr<StoredConnection> {
        pqxx::result rows =
            tx.exec_params(absl::StrCat("SELECT ", kConnectionColumns,
                                        ", sealed_token FROM "
                                        "catalog.connections WHERE name = $1"),
                           name);
        if (rows.empty()) {
          return absl::NotFoundError(
              absl::StrCat("connection \"", name, "\" not found"));
        }
        StoredConnection stored;
        stored.connection = RowToConnection(rows[0]);
        stored.sealed_token = rows[0][4].as<std::string>();
        return stored;
      },
      {.read_only = true});
}

absl::StatusOr<ConnectionPage> PgConnectionStore::ListConnections(
    const std::string& after_name, int limit) {
  return pool_->Transact<ConnectionPage>(
      [&](pqxx::work& tx) -> absl::StatusOr<ConnectionPage> {
        ConnectionPage page;
        for (const pqxx::row& row : tx.exec_params(
                 absl::StrCat("SELECT ", kConnectionColumns,
                              " FROM catalog.connections WHERE name > $1 "
                              "ORDER BY name LIMIT $2"),
                 after_name, limit + 1)) {
          if (static_cast<int>(page.connections.size()) == limit) {
            page.more = true;
            break;
          }
          page.connections.push_back(RowToConnection(row));
        }
        return page;
      },
      {.read_only = true});
}

absl::Status PgConnectionStore::DeleteConnection(const std::string& name) {
  return pool_->Transact([&](pqxx::work& tx) -> absl::Status {
    pqxx::result deleted = tx.exec_params(
        "DELETE FROM catalog.connections WHERE name = $1 RETURNING name", name);
    if (deleted.empty()) {
      return absl::NotFoundError(
          absl::StrCat("connection \"", name, "\" not found"));
    }
    // Models imported through it need its token to be prepared.
    pqxx::result users = tx.exec_params(
        "SELECT name FROM catalog.models WHERE connection = $1 AND NOT "
        "deleting ORDER BY name "
        "LIMIT 5",
        name);
    if (!users.empty()) {
      std::vector<std::string> names;
      for (const pqxx::row& row : users)
        names.push_back(row[0].as<std::string>());
      return absl::FailedPreconditionError(
          absl::StrCat("name: connection \"", name, "\" is used by model(s) ",
                       absl::StrJoin(names, ", "), "; delete them first"));
    }
    return absl::OkStatus();
  });
}

}  // namespace hangar::catalog
