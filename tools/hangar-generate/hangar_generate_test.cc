// Runs the hangar-generate binary on a generated tiny model.
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_split.h"
#include "common/testing/status_matchers.h"
#include "engine/test_util.h"
#include "engine/tiny_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace {

struct CliResult {
  int exit_code;
  std::string
      out;  // stdout (stderr appended after "\n--stderr--\n" when asked)
};

CliResult Cli(const std::string& args, bool with_stderr = false) {
  std::string cmd = std::string(HANGAR_GENERATE_BIN) + " " + args +
                    (with_stderr ? " 2>&1" : " 2>/dev/null");
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

class HangarGenerateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(hangar::engine::testing::MakeTempDir("cli"));
    hangar::engine::TinyModelOptions o;
    o.num_layers = 2;
    ASSERT_OK(hangar::engine::WriteTinyModel(o, *dir_));
  }
  static std::string* dir_;
};
std::string* HangarGenerateTest::dir_ = nullptr;

TEST_F(HangarGenerateTest, GreedyIdsAreDeterministicAndBatchCopiesAgree) {
  std::string base =
      "--model " + *dir_ +
      " --prompt 'Once upon a time' --max-tokens 8 --temperature 0 "
      "--print-ids --ignore-eos --threads 1";
  CliResult a = Cli(base), b = Cli(base);
  ASSERT_EQ(a.exit_code, 0);
  EXPECT_EQ(a.out, b.out);
  std::vector<std::string> ids =
      absl::StrSplit(a.out.substr(0, a.out.find('\n')), ' ', absl::SkipEmpty());
  EXPECT_EQ(ids.size(), 8u);
  CliResult batch = Cli(base + " --batch 3");
  ASSERT_EQ(batch.exit_code, 0);
  std::string first_line = a.out.substr(0, a.out.find('\n'));
  EXPECT_EQ(batch.out, first_line + "\n[seq 1] " + first_line + "\n[seq 2] " +
                           first_line + "\n");
  // Prompt ids work too and print timing on stderr.
  CliResult ids_run = Cli(
      "--model " + *dir_ + " --prompt-ids 0,5,9 --max-tokens 3 --temperature 0",
      true);
  EXPECT_EQ(ids_run.exit_code, 0);
  EXPECT_THAT(ids_run.out, ::testing::HasSubstr("decode:"));
  EXPECT_THAT(ids_run.out, ::testing::HasSubstr("tokens/s"));
}

TEST_F(HangarGenerateTest, BadInputFailsWithAMessage) {
  CliResult bad_flag = Cli("--model " + *dir_ + " --prompt x --bogus 1", true);
  EXPECT_EQ(bad_flag.exit_code, 2);
  EXPECT_THAT(bad_flag.out, ::testing::HasSubstr("unknown flag --bogus"));
  CliResult missing = Cli("--model /nonexistent --prompt x", true);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.out, ::testing::HasSubstr("/nonexistent"));
  CliResult bad_top_p =
      Cli("--model " + *dir_ + " --prompt x --top-p 1.5", true);
  EXPECT_EQ(bad_top_p.exit_code, 1);
  EXPECT_THAT(bad_top_p.out, ::testing::HasSubstr("top_p: must be in (0, 1]"));
}

TEST(HangarGenerateHelpTest, HelpListsTheFlagsWithDefaults) {
  CliResult help = Cli("--help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out,
              ::testing::Not(::testing::HasSubstr("No flags matched")));
  EXPECT_THAT(help.out, ::testing::HasSubstr("--max_tokens (default 64;"));
  EXPECT_THAT(help.out, ::testing::HasSubstr("--seed (default unset;"));
  EXPECT_THAT(help.out, ::testing::HasSubstr("--top_p (default 0.95;"));
}

TEST_F(HangarGenerateTest, RepeatedStopsKeepTheirCommasAndBothSpellingsWork) {
  CliResult run = Cli("--model " + *dir_ +
                      " --prompt-ids=0,5,9 --max_tokens 2 --temperature=0 "
                      "--stop 'a,b' --stop c --print-ids");
  EXPECT_EQ(run.exit_code, 0) << run.out;
}

}  // namespace
