// Small cryptographic primitives over OpenSSL that the auth code shares.
//
// Nothing here logs or puts its inputs into error messages: callers pass
// secrets (API keys, tokens) through these functions.
#ifndef HANGAR_COMMON_AUTH_CRYPTO_H_
#define HANGAR_COMMON_AUTH_CRYPTO_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/util/sha256.h"

namespace hangar::auth {

// SHA-256 of `data` as 64 lower-case hex digits (common/util/sha256.h).
using ::hangar::Sha256Hex;

// Whether `a` and `b` are equal, in time that depends only on their lengths
// (never on where they differ). Different lengths compare unequal; compare
// fixed-length values (hashes) where the length itself is secret.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// `count` bytes from OpenSSL's CSPRNG (RAND_bytes). INTERNAL if it fails.
absl::StatusOr<std::string> RandomBytes(size_t count);

// Lower-case hex of `bytes` (absl::BytesToHexString).
std::string HexEncode(absl::string_view bytes);

}  // namespace hangar::auth

#endif  // HANGAR_COMMON_AUTH_CRYPTO_H_
