#include "common/db/migrations.h"

#include <algorithm>
#include <cctype>
#include <exception>
#include <filesystem>
#include <map>
#include <pqxx/nontransaction>
#include <pqxx/pqxx>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/db/errors.h"
#include "common/status/status_macros.h"
#include "common/util/file.h"
#include "common/util/sha256.h"

namespace hangar::db {
namespace {

// The first key of the two-key advisory lock every migration run takes
// ("HANG"); the second is hashtext(schema).
constexpr int kAdvisoryLockClass = 0x48414e47;

bool IsValidSchemaName(absl::string_view schema) {
  if (schema.empty() || schema.size() > 63) return false;
  if (!(absl::ascii_islower(schema[0]) || schema[0] == '_')) return false;
  return std::all_of(schema.begin(), schema.end(), [](char c) {
    return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_';
  });
}

absl::Status CheckMigrationList(const std::vector<Migration>& migrations) {
  for (size_t i = 0; i < migrations.size(); ++i) {
    const Migration& m = migrations[i];
    if (m.version <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "migration ", m.FileName(), ": version must be positive"));
    }
    if (i > 0 && m.version <= migrations[i - 1].version) {
      return absl::InvalidArgumentError(absl::StrCat(
          "migrations must be in increasing version order without "
          "duplicates; ",
          m.FileName(), " follows ", migrations[i - 1].FileName()));
    }
    if (m.checksum != Sha256Hex(m.sql)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "migration ", m.FileName(), ": checksum does not match its sql"));
    }
  }
  return absl::OkStatus();
}

struct AppliedMigration {
  std::string name;
  std::string checksum;
};

// Runs under the advisory lock on `connection`.
absl::Status ApplyLocked(pqxx::connection& connection,
                         const std::string& schema,
                         const std::vector<Migration>& migrations,
                         MigrationReport* report) {
  std::string table;
  std::map<int64_t, AppliedMigration> applied;
  try {
    pqxx::work tx(connection);
    const std::string quoted_schema = tx.quote_name(schema);
    table = absl::StrCat(quoted_schema, ".schema_migrations");
    tx.exec0(absl::StrCat("CREATE SCHEMA IF NOT EXISTS ", quoted_schema));
    tx.exec0(absl::StrCat("CREATE TABLE IF NOT EXISTS ", table,
                          " (version bigint PRIMARY KEY,"
                          " name text NOT NULL,"
                          " checksum text NOT NULL,"
                          " applied_at timestamptz NOT NULL DEFAULT now())"));
    pqxx::result rows = tx.exec(absl::StrCat(
        "SELECT version, name, checksum FROM ", table, " ORDER BY version"));
    for (const pqxx::row& row : rows) {
      applied[row[0].as<int64_t>()] = {row[1].as<std::string>(),
                                       row[2].as<std::string>()};
    }
    tx.commit();
  } catch (const std::exception& e) {
    return StatusFromException(
        e, absl::StrCat("preparing migrations of schema ", schema));
  }

  const int64_t newest_applied = applied.empty() ? 0 : applied.rbegin()->first;
  for (const Migration& m : migrations) {
    auto it = applied.find(m.version);
    if (it != applied.end()) {
      if (it->second.checksum != m.checksum) {
        return absl::FailedPreconditionError(absl::StrCat(
            "migration ", m.FileName(), " of schema ", schema,
            " was changed after it was applied (recorded checksum ",
            it->second.checksum.substr(0, 12), "..., file now ",
            m.checksum.substr(0, 12),
            "...); add a new migration instead of editing an applied one"));
      }
      continue;
    }
    if (m.version < newest_applied) {
      return absl::FailedPreconditionError(absl::StrCat(
          "migration ", m.FileName(), " of schema ", schema,
          " is older than version ", newest_applied,
          " which is already applied; renumber it after the newest one"));
    }
  }

  for (const Migration& m : migrations) {
    if (applied.count(m.version) > 0) continue;
    try {
      pqxx::work tx(connection);
      tx.exec_params("SELECT pg_catalog.set_config('search_path', $1, true)",
                     absl::StrCat(tx.quote_name(schema), ", public"));
      tx.exec(m.sql);
      tx.exec_params0(absl::StrCat("INSERT INTO ", table,
                                   " (version, name, checksum)"
                                   " VALUES ($1, $2, $3)"),
                      m.version, m.name, m.checksum);
      tx.commit();
    } catch (const std::exception& e) {
      return StatusFromException(
          e, absl::StrCat("migration ", m.FileName(), " of schema ", schema,
                          " failed"));
    }
    if (report != nullptr) report->applied.push_back(m.FileName());
  }

  if (report != nullptr) {
    int64_t current = newest_applied;
    for (const Migration& m : migrations)
      current = std::max(current, m.version);
    report->current_version = current;
  }
  return absl::OkStatus();
}

}  // namespace

std::string Migration::FileName() const {
  return absl::StrFormat("%04d_%s.sql", version, name);
}

Migration MakeMigration(int64_t version, std::string name, std::string sql) {
  Migration m;
  m.version = version;
  m.name = std::move(name);
  m.checksum = Sha256Hex(sql);
  m.sql = std::move(sql);
  return m;
}

absl::Status ParseMigrationFileName(absl::string_view file_name,
                                    int64_t* version, std::string* name) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("migration file name \"", file_name,
                     "\" must look like NNNN_name.sql: ", why));
  };
  absl::string_view rest = file_name;
  if (!absl::ConsumeSuffix(&rest, ".sql")) return bad("no .sql suffix");
  const size_t underscore = rest.find('_');
  if (underscore == absl::string_view::npos || underscore == 0) {
    return bad("no version before '_'");
  }
  absl::string_view digits = rest.substr(0, underscore);
  absl::string_view label = rest.substr(underscore + 1);
  if (!std::all_of(digits.begin(), digits.end(),
                   [](char c) { return absl::ascii_isdigit(c); }) ||
      digits.size() > 9) {
    return bad("the version must be at most 9 digits");
  }
  int64_t parsed = 0;
  if (!absl::SimpleAtoi(digits, &parsed) || parsed <= 0) {
    return bad("the version must be a positive number");
  }
  if (label.empty() || !std::all_of(label.begin(), label.end(), [](char c) {
        return absl::ascii_isalnum(c) || c == '_' || c == '-';
      })) {
    return bad("the name must be letters, digits, '_' or '-'");
  }
  *version = parsed;
  *name = std::string(label);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Migration>> LoadMigrationsFromDir(
    const std::string& dir) {
  std::error_code error;
  std::filesystem::directory_iterator it(dir, error);
  if (error) {
    return absl::NotFoundError(absl::StrCat("cannot read migrations directory ",
                                            dir, ": ", error.message()));
  }
  std::vector<Migration> migrations;
  for (const auto& entry : it) {
    const std::string file_name = entry.path().filename().string();
    if (!absl::EndsWith(file_name, ".sql")) continue;
    int64_t version = 0;
    std::string name;
    RETURN_IF_ERROR(ParseMigrationFileName(file_name, &version, &name));
    ASSIGN_OR_RETURN(std::string sql, ReadFileToString(entry.path().string()));
    migrations.push_back(MakeMigration(version, name, std::move(sql)));
  }
  std::sort(migrations.begin(), migrations.end(),
            [](const Migration& a, const Migration& b) {
              return a.version < b.version;
            });
  for (size_t i = 1; i < migrations.size(); ++i) {
    if (migrations[i].version == migrations[i - 1].version) {
      return absl::InvalidArgumentError(absl::StrCat(
          "two migrations in ", dir, " have version ", migrations[i].version,
          ": ", migrations[i - 1].FileName(), " and ",
          migrations[i].FileName()));
    }
  }
  return migrations;
}

absl::Status ApplyMigrations(Pool& pool, absl::string_view schema_view,
                             const std::vector<Migration>& migrations,
                             MigrationReport* report) {
  const std::string schema(schema_view);
  if (!IsValidSchemaName(schema)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "schema must match [a-z_][a-z0-9_]* (at most 63 bytes); was \"", schema,
        "\""));
  }
  RETURN_IF_ERROR(CheckMigrationList(migrations));
  if (report != nullptr) *report = MigrationReport();
  return pool.WithConnection([&](pqxx::connection& connection) {
    try {
      pqxx::nontransaction lock(connection);
      lock.exec_params(absl::StrCat("SELECT pg_advisory_lock(",
                                    kAdvisoryLockClass, ", hashtext($1))"),
                       schema);
    } catch (const std::exception& e) {
      return StatusFromException(
          e, absl::StrCat("locking schema ", schema, " for migrations"));
    }
    absl::Status status = ApplyLocked(connection, schema, migrations, report);
    try {
      pqxx::nontransaction unlock(connection);
      unlock.exec_params(absl::StrCat("SELECT pg_advisory_unlock(",
                                      kAdvisoryLockClass, ", hashtext($1))"),
                         schema);
    } catch (const std::exception&) {
      // The session ended, and the server released the lock with it.
    }
    return status;
  });
}

}  // namespace hangar::db
