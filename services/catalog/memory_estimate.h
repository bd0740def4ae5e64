// What a Llama-family decoder weighs and how much GPU memory it needs,
// computed from the numbers in its config.json, never typed by hand.
//
// `ArchitectureSpec` holds the architecture numbers (layers, hidden size,
// heads, KV heads, intermediate size, vocabulary, context). From them:
//
//   ParameterCount(spec)            every weight of the model, exactly as
//                                   Hugging Face counts them (embeddings,
//                                   attention, MLP, norms, biases, lm_head
//                                   unless tied);
//   WeightBytes(spec, layout)       the size of those weights when stored in
//                                   a layout (see WeightLayout);
//   KvCacheBytes(spec, ctx, bytes)  K and V for one sequence of `ctx` tokens;
//   MinGpuMemoryBytes(spec, recipe, default_dtype)
//                                   weights + KV cache for batch 1 at the full
//                                   context + kRuntimeOverheadBytes.
//
// Sizes come from ElementSizeOf, which reads the engine's storage facts
// (engine/dtype.h) for every type, GGUF block types included (a GGUF model
// published as "q4_k" weighs 144 bytes per 256 weights, not 0).
//
// Quantized layouts follow the Hangar recipe semantics (common.proto):
// int8* / int16 / fp8 quantize the projection matrices (q, k, v, o, gate,
// up, down and an untied lm_head) per output row, adding one float32 scale
// per row; every other tensor (embeddings, norms, biases) and the KV cache
// is stored in the recipe's suffix type (float32 for plain int8 and int16,
// the model's 16-bit default type for fp8).
//
//   ASSIGN_OR_RETURN(ArchitectureSpec spec, ArchitectureSpecFromConfig(json));
//   int64_t bytes = MinGpuMemoryBytes(spec, {ENGINE_VLLM, QUANTIZATION_FP8},
//                                     "bfloat16");
//
// Pure functions; no I/O, thread-compatible.
#ifndef HANGAR_SERVICES_CATALOG_MEMORY_ESTIMATE_H_
#define HANGAR_SERVICES_CATALOG_MEMORY_ESTIMATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hangar/v1/catalog.pb.h"
#include "hangar/v1/common.pb.h"
#include "nlohmann/json_fwd.hpp"

namespace hangar::catalog {

// Workspace a replica needs besides weights and KV cache (CUDA context,
// activations, logits): a fixed 512 MiB.
inline constexpr int64_t kRuntimeOverheadBytes = int64_t{512} << 20;

// The Hugging Face architecture classes the built-in engine runs.
bool IsSupportedArchitecture(absl::string_view architecture);
// "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM", for messages.
std::string SupportedArchitecturesList();
// The family ("llama", "mistral", "qwen2") of a supported architecture, ""
// for others.
std::string FamilyOfArchitecture(absl::string_view architecture);

struct ArchitectureSpec {
  // The Hugging Face class, "LlamaForCausalLM".
  std::string architecture;
  int64_t num_layers = 0;  // num_hidden_layers
  int64_t hidden_size = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // equals num_attention_heads without GQA
  int64_t head_dim = 0;  // hidden_size / num_attention_heads unless given
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  // q/k/v projections carry a bias (Qwen2).
  bool attention_bias = false;
};

// Reads the config.json numbers the curated data file carries for each
// model (Hugging Face names). INVALID_ARGUMENT naming the missing or bad
// field otherwise. The architecture is the first entry of "architectures";
// Qwen2 implies attention_bias. (A repository's own config.json is read by
// the engine's parser: weights_header.h, SummarizeConfigJson.)
absl::StatusOr<ArchitectureSpec> ArchitectureSpecFromConfig(
    const nlohmann::json& config);

// Every number positive, heads divisible by KV heads, head_dim consistent.
absl::Status ValidateArchitectureSpec(const ArchitectureSpec& spec);

int64_t ParameterCount(const ArchitectureSpec& spec);

// Storage size of one element of a dtype, as a fraction: `bytes` per
// `elements` elements. Whole-byte types ("float32", "bfloat16", "float16",
// "int16", "int8", "fp8") are {bytes, 1}; GGUF block types ("q8_0", "q4_0",
// "q4_k", "q5_k", "q6_k") are one block's bytes per its elements as the
// engine stores them (engine/dtype.h: q4_k is {144, 256}, 4.5 bits);
// {0, 1} for an unknown name.
struct ElementSize {
  int64_t bytes = 0;
  int64_t elements = 1;
};
ElementSize ElementSizeOf(absl::string_view dtype);
// Bytes of `count` elements of `dtype` (count * bytes / elements: exact for
// whole blocks); 0 for an unknown name.
int64_t StorageBytes(absl::string_view dtype, int64_t count);
// Bytes per element of a whole-byte type; 0 for block types (see
// ElementSizeOf) and unknown names.
int ElementBytes(absl::string_view dtype);
// Whether `dtype` is a GGUF block type ("q8_0", "q4_k", ...).
bool IsBlockDtype(absl::string_view dtype);
// Whether `dtype` is one a model's weights may be published in (float32,
// bfloat16, float16).
bool IsFloatDtype(absl::string_view dtype);

// How weights are stored: projection matrices in `projection_dtype` (with a
// float32 scale per output row when it is an integer or fp8 type), the rest
// in `other_dtype`, the KV cache in `kv_dtype`.
struct WeightLayout {
  std::string projection_dtype;
  std::string other_dtype;
  std::string kv_dtype;
};

// The layout a recipe produces for a model published in `default_dtype`.
// ENGINE_NONE keeps the published type.
WeightLayout LayoutForRecipe(const v1::OptimizationRecipe& recipe,
                             absl::string_view default_dtype);

int64_t WeightBytes(const ArchitectureSpec& spec, const WeightLayout& layout);

int64_t KvCacheBytes(const ArchitectureSpec& spec, int64_t context_tokens,
                     int bytes_per_element);

int64_t MinGpuMemoryBytes(const ArchitectureSpec& spec,
                          const v1::OptimizationRecipe& recipe,
                          absl::string_view default_dtype,
                          int64_t context_tokens);

// The recipes an engine offers, in the order of common.proto.
std::vector<v1::OptimizationRecipe> RecipesOfEngine(v1::Engine engine);

// Fills the computed fields of `model`: parameter_count (unless already set,
// e.g. from safetensors headers), weight_sizes (float32, bfloat16, float16,
// int16, int8, fp8 — integer/fp8 sizes keep other tensors in default_dtype)
// and supported_recipes (every recipe of `engines`, with its minimum GPU
// memory at `model.context_length()`).
void FillComputedFields(const ArchitectureSpec& spec,
                        const std::vector<v1::Engine>& engines,
                        v1::Model* model);

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_MEMORY_ESTIMATE_H_
