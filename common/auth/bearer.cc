#include "common/auth/bearer.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/auth/crypto.h"
#include "common/status/status_util.h"
#include "common/util/file.h"

namespace hangar::auth {
namespace {

// An admin token file holds one token and maybe a newline.
constexpr int64_t kMaxTokenFileBytes = 64 * 1024;

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

// RFC 6750 b64token / RFC 7235 token68: 1*( ALPHA / DIGIT / "-" / "." / "_"
// / "~" / "+" / "/" ) *"=".
bool IsToken68(absl::string_view token) {
  size_t i = 0;
  while (i < token.size() &&
         (absl::ascii_isalnum(token[i]) || token[i] == '-' || token[i] == '.' ||
          token[i] == '_' || token[i] == '~' || token[i] == '+' ||
          token[i] == '/')) {
    ++i;
  }
  if (i == 0) return false;
  while (i < token.size() && token[i] == '=') ++i;
  return i == token.size();
}

absl::Status ValidateAdminToken(absl::string_view token,
                                absl::string_view where) {
  if (token.size() < AdminToken::kMinLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the admin token", where, " must be at least ", AdminToken::kMinLength,
        " characters; was ", token.size()));
  }
  if (token.size() > kMaxBearerTokenLength || !IsToken68(token)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the admin token", where,
        " must be one line of A-Z a-z 0-9 - . _ ~ + / (then '=' padding), at "
        "most ",
        kMaxBearerTokenLength, " characters"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ParseBearerToken(absl::string_view header_value) {
  absl::string_view value = absl::StripAsciiWhitespace(header_value);
  if (value.empty()) {
    return absl::UnauthenticatedError(
        "missing credentials: send metadata \"authorization: Bearer "
        "<token>\"");
  }
  constexpr absl::string_view kScheme = "bearer";
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme) ||
      !IsBlank(value[kScheme.size()])) {
    return absl::UnauthenticatedError(
        "the authorization metadata must use the Bearer scheme: \"Bearer "
        "<token>\"");
  }
  value.remove_prefix(kScheme.size());
  while (!value.empty() && IsBlank(value.front())) value.remove_prefix(1);
  if (value.empty()) {
    return absl::UnauthenticatedError(
        "the authorization metadata has no token after \"Bearer\"");
  }
  if (value.size() > kMaxBearerTokenLength) {
    return absl::UnauthenticatedError(
        absl::StrCat("malformed bearer token: longer than ",
                     kMaxBearerTokenLength, " characters"));
  }
  if (!IsToken68(value)) {
    return absl::UnauthenticatedError(
        "malformed bearer token: only A-Z a-z 0-9 - . _ ~ + / and trailing "
        "'=' are allowed");
  }
  return std::string(value);
}

AdminToken::AdminToken(std::string token)
    : token_(std::move(token)), token_hash_(Sha256Hex(token_)) {}

AdminToken::~AdminToken() { OPENSSL_cleanse(token_.data(), token_.size()); }

absl::StatusOr<std::unique_ptr<AdminToken>> AdminToken::FromString(
    absl::string_view token) {
  token = absl::StripAsciiWhitespace(token);
  absl::Status valid = ValidateAdminToken(token, "");
  if (!valid.ok()) return valid;
  return std::unique_ptr<AdminToken>(new AdminToken(std::string(token)));
}

absl::StatusOr<std::unique_ptr<AdminToken>> AdminToken::FromFile(
    const std::string& path) {
  absl::StatusOr<std::string> read = ReadFileToString(path, kMaxTokenFileBytes);
  if (!read.ok()) return PrefixStatus("admin token file", read.status());
  std::string text = *std::move(read);
  absl::string_view token = absl::StripAsciiWhitespace(text);
  absl::Status valid = ValidateAdminToken(token, absl::StrCat(" in ", path));
  if (!valid.ok()) {
    OPENSSL_cleanse(text.data(), text.size());
    return valid;
  }
  auto admin = std::unique_ptr<AdminToken>(new AdminToken(std::string(token)));
  OPENSSL_cleanse(text.data(), text.size());
  return admin;
}

bool AdminToken::Matches(absl::string_view token) const {
  return ConstantTimeEquals(Sha256Hex(token), token_hash_);
}

absl::Status AdminToken::Authorize(absl::string_view header_value) const {
  absl::StatusOr<std::string> token = ParseBearerToken(header_value);
  if (!token.ok()) return token.status();
  const bool matches = Matches(*token);
  OPENSSL_cleanse(token->data(), token->size());
  if (!matches) {
    return absl::UnauthenticatedError("the admin token is not valid");
  }
  return absl::OkStatus();
}

std::string AdminToken::AuthorizationHeader() const {
  return absl::StrCat("Bearer ", token_);
}

}  // namespace hangar::auth
