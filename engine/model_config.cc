#include "engine/model_config.h"

#include <algorithm>
#include <exception>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"

namespace hangar::engine {
namespace {

using json = nlohmann::json;

absl::StatusOr<int> GetInt(const json& j, const char* key,
                           const std::string& file) {
  if (!j.contains(key) || !j[key].is_number_integer()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": '", key, "' must be an integer"));
  }
  int64_t v = j[key].get<int64_t>();
  if (v < 0 || v > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": '", key, "' = ", v, " is out of range"));
  }
  return int(v);
}

void AddIds(const json& v, std::vector<int>* out) {
  if (v.is_number_integer()) out->push_back(v.get<int>());
  if (v.is_array())
    for (const json& e : v)
      if (e.is_number_integer()) out->push_back(e.get<int>());
}

absl::StatusOr<ModelConfig> ParseConfigJson(const json& cfg,
                                            const std::string& config_path) {
  ModelConfig c;
  std::string model_type = cfg.value("model_type", "");
  if (!IsSupportedModelType(model_type)) {
    return absl::InvalidArgumentError(
        absl::StrCat(config_path, ": model_type '", model_type,
                     "' is not supported (llama, mistral, qwen2)"));
  }
  c.architecture = model_type;
  std::string act = cfg.value("hidden_act", "silu");
  if (act != "silu") {
    return absl::InvalidArgumentError(absl::StrCat(
        config_path, ": hidden_act '", act, "' is not supported (silu)"));
  }
  if (cfg.value("mlp_bias", false)) {
    return absl::InvalidArgumentError(
        absl::StrCat(config_path, ": mlp_bias is not supported"));
  }
  ASSIGN_OR_RETURN(c.vocab_size, GetInt(cfg, "vocab_size", config_path));
  ASSIGN_OR_RETURN(c.hidden_size, GetInt(cfg, "hidden_size", config_path));
  ASSIGN_OR_RETURN(c.intermediate_size,
                   GetInt(cfg, "intermediate_size", config_path));
  ASSIGN_OR_RETURN(c.num_layers, GetInt(cfg, "num_hidden_layers", config_path));
  ASSIGN_OR_RETURN(c.num_heads,
                   GetInt(cfg, "num_attention_heads", config_path));
  c.num_kv_heads = c.num_heads;
  if (cfg.contains("num_key_value_heads") &&
      !cfg["num_key_value_heads"].is_null()) {
    ASSIGN_OR_RETURN(c.num_kv_heads,
                     GetInt(cfg, "num_key_value_heads", config_path));
  }
  if (c.num_heads <= 0 || c.hidden_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        config_path, ": hidden_size and num_attention_heads must be positive"));
  }
  c.head_dim = c.hidden_size / c.num_heads;
  if (cfg.contains("head_dim") && cfg["head_dim"].is_number_integer()) {
    ASSIGN_OR_RETURN(c.head_dim, GetInt(cfg, "head_dim", config_path));
  }
  c.max_position_embeddings = cfg.value("max_position_embeddings", 2048);
  c.rms_norm_eps = cfg.value("rms_norm_eps", 1e-6f);
  c.rope_theta = cfg.value("rope_theta", 10000.0f);
  c.tie_word_embeddings = cfg.value("tie_word_embeddings", false);
  c.attention_bias =
      model_type == "qwen2" || cfg.value("attention_bias", false);
  if (cfg.contains("rope_scaling") && !cfg["rope_scaling"].is_null()) {
    const json& rs = cfg["rope_scaling"];
    std::string type = rs.value("rope_type", rs.value("type", ""));
    if (type != "llama3") {
      return absl::InvalidArgumentError(
          absl::StrCat(config_path, ": rope_scaling type '", type,
                       "' is not supported (llama3)"));
    }
    c.rope_scaling_factor = rs.value("factor", 8.0f);
    c.rope_low_freq_factor = rs.value("low_freq_factor", 1.0f);
    c.rope_high_freq_factor = rs.value("high_freq_factor", 4.0f);
    c.rope_original_max_position =
        rs.value("original_max_position_embeddings", 8192);
  }
  if (model_type == "mistral" && cfg.contains("sliding_window") &&
      cfg["sliding_window"].is_number_integer()) {
    // Within the window sliding attention equals full attention, so the
    // context is capped there.
    c.max_position_embeddings =
        std::min(c.max_position_embeddings, cfg["sliding_window"].get<int>());
  }
  if (cfg.contains("bos_token_id") && cfg["bos_token_id"].is_number_integer())
    c.bos_token_id = cfg["bos_token_id"].get<int>();
  if (cfg.contains("eos_token_id"))
    AddIds(cfg["eos_token_id"], &c.eos_token_ids);
  return c;
}

}  // namespace

bool IsSupportedModelType(const std::string& model_type) {
  return model_type == "llama" || model_type == "mistral" ||
         model_type == "qwen2";
}

absl::StatusOr<ModelConfig> ParseHuggingFaceConfig(
    const std::string& text, const std::string& config_path) {
  json cfg = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (cfg.is_discarded() || !cfg.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(config_path, ": not a JSON object"));
  }
  try {
    return ParseConfigJson(cfg, config_path);
  } catch (const std::exception& e) {
    // nlohmann::json type errors (a string where a number belongs).
    return absl::InvalidArgumentError(
        absl::StrCat(config_path, ": ", e.what()));
  }
}

absl::StatusOr<ModelConfig> ModelConfigFromGguf(const GgufFile& g,
                                                const std::string& path) {
  const GgufValue* arch_v = g.Find("general.architecture");
  if (arch_v == nullptr)
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no general.architecture"));
  const std::string arch = arch_v->s;
  if (!IsSupportedModelType(arch)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": architecture '", arch,
                     "' is not supported (llama, mistral, qwen2)"));
  }
  ModelConfig c;
  c.architecture = arch;
  // llama.cpp permutes Q/K of llama/mistral for interleaved RoPE; qwen2
  // keeps HF's layout (NEOX rope).
  c.rope_interleaved = arch != "qwen2";
  c.attention_bias = arch == "qwen2";
  auto get = [&](const std::string& key, bool required,
                 int64_t def) -> absl::StatusOr<int64_t> {
    const GgufValue* v = g.Find(arch + "." + key);
    if (v == nullptr) {
      if (required)
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": missing metadata ", arch, ".", key));
      return def;
    }
    int64_t x = v->AsInt();
    if (x < 0 || x > (int64_t{1} << 30)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": ", arch, ".", key, " = ", x, " is out of range"));
    }
    return x;
  };
  ASSIGN_OR_RETURN(int64_t D, get("embedding_length", true, 0));
  ASSIGN_OR_RETURN(int64_t layers, get("block_count", true, 0));
  ASSIGN_OR_RETURN(int64_t F, get("feed_forward_length", true, 0));
  ASSIGN_OR_RETURN(int64_t heads, get("attention.head_count", true, 0));
  ASSIGN_OR_RETURN(int64_t kv_heads,
                   get("attention.head_count_kv", false, heads));
  ASSIGN_OR_RETURN(int64_t ctx, get("context_length", false, 2048));
  if (heads <= 0 || D <= 0)
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": bad head count or embedding length"));
  c.hidden_size = int(D);
  c.num_layers = int(layers);
  c.intermediate_size = int(F);
  c.num_heads = int(heads);
  c.num_kv_heads = int(kv_heads);
  c.head_dim = int(D / heads);
  ASSIGN_OR_RETURN(int64_t key_length,
                   get("attention.key_length", false, c.head_dim));
  c.head_dim = int(key_length);
  c.max_position_embeddings = int(ctx);
  if (const GgufValue* v = g.Find(arch + ".rope.freq_base"))
    c.rope_theta = float(v->AsDouble());
  if (const GgufValue* v = g.Find(arch + ".attention.layer_norm_rms_epsilon"))
    c.rms_norm_eps = float(v->AsDouble());
  if (g.Find(arch + ".rope.scaling.type") != nullptr &&
      g.Find(arch + ".rope.scaling.type")->s != "none") {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": rope scaling '", g.Find(arch + ".rope.scaling.type")->s,
        "' is not supported"));
  }
  const GgufTensor* emb = g.FindTensor("token_embd.weight");
  if (emb == nullptr || emb->dims.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": missing 2-D tensor 'token_embd.weight'"));
  }
  c.vocab_size = int(emb->dims[1]);
  c.tie_word_embeddings = g.FindTensor("output.weight") == nullptr;
  return c;
}

}  // namespace hangar::engine
