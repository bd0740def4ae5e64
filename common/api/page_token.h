// Paging for every List call (Google API style, AIP-158): a page size with a
// default and a maximum, and an opaque page token that carries where the last
// page ended, bound to the filters it was issued for.
//
//   ASSIGN_OR_RETURN(int limit, ResolvePageSize(request.page_size()));
//   std::string filters = FilterFingerprint(request);
//   ASSIGN_OR_RETURN(std::string after,
//                    DecodePageToken(request.page_token(), filters));
//   ... store->List(filter, after, limit + 1) ...   // one extra: more pages?
//   if (more) response.set_next_page_token(EncodePageToken(last_name,
//   filters));
//
// The token is URL-safe base64 of a version byte, a hash of the filter
// fingerprint, the last key and a checksum. It is tamper-evident, not secret:
// an edited or truncated token is refused ("page_token: malformed"), and a
// token replayed with other filters is refused ("page_token: was issued for
// different filters") instead of silently skipping or repeating rows. A
// forged token can only name a key to start after, which reveals nothing a
// List call does not. Tokens do not expire and survive server restarts (no
// per-process secret), so a client may resume paging against any replica.
#ifndef HANGAR_COMMON_API_PAGE_TOKEN_H_
#define HANGAR_COMMON_API_PAGE_TOKEN_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace hangar {

// 0 means `default_size`; otherwise `page_size` must be in [0, max_size]:
// INVALID_ARGUMENT "page_size: must be in [0, 1000]; was -3".
absl::StatusOr<int> ResolvePageSize(int page_size, int default_size = 50,
                                    int max_size = 1000);

// A token that continues after `last_key`, valid only with the same
// `filter_fingerprint`.
std::string EncodePageToken(absl::string_view last_key,
                            absl::string_view filter_fingerprint);

// The last key of the previous page ("" for an empty token: the first page).
// INVALID_ARGUMENT "page_token: malformed" or
// "page_token: was issued for different filters".
absl::StatusOr<std::string> DecodePageToken(
    absl::string_view token, absl::string_view filter_fingerprint);

// A fingerprint of a List request's filters: 16 hex digits of the SHA-256
// of the request serialized deterministically with its `page_size` and
// `page_token` fields cleared (when it has fields of those names), so every
// other field (filters, ordering) binds the token.
std::string FilterFingerprint(const google::protobuf::Message& request);

}  // namespace hangar

#endif  // HANGAR_COMMON_API_PAGE_TOKEN_H_
