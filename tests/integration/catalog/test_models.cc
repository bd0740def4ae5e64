#include "tests/integration/catalog/test_models.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace hangar::testing {
namespace {

using Shape = std::vector<int64_t>;

std::vector<std::pair<std::string, Shape>> TinyTensors(
    const std::string& architecture) {
  const int64_t head_dim = kTinyHidden / kTinyHeads;
  const int64_t q = kTinyHeads * head_dim;
  const int64_t kv = kTinyKvHeads * head_dim;
  std::vector<std::pair<std::string, Shape>> tensors = {
      {"model.embed_tokens.weight", {kTinyVocab, kTinyHidden}},
      {"model.norm.weight", {kTinyHidden}},
      {"lm_head.weight", {kTinyVocab, kTinyHidden}}};
  for (int layer = 0; layer < kTinyLayers; ++layer) {
    std::string prefix = absl::StrCat("model.layers.", layer, ".");
    tensors.push_back({prefix + "self_attn.q_proj.weight", {q, kTinyHidden}});
    tensors.push_back({prefix + "self_attn.k_proj.weight", {kv, kTinyHidden}});
    tensors.push_back({prefix + "self_attn.v_proj.weight", {kv, kTinyHidden}});
    tensors.push_back({prefix + "self_attn.o_proj.weight", {kTinyHidden, q}});
    if (architecture == "Qwen2ForCausalLM") {
      tensors.push_back({prefix + "self_attn.q_proj.bias", {q}});
      tensors.push_back({prefix + "self_attn.k_proj.bias", {kv}});
      tensors.push_back({prefix + "self_attn.v_proj.bias", {kv}});
    }
    tensors.push_back(
        {prefix + "mlp.gate_proj.weight", {kTinyIntermediate, kTinyHidden}});
    tensors.push_back(
        {prefix + "mlp.up_proj.weight", {kTinyIntermediate, kTinyHidden}});
    tensors.push_back(
        {prefix + "mlp.down_proj.weight", {kTinyHidden, kTinyIntermediate}});
    tensors.push_back({prefix + "input_layernorm.weight", {kTinyHidden}});
    tensors.push_back(
        {prefix + "post_attention_layernorm.weight", {kTinyHidden}});
  }
  return tensors;
}

// llama.cpp's tensor names for a Hugging Face name.
std::string GgufName(const std::string& name) {
  static const std::vector<std::pair<std::string, std::string>> kRenames = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"},
      {"model.layers.", "blk."},
      {"self_attn.q_proj", "attn_q"},
      {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},
      {"self_attn.o_proj", "attn_output"},
      {"mlp.gate_proj", "ffn_gate"},
      {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"},
      {"post_attention_layernorm", "ffn_norm"},
      {"input_layernorm", "attn_norm"}};
  std::string out = name;
  for (const auto& [from, to] : kRenames) {
    if (size_t at = out.find(from); at != std::string::npos)
      out.replace(at, from.size(), to);
  }
  return out;
}

}  // namespace

std::string TinyConfigJson(const std::string& architecture) {
  nlohmann::json config = {{"architectures", {architecture}},
                           {"model_type", "llama"},
                           {"num_hidden_layers", kTinyLayers},
                           {"hidden_size", kTinyHidden},
                           {"num_attention_heads", kTinyHeads},
                           {"num_key_value_heads", kTinyKvHeads},
                           {"intermediate_size", kTinyIntermediate},
                           {"vocab_size", kTinyVocab},
                           {"max_position_embeddings", kTinyContext},
                           {"tie_word_embeddings", false},
                           {"torch_dtype", "float32"}};
  return config.dump(2);
}

std::string TinySafetensors(const std::string& architecture, uint32_t seed,
                            int64_t* parameters) {
  nlohmann::json header = nlohmann::json::object();
  int64_t offset = 0;
  int64_t elements_total = 0;
  for (const auto& [name, shape] : TinyTensors(architecture)) {
    int64_t elements = 1;
    for (int64_t dim : shape) elements *= dim;
    header[name] = {{"dtype", "F32"},
                    {"shape", shape},
                    {"data_offsets", {offset, offset + elements * 4}}};
    offset += elements * 4;
    elements_total += elements;
  }
  header["__metadata__"] = {{"format", "pt"}};
  std::string header_text = header.dump();
  std::string out(8, '\0');
  uint64_t length = header_text.size();
  std::memcpy(out.data(), &length, 8);  // Little-endian host.
  out += header_text;
  uint32_t state = seed * 2654435761u + 1;
  out.reserve(out.size() + static_cast<size_t>(offset));
  for (int64_t i = 0; i < offset; ++i) {
    state = state * 1664525u + 1013904223u;  // Deterministic LCG bytes.
    out.push_back(static_cast<char>(state >> 24));
  }
  if (parameters != nullptr) *parameters = elements_total;
  return out;
}

std::map<std::string, std::string> TinyModelFiles(
    const std::string& architecture, uint32_t seed) {
  return {{"config.json", TinyConfigJson(architecture)},
          {"generation_config.json", "{\"max_new_tokens\": 16}"},
          {"tokenizer.json",
           "{\"version\": \"1.0\", \"model\": {\"type\": \"BPE\"}}"},
          {"model.safetensors", TinySafetensors(architecture, seed)},
          {"README.md", "# tiny model\n"}};
}

void WriteTinyModelDir(const std::string& directory,
                       const std::string& architecture) {
  std::filesystem::create_directories(directory);
  for (const auto& [name, content] : TinyModelFiles(architecture)) {
    std::ofstream(std::filesystem::path(directory) / name, std::ios::binary)
        << content;
  }
}

void WriteTinyGguf(const std::string& path) {
  std::string out = "GGUF";
  auto u32 = [&](uint32_t v) { out.append(reinterpret_cast<char*>(&v), 4); };
  auto u64 = [&](uint64_t v) { out.append(reinterpret_cast<char*>(&v), 8); };
  auto str = [&](const std::string& s) {
    u64(s.size());
    out += s;
  };
  const std::vector<std::pair<std::string, uint32_t>> numbers = {
      {"llama.block_count", kTinyLayers},
      {"llama.embedding_length", kTinyHidden},
      {"llama.attention.head_count", kTinyHeads},
      {"llama.attention.head_count_kv", kTinyKvHeads},
      {"llama.feed_forward_length", kTinyIntermediate},
      {"llama.context_length", kTinyContext}};
  auto tensors = TinyTensors("LlamaForCausalLM");
  u32(3);                   // version
  u64(tensors.size());      // tensor count
  u64(numbers.size() + 3);  // metadata count
  str("general.architecture");
  u32(8);
  str("llama");
  str("general.name");
  u32(8);
  str("tiny gguf");
  for (const auto& [key, value] : numbers) {
    str(key);
    u32(4);  // uint32
    u32(value);
  }
  str("tokenizer.ggml.tokens");
  u32(9);  // array
  u32(8);  // of strings
  u64(kTinyVocab);
  for (int i = 0; i < kTinyVocab; ++i) str(absl::StrCat("t", i));
  uint64_t offset = 0;
  for (const auto& [name, shape] : tensors) {
    // GGUF names and reversed dims, as llama.cpp writes them.
    str(GgufName(name));
    u32(static_cast<uint32_t>(shape.size()));
    int64_t elements = 1;
    for (auto it = shape.rbegin(); it != shape.rend(); ++it) {
      u64(static_cast<uint64_t>(*it));
      elements *= *it;
    }
    u32(0);  // F32
    u64(offset);
    offset += static_cast<uint64_t>(elements) * 4;
  }
  // The data region, aligned to 32 bytes (every tensor size here is a
  // multiple of 32): zeros, as the engine's reader checks every tensor lies
  // inside the file.
  out.resize((out.size() + 31) / 32 * 32, '\0');
  out.append(offset, '\0');
  std::ofstream(path, std::ios::binary) << out;
}

}  // namespace hangar::testing
