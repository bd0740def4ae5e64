#include "common/auth/secret_box.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/auth/crypto.h"

namespace hangar::auth {
namespace {

constexpr char kVersionPrefix[] = "v1:";
constexpr int kNonceBytes = 12;
constexpr int kTagBytes = 16;

struct CipherContextDeleter {
  void operator()(EVP_CIPHER_CTX* context) const {
    EVP_CIPHER_CTX_free(context);
  }
};
using CipherContext = std::unique_ptr<EVP_CIPHER_CTX, CipherContextDeleter>;

absl::Status OpenError() {
  return absl::DataLossError(
      "the sealed secret cannot be opened: it was altered, truncated, or "
      "sealed under another key or for another record");
}

std::string ErrnoText() { return std::strerror(errno); }

// Reads the whole of a small file; errno is kept on failure.
bool ReadSmallFile(int fd, std::string* out) {
  char buffer[256];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) return true;
    out->append(buffer, static_cast<size_t>(n));
    if (out->size() > 4096) {
      errno = EFBIG;
      return false;
    }
  }
}

bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Creates `path` holding a new key, atomically: the key is written to a
// private temporary file, which is then linked into place. If another process
// won the race, its file stays and is used.
absl::Status CreateKeyFile(const std::string& path) {
  absl::StatusOr<std::string> key = RandomBytes(SecretBox::kKeyBytes);
  if (!key.ok()) return key.status();
  std::string text = absl::StrCat(HexEncode(*key), "\n");
  OPENSSL_cleanse(key->data(), key->size());
  std::string temp = absl::StrCat(path, ".tmp.XXXXXX");
  int fd = ::mkostemp(temp.data(), O_CLOEXEC);  // Mode 0600.
  if (fd < 0) {
    OPENSSL_cleanse(text.data(), text.size());
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create the key file ", path, ": ", ErrnoText()));
  }
  const bool written = WriteAll(fd, text) && ::fsync(fd) == 0;
  OPENSSL_cleanse(text.data(), text.size());
  ::close(fd);
  if (!written) {
    ::unlink(temp.c_str());
    return absl::InternalError(
        absl::StrCat("cannot write the key file ", path, ": ", ErrnoText()));
  }
  if (::link(temp.c_str(), path.c_str()) != 0 && errno != EEXIST) {
    const std::string error = ErrnoText();
    ::unlink(temp.c_str());
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create the key file ", path, ": ", error));
  }
  ::unlink(temp.c_str());
  return absl::OkStatus();
}

}  // namespace

SecretBox::SecretBox(absl::string_view key) {
  std::memcpy(key_, key.data(), kKeyBytes);
}

SecretBox::~SecretBox() { OPENSSL_cleanse(key_, sizeof(key_)); }

absl::StatusOr<std::unique_ptr<SecretBox>> SecretBox::FromKey(
    absl::string_view key) {
  if (key.size() != kKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a SecretBox key must be ", kKeyBytes, " bytes; was ", key.size()));
  }
  return std::unique_ptr<SecretBox>(new SecretBox(key));
}

absl::StatusOr<std::unique_ptr<SecretBox>> SecretBox::FromKeyFile(
    const std::string& path, bool create_if_missing) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && create_if_missing) {
    absl::Status created = CreateKeyFile(path);
    if (!created.ok()) return created;
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  }
  if (fd < 0) {
    const std::string message =
        absl::StrCat("cannot read the key file ", path, ": ", ErrnoText());
    if (errno == ENOENT) return absl::NotFoundError(message);
    return absl::PermissionDeniedError(message);
  }
  struct stat info;
  if (::fstat(fd, &info) != 0) {
    const std::string error = ErrnoText();
    ::close(fd);
    return absl::InternalError(
        absl::StrCat("cannot stat the key file ", path, ": ", error));
  }
  if ((info.st_mode & 077) != 0) {
    ::close(fd);
    return absl::FailedPreconditionError(absl::StrFormat(
        "the key file %s must be readable by its owner only (mode %04o); run "
        "chmod 600 on it",
        path, info.st_mode & 07777));
  }
  std::string text;
  const bool read = ReadSmallFile(fd, &text);
  ::close(fd);
  if (!read) {
    return absl::InternalError(
        absl::StrCat("cannot read the key file ", path, ": ", ErrnoText()));
  }
  absl::string_view hex = absl::StripAsciiWhitespace(text);
  std::string key;
  const bool valid = hex.size() == 2 * kKeyBytes &&
                     std::all_of(hex.begin(), hex.end(), [](char c) {
                       return absl::ascii_isxdigit(c);
                     });
  if (valid) key = absl::HexStringToBytes(hex);
  OPENSSL_cleanse(text.data(), text.size());
  if (!valid) {
    return absl::FailedPreconditionError(
        absl::StrCat("the key file ", path, " must hold ", 2 * kKeyBytes,
                     " hex digits (a ", kKeyBytes, "-byte key)"));
  }
  auto box = std::unique_ptr<SecretBox>(new SecretBox(key));
  OPENSSL_cleanse(key.data(), key.size());
  return box;
}

absl::StatusOr<std::string> SecretBox::Seal(
    absl::string_view plaintext, absl::string_view associated_data) const {
  absl::StatusOr<std::string> nonce = RandomBytes(kNonceBytes);
  if (!nonce.ok()) return nonce.status();
  std::string blob = *nonce;
  blob.resize(kNonceBytes + plaintext.size() + kTagBytes);
  auto* out = reinterpret_cast<unsigned char*>(blob.data());

  CipherContext context(EVP_CIPHER_CTX_new());
  int length = 0;
  bool ok =
      context != nullptr &&
      EVP_EncryptInit_ex(context.get(), EVP_aes_256_gcm(), nullptr, nullptr,
                         nullptr) == 1 &&
      EVP_CIPHER_CTX_ctrl(context.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes,
                          nullptr) == 1 &&
      EVP_EncryptInit_ex(context.get(), nullptr, nullptr, key_, out) == 1 &&
      (associated_data.empty() ||
       EVP_EncryptUpdate(
           context.get(), nullptr, &length,
           reinterpret_cast<const unsigned char*>(associated_data.data()),
           static_cast<int>(associated_data.size())) == 1) &&
      (plaintext.empty() ||
       EVP_EncryptUpdate(
           context.get(), out + kNonceBytes, &length,
           reinterpret_cast<const unsigned char*>(plaintext.data()),
           static_cast<int>(plaintext.size())) == 1) &&
      EVP_EncryptFinal_ex(context.get(), out + kNonceBytes + plaintext.size(),
                          &length) == 1 &&
      EVP_CIPHER_CTX_ctrl(context.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes,
                          out + kNonceBytes + plaintext.size()) == 1;
  if (!ok) {
    OPENSSL_cleanse(blob.data(), blob.size());
    return absl::InternalError("sealing a secret failed in OpenSSL");
  }
  return absl::StrCat(kVersionPrefix, absl::Base64Escape(blob));
}

absl::StatusOr<std::string> SecretBox::Open(
    absl::string_view sealed, absl::string_view associated_data) const {
  if (!absl::ConsumePrefix(&sealed, kVersionPrefix)) return OpenError();
  std::string blob;
  if (!absl::Base64Unescape(sealed, &blob) ||
      blob.size() < static_cast<size_t>(kNonceBytes + kTagBytes)) {
    return OpenError();
  }
  const size_t text_size = blob.size() - kNonceBytes - kTagBytes;
  auto* in = reinterpret_cast<unsigned char*>(blob.data());
  std::string plaintext(text_size, '\0');
  auto* out = reinterpret_cast<unsigned char*>(plaintext.data());

  CipherContext context(EVP_CIPHER_CTX_new());
  int length = 0;
  bool ok =
      context != nullptr &&
      EVP_DecryptInit_ex(context.get(), EVP_aes_256_gcm(), nullptr, nullptr,
                         nullptr) == 1 &&
      EVP_CIPHER_CTX_ctrl(context.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes,
                          nullptr) == 1 &&
      EVP_DecryptInit_ex(context.get(), nullptr, nullptr, key_, in) == 1 &&
      (associated_data.empty() ||
       EVP_DecryptUpdate(
           context.get(), nullptr, &length,
           reinterpret_cast<const unsigned char*>(associated_data.data()),
           static_cast<int>(associated_data.size())) == 1) &&
      (text_size == 0 ||
       EVP_DecryptUpdate(context.get(), out, &length, in + kNonceBytes,
                         static_cast<int>(text_size)) == 1) &&
      EVP_CIPHER_CTX_ctrl(context.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes,
                          in + kNonceBytes + text_size) == 1 &&
      EVP_DecryptFinal_ex(context.get(), out + text_size, &length) == 1;
  if (!ok) {
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    return OpenError();
  }
  return plaintext;
}

}  // namespace hangar::auth
