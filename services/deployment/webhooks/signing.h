// Webhook signatures and secrets.
//
// Every delivery is signed with the deployment's secret so a receiver can
// tell it came from Hangar and was not altered or replayed:
//
//   X-Hangar-Timestamp: 1700000000                 (Unix seconds)
//   X-Hangar-Signature: sha256=<64 hex digits>     HMAC-SHA256(secret,
//                                                  "<timestamp>.<body>")
//
// The timestamp is inside the signed text, so a receiver that also refuses
// timestamps older than a few minutes cannot be fed an old delivery again.
// A receiver verifies with VerifyWebhookSignature (or the few lines of its
// own language shown in services/deployment/README.md).
//
// A secret is "whsec_" followed by 43 base62 digits, the same encoding of
// 32 CSPRNG bytes that API keys use (common/auth/api_key.h). The service
// keeps it to sign (it cannot be a hash), returns it once, never logs it.
#ifndef HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_SIGNING_H_
#define HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_SIGNING_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hangar::deployment::webhooks {

inline constexpr char kSecretPrefix[] = "whsec_";
// "whsec_" + 43 base62 digits.
inline constexpr size_t kSecretLength = 6 + 43;

inline constexpr char kSignatureHeader[] = "X-Hangar-Signature";
inline constexpr char kTimestampHeader[] = "X-Hangar-Timestamp";
inline constexpr char kDeliveryHeader[] = "X-Hangar-Delivery";
inline constexpr char kEventHeader[] = "X-Hangar-Event";

// A new secret from OpenSSL's CSPRNG. INTERNAL only if the generator fails.
absl::StatusOr<std::string> GenerateWebhookSecret();

// The 32-byte HMAC-SHA256 of `data` under `key` (RFC 2104).
std::string HmacSha256(absl::string_view key, absl::string_view data);

// "sha256=" + lower-case hex of HmacSha256(secret, "<timestamp>.<body>"):
// the X-Hangar-Signature header's value.
std::string SignWebhook(absl::string_view secret, int64_t timestamp,
                        absl::string_view body);

// Whether `signature_header` is the signature of (timestamp, body) under
// `secret`, compared in constant time. `timestamp` is the header's text.
bool VerifyWebhookSignature(absl::string_view secret,
                            absl::string_view timestamp, absl::string_view body,
                            absl::string_view signature_header);

}  // namespace hangar::deployment::webhooks

#endif  // HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_SIGNING_H_
