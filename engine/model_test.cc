#include "engine/model.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/testing/status_matchers.h"
#include "engine/file_util.h"
#include "engine/test_util.h"
#include "engine/tiny_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::engine {
namespace {

using ::hangar::engine::testing::AllPositionLogits;
using ::hangar::engine::testing::MakeTempDir;
using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;

// Logits of every position, from the NumPy reference (float64).
std::vector<std::vector<float>> ReferenceLogits(const std::string& dir,
                                                const std::vector<int>& ids) {
  std::string cmd =
      absl::StrCat("/usr/bin/python3 ", HANGAR_ENGINE_TESTDATA_DIR,
                   "/reference_forward.py ", dir, " ", absl::StrJoin(ids, ","));
  FILE* p = ::popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  EXPECT_EQ(::pclose(p), 0) << cmd;
  auto j = nlohmann::json::parse(out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << out.substr(0, 200);
  return j.get<std::vector<std::vector<float>>>();
}

double MaxDiff(const std::vector<std::vector<float>>& a,
               const std::vector<std::vector<float>>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    EXPECT_EQ(a[i].size(), b[i].size());
    for (size_t k = 0; k < a[i].size() && k < b[i].size(); ++k)
      m = std::max(m, std::fabs(double(a[i][k]) - b[i][k]));
  }
  return m;
}

const std::vector<int> kIds = {0, 17, 250, 3, 99, 300, 42, 7, 128, 64, 1, 400};

struct Variant {
  std::string name;
  TinyModelOptions options;
};

class ReferenceTest : public ::testing::TestWithParam<Variant> {};

TEST_P(ReferenceTest, ForwardMatchesNumpy) {
  std::string dir = MakeTempDir(GetParam().name);
  ASSERT_OK(WriteTinyModel(GetParam().options, dir));
  ASSERT_OK_AND_ASSIGN(auto model, Model::Load(dir, {.threads = 2}));
  auto got = AllPositionLogits(*model, kIds);
  auto want = ReferenceLogits(dir, kIds);
  EXPECT_LT(MaxDiff(got, want), 2e-3);
  // The logits are not degenerate.
  double spread = 0;
  for (float v : want[5]) spread = std::max(spread, std::fabs(double(v)));
  EXPECT_GT(spread, 0.5);
}

TinyModelOptions Opts(std::string arch, std::string dtype, bool tie,
                      int kv_heads) {
  TinyModelOptions o;
  o.architecture = arch;
  o.dtype = dtype;
  o.tie_word_embeddings = tie;
  o.num_kv_heads = kv_heads;
  o.num_layers = 2;
  o.vocab_size = 512;
  return o;
}

INSTANTIATE_TEST_SUITE_P(
    Variants, ReferenceTest,
    ::testing::Values(Variant{"llama_gqa_f32", Opts("llama", "F32", false, 2)},
                      Variant{"llama_mha_tied_bf16",
                              Opts("llama", "BF16", true, 4)},
                      Variant{"qwen2_bias_f16", Opts("qwen2", "F16", true, 1)}),
    [](const auto& info) { return info.param.name; });

TEST(ModelTest, InfoDescribesTheModel) {
  std::string dir = MakeTempDir("info");
  ASSERT_OK(WriteTinyModel({}, dir));
  ASSERT_OK_AND_ASSIGN(auto model,
                       Model::Load(dir, {.threads = 1, .max_context = 100}));
  const ModelInfo& info = model->info();
  EXPECT_EQ(info.format, "huggingface");
  EXPECT_EQ(info.architecture, "llama");
  EXPECT_EQ(info.weight_dtype, "float32");
  EXPECT_EQ(info.quantization, "float32");
  EXPECT_EQ(info.context_length, 100);
  EXPECT_EQ(info.vocab_size, 1024);
  EXPECT_GT(info.parameters, 900'000);
  EXPECT_LT(info.parameters, 1'200'000);
  EXPECT_GT(info.weight_bytes, info.parameters * 4 - 100'000);
  EXPECT_TRUE(model->IsEos(1));
  EXPECT_EQ(model->tokenizer().bos_id(), 0);
}

class GgufTest
    : public ::testing::TestWithParam<std::pair<std::string, double>> {};

TEST_P(GgufTest, SameLogitsAsSafetensors) {
  auto [type, tolerance] = GetParam();
  std::string dir = MakeTempDir("gguf");
  TinyModelOptions o = Opts("llama", "F32", false, 2);
  ASSERT_OK(WriteTinyModel(o, dir));
  std::string gguf = dir + "/model-" + type + ".gguf";
  ASSERT_OK(ConvertToGguf(dir, gguf, type));
  ASSERT_OK_AND_ASSIGN(auto hf, Model::Load(dir, {.threads = 2}));
  ASSERT_OK_AND_ASSIGN(auto gg, Model::Load(gguf, {.threads = 2}));
  EXPECT_EQ(gg->info().format, "gguf");
  EXPECT_EQ(gg->info().weight_dtype, type == "f32"   ? "float32"
                                     : type == "f16" ? "float16"
                                                     : type);
  EXPECT_EQ(gg->config().num_kv_heads, 2);
  EXPECT_TRUE(gg->config().rope_interleaved);
  // Same tokenizer.
  ASSERT_OK_AND_ASSIGN(
      auto a, hf->tokenizer().Encode("The pilot checked the fuel, 42 times!"));
  ASSERT_OK_AND_ASSIGN(
      auto b, gg->tokenizer().Encode("The pilot checked the fuel, 42 times!"));
  EXPECT_EQ(a, b);
  auto want = AllPositionLogits(*hf, kIds), got = AllPositionLogits(*gg, kIds);
  if (type == "f32" || type == "f16") {
    EXPECT_LT(MaxDiff(got, want), tolerance);
  } else {
    // Block quantization adds noise that random weights amplify; the logits
    // must still agree closely (a wrong block layout gives ~0 correlation).
    double sxy = 0, sxx = 0, syy = 0;
    for (size_t i = 0; i < want.size(); ++i)
      for (size_t k = 0; k < want[i].size(); ++k) {
        sxy += double(want[i][k]) * got[i][k];
        sxx += double(want[i][k]) * want[i][k];
        syy += double(got[i][k]) * got[i][k];
      }
    EXPECT_GT(sxy / std::sqrt(sxx * syy), tolerance);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Types, GgufTest,
    ::testing::Values(std::make_pair(std::string("f32"), 1e-4),
                      std::make_pair(std::string("f16"), 2e-2),
                      std::make_pair(std::string("q8_0"), 0.999),
                      std::make_pair(std::string("q4_0"), 0.9)),
    [](const auto& info) { return info.param.first; });

TEST(GgufTest, Qwen2KeepsRotateHalfLayout) {
  std::string dir = MakeTempDir("gguf-qwen");
  ASSERT_OK(WriteTinyModel(Opts("qwen2", "F32", true, 2), dir));
  ASSERT_OK(ConvertToGguf(dir, dir + "/m.gguf", "f32"));
  ASSERT_OK_AND_ASSIGN(auto hf, Model::Load(dir, {.threads = 1}));
  ASSERT_OK_AND_ASSIGN(auto gg, Model::Load(dir + "/m.gguf", {.threads = 1}));
  EXPECT_FALSE(gg->config().rope_interleaved);
  EXPECT_LT(MaxDiff(AllPositionLogits(*hf, kIds), AllPositionLogits(*gg, kIds)),
            1e-4);
}

TEST(ModelTest, ShardedIndexLoads) {
  std::string dir = MakeTempDir("sharded");
  ASSERT_OK(WriteTinyModel(Opts("llama", "F32", false, 2), dir));
  ASSERT_OK_AND_ASSIGN(auto single, Model::Load(dir, {.threads = 1}));
  auto want = AllPositionLogits(*single, kIds);
  single.reset();
  ASSERT_EQ(std::rename((dir + "/model.safetensors").c_str(),
                        (dir + "/model-00001-of-00001.safetensors").c_str()),
            0);
  ASSERT_OK(WriteStringToFile(
      dir + "/model.safetensors.index.json",
      R"({"metadata": {}, "weight_map": {"model.norm.weight": "model-00001-of-00001.safetensors"}})"));
  ASSERT_OK_AND_ASSIGN(auto sharded, Model::Load(dir, {.threads = 1}));
  EXPECT_LT(MaxDiff(AllPositionLogits(*sharded, kIds), want), 1e-6);
}

TEST(ModelTest, RejectsBadInputWithClearErrors) {
  EXPECT_THAT(
      Model::Load("/nonexistent/model"),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/model")));
  std::string dir = MakeTempDir("bad");
  ASSERT_OK(WriteTinyModel(Opts("llama", "F32", false, 2), dir));
  ASSERT_OK_AND_ASSIGN(std::string config,
                       ReadFileToString(dir + "/config.json"));

  // Unsupported architecture.
  std::string gpt2 = config;
  gpt2.replace(gpt2.find("\"llama\""), 7, "\"gpt2\"");
  ASSERT_OK(WriteStringToFile(dir + "/config.json", gpt2));
  EXPECT_THAT(Model::Load(dir),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("model_type 'gpt2' is not supported")));
  ASSERT_OK(WriteStringToFile(dir + "/config.json", config));

  // Truncated weights.
  ASSERT_OK_AND_ASSIGN(std::string weights,
                       ReadFileToString(dir + "/model.safetensors"));
  ASSERT_OK(WriteStringToFile(dir + "/model.safetensors",
                              weights.substr(0, weights.size() / 2)));
  EXPECT_THAT(Model::Load(dir), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("outside the data region")));
  // Truncated header.
  ASSERT_OK(
      WriteStringToFile(dir + "/model.safetensors", weights.substr(0, 5)));
  EXPECT_THAT(Model::Load(dir), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("shorter than")));
  ASSERT_OK(WriteStringToFile(dir + "/model.safetensors", weights));

  // Wrong shape in config.
  std::string wide = config;
  wide.replace(wide.find("\"hidden_size\": 128"), 18, "\"hidden_size\": 256");
  ASSERT_OK(WriteStringToFile(dir + "/config.json", wide));
  EXPECT_THAT(Model::Load(dir), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("must have shape")));
  ASSERT_OK(WriteStringToFile(dir + "/config.json", config));

  // GGUF with an unsupported tensor type is refused by name.
  ASSERT_OK(ConvertToGguf(dir, dir + "/m.gguf", "f32"));
  ASSERT_OK_AND_ASSIGN(std::string gguf, ReadFileToString(dir + "/m.gguf"));
  EXPECT_THAT(Model::Load(dir + "/m.gguf", {}), ::hangar::testing::IsOk());
  ASSERT_OK(WriteStringToFile(dir + "/t.gguf", gguf.substr(0, 100)));
  EXPECT_THAT(Model::Load(dir + "/t.gguf"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gguf")));
}

TEST(ModelTest, ForwardValidatesRows) {
  std::string dir = MakeTempDir("rows");
  ASSERT_OK(WriteTinyModel(Opts("llama", "F32", false, 2), dir));
  ASSERT_OK_AND_ASSIGN(auto model, Model::Load(dir, {.threads = 1}));
  ASSERT_OK_AND_ASSIGN(auto state, model->NewState(2, 8, 4));
  std::vector<float> logits(size_t(model->vocab_size()));
  std::vector<ForwardRow> bad_token = {{0, 0, 100000, true}};
  EXPECT_THAT(
      model->Forward(bad_token, state.get(), logits.data()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("out of range")));
  std::vector<ForwardRow> bad_pos = {{0, 8, 1, true}};
  EXPECT_THAT(
      model->Forward(bad_pos, state.get(), logits.data()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("out of range")));
  EXPECT_THAT(model->NewState(0, 8, 4),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("slots")));
}

}  // namespace
}  // namespace hangar::engine
