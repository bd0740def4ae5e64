// hangar-optimize: the program an optimization job runs (the optimizer
// service submits it to the scheduler's job API; it also runs by hand).
//
//   hangar-optimize --source /store/models/tiny --recipe CTRANSLATE2/int8 \
//       --out /store/artifacts/<sha256>-ctranslate2-int8 [--max_logit_error
//       0.5]
//
// Progress and the quality report are JSON lines on stdout; errors are one
// line on stderr too. Exit codes, the temporary directory and the quality
// gate: services/optimizer/conversion.h. SIGTERM or SIGINT stops the
// conversion between tensors and removes what it wrote (exit 5).
#include <csignal>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "services/optimizer/conversion.h"
#include "services/optimizer/recipes.h"

ABSL_FLAG(std::string, source, "",
          "Hugging Face model directory or GGUF file to convert (required)");
ABSL_FLAG(std::string, recipe, "",
          "ENGINE/quantization, e.g. CTRANSLATE2/int8 or VLLM/fp8 (required)");
ABSL_FLAG(std::string, out, "",
          "artifact directory to create; must not exist (required)");
ABSL_FLAG(std::string, max_logit_error, "",
          "bound on max |logit error| (default: the recipe's, "
          "services/optimizer/recipes.h)");
ABSL_FLAG(int, threads, 0,
          "kernel threads for the quality report (0 = every core)");
ABSL_FLAG(int64_t, disk_margin_bytes, int64_t{16} << 20,
          "free space required beyond the artifact's size");

namespace {

std::atomic<bool> g_cancel{false};

void OnSignal(int) { g_cancel.store(true); }

int Fail(int code, const std::string& message) {
  std::cerr << "hangar-optimize: " << message << "\n";
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace hangar::optimizer;
  absl::SetProgramUsageMessage(
      "hangar-optimize --source DIR|FILE.gguf --recipe ENGINE/QUANT --out "
      "ARTIFACT_DIR "
      "[--max_logit_error BOUND]");
  absl::ParseCommandLine(argc, argv);
  ConversionOptions options;
  options.source = absl::GetFlag(FLAGS_source);
  options.output = absl::GetFlag(FLAGS_out);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.disk_margin_bytes = absl::GetFlag(FLAGS_disk_margin_bytes);
  if (options.source.empty()) return Fail(kExitBadInput, "--source: required");
  if (options.output.empty()) return Fail(kExitBadInput, "--out: required");
  absl::StatusOr<RecipeName> recipe = ParseRecipe(absl::GetFlag(FLAGS_recipe));
  if (!recipe.ok())
    return Fail(kExitBadInput, std::string(recipe.status().message()));
  options.recipe = *recipe;
  if (std::string bound = absl::GetFlag(FLAGS_max_logit_error);
      !bound.empty()) {
    double v = 0;
    if (!absl::SimpleAtod(bound, &v) || !(v >= 0)) {
      return Fail(
          kExitBadInput,
          "--max_logit_error: must be a number >= 0; was '" + bound + "'");
    }
    options.max_logit_error = v;
  }
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  options.cancel = &g_cancel;
  std::string last_error;
  int code = RunConversion(options, [&](const std::string& line) {
    std::fputs(line.c_str(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    if (line.rfind("{\"event\":\"error\"", 0) == 0) last_error = line;
  });
  if (code != kExitOk && code != kExitQualityGate) {
    ParsedOutput parsed = ParseConversionOutput(last_error);
    return Fail(code, parsed.error.value_or("failed"));
  }
  if (code == kExitQualityGate)
    return Fail(code,
                "quality gate: max |logit error| beyond the recipe's bound");
  return code;
}
