// hangar-optimize as a job runs it: the real binary, its JSON lines, exit
// codes and signals.
#include <signal.h>

#include <filesystem>
#include <string>

#include "common/testing/child_process.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "engine/model.h"
#include "engine/tiny_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/optimizer/conversion.h"

namespace hangar::optimizer {
namespace {

namespace fs = std::filesystem;
using ::hangar::testing::ChildProcess;
using ::hangar::testing::IsOkAndHolds;
using ::hangar::testing::WaitUntil;
using ::testing::HasSubstr;

std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(HangarOptimizeTest, ConvertsAndPrintsProgressThenTheReport) {
  const std::string root = ::hangar::testing::MakeTempDir("optbin");
  engine::TinyModelOptions o;
  o.num_layers = 1;
  ASSERT_OK(engine::WriteTinyModel(o, root + "/src"));
  const std::string out = root + "/store/art";
  ASSERT_OK_AND_ASSIGN(
      auto child,
      ChildProcess::Start({HANGAR_OPTIMIZE_BIN, "--source", root + "/src",
                           "--recipe", "ctranslate2/int8", "--out", out,
                           "--threads=1"}));
  EXPECT_THAT(child->Wait(absl::Seconds(120)), IsOkAndHolds(kExitOk))
      << child->Output();
  ParsedOutput parsed = ParseConversionOutput(child->Output());
  ASSERT_TRUE(parsed.report.has_value()) << child->Output();
  EXPECT_TRUE(parsed.report->passed);
  EXPECT_EQ(parsed.report->artifact, fs::path(out).lexically_normal().string());
  ASSERT_TRUE(parsed.progress.has_value());
  EXPECT_EQ(parsed.progress->phase, "done");
  EXPECT_THAT(child->Output(), HasSubstr("\"phase\":\"converting\""));
  EXPECT_OK(engine::Model::Load(out, {.threads = 1}).status());
}

TEST(HangarOptimizeTest, BadArgumentsAreExit2WithOneLine) {
  const std::string root = ::hangar::testing::MakeTempDir("optbad");
  ASSERT_OK_AND_ASSIGN(
      auto child,
      ChildProcess::Start({HANGAR_OPTIMIZE_BIN, "--source", root, "--recipe",
                           "CTRANSLATE2/fp8", "--out", root + "/art"}));
  EXPECT_THAT(child->Wait(absl::Seconds(30)), IsOkAndHolds(kExitBadInput));
  EXPECT_THAT(child->Output(),
              HasSubstr("hangar-optimize: quantization: must be one of"));
  ASSERT_OK_AND_ASSIGN(
      child,
      ChildProcess::Start({HANGAR_OPTIMIZE_BIN, "--source", root + "/missing",
                           "--recipe", "VLLM/fp8", "--out", root + "/art"}));
  EXPECT_THAT(child->Wait(absl::Seconds(30)), IsOkAndHolds(kExitBadInput));
  EXPECT_THAT(child->Output(), HasSubstr("does not exist"));
  ASSERT_OK_AND_ASSIGN(
      child, ChildProcess::Start({HANGAR_OPTIMIZE_BIN, "--source", root,
                                  "--recipe", "VLLM/fp8", "--out",
                                  root + "/art", "--max_logit_error", "abc"}));
  EXPECT_THAT(child->Wait(absl::Seconds(30)), IsOkAndHolds(kExitBadInput));
  EXPECT_THAT(child->Output(), HasSubstr("--max_logit_error"));
  EXPECT_TRUE(Entries(root).empty());
}

TEST(HangarOptimizeTest, SigtermMidConversionIsExit5WithNothingLeft) {
  const std::string root = ::hangar::testing::MakeTempDir("optterm");
  // Big enough (~15 M parameters) that the conversion and evaluation take
  // far longer than noticing the first progress line.
  ASSERT_OK_AND_ASSIGN(engine::TinyModelOptions o,
                       engine::TinyModelPreset("small"));
  ASSERT_OK(engine::WriteTinyModel(o, root + "/src"));
  fs::create_directories(root + "/store");
  ASSERT_OK_AND_ASSIGN(
      auto child,
      ChildProcess::Start({HANGAR_OPTIMIZE_BIN, "--source", root + "/src",
                           "--recipe", "CTRANSLATE2/int8", "--out",
                           root + "/store/art", "--threads=1"}));
  ASSERT_TRUE(WaitUntil([&] {
    return child->Output().find("\"converting\"") != std::string::npos;
  }));
  child->Signal(SIGTERM);
  EXPECT_THAT(child->Wait(absl::Seconds(120)), IsOkAndHolds(kExitCancelled))
      << child->Output();
  EXPECT_THAT(child->Output(), HasSubstr("cancelled"));
  EXPECT_TRUE(Entries(root + "/store").empty());
}

}  // namespace
}  // namespace hangar::optimizer
