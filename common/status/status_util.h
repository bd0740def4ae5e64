// Small constructors for the two error shapes every Hangar component builds.
//
// Errors name the field or thing they are about, then the rule that failed:
// "spec.min_replicas: must be in [0, 64]; was -1". Two helpers keep that
// shape in one place:
//
//   return InvalidField("page_size", "must be in [0, 1000]; was -3");
//     // INVALID_ARGUMENT "page_size: must be in [0, 1000]; was -3"
//
//   return PrefixStatus(path, parsed.status());
//     // same code, "<path>: <message>"; an OK status stays OK
//
// PrefixStatus nests: a caller that validates "sequences[2]" can prefix the
// error its callee already prefixed with "prompt".
#ifndef HANGAR_COMMON_STATUS_STATUS_UTIL_H_
#define HANGAR_COMMON_STATUS_STATUS_UTIL_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace hangar {

// "<prefix>: <message>" with the code of `status`; OK stays OK. An empty
// prefix returns `status` unchanged.
absl::Status PrefixStatus(absl::string_view prefix, const absl::Status& status);

// INVALID_ARGUMENT "<field>: <rule>".
absl::Status InvalidField(absl::string_view field, absl::string_view rule);

}  // namespace hangar

#endif  // HANGAR_COMMON_STATUS_STATUS_UTIL_H_
