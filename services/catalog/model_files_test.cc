// Tests of the model store's file handling: removal stays inside the store
// and never follows links out; the sweep removes only what no row names.
#include "services/catalog/model_files.h"

#include <filesystem>
#include <fstream>

#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::catalog {
namespace {

namespace fs = std::filesystem;
using ::hangar::testing::IsOk;
using ::hangar::testing::StatusIs;
using ::testing::UnorderedElementsAre;

class ModelFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = hangar::testing::MakeTempDir("model_files_test");
    root_ = dir_ + "/store";
    outside_ = dir_ + "/outside";
    fs::create_directories(root_);
    fs::create_directories(outside_);
    Touch(outside_ + "/precious");
  }
  void TearDown() override { fs::remove_all(dir_); }
  static void Touch(const std::string& path) {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path) << "x";
  }

  std::string dir_, root_, outside_;
};

TEST_F(ModelFilesTest, RemovesADirectoryAndItsEmptyParents) {
  Touch(root_ + "/acme/m/abc/model.safetensors");
  Touch(root_ + "/acme/other/def/model.safetensors");
  ASSERT_THAT(RemoveStoreDirectory(root_, root_ + "/acme/m/abc"), IsOk());
  EXPECT_FALSE(fs::exists(root_ + "/acme/m"));
  EXPECT_TRUE(fs::exists(root_ + "/acme/other/def/model.safetensors"));
  // Missing is fine (an interrupted delete finished already).
  EXPECT_THAT(RemoveStoreDirectory(root_, root_ + "/acme/m/abc"), IsOk());
}

TEST_F(ModelFilesTest, RefusesPathsOutsideTheStoreOrThroughALink) {
  EXPECT_THAT(RemoveStoreDirectory(root_, outside_),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(RemoveStoreDirectory(root_, root_ + "/../outside"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(RemoveStoreDirectory(root_, root_),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  fs::create_directory_symlink(outside_, root_ + "/evil");
  EXPECT_THAT(RemoveStoreDirectory(root_, root_ + "/evil/precious"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_TRUE(fs::exists(outside_ + "/precious"));
}

TEST_F(ModelFilesTest, SweepRemovesOnlyOrphansAndNeverFollowsLinks) {
  Touch(root_ + "/acme/kept/abc/model.safetensors");
  Touch(root_ + "/acme/kept/old/model.safetensors.partial");     // Orphan.
  Touch(root_ + "/gone/repo/def/model.safetensors");             // Orphan.
  Touch(root_ + "/stray-file");                                  // Orphan.
  Touch(root_ + "/.catalog-secret.key");                         // Kept.
  fs::create_directory_symlink(outside_, root_ + "/acme/link");  // Orphan.
  absl::StatusOr<SweepReport> report =
      SweepOrphans(root_, {root_ + "/acme/kept/abc", "/elsewhere/x", ""});
  ASSERT_THAT(report.status(), IsOk());
  EXPECT_THAT(report->removed, UnorderedElementsAre("acme/kept/old", "gone",
                                                    "stray-file", "acme/link"));
  EXPECT_TRUE(fs::exists(root_ + "/acme/kept/abc/model.safetensors"));
  EXPECT_TRUE(fs::exists(root_ + "/.catalog-secret.key"));
  EXPECT_TRUE(fs::exists(outside_ + "/precious"));
  EXPECT_TRUE(IsInsideStore(root_, root_ + "/acme/kept/abc"));
  EXPECT_FALSE(IsInsideStore(root_, outside_));
}

}  // namespace
}  // namespace hangar::catalog
