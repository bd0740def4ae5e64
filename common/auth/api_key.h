// API keys for the inference gateway (DESIGN.md §4 "API keys").
//
// A key is "hk_" followed by 32 random bytes written in base62 (0-9, A-Z,
// a-z) as exactly 43 digits, 46 characters in all:
//
//   hk_4Qx0Tz...   (shown to the user once, never stored)
//
// The deployment service stores only the key's SHA-256 (hex) and a
// non-secret display prefix ("hk_4Qx0Tzab", the first 8 digits), so a
// database leak reveals no usable key and a user can still tell keys apart:
//
//   ASSIGN_OR_RETURN(ApiKey key, GenerateApiKey());
//   store.Insert(deployment, key.display_prefix, key.hash);
//   return key.plaintext;  // once, in the CreateApiKey response
//
// The gateway validates the presented key's shape, hashes it and looks the
// hash up; comparing hashes uses ConstantTimeEquals.
#ifndef HANGAR_COMMON_AUTH_API_KEY_H_
#define HANGAR_COMMON_AUTH_API_KEY_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hangar::auth {

// "hk_".
inline constexpr char kApiKeyPrefix[] = "hk_";
// Random bytes in a key.
inline constexpr size_t kApiKeyRandomBytes = 32;
// Base62 digits that hold 256 bits: ceil(256 / log2(62)).
inline constexpr size_t kApiKeyDigits = 43;
// Characters in a whole key.
inline constexpr size_t kApiKeyLength = 3 + kApiKeyDigits;
// Characters of the display prefix: "hk_" and the first 8 digits.
inline constexpr size_t kApiKeyDisplayPrefixLength = 3 + 8;

struct ApiKey {
  std::string plaintext;       // The key; show once, never store or log.
  std::string display_prefix;  // Not secret: "hk_" + 8 digits.
  std::string hash;            // Sha256Hex(plaintext); store this.
};

// A new key from OpenSSL's CSPRNG. INTERNAL only if the generator fails.
absl::StatusOr<ApiKey> GenerateApiKey();

// The key that `random_bytes` (exactly 32 bytes) encodes; GenerateApiKey()
// with chosen randomness, for tests.
absl::StatusOr<ApiKey> ApiKeyFromBytes(absl::string_view random_bytes);

// OK when `key` has the shape of an API key (prefix, length, alphabet);
// UNAUTHENTICATED otherwise, with a message that never quotes the key.
absl::Status ValidateApiKeyFormat(absl::string_view key);

// Sha256Hex(key): what the store keeps and the gateway looks up.
std::string HashApiKey(absl::string_view key);

// "hk_" + the first 8 digits (shorter input is returned up to that length).
std::string ApiKeyDisplayPrefix(absl::string_view key);

// Whether `key` hashes to `stored_hash`, compared in constant time.
bool ApiKeyMatchesHash(absl::string_view key, absl::string_view stored_hash);

}  // namespace hangar::auth

#endif  // HANGAR_COMMON_AUTH_API_KEY_H_
