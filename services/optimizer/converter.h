// The optimizer's streaming converter: a source model (a Hugging Face
// safetensors directory or a GGUF file) -> an artifact directory that
// engine::Model::Load reads like any Hugging Face directory.
//
// Why not engine::QuantizeModel: that one reads Hugging Face directories
// only, keeps embedding tables in float, and converts through the source's
// memory map. This converter is the optimizer's own (the engine is not
// touched): it reads a GGUF file too, quantizes the embedding table with the
// linear layers for CTranslate2's integer recipes (the engine's embedding
// lookup and its tied lm_head read I8/I16 rows with their scales), and
// streams with pread/write in chunks of whole rows.
//
// Numeric meaning of the recipes (CTranslate2 and vLLM semantics; integer
// and fp8 weights symmetric per output row, scale = max|row| / qmax with
// qmax 127, 32767, 448, q = round-half-even(x / scale), a sibling
// "<name>_scale" F32 tensor of shape [rows]):
//
//   engine        quantization   linear + embeddings        everything else
//   CTRANSLATE2   int8           I8 + scale                 F32
//                 int8_float32   I8 + scale                 F32
//                 int8_float16   I8 + scale                 F16
//                 int8_bfloat16  I8 + scale                 BF16
//                 int16          I16 + scale                F32
//                 float16 / bfloat16 / float32              (all in that type)
//   VLLM          float16 / bfloat16 / float32              (all in that type)
//                 fp8            linear F8_E4M3 + scale     BF16 (embeddings
//                                                           too)
//
// "Linear" is the attention and MLP projections and lm_head; "everything
// else" is norms and biases (and, for fp8, the embedding table, as vLLM
// keeps it). A tied lm_head stays tied when the embedding table has the
// linear type (CTranslate2 integer recipes: one I8 table serves the lookup
// and the output projection); with fp8 the artifact gets an untied F8
// "lm_head.weight" (config.json: tie_word_embeddings false).
//
// Sources:
//   * a directory: config.json, model.safetensors or a sharded
//     model.safetensors.index.json (F32, F16, BF16 tensors), tokenizer.json
//     (+ tokenizer_config.json, generation_config.json, copied);
//   * a GGUF v2/v3 file (engine/gguf.h): F32, F16, BF16, Q8_0 and Q4_0
//     tensors; tensor names are mapped to Hugging Face names, dims reversed,
//     and llama's Q/K rows (stored permuted for interleaved RoPE) put back
//     in rotate-half order; config.json is written from the GGUF metadata
//     and tokenizer.json from a "gpt2" (byte-level BPE) vocabulary with its
//     merges. Block-quantized tensors (Q8_0, Q4_0) are dequantized to
//     float32 and then converted: the report says so in `notes` (the
//     artifact cannot be more accurate than the block-quantized source).
//     Other tensor types, other tokenizer models and unknown tensor names
//     are INVALID_ARGUMENT naming them.
//
// Streaming: the plan (every output tensor, dtype and shape) follows from
// the source headers, so the safetensors header is written first; then each
// tensor is read with pread in chunks of whole rows (about `chunk_bytes`),
// converted, and appended with write(). Tensors stored as they are go
// through copy_file_range. Peak memory is one chunk (a whole tensor only for
// GGUF Q/K, whose row permutation spans a head) plus the scales, not the
// model. Free space for the artifact plus `disk_margin_bytes` is checked
// before writing (RESOURCE_EXHAUSTED with both numbers); a failed write is
// RESOURCE_EXHAUSTED "write failed". The caller owns `output_dir` cleanup
// (conversion.cc writes into a temporary directory and renames it).
//
// The quality report loads the source (the GGUF file itself, or the
// directory) and the artifact with engine::Model and compares every logit of
// three fixed prompts (max/mean |error|, mean KL(source || artifact)), then
// greedy agreement over `greedy_tokens` per prompt with teacher forcing. For
// a GGUF source it also checks that the artifact's tokenizer encodes the
// prompts to the same ids as the source's (else INVALID_ARGUMENT).
//
// The manifest (hangar_manifest.json) is engine/quantize.h's format plus
// "source.format" and "notes".
//
// Thread-safety: ConvertModel is reentrant.
#ifndef HANGAR_SERVICES_OPTIMIZER_CONVERTER_H_
#define HANGAR_SERVICES_OPTIMIZER_CONVERTER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/optimizer/recipes.h"

namespace hangar::optimizer {

struct ConvertProgress {
  // "planning", "converting", "evaluating" or "done".
  std::string stage;
  int tensors_done = 0;
  int tensors_total = 0;
  int64_t bytes_written = 0;
  int64_t bytes_total = 0;
  // The tensor just written (converting only).
  std::string tensor;
};

struct ConvertOptions {
  // A Hugging Face directory or a GGUF file. Required.
  std::string source;
  // Directory to write into (created; the caller removes it on failure).
  // Required.
  std::string output_dir;
  RecipeName recipe;
  // Kernel threads for the quality report; 0 = every core.
  int threads = 0;
  // Tokens generated greedily per prompt; 0 skips the figure.
  int greedy_tokens = 32;
  // Free space required beyond the artifact.
  int64_t disk_margin_bytes = int64_t{16} << 20;
  // Source bytes read per step, in [64 KiB, 1 GiB].
  int64_t chunk_bytes = int64_t{4} << 20;
  // Skip the quality report (the benchmark times conversion alone).
  bool skip_quality = false;
  // Set to stop between chunks with CANCELLED.
  const std::atomic<bool>* cancel = nullptr;
  std::function<void(const ConvertProgress&)> progress;
};

struct ConvertReport {
  std::string source_format;  // "huggingface" or "gguf"
  std::string source_sha256;
  int64_t source_weight_bytes = 0;
  int64_t weight_bytes = 0;  // the artifact's model.safetensors
  int64_t size_bytes = 0;    // every artifact file but the manifest
  double size_ratio = 0;
  int64_t parameters = 0;
  int64_t largest_tensor_bytes = 0;  // of the source
  int prompts = 0;
  int positions = 0;
  double max_abs_logit_error = 0;
  double mean_abs_logit_error = 0;
  double mean_kl = 0;
  double greedy_agreement = 1;
  int greedy_tokens = 0;
  // Seconds from the first tensor read to the last written.
  double convert_seconds = 0;
  // For people: "GGUF Q4_0 tensors dequantized to float32, then quantized
  // to I16 (dequantize-then-quantize)".
  std::vector<std::string> notes;
};

absl::StatusOr<ConvertReport> ConvertModel(const ConvertOptions& options);

// Size of the artifact's model.safetensors from the source headers alone.
absl::StatusOr<int64_t> EstimateArtifactBytes(const std::string& source,
                                              const RecipeName& recipe);

namespace internal {
// Per-row symmetric quantization of rows x cols floats to int8 / int16
// (round half to even, clamped to +-qmax); writes one scale per row. The
// vectorized path and the scalar one give the same bytes.
void QuantizeRowsI8(const float* x, int64_t rows, int64_t cols, int8_t* out,
                    float* scales);
void QuantizeRowsI16(const float* x, int64_t rows, int64_t cols, int16_t* out,
                     float* scales);
void QuantizeRowsI8Scalar(const float* x, int64_t rows, int64_t cols,
                          int8_t* out, float* scales);
}  // namespace internal

}  // namespace hangar::optimizer

#endif  // HANGAR_SERVICES_OPTIMIZER_CONVERTER_H_
