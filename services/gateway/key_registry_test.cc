#include "services/gateway/key_registry.h"

#include "common/auth/api_key.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::gateway {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

auth::ApiKey Key(char fill) {
  absl::StatusOr<auth::ApiKey> key =
      auth::ApiKeyFromBytes(std::string(auth::kApiKeyRandomBytes, fill));
  EXPECT_TRUE(key.ok());
  return *key;
}

KeyEntry Entry(const auth::ApiKey& key, std::string name,
               std::string deployment) {
  return {.key_name = std::move(name),
          .deployment = std::move(deployment),
          .sha256 = key.hash};
}

TEST(KeyRegistryTest, KnownKeysAuthenticateAsTheirDeployment) {
  KeyRegistry registry;
  auth::ApiKey a = Key('a'), b = Key('b');
  registry.ReplaceAll({Entry(a, "key-a", "dep-1"), Entry(b, "key-b", "dep-2")});
  absl::StatusOr<Principal> who = registry.Authenticate(a.plaintext);
  ASSERT_TRUE(who.ok()) << who.status();
  EXPECT_EQ(who->key_name, "key-a");
  EXPECT_EQ(who->deployment, "dep-1");
  EXPECT_EQ(registry.Authenticate(b.plaintext)->deployment, "dep-2");
}

TEST(KeyRegistryTest, UnknownMalformedAndRevokedKeysLookTheSame) {
  KeyRegistry registry;
  auth::ApiKey a = Key('a');
  registry.ReplaceAll({Entry(a, "key-a", "dep-1")});
  registry.Revoke("key-a");
  const std::string inputs[] = {a.plaintext, Key('z').plaintext, "hk_short",
                                "not a key", ""};
  for (const std::string& input : inputs) {
    absl::StatusOr<Principal> who = registry.Authenticate(input);
    ASSERT_FALSE(who.ok());
    EXPECT_EQ(who.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(who.status().message(), "invalid API key");
  }
}

TEST(KeyRegistryTest, BeforeTheFirstSnapshotKeysAreUnavailableNotRefused) {
  KeyRegistry registry;
  EXPECT_FALSE(registry.loaded());
  absl::StatusOr<Principal> who = registry.Authenticate(Key('a').plaintext);
  EXPECT_EQ(who.status().code(), absl::StatusCode::kUnavailable);
  registry.ReplaceAll({});
  EXPECT_TRUE(registry.loaded());
  EXPECT_EQ(registry.Authenticate(Key('a').plaintext).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(KeyRegistryTest, AddAndRevokeAfterTheSnapshot) {
  KeyRegistry registry;
  registry.ReplaceAll({});
  auth::ApiKey a = Key('a');
  registry.Add(Entry(a, "key-a", "dep-1"));
  EXPECT_TRUE(registry.Authenticate(a.plaintext).ok());
  registry.Revoke("key-a");
  registry.Revoke("key-a");  // twice is harmless
  EXPECT_FALSE(registry.Authenticate(a.plaintext).ok());
  EXPECT_EQ(registry.size(), 0u);
}

TEST(KeyRegistryTest, ASnapshotReplacesEverything) {
  KeyRegistry registry;
  auth::ApiKey a = Key('a'), b = Key('b');
  registry.ReplaceAll({Entry(a, "key-a", "dep-1")});
  registry.ReplaceAll({Entry(b, "key-b", "dep-1")});
  EXPECT_FALSE(registry.Authenticate(a.plaintext).ok());
  EXPECT_TRUE(registry.Authenticate(b.plaintext).ok());
}

TEST(ExtractApiKeyTest, BearerThenXApiKey) {
  EXPECT_EQ(*ExtractApiKey("Bearer hk_abc", std::nullopt), "hk_abc");
  EXPECT_EQ(*ExtractApiKey("bearer hk_abc", "hk_other"), "hk_abc");
  EXPECT_EQ(*ExtractApiKey(std::nullopt, "hk_xyz"), "hk_xyz");
  absl::StatusOr<std::string> none = ExtractApiKey(std::nullopt, std::nullopt);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(none.status().message(), HasSubstr("x-api-key"));
  absl::StatusOr<std::string> basic =
      ExtractApiKey("Basic dXNlcjpzZWNyZXQ=", std::nullopt);
  EXPECT_EQ(basic.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(basic.status().message(), Not(HasSubstr("dXNlcjpzZWNyZXQ")));
}

TEST(ConcurrencyLimiterTest, CapsEachKeySeparatelyAndReleasesOnDestruction) {
  ConcurrencyLimiter limiter(2);
  {
    absl::StatusOr<ConcurrencyLimiter::Lease> first = limiter.Acquire("k1");
    absl::StatusOr<ConcurrencyLimiter::Lease> second = limiter.Acquire("k1");
    ASSERT_TRUE(first.ok() && second.ok());
    absl::StatusOr<ConcurrencyLimiter::Lease> third = limiter.Acquire("k1");
    EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_THAT(third.status().message(), HasSubstr("limit 2"));
    EXPECT_TRUE(limiter.Acquire("k2").ok());  // another key is not affected
    EXPECT_EQ(limiter.in_flight("k1"), 2);
    ConcurrencyLimiter::Lease moved = *std::move(first);
    EXPECT_EQ(limiter.in_flight("k1"), 2);
  }
  EXPECT_EQ(limiter.in_flight("k1"), 0);
  EXPECT_TRUE(limiter.Acquire("k1").ok());
}

}  // namespace
}  // namespace hangar::gateway
