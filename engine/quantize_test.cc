#include "engine/quantize.h"

#include <atomic>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "engine/batch_decoder.h"
#include "engine/file_util.h"
#include "engine/model.h"
#include "engine/safetensors.h"
#include "engine/test_util.h"
#include "engine/tiny_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::engine {
namespace {

using ::hangar::engine::testing::MakeTempDir;
using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;

struct Case {
  std::string engine, quantization, linear_dtype, other_dtype, weight_dtype;
  double max_error;  // bound on max |logit error| for the tiny model
};

class QuantizeTest : public ::testing::TestWithParam<Case> {
 protected:
  static void SetUpTestSuite() {
    source_ = new std::string(MakeTempDir("qsource"));
    TinyModelOptions o;
    o.num_layers = 2;
    ASSERT_OK(WriteTinyModel(o, *source_));
  }
  static std::string* source_;
};
std::string* QuantizeTest::source_ = nullptr;

TEST_P(QuantizeTest, WritesALoadableArtifactWithManifest) {
  const Case& c = GetParam();
  std::string out = MakeTempDir("artifact") + "/" + c.quantization;
  std::vector<std::string> stages;
  ASSERT_OK_AND_ASSIGN(
      QuantizeReport report,
      QuantizeModel({.source_dir = *source_,
                     .output_dir = out,
                     .engine = c.engine,
                     .quantization = c.quantization,
                     .threads = 1,
                     .progress = [&](double, const std::string& s) {
                       stages.push_back(s);
                     }}));
  EXPECT_EQ(stages.back(), "done");
  EXPECT_LE(report.max_abs_logit_error, c.max_error);
  EXPECT_LE(report.mean_abs_logit_error, report.max_abs_logit_error);
  EXPECT_GT(report.tokens_compared, 10);
  ASSERT_OK_AND_ASSIGN(std::string sha,
                       Sha256OfFiles({*source_ + "/model.safetensors"}));
  EXPECT_EQ(report.source_sha256, sha);

  // Tensors follow the naming convention.
  ASSERT_OK_AND_ASSIGN(auto st,
                       SafetensorsFile::Open(out + "/model.safetensors"));
  const SafetensorsTensor* q =
      st->Find("model.layers.0.self_attn.q_proj.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->dtype, c.linear_dtype);
  EXPECT_EQ(st->Find("model.layers.0.input_layernorm.weight")->dtype,
            c.other_dtype);
  EXPECT_EQ(st->Find("model.embed_tokens.weight")->dtype, c.other_dtype);
  bool scaled = c.linear_dtype == "I8" || c.linear_dtype == "I16" ||
                c.linear_dtype == "F8_E4M3";
  const SafetensorsTensor* scale =
      st->Find("model.layers.0.self_attn.q_proj.weight_scale");
  ASSERT_EQ(scale != nullptr, scaled);
  if (scaled) {
    EXPECT_EQ(scale->dtype, "F32");
    EXPECT_EQ(scale->shape, std::vector<int64_t>{q->shape[0]});
  }

  // The manifest.
  ASSERT_OK_AND_ASSIGN(std::string text,
                       ReadFileToString(out + "/hangar_manifest.json"));
  auto m = nlohmann::json::parse(text);
  EXPECT_EQ(m["recipe"]["engine"], c.engine);
  EXPECT_EQ(m["recipe"]["quantization"], c.quantization);
  EXPECT_EQ(m["source"]["sha256"], sha);
  EXPECT_EQ(m["size_bytes"].get<int64_t>(), report.size_bytes);
  EXPECT_DOUBLE_EQ(m["quality"]["max_abs_logit_error"].get<double>(),
                   report.max_abs_logit_error);
  EXPECT_TRUE(FileExists(out + "/tokenizer.json"));
  EXPECT_TRUE(FileExists(out + "/generation_config.json"));

  // The engine loads and runs it.
  ASSERT_OK_AND_ASSIGN(auto model, Model::Load(out, {.threads = 1}));
  EXPECT_EQ(model->info().weight_dtype, c.weight_dtype);
  EXPECT_EQ(model->info().quantization, c.engine + ":" + c.quantization);
  ASSERT_OK_AND_ASSIGN(auto d,
                       BatchDecoder::Create(model.get(), {.max_batch = 1}));
  SamplingParams p;
  p.temperature = 0;
  p.max_new_tokens = 4;
  p.ignore_eos = true;
  ASSERT_OK(d->Add({*model->tokenizer().Encode("The pilot"), p}).status());
  int tokens = 0;
  while (d->HasWork()) {
    ASSERT_OK_AND_ASSIGN(auto events, d->Step());
    for (const auto& e : events) tokens += e.token >= 0;
  }
  EXPECT_EQ(tokens, 4);
}

INSTANTIATE_TEST_SUITE_P(
    Recipes, QuantizeTest,
    ::testing::Values(
        Case{"CTRANSLATE2", "int8", "I8", "F32", "int8", 0.15},
        Case{"CTRANSLATE2", "int8_float32", "I8", "F32", "int8", 0.15},
        Case{"CTRANSLATE2", "int8_float16", "I8", "F16", "int8", 0.15},
        Case{"CTRANSLATE2", "int8_bfloat16", "I8", "BF16", "int8", 0.3},
        Case{"CTRANSLATE2", "int16", "I16", "F32", "int16", 1e-3},
        Case{"CTRANSLATE2", "float16", "F16", "F16", "float16", 0.02},
        Case{"CTRANSLATE2", "bfloat16", "BF16", "BF16", "bfloat16", 0.3},
        Case{"CTRANSLATE2", "float32", "F32", "F32", "float32", 0.0},
        Case{"VLLM", "float16", "F16", "F16", "float16", 0.02},
        Case{"VLLM", "float32", "F32", "F32", "float32", 0.0},
        Case{"VLLM", "fp8", "F8_E4M3", "BF16", "fp8_e4m3", 1.0}),
    [](const auto& info) {
      return info.param.engine + "_" + info.param.quantization;
    });

TEST(QuantizeRecipeTest, RejectsUnknownRecipes) {
  EXPECT_THAT(ValidateRecipe("TENSORRT", "int8"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("engine: must be CTRANSLATE2 or VLLM")));
  EXPECT_THAT(ValidateRecipe("VLLM", "int8"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("quantization: must be one of")));
  EXPECT_OK(ValidateRecipe("ctranslate2", "int8_bfloat16"));
  EXPECT_THAT(QuantizeModel({.source_dir = "/nonexistent",
                             .output_dir = "/tmp/x",
                             .engine = "VLLM",
                             .quantization = "fp8"}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent")));
}

}  // namespace
}  // namespace hangar::engine

namespace hangar::engine {
namespace {

TEST(QuantizeTiedTest, TiedSourceGetsAQuantizedUntiedLmHead) {
  std::string src = ::hangar::engine::testing::MakeTempDir("tied");
  TinyModelOptions o;
  o.num_layers = 1;
  o.tie_word_embeddings = true;
  ASSERT_OK(WriteTinyModel(o, src));
  std::string out = src + "-int8";
  ASSERT_OK_AND_ASSIGN(QuantizeReport r,
                       QuantizeModel({.source_dir = src,
                                      .output_dir = out,
                                      .engine = "CTRANSLATE2",
                                      .quantization = "int8_float16",
                                      .threads = 1}));
  EXPECT_LT(r.max_abs_logit_error, 0.3);
  ASSERT_OK_AND_ASSIGN(auto st,
                       SafetensorsFile::Open(out + "/model.safetensors"));
  ASSERT_NE(st->Find("lm_head.weight"), nullptr);
  EXPECT_EQ(st->Find("lm_head.weight")->dtype, "I8");
  EXPECT_EQ(st->Find("model.embed_tokens.weight")->dtype, "F16");
  ASSERT_OK_AND_ASSIGN(auto model, Model::Load(out, {.threads = 1}));
  EXPECT_FALSE(model->config().tie_word_embeddings);
  EXPECT_EQ(model->info().weight_dtype, "int8");
}

}  // namespace
}  // namespace hangar::engine

namespace hangar::engine {
namespace {

class QuantizeStreamingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    source_ = ::hangar::engine::testing::MakeTempDir("stream");
    TinyModelOptions o;
    o.num_layers = 1;
    ASSERT_OK(WriteTinyModel(o, source_));
  }
  std::string source_;
};

TEST_F(QuantizeStreamingTest, ReportsCountsQualityAndTheEstimatedSize) {
  std::string out = source_ + "-int8";
  std::vector<QuantizeProgress> seen;
  ASSERT_OK_AND_ASSIGN(
      QuantizeReport r,
      QuantizeModel({.source_dir = source_,
                     .output_dir = out,
                     .engine = "CTRANSLATE2",
                     .quantization = "int8",
                     .threads = 1,
                     .tensor_progress = [&](const QuantizeProgress& p) {
                       seen.push_back(p);
                     }}));
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.front().stage, "planning");
  EXPECT_EQ(seen.back().stage, "done");
  const QuantizeProgress& last = seen.back();
  EXPECT_GT(last.tensors_total, 0);
  EXPECT_EQ(last.tensors_done, last.tensors_total);
  EXPECT_EQ(last.bytes_written, last.bytes_total);
  ASSERT_OK_AND_ASSIGN(int64_t file_size, FileSize(out + "/model.safetensors"));
  EXPECT_EQ(last.bytes_written, file_size);
  EXPECT_EQ(r.weight_bytes, file_size);
  ASSERT_OK_AND_ASSIGN(int64_t estimate, EstimateArtifactWeightBytes(
                                             source_, "CTRANSLATE2", "int8"));
  EXPECT_EQ(estimate, file_size);
  // Tensor counts only grow.
  for (size_t i = 1; i < seen.size(); ++i)
    EXPECT_GE(seen[i].tensors_done, seen[i - 1].tensors_done);

  // One layer: the float32 embedding table is a large part of the weights.
  EXPECT_GT(r.size_ratio, 0.25);
  EXPECT_LT(r.size_ratio, 0.6);
  EXPECT_GE(r.mean_kl, 0);
  EXPECT_LT(r.mean_kl, 0.01);
  EXPECT_EQ(r.prompts, 3);
  EXPECT_EQ(r.greedy_tokens_compared, 3 * 32);
  EXPECT_GE(r.greedy_agreement, 0.8);
  EXPECT_LE(r.greedy_agreement, 1.0);
  auto m =
      nlohmann::json::parse(*ReadFileToString(out + "/hangar_manifest.json"));
  EXPECT_DOUBLE_EQ(m["quality"]["greedy_agreement"].get<double>(),
                   r.greedy_agreement);
  EXPECT_DOUBLE_EQ(m["quality"]["size_ratio"].get<double>(), r.size_ratio);
}

TEST_F(QuantizeStreamingTest, Float32IsExactAndAgreesEverywhere) {
  ASSERT_OK_AND_ASSIGN(QuantizeReport r,
                       QuantizeModel({.source_dir = source_,
                                      .output_dir = source_ + "-f32",
                                      .engine = "VLLM",
                                      .quantization = "float32",
                                      .threads = 1}));
  EXPECT_EQ(r.max_abs_logit_error, 0);
  EXPECT_EQ(r.mean_kl, 0);
  EXPECT_EQ(r.greedy_agreement, 1.0);
  EXPECT_NEAR(r.size_ratio, 1.0, 0.01);
}

TEST_F(QuantizeStreamingTest, CancelStopsBetweenTensors) {
  std::atomic<bool> cancel{false};
  int converted = 0;
  auto result =
      QuantizeModel({.source_dir = source_,
                     .output_dir = source_ + "-cancel",
                     .engine = "CTRANSLATE2",
                     .quantization = "int8",
                     .threads = 1,
                     .tensor_progress =
                         [&](const QuantizeProgress& p) {
                           if (p.stage == "converting" && ++converted == 2)
                             cancel = true;
                         },
                     .cancel = &cancel});
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kCancelled,
                               HasSubstr("cancelled after")));
  EXPECT_LE(converted, 3);
}

TEST_F(QuantizeStreamingTest, ShortDiskFailsWithTheNumbersBeforeWriting) {
  std::string out = source_ + "-full";
  auto result = QuantizeModel({.source_dir = source_,
                               .output_dir = out,
                               .engine = "CTRANSLATE2",
                               .quantization = "int8",
                               .threads = 1,
                               .disk_margin_bytes = int64_t{1} << 62});
  EXPECT_THAT(result,
              StatusIs(absl::StatusCode::kResourceExhausted,
                       ::testing::AllOf(HasSubstr("need "), HasSubstr("have "),
                                        HasSubstr("artifact "))));
  EXPECT_FALSE(FileExists(out + "/model.safetensors"));
}

}  // namespace
}  // namespace hangar::engine

namespace hangar::engine {
namespace {

TEST(QuantizeSourceDtypeTest, HalfPrecisionSourcesConvertToEveryKindOfTarget) {
  for (const char* source_dtype : {"F16", "BF16"}) {
    std::string src = ::hangar::engine::testing::MakeTempDir("half");
    TinyModelOptions o;
    o.num_layers = 1;
    o.dtype = source_dtype;
    ASSERT_OK(WriteTinyModel(o, src));
    for (const char* q : {"float16", "bfloat16", "fp8", "float32"}) {
      SCOPED_TRACE(std::string(source_dtype) + " -> " + q);
      ASSERT_OK_AND_ASSIGN(QuantizeReport r,
                           QuantizeModel({.source_dir = src,
                                          .output_dir = src + "-" + q,
                                          .engine = "VLLM",
                                          .quantization = q,
                                          .threads = 1,
                                          .greedy_tokens = 4}));
      // Same storage type as the source: the bytes as they were.
      const bool same =
          (std::string(q) == "float16" && std::string(source_dtype) == "F16") ||
          (std::string(q) == "bfloat16" && std::string(source_dtype) == "BF16");
      if (same) {
        EXPECT_EQ(r.max_abs_logit_error, 0) << source_dtype << " -> " << q;
      }
      if (std::string(q) == "float32") {
        EXPECT_EQ(r.max_abs_logit_error, 0)
            << source_dtype << " -> float32 widens exactly";
      }
      EXPECT_LT(r.max_abs_logit_error, 1.0) << source_dtype << " -> " << q;
    }
  }
}

}  // namespace
}  // namespace hangar::engine
