#include "services/gateway/key_registry.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/auth/api_key.h"
#include "common/auth/bearer.h"
#include "common/auth/crypto.h"

namespace hangar::gateway {
namespace {

absl::Status InvalidKey() {
  return absl::UnauthenticatedError("invalid API key");
}

}  // namespace

absl::StatusOr<std::string> ExtractApiKey(
    std::optional<absl::string_view> authorization,
    std::optional<absl::string_view> x_api_key) {
  if (authorization.has_value()) {
    return auth::ParseBearerToken(*authorization);
  }
  if (x_api_key.has_value()) return std::string(*x_api_key);
  return absl::UnauthenticatedError(
      "missing API key: send `authorization: Bearer <key>` or "
      "`x-api-key: <key>` metadata");
}

void KeyRegistry::ReplaceAll(const std::vector<KeyEntry>& entries) {
  absl::MutexLock lock(&mu_);
  by_hash_.clear();
  hash_by_name_.clear();
  for (const KeyEntry& entry : entries) {
    by_hash_[entry.sha256] = {.principal = {.key_name = entry.key_name,
                                            .deployment = entry.deployment},
                              .sha256 = entry.sha256};
    hash_by_name_[entry.key_name] = entry.sha256;
  }
  loaded_ = true;
}

void KeyRegistry::Add(const KeyEntry& entry) {
  absl::MutexLock lock(&mu_);
  by_hash_[entry.sha256] = {
      .principal = {.key_name = entry.key_name, .deployment = entry.deployment},
      .sha256 = entry.sha256};
  hash_by_name_[entry.key_name] = entry.sha256;
}

void KeyRegistry::Revoke(absl::string_view key_name) {
  absl::MutexLock lock(&mu_);
  auto found = hash_by_name_.find(key_name);
  if (found == hash_by_name_.end()) return;
  by_hash_.erase(found->second);
  hash_by_name_.erase(found);
}

bool KeyRegistry::loaded() const {
  absl::MutexLock lock(&mu_);
  return loaded_;
}

size_t KeyRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return by_hash_.size();
}

absl::StatusOr<Principal> KeyRegistry::Authenticate(
    absl::string_view key) const {
  if (!auth::ValidateApiKeyFormat(key).ok()) return InvalidKey();
  const std::string hash = auth::HashApiKey(key);
  absl::MutexLock lock(&mu_);
  if (!loaded_) {
    return absl::UnavailableError(
        "API keys not loaded yet from the deployment service; retry");
  }
  auto found = by_hash_.find(hash);
  if (found == by_hash_.end() ||
      !auth::ConstantTimeEquals(found->second.sha256, hash)) {
    return InvalidKey();
  }
  return found->second.principal;
}

ConcurrencyLimiter::Lease::Lease(Lease&& other) noexcept
    : limiter_(std::exchange(other.limiter_, nullptr)),
      key_(std::move(other.key_)) {}

ConcurrencyLimiter::Lease& ConcurrencyLimiter::Lease::operator=(
    Lease&& other) noexcept {
  if (this != &other) {
    Release();
    limiter_ = std::exchange(other.limiter_, nullptr);
    key_ = std::move(other.key_);
  }
  return *this;
}

ConcurrencyLimiter::Lease::~Lease() { Release(); }

void ConcurrencyLimiter::Lease::Release() {
  if (limiter_ != nullptr) {
    limiter_->Release(key_);
    limiter_ = nullptr;
  }
}

absl::StatusOr<ConcurrencyLimiter::Lease> ConcurrencyLimiter::Acquire(
    absl::string_view key_name) {
  absl::MutexLock lock(&mu_);
  int& count = counts_[key_name];
  if (count >= max_per_key_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many concurrent calls for this API key (limit ",
                     max_per_key_, ")"));
  }
  ++count;
  return Lease(this, std::string(key_name));
}

int ConcurrencyLimiter::in_flight(absl::string_view key_name) const {
  absl::MutexLock lock(&mu_);
  auto found = counts_.find(key_name);
  return found == counts_.end() ? 0 : found->second;
}

void ConcurrencyLimiter::Release(const std::string& key_name) {
  absl::MutexLock lock(&mu_);
  auto found = counts_.find(key_name);
  if (found == counts_.end()) return;
  if (--found->second <= 0) counts_.erase(found);
}

}  // namespace hangar::gateway
