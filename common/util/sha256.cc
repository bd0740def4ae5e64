#include "common/util/sha256.h"

#include <openssl/evp.h>

#include <cstdio>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/util/file.h"

namespace hangar {

struct Sha256::Context {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  ~Context() { EVP_MD_CTX_free(md); }
};

Sha256::Sha256() : context_(std::make_unique<Context>()) {
  EVP_DigestInit_ex(context_->md, EVP_sha256(), nullptr);
}

Sha256::~Sha256() = default;

void Sha256::Update(absl::string_view data) {
  EVP_DigestUpdate(context_->md, data.data(), data.size());
}

std::string Sha256::Finish() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(context_->md, digest, &length);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

std::string Sha256::FinishHex() { return absl::BytesToHexString(Finish()); }

std::string Sha256Digest(absl::string_view data) {
  Sha256 hash;
  hash.Update(data);
  return hash.Finish();
}

std::string Sha256Hex(absl::string_view data) {
  return absl::BytesToHexString(Sha256Digest(data));
}

namespace {

absl::Status HashFileInto(const std::string& path, Sha256& hash,
                          std::vector<char>& buffer) {
  ASSIGN_OR_RETURN(FilePtr file, OpenFile(path));
  size_t read = 0;
  while ((read = std::fread(buffer.data(), 1, buffer.size(), file.get())) > 0) {
    hash.Update(absl::string_view(buffer.data(), read));
  }
  if (std::ferror(file.get())) {
    return absl::DataLossError(absl::StrCat(path, ": read error"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> Sha256OfFile(const std::string& path) {
  return Sha256OfFiles({path});
}

absl::StatusOr<std::string> Sha256OfFiles(
    const std::vector<std::string>& paths) {
  Sha256 hash;
  std::vector<char> buffer(1 << 20);
  for (const std::string& path : paths) {
    absl::Status status = HashFileInto(path, hash, buffer);
    if (!status.ok()) return status;
  }
  return hash.FinishHex();
}

}  // namespace hangar
