#include "common/auth/api_key.h"

#include <openssl/sha.h>

#include <set>
#include <string>

#include "absl/strings/ascii.h"
#include "common/auth/crypto.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::auth {
namespace {

using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

std::string OpenSslSha256Hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
         digest);
  return HexEncode(
      std::string(reinterpret_cast<char*>(digest), sizeof(digest)));
}

TEST(ApiKeyTest, HasTheDocumentedShape) {
  ASSERT_OK_AND_ASSIGN(ApiKey key, GenerateApiKey());
  EXPECT_THAT(key.plaintext, StartsWith("hk_"));
  EXPECT_EQ(key.plaintext.size(), 46u);
  for (char c : key.plaintext.substr(3)) {
    EXPECT_TRUE(absl::ascii_isalnum(c)) << c;
  }
  EXPECT_OK(ValidateApiKeyFormat(key.plaintext));
  EXPECT_EQ(key.display_prefix, key.plaintext.substr(0, 11));
  EXPECT_EQ(key.hash.size(), 64u);
}

TEST(ApiKeyTest, HashIsOpenSslSha256OfTheWholeKey) {
  ASSERT_OK_AND_ASSIGN(ApiKey key, GenerateApiKey());
  EXPECT_EQ(key.hash, OpenSslSha256Hex(key.plaintext));
  EXPECT_EQ(HashApiKey(key.plaintext), key.hash);
  EXPECT_TRUE(ApiKeyMatchesHash(key.plaintext, key.hash));
  std::string other = key.plaintext;
  other.back() = other.back() == 'a' ? 'b' : 'a';
  EXPECT_FALSE(ApiKeyMatchesHash(other, key.hash));
}

TEST(ApiKeyTest, KeysAreDistinct) {
  std::set<std::string> keys;
  std::set<std::string> hashes;
  for (int i = 0; i < 2000; ++i) {
    ASSERT_OK_AND_ASSIGN(ApiKey key, GenerateApiKey());
    keys.insert(key.plaintext);
    hashes.insert(key.hash);
  }
  EXPECT_EQ(keys.size(), 2000u);
  EXPECT_EQ(hashes.size(), 2000u);
}

TEST(ApiKeyTest, EncodesThe256BitNumberInBase62) {
  ASSERT_OK_AND_ASSIGN(ApiKey zero, ApiKeyFromBytes(std::string(32, '\0')));
  EXPECT_EQ(zero.plaintext, "hk_" + std::string(43, '0'));
  ASSERT_OK_AND_ASSIGN(ApiKey max, ApiKeyFromBytes(std::string(32, '\xff')));
  EXPECT_EQ(max.plaintext, "hk_yhjskwdA6OZ1AL1YmHWZWm8LLG7HjnuCA2j5rOw8Xp1");
  std::string counting;
  for (int i = 0; i < 32; ++i) counting.push_back(static_cast<char>(i));
  ASSERT_OK_AND_ASSIGN(ApiKey key, ApiKeyFromBytes(counting));
  EXPECT_EQ(key.plaintext, "hk_003aUlTJC7tjlCTQj2uNU3MFagCXG9LRKRcwGkBIDlf");
  EXPECT_EQ(key.display_prefix, "hk_003aUlTJ");
  EXPECT_THAT(ApiKeyFromBytes("short"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("32")));
}

TEST(ApiKeyTest, RejectsMalformedKeysWithoutQuotingThem) {
  ASSERT_OK_AND_ASSIGN(ApiKey key, GenerateApiKey());
  const std::string body = key.plaintext.substr(3);
  const std::string bad[] = {
      "",
      "hk_",
      "sk_" + body,
      "HK_" + body,
      key.plaintext + "0",
      key.plaintext.substr(0, 45),
      "hk_" + body.substr(0, 42) + "-",
      "hk_" + body.substr(0, 42) + "=",
      "hk_" + body.substr(0, 42) + "\xc3",
      " " + key.plaintext.substr(0, 45),
  };
  for (const std::string& candidate : bad) {
    absl::Status status = ValidateApiKeyFormat(candidate);
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnauthenticated,
                                 HasSubstr("malformed API key")))
        << candidate;
    if (candidate.size() > 3) {
      EXPECT_THAT(std::string(status.message()),
                  Not(HasSubstr(candidate.substr(3))));
    }
  }
}

}  // namespace
}  // namespace hangar::auth
