#include "services/catalog/memory_estimate.h"

#include <array>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/dtype.h"
#include "nlohmann/json.hpp"

namespace hangar::catalog {
namespace {

using ::nlohmann::json;

struct SupportedArchitecture {
  const char* architecture;
  const char* family;
};
constexpr std::array<SupportedArchitecture, 3> kSupported = {{
    {"LlamaForCausalLM", "llama"},
    {"MistralForCausalLM", "mistral"},
    {"Qwen2ForCausalLM", "qwen2"},
}};

// Reads an integer field; INVALID_ARGUMENT naming it when absent or bad.
absl::Status ReadInt(const json& config, const char* field, int64_t* out,
                     bool required = true) {
  auto it = config.find(field);
  if (it == config.end() || it->is_null()) {
    if (!required) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: missing field \"", field, "\""));
  }
  if (!it->is_number_integer()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: field \"", field, "\" must be an integer"));
  }
  *out = it->get<int64_t>();
  return absl::OkStatus();
}

bool IsQuantizedDtype(absl::string_view dtype) {
  return dtype == "int8" || dtype == "int16" || dtype == "fp8";
}

// The projection matrices of one decoder layer: {rows, columns} each.
std::vector<std::pair<int64_t, int64_t>> ProjectionShapes(
    const ArchitectureSpec& spec) {
  const int64_t q = spec.num_attention_heads * spec.head_dim;
  const int64_t kv = spec.num_key_value_heads * spec.head_dim;
  return {{q, spec.hidden_size},
          {kv, spec.hidden_size},
          {kv, spec.hidden_size},
          {spec.hidden_size, q},
          {spec.intermediate_size, spec.hidden_size},
          {spec.intermediate_size, spec.hidden_size},
          {spec.hidden_size, spec.intermediate_size}};
}

struct Split {
  int64_t projection_params = 0;
  int64_t projection_rows = 0;
  int64_t other_params = 0;
};

Split SplitParameters(const ArchitectureSpec& spec) {
  Split split;
  for (const auto& [rows, columns] : ProjectionShapes(spec)) {
    split.projection_params += spec.num_layers * rows * columns;
    split.projection_rows += spec.num_layers * rows;
  }
  if (!spec.tie_word_embeddings) {
    split.projection_params += spec.vocab_size * spec.hidden_size;
    split.projection_rows += spec.vocab_size;
  }
  const int64_t norms =
      spec.num_layers * 2 * spec.hidden_size + spec.hidden_size;
  const int64_t biases =
      spec.attention_bias
          ? spec.num_layers *
                (spec.num_attention_heads + 2 * spec.num_key_value_heads) *
                spec.head_dim
          : 0;
  split.other_params = spec.vocab_size * spec.hidden_size + norms + biases;
  return split;
}

}  // namespace

bool IsSupportedArchitecture(absl::string_view architecture) {
  return !FamilyOfArchitecture(architecture).empty();
}

std::string SupportedArchitecturesList() {
  std::vector<std::string> names;
  for (const auto& entry : kSupported) names.push_back(entry.architecture);
  return absl::StrJoin(names, ", ");
}

std::string FamilyOfArchitecture(absl::string_view architecture) {
  for (const auto& entry : kSupported) {
    if (architecture == entry.architecture) return entry.family;
  }
  return "";
}

absl::StatusOr<ArchitectureSpec> ArchitectureSpecFromConfig(
    const json& config) {
  if (!config.is_object()) {
    return absl::InvalidArgumentError("config.json: not a JSON object");
  }
  ArchitectureSpec spec;
  auto architectures = config.find("architectures");
  if (architectures == config.end() || !architectures->is_array() ||
      architectures->empty() || !(*architectures)[0].is_string()) {
    return absl::InvalidArgumentError(
        "config.json: missing field \"architectures\" (a list of class names)");
  }
  spec.architecture = (*architectures)[0].get<std::string>();
  if (!IsSupportedArchitecture(spec.architecture)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported architecture \"", spec.architecture,
                     "\"; supported: ", SupportedArchitecturesList()));
  }
  if (absl::Status s = ReadInt(config, "num_hidden_layers", &spec.num_layers);
      !s.ok())
    return s;
  if (absl::Status s = ReadInt(config, "hidden_size", &spec.hidden_size);
      !s.ok())
    return s;
  if (absl::Status s =
          ReadInt(config, "num_attention_heads", &spec.num_attention_heads);
      !s.ok())
    return s;
  spec.num_key_value_heads = spec.num_attention_heads;
  if (absl::Status s = ReadInt(config, "num_key_value_heads",
                               &spec.num_key_value_heads, false);
      !s.ok())
    return s;
  if (absl::Status s = ReadInt(config, "head_dim", &spec.head_dim, false);
      !s.ok())
    return s;
  if (spec.head_dim == 0 && spec.num_attention_heads > 0) {
    spec.head_dim = spec.hidden_size / spec.num_attention_heads;
  }
  if (absl::Status s =
          ReadInt(config, "intermediate_size", &spec.intermediate_size);
      !s.ok())
    return s;
  if (absl::Status s = ReadInt(config, "vocab_size", &spec.vocab_size); !s.ok())
    return s;
  if (absl::Status s = ReadInt(config, "max_position_embeddings",
                               &spec.max_position_embeddings);
      !s.ok())
    return s;
  auto tie = config.find("tie_word_embeddings");
  if (tie != config.end() && tie->is_boolean()) {
    spec.tie_word_embeddings = tie->get<bool>();
  }
  spec.attention_bias = spec.architecture == "Qwen2ForCausalLM";
  auto bias = config.find("attention_bias");
  if (bias != config.end() && bias->is_boolean()) {
    spec.attention_bias = bias->get<bool>();
  }
  if (absl::Status s = ValidateArchitectureSpec(spec); !s.ok()) return s;
  return spec;
}

absl::Status ValidateArchitectureSpec(const ArchitectureSpec& spec) {
  const std::pair<const char*, int64_t> fields[] = {
      {"num_hidden_layers", spec.num_layers},
      {"hidden_size", spec.hidden_size},
      {"num_attention_heads", spec.num_attention_heads},
      {"num_key_value_heads", spec.num_key_value_heads},
      {"head_dim", spec.head_dim},
      {"intermediate_size", spec.intermediate_size},
      {"vocab_size", spec.vocab_size},
      {"max_position_embeddings", spec.max_position_embeddings},
  };
  for (const auto& [name, value] : fields) {
    // 2^24 bounds every real model by far and keeps products within int64.
    if (value <= 0 || value > (int64_t{1} << 24)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config.json: \"", name, "\" must be in [1, 16777216]; was ", value));
    }
  }
  if (spec.num_attention_heads % spec.num_key_value_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.json: num_attention_heads (", spec.num_attention_heads,
        ") must be a multiple of num_key_value_heads (",
        spec.num_key_value_heads, ")"));
  }
  return absl::OkStatus();
}

int64_t ParameterCount(const ArchitectureSpec& spec) {
  Split split = SplitParameters(spec);
  return split.projection_params + split.other_params;
}

ElementSize ElementSizeOf(absl::string_view dtype) {
  // The engine's type of that name ("fp8" is the engine's "fp8_e4m3"); its
  // block is the smallest power-of-two row the engine stores in whole bytes
  // (1 element for plain types, 32 for q8_0/q4_0, 256 for the K-quants).
  const absl::string_view name = dtype == "fp8" ? "fp8_e4m3" : dtype;
  for (engine::DType d :
       {engine::DType::kF32, engine::DType::kF16, engine::DType::kBF16,
        engine::DType::kI8, engine::DType::kI16, engine::DType::kF8E4M3,
        engine::DType::kQ8_0, engine::DType::kQ4_0, engine::DType::kQ4_K,
        engine::DType::kQ5_K, engine::DType::kQ6_K}) {
    if (name != engine::DTypeName(d)) continue;
    for (int64_t block = 1; block <= 1024; block *= 2) {
      const int64_t bytes = engine::DTypeRowBytes(d, block);
      if (bytes > 0) return {bytes, block};
    }
  }
  return {};
}

int64_t StorageBytes(absl::string_view dtype, int64_t count) {
  const ElementSize size = ElementSizeOf(dtype);
  return count / size.elements * size.bytes +
         (count % size.elements) * size.bytes / size.elements;
}

int ElementBytes(absl::string_view dtype) {
  const ElementSize size = ElementSizeOf(dtype);
  return size.elements == 1 ? int(size.bytes) : 0;
}

bool IsBlockDtype(absl::string_view dtype) {
  return ElementSizeOf(dtype).elements > 1;
}

bool IsFloatDtype(absl::string_view dtype) {
  return dtype == "float32" || dtype == "bfloat16" || dtype == "float16";
}

WeightLayout LayoutForRecipe(const v1::OptimizationRecipe& recipe,
                             absl::string_view default_dtype) {
  const std::string published(default_dtype);
  const std::string sixteen =
      ElementBytes(published) == 2 ? published : "bfloat16";
  auto uniform = [](const std::string& t) { return WeightLayout{t, t, t}; };
  // A GGUF model runs as published on the built-in engine, whose KV cache
  // is float32.
  if (recipe.engine() == v1::ENGINE_NONE && IsBlockDtype(published))
    return {published, published, "float32"};
  if (recipe.engine() == v1::ENGINE_NONE) return uniform(published);
  switch (recipe.quantization()) {
    case v1::QUANTIZATION_INT8:
    case v1::QUANTIZATION_INT8_FLOAT32:
      return {"int8", "float32", "float32"};
    case v1::QUANTIZATION_INT8_FLOAT16:
      return {"int8", "float16", "float16"};
    case v1::QUANTIZATION_INT8_BFLOAT16:
      return {"int8", "bfloat16", "bfloat16"};
    case v1::QUANTIZATION_INT16:
      return {"int16", "float32", "float32"};
    case v1::QUANTIZATION_FLOAT16:
      return uniform("float16");
    case v1::QUANTIZATION_BFLOAT16:
      return uniform("bfloat16");
    case v1::QUANTIZATION_FLOAT32:
      return uniform("float32");
    case v1::QUANTIZATION_FP8:
      return {"fp8", sixteen, sixteen};
    default:
      return uniform(published);
  }
}

int64_t WeightBytes(const ArchitectureSpec& spec, const WeightLayout& layout) {
  Split split = SplitParameters(spec);
  int64_t bytes =
      StorageBytes(layout.projection_dtype, split.projection_params) +
      StorageBytes(layout.other_dtype, split.other_params);
  if (IsQuantizedDtype(layout.projection_dtype)) {
    bytes += split.projection_rows * 4;  // One float32 scale per row.
  }
  return bytes;
}

int64_t KvCacheBytes(const ArchitectureSpec& spec, int64_t context_tokens,
                     int bytes_per_element) {
  return 2 * spec.num_layers * spec.num_key_value_heads * spec.head_dim *
         context_tokens * bytes_per_element;
}

int64_t MinGpuMemoryBytes(const ArchitectureSpec& spec,
                          const v1::OptimizationRecipe& recipe,
                          absl::string_view default_dtype,
                          int64_t context_tokens) {
  WeightLayout layout = LayoutForRecipe(recipe, default_dtype);
  return WeightBytes(spec, layout) +
         StorageBytes(layout.kv_dtype, KvCacheBytes(spec, context_tokens, 1)) +
         kRuntimeOverheadBytes;
}

std::vector<v1::OptimizationRecipe> RecipesOfEngine(v1::Engine engine) {
  std::vector<v1::Quantization> quantizations;
  switch (engine) {
    case v1::ENGINE_NONE:
      quantizations = {v1::QUANTIZATION_UNSPECIFIED};
      break;
    case v1::ENGINE_CTRANSLATE2:
      quantizations = {
          v1::QUANTIZATION_INT8,         v1::QUANTIZATION_INT8_FLOAT32,
          v1::QUANTIZATION_INT8_FLOAT16, v1::QUANTIZATION_INT8_BFLOAT16,
          v1::QUANTIZATION_INT16,        v1::QUANTIZATION_FLOAT16,
          v1::QUANTIZATION_BFLOAT16,     v1::QUANTIZATION_FLOAT32};
      break;
    case v1::ENGINE_VLLM:
      quantizations = {v1::QUANTIZATION_FLOAT16, v1::QUANTIZATION_BFLOAT16,
                       v1::QUANTIZATION_FLOAT32, v1::QUANTIZATION_FP8};
      break;
    default:
      break;
  }
  std::vector<v1::OptimizationRecipe> recipes;
  for (v1::Quantization quantization : quantizations) {
    v1::OptimizationRecipe recipe;
    recipe.set_engine(engine);
    recipe.set_quantization(quantization);
    recipes.push_back(recipe);
  }
  return recipes;
}

void FillComputedFields(const ArchitectureSpec& spec,
                        const std::vector<v1::Engine>& engines,
                        v1::Model* model) {
  if (model->parameter_count() == 0) {
    model->set_parameter_count(ParameterCount(spec));
  }
  const std::string published = model->default_dtype();
  model->clear_weight_sizes();
  for (const char* dtype :
       {"float32", "bfloat16", "float16", "int16", "int8", "fp8"}) {
    WeightLayout layout{dtype, dtype, dtype};
    if (IsQuantizedDtype(dtype)) layout.other_dtype = published;
    v1::WeightSize* size = model->add_weight_sizes();
    size->set_dtype(dtype);
    size->set_bytes(WeightBytes(spec, layout));
  }
  const int64_t context = model->context_length() > 0
                              ? model->context_length()
                              : spec.max_position_embeddings;
  model->clear_supported_recipes();
  for (v1::Engine engine : engines) {
    for (const v1::OptimizationRecipe& recipe : RecipesOfEngine(engine)) {
      v1::RecipeSupport* support = model->add_supported_recipes();
      *support->mutable_recipe() = recipe;
      support->set_min_gpu_memory_bytes(
          MinGpuMemoryBytes(spec, recipe, published, context));
    }
  }
}

}  // namespace hangar::catalog
