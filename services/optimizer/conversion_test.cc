#include "services/optimizer/conversion.h"

#include <sys/mount.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "common/util/file.h"
#include "common/util/sha256.h"
#include "engine/batch_decoder.h"
#include "engine/model.h"
#include "engine/tiny_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/optimizer/converter.h"

namespace hangar::optimizer {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class ConversionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    source_ =
        new std::string(::hangar::testing::MakeTempDir("optsrc") + "/tiny");
    engine::TinyModelOptions o;
    o.num_layers = 2;
    ASSERT_OK(engine::WriteTinyModel(o, *source_));
  }
  void SetUp() override { store_ = ::hangar::testing::MakeTempDir("optstore"); }

  int Run(ConversionOptions options) {
    lines_.clear();
    return RunConversion(
        options, [&](const std::string& line) { lines_.push_back(line); });
  }
  std::string AllLines() const {
    std::string s;
    for (const auto& l : lines_) s += l + "\n";
    return s;
  }
  // Names in `store_` (temporary directories included).
  std::vector<std::string> StoreEntries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(store_))
      names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  static std::string* source_;
  std::string store_;
  std::vector<std::string> lines_;
};
std::string* ConversionTest::source_ = nullptr;

}  // namespace

// Readable test parameters.
void PrintTo(const RecipeName& r, std::ostream* os) { *os << r.ToString(); }

namespace {

class EveryRecipeTest : public ConversionTest,
                        public ::testing::WithParamInterface<RecipeName> {};

TEST_P(EveryRecipeTest, ConvertsWithinItsBoundAndTheEngineGenerates) {
  const RecipeName& recipe = GetParam();
  const std::string out = store_ + "/art-" + recipe.Slug();
  ASSERT_EQ(
      Run({.source = *source_, .recipe = recipe, .output = out, .threads = 1}),
      kExitOk)
      << AllLines();
  ParsedOutput parsed = ParseConversionOutput(AllLines());
  ASSERT_TRUE(parsed.report.has_value());
  const QualityFigures& q = *parsed.report;
  EXPECT_TRUE(q.passed);
  EXPECT_EQ(q.artifact, fs::path(out).lexically_normal().string());
  EXPECT_EQ(q.recipe, recipe.ToString());
  EXPECT_LE(q.max_abs_logit_error, MaxLogitErrorBound(recipe));
  EXPECT_EQ(q.max_abs_logit_error_bound, MaxLogitErrorBound(recipe));
  EXPECT_EQ(q.prompts, 3);
  EXPECT_GT(q.positions, 10);
  EXPECT_EQ(q.greedy_tokens, 3 * 32);
  EXPECT_GE(q.greedy_agreement, 0.5);
  EXPECT_GE(q.mean_kl, 0);
  // Size ratio follows the recipe's byte widths (the F32 embedding table
  // of this 2-layer model keeps int8 above 1/4).
  if (recipe.quantization == "float32") {
    EXPECT_NEAR(q.size_ratio, 1.0, 0.01);
  } else if (recipe.quantization == "float16" ||
             recipe.quantization == "bfloat16") {
    EXPECT_NEAR(q.size_ratio, 0.5, 0.02);
  } else {
    EXPECT_LT(q.size_ratio, 0.75);
  }
  ASSERT_TRUE(parsed.progress.has_value());
  EXPECT_EQ(parsed.progress->phase, "done");
  EXPECT_EQ(parsed.progress->tensors_done, parsed.progress->tensors_total);
  EXPECT_EQ(StoreEntries(), std::vector<std::string>{"art-" + recipe.Slug()});

  ASSERT_OK_AND_ASSIGN(auto model, engine::Model::Load(out, {.threads = 1}));
  ASSERT_OK_AND_ASSIGN(
      auto d, engine::BatchDecoder::Create(model.get(), {.max_batch = 1}));
  engine::SamplingParams p;
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

INSTANTIATE_TEST_SUITE_P(AllRecipes, EveryRecipeTest,
                         ::testing::ValuesIn(AllRecipes()),
                         [](const auto& info) {
                           std::string s = info.param.Slug();
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

TEST_F(ConversionTest, BeyondTheBoundFailsAndKeepsTheReportBesideTheTarget) {
  const std::string out = store_ + "/art";
  ASSERT_EQ(Run({.source = *source_,
                 .recipe = {"CTRANSLATE2", "int8"},
                 .output = out,
                 .max_logit_error = 1e-9,
                 .threads = 1}),
            kExitQualityGate);
  ParsedOutput parsed = ParseConversionOutput(AllLines());
  ASSERT_TRUE(parsed.report.has_value());
  EXPECT_FALSE(parsed.report->passed);
  EXPECT_GT(parsed.report->max_abs_logit_error, 1e-9);
  EXPECT_EQ(parsed.report->max_abs_logit_error_bound, 1e-9);
  EXPECT_EQ(parsed.report->artifact, "");
  // Only the report is left: no artifact, no temporary directory.
  EXPECT_EQ(StoreEntries(), std::vector<std::string>{"art.report.json"});
  ASSERT_OK_AND_ASSIGN(std::string text,
                       ReadFileToString(out + ".report.json"));
  auto j = nlohmann::json::parse(text);
  EXPECT_FALSE(j["passed"].get<bool>());
  EXPECT_DOUBLE_EQ(j["max_abs_logit_error"].get<double>(),
                   parsed.report->max_abs_logit_error);

  // A later run that passes removes the stale report.
  ASSERT_EQ(Run({.source = *source_,
                 .recipe = {"CTRANSLATE2", "int8"},
                 .output = out,
                 .threads = 1}),
            kExitOk);
  EXPECT_EQ(StoreEntries(), std::vector<std::string>{"art"});
}

TEST_F(ConversionTest, BadInputIsExit2WithOneErrorLineAndNothingWritten) {
  const std::string out = store_ + "/art";
  EXPECT_EQ(Run({.source = store_ + "/missing",
                 .recipe = {"VLLM", "fp8"},
                 .output = out}),
            kExitBadInput);
  EXPECT_THAT(ParseConversionOutput(AllLines()).error.value_or(""),
              HasSubstr("does not exist"));
  EXPECT_EQ(Run({.source = *source_,
                 .recipe = {"CTRANSLATE2", "fp8"},
                 .output = out}),
            kExitBadInput);
  EXPECT_THAT(ParseConversionOutput(AllLines()).error.value_or(""),
              HasSubstr("quantization: must be one of"));
  // A file that is not GGUF, and a GGUF file that ends after its magic.
  ASSERT_OK(WriteStringToFile(store_ + "/model.bin", "NOTGGUF"));
  EXPECT_EQ(Run({.source = store_ + "/model.bin",
                 .recipe = {"VLLM", "fp8"},
                 .output = out}),
            kExitBadInput);
  EXPECT_THAT(ParseConversionOutput(AllLines()).error.value_or(""),
              HasSubstr("not a GGUF file"));
  fs::remove(store_ + "/model.bin");
  ASSERT_OK(WriteStringToFile(store_ + "/model.gguf", "GGUF"));
  EXPECT_EQ(Run({.source = store_ + "/model.gguf",
                 .recipe = {"VLLM", "fp8"},
                 .output = out}),
            kExitBadInput);
  EXPECT_THAT(ParseConversionOutput(AllLines()).error.value_or(""),
              HasSubstr("truncated"));
  fs::remove(store_ + "/model.gguf");

  // A truncated safetensors file.
  const std::string corrupt = ::hangar::testing::MakeTempDir("corrupt") + "/m";
  fs::copy(*source_, corrupt, fs::copy_options::recursive);
  fs::resize_file(corrupt + "/model.safetensors",
                  fs::file_size(corrupt + "/model.safetensors") / 2);
  EXPECT_EQ(Run({.source = corrupt,
                 .recipe = {"CTRANSLATE2", "int8"},
                 .output = out,
                 .threads = 1}),
            kExitBadInput)
      << AllLines();
  ASSERT_TRUE(ParseConversionOutput(AllLines()).error.has_value());
  // A bad header.
  ASSERT_OK(
      WriteStringToFile(corrupt + "/model.safetensors",
                        std::string("\x10\0\0\0\0\0\0\0{not json}     ", 24)));
  EXPECT_EQ(Run({.source = corrupt,
                 .recipe = {"CTRANSLATE2", "int8"},
                 .output = out,
                 .threads = 1}),
            kExitBadInput)
      << AllLines();
  EXPECT_TRUE(StoreEntries().empty());

  // An existing output is refused and left alone.
  fs::create_directories(out);
  ASSERT_OK(WriteStringToFile(out + "/keep", "x"));
  EXPECT_EQ(Run({.source = *source_,
                 .recipe = {"CTRANSLATE2", "int8"},
                 .output = out}),
            kExitBadInput);
  EXPECT_THAT(ParseConversionOutput(AllLines()).error.value_or(""),
              HasSubstr("already exists"));
  EXPECT_TRUE(fs::exists(out + "/keep"));
}

TEST_F(ConversionTest, CancelRemovesEverythingItWrote) {
  std::atomic<bool> cancel{false};
  const std::string out = store_ + "/art";
  lines_.clear();
  int code =
      RunConversion({.source = *source_,
                     .recipe = {"CTRANSLATE2", "int8"},
                     .output = out,
                     .threads = 1,
                     .cancel = &cancel},
                    [&](const std::string& line) {
                      lines_.push_back(line);
                      if (line.find("\"converting\"") != std::string::npos)
                        cancel = true;
                    });
  EXPECT_EQ(code, kExitCancelled);
  EXPECT_THAT(ParseConversionOutput(AllLines()).error.value_or(""),
              HasSubstr("cancelled"));
  EXPECT_TRUE(StoreEntries().empty());
}

TEST_F(ConversionTest, ShortDiskIsExit4WithTheNumbers) {
  const std::string out = store_ + "/art";
  EXPECT_EQ(Run({.source = *source_,
                 .recipe = {"CTRANSLATE2", "int8"},
                 .output = out,
                 .disk_margin_bytes = int64_t{1} << 62}),
            kExitNoSpace);
  EXPECT_THAT(ParseConversionOutput(AllLines()).error.value_or(""),
              ::testing::AllOf(HasSubstr("need "), HasSubstr("have ")));
  EXPECT_TRUE(StoreEntries().empty());
}

TEST_F(ConversionTest, StaleTemporariesOfTheSameTargetAreSwept) {
  fs::create_directories(store_ + "/.art.tmp-99999");
  ASSERT_OK(
      WriteStringToFile(store_ + "/.art.tmp-99999/model.safetensors", "half"));
  fs::create_directories(store_ + "/.other.tmp-1");
  ASSERT_EQ(Run({.source = *source_,
                 .recipe = {"VLLM", "float16"},
                 .output = store_ + "/art",
                 .threads = 1}),
            kExitOk);
  EXPECT_EQ(StoreEntries(), (std::vector<std::string>{".other.tmp-1", "art"}));
}

// A small tmpfs as the store: mounted when the test runs as root, skipped
// otherwise.
class DiskFullTest : public ConversionTest {
 protected:
  void SetUp() override {
    ConversionTest::SetUp();
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a tmpfs";
    mount_ = ::hangar::testing::MakeTempDir("opttmpfs");
    if (::mount("tmpfs", mount_.c_str(), "tmpfs", 0, "size=2m") != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
    }
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_) ::umount2(mount_.c_str(), MNT_DETACH);
  }
  std::vector<std::string> MountEntries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(mount_))
      names.push_back(e.path().filename().string());
    return names;
  }
  std::string mount_;
  bool mounted_ = false;
};

TEST_F(DiskFullTest, TooSmallForTheArtifactFailsBeforeWriting) {
  // The float32 artifact (~1.7 MB) plus the default 16 MiB margin cannot fit.
  EXPECT_EQ(Run({.source = *source_,
                 .recipe = {"VLLM", "float32"},
                 .output = mount_ + "/art",
                 .threads = 1}),
            kExitNoSpace);
  EXPECT_THAT(ParseConversionOutput(AllLines()).error.value_or(""),
              ::testing::AllOf(HasSubstr("need "), HasSubstr("have "),
                               HasSubstr("opttmpfs")));
  EXPECT_TRUE(MountEntries().empty());
}

TEST_F(DiskFullTest, FullMidWriteFailsCleanly) {
  // Room at the check; then something else fills the disk.
  lines_.clear();
  bool filled = false;
  int code = RunConversion(
      {.source = *source_,
       .recipe = {"CTRANSLATE2", "int8"},
       .output = mount_ + "/art",
       .threads = 1,
       .disk_margin_bytes = 0},
      [&](const std::string& line) {
        lines_.push_back(line);
        if (!filled && line.find("\"converting\"") != std::string::npos) {
          filled = true;
          std::ofstream filler(mount_ + "/filler", std::ios::binary);
          std::string block(64 << 10, 'x');
          while (filler.write(block.data(), std::streamsize(block.size()))) {
          }
        }
      });
  EXPECT_TRUE(filled);
  EXPECT_EQ(code, kExitNoSpace) << AllLines();
  EXPECT_THAT(ParseConversionOutput(AllLines()).error.value_or(""),
              HasSubstr("write failed"));
  EXPECT_EQ(MountEntries(), std::vector<std::string>{"filler"});
}

// GGUF sources: the engine's writer (engine/tiny_model.h) turns the tiny
// model into GGUF files the way llama.cpp's converter does (dims reversed,
// Q/K rows permuted, a gpt2 vocabulary).
class GgufConversionTest : public ConversionTest {
 protected:
  std::string Gguf(const std::string& type) {
    std::string path =
        ::hangar::testing::MakeTempDir("optgguf") + "/tiny-" + type + ".gguf";
    EXPECT_OK(engine::ConvertToGguf(*source_, path, type));
    return path;
  }
  void ExpectGenerates(const std::string& dir) {
    ASSERT_OK_AND_ASSIGN(auto model, engine::Model::Load(dir, {.threads = 1}));
    EXPECT_EQ(model->info().format, "huggingface");
    ASSERT_OK_AND_ASSIGN(
        auto d, engine::BatchDecoder::Create(model.get(), {.max_batch = 1}));
    engine::SamplingParams p;
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
};

TEST_F(GgufConversionTest, Float32GgufToFloat32IsExactAfterUnpermuting) {
  // The same numbers: any mistake in the name map, the dims or the Q/K row
  // order shows as a logit error.
  const std::string gguf = Gguf("f32");
  const std::string out = store_ + "/art";
  ASSERT_EQ(Run({.source = gguf,
                 .recipe = {"CTRANSLATE2", "float32"},
                 .output = out,
                 .threads = 1}),
            kExitOk)
      << AllLines();
  const QualityFigures q = *ParseConversionOutput(AllLines()).report;
  EXPECT_TRUE(q.passed);
  EXPECT_EQ(q.source_format, "gguf");
  EXPECT_LE(q.max_abs_logit_error, 1e-4);
  EXPECT_EQ(q.greedy_agreement, 1.0);
  ASSERT_OK_AND_ASSIGN(std::string sha, Sha256OfFile(gguf));
  EXPECT_EQ(q.source_sha256, sha);
  ExpectGenerates(out);
}

TEST_F(GgufConversionTest, F16AndQ8_0ConvertToInt8AndBf16AndGenerate) {
  for (const std::string type : {"f16", "q8_0"}) {
    const std::string gguf = Gguf(type);
    for (const RecipeName recipe :
         {RecipeName{"CTRANSLATE2", "int8"}, RecipeName{"VLLM", "bfloat16"}}) {
      SCOPED_TRACE(type + " -> " + recipe.ToString());
      const std::string out = store_ + "/art-" + type + "-" + recipe.Slug();
      ASSERT_EQ(
          Run({.source = gguf, .recipe = recipe, .output = out, .threads = 1}),
          kExitOk)
          << AllLines();
      const QualityFigures q = *ParseConversionOutput(AllLines()).report;
      EXPECT_TRUE(q.passed);
      EXPECT_LE(q.max_abs_logit_error, MaxLogitErrorBound(recipe));
      EXPECT_GE(q.greedy_agreement, 0.5);
      EXPECT_EQ(q.source_format, "gguf");
      const bool block = type == "q8_0";
      EXPECT_EQ(
          !q.notes.empty() &&
              q.notes[0].find("dequantize-then-quantize") != std::string::npos,
          block)
          << ::testing::PrintToString(q.notes);
      ASSERT_OK_AND_ASSIGN(std::string manifest,
                           ReadFileToString(out + "/hangar_manifest.json"));
      EXPECT_THAT(manifest, HasSubstr("\"format\": \"gguf\""));
      ExpectGenerates(out);
    }
  }
}

TEST_F(GgufConversionTest, Q4_0ToInt16IsDequantizeThenQuantizeInTheReport) {
  const std::string out = store_ + "/art";
  ASSERT_EQ(Run({.source = Gguf("q4_0"),
                 .recipe = {"CTRANSLATE2", "int16"},
                 .output = out,
                 .threads = 1}),
            kExitOk)
      << AllLines();
  const QualityFigures q = *ParseConversionOutput(AllLines()).report;
  // Against the Q4_0 source itself: int16 of the dequantized values is
  // within int16's bound.
  EXPECT_TRUE(q.passed);
  EXPECT_LE(q.max_abs_logit_error,
            MaxLogitErrorBound({"CTRANSLATE2", "int16"}));
  ASSERT_FALSE(q.notes.empty());
  EXPECT_THAT(
      q.notes[0],
      ::testing::AllOf(HasSubstr("Q4_0"), HasSubstr("dequantize-then-quantize"),
                       HasSubstr("I16")));
  ExpectGenerates(out);
}

TEST_F(GgufConversionTest, TruncatedGgufFailsWithTheReasonAndWritesNothing) {
  const std::string gguf = Gguf("f16");
  fs::resize_file(gguf, fs::file_size(gguf) * 2 / 3);
  const std::string out = store_ + "/art";
  EXPECT_EQ(Run({.source = gguf,
                 .recipe = {"CTRANSLATE2", "int8"},
                 .output = out,
                 .threads = 1}),
            kExitBadInput)
      << AllLines();
  EXPECT_THAT(ParseConversionOutput(AllLines()).error.value_or(""),
              HasSubstr(gguf));
  EXPECT_TRUE(StoreEntries().empty());
}

TEST_F(GgufConversionTest, EstimateMatchesTheWrittenFile) {
  const std::string gguf = Gguf("q8_0");
  const std::string out = store_ + "/art";
  ASSERT_EQ(Run({.source = gguf,
                 .recipe = {"CTRANSLATE2", "int8"},
                 .output = out,
                 .threads = 1}),
            kExitOk);
  ASSERT_OK_AND_ASSIGN(int64_t estimate,
                       EstimateArtifactBytes(gguf, {"CTRANSLATE2", "int8"}));
  EXPECT_EQ(estimate, int64_t(fs::file_size(out + "/model.safetensors")));
}

TEST(QuantizeRowsTest, VectorizedInt8MatchesTheScalarReference) {
  // Odd widths exercise the tails; values include exact .5 ties.
  for (int64_t cols : {1, 7, 31, 32, 33, 100, 1000}) {
    const int64_t rows = 5;
    std::vector<float> x(size_t(rows * cols));
    for (size_t i = 0; i < x.size(); ++i)
      x[i] = float(int(i * 2654435761u % 2001) - 1000) / 7.0f;
    x[0] = 0.5f;
    std::vector<int8_t> a(x.size()), b(x.size());
    std::vector<float> sa(static_cast<size_t>(rows)),
        sb(static_cast<size_t>(rows));
    internal::QuantizeRowsI8(x.data(), rows, cols, a.data(), sa.data());
    internal::QuantizeRowsI8Scalar(x.data(), rows, cols, b.data(), sb.data());
    EXPECT_EQ(a, b) << cols;
    EXPECT_EQ(sa, sb) << cols;
    // Dequantized within half a step of the input.
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < cols; ++k)
        EXPECT_NEAR(float(a[size_t(r * cols + k)]) * sa[size_t(r)],
                    x[size_t(r * cols + k)], sa[size_t(r)] * 0.501f + 1e-6f);
  }
}

TEST(ParseConversionOutputTest,
     ReadsTheLastProgressAndReportFromATailThatStartsMidLine) {
  std::string text =
      "ress\",\"tensors_done\":1}\n"
      "{\"event\":\"progress\",\"phase\":\"converting\",\"tensors_done\":4,"
      "\"tensors_total\":9,"
      "\"bytes_written\":100,\"bytes_total\":900,\"message\":\"converting "
      "x\"}\n"
      "some other text\n"
      "{\"event\":\"report\",\"passed\":false,\"max_abs_logit_error\":2.5,"
      "\"max_abs_logit_error_bound\":1}\n"
      "{\"event\":\"progress\",\"tensors_done\":\"wrong type\"}\n";
  ParsedOutput p = ParseConversionOutput(text);
  ASSERT_TRUE(p.progress.has_value());
  EXPECT_EQ(p.progress->tensors_done, 4);
  EXPECT_EQ(p.progress->tensors_total, 9);
  EXPECT_EQ(p.progress->bytes_written, 100);
  EXPECT_EQ(p.progress->message, "converting x");
  ASSERT_TRUE(p.report.has_value());
  EXPECT_FALSE(p.report->passed);
  EXPECT_EQ(p.report->max_abs_logit_error, 2.5);
  EXPECT_FALSE(p.error.has_value());
}

}  // namespace
}  // namespace hangar::optimizer
