#include "services/catalog/weights_header.h"

#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "engine/gguf.h"
#include "engine/model_config.h"
#include "engine/safetensors.h"
#include "nlohmann/json.hpp"

namespace hangar::catalog {
namespace {

using ::nlohmann::json;

// Hangar's dtype names for safetensors dtypes.
std::string DtypeFromSafetensors(const std::string& dtype) {
  if (dtype == "BF16") return "bfloat16";
  if (dtype == "F16") return "float16";
  if (dtype == "F32") return "float32";
  if (dtype == "F64") return "float64";
  if (dtype == "F8_E4M3") return "fp8";
  if (dtype == "F8_E5M2") return "fp8_e5m2";
  return absl::AsciiStrToLower(dtype);  // I8 -> i8, BOOL -> bool, ...
}

// Hangar's dtype names for ggml types: float32/float16/bfloat16, else the
// lower-case ggml name ("q8_0", "q4_k").
std::string DtypeFromGgml(uint32_t type) {
  switch (type) {
    case engine::kGgmlF32:
      return "float32";
    case engine::kGgmlF16:
      return "float16";
    case engine::kGgmlBF16:
      return "bfloat16";
    default:
      return absl::AsciiStrToLower(engine::GgufFile::GgmlTypeName(type));
  }
}

WeightsSummary Summarize(const engine::SafetensorsFile& file) {
  WeightsSummary summary;
  for (const auto& [name, tensor] : file.tensors()) {
    summary.tensors++;
    summary.parameters += tensor.elements();
    summary.parameters_by_dtype[DtypeFromSafetensors(tensor.dtype)] +=
        tensor.elements();
  }
  return summary;
}

std::string ClassOfModelType(const std::string& model_type) {
  if (model_type == "llama") return "LlamaForCausalLM";
  if (model_type == "mistral") return "MistralForCausalLM";
  if (model_type == "qwen2") return "Qwen2ForCausalLM";
  return "";
}

ArchitectureSpec SpecOf(const engine::ModelConfig& config,
                        const std::string& hf_class) {
  ArchitectureSpec spec;
  spec.architecture =
      hf_class.empty() ? ClassOfModelType(config.architecture) : hf_class;
  spec.num_layers = config.num_layers;
  spec.hidden_size = config.hidden_size;
  spec.num_attention_heads = config.num_heads;
  spec.num_key_value_heads = config.num_kv_heads;
  spec.head_dim = config.head_dim;
  spec.intermediate_size = config.intermediate_size;
  spec.vocab_size = config.vocab_size;
  spec.max_position_embeddings = config.max_position_embeddings;
  spec.tie_word_embeddings = config.tie_word_embeddings;
  spec.attention_bias =
      config.attention_bias || spec.architecture == "Qwen2ForCausalLM";
  return spec;
}

}  // namespace

void WeightsSummary::Merge(const WeightsSummary& other) {
  tensors += other.tensors;
  parameters += other.parameters;
  for (const auto& [dtype, count] : other.parameters_by_dtype) {
    parameters_by_dtype[dtype] += count;
  }
}

std::string WeightsSummary::MainDtype() const {
  std::string best;
  int64_t most = -1;
  for (const auto& [dtype, count] : parameters_by_dtype) {
    if (count > most) {
      best = dtype;
      most = count;
    }
  }
  return best;
}

absl::StatusOr<int64_t> SafetensorsHeaderLength(absl::string_view first_8_bytes,
                                                absl::string_view file_name) {
  absl::StatusOr<uint64_t> length = engine::SafetensorsFile::HeaderLength(
      reinterpret_cast<const uint8_t*>(first_8_bytes.data()),
      first_8_bytes.size());
  if (!length.ok()) return PrefixStatus(file_name, length.status());
  if (*length < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        file_name, ": safetensors: header length ", *length, " is below 2"));
  }
  return static_cast<int64_t>(*length);
}

absl::StatusOr<WeightsSummary> SummarizeSafetensorsHeader(
    const std::string& header_json, absl::string_view file_name) {
  absl::StatusOr<std::unique_ptr<engine::SafetensorsFile>> file =
      engine::SafetensorsFile::ParseHeader(header_json);
  if (!file.ok()) return PrefixStatus(file_name, file.status());
  return Summarize(**file);
}

absl::StatusOr<ConfigSummary> SummarizeConfigJson(const std::string& text,
                                                  absl::string_view file_name) {
  const std::string name(file_name);
  json config = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": not a JSON object"));
  }
  std::string hf_class;
  if (auto it = config.find("architectures"); it != config.end() &&
                                              it->is_array() && !it->empty() &&
                                              (*it)[0].is_string()) {
    hf_class = (*it)[0].get<std::string>();
    if (!IsSupportedArchitecture(hf_class)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": unsupported architecture \"", hf_class,
                       "\"; supported: ", SupportedArchitecturesList()));
    }
  }
  ASSIGN_OR_RETURN(engine::ModelConfig parsed,
                   engine::ParseHuggingFaceConfig(text, name));
  ConfigSummary summary;
  summary.spec = SpecOf(parsed, hf_class);
  RETURN_IF_ERROR(ValidateArchitectureSpec(summary.spec));
  if (auto it = config.find("torch_dtype");
      it != config.end() && it->is_string() &&
      IsFloatDtype(it->get<std::string>())) {
    summary.torch_dtype = it->get<std::string>();
  }
  return summary;
}

absl::StatusOr<WeightsSummary> ReadSafetensorsFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<engine::SafetensorsFile> file,
                   engine::SafetensorsFile::Open(path));
  return Summarize(*file);
}

absl::StatusOr<GgufSummary> ReadGgufFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<engine::GgufFile> file,
                   engine::GgufFile::Open(path));
  ASSIGN_OR_RETURN(engine::ModelConfig config,
                   engine::ModelConfigFromGguf(*file, path));
  GgufSummary summary;
  summary.spec = SpecOf(config, "");
  if (const engine::GgufValue* name = file->Find("general.name")) {
    summary.name = name->s;
  }
  if (const engine::GgufValue* license = file->Find("general.license")) {
    summary.license = license->s;
  }
  for (const auto& [name, tensor] : file->tensors()) {
    summary.weights.tensors++;
    summary.weights.parameters += tensor.elements();
    summary.weights.parameters_by_dtype[DtypeFromGgml(tensor.type)] +=
        tensor.elements();
  }
  summary.dtype = summary.weights.MainDtype();
  RETURN_IF_ERROR(ValidateArchitectureSpec(summary.spec));
  return summary;
}

}  // namespace hangar::catalog
