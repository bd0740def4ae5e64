// SHA-256, once for the whole tree: of a string, of a stream of pieces, of
// files. Used for checksums of weights and manifests, migration checksums,
// page tokens and token hashes (common/auth re-exports Sha256Hex).
//
//   std::string digest = Sha256Hex("abc");  // 64 lower-case hex digits
//
//   Sha256 hash;                            // incremental
//   hash.Update(header);
//   hash.Update(body);
//   std::string hex = hash.FinishHex();
//
//   ASSIGN_OR_RETURN(std::string sum, Sha256OfFiles({"a.safetensors",
//                                                    "b.safetensors"}));
//
// Over OpenSSL's EVP interface; no gRPC, so the engine may link it.
#ifndef HANGAR_COMMON_UTIL_SHA256_H_
#define HANGAR_COMMON_UTIL_SHA256_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hangar {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(absl::string_view data);
  // The 32-byte digest of everything passed to Update. Call once.
  std::string Finish();
  // The digest as 64 lower-case hex digits. Call once (or Finish, not both).
  std::string FinishHex();

 private:
  struct Context;
  std::unique_ptr<Context> context_;
};

// The 32-byte digest of `data`.
std::string Sha256Digest(absl::string_view data);

// SHA-256 of `data` as 64 lower-case hex digits.
std::string Sha256Hex(absl::string_view data);

// Hex SHA-256 of a file's bytes, read in 1 MiB pieces. The errors of
// OpenFile (common/util/file.h): NOT_FOUND or PERMISSION_DENIED naming the
// path; DATA_LOSS on a read error.
absl::StatusOr<std::string> Sha256OfFile(const std::string& path);

// Hex SHA-256 over the concatenation of the files' bytes, in order.
absl::StatusOr<std::string> Sha256OfFiles(
    const std::vector<std::string>& paths);

}  // namespace hangar

#endif  // HANGAR_COMMON_UTIL_SHA256_H_
