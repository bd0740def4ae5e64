#include "services/catalog/weights_header.h"

#include <cstring>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "nlohmann/json.hpp"

namespace hangar::catalog {
namespace {

using ::nlohmann::json;

std::string DtypeFromSafetensors(const std::string& dtype) {
  if (dtype == "BF16") return "bfloat16";
  if (dtype == "F16") return "float16";
  if (dtype == "F32") return "float32";
  if (dtype == "F64") return "float64";
  if (dtype == "I8") return "int8";
  if (dtype == "U8") return "uint8";
  if (dtype == "I16") return "int16";
  if (dtype == "I32") return "int32";
  if (dtype == "I64") return "int64";
  if (dtype == "F8_E4M3") return "fp8";
  if (dtype == "F8_E5M2") return "fp8_e5m2";
  if (dtype == "BOOL") return "bool";
  return "";
}

// A bounds-checked reader over a GGUF file.
class GgufReader {
 public:
  GgufReader(std::ifstream* file, std::string path)
      : file_(file), path_(std::move(path)) {}

  absl::Status Read(void* out, size_t bytes) {
    if (!file_->read(static_cast<char*>(out),
                     static_cast<std::streamsize>(bytes))) {
      return Malformed("unexpected end of file");
    }
    return absl::OkStatus();
  }
  template <typename T>
  absl::StatusOr<T> Scalar() {
    T value;
    RETURN_IF_ERROR(Read(&value, sizeof(value)));
    return value;
  }
  absl::StatusOr<std::string> String() {
    ASSIGN_OR_RETURN(uint64_t length, Scalar<uint64_t>());
    if (length > (1u << 20)) return Malformed("string longer than 1 MiB");
    std::string value(length, '\0');
    RETURN_IF_ERROR(Read(value.data(), length));
    return value;
  }
  absl::Status Skip(uint64_t bytes) {
    if (!file_->seekg(static_cast<std::streamoff>(bytes), std::ios::cur)) {
      return Malformed("unexpected end of file");
    }
    return absl::OkStatus();
  }
  absl::Status Malformed(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": not a valid GGUF file: ", what));
  }

 private:
  std::ifstream* file_;
  std::string path_;
};

// GGUF metadata value types.
enum GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

int ScalarSize(uint32_t type) {
  switch (type) {
    case kU8:
    case kI8:
    case kBool:
      return 1;
    case kU16:
    case kI16:
      return 2;
    case kU32:
    case kI32:
    case kF32:
      return 4;
    case kU64:
    case kI64:
    case kF64:
      return 8;
    default:
      return 0;
  }
}

// GGML tensor types by number, for the common ones.
std::string GgmlTypeName(uint32_t type) {
  switch (type) {
    case 0:
      return "float32";
    case 1:
      return "float16";
    case 2:
      return "q4_0";
    case 3:
      return "q4_1";
    case 8:
      return "q8_0";
    case 30:
      return "bfloat16";
    default:
      return absl::StrCat("ggml_type_", type);
  }
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
  if (first_8_bytes.size() != 8) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_name, ": too short for a safetensors file"));
  }
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i) {
    length = (length << 8) | static_cast<unsigned char>(first_8_bytes[i]);
  }
  if (length < 2 ||
      length > static_cast<uint64_t>(kMaxSafetensorsHeaderBytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_name, ": safetensors header length ", length,
                     " is outside [2, ", kMaxSafetensorsHeaderBytes, "]"));
  }
  return static_cast<int64_t>(length);
}

absl::StatusOr<WeightsSummary> ParseSafetensorsHeader(
    absl::string_view header_json, absl::string_view file_name) {
  json header = json::parse(header_json.begin(), header_json.end(), nullptr,
                            /*allow_exceptions=*/false);
  auto malformed = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_name, ": bad safetensors header: ", what));
  };
  if (header.is_discarded() || !header.is_object()) {
    return malformed("not a JSON object");
  }
  WeightsSummary summary;
  for (const auto& [name, tensor] : header.items()) {
    if (name == "__metadata__") continue;
    if (!tensor.is_object() || !tensor.contains("dtype") ||
        !tensor["dtype"].is_string() || !tensor.contains("shape") ||
        !tensor["shape"].is_array()) {
      return malformed(absl::StrCat("tensor \"", name, "\" lacks dtype/shape"));
    }
    int64_t elements = 1;
    for (const json& dim : tensor["shape"]) {
      if (!dim.is_number_unsigned() ||
          dim.get<uint64_t>() > (uint64_t{1} << 40)) {
        return malformed(absl::StrCat("tensor \"", name, "\" has a bad shape"));
      }
      const int64_t size = static_cast<int64_t>(dim.get<uint64_t>());
      if (size != 0 && elements > (int64_t{1} << 50) / size) {
        return malformed(absl::StrCat("tensor \"", name, "\" is too large"));
      }
      elements *= size;
    }
    std::string dtype =
        DtypeFromSafetensors(tensor["dtype"].get<std::string>());
    if (dtype.empty()) {
      return malformed(absl::StrCat("tensor \"", name, "\" has unknown dtype"));
    }
    summary.tensors++;
    summary.parameters += elements;
    summary.parameters_by_dtype[dtype] += elements;
  }
  return summary;
}

absl::StatusOr<WeightsSummary> ReadSafetensorsFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot be read"));
  }
  std::string first(8, '\0');
  file.read(first.data(), 8);
  first.resize(static_cast<size_t>(file.gcount()));
  ASSIGN_OR_RETURN(int64_t length, SafetensorsHeaderLength(first, path));
  std::string header(static_cast<size_t>(length), '\0');
  if (!file.read(header.data(), length)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": safetensors header is truncated"));
  }
  return ParseSafetensorsHeader(header, path);
}

absl::StatusOr<GgufSummary> ReadGgufFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat(path, ": cannot be read"));
  GgufReader reader(&file, path);
  char magic[4];
  RETURN_IF_ERROR(reader.Read(magic, 4));
  if (std::memcmp(magic, "GGUF", 4) != 0) return reader.Malformed("bad magic");
  ASSIGN_OR_RETURN(uint32_t version, reader.Scalar<uint32_t>());
  if (version < 2 || version > 3) {
    return reader.Malformed(absl::StrCat("unsupported version ", version));
  }
  ASSIGN_OR_RETURN(uint64_t tensor_count, reader.Scalar<uint64_t>());
  ASSIGN_OR_RETURN(uint64_t kv_count, reader.Scalar<uint64_t>());
  if (tensor_count > (1u << 20) || kv_count > (1u << 20)) {
    return reader.Malformed("implausible tensor or metadata count");
  }
  std::map<std::string, int64_t> integers;
  std::map<std::string, std::string> strings;
  std::map<std::string, uint64_t> array_lengths;
  for (uint64_t i = 0; i < kv_count; ++i) {
    ASSIGN_OR_RETURN(std::string key, reader.String());
    ASSIGN_OR_RETURN(uint32_t type, reader.Scalar<uint32_t>());
    if (type == kString) {
      ASSIGN_OR_RETURN(strings[key], reader.String());
    } else if (type == kArray) {
      ASSIGN_OR_RETURN(uint32_t element_type, reader.Scalar<uint32_t>());
      ASSIGN_OR_RETURN(uint64_t length, reader.Scalar<uint64_t>());
      if (length > (uint64_t{1} << 26))
        return reader.Malformed("array too long");
      array_lengths[key] = length;
      if (element_type == kString) {
        for (uint64_t j = 0; j < length; ++j) {
          ASSIGN_OR_RETURN(uint64_t bytes, reader.Scalar<uint64_t>());
          if (bytes > (1u << 20)) return reader.Malformed("string too long");
          RETURN_IF_ERROR(reader.Skip(bytes));
        }
      } else if (int size = ScalarSize(element_type); size > 0) {
        RETURN_IF_ERROR(reader.Skip(length * size));
      } else {
        return reader.Malformed(absl::StrCat("array of type ", element_type,
                                             " under \"", key, "\""));
      }
    } else if (int size = ScalarSize(type); size > 0) {
      uint64_t raw = 0;
      RETURN_IF_ERROR(reader.Read(&raw, size));
      if (type == kI8) raw = static_cast<uint64_t>(static_cast<int8_t>(raw));
      if (type == kI16) raw = static_cast<uint64_t>(static_cast<int16_t>(raw));
      if (type == kI32) raw = static_cast<uint64_t>(static_cast<int32_t>(raw));
      if (type != kF32 && type != kF64)
        integers[key] = static_cast<int64_t>(raw);
    } else {
      return reader.Malformed(
          absl::StrCat("value type ", type, " under \"", key, "\""));
    }
  }
  GgufSummary summary;
  const std::string arch = strings["general.architecture"];
  if (arch == "llama") {
    summary.spec.architecture = "LlamaForCausalLM";
  } else if (arch == "qwen2") {
    summary.spec.architecture = "Qwen2ForCausalLM";
    summary.spec.attention_bias = true;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": unsupported GGUF architecture \"", arch,
                     "\"; supported: llama, qwen2"));
  }
  auto number = [&](const std::string& key) -> absl::StatusOr<int64_t> {
    auto it = integers.find(absl::StrCat(arch, ".", key));
    if (it == integers.end()) {
      return reader.Malformed(absl::StrCat("missing \"", arch, ".", key, "\""));
    }
    return it->second;
  };
  ASSIGN_OR_RETURN(summary.spec.num_layers, number("block_count"));
  ASSIGN_OR_RETURN(summary.spec.hidden_size, number("embedding_length"));
  ASSIGN_OR_RETURN(summary.spec.num_attention_heads,
                   number("attention.head_count"));
  summary.spec.num_key_value_heads = summary.spec.num_attention_heads;
  if (integers.count(arch + ".attention.head_count_kv")) {
    summary.spec.num_key_value_heads =
        integers[arch + ".attention.head_count_kv"];
  }
  ASSIGN_OR_RETURN(summary.spec.intermediate_size,
                   number("feed_forward_length"));
  ASSIGN_OR_RETURN(summary.spec.max_position_embeddings,
                   number("context_length"));
  if (summary.spec.num_attention_heads > 0) {
    summary.spec.head_dim =
        summary.spec.hidden_size / summary.spec.num_attention_heads;
  }
  summary.spec.vocab_size =
      static_cast<int64_t>(array_lengths["tokenizer.ggml.tokens"]);
  summary.name = strings["general.name"];
  summary.license = strings["general.license"];

  bool has_output = false;
  for (uint64_t i = 0; i < tensor_count; ++i) {
    ASSIGN_OR_RETURN(std::string name, reader.String());
    ASSIGN_OR_RETURN(uint32_t dims, reader.Scalar<uint32_t>());
    if (dims > 4)
      return reader.Malformed(
          absl::StrCat("tensor \"", name, "\" has ", dims, " dims"));
    int64_t elements = 1;
    for (uint32_t d = 0; d < dims; ++d) {
      ASSIGN_OR_RETURN(uint64_t dim, reader.Scalar<uint64_t>());
      if (dim > (uint64_t{1} << 40))
        return reader.Malformed("tensor dimension too large");
      if (dim != 0 &&
          elements > (int64_t{1} << 50) / static_cast<int64_t>(dim)) {
        return reader.Malformed("tensor too large");
      }
      elements *= static_cast<int64_t>(dim);
    }
    ASSIGN_OR_RETURN(uint32_t type, reader.Scalar<uint32_t>());
    ASSIGN_OR_RETURN(uint64_t offset, reader.Scalar<uint64_t>());
    (void)offset;
    if (name == "output.weight") has_output = true;
    if (name == "token_embd.weight" && summary.spec.vocab_size == 0 &&
        summary.spec.hidden_size > 0) {
      summary.spec.vocab_size = elements / summary.spec.hidden_size;
    }
    summary.weights.tensors++;
    summary.weights.parameters += elements;
    summary.weights.parameters_by_dtype[GgmlTypeName(type)] += elements;
  }
  summary.spec.tie_word_embeddings = !has_output;
  summary.dtype = summary.weights.MainDtype();
  RETURN_IF_ERROR(ValidateArchitectureSpec(summary.spec));
  return summary;
}

}  // namespace hangar::catalog
