#include "engine/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "engine/file_util.h"
#include "engine/gguf.h"
#include "engine/kquants.h"
#include "engine/model_config.h"
#include "engine/safetensors.h"

namespace hangar::engine {
namespace {

using json = nlohmann::json;

absl::StatusOr<json> ReadJson(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a JSON object"));
  }
  return j;
}

void AddIds(const json& v, std::vector<int>* out) {
  if (v.is_number_integer()) out->push_back(v.get<int>());
  if (v.is_array())
    for (const json& e : v)
      if (e.is_number_integer()) out->push_back(e.get<int>());
}

inline void RmsNorm(const float* x, const float* w, int n, float eps,
                    float* out) {
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  float scale = float(1.0 / std::sqrt(ss / n + eps));
  for (int i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

}  // namespace

struct Model::Files {
  std::vector<std::unique_ptr<SafetensorsFile>> safetensors;
  std::unique_ptr<GgufFile> gguf;
};

Model::Model() : files_(std::make_unique<Files>()) {}
Model::~Model() = default;

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& path,
                                                   const LoadOptions& options) {
  if (!FileExists(path))
    return absl::NotFoundError(
        absl::StrCat(path, ": no such file or directory"));
  if (options.threads < 0 || options.threads > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("threads: must be in [0, 256]; was ", options.threads));
  }
  if (options.max_context < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_context: must be >= 0; was ", options.max_context));
  }
  auto model = std::unique_ptr<Model>(new Model());
  model->info_.path = path;
  try {
    if (IsDirectory(path)) {
      RETURN_IF_ERROR(model->LoadHuggingFace(path));
    } else {
      RETURN_IF_ERROR(model->LoadGguf(path));
    }
  } catch (const std::exception& e) {
    // nlohmann::json type errors in config.json and friends.
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", e.what()));
  }
  RETURN_IF_ERROR(model->Finish(options));
  return model;
}

bool Model::IsEos(int token) const {
  return std::find(config_.eos_token_ids.begin(), config_.eos_token_ids.end(),
                   token) != config_.eos_token_ids.end();
}

// ---------------------------------------------------------------------------
// Hugging Face directories

absl::Status Model::LoadHuggingFace(const std::string& dir) {
  info_.format = "huggingface";
  const std::string config_path = dir + "/config.json";
  if (!FileExists(config_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": not a model directory (no config.json)"));
  }
  ASSIGN_OR_RETURN(std::string config_text, ReadFileToString(config_path));
  ASSIGN_OR_RETURN(config_, ParseHuggingFaceConfig(config_text, config_path));
  ModelConfig& c = config_;
  if (FileExists(dir + "/generation_config.json")) {
    ASSIGN_OR_RETURN(json gen, ReadJson(dir + "/generation_config.json"));
    if (gen.contains("eos_token_id"))
      AddIds(gen["eos_token_id"], &c.eos_token_ids);
    if (gen.contains("bos_token_id") && gen["bos_token_id"].is_number_integer())
      c.bos_token_id = gen["bos_token_id"].get<int>();
  }
  if (FileExists(dir + "/hangar_manifest.json")) {
    ASSIGN_OR_RETURN(json manifest, ReadJson(dir + "/hangar_manifest.json"));
    if (manifest.contains("recipe") && manifest["recipe"].is_object()) {
      info_.quantization =
          absl::StrCat(manifest["recipe"].value("engine", ""), ":",
                       manifest["recipe"].value("quantization", ""));
    }
  }

  // Tokenizer.
  const std::string tok_path = dir + "/tokenizer.json";
  if (!FileExists(tok_path)) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": no tokenizer.json"));
  }
  ASSIGN_OR_RETURN(std::string tok_json, ReadFileToString(tok_path));
  std::string tok_cfg;
  if (FileExists(dir + "/tokenizer_config.json")) {
    ASSIGN_OR_RETURN(tok_cfg, ReadFileToString(dir + "/tokenizer_config.json"));
  }
  auto tok = Tokenizer::FromHuggingFace(tok_json, tok_cfg);
  if (!tok.ok()) return PrefixStatus(dir, tok.status());
  tokenizer_ = std::move(tok).value();

  // Weights: one file or a sharded index.
  std::vector<std::string> shard_paths;
  if (FileExists(dir + "/model.safetensors")) {
    shard_paths.push_back(dir + "/model.safetensors");
  } else if (FileExists(dir + "/model.safetensors.index.json")) {
    ASSIGN_OR_RETURN(json index,
                     ReadJson(dir + "/model.safetensors.index.json"));
    if (!index.contains("weight_map") || !index["weight_map"].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir, "/model.safetensors.index.json: no weight_map"));
    }
    std::set<std::string> files;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end();
         ++it) {
      if (!it.value().is_string()) continue;
      std::string f = it.value().get<std::string>();
      if (f.find('/') != std::string::npos ||
          f.find("..") != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("weight_map names a file outside the directory: ", f));
      }
      files.insert(f);
    }
    for (const std::string& f : files) shard_paths.push_back(dir + "/" + f);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, ": no model.safetensors or model.safetensors.index.json"));
  }
  std::map<std::string, const SafetensorsTensor*> tensors;
  for (const std::string& p : shard_paths) {
    ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(p));
    for (const auto& [name, t] : f->tensors()) tensors[name] = &t;
    files_->safetensors.push_back(std::move(f));
  }
  for (const auto& [name, t] : tensors) {
    if (name.size() > 6 && name.compare(name.size() - 6, 6, "_scale") == 0)
      continue;
    info_.parameters += t->elements();
  }

  auto find = [&](const std::string& name) -> const SafetensorsTensor* {
    auto it = tensors.find(name);
    return it == tensors.end() ? nullptr : it->second;
  };
  auto vec = [&](const std::string& name, int64_t n,
                 std::vector<float>* out) -> absl::Status {
    const SafetensorsTensor* t = find(name);
    if (t == nullptr)
      return absl::InvalidArgumentError(
          absl::StrCat("missing tensor '", name, "'"));
    if (t->elements() != n || t->shape.size() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' must have shape [", n, "]"));
    }
    out->resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) {
      if (t->dtype == "F32") {
        std::memcpy(&(*out)[size_t(i)], t->data + 4 * i, 4);
      } else if (t->dtype == "F16" || t->dtype == "BF16") {
        uint16_t h;
        std::memcpy(&h, t->data + 2 * i, 2);
        (*out)[size_t(i)] = t->dtype == "F16" ? F16ToF32(h) : Bf16ToF32(h);
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor '", name, "' has dtype ", t->dtype,
            ", which is not supported for vectors (F32, F16, BF16)"));
      }
    }
    return absl::OkStatus();
  };
  auto mat = [&](const std::string& name, int64_t rows, int64_t cols,
                 WeightMatrix* w) -> absl::Status {
    const SafetensorsTensor* t = find(name);
    if (t == nullptr)
      return absl::InvalidArgumentError(
          absl::StrCat("missing tensor '", name, "'"));
    if (t->shape.size() != 2 || t->shape[0] != rows || t->shape[1] != cols) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name, "' must have shape [", rows, ", ", cols, "]"));
    }
    if (t->dtype == "F32") {
      w->dtype = DType::kF32;
    } else if (t->dtype == "F16") {
      w->dtype = DType::kF16;
    } else if (t->dtype == "BF16") {
      w->dtype = DType::kBF16;
    } else if (t->dtype == "I8") {
      w->dtype = DType::kI8;
    } else if (t->dtype == "I16") {
      w->dtype = DType::kI16;
    } else if (t->dtype == "F8_E4M3") {
      w->dtype = DType::kF8E4M3;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name, "' has dtype ", t->dtype,
          ", which is not supported (F32, F16, BF16, I8, I16, F8_E4M3)"));
    }
    w->rows = rows;
    w->cols = cols;
    w->data = t->data;
    w->scales = nullptr;
    if (DTypeHasRowScale(w->dtype)) {
      std::vector<float> scales;
      RETURN_IF_ERROR(vec(name + "_scale", rows, &scales));
      owned_scales_.push_back(std::move(scales));
      w->scales = owned_scales_.back().data();
    }
    return absl::OkStatus();
  };

  const int64_t D = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  const int64_t qdim = int64_t(c.num_heads) * c.head_dim,
                kvdim = int64_t(c.num_kv_heads) * c.head_dim;
  owned_scales_.reserve(size_t(c.num_layers) * 7 + 2);
  RETURN_IF_ERROR(mat("model.embed_tokens.weight", V, D, &embed_));
  if (find("lm_head.weight") != nullptr) {
    RETURN_IF_ERROR(mat("lm_head.weight", V, D, &lm_head_));
  } else {
    lm_head_ = embed_;
    c.tie_word_embeddings = true;
  }
  RETURN_IF_ERROR(vec("model.norm.weight", D, &final_norm_));
  layers_.resize(size_t(c.num_layers));
  for (int l = 0; l < c.num_layers; ++l) {
    Layer& L = layers_[size_t(l)];
    std::string p = absl::StrCat("model.layers.", l, ".");
    RETURN_IF_ERROR(vec(p + "input_layernorm.weight", D, &L.attn_norm));
    RETURN_IF_ERROR(vec(p + "post_attention_layernorm.weight", D, &L.ffn_norm));
    RETURN_IF_ERROR(mat(p + "self_attn.q_proj.weight", qdim, D, &L.wq));
    RETURN_IF_ERROR(mat(p + "self_attn.k_proj.weight", kvdim, D, &L.wk));
    RETURN_IF_ERROR(mat(p + "self_attn.v_proj.weight", kvdim, D, &L.wv));
    RETURN_IF_ERROR(mat(p + "self_attn.o_proj.weight", D, qdim, &L.wo));
    RETURN_IF_ERROR(mat(p + "mlp.gate_proj.weight", F, D, &L.gate));
    RETURN_IF_ERROR(mat(p + "mlp.up_proj.weight", F, D, &L.up));
    RETURN_IF_ERROR(mat(p + "mlp.down_proj.weight", D, F, &L.down));
    if (c.attention_bias) {
      RETURN_IF_ERROR(vec(p + "self_attn.q_proj.bias", qdim, &L.bq));
      RETURN_IF_ERROR(vec(p + "self_attn.k_proj.bias", kvdim, &L.bk));
      RETURN_IF_ERROR(vec(p + "self_attn.v_proj.bias", kvdim, &L.bv));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// GGUF files

absl::Status Model::LoadGguf(const std::string& path) {
  info_.format = "gguf";
  ASSIGN_OR_RETURN(files_->gguf, GgufFile::Open(path));
  const GgufFile& g = *files_->gguf;
  ASSIGN_OR_RETURN(config_, ModelConfigFromGguf(g, path));
  ModelConfig& c = config_;
  const int64_t D = c.hidden_size, F = c.intermediate_size;
  auto tok = Tokenizer::FromGguf(g);
  if (!tok.ok()) return PrefixStatus(path, tok.status());
  tokenizer_ = std::move(tok).value();
  c.bos_token_id = tokenizer_->bos_id();
  if (tokenizer_->eos_id() >= 0)
    c.eos_token_ids.push_back(tokenizer_->eos_id());
  for (const auto& [name, t] : g.tensors()) info_.parameters += t.elements();

  auto vec = [&](const std::string& name, int64_t n,
                 std::vector<float>* out) -> absl::Status {
    const GgufTensor* t = g.FindTensor(name);
    if (t == nullptr)
      return absl::InvalidArgumentError(
          absl::StrCat("missing tensor '", name, "'"));
    if (t->elements() != n)
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' must have ", n, " elements"));
    out->resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) {
      if (t->type == kGgmlF32) {
        std::memcpy(&(*out)[size_t(i)], t->data + 4 * i, 4);
      } else if (t->type == kGgmlF16 || t->type == kGgmlBF16) {
        uint16_t h;
        std::memcpy(&h, t->data + 2 * i, 2);
        (*out)[size_t(i)] = t->type == kGgmlF16 ? F16ToF32(h) : Bf16ToF32(h);
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor '", name, "' has type ", GgufFile::GgmlTypeName(t->type),
            ", which is not supported for vectors (F32, F16, BF16)"));
      }
    }
    return absl::OkStatus();
  };
  auto mat = [&](const std::string& name, int64_t rows, int64_t cols,
                 WeightMatrix* w) -> absl::Status {
    const GgufTensor* t = g.FindTensor(name);
    if (t == nullptr)
      return absl::InvalidArgumentError(
          absl::StrCat("missing tensor '", name, "'"));
    if (t->dims.size() != 2 || t->dims[0] != cols || t->dims[1] != rows) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name, "' must have GGUF dims [", cols, ", ", rows, "]"));
    }
    switch (t->type) {
      case kGgmlF32:
        w->dtype = DType::kF32;
        break;
      case kGgmlF16:
        w->dtype = DType::kF16;
        break;
      case kGgmlBF16:
        w->dtype = DType::kBF16;
        break;
      case kGgmlQ8_0:
        w->dtype = DType::kQ8_0;
        break;
      case kGgmlQ4_0:
        w->dtype = DType::kQ4_0;
        break;
      case kGgmlQ4_K:
        w->dtype = DType::kQ4_K;
        break;
      case kGgmlQ5_K:
        w->dtype = DType::kQ5_K;
        break;
      case kGgmlQ6_K:
        w->dtype = DType::kQ6_K;
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor '", name, "' has type ", GgufFile::GgmlTypeName(t->type),
            ", which is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_K, "
            "Q5_K, Q6_K)"));
    }
    if (IsKQuant(w->dtype) && cols % kQK != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name, "': K-quant rows must be a multiple of 256; was ",
          cols));
    }
    w->rows = rows;
    w->cols = cols;
    w->data = t->data;
    w->scales = nullptr;
    return absl::OkStatus();
  };
  const int64_t V = c.vocab_size;
  const int64_t qdim = int64_t(c.num_heads) * c.head_dim,
                kvdim = int64_t(c.num_kv_heads) * c.head_dim;
  RETURN_IF_ERROR(mat("token_embd.weight", V, D, &embed_));
  if (!c.tie_word_embeddings) {
    RETURN_IF_ERROR(mat("output.weight", V, D, &lm_head_));
  } else {
    lm_head_ = embed_;
  }
  RETURN_IF_ERROR(vec("output_norm.weight", D, &final_norm_));
  layers_.resize(size_t(c.num_layers));
  for (int l = 0; l < c.num_layers; ++l) {
    Layer& L = layers_[size_t(l)];
    std::string p = absl::StrCat("blk.", l, ".");
    RETURN_IF_ERROR(vec(p + "attn_norm.weight", D, &L.attn_norm));
    RETURN_IF_ERROR(vec(p + "ffn_norm.weight", D, &L.ffn_norm));
    RETURN_IF_ERROR(mat(p + "attn_q.weight", qdim, D, &L.wq));
    RETURN_IF_ERROR(mat(p + "attn_k.weight", kvdim, D, &L.wk));
    RETURN_IF_ERROR(mat(p + "attn_v.weight", kvdim, D, &L.wv));
    RETURN_IF_ERROR(mat(p + "attn_output.weight", D, qdim, &L.wo));
    RETURN_IF_ERROR(mat(p + "ffn_gate.weight", F, D, &L.gate));
    RETURN_IF_ERROR(mat(p + "ffn_up.weight", F, D, &L.up));
    RETURN_IF_ERROR(mat(p + "ffn_down.weight", D, F, &L.down));
    if (c.attention_bias) {
      RETURN_IF_ERROR(vec(p + "attn_q.bias", qdim, &L.bq));
      RETURN_IF_ERROR(vec(p + "attn_k.bias", kvdim, &L.bk));
      RETURN_IF_ERROR(vec(p + "attn_v.bias", kvdim, &L.bv));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------

absl::Status Model::Finish(const LoadOptions& options) {
  ModelConfig& c = config_;
  if (c.num_layers <= 0 || c.vocab_size <= 0 || c.intermediate_size <= 0 ||
      c.head_dim <= 0 || c.head_dim % 2 != 0 || c.num_kv_heads <= 0 ||
      c.num_heads % c.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        info_.path, ": inconsistent dimensions (layers ", c.num_layers,
        ", vocab ", c.vocab_size, ", heads ", c.num_heads, ", kv heads ",
        c.num_kv_heads, ", head_dim ", c.head_dim, ")"));
  }
  if (tokenizer_->vocab_size() > c.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        info_.path, ": the tokenizer has ", tokenizer_->vocab_size(),
        " tokens but the model only ", c.vocab_size));
  }
  if (tokenizer_->eos_id() >= 0 &&
      std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(),
                tokenizer_->eos_id()) == c.eos_token_ids.end()) {
    c.eos_token_ids.push_back(tokenizer_->eos_id());
  }
  int ctx = std::min(
      c.max_position_embeddings > 0 ? c.max_position_embeddings : 2048, 32768);
  if (options.max_context > 0) ctx = std::min(ctx, options.max_context);
  info_.context_length = ctx;
  info_.architecture = c.architecture;
  info_.vocab_size = c.vocab_size;
  // Dtype summary of the linear layers.
  std::set<DType> dtypes;
  auto add = [&](const WeightMatrix& w) {
    dtypes.insert(w.dtype);
    info_.weight_bytes += w.bytes();
  };
  for (const Layer& L : layers_) {
    for (const WeightMatrix* w :
         {&L.wq, &L.wk, &L.wv, &L.wo, &L.gate, &L.up, &L.down})
      add(*w);
    info_.weight_bytes += int64_t(L.attn_norm.size() + L.ffn_norm.size() +
                                  L.bq.size() + L.bk.size() + L.bv.size()) *
                          4;
  }
  info_.weight_bytes += int64_t(final_norm_.size()) * 4;
  info_.decode_bytes = info_.weight_bytes + lm_head_.bytes();
  info_.weight_bytes += embed_.bytes();
  if (!c.tie_word_embeddings) add(lm_head_);
  info_.weight_dtype =
      dtypes.size() == 1 ? DTypeName(*dtypes.begin()) : "mixed";
  if (info_.quantization.empty()) info_.quantization = info_.weight_dtype;

  // RoPE tables, in float32 like the reference implementations.
  const int half = c.head_dim / 2;
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(double(c.rope_theta), double(2 * i) / c.head_dim);
    if (c.rope_scaling_factor > 0) {
      double low_wavelen =
          c.rope_original_max_position / c.rope_low_freq_factor;
      double high_wavelen =
          c.rope_original_max_position / c.rope_high_freq_factor;
      double wavelen = 2 * M_PI / f;
      if (wavelen > low_wavelen) {
        f = f / c.rope_scaling_factor;
      } else if (wavelen >= high_wavelen) {
        double smooth =
            (c.rope_original_max_position / wavelen - c.rope_low_freq_factor) /
            (c.rope_high_freq_factor - c.rope_low_freq_factor);
        f = (1 - smooth) * f / c.rope_scaling_factor + smooth * f;
      }
    }
    inv_freq[size_t(i)] = float(f);
  }
  rope_cos_.resize(size_t(ctx) * half);
  rope_sin_.resize(size_t(ctx) * half);
  for (int p = 0; p < ctx; ++p) {
    for (int i = 0; i < half; ++i) {
      float angle = float(p) * inv_freq[size_t(i)];
      rope_cos_[size_t(p) * half + i] = std::cos(angle);
      rope_sin_[size_t(p) * half + i] = std::sin(angle);
    }
  }
  pool_ = std::make_unique<ThreadPool>(options.threads);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DecodeState>> Model::NewState(
    int slots, int capacity, int max_rows) const {
  if (slots <= 0 || slots > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("slots: must be in [1, 4096]; was ", slots));
  }
  if (capacity <= 0 || capacity > context_length()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "capacity: must be in [1, ", context_length(), "]; was ", capacity));
  }
  if (max_rows <= 0 || max_rows > 65536) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_rows: must be in [1, 65536]; was ", max_rows));
  }
  const ModelConfig& c = config_;
  auto s = std::unique_ptr<DecodeState>(new DecodeState());
  s->slots_ = slots;
  s->capacity_ = capacity;
  s->max_rows_ = max_rows;
  s->kv_dim_ = int64_t(c.num_kv_heads) * c.head_dim;
  s->layers_ = c.num_layers;
  s->kv_.assign(size_t(slots) * c.num_layers * 2 * capacity * s->kv_dim_, 0.0f);
  const size_t R = size_t(max_rows);
  const size_t qdim = size_t(c.num_heads) * c.head_dim;
  s->x_.resize(R * c.hidden_size);
  s->xn_.resize(R * c.hidden_size);
  s->tmp_.resize(R * c.hidden_size);
  s->q_.resize(R * qdim);
  s->att_.resize(R * qdim);
  s->k_.resize(R * s->kv_dim_);
  s->v_.resize(R * s->kv_dim_);
  s->gate_.resize(R * c.intermediate_size);
  s->up_.resize(R * c.intermediate_size);
  s->xl_.resize(R * c.hidden_size);
  return s;
}

void Model::Attention(absl::Span<const ForwardRow> rows, int layer,
                      DecodeState* s) const {
  const ModelConfig& c = config_;
  const int hd = c.head_dim, H = c.num_heads,
            group = c.num_heads / c.num_kv_heads;
  const int64_t qdim = int64_t(H) * hd, kvdim = s->kv_dim_;
  const float inv_sqrt = 1.0f / std::sqrt(float(hd));
  // Query blocks: up to kBlock consecutive rows of one slot at consecutive
  // positions (a prompt chunk; a decode row is a block of one). A block
  // reads each cached key and value once for all its queries.
  constexpr int kBlock = 24;
  struct Block {
    int r0, m;
  };
  std::vector<Block> blocks;
  int64_t work = 0;
  for (int r = 0; r < int(rows.size());) {
    int m = 1;
    while (m < kBlock && r + m < int(rows.size()) &&
           rows[size_t(r + m)].slot == rows[size_t(r)].slot &&
           rows[size_t(r + m)].position == rows[size_t(r)].position + m)
      ++m;
    blocks.push_back({r, m});
    work += int64_t(m) * (rows[size_t(r + m - 1)].position + 1) * hd * 2 * H;
    r += m;
  }
  const int64_t total = int64_t(blocks.size()) * H;
  // One chunk per (block, head) pair, handed out dynamically.
  auto job_fn = [&](int64_t job) {
    const Block& blk = blocks[size_t(job / H)];
    const int h = int(job % H);
    const ForwardRow& first = rows[size_t(blk.r0)];
    const int n = first.position + blk.m;  // keys of the block's last query
    thread_local std::vector<float> scratch;
    if (scratch.size() < size_t(kBlock) * size_t(s->capacity_))
      scratch.resize(size_t(kBlock) * size_t(s->capacity_));
    float* scores = scratch.data();  // [m][n]
    const int64_t kvoff = int64_t(h / group) * hd;
    const float* q = s->q_.data() + blk.r0 * qdim + int64_t(h) * hd;
    AttentionScores(q, qdim, blk.m, s->K(first.slot, layer) + kvoff, kvdim, n,
                    hd, inv_sqrt, scores, n);
    // Causal softmax: query j sees keys [0, position_j]; later keys of the
    // block get weight 0.
    for (int j = 0; j < blk.m; ++j) {
      float* sj = scores + int64_t(j) * n;
      const int valid = first.position + j + 1;
      Softmax(sj, valid);
      for (int p = valid; p < n; ++p) sj[p] = 0.0f;
    }
    AttentionValues(scores, n, blk.m, s->V(first.slot, layer) + kvoff, kvdim, n,
                    hd, s->att_.data() + blk.r0 * qdim + int64_t(h) * hd, qdim);
  };
  if (work < 64 * 1024) {
    for (int64_t job = 0; job < total; ++job) job_fn(job);
  } else {
    pool_->ParallelFor(total, job_fn);
  }
}

absl::Status Model::Forward(absl::Span<const ForwardRow> rows, DecodeState* s,
                            float* logits) const {
  const ModelConfig& c = config_;
  const int N = int(rows.size());
  if (N == 0) return absl::OkStatus();
  if (N > s->max_rows_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "forward: ", N, " rows exceed the state's max_rows ", s->max_rows_));
  }
  for (const ForwardRow& r : rows) {
    if (r.slot < 0 || r.slot >= s->slots_ || r.position < 0 ||
        r.position >= s->capacity_ || r.token < 0 || r.token >= c.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("forward: row (slot ", r.slot, ", position ", r.position,
                       ", token ", r.token, ") is out of range"));
    }
  }
  const int64_t D = c.hidden_size, F = c.intermediate_size;
  const int64_t qdim = int64_t(c.num_heads) * c.head_dim, kvdim = s->kv_dim_;
  const int hd = c.head_dim, half = hd / 2;
  float* x = s->x_.data();
  float* xn = s->xn_.data();
  for (int r = 0; r < N; ++r)
    DequantizeRow(embed_, rows[size_t(r)].token, x + r * D);

  auto rope = [&](float* v, int heads, int pos) {
    const float* cs = rope_cos_.data() + size_t(pos) * half;
    const float* sn = rope_sin_.data() + size_t(pos) * half;
    for (int h = 0; h < heads; ++h) {
      float* a = v + int64_t(h) * hd;
      if (c.rope_interleaved) {
        for (int i = 0; i < half; ++i) {
          float x0 = a[2 * i], x1 = a[2 * i + 1];
          a[2 * i] = x0 * cs[i] - x1 * sn[i];
          a[2 * i + 1] = x1 * cs[i] + x0 * sn[i];
        }
      } else {
        for (int i = 0; i < half; ++i) {
          float x0 = a[i], x1 = a[i + half];
          a[i] = x0 * cs[i] - x1 * sn[i];
          a[i + half] = x1 * cs[i] + x0 * sn[i];
        }
      }
    }
  };

  for (int l = 0; l < c.num_layers; ++l) {
    const Layer& L = layers_[size_t(l)];
    for (int r = 0; r < N; ++r)
      RmsNorm(x + r * D, L.attn_norm.data(), int(D), c.rms_norm_eps,
              xn + r * D);
    MatMul(pool_.get(), N,
           {MatMulJob{&L.wq, xn, D, s->q_.data(), qdim,
                      L.bq.empty() ? nullptr : L.bq.data()},
            MatMulJob{&L.wk, xn, D, s->k_.data(), kvdim,
                      L.bk.empty() ? nullptr : L.bk.data()},
            MatMulJob{&L.wv, xn, D, s->v_.data(), kvdim,
                      L.bv.empty() ? nullptr : L.bv.data()}});
    for (int r = 0; r < N; ++r) {
      const ForwardRow& row = rows[size_t(r)];
      rope(s->q_.data() + r * qdim, c.num_heads, row.position);
      rope(s->k_.data() + r * kvdim, c.num_kv_heads, row.position);
      std::memcpy(s->K(row.slot, l) + int64_t(row.position) * kvdim,
                  s->k_.data() + r * kvdim, size_t(kvdim) * 4);
      std::memcpy(s->V(row.slot, l) + int64_t(row.position) * kvdim,
                  s->v_.data() + r * kvdim, size_t(kvdim) * 4);
    }
    Attention(rows, l, s);
    MatMul(
        pool_.get(), N,
        {MatMulJob{&L.wo, s->att_.data(), qdim, s->tmp_.data(), D, nullptr}});
    for (int64_t i = 0; i < N * D; ++i) x[i] += s->tmp_[size_t(i)];
    for (int r = 0; r < N; ++r)
      RmsNorm(x + r * D, L.ffn_norm.data(), int(D), c.rms_norm_eps, xn + r * D);
    MatMul(pool_.get(), N,
           {MatMulJob{&L.gate, xn, D, s->gate_.data(), F, nullptr},
            MatMulJob{&L.up, xn, D, s->up_.data(), F, nullptr}});
    float* g = s->gate_.data();
    const float* u = s->up_.data();
    constexpr int64_t kSwigluChunk = 8192;
    const int64_t swiglu_chunks = (N * F + kSwigluChunk - 1) / kSwigluChunk;
    auto swiglu = [&](int64_t c) {
      const int64_t begin = c * kSwigluChunk,
                    end = std::min(N * F, begin + kSwigluChunk);
      SiluMul(g + begin, u + begin, end - begin);
    };
    if (swiglu_chunks >= 4) {
      pool_->ParallelFor(swiglu_chunks, swiglu);
    } else {
      for (int64_t c = 0; c < swiglu_chunks; ++c) swiglu(c);
    }
    MatMul(pool_.get(), N,
           {MatMulJob{&L.down, g, F, s->tmp_.data(), D, nullptr}});
    for (int64_t i = 0; i < N * D; ++i) x[i] += s->tmp_[size_t(i)];
  }
  int M = 0;
  for (int r = 0; r < N; ++r) {
    if (!rows[size_t(r)].want_logits) continue;
    RmsNorm(x + r * D, final_norm_.data(), int(D), c.rms_norm_eps,
            s->xl_.data() + int64_t(M) * D);
    ++M;
  }
  if (M > 0) {
    MatMul(pool_.get(), M,
           {MatMulJob{&lm_head_, s->xl_.data(), D, logits, c.vocab_size,
                      nullptr}});
  }
  return absl::OkStatus();
}

}  // namespace hangar::engine
