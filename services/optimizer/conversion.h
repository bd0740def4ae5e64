// One conversion job as hangar-optimize runs it: source -> artifact
// directory, atomically, with a quality gate, speaking JSON lines.
//
// RunConversion converts `source` with `recipe` into a temporary directory
// beside `output` (".<name>.tmp-<pid>"), then renames it to `output` in one
// step, so `output` either does not exist or is a complete artifact with its
// manifest. Before that it removes temporary directories that an earlier,
// killed run for the same `output` left. The engine streams the conversion
// tensor by tensor and checks free disk space first (converter.h).
//
// Every step is reported through `emit` as one JSON line (the job's stdout,
// which the optimizer service reads back from the scheduler's log tail):
//
//   {"event":"progress","phase":"converting","tensors_done":3,
//    "tensors_total":40,"bytes_written":123,"bytes_total":456,
//    "message":"converting model.layers.0.mlp.up_proj.weight"}
//   {"event":"report","passed":true,"artifact":"/store/...","source_sha256":
//    "...","recipe":"CTRANSLATE2/int8","size_bytes":..,"prompts":3,
//    "positions":40,"max_abs_logit_error":0.1,"max_abs_logit_error_bound":1,
//    "mean_abs_logit_error":0.01,"mean_kl":1e-4,"greedy_agreement":0.97,
//    "greedy_tokens":96,"size_ratio":0.27,"source_format":"gguf",
//    "notes":["GGUF Q4_0 tensors were dequantized ..."]}
//   {"event":"error","exit_code":2,"message":"..."}
//
// A report beyond the bound is written to "<output>.report.json" beside
// the target as well, the temporary artifact is removed, and the exit code
// is kExitQualityGate. Exit codes: 0 done; 1 internal error; 2 bad input
// (missing or corrupt source, unknown recipe, output already exists);
// 3 quality gate; 4 not enough disk space; 5 cancelled (SIGTERM/SIGINT).
// In every failure nothing is left at `output` or in a temporary directory.
#ifndef HANGAR_SERVICES_OPTIMIZER_CONVERSION_H_
#define HANGAR_SERVICES_OPTIMIZER_CONVERSION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/optimizer/recipes.h"

namespace hangar::optimizer {

inline constexpr int kExitOk = 0;
inline constexpr int kExitInternal = 1;
inline constexpr int kExitBadInput = 2;
inline constexpr int kExitQualityGate = 3;
inline constexpr int kExitNoSpace = 4;
inline constexpr int kExitCancelled = 5;

struct ConversionOptions {
  // A Hugging Face model directory (single or sharded safetensors) or a
  // GGUF file (converter.h).
  std::string source;
  RecipeName recipe;
  // The artifact directory to create; must not exist.
  std::string output;
  // Overrides the recipe's bound (recipes.h) when set.
  std::optional<double> max_logit_error;
  // Kernel threads for the quality report; 0 = every core.
  int threads = 0;
  // Free space required beyond the artifact.
  int64_t disk_margin_bytes = int64_t{16} << 20;
  // Set (by a signal handler) to stop between tensors.
  const std::atomic<bool>* cancel = nullptr;
};

// What a job reported, as parsed back from its lines.
struct QualityFigures {
  bool passed = false;
  int prompts = 0;
  int positions = 0;
  double max_abs_logit_error = 0;
  double max_abs_logit_error_bound = 0;
  double mean_abs_logit_error = 0;
  double mean_kl = 0;
  double greedy_agreement = 0;
  int greedy_tokens = 0;
  double size_ratio = 0;
  int64_t size_bytes = 0;
  std::string artifact;
  std::string source_sha256;
  std::string recipe;
  // "huggingface" or "gguf".
  std::string source_format;
  // What people should know about the conversion (converter.h), e.g. a
  // dequantize-then-quantize of GGUF Q4_0 tensors.
  std::vector<std::string> notes;
};

struct ProgressLine {
  // "planning", "converting", "evaluating", "done".
  std::string phase;
  int tensors_done = 0;
  int tensors_total = 0;
  int64_t bytes_written = 0;
  int64_t bytes_total = 0;
  std::string message;
};

// Runs the conversion; returns the exit code (above). Reentrant.
int RunConversion(const ConversionOptions& options,
                  const std::function<void(const std::string&)>& emit);

// The last progress and the report (if any) in a job's output, which may
// start mid-line (a log tail) and hold other text.
struct ParsedOutput {
  std::optional<ProgressLine> progress;
  std::optional<QualityFigures> report;
  std::optional<std::string> error;
};
ParsedOutput ParseConversionOutput(const std::string& text);

}  // namespace hangar::optimizer

#endif  // HANGAR_SERVICES_OPTIMIZER_CONVERSION_H_
