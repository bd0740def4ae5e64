// The output helpers on their own: table alignment, money, bytes and enum
// names, and the progress display's two modes (a redrawn bar on a terminal,
// plain lines only on change otherwise).
#include "tools/hangarctl/output.h"

#include <algorithm>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hangar/v1/deployment.pb.h"

namespace hangar::ctl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(TableTest, PadsColumnsToTheWidestCell) {
  Table table({"NAME", "STATE"});
  table.AddRow({"dep-abc", "DEPLOYED"});
  table.AddRow({"d", "FAILED"});
  std::ostringstream out;
  table.Print(out);
  EXPECT_EQ(out.str(),
            "NAME     STATE\n"
            "dep-abc  DEPLOYED\n"
            "d        FAILED\n");
}

TEST(DetailsTest, AlignsLabels) {
  Details details;
  details.Add("Name", "dep-x");
  details.Add("Hourly cost", "1.82 USD");
  std::ostringstream out;
  details.Print(out);
  EXPECT_EQ(out.str(),
            "Name:         dep-x\n"
            "Hourly cost:  1.82 USD\n");
}

TEST(FormatTest, MoneyBytesAndEnums) {
  v1::Money money;
  money.set_currency_code("USD");
  money.set_micros(1'818'000);
  EXPECT_EQ(FormatMoney(money), "1.818 USD");
  money.set_micros(500'000);
  EXPECT_EQ(FormatMoney(money), "0.50 USD");
  money.set_micros(12);
  EXPECT_EQ(FormatMoney(money), "0.000012 USD");
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(int64_t{3} << 29), "1.5 GiB");
  EXPECT_EQ(
      EnumName(v1::DeploymentState_descriptor(), v1::DEPLOYMENT_STATE_DEPLOYED),
      "DEPLOYED");
  EXPECT_EQ(EnumName(v1::DeploymentState_descriptor(), 99), "99");
  v1::OptimizationRecipe recipe;
  EXPECT_EQ(FormatRecipe(recipe), "none");
  recipe.set_engine(v1::ENGINE_CTRANSLATE2);
  recipe.set_quantization(v1::QUANTIZATION_INT8_FLOAT16);
  EXPECT_EQ(FormatRecipe(recipe), "ctranslate2/int8_float16");
  EXPECT_EQ(FormatCount(134'515'008), "135M");
  EXPECT_EQ(FormatCount(8'030'261'248), "8.0B");
  EXPECT_EQ(FormatTime({}), "-");
  EXPECT_EQ(FormatAge({}), "-");
}

TEST(ProgressDisplayTest, RedrawsOneLineOnATerminal) {
  std::ostringstream out;
  {
    ProgressDisplay progress(/*terminal=*/true, out);
    progress.Update("DOWNLOADING", 512, 1024, /*bytes=*/true, "model.bin");
    progress.Update("DOWNLOADING", 1024, 1024, /*bytes=*/true, "model.bin");
  }
  const std::string text = out.str();
  EXPECT_THAT(text, HasSubstr("\r\033[K"));
  EXPECT_THAT(text, HasSubstr(" 50%"));
  EXPECT_THAT(text, HasSubstr("100%"));
  EXPECT_THAT(text, HasSubstr("512 B / 1.0 KiB"));
  EXPECT_THAT(text, HasSubstr("[============>"));
  // One line in all, ended when the display finishes.
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1);
}

TEST(ProgressDisplayTest, PrintsPlainLinesOnlyWhenSomethingChanged) {
  std::ostringstream out;
  ProgressDisplay progress(/*terminal=*/false, out);
  for (int done = 0; done <= 100; ++done) {
    progress.Update("OPTIMIZING", done, 100, /*bytes=*/false, "converting");
  }
  progress.Update("DEPLOYING", 0, 0, /*bytes=*/false, "starting replicas");
  progress.Update("DEPLOYING", 0, 0, /*bytes=*/false, "starting replicas");
  progress.Finish();
  const std::string text = out.str();
  EXPECT_THAT(text, Not(HasSubstr("\r")));
  // 0%, 10%, ..., 100% and the new stage once.
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 12) << text;
  EXPECT_THAT(text, HasSubstr("OPTIMIZING 50% (50 / 100): converting\n"));
  EXPECT_THAT(text, HasSubstr("DEPLOYING: starting replicas\n"));
}

}  // namespace
}  // namespace hangar::ctl
