// hangar-migrate: applies a directory of NNNN_name.sql migrations to one
// schema, the way services do at start-up. For operators and tests.
//
//   hangar-migrate --db="host=127.0.0.1 port=5432 dbname=hangar" \
//       --schema=catalog --dir=services/catalog/migrations
//
// Prints one line per applied migration ("applied 0002_tags.sql"), then
// "schema catalog at version 2"; exits 0. On any error prints one line
// "hangar-migrate: <error>" and exits 1. Flags may also come from
// HANGAR_MIGRATE_<FLAG> or HANGAR_<FLAG> (so $HANGAR_DB works); --help lists
// them.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/config/flags.h"
#include "common/db/migrations.h"
#include "common/db/pool.h"

ABSL_FLAG(std::string, db, "",
          "libpq connection string of the database (required)");
ABSL_FLAG(std::string, schema, "", "schema to migrate, e.g. catalog");
ABSL_FLAG(std::string, dir, "", "directory holding the NNNN_name.sql files");
ABSL_FLAG(absl::Duration, connect_timeout, absl::Seconds(5),
          "how long to wait for the database to accept a connection");

namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "hangar-migrate: %s\n", status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest = hangar::ParseFlagsWithEnv(
      argc, argv, "HANGAR_MIGRATE_", "hangar-migrate");
  if (rest.size() > 1) {
    return Fail(absl::InvalidArgumentError(
        std::string("unexpected argument: ") + rest[1]));
  }
  const std::string db = absl::GetFlag(FLAGS_db);
  if (db.empty()) {
    return Fail(absl::InvalidArgumentError("--db (or $HANGAR_DB) is required"));
  }
  const std::string schema = absl::GetFlag(FLAGS_schema);
  const std::string dir = absl::GetFlag(FLAGS_dir);
  if (schema.empty()) {
    return Fail(absl::InvalidArgumentError("--schema is required"));
  }
  if (dir.empty()) return Fail(absl::InvalidArgumentError("--dir is required"));

  absl::StatusOr<std::vector<hangar::db::Migration>> migrations =
      hangar::db::LoadMigrationsFromDir(dir);
  if (!migrations.ok()) return Fail(migrations.status());

  absl::StatusOr<std::unique_ptr<hangar::db::Pool>> pool =
      hangar::db::Pool::Create({
          .conninfo = db,
          .size = 1,
          .connect_timeout = absl::GetFlag(FLAGS_connect_timeout),
      });
  if (!pool.ok()) return Fail(pool.status());

  hangar::db::MigrationReport report;
  absl::Status status =
      hangar::db::ApplyMigrations(**pool, schema, *migrations, &report);
  for (const std::string& file : report.applied) {
    std::printf("applied %s\n", file.c_str());
  }
  if (!status.ok()) return Fail(status);
  std::printf("schema %s at version %lld\n", schema.c_str(),
              static_cast<long long>(report.current_version));
  return 0;
}
