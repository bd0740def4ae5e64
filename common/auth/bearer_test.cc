#include "common/auth/bearer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::auth {
namespace {

using ::hangar::testing::IsOkAndHolds;
using ::hangar::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(ParseBearerTokenTest, AcceptsWellFormedHeaders) {
  EXPECT_THAT(ParseBearerToken("Bearer hk_abc123"), IsOkAndHolds("hk_abc123"));
  EXPECT_THAT(ParseBearerToken("bearer hk_abc"), IsOkAndHolds("hk_abc"));
  EXPECT_THAT(ParseBearerToken("BEARER hk_abc"), IsOkAndHolds("hk_abc"));
  EXPECT_THAT(ParseBearerToken("  Bearer \t  tok  \r\n"), IsOkAndHolds("tok"));
  EXPECT_THAT(ParseBearerToken("Bearer a-b.c_d~e+f/g=="),
              IsOkAndHolds("a-b.c_d~e+f/g=="));
  EXPECT_THAT(ParseBearerToken("Bearer " + std::string(4096, 'x')),
              IsOkAndHolds(std::string(4096, 'x')));
}

TEST(ParseBearerTokenTest, RejectsEverythingElseWithoutEchoingIt) {
  struct Case {
    std::string header;
    std::string why;
  };
  const Case cases[] = {
      {"", "missing credentials"},
      {"   ", "missing credentials"},
      {"Bearer", "Bearer scheme"},
      {"Bearer   ", "Bearer scheme"},
      {"Basic c2VjcmV0OnB3", "Bearer scheme"},
      {"Bearersecret_tok", "Bearer scheme"},
      {"Bearer: secret_tok", "Bearer scheme"},
      {"secret_tok", "Bearer scheme"},
      {"Bearer secret_tok extra", "malformed bearer token"},
      {"Bearer secret_tok,x", "malformed bearer token"},
      {"Bearer =secret_tok", "malformed bearer token"},
      {"Bearer secret_tok=x", "malformed bearer token"},
      {"Bearer secret_tok\x01", "malformed bearer token"},
      {"Bearer secret_tok\xc3\xa9", "malformed bearer token"},
      {"Bearer " + std::string(4097, 's'), "longer than 4096"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::string> token = ParseBearerToken(c.header);
    EXPECT_THAT(token,
                StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr(c.why)))
        << c.header;
    EXPECT_THAT(std::string(token.status().message()), Not(HasSubstr("secret")))
        << c.header;
  }
}

class AdminTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/hangar-admin-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::remove((dir_ + "/token").c_str());
    ::rmdir(dir_.c_str());
  }
  std::string WriteToken(const std::string& content) {
    const std::string path = dir_ + "/token";
    std::ofstream(path) << content;
    return path;
  }
  std::string dir_;
};

TEST_F(AdminTokenTest, AuthorizesOnlyTheTokenFromTheFile) {
  ASSERT_OK_AND_ASSIGN(
      auto admin,
      AdminToken::FromFile(WriteToken("  s3cret-admin-token-0123456789\n")));
  EXPECT_OK(admin->Authorize("Bearer s3cret-admin-token-0123456789"));
  EXPECT_TRUE(admin->Matches("s3cret-admin-token-0123456789"));
  EXPECT_EQ(admin->AuthorizationHeader(),
            "Bearer s3cret-admin-token-0123456789");
  for (const std::string& wrong :
       {std::string("Bearer s3cret-admin-token-012345678"),
        std::string("Bearer s3cret-admin-token-01234567890"),
        std::string("Bearer S3cret-admin-token-0123456789"),
        std::string("Basic s3cret-admin-token-0123456789"), std::string("")}) {
    absl::Status status = admin->Authorize(wrong);
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnauthenticated,
                                 Not(HasSubstr("s3cret"))))
        << wrong;
  }
}

TEST_F(AdminTokenTest, RefusesBadFilesNamingTheFileNotTheToken) {
  EXPECT_THAT(AdminToken::FromFile(dir_ + "/missing"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
  const std::string short_path = WriteToken("s3cret\n");
  EXPECT_THAT(AdminToken::FromFile(short_path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(short_path), HasSubstr("at least 16"),
                             Not(HasSubstr("s3cret\n")))));
  EXPECT_THAT(AdminToken::FromFile(WriteToken("s3cret token with spaces\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Not(HasSubstr("with spaces"))));
  EXPECT_THAT(
      AdminToken::FromString(""),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least 16")));
}

}  // namespace
}  // namespace hangar::auth
