// How PostgreSQL failures become absl::Status values.
//
// Every error that leaves common/db is an absl::Status with a canonical code,
// chosen from the SQLSTATE the server reported (or the libpqxx exception type
// when there is none):
//
//   23505 unique_violation           -> ALREADY_EXISTS
//   23503 foreign_key_violation      -> FAILED_PRECONDITION
//   23502/23514/22xxx bad data       -> INVALID_ARGUMENT
//   40001/40P01 serialization, deadlock -> ABORTED (after the pool's retries)
//   08xxx, 57P0x, broken connection  -> UNAVAILABLE
//   57014 query_canceled             -> DEADLINE_EXCEEDED
//   53xxx insufficient resources     -> RESOURCE_EXHAUSTED
//   anything else                    -> INTERNAL
//
// Messages carry the server's primary message and the SQLSTATE
// ("duplicate key value violates unique constraint \"models_name_key\"
// [SQLSTATE 23505]"), never the query text, its parameters or the
// connection's password.
#ifndef HANGAR_COMMON_DB_ERRORS_H_
#define HANGAR_COMMON_DB_ERRORS_H_

#include <exception>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace hangar::db {

// The canonical code for a five-character SQLSTATE ("" maps to INTERNAL).
absl::StatusCode CodeForSqlState(absl::string_view sqlstate);

// True for SQLSTATEs after which running the whole transaction again may
// succeed: 40001 (serialization_failure) and 40P01 (deadlock_detected).
bool IsRetryableSqlState(absl::string_view sqlstate);

// True for SQLSTATEs that mean the connection is gone or unusable: class 08
// and 57P01..57P03 (the server is shutting down or starting up).
bool IsConnectionSqlState(absl::string_view sqlstate);

// Converts an exception thrown by libpqxx (or any std::exception) into a
// status. `context`, when not empty, prefixes the message
// ("migration 0002_add_index.sql: ...").
absl::Status StatusFromException(const std::exception& e,
                                 absl::string_view context = "");

// "host:port" of a libpq connection string (key=value or postgresql:// URI),
// with libpq's defaults (PGHOST/PGPORT, the default socket directory, 5432)
// for what it leaves out. Never includes the user or password. Returns
// "<malformed conninfo>" when the string does not parse.
std::string DescribeEndpoint(const std::string& conninfo);

// The database name a connection string names, or "" when it names none.
std::string DatabaseName(const std::string& conninfo);

}  // namespace hangar::db

#endif  // HANGAR_COMMON_DB_ERRORS_H_
