#include "engine/quantize.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status/status_macros.h"
#include "engine/dtype.h"
#include "engine/file_util.h"
#include "engine/model.h"
#include "engine/safetensors.h"

namespace hangar::engine {
namespace {

using json = nlohmann::json;

struct Recipe {
  std::string linear;  // safetensors dtype of linear weights
  std::string other;   // of everything else
};

absl::StatusOr<Recipe> ResolveRecipe(const std::string& engine_in, const std::string& q) {
  std::string engine = absl::AsciiStrToUpper(engine_in);
  static const std::map<std::string, Recipe> kCt2 = {
      {"int8", {"I8", "F32"}},         {"int8_float32", {"I8", "F32"}}, {"int8_float16", {"I8", "F16"}},
      {"int8_bfloat16", {"I8", "BF16"}}, {"int16", {"I16", "F32"}},     {"float16", {"F16", "F16"}},
      {"bfloat16", {"BF16", "BF16"}},  {"float32", {"F32", "F32"}}};
  static const std::map<std::string, Recipe> kVllm = {{"float16", {"F16", "F16"}},
                                                      {"bfloat16", {"BF16", "BF16"}},
                                                      {"float32", {"F32", "F32"}},
                                                      {"fp8", {"F8_E4M3", "BF16"}}};
  const std::map<std::string, Recipe>* table = nullptr;
  if (engine == "CTRANSLATE2") table = &kCt2;
  if (engine == "VLLM") table = &kVllm;
  if (table == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("engine: must be CTRANSLATE2 or VLLM; was '", engine_in, "'"));
  }
  auto it = table->find(q);
  if (it == table->end()) {
    std::vector<std::string> names;
    for (const auto& [k, v] : *table) names.push_back(k);
    return absl::InvalidArgumentError(absl::StrCat("quantization: must be one of ", absl::StrJoin(names, ", "),
                                                   " for ", engine, "; was '", q, "'"));
  }
  return it->second;
}

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

// Per-row symmetric quantization; returns (bytes, scales).
std::pair<std::string, std::vector<float>> QuantizeRows(const std::vector<float>& v, int64_t rows,
                                                        int64_t cols, const std::string& dtype) {
  std::string out;
  std::vector<float> scales(static_cast<size_t>(rows));
  const int esize = dtype == "I16" ? 2 : 1;
  out.resize(size_t(rows * cols * esize));
  const float qmax = dtype == "I8" ? 127.0f : dtype == "I16" ? 32767.0f : 448.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = v.data() + r * cols;
    float amax = 0;
    for (int64_t k = 0; k < cols; ++k) amax = std::max(amax, std::fabs(row[k]));
    float scale = amax / qmax;
    scales[size_t(r)] = scale;
    float inv = scale > 0 ? 1.0f / scale : 0.0f;
    for (int64_t k = 0; k < cols; ++k) {
      float x = row[k] * inv;
      if (dtype == "I8") {
        out[size_t(r * cols + k)] = char(int8_t(std::clamp(std::nearbyint(x), -127.0f, 127.0f)));
      } else if (dtype == "I16") {
        int16_t q = int16_t(std::clamp(std::nearbyint(x), -32767.0f, 32767.0f));
        std::memcpy(&out[size_t(2 * (r * cols + k))], &q, 2);
      } else {
        out[size_t(r * cols + k)] = char(F32ToFp8E4M3(x));
      }
    }
  }
  return {std::move(out), std::move(scales)};
}

bool QuantizedDType(const std::string& d) { return d == "I8" || d == "I16" || d == "F8_E4M3"; }

bool IsLinear(const std::string& name, const SafetensorsTensor& t) {
  if (t.shape.size() != 2) return false;
  if (name == "lm_head.weight") return true;
  return name.size() > 12 && name.compare(name.size() - 12, 12, "_proj.weight") == 0;
}

// Logits of every position of every prompt.
absl::StatusOr<std::vector<float>> AllLogits(const Model& model, const std::vector<std::vector<int>>& prompts) {
  std::vector<float> all;
  for (const auto& ids : prompts) {
    ASSIGN_OR_RETURN(auto state, model.NewState(1, int(ids.size()), int(ids.size())));
    std::vector<ForwardRow> rows;
    for (size_t i = 0; i < ids.size(); ++i) rows.push_back(ForwardRow{0, int(i), ids[i], true});
    std::vector<float> logits(ids.size() * size_t(model.vocab_size()));
    RETURN_IF_ERROR(model.Forward(rows, state.get(), logits.data()));
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

}  // namespace

absl::Status ValidateRecipe(const std::string& engine, const std::string& quantization) {
  return ResolveRecipe(engine, quantization).status();
}

absl::StatusOr<QuantizeReport> QuantizeModelImpl(const QuantizeOptions& options) {
  ASSIGN_OR_RETURN(Recipe recipe, ResolveRecipe(options.engine, options.quantization));
  if (options.output_dir.empty()) return absl::InvalidArgumentError("output_dir: must not be empty");
  auto progress = [&](double f, const std::string& stage) {
    if (options.progress) options.progress(f, stage);
  };
  progress(0, "loading");
  // Loading the source validates it (and gives the reference logits).
  ASSIGN_OR_RETURN(auto source, Model::Load(options.source_dir, LoadOptions{.threads = options.threads}));
  if (source->info().format != "huggingface") {
    return absl::InvalidArgumentError("source_dir: must be a Hugging Face model directory, not a GGUF file");
  }
  // The source weight files, in a fixed order.
  std::vector<std::string> weight_files;
  if (FileExists(options.source_dir + "/model.safetensors")) {
    weight_files.push_back(options.source_dir + "/model.safetensors");
  } else {
    ASSIGN_OR_RETURN(std::string index_text, ReadFileToString(options.source_dir + "/model.safetensors.index.json"));
    json index = json::parse(index_text, nullptr, false);
    std::set<std::string> files;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it)
      files.insert(it.value().get<std::string>());
    for (const std::string& f : files) weight_files.push_back(options.source_dir + "/" + f);
  }
  QuantizeReport report;
  report.output_dir = options.output_dir;
  report.engine = absl::AsciiStrToUpper(options.engine);
  report.quantization = options.quantization;
  ASSIGN_OR_RETURN(report.source_sha256, Sha256OfFiles(weight_files));

  // Quantize tensor by tensor.
  if (!IsDirectory(options.output_dir)) {
    for (size_t p = options.output_dir.find('/', 1); p != std::string::npos; p = options.output_dir.find('/', p + 1)) {
      std::string parent = options.output_dir.substr(0, p);
      if (!IsDirectory(parent)) ::mkdir(parent.c_str(), 0755);
    }
    if (::mkdir(options.output_dir.c_str(), 0755) != 0 && !IsDirectory(options.output_dir)) {
      return absl::InternalError(absl::StrCat(options.output_dir, ": cannot create directory"));
    }
  }
  SafetensorsWriter writer;
  writer.SetMetadata("format", "pt");
  writer.SetMetadata("hangar_recipe", absl::StrCat(report.engine, ":", report.quantization));
  int64_t total = 0, done = 0;
  const bool tied = source->config().tie_word_embeddings;
  bool untied = false;
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  for (const std::string& f : weight_files) {
    ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(f));
    for (const auto& [name, t] : file->tensors()) total += t.elements();
    files.push_back(std::move(file));
  }
  for (const auto& file : files) {
    for (const auto& [name, t] : file->tensors()) {
      if (t.dtype != "F32" && t.dtype != "F16" && t.dtype != "BF16") {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has dtype ", t.dtype,
                                                       "; only F32, F16 and BF16 sources can be quantized"));
      }
      std::vector<float> v = ToFloats(t);
      report.parameters += t.elements();
      bool linear = IsLinear(name, t);
      const std::string& dtype = linear ? recipe.linear : recipe.other;
      if (QuantizedDType(dtype)) {
        auto [bytes, scales] = QuantizeRows(v, t.shape[0], t.shape[1], dtype);
        RETURN_IF_ERROR(writer.Add(name, dtype, t.shape, std::move(bytes)));
        RETURN_IF_ERROR(writer.Add(name + "_scale", "F32", {t.shape[0]}, EncodeFloats(scales, "F32")));
      } else {
        RETURN_IF_ERROR(writer.Add(name, dtype, t.shape, EncodeFloats(v, dtype)));
      }
      if (name == "model.embed_tokens.weight" && tied && QuantizedDType(recipe.linear)) {
        // The tied output projection is a linear layer too: store it
        // quantized as an untied lm_head (the embedding lookup keeps the
        // unquantized table).
        auto [bytes, scales] = QuantizeRows(v, t.shape[0], t.shape[1], recipe.linear);
        RETURN_IF_ERROR(writer.Add("lm_head.weight", recipe.linear, t.shape, std::move(bytes)));
        RETURN_IF_ERROR(writer.Add("lm_head.weight_scale", "F32", {t.shape[0]}, EncodeFloats(scales, "F32")));
        untied = true;
      }
      done += t.elements();
      progress(0.1 + 0.6 * double(done) / double(std::max<int64_t>(total, 1)), "quantizing");
    }
  }
  files.clear();
  RETURN_IF_ERROR(writer.Write(options.output_dir + "/model.safetensors"));
  int64_t size = 0;
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
    std::string src = options.source_dir + "/" + f;
    if (!FileExists(src)) continue;
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(src));
    if (untied && std::string(f) == "config.json") {
      json cfg = json::parse(text, nullptr, false);
      if (cfg.is_object()) {
        cfg["tie_word_embeddings"] = false;
        text = cfg.dump(2);
      }
    }
    RETURN_IF_ERROR(WriteStringToFile(options.output_dir + "/" + f, text));
    size += int64_t(text.size());
  }
  ASSIGN_OR_RETURN(int64_t weights_size, FileSize(options.output_dir + "/model.safetensors"));
  report.size_bytes = size + weights_size;

  // Quality report.
  progress(0.75, "evaluating");
  std::vector<std::string> prompts = options.quality_prompts;
  if (prompts.empty()) {
    prompts = {"The hangar doors opened at dawn and the small plane rolled out.",
               "Once upon a time there was a little girl named Lily",
               "Numbers like 1, 2, 3 and 42 appear in the logs at 06:30."};
  }
  std::vector<std::vector<int>> ids;
  for (const std::string& p : prompts) {
    ASSIGN_OR_RETURN(std::vector<int> t, source->tokenizer().Encode(p));
    if (t.empty()) continue;
    if (int(t.size()) > source->context_length()) t.resize(size_t(source->context_length()));
    ids.push_back(std::move(t));
  }
  ASSIGN_OR_RETURN(auto artifact, Model::Load(options.output_dir, LoadOptions{.threads = options.threads}));
  ASSIGN_OR_RETURN(std::vector<float> ref, AllLogits(*source, ids));
  ASSIGN_OR_RETURN(std::vector<float> got, AllLogits(*artifact, ids));
  double max_err = 0, sum_err = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    double e = std::fabs(double(ref[i]) - double(got[i]));
    max_err = std::max(max_err, e);
    sum_err += e;
  }
  report.max_abs_logit_error = max_err;
  report.mean_abs_logit_error = ref.empty() ? 0 : sum_err / double(ref.size());
  for (const auto& t : ids) report.tokens_compared += int(t.size());

  json manifest = {
      {"format_version", 1},
      {"recipe", {{"engine", report.engine}, {"quantization", report.quantization}}},
      {"source", {{"path", options.source_dir}, {"sha256", report.source_sha256}}},
      {"size_bytes", report.size_bytes},
      {"weights", {{"linear_dtype", recipe.linear}, {"other_dtype", recipe.other}, {"parameters", report.parameters}}},
      {"quality",
       {{"prompts", prompts},
        {"tokens_compared", report.tokens_compared},
        {"max_abs_logit_error", report.max_abs_logit_error},
        {"mean_abs_logit_error", report.mean_abs_logit_error}}},
      {"created_by", "hangar engine"},
  };
  RETURN_IF_ERROR(WriteStringToFile(options.output_dir + "/hangar_manifest.json", manifest.dump(2)));
  progress(1, "done");
  return report;
}


absl::StatusOr<QuantizeReport> QuantizeModel(const QuantizeOptions& options) {
  try {
    return QuantizeModelImpl(options);
  } catch (const std::exception& e) {
    // nlohmann::json type errors in the source's JSON files.
    return absl::InvalidArgumentError(absl::StrCat("QuantizeModel: ", e.what()));
  }
}

}  // namespace hangar::engine
