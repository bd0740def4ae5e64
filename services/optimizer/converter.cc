#include "services/optimizer/converter.h"

#include <fcntl.h>
#include <immintrin.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status/status_macros.h"
#include "engine/dtype.h"
#include "engine/file_util.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/model_config.h"
#include "engine/safetensors.h"

namespace hangar::optimizer {
namespace {

using json = nlohmann::json;
using engine::GgufFile;
using engine::GgufTensor;
using engine::MappedFile;
using engine::SafetensorsFile;

// ---------------------------------------------------------------------------
// Quantization kernels.

constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: x + k - k rounds to even

float AbsMaxScalar(const float* x, int64_t n) {
  float m = 0;
  for (int64_t k = 0; k < n; ++k) {
    float a = std::fabs(x[k]);
    m = a > m ? a : m;
  }
  return m;
}

__attribute__((target("avx2"))) float AbsMaxAvx2(const float* x, int64_t n) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m0 = _mm256_setzero_ps(), m1 = m0, m2 = m0, m3 = m0;
  int64_t k = 0;
  for (; k + 32 <= n; k += 32) {
    m0 = _mm256_max_ps(m0, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)));
    m1 = _mm256_max_ps(m1, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k + 8)));
    m2 = _mm256_max_ps(m2, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k + 16)));
    m3 = _mm256_max_ps(m3, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k + 24)));
  }
  for (; k + 8 <= n; k += 8)
    m0 = _mm256_max_ps(m0, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)));
  m0 = _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m0);
  float m = 0;
  for (float v : lanes) m = v > m ? v : m;
  float tail = AbsMaxScalar(x + k, n - k);
  return tail > m ? tail : m;
}

void QuantizeRowI8Scalar(const float* x, int64_t n, float inv, int8_t* out) {
  for (int64_t k = 0; k < n; ++k) {
    float v = x[k] * inv;
    v = v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v);
    out[k] = int8_t((v + kRound) - kRound);
  }
}

__attribute__((target("avx2"))) void QuantizeRowI8Avx2(const float* x,
                                                       int64_t n, float inv,
                                                       int8_t* out) {
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  int64_t k = 0;
  for (; k + 32 <= n; k += 32) {
    __m256i q[4];
    for (int j = 0; j < 4; ++j) {
      __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + k + 8 * j), vinv);
      v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
      // Round half to even (the default rounding mode), as the scalar path.
      q[j] = _mm256_cvtps_epi32(
          _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    // packs work within 128-bit lanes; the permute puts groups in order.
    __m256i a = _mm256_packs_epi32(q[0], q[1]);
    __m256i b = _mm256_packs_epi32(q[2], q[3]);
    __m256i c = _mm256_packs_epi16(a, b);
    c = _mm256_permutevar8x32_epi32(c, order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + k), c);
  }
  QuantizeRowI8Scalar(x + k, n - k, inv, out + k);
}

void QuantizeRowI16(const float* x, int64_t n, float inv, int16_t* out) {
  for (int64_t k = 0; k < n; ++k) {
    float v = x[k] * inv;
    v = v < -32767.0f ? -32767.0f : (v > 32767.0f ? 32767.0f : v);
    out[k] = int16_t((v + kRound) - kRound);
  }
}

bool HaveAvx2() {
  static const bool have = __builtin_cpu_supports("avx2");
  return have;
}

float AbsMax(const float* x, int64_t n) {
  return HaveAvx2() ? AbsMaxAvx2(x, n) : AbsMaxScalar(x, n);
}

// ---------------------------------------------------------------------------
// Sources.

enum class SrcType { kF32, kF16, kBF16, kQ8_0, kQ4_0 };

const char* SrcTypeName(SrcType t) {
  switch (t) {
    case SrcType::kF32:
      return "F32";
    case SrcType::kF16:
      return "F16";
    case SrcType::kBF16:
      return "BF16";
    case SrcType::kQ8_0:
      return "Q8_0";
    case SrcType::kQ4_0:
      return "Q4_0";
  }
  return "?";
}

// Bytes of `cols` elements of one row.
int64_t SrcRowBytes(SrcType t, int64_t cols) {
  switch (t) {
    case SrcType::kF32:
      return cols * 4;
    case SrcType::kF16:
    case SrcType::kBF16:
      return cols * 2;
    case SrcType::kQ8_0:
      return cols / 32 * 34;
    case SrcType::kQ4_0:
      return cols / 32 * 18;
  }
  return 0;
}

struct SourceTensor {
  std::string name;  // Hugging Face name
  SrcType type = SrcType::kF32;
  std::vector<int64_t> shape;  // outermost first
  int fd_index = 0;            // into Source::fds
  int64_t offset = 0;          // in its file
  int64_t nbytes = 0;
  // GGUF llama Q/K: heads whose rows are stored interleaved.
  int unpermute_heads = 0;
  int64_t rows() const { return shape.size() == 2 ? shape[0] : 1; }
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
  int64_t elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

struct Source {
  std::string path;
  bool gguf = false;
  engine::ModelConfig config;
  std::vector<std::string> weight_files;
  std::vector<std::unique_ptr<Fd>> fds;
  std::vector<SourceTensor> tensors;
  // Artifact side files: name -> contents.
  std::map<std::string, std::string> side_files;
  std::set<SrcType> block_types;  // Q8_0 / Q4_0 seen
};

absl::StatusOr<int> OpenRead(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  return fd;
}

absl::StatusOr<std::vector<std::string>> SafetensorsFiles(
    const std::string& dir) {
  if (engine::FileExists(dir + "/model.safetensors"))
    return std::vector<std::string>{dir + "/model.safetensors"};
  ASSIGN_OR_RETURN(std::string text,
                   ReadFileToString(dir + "/model.safetensors.index.json"));
  json index = json::parse(text, nullptr, false);
  if (!index.is_object() || !index.contains("weight_map") ||
      !index["weight_map"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, "/model.safetensors.index.json: must have a weight_map object"));
  }
  std::set<std::string> files;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end();
       ++it) {
    if (!it.value().is_string())
      return absl::InvalidArgumentError("weight_map: values must be strings");
    std::string f = it.value().get<std::string>();
    if (f.find('/') != std::string::npos || f.find("..") != std::string::npos)
      return absl::InvalidArgumentError(
          absl::StrCat("weight_map names a file outside the directory: ", f));
    files.insert(f);
  }
  std::vector<std::string> out;
  for (const std::string& f : files) out.push_back(dir + "/" + f);
  return out;
}

absl::Status OpenHuggingFace(const std::string& dir, bool headers_only,
                             Source* src) {
  src->gguf = false;
  ASSIGN_OR_RETURN(std::string cfg_text,
                   ReadFileToString(dir + "/config.json"));
  ASSIGN_OR_RETURN(src->config, engine::ParseHuggingFaceConfig(
                                    cfg_text, dir + "/config.json"));
  src->side_files["config.json"] = cfg_text;
  for (const char* f :
       {"tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
    if (!engine::FileExists(dir + "/" + f)) continue;
    ASSIGN_OR_RETURN(src->side_files[f], ReadFileToString(dir + "/" + f));
  }
  ASSIGN_OR_RETURN(src->weight_files, SafetensorsFiles(dir));
  for (size_t i = 0; i < src->weight_files.size(); ++i) {
    const std::string& path = src->weight_files[i];
    ASSIGN_OR_RETURN(auto map, MappedFile::Open(path));
    ASSIGN_OR_RETURN(auto file,
                     SafetensorsFile::Parse(map->data(), map->size()));
    for (const auto& [name, t] : file->tensors()) {
      SourceTensor s;
      s.name = name;
      if (t.dtype == "F32") {
        s.type = SrcType::kF32;
      } else if (t.dtype == "F16") {
        s.type = SrcType::kF16;
      } else if (t.dtype == "BF16") {
        s.type = SrcType::kBF16;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor '", name, "' has dtype ", t.dtype,
                         "; only F32, F16 and BF16 sources can be converted"));
      }
      if (t.shape.size() > 2) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor '", name, "' has ", t.shape.size(),
                         " dimensions; at most 2"));
      }
      s.shape = t.shape;
      s.fd_index = int(i);
      s.offset = int64_t(t.data - map->data());
      s.nbytes = t.nbytes;
      src->tensors.push_back(std::move(s));
    }
    if (!headers_only) {
      ASSIGN_OR_RETURN(int fd, OpenRead(path));
      src->fds.push_back(std::make_unique<Fd>(fd));
    }
  }
  return absl::OkStatus();
}

// GGUF tensor name -> Hugging Face name; empty for tensors the artifact
// does not carry (rope_freqs: the engine computes them from the metadata).
absl::StatusOr<std::string> HfName(const std::string& g) {
  static const std::map<std::string, std::string> kTop = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output.weight", "lm_head.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"rope_freqs.weight", ""}};
  static const std::map<std::string, std::string> kBlock = {
      {"attn_norm.weight", "input_layernorm.weight"},
      {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"attn_q.weight", "self_attn.q_proj.weight"},
      {"attn_k.weight", "self_attn.k_proj.weight"},
      {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_output.weight", "self_attn.o_proj.weight"},
      {"attn_q.bias", "self_attn.q_proj.bias"},
      {"attn_k.bias", "self_attn.k_proj.bias"},
      {"attn_v.bias", "self_attn.v_proj.bias"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"}};
  if (auto it = kTop.find(g); it != kTop.end()) return it->second;
  std::vector<std::string> parts = absl::StrSplit(g, absl::MaxSplits('.', 2));
  int layer = 0;
  if (parts.size() == 3 && parts[0] == "blk" &&
      absl::SimpleAtoi(parts[1], &layer) && layer >= 0) {
    if (auto it = kBlock.find(parts[2]); it != kBlock.end())
      return absl::StrCat("model.layers.", layer, ".", it->second);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tensor '", g, "' is not a tensor this converter maps"));
}

// config.json for a GGUF source.
std::string ConfigJson(const engine::ModelConfig& c) {
  json cfg = {
      {"architectures",
       {c.architecture == "qwen2"     ? "Qwen2ForCausalLM"
        : c.architecture == "mistral" ? "MistralForCausalLM"
                                      : "LlamaForCausalLM"}},
      {"model_type", c.architecture},
      {"hidden_act", "silu"},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_layers},
      {"num_attention_heads", c.num_heads},
      {"num_key_value_heads", c.num_kv_heads},
      {"head_dim", c.head_dim},
      {"vocab_size", c.vocab_size},
      {"max_position_embeddings", c.max_position_embeddings},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_theta", c.rope_theta},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"attention_bias", c.attention_bias},
      {"torch_dtype", "float32"},
  };
  if (c.rope_scaling_factor > 0) {
    cfg["rope_scaling"] = {
        {"rope_type", "llama3"},
        {"factor", c.rope_scaling_factor},
        {"low_freq_factor", c.rope_low_freq_factor},
        {"high_freq_factor", c.rope_high_freq_factor},
        {"original_max_position_embeddings", c.rope_original_max_position}};
  }
  if (c.bos_token_id >= 0) cfg["bos_token_id"] = c.bos_token_id;
  if (!c.eos_token_ids.empty()) {
    cfg["eos_token_id"] = c.eos_token_ids.size() == 1 ? json(c.eos_token_ids[0])
                                                      : json(c.eos_token_ids);
  }
  return cfg.dump(2);
}

// tokenizer.json (+ tokenizer_config.json) for a GGUF "gpt2" vocabulary.
absl::Status GgufTokenizerFiles(const GgufFile& g, Source* src) {
  const engine::GgufValue* model = g.Find("tokenizer.ggml.model");
  const engine::GgufValue* tokens = g.Find("tokenizer.ggml.tokens");
  if (model == nullptr || tokens == nullptr)
    return absl::InvalidArgumentError("gguf: no tokenizer in the metadata");
  if (model->s != "gpt2") {
    return absl::InvalidArgumentError(absl::StrCat(
        "gguf: tokenizer.ggml.model '", model->s,
        "' cannot be written as tokenizer.json by the optimizer (gpt2)"));
  }
  std::string pre = "default";
  if (const auto* p = g.Find("tokenizer.ggml.pre")) pre = p->s;
  if (pre != "default" && pre != "gpt-2" && pre != "gpt2" && pre != "smollm") {
    return absl::InvalidArgumentError(
        absl::StrCat("gguf: tokenizer.ggml.pre '", pre,
                     "' cannot be written as tokenizer.json by the optimizer "
                     "(default, gpt-2, gpt2, smollm)"));
  }
  const engine::GgufValue* merges = g.Find("tokenizer.ggml.merges");
  if (merges == nullptr)
    return absl::InvalidArgumentError(
        "gguf: gpt2 tokenizer without tokenizer.ggml.merges");
  std::vector<double> types;
  if (const auto* t = g.Find("tokenizer.ggml.token_type")) types = t->numbers;
  json vocab = json::object();
  json added = json::array();
  for (size_t i = 0; i < tokens->strings.size(); ++i) {
    const std::string& piece = tokens->strings[i];
    int type = i < types.size() ? int(types[i]) : 1;
    if (type == 3 || type == 4) {
      added.push_back({{"id", i},
                       {"content", piece},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", type == 3}});
    }
    vocab[piece] = i;
  }
  json merge_list = json::array();
  for (const std::string& m : merges->strings) merge_list.push_back(m);
  auto id = [&](const char* key) -> int64_t {
    const engine::GgufValue* v = g.Find(key);
    return v == nullptr ? -1 : v->AsInt();
  };
  auto piece = [&](int64_t i) -> std::string {
    return i >= 0 && i < int64_t(tokens->strings.size())
               ? tokens->strings[size_t(i)]
               : "";
  };
  json byte_level = {{"type", "ByteLevel"},
                     {"add_prefix_space", false},
                     {"trim_offsets", true},
                     {"use_regex", true}};
  json tok = {{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", added},
              {"normalizer", nullptr},
              {"pre_tokenizer", byte_level},
              {"post_processor", byte_level},
              {"decoder", byte_level},
              {"model",
               {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"vocab", vocab},
                {"merges", merge_list}}}};
  src->side_files["tokenizer.json"] = tok.dump(1);
  json tok_cfg = {{"tokenizer_class", "PreTrainedTokenizerFast"}};
  bool add_bos = false, add_eos = false;
  if (const auto* v = g.Find("tokenizer.ggml.add_bos_token")) add_bos = v->b;
  if (const auto* v = g.Find("tokenizer.ggml.add_eos_token")) add_eos = v->b;
  tok_cfg["add_bos_token"] = add_bos;
  tok_cfg["add_eos_token"] = add_eos;
  if (std::string b = piece(id("tokenizer.ggml.bos_token_id")); !b.empty())
    tok_cfg["bos_token"] = b;
  if (std::string e = piece(id("tokenizer.ggml.eos_token_id")); !e.empty())
    tok_cfg["eos_token"] = e;
  src->side_files["tokenizer_config.json"] = tok_cfg.dump(2);
  return absl::OkStatus();
}

absl::Status OpenGguf(const std::string& path, bool headers_only, Source* src) {
  src->gguf = true;
  src->weight_files = {path};
  ASSIGN_OR_RETURN(auto map, MappedFile::Open(path));
  auto parsed = GgufFile::Parse(map->data(), map->size());
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", parsed.status().message()));
  }
  const GgufFile& g = **parsed;
  ASSIGN_OR_RETURN(src->config, engine::ModelConfigFromGguf(g, path));
  RETURN_IF_ERROR(GgufTokenizerFiles(g, src));
  const int64_t n_tokens =
      int64_t(g.Find("tokenizer.ggml.tokens")->strings.size());
  for (const char* key :
       {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"}) {
    const engine::GgufValue* v = g.Find(key);
    if (v == nullptr || v->AsInt() < 0 || v->AsInt() >= n_tokens) continue;
    if (absl::StrContains(key, "bos")) {
      src->config.bos_token_id = int(v->AsInt());
    } else if (src->config.eos_token_ids.empty()) {
      src->config.eos_token_ids.push_back(int(v->AsInt()));
    }
  }
  src->side_files["config.json"] = ConfigJson(src->config);
  const engine::ModelConfig& c = src->config;
  for (const auto& [gname, t] : g.tensors()) {
    ASSIGN_OR_RETURN(std::string name, HfName(gname));
    if (name.empty()) continue;
    SourceTensor s;
    s.name = name;
    switch (t.type) {
      case engine::kGgmlF32:
        s.type = SrcType::kF32;
        break;
      case engine::kGgmlF16:
        s.type = SrcType::kF16;
        break;
      case engine::kGgmlBF16:
        s.type = SrcType::kBF16;
        break;
      case engine::kGgmlQ8_0:
        s.type = SrcType::kQ8_0;
        break;
      case engine::kGgmlQ4_0:
        s.type = SrcType::kQ4_0;
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": tensor '", gname, "' has type ",
            GgufFile::GgmlTypeName(t.type),
            "; the optimizer converts F32, F16, BF16, Q8_0 and Q4_0"));
    }
    if (t.dims.empty() || t.dims.size() > 2) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", gname,
                                                     "' has ", t.dims.size(),
                                                     " dimensions; 1 or 2"));
    }
    s.shape.assign(t.dims.rbegin(), t.dims.rend());
    if ((s.type == SrcType::kQ8_0 || s.type == SrcType::kQ4_0) &&
        s.cols() % 32 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor '", gname, "' rows are not whole blocks"));
    }
    if (s.type == SrcType::kQ8_0 || s.type == SrcType::kQ4_0)
      src->block_types.insert(s.type);
    s.offset = int64_t(t.data - map->data());
    s.nbytes = t.nbytes;
    if (c.rope_interleaved) {
      if (absl::EndsWith(name, "q_proj.weight") ||
          absl::EndsWith(name, "q_proj.bias"))
        s.unpermute_heads = c.num_heads;
      if (absl::EndsWith(name, "k_proj.weight") ||
          absl::EndsWith(name, "k_proj.bias"))
        s.unpermute_heads = c.num_kv_heads;
      if (s.unpermute_heads > 0 &&
          (s.shape[0] % s.unpermute_heads != 0 ||
           (s.shape[0] / s.unpermute_heads) % 2 != 0)) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": tensor '", gname, "' rows do not split into heads"));
      }
    }
    src->tensors.push_back(std::move(s));
  }
  if (!headers_only) {
    ASSIGN_OR_RETURN(int fd, OpenRead(path));
    src->fds.push_back(std::make_unique<Fd>(fd));
  }
  return absl::OkStatus();
}

absl::StatusOr<Source> OpenSource(const std::string& path, bool headers_only) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return absl::NotFoundError(absl::StrCat(path, ": does not exist"));
  Source src;
  src.path = path;
  if (S_ISDIR(st.st_mode)) {
    RETURN_IF_ERROR(OpenHuggingFace(path, headers_only, &src));
  } else {
    char magic[4] = {0, 0, 0, 0};
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
    ssize_t n = ::read(fd, magic, 4);
    ::close(fd);
    if (n != 4 || std::memcmp(magic, "GGUF", 4) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": not a GGUF file nor a Hugging Face model directory"));
    }
    RETURN_IF_ERROR(OpenGguf(path, headers_only, &src));
  }
  return src;
}

// ---------------------------------------------------------------------------
// The plan.

struct Types {
  std::string linear;  // safetensors dtype of linear weights
  std::string other;
  bool quantize_embeddings = false;
};

Types TypesFor(const RecipeName& r) {
  const std::string& q = r.quantization;
  if (q == "int8" || q == "int8_float32") return {"I8", "F32", true};
  if (q == "int8_float16") return {"I8", "F16", true};
  if (q == "int8_bfloat16") return {"I8", "BF16", true};
  if (q == "int16") return {"I16", "F32", true};
  if (q == "float16") return {"F16", "F16", false};
  if (q == "bfloat16") return {"BF16", "BF16", false};
  if (q == "fp8") return {"F8_E4M3", "BF16", false};
  return {"F32", "F32", false};
}

bool Quantized(const std::string& d) {
  return d == "I8" || d == "I16" || d == "F8_E4M3";
}

int DtypeSize(const std::string& d) {
  return d == "F32" ? 4 : (d == "I8" || d == "F8_E4M3") ? 1 : 2;
}

bool IsLinear(const SourceTensor& t) {
  if (t.shape.size() != 2) return false;
  return t.name == "lm_head.weight" || absl::EndsWith(t.name, "_proj.weight");
}

struct Out {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  int64_t nbytes = 0;
};

// One source tensor's outputs: the tensor, its scales, and (fp8 with a
// tied source) the untied lm_head and its scales.
struct Step {
  const SourceTensor* src = nullptr;
  std::string dtype;
  bool untie_lm_head = false;
};

struct Plan {
  std::vector<Step> steps;
  std::vector<Out> outs;  // in writing order
  bool untied = false;
  std::string header;  // the safetensors header bytes
  int64_t total_bytes = 0;
};

absl::StatusOr<Plan> MakePlan(const Source& src, const RecipeName& recipe) {
  const Types types = TypesFor(recipe);
  Plan plan;
  const bool tied = src.config.tie_word_embeddings;
  auto add = [&](const std::string& name, const std::string& dtype,
                 const std::vector<int64_t>& shape) {
    int64_t n = DtypeSize(dtype);
    for (int64_t d : shape) n *= d;
    plan.outs.push_back({name, dtype, shape, n});
  };
  for (const SourceTensor& t : src.tensors) {
    const bool embed = t.name == "model.embed_tokens.weight";
    std::string dtype = IsLinear(t) || (embed && types.quantize_embeddings)
                            ? types.linear
                            : types.other;
    if (Quantized(dtype) && t.shape.size() != 2) dtype = types.other;
    Step step{&t, dtype, false};
    add(t.name, dtype, t.shape);
    if (Quantized(dtype)) add(t.name + "_scale", "F32", {t.shape[0]});
    if (embed && tied && Quantized(types.linear) && !Quantized(dtype)) {
      step.untie_lm_head = true;
      plan.untied = true;
      add("lm_head.weight", types.linear, t.shape);
      add("lm_head.weight_scale", "F32", {t.shape[0]});
    }
    plan.steps.push_back(step);
  }
  json header = json::object();
  header["__metadata__"] = {
      {"format", "pt"},
      {"hangar_recipe", absl::StrCat(recipe.engine, ":", recipe.quantization)}};
  uint64_t offset = 0;
  for (const Out& o : plan.outs) {
    header[o.name] = {{"dtype", o.dtype},
                      {"shape", o.shape},
                      {"data_offsets", {offset, offset + uint64_t(o.nbytes)}}};
    offset += uint64_t(o.nbytes);
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  plan.header.assign(8, '\0');
  for (int i = 0; i < 8; ++i)
    plan.header[size_t(i)] = char((uint64_t(h.size()) >> (8 * i)) & 0xff);
  plan.header += h;
  plan.total_bytes = int64_t(plan.header.size()) + int64_t(offset);
  return plan;
}

// ---------------------------------------------------------------------------
// Writing.

class Writer {
 public:
  ~Writer() {
    if (fd_ >= 0) ::close(fd_);
  }
  absl::Status Open(const std::string& path) {
    path_ = path;
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      return absl::InternalError(
          absl::StrCat(path, ": cannot create: ", std::strerror(errno)));
    }
    return absl::OkStatus();
  }
  absl::Status Write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return Failed(w < 0 ? errno : ENOSPC);
      p += w;
      n -= size_t(w);
      written_ += w;
    }
    return absl::OkStatus();
  }
  // Appends `n` bytes of `in_fd` at `offset` (kernel-side copy).
  absl::Status CopyFrom(int in_fd, int64_t offset, int64_t n,
                        std::vector<char>* buf) {
    loff_t off = offset;
    while (n > 0) {
      ssize_t c = ::copy_file_range(in_fd, &off, fd_, nullptr, size_t(n), 0);
      if (c < 0 && errno == EINTR) continue;
      if (c < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                    errno == EOPNOTSUPP)) {
        break;  // fall back to read + write
      }
      if (c < 0) return Failed(errno);
      if (c == 0) return Short(in_fd);
      n -= c;
      written_ += c;
    }
    while (n > 0) {
      size_t want = size_t(std::min<int64_t>(n, int64_t(buf->size())));
      ssize_t r = ::pread(in_fd, buf->data(), want, off);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return Short(in_fd);
      RETURN_IF_ERROR(Write(buf->data(), size_t(r)));
      off += r;
      n -= r;
    }
    return absl::OkStatus();
  }
  absl::Status Close() {
    if (::fdatasync(fd_) != 0) return Failed(errno);
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return Failed(errno);
    return absl::OkStatus();
  }
  int64_t written() const { return written_; }

 private:
  absl::Status Failed(int err) {
    if (err == ENOSPC || err == EDQUOT) {
      return absl::ResourceExhaustedError(absl::StrCat(
          path_, ": write failed (disk full?): ", std::strerror(err)));
    }
    return absl::InternalError(
        absl::StrCat(path_, ": write failed: ", std::strerror(err)));
  }
  absl::Status Short(int) {
    return absl::InvalidArgumentError(
        "source: read failed or the file is shorter than its header says");
  }
  std::string path_;
  int fd_ = -1;
  int64_t written_ = 0;
};

absl::Status ReadFully(int fd, int64_t offset, char* buf, int64_t n) {
  while (n > 0) {
    ssize_t r = ::pread(fd, buf, size_t(n), offset);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      return absl::InvalidArgumentError(
          "source: read failed or the file is shorter than its header says");
    }
    buf += r;
    offset += r;
    n -= r;
  }
  return absl::OkStatus();
}

// Widens `rows` rows of `t` (raw bytes in `in`) to float32 in `out`.
void Widen(const SourceTensor& t, const char* in, int64_t elements,
           float* out) {
  switch (t.type) {
    case SrcType::kF32:
      std::memcpy(out, in, size_t(elements) * 4);
      return;
    case SrcType::kF16:
      for (int64_t i = 0; i < elements; ++i) {
        uint16_t h;
        std::memcpy(&h, in + 2 * i, 2);
        out[i] = engine::F16ToF32(h);
      }
      return;
    case SrcType::kBF16:
      for (int64_t i = 0; i < elements; ++i) {
        uint16_t h;
        std::memcpy(&h, in + 2 * i, 2);
        out[i] = engine::Bf16ToF32(h);
      }
      return;
    case SrcType::kQ8_0:
      for (int64_t b = 0; b < elements / 32; ++b) {
        const char* blk = in + b * 34;
        uint16_t dh;
        std::memcpy(&dh, blk, 2);
        const float d = engine::F16ToF32(dh);
        for (int j = 0; j < 32; ++j)
          out[b * 32 + j] = d * float(int8_t(blk[2 + j]));
      }
      return;
    case SrcType::kQ4_0:
      for (int64_t b = 0; b < elements / 32; ++b) {
        const char* blk = in + b * 18;
        uint16_t dh;
        std::memcpy(&dh, blk, 2);
        const float d = engine::F16ToF32(dh);
        for (int j = 0; j < 16; ++j) {
          const uint8_t q = uint8_t(blk[2 + j]);
          out[b * 32 + j] = d * float(int(q & 0x0f) - 8);
          out[b * 32 + j + 16] = d * float(int(q >> 4) - 8);
        }
      }
      return;
  }
}

// GGUF llama order -> Hugging Face rotate-half order, within each head:
// stored row 2*i + t is HF row t*half + i.
void Unpermute(float* v, int64_t rows, int64_t cols, int heads) {
  std::vector<float> tmp(size_t(rows * cols));
  const int64_t hd = rows / heads, half = hd / 2;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t t = 0; t < 2; ++t)
      for (int64_t i = 0; i < half; ++i) {
        std::memcpy(&tmp[size_t((h * hd + t * half + i) * cols)],
                    v + (h * hd + 2 * i + t) * cols, size_t(cols) * 4);
      }
  std::memcpy(v, tmp.data(), tmp.size() * 4);
}

// Converts `rows` float rows to `dtype` bytes appended to `out`; row scales
// go to `scales` (quantized types only).
void Encode(const float* v, int64_t rows, int64_t cols,
            const std::string& dtype, std::string* out, float* scales) {
  const size_t n = size_t(rows * cols);
  if (dtype == "F32") {
    out->assign(reinterpret_cast<const char*>(v), n * 4);
  } else if (dtype == "F16" || dtype == "BF16") {
    out->resize(n * 2);
    const bool f16 = dtype == "F16";
    for (size_t i = 0; i < n; ++i) {
      uint16_t h = f16 ? engine::F32ToF16(v[i]) : engine::F32ToBf16(v[i]);
      std::memcpy(out->data() + 2 * i, &h, 2);
    }
  } else if (dtype == "I8") {
    out->resize(n);
    internal::QuantizeRowsI8(v, rows, cols,
                             reinterpret_cast<int8_t*>(out->data()), scales);
  } else if (dtype == "I16") {
    out->resize(n * 2);
    internal::QuantizeRowsI16(v, rows, cols,
                              reinterpret_cast<int16_t*>(out->data()), scales);
  } else {  // F8_E4M3
    out->resize(n);
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = v + r * cols;
      float scale = AbsMax(row, cols) / 448.0f;
      scales[r] = scale;
      float inv = scale > 0 ? 1.0f / scale : 0.0f;
      for (int64_t k = 0; k < cols; ++k)
        (*out)[size_t(r * cols + k)] = char(engine::F32ToFp8E4M3(row[k] * inv));
    }
  }
}

absl::Status CheckFreeSpace(const std::string& dir, int64_t need,
                            int64_t margin) {
  struct statvfs vfs;
  if (::statvfs(dir.c_str(), &vfs) != 0) {
    return absl::InternalError(
        absl::StrCat(dir, ": statvfs failed: ", std::strerror(errno)));
  }
  const int64_t free_bytes = int64_t(vfs.f_bavail) * int64_t(vfs.f_frsize);
  if (free_bytes < need + margin) {
    return absl::ResourceExhaustedError(
        absl::StrCat("not enough free disk space on ", dir, ": need ",
                     need + margin, " bytes (artifact ", need, " + margin ",
                     margin, "), have ", free_bytes));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Quality.

int Argmax(const float* v, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return best;
}

double KlOfLogits(const float* a, const float* b, int n) {
  double ma = a[0], mb = b[0];
  for (int i = 1; i < n; ++i)
    ma = std::max(ma, double(a[i])), mb = std::max(mb, double(b[i]));
  double za = 0, zb = 0;
  for (int i = 0; i < n; ++i)
    za += std::exp(double(a[i]) - ma), zb += std::exp(double(b[i]) - mb);
  double lza = std::log(za), lzb = std::log(zb), kl = 0;
  for (int i = 0; i < n; ++i) {
    double lp = double(a[i]) - ma - lza, lq = double(b[i]) - mb - lzb;
    kl += std::exp(lp) * (lp - lq);
  }
  return std::max(0.0, kl);
}

absl::StatusOr<std::vector<float>> AllLogits(
    const engine::Model& model, const std::vector<std::vector<int>>& prompts) {
  std::vector<float> all;
  for (const auto& ids : prompts) {
    ASSIGN_OR_RETURN(auto state,
                     model.NewState(1, int(ids.size()), int(ids.size())));
    std::vector<engine::ForwardRow> rows;
    for (size_t i = 0; i < ids.size(); ++i)
      rows.push_back(engine::ForwardRow{0, int(i), ids[i], true});
    std::vector<float> logits(ids.size() * size_t(model.vocab_size()));
    RETURN_IF_ERROR(model.Forward(rows, state.get(), logits.data()));
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

absl::StatusOr<std::vector<int>> GreedyTokens(const engine::Model& model,
                                              const std::vector<int>& prompt,
                                              int n) {
  ASSIGN_OR_RETURN(auto state, model.NewState(1, int(prompt.size()) + n,
                                              int(prompt.size())));
  std::vector<float> logits(size_t(model.vocab_size()));
  std::vector<engine::ForwardRow> rows;
  for (size_t i = 0; i < prompt.size(); ++i)
    rows.push_back(
        engine::ForwardRow{0, int(i), prompt[i], i + 1 == prompt.size()});
  std::vector<int> out;
  for (int k = 0; k < n; ++k) {
    RETURN_IF_ERROR(model.Forward(rows, state.get(), logits.data()));
    out.push_back(Argmax(logits.data(), model.vocab_size()));
    rows = {engine::ForwardRow{0, int(prompt.size()) + k, out.back(), true}};
  }
  return out;
}

absl::StatusOr<int> GreedyMatches(const engine::Model& model,
                                  const std::vector<int>& prompt,
                                  const std::vector<int>& expected) {
  std::vector<int> seq = prompt;
  seq.insert(seq.end(), expected.begin(), expected.end() - 1);
  ASSIGN_OR_RETURN(auto state,
                   model.NewState(1, int(seq.size()), int(seq.size())));
  std::vector<engine::ForwardRow> rows;
  for (size_t i = 0; i < seq.size(); ++i)
    rows.push_back(
        engine::ForwardRow{0, int(i), seq[i], i + 1 >= prompt.size()});
  const int v = model.vocab_size();
  std::vector<float> logits(expected.size() * size_t(v));
  RETURN_IF_ERROR(model.Forward(rows, state.get(), logits.data()));
  int matches = 0;
  for (size_t k = 0; k < expected.size(); ++k)
    matches += Argmax(logits.data() + k * size_t(v), v) == expected[k];
  return matches;
}

const std::vector<std::string>& QualityPrompts() {
  static const auto* p = new std::vector<std::string>{
      "The hangar doors opened at dawn and the small plane rolled out.",
      "Once upon a time there was a little girl named Lily",
      "Numbers like 1, 2, 3 and 42 appear in the logs at 06:30."};
  return *p;
}

absl::Status Evaluate(const ConvertOptions& options,
                      const engine::Model& source, ConvertReport* report) {
  const int greedy = std::max(0, options.greedy_tokens);
  std::vector<std::vector<int>> ids;
  for (const std::string& p : QualityPrompts()) {
    ASSIGN_OR_RETURN(std::vector<int> t, source.tokenizer().Encode(p));
    if (t.empty()) continue;
    int room = std::max(1, source.context_length() - greedy);
    if (int(t.size()) > room) t.resize(size_t(room));
    ids.push_back(std::move(t));
  }
  report->prompts = int(ids.size());
  ASSIGN_OR_RETURN(
      auto artifact,
      engine::Model::Load(options.output_dir, {.threads = options.threads}));
  for (size_t i = 0; i < QualityPrompts().size(); ++i) {
    ASSIGN_OR_RETURN(std::vector<int> a,
                     artifact->tokenizer().Encode(QualityPrompts()[i]));
    ASSIGN_OR_RETURN(std::vector<int> s,
                     source.tokenizer().Encode(QualityPrompts()[i]));
    if (a != s) {
      return absl::InvalidArgumentError(
          absl::StrCat("the artifact's tokenizer encodes quality prompt ", i,
                       " differently from the source's (", a.size(), " vs ",
                       s.size(), " tokens)"));
    }
  }
  ASSIGN_OR_RETURN(std::vector<float> ref, AllLogits(source, ids));
  ASSIGN_OR_RETURN(std::vector<float> got, AllLogits(*artifact, ids));
  double max_err = 0, sum_err = 0, sum_kl = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    double e = std::fabs(double(ref[i]) - double(got[i]));
    max_err = std::max(max_err, e);
    sum_err += e;
  }
  const int vocab = source.vocab_size();
  const size_t positions = ref.size() / size_t(std::max(vocab, 1));
  for (size_t p = 0; p < positions; ++p) {
    sum_kl += KlOfLogits(ref.data() + p * size_t(vocab),
                         got.data() + p * size_t(vocab), vocab);
  }
  report->max_abs_logit_error = max_err;
  report->mean_abs_logit_error = ref.empty() ? 0 : sum_err / double(ref.size());
  report->mean_kl = positions == 0 ? 0 : sum_kl / double(positions);
  report->positions = int(positions);
  if (greedy > 0 && source.context_length() > greedy) {
    int matches = 0;
    for (const auto& t : ids) {
      ASSIGN_OR_RETURN(std::vector<int> expected,
                       GreedyTokens(source, t, greedy));
      ASSIGN_OR_RETURN(int m, GreedyMatches(*artifact, t, expected));
      matches += m;
      report->greedy_tokens += greedy;
    }
    report->greedy_agreement =
        report->greedy_tokens == 0
            ? 1
            : double(matches) / double(report->greedy_tokens);
  }
  return absl::OkStatus();
}

absl::Status MakeDirs(const std::string& dir) {
  for (size_t p = dir.find('/', 1); p != std::string::npos;
       p = dir.find('/', p + 1)) {
    std::string parent = dir.substr(0, p);
    if (!engine::IsDirectory(parent)) ::mkdir(parent.c_str(), 0755);
  }
  if (::mkdir(dir.c_str(), 0755) != 0 && !engine::IsDirectory(dir)) {
    return absl::InternalError(
        absl::StrCat(dir, ": cannot create directory: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<ConvertReport> ConvertImpl(const ConvertOptions& options) {
  if (options.output_dir.empty())
    return absl::InvalidArgumentError("output_dir: must not be empty");
  if (options.chunk_bytes < (int64_t{64} << 10) ||
      options.chunk_bytes > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk_bytes: must be in [64 KiB, 1 GiB]; was ", options.chunk_bytes));
  }
  ASSIGN_OR_RETURN(RecipeName recipe, ParseRecipe(options.recipe.ToString()));
  auto progress = [&](const ConvertProgress& p) {
    if (options.progress) options.progress(p);
  };
  ASSIGN_OR_RETURN(Source src, OpenSource(options.source, false));
  // Loading the source validates what the converter does not (shapes, the
  // architecture) before anything is written; its logits are the reference.
  ASSIGN_OR_RETURN(
      auto source_model,
      engine::Model::Load(options.source, {.threads = options.threads}));
  ConvertReport report;
  report.source_format = src.gguf ? "gguf" : "huggingface";
  for (const std::string& f : src.weight_files) {
    ASSIGN_OR_RETURN(int64_t n, engine::FileSize(f));
    report.source_weight_bytes += n;
  }
  ASSIGN_OR_RETURN(report.source_sha256, Sha256OfFiles(src.weight_files));
  ASSIGN_OR_RETURN(Plan plan, MakePlan(src, recipe));
  const Types types = TypesFor(recipe);
  for (SrcType t : src.block_types) {
    report.notes.push_back(absl::StrCat(
        "GGUF ", SrcTypeName(t),
        " tensors were dequantized to float32, then converted to ",
        types.linear, " / ", types.other,
        " (dequantize-then-quantize: the artifact is no more accurate than "
        "the ",
        SrcTypeName(t), " source)"));
  }
  if (types.quantize_embeddings) {
    report.notes.push_back(absl::StrCat(
        "the embedding table is ", types.linear,
        src.config.tie_word_embeddings ? " and stays tied to lm_head" : ""));
  }
  ConvertProgress counts;
  counts.tensors_total = int(plan.outs.size());
  counts.bytes_total = plan.total_bytes;
  counts.stage = "planning";
  progress(counts);

  RETURN_IF_ERROR(MakeDirs(options.output_dir));
  RETURN_IF_ERROR(CheckFreeSpace(options.output_dir, plan.total_bytes,
                                 options.disk_margin_bytes));
  const auto start = std::chrono::steady_clock::now();
  Writer writer;
  RETURN_IF_ERROR(writer.Open(options.output_dir + "/model.safetensors"));
  RETURN_IF_ERROR(writer.Write(plan.header.data(), plan.header.size()));
  size_t next_out = 0;
  auto wrote = [&](const std::string& name) -> absl::Status {
    if (next_out >= plan.outs.size() || plan.outs[next_out].name != name)
      return absl::InternalError(absl::StrCat("'", name, "' out of plan"));
    ++next_out;
    ++counts.tensors_done;
    counts.bytes_written = writer.written();
    counts.tensor = name;
    counts.stage = "converting";
    progress(counts);
    return absl::OkStatus();
  };
  auto cancelled = [&]() -> absl::Status {
    if (options.cancel != nullptr && options.cancel->load()) {
      return absl::CancelledError(
          absl::StrCat("conversion cancelled after ", counts.tensors_done,
                       " of ", counts.tensors_total, " tensors"));
    }
    return absl::OkStatus();
  };
  std::vector<char> raw;
  std::vector<float> wide;
  std::string encoded, encoded2;
  for (const Step& step : plan.steps) {
    RETURN_IF_ERROR(cancelled());
    const SourceTensor& t = *step.src;
    const int fd = src.fds[size_t(t.fd_index)]->fd;
    report.parameters += t.elements();
    report.largest_tensor_bytes =
        std::max(report.largest_tensor_bytes, t.nbytes);
    const bool same = !Quantized(step.dtype) && t.unpermute_heads == 0 &&
                      step.dtype == SrcTypeName(t.type) && !step.untie_lm_head;
    if (same) {
      if (raw.size() < size_t(options.chunk_bytes))
        raw.resize(size_t(options.chunk_bytes));
      RETURN_IF_ERROR(writer.CopyFrom(fd, t.offset, t.nbytes, &raw));
      RETURN_IF_ERROR(wrote(t.name));
      continue;
    }
    const int64_t rows = t.rows(), cols = t.cols();
    const int64_t row_bytes = SrcRowBytes(t.type, cols);
    if (row_bytes * rows != t.nbytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", t.name, "': ", t.nbytes, " bytes for shape ",
                       rows, "x", cols, " of ", SrcTypeName(t.type)));
    }
    // Whole heads for the Q/K permutation: the whole tensor.
    const int64_t chunk_rows =
        t.unpermute_heads > 0
            ? rows
            : std::clamp<int64_t>(
                  options.chunk_bytes / std::max<int64_t>(row_bytes, 1), 1,
                  rows);
    const bool quantized = Quantized(step.dtype);
    std::vector<float> scales(quantized ? size_t(rows) : 0);
    std::vector<float> lm_scales(step.untie_lm_head ? size_t(rows) : 0);
    // The untied lm_head follows the tensor in the file: its bytes are
    // produced in the same pass and written after.
    std::string lm_head;
    if (step.untie_lm_head)
      lm_head.reserve(size_t(rows * cols * DtypeSize(types.linear)));
    for (int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
      RETURN_IF_ERROR(cancelled());
      const int64_t n = std::min(chunk_rows, rows - r0);
      const int64_t bytes = n * row_bytes;
      const float* v = nullptr;
      if (t.type == SrcType::kF32 && t.unpermute_heads == 0) {
        wide.resize(size_t(n * cols));
        RETURN_IF_ERROR(ReadFully(fd, t.offset + r0 * row_bytes,
                                  reinterpret_cast<char*>(wide.data()), bytes));
      } else {
        raw.resize(std::max(raw.size(), size_t(bytes)));
        RETURN_IF_ERROR(
            ReadFully(fd, t.offset + r0 * row_bytes, raw.data(), bytes));
        wide.resize(size_t(n * cols));
        Widen(t, raw.data(), n * cols, wide.data());
      }
      if (t.unpermute_heads > 0)
        Unpermute(wide.data(), n, cols, t.unpermute_heads);
      v = wide.data();
      Encode(v, n, cols, step.dtype, &encoded,
             quantized ? scales.data() + r0 : nullptr);
      RETURN_IF_ERROR(writer.Write(encoded.data(), encoded.size()));
      if (step.untie_lm_head) {
        Encode(v, n, cols, types.linear, &encoded2, lm_scales.data() + r0);
        lm_head += encoded2;
      }
    }
    RETURN_IF_ERROR(wrote(t.name));
    if (quantized) {
      RETURN_IF_ERROR(writer.Write(scales.data(), scales.size() * 4));
      RETURN_IF_ERROR(wrote(t.name + "_scale"));
    }
    if (step.untie_lm_head) {
      RETURN_IF_ERROR(writer.Write(lm_head.data(), lm_head.size()));
      RETURN_IF_ERROR(wrote("lm_head.weight"));
      RETURN_IF_ERROR(writer.Write(lm_scales.data(), lm_scales.size() * 4));
      RETURN_IF_ERROR(wrote("lm_head.weight_scale"));
    }
  }
  if (next_out != plan.outs.size())
    return absl::InternalError("the plan was not written in full");
  report.convert_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  RETURN_IF_ERROR(writer.Close());
  // Free the read buffers before the quality report.
  std::vector<char>().swap(raw);
  std::vector<float>().swap(wide);
  std::string().swap(encoded);
  std::string().swap(encoded2);

  int64_t side = 0;
  for (const auto& [name, text0] : src.side_files) {
    std::string text = text0;
    if (name == "config.json" && plan.untied) {
      json cfg = json::parse(text, nullptr, false);
      if (cfg.is_object()) {
        cfg["tie_word_embeddings"] = false;
        text = cfg.dump(2);
      }
    }
    RETURN_IF_ERROR(WriteStringToFile(options.output_dir + "/" + name, text));
    side += int64_t(text.size());
  }
  report.weight_bytes = plan.total_bytes;
  report.size_bytes = side + report.weight_bytes;
  report.size_ratio =
      report.source_weight_bytes > 0
          ? double(report.weight_bytes) / double(report.source_weight_bytes)
          : 0;

  if (!options.skip_quality) {
    counts.stage = "evaluating";
    counts.tensor.clear();
    progress(counts);
    RETURN_IF_ERROR(cancelled());
    RETURN_IF_ERROR(Evaluate(options, *source_model, &report));
  }
  json manifest = {
      {"format_version", 1},
      {"recipe",
       {{"engine", recipe.engine}, {"quantization", recipe.quantization}}},
      {"source",
       {{"path", options.source},
        {"format", report.source_format},
        {"sha256", report.source_sha256}}},
      {"size_bytes", report.size_bytes},
      {"weights",
       {{"linear_dtype", types.linear},
        {"other_dtype", types.other},
        {"embedding_dtype",
         types.quantize_embeddings ? types.linear : types.other},
        {"parameters", report.parameters}}},
      {"quality",
       {{"prompts", QualityPrompts()},
        {"tokens_compared", report.positions},
        {"max_abs_logit_error", report.max_abs_logit_error},
        {"mean_abs_logit_error", report.mean_abs_logit_error},
        {"mean_kl", report.mean_kl},
        {"greedy_agreement", report.greedy_agreement},
        {"greedy_tokens", report.greedy_tokens},
        {"size_ratio", report.size_ratio}}},
      {"notes", report.notes},
      {"created_by", "hangar-optimize"},
  };
  RETURN_IF_ERROR(WriteStringToFile(
      options.output_dir + "/hangar_manifest.json", manifest.dump(2)));
  counts.stage = "done";
  progress(counts);
  return report;
}

}  // namespace

namespace internal {

void QuantizeRowsI8Scalar(const float* x, int64_t rows, int64_t cols,
                          int8_t* out, float* scales) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    const float scale = AbsMaxScalar(row, cols) / 127.0f;
    scales[r] = scale;
    QuantizeRowI8Scalar(row, cols, scale > 0 ? 1.0f / scale : 0.0f,
                        out + r * cols);
  }
}

void QuantizeRowsI8(const float* x, int64_t rows, int64_t cols, int8_t* out,
                    float* scales) {
  if (!HaveAvx2()) return QuantizeRowsI8Scalar(x, rows, cols, out, scales);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    const float scale = AbsMaxAvx2(row, cols) / 127.0f;
    scales[r] = scale;
    QuantizeRowI8Avx2(row, cols, scale > 0 ? 1.0f / scale : 0.0f,
                      out + r * cols);
  }
}

void QuantizeRowsI16(const float* x, int64_t rows, int64_t cols, int16_t* out,
                     float* scales) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    const float scale = AbsMax(row, cols) / 32767.0f;
    scales[r] = scale;
    QuantizeRowI16(row, cols, scale > 0 ? 1.0f / scale : 0.0f, out + r * cols);
  }
}

}  // namespace internal

absl::StatusOr<ConvertReport> ConvertModel(const ConvertOptions& options) {
  try {
    return ConvertImpl(options);
  } catch (const std::exception& e) {
    // nlohmann::json type errors in a source's JSON files.
    return absl::InvalidArgumentError(absl::StrCat("source: ", e.what()));
  }
}

absl::StatusOr<int64_t> EstimateArtifactBytes(const std::string& source,
                                              const RecipeName& recipe) {
  ASSIGN_OR_RETURN(RecipeName r, ParseRecipe(recipe.ToString()));
  ASSIGN_OR_RETURN(Source src, OpenSource(source, true));
  ASSIGN_OR_RETURN(Plan plan, MakePlan(src, r));
  return plan.total_bytes;
}

}  // namespace hangar::optimizer
