// Bearer credentials: parsing `authorization: Bearer <token>` metadata, and
// the admin token that guards the control-plane services.
//
// The gateway and every control-plane server read the `authorization`
// metadata of a call and hand its value to ParseBearerToken():
//
//   ASSIGN_OR_RETURN(std::string token, ParseBearerToken(header_value));
//
// The scheme is matched case-insensitively (RFC 7235), separated by spaces
// or tabs; the token must be RFC 6750 token68 characters
// (A-Z a-z 0-9 - . _ ~ + / and trailing '='), at most 4096 of them.
// Every failure is UNAUTHENTICATED with a message that never quotes the
// header value.
//
// AdminToken holds the operator's admin token, read from a file (one line;
// surrounding whitespace ignored). Authorize() checks a header value against
// it in constant time (both sides are hashed with SHA-256 first, so neither
// the content nor the length of the token leaks through timing):
//
//   ASSIGN_OR_RETURN(auto admin, AdminToken::FromFile(flags.admin_token_file));
//   RETURN_IF_ERROR(admin->Authorize(header_value));   // in the interceptor
//   context.AddMetadata("authorization", admin->AuthorizationHeader());
//                                                      // on internal calls
#ifndef HANGAR_COMMON_AUTH_BEARER_H_
#define HANGAR_COMMON_AUTH_BEARER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hangar::auth {

// Longest token ParseBearerToken() accepts.
inline constexpr size_t kMaxBearerTokenLength = 4096;

// The token of an `authorization` header value "Bearer <token>".
absl::StatusOr<std::string> ParseBearerToken(absl::string_view header_value);

class AdminToken {
 public:
  // Shortest admin token accepted.
  static constexpr size_t kMinLength = 16;

  // Reads the token from `path`. NOT_FOUND / PERMISSION_DENIED when the file
  // cannot be read, INVALID_ARGUMENT when the token is shorter than
  // kMinLength or has characters a bearer token cannot carry. Messages name
  // the file, never its content.
  static absl::StatusOr<std::unique_ptr<AdminToken>> FromFile(
      const std::string& path);
  // The same checks on a token held in memory (tests, environment).
  static absl::StatusOr<std::unique_ptr<AdminToken>> FromString(
      absl::string_view token);

  AdminToken(const AdminToken&) = delete;
  AdminToken& operator=(const AdminToken&) = delete;
  ~AdminToken();

  // OK when `header_value` is "Bearer <the admin token>"; UNAUTHENTICATED
  // otherwise.
  absl::Status Authorize(absl::string_view header_value) const;

  // Whether `token` is the admin token (constant time).
  bool Matches(absl::string_view token) const;

  // "Bearer <token>", for calls this process makes to other services.
  // Secret: attach it to metadata, never log it.
  std::string AuthorizationHeader() const;

 private:
  explicit AdminToken(std::string token);

  std::string token_;
  std::string token_hash_;  // Sha256Hex(token_).
};

}  // namespace hangar::auth

#endif  // HANGAR_COMMON_AUTH_BEARER_H_
