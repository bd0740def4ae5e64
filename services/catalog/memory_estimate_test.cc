#include "services/catalog/memory_estimate.h"

#include <utility>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace hangar::catalog {
namespace {

using ::hangar::testing::IsOk;
using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;

ArchitectureSpec Spec(const char* architecture, int64_t layers, int64_t hidden,
                      int64_t heads, int64_t kv_heads, int64_t intermediate,
                      int64_t vocab, bool tied, int64_t context = 4096) {
  nlohmann::json config = {{"architectures", {architecture}},
                           {"num_hidden_layers", layers},
                           {"hidden_size", hidden},
                           {"num_attention_heads", heads},
                           {"num_key_value_heads", kv_heads},
                           {"intermediate_size", intermediate},
                           {"vocab_size", vocab},
                           {"max_position_embeddings", context},
                           {"tie_word_embeddings", tied}};
  absl::StatusOr<ArchitectureSpec> spec = ArchitectureSpecFromConfig(config);
  EXPECT_THAT(spec, IsOk());
  return spec.ok() ? *spec : ArchitectureSpec{};
}

// Parameter counts as Hugging Face reports them for the real checkpoints.
TEST(ParameterCountTest, MatchesPublishedModels) {
  // HuggingFaceTB/SmolLM2-135M: 134,515,008.
  EXPECT_EQ(ParameterCount(
                Spec("LlamaForCausalLM", 30, 576, 9, 3, 1536, 49152, true)),
            134'515'008);
  // meta-llama/Llama-3.1-8B: 8,030,261,248.
  EXPECT_EQ(ParameterCount(Spec("LlamaForCausalLM", 32, 4096, 32, 8, 14336,
                                128256, false)),
            8'030'261'248);
  // TinyLlama-1.1B: 1,100,048,384.
  EXPECT_EQ(ParameterCount(
                Spec("LlamaForCausalLM", 22, 2048, 32, 4, 5632, 32000, false)),
            1'100'048'384);
  // Qwen/Qwen2.5-0.5B (q/k/v biases, tied embeddings): 494,032,768.
  EXPECT_EQ(ParameterCount(
                Spec("Qwen2ForCausalLM", 24, 896, 14, 2, 4864, 151936, true)),
            494'032'768);
  // mistralai/Mistral-7B-v0.1: 7,241,732,096.
  EXPECT_EQ(ParameterCount(Spec("MistralForCausalLM", 32, 4096, 32, 8, 14336,
                                32000, false)),
            7'241'732'096);
}

TEST(WeightBytesTest, FloatLayoutsScaleWithElementSize) {
  ArchitectureSpec spec =
      Spec("LlamaForCausalLM", 30, 576, 9, 3, 1536, 49152, true);
  const int64_t params = ParameterCount(spec);
  EXPECT_EQ(WeightBytes(spec, {"float32", "float32", "float32"}), 4 * params);
  EXPECT_EQ(WeightBytes(spec, {"bfloat16", "bfloat16", "bfloat16"}),
            2 * params);
}

TEST(WeightBytesTest, Int8AddsOneScalePerRowAndKeepsOthersInSuffixType) {
  // One layer, no MLP rows to speak of: easy to count by hand.
  ArchitectureSpec spec = Spec("LlamaForCausalLM", 1, 8, 2, 1, 16, 10, true);
  // Projections: q 8x8, k 4x8, v 4x8, o 8x8, gate 16x8, up 16x8, down 8x16.
  const int64_t projection = 64 + 32 + 32 + 64 + 128 + 128 + 128;
  const int64_t rows = 8 + 4 + 4 + 8 + 16 + 16 + 8;
  const int64_t other = 10 * 8 + 2 * 8 + 8;  // embeddings + norms
  EXPECT_EQ(ParameterCount(spec), projection + other);
  EXPECT_EQ(
      WeightBytes(spec, LayoutForRecipe(
                            [] {
                              v1::OptimizationRecipe r;
                              r.set_engine(v1::ENGINE_CTRANSLATE2);
                              r.set_quantization(v1::QUANTIZATION_INT8_FLOAT16);
                              return r;
                            }(),
                            "bfloat16")),
      projection * 1 + rows * 4 + other * 2);
}

// GGUF block types weigh one block's bytes per its elements (the ggml
// layouts: q8_0 34 bytes per 32, q4_0 18 per 32, q4_k 144, q5_k 176 and
// q6_k 210 per 256), not 0.
TEST(ElementSizeTest, SizesGgufBlockTypes) {
  const std::pair<const char*, ElementSize> want[] = {
      {"float32", {4, 1}},  {"bfloat16", {2, 1}}, {"int8", {1, 1}},
      {"fp8", {1, 1}},      {"q8_0", {34, 32}},   {"q4_0", {18, 32}},
      {"q4_k", {144, 256}}, {"q5_k", {176, 256}}, {"q6_k", {210, 256}}};
  for (const auto& [dtype, size] : want) {
    EXPECT_EQ(ElementSizeOf(dtype).bytes, size.bytes) << dtype;
    EXPECT_EQ(ElementSizeOf(dtype).elements, size.elements) << dtype;
  }
  EXPECT_EQ(ElementSizeOf("float64").bytes, 0);
  EXPECT_EQ(StorageBytes("q4_k", 4096 * 4096), 4096 * 4096 / 256 * 144);
  EXPECT_EQ(StorageBytes("q8_0", 64), 68);
  EXPECT_EQ(StorageBytes("float16", 10), 20);
  EXPECT_EQ(ElementBytes("q4_k"), 0);  // not a whole number of bytes
  EXPECT_EQ(ElementBytes("int16"), 2);
  EXPECT_TRUE(IsBlockDtype("q6_k"));
  EXPECT_FALSE(IsBlockDtype("float32"));
}

// A model published as GGUF Q4_K weighs 4.5 bits per weight, runs with a
// float32 KV cache on the built-in engine, and weighs less than Q8_0 which
// weighs less than bfloat16.
TEST(WeightBytesTest, GgufBlockTypesWeighTheirBlocks) {
  ArchitectureSpec spec =
      Spec("LlamaForCausalLM", 30, 576, 9, 3, 1536, 49152, true);
  const int64_t params = ParameterCount(spec);
  const int64_t q4k = WeightBytes(spec, {"q4_k", "q4_k", "float32"});
  EXPECT_GT(q4k, 0);
  EXPECT_NEAR(double(q4k), double(params) * 144 / 256, 144.0);
  const int64_t q8 = WeightBytes(spec, {"q8_0", "q8_0", "float32"});
  EXPECT_NEAR(double(q8), double(params) * 34 / 32, 34.0);
  EXPECT_LT(q4k, q8);
  EXPECT_LT(q8, WeightBytes(spec, {"bfloat16", "bfloat16", "bfloat16"}));
  v1::OptimizationRecipe none;
  none.set_engine(v1::ENGINE_NONE);
  const WeightLayout layout = LayoutForRecipe(none, "q4_k");
  EXPECT_EQ(layout.projection_dtype, "q4_k");
  EXPECT_EQ(layout.kv_dtype, "float32");
  EXPECT_EQ(MinGpuMemoryBytes(spec, none, "q4_k", 2048),
            q4k + KvCacheBytes(spec, 2048, 4) + kRuntimeOverheadBytes);
}

TEST(MinGpuMemoryTest, IsWeightsPlusFullContextKvCachePlusOverhead) {
  ArchitectureSpec spec =
      Spec("LlamaForCausalLM", 32, 4096, 32, 8, 14336, 128256, false, 131072);
  v1::OptimizationRecipe none;
  none.set_engine(v1::ENGINE_NONE);
  const int64_t weights = 2 * ParameterCount(spec);
  // K and V: 2 x 32 layers x 8 heads x 128 dims x 131072 tokens x 2 bytes.
  const int64_t kv = int64_t{2} * 32 * 8 * 128 * 131072 * 2;
  EXPECT_EQ(MinGpuMemoryBytes(spec, none, "bfloat16", 131072),
            weights + kv + kRuntimeOverheadBytes);
  v1::OptimizationRecipe fp8;
  fp8.set_engine(v1::ENGINE_VLLM);
  fp8.set_quantization(v1::QUANTIZATION_FP8);
  EXPECT_LT(MinGpuMemoryBytes(spec, fp8, "bfloat16", 131072),
            MinGpuMemoryBytes(spec, none, "bfloat16", 131072));
}

TEST(ArchitectureSpecTest, RefusesUnsupportedArchitectureNamingIt) {
  nlohmann::json config = {{"architectures", {"GPT2LMHeadModel"}}};
  EXPECT_THAT(
      ArchitectureSpecFromConfig(config),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("unsupported architecture \"GPT2LMHeadModel\"")));
}

TEST(ArchitectureSpecTest, NamesMissingAndBadFields) {
  nlohmann::json config = {{"architectures", {"LlamaForCausalLM"}},
                           {"num_hidden_layers", 2}};
  EXPECT_THAT(ArchitectureSpecFromConfig(config),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"hidden_size\"")));
  ArchitectureSpec spec =
      Spec("LlamaForCausalLM", 2, 64, 4, 2, 128, 512, false);
  spec.num_key_value_heads = 3;
  EXPECT_THAT(ValidateArchitectureSpec(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("multiple of num_key_value_heads")));
}

TEST(FillComputedFieldsTest, ListsEveryRecipeOfTheEngines) {
  ArchitectureSpec spec =
      Spec("LlamaForCausalLM", 2, 64, 4, 2, 128, 512, false);
  v1::Model model;
  model.set_default_dtype("float32");
  model.set_context_length(512);
  FillComputedFields(
      spec, {v1::ENGINE_NONE, v1::ENGINE_CTRANSLATE2, v1::ENGINE_VLLM}, &model);
  EXPECT_EQ(model.parameter_count(), ParameterCount(spec));
  EXPECT_EQ(model.supported_recipes_size(), 1 + 8 + 4);
  EXPECT_EQ(model.weight_sizes_size(), 6);
  for (const v1::RecipeSupport& support : model.supported_recipes()) {
    EXPECT_GT(support.min_gpu_memory_bytes(), kRuntimeOverheadBytes);
  }
}

}  // namespace
}  // namespace hangar::catalog
