// Validation of every string a caller hands the catalog, before anything is
// read from the network or written to the database.
//
// Each check returns OK or INVALID_ARGUMENT naming the request field (as the
// caller spelled it in the proto, e.g. "hugging_face.repo") and the rule, with
// the offending value quoted, escaped and shortened:
//
//   hugging_face.repo: must be "owner/name" with each part 1 to 96 characters
//   of [A-Za-z0-9._-], not starting with '.' and without ".."; was "a/b/c"
//
// Bytes outside the rules (NUL, '/', '\\', control characters, non-ASCII in
// identifiers) are refused, so a name can never become a path outside the
// model store or a URL other than the one intended. Free text (descriptions,
// display names) may hold any UTF-8 except NUL and other control characters
// but newline and tab; SQL metacharacters are fine (every query is
// parameterized).
#ifndef HANGAR_SERVICES_CATALOG_MODEL_VALIDATION_H_
#define HANGAR_SERVICES_CATALOG_MODEL_VALIDATION_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hangar::catalog {

inline constexpr int kMaxModelNameLength = 200;
inline constexpr int kMaxRepoPartLength = 96;
inline constexpr int kMaxRevisionLength = 200;
inline constexpr int kMaxConnectionNameLength = 63;
inline constexpr int kMaxTokenLength = 1024;
inline constexpr int kMaxDescriptionLength = 4096;
inline constexpr int kMaxDisplayNameLength = 200;
inline constexpr int kMaxTags = 32;
inline constexpr int kMaxTagLength = 64;
inline constexpr int kMaxQueryLength = 200;

// A catalog model name: "owner/name", each part like a repo part, at most
// kMaxModelNameLength characters in all.
absl::Status ValidateModelName(absl::string_view field, absl::string_view name);

// A Hugging Face repo id: "owner/name", each part 1 to 96 characters of
// [A-Za-z0-9._-], not starting with '.' and without "..".
absl::Status ValidateRepoId(absl::string_view field, absl::string_view repo);

// A branch, tag or commit: 1 to 200 characters of [A-Za-z0-9._/-], not
// starting with '.', '/' or '-', without "..", "//" or a trailing '/'.
absl::Status ValidateRevision(absl::string_view field,
                              absl::string_view revision);

// True for a full 40-hex commit id.
bool IsCommitId(absl::string_view revision);

// A connection name: 1 to 63 characters of [a-z0-9-], starting with a letter.
absl::Status ValidateConnectionName(absl::string_view field,
                                    absl::string_view name);

// A Hugging Face token: 1 to 1024 printable ASCII characters, no spaces.
// The message never echoes the token.
absl::Status ValidateToken(absl::string_view field, absl::string_view token);

// Free text of at most `max_length` bytes: no NUL, no control characters but
// '\n' and '\t'.
absl::Status ValidateText(absl::string_view field, absl::string_view text,
                          int max_length);

// At most kMaxTags tags, each 1 to 64 characters of [A-Za-z0-9._:+-],
// no duplicates.
absl::Status ValidateTags(absl::string_view field,
                          const std::vector<std::string>& tags);

// Resolves `path` (absolute, or relative to `root`) to a canonical absolute
// path that exists and lies inside `root` (symlinks resolved).
// FAILED_PRECONDITION when `root` is empty (local import disabled),
// INVALID_ARGUMENT for a path outside the root or with NUL bytes, NOT_FOUND
// when it does not exist.
absl::StatusOr<std::string> ResolvePathUnderRoot(absl::string_view field,
                                                 absl::string_view root,
                                                 absl::string_view path);

// `value` quoted for an error message: C-escaped, at most 64 characters.
std::string QuoteForMessage(absl::string_view value);

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_MODEL_VALIDATION_H_
