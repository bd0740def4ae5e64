// Deterministic random Llama-architecture models for tests, benchmarks and
// demos (like Hugging Face's tiny-random-* repositories), and a converter
// from a Hugging Face directory to GGUF.
//
// `WriteTinyModel` writes a complete Hugging Face model directory:
//   config.json              llama (or qwen2 with q/k/v bias) configuration
//   model.safetensors        N(0, init_std) weights (norm weights near 1),
//                            from a seeded xoshiro generator: the same options
//                            always give the same bytes
//   tokenizer.json           a real byte-level BPE tokenizer (GPT-2
//                            pre-tokenizer regex) whose merges are trained on a
//                            corpus embedded in the library, with <s>, </s>
//                            as special tokens
//   tokenizer_config.json    add_bos_token, bos/eos tokens
//   generation_config.json   bos/eos ids
// The model's vocab_size may exceed the tokenizer's (a padded embedding
// table, as many real checkpoints have).
//
// Presets (`TinyModelPreset`): "tiny" ~1 M parameters (unit tests), "small"
// ~15 M (llama2.c stories15M shape), "base" ~110 M (stories110M shape).
//
// `ConvertToGguf` writes the same weights as a GGUF v3 file the way
// llama.cpp's converter does: dims reversed, Q/K rows permuted for
// interleaved RoPE (llama), tokenizer as a "gpt2" vocabulary with merges,
// and 2-D weights stored as F32, F16, Q8_0, Q4_0 or K-quants.
#ifndef HANGAR_ENGINE_TINY_MODEL_H_
#define HANGAR_ENGINE_TINY_MODEL_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hangar::engine {

struct TinyModelOptions {
  // "llama" or "qwen2" (adds q/k/v biases).
  std::string architecture = "llama";
  int hidden_size = 128;
  int intermediate_size = 384;
  int num_layers = 4;
  int num_heads = 4;
  int num_kv_heads = 2;
  // Embedding rows; the trained tokenizer has at most this many tokens.
  int vocab_size = 1024;
  int max_position_embeddings = 512;
  float rope_theta = 10000.0f;
  float rms_norm_eps = 1e-5f;
  bool tie_word_embeddings = false;
  // Standard deviation of the weights; 0 means 1 / sqrt(hidden_size).
  float init_std = 0;
  // "F32", "F16" or "BF16".
  std::string dtype = "F32";
  uint64_t seed = 1;
};

// Options for a named preset ("tiny", "small", "base"); INVALID_ARGUMENT for
// another name.
absl::StatusOr<TinyModelOptions> TinyModelPreset(const std::string& name);

// Creates `dir` if needed and writes the model into it.
absl::Status WriteTinyModel(const TinyModelOptions& options,
                            const std::string& dir);

// `type`: "f32", "f16", "q8_0", "q4_0", "q4_k", "q5_k", "q6_k" or "q4_k_m"
// (Q4_K with output and ffn_down in Q6_K). K-quant matrices whose rows are
// not a multiple of 256 fall back to Q8_0 (or F32).
absl::Status ConvertToGguf(const std::string& hf_dir,
                           const std::string& gguf_path,
                           const std::string& type);

// The embedded training corpus (plain English text).
const std::string& TinyModelCorpus();

}  // namespace hangar::engine

#endif  // HANGAR_ENGINE_TINY_MODEL_H_
