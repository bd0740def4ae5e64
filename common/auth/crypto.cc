#include "common/auth/crypto.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <climits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"

namespace hangar::auth {

std::string HexEncode(absl::string_view bytes) {
  return absl::BytesToHexString(bytes);
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

absl::StatusOr<std::string> RandomBytes(size_t count) {
  if (count > static_cast<size_t>(INT_MAX)) {
    return absl::InvalidArgumentError("too many random bytes requested");
  }
  std::string bytes(count, '\0');
  if (count > 0 && RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()),
                              static_cast<int>(count)) != 1) {
    return absl::InternalError("the system random number generator failed");
  }
  return bytes;
}

}  // namespace hangar::auth
