// The pieces engine_bench needs to put llama.cpp's numbers beside its own
// (issue 14): a GGUF that llama.cpp loads, a runner for a `llama-bench`
// binary someone built, and a parser of its JSON output.
//
// llama.cpp sizes the vocabulary from `tokenizer.ggml.tokens` and refuses a
// model whose `token_embd.weight` has more rows than that list; the bench
// presets pad their embedding table (32000 rows) beyond the trained
// tokenizer (a few thousand tokens), as many real checkpoints do.
// `WriteLlamaCppGguf` therefore converts with the engine's `ConvertToGguf`
// and pads the token list with "[PAD<i>]" entries of type UNUSED (5), the
// way llama.cpp's own HF converter does, up to the embedding rows. The
// weights and every other key are unchanged, so the engine computes exactly
// what it computes from the unpadded file.
//
// `RunLlamaBench` runs `<binary> -m <model> <args...> -o json` with standard
// error to a temporary file (shown on failure) and parses standard output
// with `ParseLlamaBenchJson`: llama-bench's JSON printer writes one object
// per test with, among others, "n_prompt", "n_gen", "n_threads", "avg_ts"
// and "stddev_ts" (tokens/s), "samples_ts" (tokens/s of each repetition),
// "cpu_info", "backends" and "build_commit".
#ifndef HANGAR_BENCH_ENGINE_LLAMA_CPP_H_
#define HANGAR_BENCH_ENGINE_LLAMA_CPP_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hangar::bench {

// One llama-bench test: a prompt of n_prompt tokens (pp) or n_gen generated
// tokens (tg) on n_threads threads.
struct LlamaBenchResult {
  int n_prompt = 0;
  int n_gen = 0;
  int n_threads = 0;
  double avg_ts = 0;     // tokens/s, mean over the repetitions
  double stddev_ts = 0;  // tokens/s
  // The fastest repetition ("samples_ts"; avg_ts when absent), to compare
  // with numbers kept as the best of several rounds.
  double best_ts = 0;
  std::string model_type;
  std::string cpu_info;
  std::string backends;
  std::string build_commit;
};

// Parses llama-bench's `-o json` output (an array of objects); every object
// must carry n_prompt, n_gen, n_threads and avg_ts. INVALID_ARGUMENT naming
// what is missing or malformed.
absl::StatusOr<std::vector<LlamaBenchResult>> ParseLlamaBenchJson(
    std::string_view text);

// Runs llama-bench on `model` with `args` (e.g. {"-p", "512", "-n", "32",
// "-t", "2"}) and parses its output. FAILED_PRECONDITION with the tail of
// its standard error when it exits non-zero or prints nothing parseable.
absl::StatusOr<std::vector<LlamaBenchResult>> RunLlamaBench(
    const std::string& binary, const std::string& model,
    const std::vector<std::string>& args);

// Converts the HF directory `hf_dir` to `gguf_path` with ConvertToGguf's
// `type` ("f32", "q8_0", "q4_k_m", ...), with the token list padded to the
// embedding rows.
absl::Status WriteLlamaCppGguf(const std::string& hf_dir,
                               const std::string& gguf_path,
                               const std::string& type);

}  // namespace hangar::bench

#endif  // HANGAR_BENCH_ENGINE_LLAMA_CPP_H_
