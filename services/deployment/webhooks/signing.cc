#include "services/deployment/webhooks/signing.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "common/auth/api_key.h"
#include "common/auth/crypto.h"

namespace hangar::deployment::webhooks {

absl::StatusOr<std::string> GenerateWebhookSecret() {
  absl::StatusOr<std::string> bytes =
      auth::RandomBytes(auth::kApiKeyRandomBytes);
  if (!bytes.ok()) return bytes.status();
  // The API key encoding: "hk_" + 43 base62 digits of the 32 bytes.
  absl::StatusOr<auth::ApiKey> encoded = auth::ApiKeyFromBytes(*bytes);
  OPENSSL_cleanse(bytes->data(), bytes->size());
  if (!encoded.ok()) return encoded.status();
  std::string secret =
      absl::StrCat(kSecretPrefix, absl::string_view(encoded->plaintext)
                                      .substr(sizeof(auth::kApiKeyPrefix) - 1));
  OPENSSL_cleanse(encoded->plaintext.data(), encoded->plaintext.size());
  return secret;
}

std::string HmacSha256(absl::string_view key, absl::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest,
       &length);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

std::string SignWebhook(absl::string_view secret, int64_t timestamp,
                        absl::string_view body) {
  return absl::StrCat(
      "sha256=",
      auth::HexEncode(HmacSha256(secret, absl::StrCat(timestamp, ".", body))));
}

bool VerifyWebhookSignature(absl::string_view secret,
                            absl::string_view timestamp, absl::string_view body,
                            absl::string_view signature_header) {
  const std::string expected = absl::StrCat(
      "sha256=",
      auth::HexEncode(HmacSha256(secret, absl::StrCat(timestamp, ".", body))));
  return auth::ConstantTimeEquals(expected, signature_header);
}

}  // namespace hangar::deployment::webhooks
