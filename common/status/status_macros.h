// Early-return helpers for absl::Status and absl::StatusOr<T>.
//
//   RETURN_IF_ERROR(store.Put(row));               // returns the error, if any
//   ASSIGN_OR_RETURN(auto model, store.Get(name)); // unwraps or returns
//
// They keep error paths one line long, so the happy path reads straight down
// (Abseil TotW #76: return Status and let the caller decide).
#ifndef HANGAR_COMMON_STATUS_STATUS_MACROS_H_
#define HANGAR_COMMON_STATUS_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define HANGAR_STATUS_CONCAT_INNER_(a, b) a##b
#define HANGAR_STATUS_CONCAT_(a, b) HANGAR_STATUS_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                        \
  do {                                               \
    ::absl::Status hangar_status_ = (expr);          \
    if (!hangar_status_.ok()) return hangar_status_; \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  HANGAR_ASSIGN_OR_RETURN_IMPL_(    \
      HANGAR_STATUS_CONCAT_(hangar_statusor_, __LINE__), lhs, expr)

#define HANGAR_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // HANGAR_COMMON_STATUS_STATUS_MACROS_H_
