// A model's architecture numbers, read without loading its weights.
//
// `ModelConfig` is what Model::Load needs before it maps any tensor: the
// architecture ("llama", "mistral", "qwen2"), layer/head/vocabulary sizes,
// RoPE and norm parameters, special token ids. Two readers fill it, and
// Model::Load uses exactly these two, so every component that asks "can the
// engine run this?" (the catalog inspecting an import, the runner loading a
// replica) gets the same answer:
//
//   ParseHuggingFaceConfig(text, "config.json")   a config.json's text; the
//       supported model_type values, hidden_act silu, no mlp_bias, rope
//       scaling llama3 or none, Mistral's sliding window capping the context;
//   ModelConfigFromGguf(file, path)               a GGUF file's metadata
//       (llama, mistral, qwen2); vocab_size from token_embd.weight.
//
// Errors are INVALID_ARGUMENT naming the file and the field. Hostile input
// (wrong JSON types, absurd numbers) gives an error, never an exception.
//
//   ASSIGN_OR_RETURN(ModelConfig config,
//                    ParseHuggingFaceConfig(text, "acme/m/config.json"));
#ifndef HANGAR_ENGINE_MODEL_CONFIG_H_
#define HANGAR_ENGINE_MODEL_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/gguf.h"

namespace hangar::engine {

struct ModelConfig {
  std::string architecture;  // "llama", "mistral", "qwen2"
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int max_position_embeddings = 0;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  // Llama 3.1 rope scaling ("rope_type": "llama3"); factor 0 = none.
  float rope_scaling_factor = 0;
  float rope_low_freq_factor = 1;
  float rope_high_freq_factor = 4;
  int rope_original_max_position = 8192;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  bool rope_interleaved = false;  // GGUF llama layout
  int bos_token_id = -1;
  std::vector<int> eos_token_ids;  // config + generation_config + tokenizer
};

// The model_type values (config.json) and GGUF architectures the engine runs.
bool IsSupportedModelType(const std::string& model_type);

// Reads config.json's text; `config_path` names it in errors.
absl::StatusOr<ModelConfig> ParseHuggingFaceConfig(
    const std::string& text, const std::string& config_path);

// Reads a parsed GGUF file's metadata; `path` names it in errors.
absl::StatusOr<ModelConfig> ModelConfigFromGguf(const GgufFile& file,
                                                const std::string& path);

}  // namespace hangar::engine

#endif  // HANGAR_ENGINE_MODEL_CONFIG_H_
