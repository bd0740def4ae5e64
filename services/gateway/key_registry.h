// Which API keys the gateway accepts: a copy of the deployment service's
// active key hashes, kept by its WatchApiKeys stream (a snapshot, then
// additions and revocations), so that no request needs a call to
// authenticate and a revocation takes effect as soon as the event arrives.
//
// A presented key is checked for shape (auth::ValidateApiKeyFormat), hashed
// with SHA-256 and looked up by hash; the stored hash is then compared in
// constant time. Unknown, revoked and malformed keys get the same
// UNAUTHENTICATED answer, and the lookup is by a hash the caller cannot
// steer, so neither the message nor the timing tells whether a key exists.
// Until the first snapshot arrives every key is refused with UNAVAILABLE
// ("keys not loaded yet"), never UNAUTHENTICATED, so clients retry instead
// of discarding a good key.
//
//   registry.ReplaceAll(snapshot_entries);
//   ASSIGN_OR_RETURN(std::string key, ExtractApiKey(authorization, x_api_key));
//   ASSIGN_OR_RETURN(Principal who, registry.Authenticate(key));
//   if (who.deployment != route.deployment) -> PERMISSION_DENIED
//
// Thread-safe.
#ifndef HANGAR_SERVICES_GATEWAY_KEY_REGISTRY_H_
#define HANGAR_SERVICES_GATEWAY_KEY_REGISTRY_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace hangar::gateway {

// One active key as WatchApiKeys sends it.
struct KeyEntry {
  // "key-..."
  std::string key_name;
  // "dep-..."
  std::string deployment;
  // SHA-256 of the plaintext, lowercase hex.
  std::string sha256;
};

// Who a request comes from.
struct Principal {
  std::string key_name;
  std::string deployment;
};

// The key a call presents: the token of `authorization: Bearer <key>`, or
// else `x-api-key: <key>`; UNAUTHENTICATED naming both ways when neither is
// there. Never quotes what was sent.
absl::StatusOr<std::string> ExtractApiKey(
    std::optional<absl::string_view> authorization,
    std::optional<absl::string_view> x_api_key);

class KeyRegistry {
 public:
  // Replaces every key (a snapshot).
  void ReplaceAll(const std::vector<KeyEntry>& entries);
  void Add(const KeyEntry& entry);
  // Unknown names are ignored (the key may have been revoked twice).
  void Revoke(absl::string_view key_name);

  // Whether a snapshot has arrived.
  bool loaded() const;
  size_t size() const;

  // The principal of `key`. UNAUTHENTICATED "invalid API key" for a
  // malformed, unknown or revoked key; UNAVAILABLE before the first
  // snapshot.
  absl::StatusOr<Principal> Authenticate(absl::string_view key) const;

  // -------------------------------------------------------------------------
 private:
  struct Stored {
    Principal principal;
    std::string sha256;
  };

  mutable absl::Mutex mu_;  // Protects everything below.
  bool loaded_ ABSL_GUARDED_BY(mu_) = false;
  // By hash (what a presented key is looked up with).
  absl::flat_hash_map<std::string, Stored> by_hash_ ABSL_GUARDED_BY(mu_);
  // Key name -> hash, for revocations.
  absl::flat_hash_map<std::string, std::string> hash_by_name_
      ABSL_GUARDED_BY(mu_);
};

// A cap on the calls one key may have in flight, so that one client cannot
// take every queue slot and stream (RESOURCE_EXHAUSTED past it; the others
// keep being served).
//
//   ASSIGN_OR_RETURN(ConcurrencyLimiter::Lease lease, limiter.Acquire(key));
//   ... the call ... (the lease releases its slot when destroyed)
class ConcurrencyLimiter {
 public:
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&& other) noexcept;
    ~Lease();

   private:
    friend class ConcurrencyLimiter;
    Lease(ConcurrencyLimiter* limiter, std::string key)
        : limiter_(limiter), key_(std::move(key)) {}
    void Release();
    ConcurrencyLimiter* limiter_ = nullptr;
    std::string key_;
  };

  // `max_per_key` in [1, 1 << 20].
  explicit ConcurrencyLimiter(int max_per_key) : max_per_key_(max_per_key) {}

  // RESOURCE_EXHAUSTED "too many concurrent calls for this API key (limit
  // N)" when the key already holds max_per_key leases.
  absl::StatusOr<Lease> Acquire(absl::string_view key_name);
  int in_flight(absl::string_view key_name) const;

 private:
  void Release(const std::string& key_name);

  const int max_per_key_;
  mutable absl::Mutex mu_;  // Protects counts_.
  absl::flat_hash_map<std::string, int> counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hangar::gateway

#endif  // HANGAR_SERVICES_GATEWAY_KEY_REGISTRY_H_
