#include "common/auth/secret_box.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "common/util/file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::auth {
namespace {

using ::hangar::testing::IsOkAndHolds;
using ::hangar::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kSecret[] = "hf_SuperSecretHuggingFaceToken";

std::unique_ptr<SecretBox> BoxWithKey(char fill) {
  return *SecretBox::FromKey(std::string(SecretBox::kKeyBytes, fill));
}

TEST(SecretBoxTest, RoundTrips) {
  auto box = BoxWithKey('k');
  for (const std::string& plaintext :
       {std::string(""), std::string(kSecret), std::string("a\0b\xff", 4),
        std::string(100000, 'x')}) {
    ASSERT_OK_AND_ASSIGN(std::string sealed, box->Seal(plaintext, "conn-1"));
    EXPECT_THAT(sealed, StartsWith("v1:"));
    EXPECT_THAT(box->Open(sealed, "conn-1"), IsOkAndHolds(plaintext));
  }
}

TEST(SecretBoxTest, SealedTextHidesTheSecretAndUsesFreshNonces) {
  auto box = BoxWithKey('k');
  ASSERT_OK_AND_ASSIGN(std::string a, box->Seal(kSecret));
  ASSERT_OK_AND_ASSIGN(std::string b, box->Seal(kSecret));
  EXPECT_NE(a, b);
  EXPECT_THAT(a, Not(HasSubstr("Secret")));
  for (char c : a) EXPECT_TRUE(absl::ascii_isprint(c));
}

TEST(SecretBoxTest, DetectsTamperingAnywhere) {
  auto box = BoxWithKey('k');
  ASSERT_OK_AND_ASSIGN(std::string sealed, box->Seal(kSecret, "conn-1"));
  std::string blob;
  ASSERT_TRUE(absl::Base64Unescape(sealed.substr(3), &blob));
  for (size_t i = 0; i < blob.size(); ++i) {
    for (int bit : {0, 7}) {
      std::string altered = blob;
      altered[i] = static_cast<char>(altered[i] ^ (1 << bit));
      absl::StatusOr<std::string> opened =
          box->Open("v1:" + absl::Base64Escape(altered), "conn-1");
      EXPECT_THAT(opened, StatusIs(absl::StatusCode::kDataLoss,
                                   Not(HasSubstr("Secret"))))
          << "byte " << i;
    }
  }
  EXPECT_THAT(
      box->Open("v1:" + absl::Base64Escape(blob.substr(0, 27)), "conn-1"),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("altered")));
  EXPECT_THAT(box->Open("v1:" + absl::Base64Escape(blob.substr(1)), "conn-1"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("altered")));
  EXPECT_THAT(box->Open("v2:" + sealed.substr(3), "conn-1"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("altered")));
  EXPECT_THAT(box->Open("v1:!!not base64!!", "conn-1"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("altered")));
  EXPECT_THAT(box->Open(sealed, "conn-1"), IsOkAndHolds(kSecret));
}

TEST(SecretBoxTest, BindsAssociatedDataAndKey) {
  auto box = BoxWithKey('k');
  ASSERT_OK_AND_ASSIGN(std::string sealed, box->Seal(kSecret, "conn-1"));
  EXPECT_THAT(box->Open(sealed, "conn-2"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("altered")));
  EXPECT_THAT(box->Open(sealed),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("altered")));
  EXPECT_THAT(BoxWithKey('j')->Open(sealed, "conn-1"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("altered")));
  EXPECT_THAT(SecretBox::FromKey("short"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("32")));
}

class SecretBoxKeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = hangar::testing::MakeTempDir("hangar-secretbox");
    path_ = dir_ + "/secret.key";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
  std::string path_;
};

TEST_F(SecretBoxKeyFileTest, CreatesAPrivateKeyFileAndReusesIt) {
  ASSERT_OK_AND_ASSIGN(auto first, SecretBox::FromKeyFile(path_));
  struct stat info;
  ASSERT_EQ(::stat(path_.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600);
  ASSERT_OK_AND_ASSIGN(std::string text, ReadFileToString(path_));
  EXPECT_EQ(text.size(), 65u);  // 64 hex digits and a newline.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_),
                          std::filesystem::directory_iterator()),
            1);  // No temporary file left behind.

  ASSERT_OK_AND_ASSIGN(std::string sealed, first->Seal(kSecret));
  ASSERT_OK_AND_ASSIGN(auto second, SecretBox::FromKeyFile(path_));
  EXPECT_THAT(second->Open(sealed), IsOkAndHolds(kSecret));
}

TEST_F(SecretBoxKeyFileTest, RefusesFilesOthersCanRead) {
  ASSERT_OK(SecretBox::FromKeyFile(path_).status());
  ASSERT_EQ(::chmod(path_.c_str(), 0644), 0);
  EXPECT_THAT(SecretBox::FromKeyFile(path_),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(path_), HasSubstr("0644"),
                             HasSubstr("chmod 600"))));
}

TEST_F(SecretBoxKeyFileTest, RefusesMissingOrMalformedFiles) {
  EXPECT_THAT(SecretBox::FromKeyFile(path_, /*create_if_missing=*/false),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(path_)));
  {
    std::ofstream out(path_);
    out << "not-a-key-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz";
  }
  ASSERT_EQ(::chmod(path_.c_str(), 0600), 0);
  absl::StatusOr<std::unique_ptr<SecretBox>> box =
      SecretBox::FromKeyFile(path_);
  EXPECT_THAT(box, StatusIs(absl::StatusCode::kFailedPrecondition,
                            HasSubstr("64 hex digits")));
  EXPECT_THAT(std::string(box.status().message()), Not(HasSubstr("zzzz")));
}

}  // namespace
}  // namespace hangar::auth
