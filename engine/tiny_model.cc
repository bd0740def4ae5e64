#include "engine/tiny_model.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "engine/dtype.h"
#include "engine/file_util.h"
#include "engine/gguf.h"
#include "engine/kquants.h"
#include "engine/safetensors.h"

namespace hangar::engine {
namespace {

using json = nlohmann::json;

// Written for this project; any English prose would do.
constexpr char kCorpus[] =
    R"(The hangar doors opened at dawn and the small plane rolled out into the cold morning air.
The pilot checked the fuel, the oil and the tires, then climbed into the seat and started the engine.
A model is a set of numbers that turns words into other words. The numbers are learned from text,
and the text here is only a few short stories about planes, people and the weather.
Once upon a time there was a little girl named Lily who loved to watch the planes take off.
Every day she walked to the field with her dog and her brother, and they counted the planes together.
One day the wind was strong and the rain was heavy, so the planes stayed inside the hangar.
Lily was sad, but her brother said: "Tomorrow the sun will shine again, and we will count them all."
The next morning the sky was clear and blue. They saw ten planes, then twenty, then thirty and more.
The old mechanic waved at them from the door. He had worked there for forty years and knew every plane.
He told them how the engine works, how the wings lift the plane, and why the pilot talks to the tower.
"Speed, lift and balance," he said, "that is all there is to it, and a lot of careful work."
Numbers like 1, 2, 3, 10, 42, 100 and 2024 appear in the logs, with times such as 06:30 and 18:45.
The weather report said: wind from the west at 12 knots, visibility 10 kilometers, temperature 7 degrees.
People who build things learn to measure twice and cut once. They test what they make, and they write it down.
When the work is done they clean the tools, close the doors and walk home in the evening light.
The children went home happy. That night Lily dreamed that she was flying over the town, the river and the hills.
She saw the houses, the trees, the roads and the lights, and she was not afraid at all.
In the morning she told her mother about the dream, and her mother smiled and said she could be a pilot one day.
)";

// xoshiro256** with splitmix64 seeding.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (uint64_t& s : s_) {
      uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      s = z ^ (z >> 31);
    }
  }
  uint64_t Next() {
    auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
    uint64_t result = rotl(s_[1] * 5, 7) * 9;
    uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  double Uniform() {
    return double((Next() >> 11) + 1) * (1.0 / 9007199254740993.0);
  }
  // Box-Muller.
  float Normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = Uniform(), u2 = Uniform();
    double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = float(r * std::sin(2 * M_PI * u2));
    has_spare_ = true;
    return float(r * std::cos(2 * M_PI * u2));
  }

 private:
  uint64_t s_[4];
  bool has_spare_ = false;
  float spare_ = 0;
};

std::string ByteToUnicodeString(uint8_t b) {
  // GPT-2's byte <-> printable code point table.
  static uint32_t table[256];
  static bool init = [] {
    int n = 0;
    for (int c = 0; c < 256; ++c) {
      bool printable = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) ||
                       (c >= 174 && c <= 255);
      table[c] = printable ? uint32_t(c) : uint32_t(256 + n++);
    }
    return true;
  }();
  (void)init;
  uint32_t cp = table[b];
  std::string out;
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else {
    out.push_back(char(0xc0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3f)));
  }
  return out;
}

std::string MapBytes(const std::string& raw) {
  std::string out;
  for (unsigned char c : raw) out += ByteToUnicodeString(c);
  return out;
}

// Splits the corpus roughly like the GPT-2 regex: optional space + letters,
// optional space + digits, optional space + other symbols, newlines.
std::vector<std::string> PreTokenize(const std::string& text) {
  std::vector<std::string> words;
  auto cls = [](unsigned char c) {
    if (std::isalpha(c) || c >= 0x80) return 0;
    if (std::isdigit(c)) return 1;
    if (c == ' ' || c == '\n' || c == '\t') return 3;
    return 2;
  };
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    if (text[i] == ' ' && i + 1 < text.size() && cls(uint8_t(text[i + 1])) != 3)
      ++i;
    int c = cls(uint8_t(text[i]));
    ++i;
    while (i < text.size() && cls(uint8_t(text[i])) == c) ++i;
    words.push_back(text.substr(start, i - start));
  }
  return words;
}

struct Trained {
  std::vector<std::string> tokens;  // raw bytes per id (specials: content)
  std::vector<std::pair<int, int>> merges;
};

// Byte-level BPE training: ids 0 and 1 are <s> and </s>, 2..257 the bytes,
// then one token per merge, most frequent pair first (ties: lowest ids).
Trained TrainBpe(int vocab_size) {
  Trained t;
  t.tokens.push_back("<s>");
  t.tokens.push_back("</s>");
  for (int b = 0; b < 256; ++b) t.tokens.push_back(std::string(1, char(b)));
  std::map<std::string, int> counts;
  for (const std::string& w : PreTokenize(kCorpus)) counts[w]++;
  std::vector<std::pair<std::vector<int>, int>> words;
  for (const auto& [w, n] : counts) {
    std::vector<int> ids;
    for (unsigned char c : w) ids.push_back(2 + c);
    words.push_back({ids, n});
  }
  while (int(t.tokens.size()) < vocab_size) {
    std::map<std::pair<int, int>, int> pairs;
    for (const auto& [ids, n] : words)
      for (size_t i = 0; i + 1 < ids.size(); ++i)
        pairs[{ids[i], ids[i + 1]}] += n;
    std::pair<int, int> best{-1, -1};
    int best_n = 1;
    for (const auto& [p, n] : pairs) {
      if (n > best_n) {
        best = p;
        best_n = n;
      }
    }
    if (best.first < 0) break;  // nothing occurs twice any more
    int id = int(t.tokens.size());
    t.tokens.push_back(t.tokens[size_t(best.first)] +
                       t.tokens[size_t(best.second)]);
    t.merges.push_back(best);
    for (auto& [ids, n] : words) {
      std::vector<int> next;
      for (size_t i = 0; i < ids.size(); ++i) {
        if (i + 1 < ids.size() && ids[i] == best.first &&
            ids[i + 1] == best.second) {
          next.push_back(id);
          ++i;
        } else {
          next.push_back(ids[i]);
        }
      }
      ids.swap(next);
    }
  }
  return t;
}

std::string TokenizerJson(const Trained& t) {
  json vocab = json::object();
  for (size_t id = 2; id < t.tokens.size(); ++id)
    vocab[MapBytes(t.tokens[id])] = id;
  vocab["<s>"] = 0;
  vocab["</s>"] = 1;
  json merges = json::array();
  for (const auto& [a, b] : t.merges) {
    merges.push_back(MapBytes(t.tokens[size_t(a)]) + " " +
                     MapBytes(t.tokens[size_t(b)]));
  }
  json added = json::array();
  for (int id = 0; id < 2; ++id) {
    added.push_back({{"id", id},
                     {"content", t.tokens[size_t(id)]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  json j = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "ByteLevel"},
        {"add_prefix_space", false},
        {"trim_offsets", true},
        {"use_regex", true}}},
      {"post_processor",
       {{"type", "ByteLevel"},
        {"add_prefix_space", true},
        {"trim_offsets", false},
        {"use_regex", true}}},
      {"decoder",
       {{"type", "ByteLevel"},
        {"add_prefix_space", true},
        {"trim_offsets", true},
        {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"vocab", vocab},
        {"merges", merges}}},
  };
  return j.dump(1);
}

absl::Status MakeDir(const std::string& dir) {
  if (IsDirectory(dir)) return absl::OkStatus();
  // Create parents as needed.
  for (size_t p = dir.find('/', 1); p != std::string::npos;
       p = dir.find('/', p + 1)) {
    std::string parent = dir.substr(0, p);
    if (!IsDirectory(parent)) ::mkdir(parent.c_str(), 0755);
  }
  if (::mkdir(dir.c_str(), 0755) != 0 && !IsDirectory(dir)) {
    return absl::InternalError(absl::StrCat(dir, ": cannot create directory"));
  }
  return absl::OkStatus();
}

}  // namespace

const std::string& TinyModelCorpus() {
  static const std::string* corpus = new std::string(kCorpus);
  return *corpus;
}

absl::StatusOr<TinyModelOptions> TinyModelPreset(const std::string& name) {
  TinyModelOptions o;
  if (name == "tiny") return o;
  if (name == "small") {
    o.hidden_size = 288;
    o.intermediate_size = 768;
    o.num_layers = 6;
    o.num_heads = 6;
    o.num_kv_heads = 6;
    o.vocab_size = 32000;
    o.max_position_embeddings = 1024;
    o.tie_word_embeddings = true;
    o.init_std = 0.02f;
    return o;
  }
  if (name == "base") {
    o.hidden_size = 768;
    o.intermediate_size = 2048;
    o.num_layers = 12;
    o.num_heads = 12;
    o.num_kv_heads = 12;
    o.vocab_size = 32000;
    o.max_position_embeddings = 1024;
    o.tie_word_embeddings = true;
    o.init_std = 0.02f;
    return o;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("preset: '", name, "' is not one of tiny, small, base"));
}

absl::Status WriteTinyModel(const TinyModelOptions& o, const std::string& dir) {
  if (o.architecture != "llama" && o.architecture != "qwen2") {
    return absl::InvalidArgumentError(absl::StrCat(
        "architecture: must be llama or qwen2; was '", o.architecture, "'"));
  }
  if (o.hidden_size <= 0 || o.num_heads <= 0 ||
      o.hidden_size % o.num_heads != 0 ||
      (o.hidden_size / o.num_heads) % 2 != 0 || o.num_kv_heads <= 0 ||
      o.num_heads % o.num_kv_heads != 0 || o.num_layers <= 0 ||
      o.intermediate_size <= 0) {
    return absl::InvalidArgumentError(
        "dimensions: hidden_size must split into an even head_dim per head, "
        "num_heads must be a multiple of "
        "num_kv_heads, and layers/intermediate_size must be positive");
  }
  if (o.vocab_size < 258 || o.vocab_size > 1'000'000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vocab_size: must be in [258, 1000000]; was ", o.vocab_size));
  }
  if (o.dtype != "F32" && o.dtype != "F16" && o.dtype != "BF16") {
    return absl::InvalidArgumentError(
        absl::StrCat("dtype: must be F32, F16 or BF16; was ", o.dtype));
  }
  RETURN_IF_ERROR(MakeDir(dir));
  const int D = o.hidden_size, F = o.intermediate_size, hd = D / o.num_heads;
  const int kvdim = o.num_kv_heads * hd;
  const float std = o.init_std > 0 ? o.init_std : 1.0f / std::sqrt(float(D));
  Rng rng(o.seed);
  SafetensorsWriter writer;
  writer.SetMetadata("format", "pt");
  auto matrix = [&](const std::string& name, int rows,
                    int cols) -> absl::Status {
    std::vector<float> v(size_t(rows) * cols);
    for (float& x : v) x = rng.Normal() * std;
    return writer.Add(name, o.dtype, {rows, cols}, EncodeFloats(v, o.dtype));
  };
  auto vector = [&](const std::string& name, int n, float center,
                    float spread) -> absl::Status {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = center + rng.Normal() * spread;
    return writer.Add(name, o.dtype, {n}, EncodeFloats(v, o.dtype));
  };
  RETURN_IF_ERROR(matrix("model.embed_tokens.weight", o.vocab_size, D));
  for (int l = 0; l < o.num_layers; ++l) {
    std::string p = absl::StrCat("model.layers.", l, ".");
    RETURN_IF_ERROR(vector(p + "input_layernorm.weight", D, 1.0f, 0.1f));
    RETURN_IF_ERROR(matrix(p + "self_attn.q_proj.weight", D, D));
    RETURN_IF_ERROR(matrix(p + "self_attn.k_proj.weight", kvdim, D));
    RETURN_IF_ERROR(matrix(p + "self_attn.v_proj.weight", kvdim, D));
    if (o.architecture == "qwen2") {
      RETURN_IF_ERROR(vector(p + "self_attn.q_proj.bias", D, 0.0f, 0.1f));
      RETURN_IF_ERROR(vector(p + "self_attn.k_proj.bias", kvdim, 0.0f, 0.1f));
      RETURN_IF_ERROR(vector(p + "self_attn.v_proj.bias", kvdim, 0.0f, 0.1f));
    }
    RETURN_IF_ERROR(matrix(p + "self_attn.o_proj.weight", D, D));
    RETURN_IF_ERROR(
        vector(p + "post_attention_layernorm.weight", D, 1.0f, 0.1f));
    RETURN_IF_ERROR(matrix(p + "mlp.gate_proj.weight", F, D));
    RETURN_IF_ERROR(matrix(p + "mlp.up_proj.weight", F, D));
    RETURN_IF_ERROR(matrix(p + "mlp.down_proj.weight", D, F));
  }
  RETURN_IF_ERROR(vector("model.norm.weight", D, 1.0f, 0.1f));
  if (!o.tie_word_embeddings)
    RETURN_IF_ERROR(matrix("lm_head.weight", o.vocab_size, D));
  RETURN_IF_ERROR(writer.Write(dir + "/model.safetensors"));

  Trained tok = TrainBpe(std::min(o.vocab_size, 4096));
  RETURN_IF_ERROR(
      WriteStringToFile(dir + "/tokenizer.json", TokenizerJson(tok)));
  json tok_cfg = {{"add_bos_token", true},
                  {"add_eos_token", false},
                  {"bos_token", "<s>"},
                  {"eos_token", "</s>"},
                  {"model_max_length", o.max_position_embeddings},
                  {"tokenizer_class", "PreTrainedTokenizerFast"}};
  RETURN_IF_ERROR(
      WriteStringToFile(dir + "/tokenizer_config.json", tok_cfg.dump(2)));
  json gen = {{"bos_token_id", 0}, {"eos_token_id", 1}};
  RETURN_IF_ERROR(
      WriteStringToFile(dir + "/generation_config.json", gen.dump(2)));
  std::string torch_dtype = o.dtype == "F32"   ? "float32"
                            : o.dtype == "F16" ? "float16"
                                               : "bfloat16";
  json cfg = {
      {"architectures",
       {o.architecture == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
      {"model_type", o.architecture},
      {"hidden_size", D},
      {"intermediate_size", F},
      {"num_hidden_layers", o.num_layers},
      {"num_attention_heads", o.num_heads},
      {"num_key_value_heads", o.num_kv_heads},
      {"vocab_size", o.vocab_size},
      {"max_position_embeddings", o.max_position_embeddings},
      {"rms_norm_eps", o.rms_norm_eps},
      {"rope_theta", o.rope_theta},
      {"hidden_act", "silu"},
      {"tie_word_embeddings", o.tie_word_embeddings},
      {"bos_token_id", 0},
      {"eos_token_id", 1},
      {"torch_dtype", torch_dtype},
      {"hangar_tiny_model", {{"seed", o.seed}, {"init_std", std}}},
  };
  return WriteStringToFile(dir + "/config.json", cfg.dump(2));
}

// ---------------------------------------------------------------------------
// GGUF conversion

namespace {

std::vector<float> ToFloats(const SafetensorsTensor& t) {
  std::vector<float> v(size_t(t.elements()));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t.dtype == "F32") {
      std::memcpy(&v[i], t.data + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, t.data + 2 * i, 2);
      v[i] = t.dtype == "F16" ? F16ToF32(h) : Bf16ToF32(h);
    }
  }
  return v;
}

// llama.cpp's permutation of Q/K rows: within each head, row t*half + i of
// the HF layout moves to row 2*i + t.
std::vector<float> PermuteRows(const std::vector<float>& w, int heads, int rows,
                               int cols) {
  std::vector<float> out(w.size());
  int hd = rows / heads, half = hd / 2;
  for (int h = 0; h < heads; ++h)
    for (int t = 0; t < 2; ++t)
      for (int i = 0; i < half; ++i) {
        int src = h * hd + t * half + i, dst = h * hd + 2 * i + t;
        std::memcpy(&out[size_t(dst) * cols], &w[size_t(src) * cols],
                    size_t(cols) * 4);
      }
  return out;
}

std::string QuantizeGgml(const std::vector<float>& v, uint32_t type) {
  std::string out;
  if (type == kGgmlF32) {
    out.resize(v.size() * 4);
    std::memcpy(out.data(), v.data(), out.size());
  } else if (type == kGgmlF16) {
    out.resize(v.size() * 2);
    for (size_t i = 0; i < v.size(); ++i) {
      uint16_t h = F32ToF16(v[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  } else if (type == kGgmlQ8_0) {
    for (size_t b = 0; b < v.size(); b += 32) {
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(v[b + j]));
      float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
      uint16_t dh = F32ToF16(d);
      out.append(reinterpret_cast<const char*>(&dh), 2);
      for (int j = 0; j < 32; ++j)
        out.push_back(char(int8_t(std::lround(v[b + j] * id))));
    }
  } else if (type == kGgmlQ4_K || type == kGgmlQ5_K || type == kGgmlQ6_K) {
    const DType d = type == kGgmlQ4_K   ? DType::kQ4_K
                    : type == kGgmlQ5_K ? DType::kQ5_K
                                        : DType::kQ6_K;
    const int bytes = KQuantBlockBytes(d);
    out.resize(v.size() / kQK * size_t(bytes));
    for (size_t b = 0; b < v.size() / kQK; ++b)
      QuantizeKBlock(d, v.data() + b * kQK,
                     reinterpret_cast<uint8_t*>(out.data()) + b * bytes);
  } else {  // Q4_0
    for (size_t b = 0; b < v.size(); b += 32) {
      float amax = 0, max = 0;
      for (int j = 0; j < 32; ++j) {
        if (std::fabs(v[b + j]) > amax) {
          amax = std::fabs(v[b + j]);
          max = v[b + j];
        }
      }
      float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
      uint16_t dh = F32ToF16(d);
      out.append(reinterpret_cast<const char*>(&dh), 2);
      for (int j = 0; j < 16; ++j) {
        int q0 = std::min(15, int(int8_t(v[b + j] * id + 8.5f)));
        int q1 = std::min(15, int(int8_t(v[b + j + 16] * id + 8.5f)));
        out.push_back(char(uint8_t(q0) | uint8_t(q1 << 4)));
      }
    }
  }
  return out;
}

}  // namespace

absl::Status ConvertToGgufImpl(const std::string& hf_dir,
                               const std::string& gguf_path,
                               const std::string& type_name) {
  uint32_t type;
  if (type_name == "f32") {
    type = kGgmlF32;
  } else if (type_name == "f16") {
    type = kGgmlF16;
  } else if (type_name == "q8_0") {
    type = kGgmlQ8_0;
  } else if (type_name == "q4_0") {
    type = kGgmlQ4_0;
  } else if (type_name == "q4_k" || type_name == "q4_k_m") {
    type = kGgmlQ4_K;
  } else if (type_name == "q5_k") {
    type = kGgmlQ5_K;
  } else if (type_name == "q6_k") {
    type = kGgmlQ6_K;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("type: must be f32, f16, q8_0, q4_0, q4_k, q4_k_m, q5_k "
                     "or q6_k; was '",
                     type_name, "'"));
  }
  // q4_k_m: a mix like llama.cpp's Q4_K_M, with output and ffn_down in Q6_K.
  const bool mix = type_name == "q4_k_m";
  ASSIGN_OR_RETURN(std::string cfg_text,
                   ReadFileToString(hf_dir + "/config.json"));
  json cfg = json::parse(cfg_text, nullptr, false);
  ASSIGN_OR_RETURN(std::string tok_text,
                   ReadFileToString(hf_dir + "/tokenizer.json"));
  json tok = json::parse(tok_text, nullptr, false);
  if (cfg.is_discarded() || tok.is_discarded())
    return absl::InvalidArgumentError("bad config.json or tokenizer.json");
  std::string tok_cfg_text;
  if (FileExists(hf_dir + "/tokenizer_config.json")) {
    ASSIGN_OR_RETURN(tok_cfg_text,
                     ReadFileToString(hf_dir + "/tokenizer_config.json"));
  }
  json tok_cfg = tok_cfg_text.empty()
                     ? json::object()
                     : json::parse(tok_cfg_text, nullptr, false);
  const std::string arch = cfg.value("model_type", "llama");
  if (arch != "llama" && arch != "qwen2") {
    return absl::InvalidArgumentError(absl::StrCat(
        "model_type '", arch, "' cannot be converted (llama, qwen2)"));
  }
  ASSIGN_OR_RETURN(auto st,
                   SafetensorsFile::Open(hf_dir + "/model.safetensors"));
  const int D = cfg["hidden_size"], heads = cfg["num_attention_heads"];
  const int kv_heads = cfg.value("num_key_value_heads", heads),
            layers = cfg["num_hidden_layers"];
  GgufWriter w;
  w.AddString("general.architecture", arch);
  w.AddString("general.name", "hangar-tiny");
  w.AddU32("general.alignment", 32);
  w.AddU32(arch + ".context_length",
           cfg.value("max_position_embeddings", 2048));
  w.AddU32(arch + ".embedding_length", uint32_t(D));
  w.AddU32(arch + ".block_count", uint32_t(layers));
  w.AddU32(arch + ".feed_forward_length", cfg.value("intermediate_size", 0));
  w.AddU32(arch + ".attention.head_count", uint32_t(heads));
  w.AddU32(arch + ".attention.head_count_kv", uint32_t(kv_heads));
  w.AddF32(arch + ".rope.freq_base", cfg.value("rope_theta", 10000.0f));
  w.AddF32(arch + ".attention.layer_norm_rms_epsilon",
           cfg.value("rms_norm_eps", 1e-5f));
  // Tokenizer: gpt2-style vocabulary with merges.
  const json& vocab = tok["model"]["vocab"];
  int n = 0;
  for (auto it = vocab.begin(); it != vocab.end(); ++it)
    n = std::max(n, it.value().get<int>() + 1);
  std::vector<std::string> tokens(static_cast<size_t>(n));
  std::vector<int32_t> types(static_cast<size_t>(n), 1);
  for (int i = 0; i < n; ++i) tokens[size_t(i)] = absl::StrCat("[PAD", i, "]");
  for (auto it = vocab.begin(); it != vocab.end(); ++it)
    tokens[size_t(it.value().get<int>())] = it.key();
  for (const json& a : tok["added_tokens"]) {
    int id = a["id"];
    if (id < n) types[size_t(id)] = a.value("special", false) ? 3 : 4;
  }
  std::vector<std::string> merges;
  for (const json& m : tok["model"]["merges"]) {
    merges.push_back(m.is_string() ? m.get<std::string>()
                                   : m[0].get<std::string>() + " " +
                                         m[1].get<std::string>());
  }
  w.AddString("tokenizer.ggml.model", "gpt2");
  w.AddString("tokenizer.ggml.pre", "gpt-2");
  w.AddStringArray("tokenizer.ggml.tokens", tokens);
  w.AddI32Array("tokenizer.ggml.token_type", types);
  w.AddStringArray("tokenizer.ggml.merges", merges);
  auto id_of = [&](const json& v) -> int {
    std::string s = v.is_string()   ? v.get<std::string>()
                    : v.is_object() ? v.value("content", "")
                                    : "";
    if (vocab.contains(s)) return vocab[s];
    for (const json& a : tok["added_tokens"])
      if (a.value("content", "") == s) return a["id"];
    return -1;
  };
  if (tok_cfg.is_object() && tok_cfg.contains("bos_token"))
    w.AddU32("tokenizer.ggml.bos_token_id",
             uint32_t(id_of(tok_cfg["bos_token"])));
  if (tok_cfg.is_object() && tok_cfg.contains("eos_token"))
    w.AddU32("tokenizer.ggml.eos_token_id",
             uint32_t(id_of(tok_cfg["eos_token"])));
  w.AddBool("tokenizer.ggml.add_bos_token",
            tok_cfg.is_object() && tok_cfg.value("add_bos_token", false));

  auto get =
      [&](const std::string& name) -> absl::StatusOr<const SafetensorsTensor*> {
    const SafetensorsTensor* t = st->Find(name);
    if (t == nullptr)
      return absl::InvalidArgumentError(absl::StrCat("missing tensor ", name));
    if (t->dtype != "F32" && t->dtype != "F16" && t->dtype != "BF16") {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", name, " must be F32/F16/BF16 to convert"));
    }
    return t;
  };
  auto add_matrix = [&](const std::string& src, const std::string& dst,
                        int permute_heads) -> absl::Status {
    ASSIGN_OR_RETURN(const SafetensorsTensor* t, get(src));
    int rows = int(t->shape[0]), cols = int(t->shape[1]);
    std::vector<float> v = ToFloats(*t);
    if (permute_heads > 0 && arch == "llama")
      v = PermuteRows(v, permute_heads, rows, cols);
    uint32_t tt = (type == kGgmlQ8_0 || type == kGgmlQ4_0) && cols % 32 != 0
                      ? kGgmlF32
                      : type;
    if (mix &&
        (dst == "output.weight" || dst.find("ffn_down") != std::string::npos))
      tt = kGgmlQ6_K;
    // K-quant rows hold whole 256-weight super-blocks; others fall back.
    if ((tt == kGgmlQ4_K || tt == kGgmlQ5_K || tt == kGgmlQ6_K) &&
        cols % kQK != 0)
      tt = cols % 32 == 0 ? kGgmlQ8_0 : kGgmlF32;
    w.AddTensor(dst, tt, {cols, rows}, QuantizeGgml(v, tt));
    return absl::OkStatus();
  };
  auto add_vector = [&](const std::string& src,
                        const std::string& dst) -> absl::Status {
    ASSIGN_OR_RETURN(const SafetensorsTensor* t, get(src));
    w.AddTensor(dst, kGgmlF32, {t->elements()},
                QuantizeGgml(ToFloats(*t), kGgmlF32));
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(
      add_matrix("model.embed_tokens.weight", "token_embd.weight", 0));
  if (st->Find("lm_head.weight") != nullptr)
    RETURN_IF_ERROR(add_matrix("lm_head.weight", "output.weight", 0));
  RETURN_IF_ERROR(add_vector("model.norm.weight", "output_norm.weight"));
  for (int l = 0; l < layers; ++l) {
    std::string p = absl::StrCat("model.layers.", l, "."),
                q = absl::StrCat("blk.", l, ".");
    RETURN_IF_ERROR(
        add_vector(p + "input_layernorm.weight", q + "attn_norm.weight"));
    RETURN_IF_ERROR(add_vector(p + "post_attention_layernorm.weight",
                               q + "ffn_norm.weight"));
    RETURN_IF_ERROR(
        add_matrix(p + "self_attn.q_proj.weight", q + "attn_q.weight", heads));
    RETURN_IF_ERROR(add_matrix(p + "self_attn.k_proj.weight",
                               q + "attn_k.weight", kv_heads));
    RETURN_IF_ERROR(
        add_matrix(p + "self_attn.v_proj.weight", q + "attn_v.weight", 0));
    RETURN_IF_ERROR(
        add_matrix(p + "self_attn.o_proj.weight", q + "attn_output.weight", 0));
    RETURN_IF_ERROR(
        add_matrix(p + "mlp.gate_proj.weight", q + "ffn_gate.weight", 0));
    RETURN_IF_ERROR(
        add_matrix(p + "mlp.up_proj.weight", q + "ffn_up.weight", 0));
    RETURN_IF_ERROR(
        add_matrix(p + "mlp.down_proj.weight", q + "ffn_down.weight", 0));
    if (arch == "qwen2") {
      RETURN_IF_ERROR(
          add_vector(p + "self_attn.q_proj.bias", q + "attn_q.bias"));
      RETURN_IF_ERROR(
          add_vector(p + "self_attn.k_proj.bias", q + "attn_k.bias"));
      RETURN_IF_ERROR(
          add_vector(p + "self_attn.v_proj.bias", q + "attn_v.bias"));
    }
  }
  return w.Write(gguf_path);
}

absl::Status ConvertToGguf(const std::string& hf_dir,
                           const std::string& gguf_path,
                           const std::string& type_name) {
  try {
    return ConvertToGgufImpl(hf_dir, gguf_path, type_name);
  } catch (const std::exception& e) {
    // nlohmann::json type errors in the source's JSON files.
    return absl::InvalidArgumentError(
        absl::StrCat("ConvertToGguf: ", e.what()));
  }
}

}  // namespace hangar::engine
