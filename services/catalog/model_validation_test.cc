#include "services/catalog/model_validation.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::catalog {
namespace {

using ::hangar::testing::IsOk;
using ::hangar::testing::IsOkAndHolds;
using ::hangar::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

TEST(RepoIdTest, AcceptsRealIds) {
  for (const char* id :
       {"meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-0.5B",
        "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "a/b", "01-ai/Yi-1.5-6B-Chat"}) {
    EXPECT_THAT(ValidateRepoId("hugging_face.repo", id), IsOk()) << id;
  }
}

TEST(RepoIdTest, RefusesHostileIdsNamingTheField) {
  const std::string nul("a/b\0c", 5);
  for (const std::string& id :
       {std::string("../../etc/passwd"), std::string("a/b/c"), std::string("a"),
        std::string("/a"), std::string("a/"), std::string(".a/b"),
        std::string("a/..b"), std::string("a b/c"),
        std::string("a/b;DROP TABLE models"), std::string(300, 'x'),
        std::string("o/") + std::string(97, 'n'), nul}) {
    EXPECT_THAT(ValidateRepoId("hugging_face.repo", id),
                StatusIs(kInvalid, HasSubstr("hugging_face.repo: must be")))
        << id;
  }
  EXPECT_THAT(ValidateRepoId("hugging_face.repo", ""),
              StatusIs(kInvalid, HasSubstr("hugging_face.repo: required")));
}

TEST(RepoIdTest, MessagesEscapeAndShortenTheValue) {
  absl::Status status =
      ValidateRepoId("hugging_face.repo", std::string("a/b\0!", 5));
  EXPECT_THAT(std::string(status.message()), HasSubstr("\"a/b\\x00!\""));
  status = ValidateRepoId("hugging_face.repo", std::string(300, 'x'));
  EXPECT_THAT(std::string(status.message()), HasSubstr("(300 bytes)"));
  EXPECT_LT(status.message().size(), 400);
}

TEST(ModelNameTest, LimitsLengthTo200) {
  std::string name = std::string(96, 'a') + "/" + std::string(96, 'b');
  EXPECT_THAT(ValidateModelName("name", name), IsOk());
  EXPECT_THAT(ValidateModelName(
                  "name", std::string(150, 'a') + "/" + std::string(60, 'b')),
              StatusIs(kInvalid, HasSubstr("name: must be")));
}

TEST(RevisionTest, AcceptsBranchesTagsAndCommits) {
  for (const char* revision : {"main", "v1.0", "refs/pr/1",
                               "0123456789abcdef0123456789abcdef01234567"}) {
    EXPECT_THAT(ValidateRevision("hugging_face.revision", revision), IsOk());
  }
  for (const char* revision :
       {"", "../main", "a//b", "a/", "-x", "a b", "a?b"}) {
    EXPECT_THAT(ValidateRevision("hugging_face.revision", revision),
                StatusIs(kInvalid, HasSubstr("hugging_face.revision")))
        << revision;
  }
  EXPECT_TRUE(IsCommitId("0123456789abcdef0123456789abcdef01234567"));
  EXPECT_FALSE(IsCommitId("main"));
}

TEST(ConnectionNameTest, FollowsTheRule) {
  EXPECT_THAT(ValidateConnectionName("connection.name", "hf-prod-1"), IsOk());
  for (const char* name : {"", "1abc", "Abc", "a_b", "a b"}) {
    EXPECT_THAT(ValidateConnectionName("connection.name", name),
                StatusIs(kInvalid, HasSubstr("connection.name")))
        << name;
  }
}

TEST(TokenTest, RefusesEmptyAndNeverEchoes) {
  EXPECT_THAT(ValidateToken("connection.token", ""),
              StatusIs(kInvalid, HasSubstr("connection.token: required")));
  absl::Status status = ValidateToken("connection.token", "hf_secret value");
  EXPECT_THAT(status, StatusIs(kInvalid, AllOf(HasSubstr("connection.token"),
                                               Not(HasSubstr("hf_secret")))));
  EXPECT_THAT(ValidateToken("connection.token", "hf_abcdef"), IsOk());
}

TEST(TextTest, AllowsSqlMetacharactersButNotNul) {
  EXPECT_THAT(
      ValidateText("description", "it's \"quoted\"; DROP TABLE x; --\n", 100),
      IsOk());
  EXPECT_THAT(ValidateText("description", std::string("a\0b", 3), 100),
              StatusIs(kInvalid, HasSubstr("description")));
  EXPECT_THAT(ValidateText("description", std::string(101, 'a'), 100),
              StatusIs(kInvalid, HasSubstr("at most 100")));
}

TEST(TagsTest, RefusesBadAndDuplicateTags) {
  EXPECT_THAT(ValidateTags("tags", {"chat", "small"}), IsOk());
  EXPECT_THAT(ValidateTags("tags", {"chat", "chat"}),
              StatusIs(kInvalid, HasSubstr("tags[1]: duplicate")));
  EXPECT_THAT(ValidateTags("tags", {"a b"}),
              StatusIs(kInvalid, HasSubstr("tags[0]")));
}

class PathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = std::filesystem::temp_directory_path() /
            ("catalog_path_test_" + std::to_string(getpid()));
    std::filesystem::create_directories(base_ / "root" / "model");
    std::filesystem::create_directories(base_ / "outside");
    std::filesystem::create_directory_symlink(base_ / "outside",
                                              base_ / "root" / "escape");
  }
  void TearDown() override { std::filesystem::remove_all(base_); }
  std::string Root() const { return (base_ / "root").string(); }
  std::filesystem::path base_;
};

TEST_F(PathTest, ResolvesPathsInsideTheRoot) {
  EXPECT_THAT(
      ResolvePathUnderRoot("local.path", Root(), "model"),
      IsOkAndHolds(
          (std::filesystem::canonical(base_) / "root" / "model").string()));
  EXPECT_THAT(ResolvePathUnderRoot("local.path", Root(), Root() + "/model"),
              IsOk());
}

TEST_F(PathTest, RefusesEscapes) {
  EXPECT_THAT(ResolvePathUnderRoot("local.path", Root(), "../outside"),
              StatusIs(kInvalid, HasSubstr("local.path: must lie under")));
  EXPECT_THAT(ResolvePathUnderRoot("local.path", Root(), "/etc/passwd"),
              StatusIs(kInvalid, HasSubstr("local.path")));
  EXPECT_THAT(ResolvePathUnderRoot("local.path", Root(), "escape"),
              StatusIs(kInvalid, HasSubstr("symlinks")));
  EXPECT_THAT(ResolvePathUnderRoot("local.path", Root(), "missing"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("local.path")));
  EXPECT_THAT(ResolvePathUnderRoot("local.path", "", "model"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("--local_model_root")));
}

}  // namespace
}  // namespace hangar::catalog
