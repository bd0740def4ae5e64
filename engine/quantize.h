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
// prompts and compares every logit of every prompt position (max and mean
// absolute error, mean KL(source || artifact) of the softmax), then lets the
// source generate `greedy_tokens` tokens greedily per prompt and counts the
// positions where the artifact, fed the same tokens (teacher forcing, so
// one early disagreement does not make every later token differ), picks the
// same greedy token. The manifest's "quality" also carries "mean_kl",
// "greedy_agreement", "greedy_tokens" and "size_ratio" (artifact weight
// bytes / source weight bytes).
//
// Streaming: the output tensors' names, dtypes and shapes follow from the
// source headers, so the safetensors header is written first and then each
// tensor is converted and appended in turn; peak memory is about one source
// tensor as float32 plus its converted bytes, not the model. Before writing,
// the free space of the output's file system must cover the artifact plus
// `disk_margin_bytes`, else RESOURCE_EXHAUSTED says both numbers.
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

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hangar::engine {

struct QuantizeProgress {
  // "planning", "converting", "evaluating" or "done".
  std::string stage;
  int tensors_done = 0;
  int tensors_total = 0;
  int64_t bytes_written = 0;
  int64_t bytes_total = 0;
  // The tensor just written (converting only).
  std::string tensor;
};

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
  // Called after each tensor is written and at each stage change, with
  // counts; may be empty.
  std::function<void(const QuantizeProgress&)> tensor_progress;
  // Tokens generated greedily per prompt for the agreement figure; 0 skips
  // it (greedy_agreement is then 1).
  int greedy_tokens = 32;
  // Free space required beyond the artifact's size.
  int64_t disk_margin_bytes = int64_t{16} << 20;
  // When set and true, the conversion stops between tensors with CANCELLED
  // (the caller removes what was written).
  const std::atomic<bool>* cancel = nullptr;
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
  // Mean KL(source || artifact) over every compared position, nats.
  double mean_kl = 0;
  // Fraction of greedy tokens the artifact agrees on, and how many.
  double greedy_agreement = 1;
  int greedy_tokens_compared = 0;
  int prompts = 0;
  // Weight file bytes of the source and of the artifact, and their ratio.
  int64_t source_weight_bytes = 0;
  int64_t weight_bytes = 0;
  double size_ratio = 0;
};

// The artifact's model.safetensors size in bytes for a recipe, from the
// source's headers alone (what the free-space check needs).
absl::StatusOr<int64_t> EstimateArtifactWeightBytes(
    const std::string& source_dir, const std::string& engine,
    const std::string& quantization);

// Validates the pair; INVALID_ARGUMENT names the allowed values.
absl::Status ValidateRecipe(const std::string& engine,
                            const std::string& quantization);

absl::StatusOr<QuantizeReport> QuantizeModel(const QuantizeOptions& options);

}  // namespace hangar::engine

#endif  // HANGAR_ENGINE_QUANTIZE_H_
