// Versioned schema migrations: ordered .sql files per service schema, each
// applied exactly once, recorded in the database.
//
// Every service keeps its schema's history as files
// `services/<svc>/migrations/NNNN_name.sql` (NNNN: a positive version, gaps
// allowed; name: letters, digits, '_' and '-'). The build embeds them in the
// binary with the CMake function from cmake/HangarMigrations.cmake:
//
//   hangar_embed_migrations(TARGET catalog_migrations SCHEMA catalog
//                           DIR ${CMAKE_CURRENT_SOURCE_DIR}/migrations)
//
//   #include "hangar/migrations/catalog.h"
//   RETURN_IF_ERROR(db::ApplyMigrations(*pool, migrations::catalog::kSchema,
//                                       migrations::catalog::Migrations()));
//
// ApplyMigrations():
//  * creates the schema and `<schema>.schema_migrations (version, name,
//    checksum, applied_at)` if missing;
//  * holds a session advisory lock keyed by the schema name for its whole
//    run, so concurrent start-ups (several replicas, several processes)
//    serialize and each migration is applied exactly once;
//  * refuses (FAILED_PRECONDITION) when a recorded migration's checksum
//    differs from the file's (an applied file was edited), or when a pending
//    migration is older than one already applied (out of order);
//    migrations recorded in the database but unknown to this binary (a newer
//    release ran) are left alone;
//  * applies each pending migration in its own transaction with
//    `search_path` set to the schema, so unqualified names land in it. A
//    failing migration rolls back completely (nothing of it stays, its
//    version is not recorded) and the error names the file and PostgreSQL's
//    message; migrations before it stay applied;
//  * is idempotent: with nothing pending it changes nothing.
// A migration runs inside a transaction, so it must not use statements that
// refuse one (CREATE INDEX CONCURRENTLY, VACUUM).
#ifndef HANGAR_COMMON_DB_MIGRATIONS_H_
#define HANGAR_COMMON_DB_MIGRATIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/db/pool.h"

namespace hangar::db {

struct Migration {
  int64_t version = 0;   // NNNN of the file name.
  std::string name;      // The file name's part after "NNNN_", no ".sql".
  std::string sql;       // The file's bytes.
  std::string checksum;  // SHA-256 of `sql`, lower-case hex.

  // "0003_add_tags.sql"-style name of the file, for messages.
  std::string FileName() const;
};

// Builds a Migration, computing its checksum.
Migration MakeMigration(int64_t version, std::string name, std::string sql);

// Splits "0003_add_tags.sql" into version 3 and name "add_tags".
// INVALID_ARGUMENT, naming the file and the rule, otherwise.
absl::Status ParseMigrationFileName(absl::string_view file_name,
                                    int64_t* version, std::string* name);

// Reads every *.sql file of `dir` (other files are ignored) in version order.
// Fails on a malformed name or two files with the same version.
absl::StatusOr<std::vector<Migration>> LoadMigrationsFromDir(
    const std::string& dir);

// What one ApplyMigrations() run did.
struct MigrationReport {
  std::vector<std::string> applied;  // File names applied by this run.
  int64_t current_version = 0;       // Highest version recorded afterwards.
};

// Applies the pending `migrations` to `schema` as described above. `schema`
// must be a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63 bytes).
// `report`, when not null, receives what was applied.
absl::Status ApplyMigrations(Pool& pool, absl::string_view schema,
                             const std::vector<Migration>& migrations,
                             MigrationReport* report = nullptr);

}  // namespace hangar::db

#endif  // HANGAR_COMMON_DB_MIGRATIONS_H_
