#include "services/catalog/curated_models.h"

#include <set>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::catalog {
namespace {

using ::hangar::testing::IsOk;
using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;

TEST(CuratedModelsTest, ShippedFileLoadsWithEveryRequiredModel) {
  absl::StatusOr<std::vector<v1::Model>> models =
      LoadCuratedModels(HANGAR_CURATED_MODELS_PATH);
  ASSERT_THAT(models, IsOk());
  EXPECT_GE(models->size(), 30u);
  std::set<std::string> names;
  for (const v1::Model& model : *models) {
    names.insert(model.name());
    EXPECT_EQ(model.source(), v1::MODEL_SOURCE_CURATED);
    EXPECT_EQ(model.state(), v1::MODEL_STATE_READY);
    EXPECT_GT(model.parameter_count(), 0) << model.name();
    EXPECT_FALSE(model.license().empty()) << model.name();
    EXPECT_FALSE(model.supported_recipes().empty()) << model.name();
  }
  for (const char* required :
       {"HuggingFaceTB/SmolLM2-135M-Instruct",
        "HuggingFaceTB/SmolLM2-360M-Instruct",
        "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "Qwen/Qwen2.5-0.5B-Instruct",
        "meta-llama/Llama-3.1-8B-Instruct", "hangar/tiny-random-llama"}) {
    EXPECT_TRUE(names.count(required)) << required;
  }
}

TEST(CuratedModelsTest, SmallModelsRunOnCpuAndBigOnesDoNot) {
  absl::StatusOr<std::vector<v1::Model>> models =
      LoadCuratedModels(HANGAR_CURATED_MODELS_PATH);
  ASSERT_THAT(models, IsOk());
  for (const v1::Model& model : *models) {
    if (model.name() == "HuggingFaceTB/SmolLM2-135M-Instruct") {
      EXPECT_TRUE(model.runs_on_cpu());
      EXPECT_EQ(model.parameter_count(), 134'515'008);
    }
    if (model.name() == "meta-llama/Llama-3.1-70B-Instruct") {
      EXPECT_FALSE(model.runs_on_cpu());
    }
  }
}

constexpr char kValidEntry[] = R"json(
  "name": "a/b", "display_name": "B", "family": "llama", "license": "mit",
  "default_dtype": "bfloat16", "context_length": 512,
  "config": {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2,
             "hidden_size": 64, "num_attention_heads": 4,
             "num_key_value_heads": 2, "intermediate_size": 128,
             "vocab_size": 512, "max_position_embeddings": 512})json";

std::string File(const std::string& extra) {
  return std::string("{\"models\": [{") + kValidEntry + extra + "}]}";
}

TEST(CuratedModelsTest, ErrorsNameTheEntryAndTheField) {
  EXPECT_THAT(ParseCuratedModels(File(""), "f.json"), IsOk());
  EXPECT_THAT(
      ParseCuratedModels(File(", \"bogus\": 1"), "f.json"),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          HasSubstr("f.json: models[0] (\"a/b\"): \"bogus\": unknown field")));
  EXPECT_THAT(
      ParseCuratedModels(
          R"({"models": [{"name": "x/y", "display_name": "Y", "family": "llama",
               "default_dtype": "bfloat16", "context_length": 5, "config": {}}]})",
          "f.json"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("models[0] (\"x/y\"): \"license\": required")));
  EXPECT_THAT(
      ParseCuratedModels(File(", \"default_dtype\": \"int4\""), "f.json"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("default_dtype")));
  std::string twice = std::string("{\"models\": [{") + kValidEntry + "}, {" +
                      kValidEntry + "}]}";
  EXPECT_THAT(ParseCuratedModels(twice, "f.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("models[1] (\"a/b\"): \"name\": duplicate")));
  EXPECT_THAT(
      ParseCuratedModels("[", "f.json"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("f.json")));
}

TEST(CuratedModelsTest, UnsupportedArchitectureNamesEntry) {
  std::string text = File("");
  text.replace(text.find("LlamaForCausalLM"), 16, "GPT2LMHeadModel");
  EXPECT_THAT(
      ParseCuratedModels(text, "f.json"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("models[0] (\"a/b\"): unsupported architecture")));
}

}  // namespace
}  // namespace hangar::catalog
