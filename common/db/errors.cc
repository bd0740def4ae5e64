#include "common/db/errors.h"

#include <libpq-fe.h>

#include <cstdlib>
#include <pqxx/except>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace hangar::db {
namespace {

// libpq's messages look like "ERROR:  text\nDETAIL:  ...\n". Keep the primary
// message only: DETAIL lines may quote row values.
std::string PrimaryMessage(absl::string_view what) {
  std::vector<absl::string_view> lines =
      absl::StrSplit(what, '\n', absl::SkipWhitespace());
  if (lines.empty()) return "unknown database error";
  absl::string_view first = absl::StripAsciiWhitespace(lines[0]);
  for (absl::string_view prefix : {"ERROR:", "FATAL:", "PANIC:"}) {
    if (absl::ConsumePrefix(&first, prefix)) {
      first = absl::StripLeadingAsciiWhitespace(first);
      break;
    }
  }
  return std::string(first);
}

// Connection failures come as several lines ("connection to server at ...
// failed: Connection refused\n\tIs the server running ...?"); join them.
std::string OneLine(absl::string_view what) {
  std::vector<std::string> parts;
  for (absl::string_view line : absl::StrSplit(what, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty()) parts.emplace_back(line);
  }
  if (parts.empty()) return "connection failed";
  return absl::StrJoin(parts, " ");
}

std::string WithContext(absl::string_view context, absl::string_view message) {
  if (context.empty()) return std::string(message);
  return absl::StrCat(context, ": ", message);
}

struct ParsedConnInfo {
  bool ok = false;
  std::string host;
  std::string hostaddr;
  std::string port;
  std::string dbname;
};

ParsedConnInfo Parse(const std::string& conninfo) {
  ParsedConnInfo parsed;
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error);
  if (options == nullptr) {
    // The message may quote pieces of the string (and so a password).
    if (error != nullptr) PQfreemem(error);
    return parsed;
  }
  parsed.ok = true;
  for (PQconninfoOption* option = options; option->keyword != nullptr;
       ++option) {
    if (option->val == nullptr) continue;
    absl::string_view keyword = option->keyword;
    if (keyword == "host") parsed.host = option->val;
    if (keyword == "hostaddr") parsed.hostaddr = option->val;
    if (keyword == "port") parsed.port = option->val;
    if (keyword == "dbname") parsed.dbname = option->val;
  }
  PQconninfoFree(options);
  return parsed;
}

std::string EnvOr(const char* name, absl::string_view fallback) {
  const char* value = std::getenv(name);
  if (value != nullptr && *value != '\0') return value;
  return std::string(fallback);
}

}  // namespace

absl::StatusCode CodeForSqlState(absl::string_view sqlstate) {
  if (sqlstate == "23505") return absl::StatusCode::kAlreadyExists;
  if (sqlstate == "23503" || sqlstate == "23001") {
    return absl::StatusCode::kFailedPrecondition;
  }
  if (sqlstate == "23502" || sqlstate == "23514" || sqlstate == "23P01" ||
      absl::StartsWith(sqlstate, "22")) {
    return absl::StatusCode::kInvalidArgument;
  }
  if (IsRetryableSqlState(sqlstate) || absl::StartsWith(sqlstate, "40")) {
    return absl::StatusCode::kAborted;
  }
  if (IsConnectionSqlState(sqlstate)) return absl::StatusCode::kUnavailable;
  if (sqlstate == "57014") return absl::StatusCode::kDeadlineExceeded;
  if (sqlstate == "55P03") return absl::StatusCode::kAborted;  // lock timeout
  if (absl::StartsWith(sqlstate, "53")) {
    return absl::StatusCode::kResourceExhausted;
  }
  if (absl::StartsWith(sqlstate, "42501")) {
    return absl::StatusCode::kPermissionDenied;
  }
  return absl::StatusCode::kInternal;
}

bool IsRetryableSqlState(absl::string_view sqlstate) {
  return sqlstate == "40001" || sqlstate == "40P01";
}

bool IsConnectionSqlState(absl::string_view sqlstate) {
  return absl::StartsWith(sqlstate, "08") || sqlstate == "57P01" ||
         sqlstate == "57P02" || sqlstate == "57P03";
}

absl::Status StatusFromException(const std::exception& e,
                                 absl::string_view context) {
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    const std::string& state = sql->sqlstate();
    std::string message = PrimaryMessage(sql->what());
    if (!state.empty()) absl::StrAppend(&message, " [SQLSTATE ", state, "]");
    return absl::Status(CodeForSqlState(state), WithContext(context, message));
  }
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    return absl::UnavailableError(WithContext(
        context,
        absl::StrCat("connection lost while committing; the transaction may "
                     "or may not have been applied: ",
                     OneLine(e.what()))));
  }
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr ||
      dynamic_cast<const pqxx::statement_completion_unknown*>(&e) != nullptr) {
    return absl::UnavailableError(WithContext(context, OneLine(e.what())));
  }
  // libpqxx 6 reports these without their SQLSTATE; put it back.
  if (dynamic_cast<const pqxx::serialization_failure*>(&e) != nullptr) {
    return absl::AbortedError(WithContext(
        context, absl::StrCat(PrimaryMessage(e.what()), " [SQLSTATE 40001]")));
  }
  if (dynamic_cast<const pqxx::deadlock_detected*>(&e) != nullptr) {
    return absl::AbortedError(WithContext(
        context, absl::StrCat(PrimaryMessage(e.what()), " [SQLSTATE 40P01]")));
  }
  if (dynamic_cast<const pqxx::transaction_rollback*>(&e) != nullptr) {
    return absl::AbortedError(WithContext(context, PrimaryMessage(e.what())));
  }
  if (dynamic_cast<const pqxx::conversion_error*>(&e) != nullptr ||
      dynamic_cast<const pqxx::unexpected_rows*>(&e) != nullptr ||
      dynamic_cast<const pqxx::usage_error*>(&e) != nullptr ||
      dynamic_cast<const pqxx::argument_error*>(&e) != nullptr) {
    return absl::InternalError(WithContext(
        context, absl::StrCat("database client error: ", OneLine(e.what()))));
  }
  return absl::InternalError(WithContext(context, OneLine(e.what())));
}

std::string DescribeEndpoint(const std::string& conninfo) {
  ParsedConnInfo parsed = Parse(conninfo);
  if (!parsed.ok) return "<malformed conninfo>";
  std::string host = parsed.host;
  if (host.empty()) host = parsed.hostaddr;
  if (host.empty()) host = EnvOr("PGHOST", "/var/run/postgresql");
  std::string port = parsed.port;
  if (port.empty()) port = EnvOr("PGPORT", "5432");
  return absl::StrCat(host, ":", port);
}

std::string DatabaseName(const std::string& conninfo) {
  ParsedConnInfo parsed = Parse(conninfo);
  if (!parsed.dbname.empty()) return parsed.dbname;
  return "";
}

}  // namespace hangar::db
