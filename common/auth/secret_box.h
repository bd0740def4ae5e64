// SecretBox: authenticated encryption of secrets the services must store
// and later use, such as a Hugging Face connection's access token.
//
// AES-256-GCM under one 32-byte key per installation, kept in a key file
// readable by its owner only (mode 0600; a file readable by group or others
// is refused). FromKeyFile() creates the file with a fresh random key when
// it does not exist, atomically, so several processes starting at once agree
// on one key.
//
//   ASSIGN_OR_RETURN(auto box, SecretBox::FromKeyFile(flags.secret_key_file));
//   ASSIGN_OR_RETURN(std::string sealed, box->Seal(token, connection_name));
//   // store `sealed` (ASCII text) in a TEXT column
//   ASSIGN_OR_RETURN(std::string token, box->Open(sealed, connection_name));
//
// Each Seal() draws a new random 96-bit nonce, so sealing the same secret
// twice gives different text. `associated_data` (e.g. the row's name) is
// authenticated but not encrypted: a sealed value copied to another row
// fails to open. Open() returns DATA_LOSS for anything altered, truncated,
// sealed under another key or with other associated data. Neither the
// secret nor the key ever appears in a status message.
//
// Sealed format: "v1:" + base64(nonce[12] || ciphertext || tag[16]).
// Thread-safe (const methods, no shared state).
#ifndef HANGAR_COMMON_AUTH_SECRET_BOX_H_
#define HANGAR_COMMON_AUTH_SECRET_BOX_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hangar::auth {

class SecretBox {
 public:
  // Bytes in a key.
  static constexpr size_t kKeyBytes = 32;

  // Reads the key (64 hex digits and an optional newline) from `path`,
  // creating the file with a new random key and mode 0600 first when it does
  // not exist and `create_if_missing`. FAILED_PRECONDITION when the file is
  // readable by group or others or does not hold a key; NOT_FOUND when it is
  // missing and may not be created.
  static absl::StatusOr<std::unique_ptr<SecretBox>> FromKeyFile(
      const std::string& path, bool create_if_missing = true);

  // A box over `key` (exactly kKeyBytes raw bytes).
  static absl::StatusOr<std::unique_ptr<SecretBox>> FromKey(
      absl::string_view key);

  SecretBox(const SecretBox&) = delete;
  SecretBox& operator=(const SecretBox&) = delete;
  ~SecretBox();

  // Encrypts and authenticates `plaintext` together with `associated_data`.
  absl::StatusOr<std::string> Seal(
      absl::string_view plaintext,
      absl::string_view associated_data = "") const;

  // Checks and decrypts what Seal() produced with the same associated data.
  absl::StatusOr<std::string> Open(
      absl::string_view sealed, absl::string_view associated_data = "") const;

 private:
  explicit SecretBox(absl::string_view key);

  unsigned char key_[kKeyBytes];
};

}  // namespace hangar::auth

#endif  // HANGAR_COMMON_AUTH_SECRET_BOX_H_
