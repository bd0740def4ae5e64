// The catalog reads what the engine writes: a model directory and GGUF
// files from engine/tiny_model.h import with the architecture numbers and
// parameter count the curated "hangar/tiny-random-llama" entry computes.
#include <filesystem>

#include "engine/tiny_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/catalog/catalog_test_base.h"

namespace hangar::testing {
namespace {

using ::testing::HasSubstr;

TEST_F(CatalogTest, EngineTinyModelMatchesTheCuratedEntry) {
  v1::Model curated;
  ASSERT_TRUE(Get("hangar/tiny-random-llama", &curated).ok());
  absl::StatusOr<engine::TinyModelOptions> preset =
      engine::TinyModelPreset("tiny");
  ASSERT_TRUE(preset.ok()) << preset.status();
  const std::string dir = local_root_ + "/tiny-random-llama";
  ASSERT_TRUE(engine::WriteTinyModel(*preset, dir).ok());

  v1::Preparation preparation;
  ASSERT_TRUE(Prepare("hangar/tiny-random-llama", &preparation).ok());
  EXPECT_EQ(preparation.state(), v1::PREPARATION_STATE_PREPARED);

  v1::ImportModelRequest request;
  request.mutable_local()->set_path("tiny-random-llama");
  v1::Model model;
  ASSERT_TRUE(Import(request, &model).ok());
  model = WaitForState("local/tiny-random-llama", v1::MODEL_STATE_READY);
  ASSERT_EQ(model.state(), v1::MODEL_STATE_READY) << model.failure_reason();
  EXPECT_EQ(model.parameter_count(), curated.parameter_count());
  EXPECT_EQ(model.context_length(), curated.context_length());
  EXPECT_EQ(model.default_dtype(), curated.default_dtype());
  ASSERT_EQ(model.supported_recipes_size(), curated.supported_recipes_size());
  for (int i = 0; i < model.supported_recipes_size(); ++i) {
    EXPECT_EQ(model.supported_recipes(i).min_gpu_memory_bytes(),
              curated.supported_recipes(i).min_gpu_memory_bytes());
  }

  for (const char* type : {"f32", "q8_0"}) {
    const std::string gguf = local_root_ + "/tiny-" + type + ".gguf";
    ASSERT_TRUE(engine::ConvertToGguf(dir, gguf, type).ok());
    request.mutable_local()->set_path(gguf);
    ASSERT_TRUE(Import(request, &model).ok());
    model = WaitForState(model.name(), v1::MODEL_STATE_READY);
    ASSERT_EQ(model.state(), v1::MODEL_STATE_READY) << model.failure_reason();
    EXPECT_EQ(model.architecture(), "LlamaForCausalLM");
    EXPECT_EQ(model.parameter_count(), curated.parameter_count()) << type;
    EXPECT_EQ(model.context_length(), curated.context_length());
  }
}

}  // namespace
}  // namespace hangar::testing
