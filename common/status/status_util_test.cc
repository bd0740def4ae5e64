#include "common/status/status_util.h"

#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace hangar {
namespace {

using ::hangar::testing::IsOk;
using ::hangar::testing::StatusIs;

TEST(PrefixStatusTest, KeepsCodeAndPrefixesMessage) {
  EXPECT_THAT(PrefixStatus("model.gguf", absl::DataLossError("truncated")),
              StatusIs(absl::StatusCode::kDataLoss, "model.gguf: truncated"));
}

TEST(PrefixStatusTest, Nests) {
  absl::Status inner =
      PrefixStatus("prompt", absl::InvalidArgumentError("must not be empty"));
  EXPECT_THAT(PrefixStatus("sequences[2]", inner),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "sequences[2]: prompt: must not be empty"));
}

TEST(PrefixStatusTest, OkStaysOk) {
  EXPECT_THAT(PrefixStatus("anything", absl::OkStatus()), IsOk());
}

TEST(PrefixStatusTest, EmptyPrefixLeavesStatusAlone) {
  EXPECT_THAT(PrefixStatus("", absl::NotFoundError("x")),
              StatusIs(absl::StatusCode::kNotFound, "x"));
}

TEST(InvalidFieldTest, NamesFieldAndRule) {
  EXPECT_THAT(InvalidField("page_size", "must be in [0, 1000]; was -3"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "page_size: must be in [0, 1000]; was -3"));
}

}  // namespace
}  // namespace hangar
