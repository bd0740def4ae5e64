// Quantization recipes: turn a Hugging Face model directory into an
// optimized artifact directory that Model::Load reads like any HF directory.
//
// A recipe is (engine, quantization) from DESIGN.md §4, with the numeric
// meaning of the named engine:
//
//   engine        quantization   linear weights           everything else
//   CTRANSLATE2   int8           I8 + per-row F32 scale   F32
//                 int8_float32   I8 + scale               F32
//                 int8_float16   I8 + scale               F16
//                 int8_bfloat16  I8 + scale               BF16
//                 int16          I16 + scale              F32
//                 float16 / bfloat16 / float32            (all in that type)
//   VLLM          float16 / bfloat16 / float32            (all in that type)
//                 fp8            F8_E4M3 + scale          BF16
//
// "Linear weights" are the attention and MLP projections and the lm_head;
// embeddings, norms and biases are "everything else". When the source ties
// lm_head to the embeddings and the recipe quantizes linear weights, the
// artifact stores a quantized untied "lm_head.weight" (config.json gets
// tie_word_embeddings = false): the output projection then reads 1 or 2
// bytes per weight like every other linear layer. Integer and
// fp8 weights are symmetric per output row: scale = max|row| / qmax (127,
// 32767, 448), q = round-to-nearest(x / scale). A quantized tensor keeps its
// HF name and gets a sibling "<name>_scale" F32 tensor of shape [rows].
//
// The artifact directory holds config.json, tokenizer.json (+
// tokenizer_config.json and generation_config.json when the source has
// them), model.safetensors and hangar_manifest.json:
//
//   {"format_version": 1,
//    "recipe": {"engine": "CTRANSLATE2", "quantization": "int8"},
//    "source": {"path": ..., "sha256": <over the source weight files>},
//    "size_bytes": <artifact files except the manifest>,
//    "weights": {"linear_dtype": "I8", "other_dtype": "F32", "parameters": N},
//    "quality": {"prompts": [...], "tokens_compared": n,
//                "max_abs_logit_error": x, "mean_abs_logit_error": y}}
//
// The quality report runs the source and the artifact on the same fixed
// prompts and compares every logit of every prompt position.
//
//   ASSIGN_OR_RETURN(QuantizeReport r, QuantizeModel({
//       .source_dir = "/store/tiny", .output_dir = "/store/tiny-int8",
//       .engine = "CTRANSLATE2", .quantization = "int8"}));
//
// Errors: INVALID_ARGUMENT for an unknown engine/quantization pair (naming
// the allowed values) or a source the engine cannot load; NOT_FOUND for a
// missing source. Thread-safety: QuantizeModel is reentrant.
#ifndef HANGAR_ENGINE_QUANTIZE_H_
#define HANGAR_ENGINE_QUANTIZE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hangar::engine {

struct QuantizeOptions {
  // Hugging Face model directory to read.
  std::string source_dir;
  // Artifact directory to create (parents too); existing files are replaced.
  std::string output_dir;
  // "CTRANSLATE2" or "VLLM" (case-insensitive).
  std::string engine;
  // One of the engine's quantizations (table above), lower case.
  std::string quantization;
  // Prompts for the quality report; empty means three built-in prompts.
  std::vector<std::string> quality_prompts;
  // Kernel threads for the quality report; 0 means every core.
  int threads = 0;
  // Called with progress in [0, 1] and a short stage name ("quantizing",
  // "evaluating", "done"); may be empty.
  std::function<void(double fraction, const std::string& stage)> progress;
};

struct QuantizeReport {
  std::string output_dir;
  std::string engine;
  std::string quantization;
  std::string source_sha256;
  int64_t size_bytes = 0;
  int64_t parameters = 0;
  int tokens_compared = 0;
  double max_abs_logit_error = 0;
  double mean_abs_logit_error = 0;
};

// Validates the pair; INVALID_ARGUMENT names the allowed values.
absl::Status ValidateRecipe(const std::string& engine, const std::string& quantization);

absl::StatusOr<QuantizeReport> QuantizeModel(const QuantizeOptions& options);

}  // namespace hangar::engine

#endif  // HANGAR_ENGINE_QUANTIZE_H_
