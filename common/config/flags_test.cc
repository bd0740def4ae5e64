#include "common/config/flags.h"

#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_FLAG(int, test_port, 7101, "a port");
ABSL_FLAG(std::string, test_db, "", "a conninfo");
ABSL_FLAG(std::optional<int>, test_limit, std::nullopt, "an optional limit");

namespace hangar {
namespace {

using ::hangar::testing::IsOk;
using ::hangar::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

class FlagsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::SetFlag(&FLAGS_test_port, 7101);
    absl::SetFlag(&FLAGS_test_db, "");
  }
};

TEST_F(FlagsTest, ServiceSpecificVariableWinsOverGenericOne) {
  EXPECT_THAT(ApplyEnvironmentToFlags("HANGAR_CATALOG_",
                                      {{"HANGAR_CATALOG_TEST_PORT", "9000"},
                                       {"HANGAR_TEST_PORT", "8000"},
                                       {"HANGAR_TEST_DB", "host=x"}}),
              IsOk());
  EXPECT_EQ(absl::GetFlag(FLAGS_test_port), 9000);
  EXPECT_EQ(absl::GetFlag(FLAGS_test_db), "host=x");
}

TEST_F(FlagsTest, UnsetVariablesKeepDefaults) {
  EXPECT_THAT(ApplyEnvironmentToFlags("HANGAR_CATALOG_", {{"OTHER", "1"}}),
              IsOk());
  EXPECT_EQ(absl::GetFlag(FLAGS_test_port), 7101);
}

TEST_F(FlagsTest, MalformedValueNamesTheVariableAndFlag) {
  EXPECT_THAT(ApplyEnvironmentToFlags(
                  "HANGAR_CATALOG_", {{"HANGAR_CATALOG_TEST_PORT", "seventy"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("HANGAR_CATALOG_TEST_PORT"),
                             HasSubstr("--test_port"))));
}

TEST_F(FlagsTest, HelpListsTheProgramsFlagsWithDefaultsAndVariables) {
  const std::string help = FlagsHelp("HANGAR_CATALOG_", "hangar-catalog");
  EXPECT_THAT(help, HasSubstr("usage: hangar-catalog"));
  EXPECT_THAT(help, HasSubstr("  --test_port (default 7101; env "
                              "HANGAR_CATALOG_TEST_PORT or HANGAR_TEST_PORT)\n"
                              "      a port\n"));
  EXPECT_THAT(help, HasSubstr("  --test_db (default \"\";"));
  // An optional flag without a default says so, not "(default ;".
  EXPECT_THAT(help, HasSubstr("  --test_limit (default unset; env "
                              "HANGAR_CATALOG_TEST_LIMIT"));
  // Abseil's own flags are for --helpfull.
  EXPECT_THAT(help, Not(HasSubstr("--flagfile")));
  EXPECT_THAT(help, Not(HasSubstr("No flags matched")));
  // Sorted by name.
  EXPECT_LT(help.find("--test_db"), help.find("--test_port"));
}

}  // namespace
}  // namespace hangar
