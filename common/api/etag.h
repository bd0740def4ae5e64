// Etags for optimistic concurrency (AIP-154): a resource carries an etag
// derived from its row version; an update or delete may send the etag it
// read, and is refused with ABORTED when the resource changed since.
//
//   model.set_etag(MakeEtag(row.version));      // when reading
//   ...
//   RETURN_IF_ERROR(CheckEtag(request.etag(), MakeEtag(current.version)));
//
// The etag is made from a version number (incremented by every write of
// the row, typically in the same UPDATE ... SET version = version + 1), not
// from an update time: two writes within a clock tick, or a clock that
// steps back, would otherwise share an etag. Clients treat it as opaque.
#ifndef HANGAR_COMMON_API_ETAG_H_
#define HANGAR_COMMON_API_ETAG_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace hangar {

// The etag of a resource at row version `version`: its decimal digits
// ("7"), the form the catalog's models already carry.
std::string MakeEtag(int64_t version);

// OK when `given` is empty (the client does not ask for the check) and not
// `required`, or when it equals `current`.
// ABORTED "etag: stale (the resource changed since it was read); read it
// again" when it differs; INVALID_ARGUMENT "etag: required" when `required`
// and empty. `field` names the request field in the message.
absl::Status CheckEtag(absl::string_view given, absl::string_view current,
                       bool required = false, absl::string_view field = "etag");

}  // namespace hangar

#endif  // HANGAR_COMMON_API_ETAG_H_
