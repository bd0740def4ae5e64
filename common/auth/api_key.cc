#include "common/auth/api_key.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/auth/crypto.h"

namespace hangar::auth {
namespace {

constexpr char kBase62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

// The 256-bit big-endian number in `bytes` as exactly kApiKeyDigits base62
// digits (most significant first, zero-padded).
std::string Base62(absl::string_view bytes) {
  std::array<uint8_t, kApiKeyRandomBytes> number;
  std::copy(bytes.begin(), bytes.end(), number.begin());
  std::string digits(kApiKeyDigits, '0');
  for (size_t i = kApiKeyDigits; i-- > 0;) {
    // number /= 62, keeping the remainder.
    uint32_t remainder = 0;
    for (uint8_t& byte : number) {
      const uint32_t value = (remainder << 8) | byte;
      byte = static_cast<uint8_t>(value / 62);
      remainder = value % 62;
    }
    digits[i] = kBase62[remainder];
  }
  OPENSSL_cleanse(number.data(), number.size());
  return digits;
}

}  // namespace

absl::StatusOr<ApiKey> ApiKeyFromBytes(absl::string_view random_bytes) {
  if (random_bytes.size() != kApiKeyRandomBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("an API key needs ", kApiKeyRandomBytes,
                     " random bytes; got ", random_bytes.size()));
  }
  ApiKey key;
  key.plaintext = absl::StrCat(kApiKeyPrefix, Base62(random_bytes));
  key.display_prefix = ApiKeyDisplayPrefix(key.plaintext);
  key.hash = HashApiKey(key.plaintext);
  return key;
}

absl::StatusOr<ApiKey> GenerateApiKey() {
  absl::StatusOr<std::string> bytes = RandomBytes(kApiKeyRandomBytes);
  if (!bytes.ok()) return bytes.status();
  absl::StatusOr<ApiKey> key = ApiKeyFromBytes(*bytes);
  OPENSSL_cleanse(bytes->data(), bytes->size());
  return key;
}

absl::Status ValidateApiKeyFormat(absl::string_view key) {
  if (!absl::StartsWith(key, kApiKeyPrefix)) {
    return absl::UnauthenticatedError(
        "malformed API key: it must start with \"hk_\"");
  }
  if (key.size() != kApiKeyLength) {
    return absl::UnauthenticatedError(
        absl::StrCat("malformed API key: it must be ", kApiKeyLength,
                     " characters long; was ", key.size()));
  }
  const absl::string_view digits = key.substr(3);
  if (!std::all_of(digits.begin(), digits.end(),
                   [](char c) { return absl::ascii_isalnum(c); })) {
    return absl::UnauthenticatedError(
        "malformed API key: after \"hk_\" only 0-9, A-Z and a-z may follow");
  }
  return absl::OkStatus();
}

std::string HashApiKey(absl::string_view key) { return Sha256Hex(key); }

std::string ApiKeyDisplayPrefix(absl::string_view key) {
  return std::string(key.substr(0, kApiKeyDisplayPrefixLength));
}

bool ApiKeyMatchesHash(absl::string_view key, absl::string_view stored_hash) {
  return ConstantTimeEquals(HashApiKey(key), stored_hash);
}

}  // namespace hangar::auth
