#include "services/optimizer/recipes.h"

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::optimizer {
namespace {

using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;

TEST(RecipesTest, ParsesEngineCaseInsensitivelyAndRejectsUnknownPairs) {
  ASSERT_OK_AND_ASSIGN(RecipeName r, ParseRecipe("ctranslate2/int8_float16"));
  EXPECT_EQ(r.engine, "CTRANSLATE2");
  EXPECT_EQ(r.quantization, "int8_float16");
  EXPECT_EQ(r.ToString(), "CTRANSLATE2/int8_float16");
  EXPECT_EQ(r.Slug(), "ctranslate2-int8_float16");
  EXPECT_THAT(ParseRecipe("CTRANSLATE2/fp8"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("quantization: must be one of")));
  EXPECT_THAT(ParseRecipe("int8"), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("ENGINE/quantization")));
  EXPECT_THAT(
      ParseRecipe("TENSORRT/int8"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("engine:")));
}

TEST(RecipesTest, EveryRecipeIsValidAndHasAPositiveBound) {
  std::vector<RecipeName> all = AllRecipes();
  EXPECT_EQ(all.size(), 12u);
  for (const RecipeName& r : all) {
    EXPECT_OK(ParseRecipe(r.ToString()).status()) << r.ToString();
    EXPECT_GT(MaxLogitErrorBound(r), 0) << r.ToString();
  }
  // Narrower types get tighter bounds.
  EXPECT_LT(MaxLogitErrorBound({"VLLM", "float32"}),
            MaxLogitErrorBound({"VLLM", "float16"}));
  EXPECT_LT(MaxLogitErrorBound({"CTRANSLATE2", "int16"}),
            MaxLogitErrorBound({"CTRANSLATE2", "int8"}));
  EXPECT_LT(MaxLogitErrorBound({"CTRANSLATE2", "int8"}),
            MaxLogitErrorBound({"VLLM", "fp8"}));
}

}  // namespace
}  // namespace hangar::optimizer
