#include "engine/quantize.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
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

absl::StatusOr<Recipe> ResolveRecipe(const std::string& engine_in,
                                     const std::string& q) {
  std::string engine = absl::AsciiStrToUpper(engine_in);
  static const std::map<std::string, Recipe> kCt2 = {
      {"int8", {"I8", "F32"}},         {"int8_float32", {"I8", "F32"}},
      {"int8_float16", {"I8", "F16"}}, {"int8_bfloat16", {"I8", "BF16"}},
      {"int16", {"I16", "F32"}},       {"float16", {"F16", "F16"}},
      {"bfloat16", {"BF16", "BF16"}},  {"float32", {"F32", "F32"}}};
  static const std::map<std::string, Recipe> kVllm = {
      {"float16", {"F16", "F16"}},
      {"bfloat16", {"BF16", "BF16"}},
      {"float32", {"F32", "F32"}},
      {"fp8", {"F8_E4M3", "BF16"}}};
  const std::map<std::string, Recipe>* table = nullptr;
  if (engine == "CTRANSLATE2") table = &kCt2;
  if (engine == "VLLM") table = &kVllm;
  if (table == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine: must be CTRANSLATE2 or VLLM; was '", engine_in, "'"));
  }
  auto it = table->find(q);
  if (it == table->end()) {
    std::vector<std::string> names;
    for (const auto& [k, v] : *table) names.push_back(k);
    return absl::InvalidArgumentError(absl::StrCat(
        "quantization: must be one of ", absl::StrJoin(names, ", "), " for ",
        engine, "; was '", q, "'"));
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
std::pair<std::string, std::vector<float>> QuantizeRows(
    const float* v, int64_t rows, int64_t cols, const std::string& dtype) {
  std::string out;
  std::vector<float> scales(static_cast<size_t>(rows));
  const int esize = dtype == "I16" ? 2 : 1;
  out.resize(size_t(rows * cols * esize));
  const float qmax = dtype == "I8"    ? 127.0f
                     : dtype == "I16" ? 32767.0f
                                      : 448.0f;
  enum {
    kI8,
    kI16,
    kFp8
  } kind = dtype == "I8"    ? kI8
           : dtype == "I16" ? kI16
                            : kFp8;
  // Round to nearest, ties to even (as nearbyint in the default mode), for
  // |x| < 2^22: adding and subtracting 1.5 * 2^23 drops the fraction. Plain
  // float arithmetic, so the loops vectorize.
  constexpr float kRound = 12582912.0f;
  std::vector<float> q(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = v + r * cols;
    float amax = 0;
    for (int64_t k = 0; k < cols; ++k) {
      float a = std::fabs(row[k]);
      amax = a > amax ? a : amax;
    }
    float scale = amax / qmax;
    scales[size_t(r)] = scale;
    float inv = scale > 0 ? 1.0f / scale : 0.0f;
    if (kind == kFp8) {
      for (int64_t k = 0; k < cols; ++k)
        out[size_t(r * cols + k)] = char(F32ToFp8E4M3(row[k] * inv));
      continue;
    }
    for (int64_t k = 0; k < cols; ++k) {
      float x = row[k] * inv;
      x = x < -qmax ? -qmax : (x > qmax ? qmax : x);
      q[size_t(k)] = (x + kRound) - kRound;
    }
    if (kind == kI8) {
      int8_t* o = reinterpret_cast<int8_t*>(&out[size_t(r * cols)]);
      for (int64_t k = 0; k < cols; ++k) o[k] = int8_t(q[size_t(k)]);
    } else {
      for (int64_t k = 0; k < cols; ++k) {
        int16_t h = int16_t(q[size_t(k)]);
        std::memcpy(&out[size_t(2 * (r * cols + k))], &h, 2);
      }
    }
  }
  return {std::move(out), std::move(scales)};
}

// dtype encoding of n floats (F32, F16 or BF16).
std::string EncodeFloats(const float* v, int64_t n, const std::string& dtype) {
  std::string out;
  if (dtype == "F32") {
    out.assign(reinterpret_cast<const char*>(v), size_t(n) * 4);
    return out;
  }
  out.resize(size_t(n) * 2);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h = dtype == "F16" ? F32ToF16(v[i]) : F32ToBf16(v[i]);
    std::memcpy(&out[size_t(2 * i)], &h, 2);
  }
  return out;
}

// Drops the source pages of a converted tensor from this process's
// resident set (the page cache keeps them), so resident memory follows the
// tensor being converted, not the model.
void ReleasePages(const uint8_t* data, int64_t nbytes) {
  static const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  uintptr_t begin =
      (reinterpret_cast<uintptr_t>(data) + page - 1) & ~(page - 1);
  uintptr_t end =
      (reinterpret_cast<uintptr_t>(data) + uintptr_t(nbytes)) & ~(page - 1);
  if (end > begin)
    ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

bool QuantizedDType(const std::string& d) {
  return d == "I8" || d == "I16" || d == "F8_E4M3";
}

bool IsLinear(const std::string& name, const SafetensorsTensor& t) {
  if (t.shape.size() != 2) return false;
  if (name == "lm_head.weight") return true;
  return name.size() > 12 &&
         name.compare(name.size() - 12, 12, "_proj.weight") == 0;
}

// Logits of every position of every prompt.
absl::StatusOr<std::vector<float>> AllLogits(
    const Model& model, const std::vector<std::vector<int>>& prompts) {
  std::vector<float> all;
  for (const auto& ids : prompts) {
    ASSIGN_OR_RETURN(auto state,
                     model.NewState(1, int(ids.size()), int(ids.size())));
    std::vector<ForwardRow> rows;
    for (size_t i = 0; i < ids.size(); ++i)
      rows.push_back(ForwardRow{0, int(i), ids[i], true});
    std::vector<float> logits(ids.size() * size_t(model.vocab_size()));
    RETURN_IF_ERROR(model.Forward(rows, state.get(), logits.data()));
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

// One tensor of the artifact, in writing order.
struct PlannedTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  int64_t nbytes = 0;
};

int64_t Elements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// The source weight files, in a fixed order.
absl::StatusOr<std::vector<std::string>> SourceWeightFiles(
    const std::string& dir) {
  std::vector<std::string> weight_files;
  if (FileExists(dir + "/model.safetensors")) {
    weight_files.push_back(dir + "/model.safetensors");
    return weight_files;
  }
  ASSIGN_OR_RETURN(std::string index_text,
                   ReadFileToString(dir + "/model.safetensors.index.json"));
  json index = json::parse(index_text, nullptr, false);
  if (!index.is_object() || !index.contains("weight_map") ||
      !index["weight_map"].is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir,
                     "/model.safetensors.index.json: must be a JSON object "
                     "with a weight_map"));
  }
  std::set<std::string> files;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end();
       ++it)
    files.insert(it.value().get<std::string>());
  for (const std::string& f : files) weight_files.push_back(dir + "/" + f);
  return weight_files;
}

// Every artifact tensor (with scales and the untied lm_head) from the
// source headers, in the order they are written.
absl::StatusOr<std::vector<PlannedTensor>> PlanTensors(
    const std::vector<std::unique_ptr<SafetensorsFile>>& files,
    const Recipe& recipe, bool tied) {
  std::vector<PlannedTensor> plan;
  auto add = [&](const std::string& name, const std::string& dtype,
                 std::vector<int64_t> shape) {
    int64_t n = Elements(shape) * SafetensorsFile::DTypeSize(dtype);
    plan.push_back({name, dtype, std::move(shape), n});
  };
  for (const auto& file : files) {
    for (const auto& [name, t] : file->tensors()) {
      if (t.dtype != "F32" && t.dtype != "F16" && t.dtype != "BF16") {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", name, "' has dtype ", t.dtype,
                         "; only F32, F16 and BF16 sources can be quantized"));
      }
      const std::string& dtype =
          IsLinear(name, t) ? recipe.linear : recipe.other;
      add(name, dtype, t.shape);
      if (QuantizedDType(dtype)) add(name + "_scale", "F32", {t.shape[0]});
      if (name == "model.embed_tokens.weight" && tied &&
          QuantizedDType(recipe.linear)) {
        add("lm_head.weight", recipe.linear, t.shape);
        add("lm_head.weight_scale", "F32", {t.shape[0]});
      }
    }
  }
  return plan;
}

// The safetensors header for `plan` (offsets in plan order), padded to 8.
std::string SafetensorsHeader(
    const std::vector<PlannedTensor>& plan,
    const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const PlannedTensor& t : plan) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + uint64_t(t.nbytes)}}};
    offset += uint64_t(t.nbytes);
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[size_t(i)] = char((uint64_t(h.size()) >> (8 * i)) & 0xff);
  return out + h;
}

// Writes the header, then each tensor's bytes in plan order.
class StreamingSafetensorsWriter {
 public:
  absl::Status Open(const std::string& path,
                    const std::vector<PlannedTensor>& plan,
                    const std::map<std::string, std::string>& metadata) {
    path_ = path;
    plan_ = &plan;
    out_.open(path, std::ios::binary | std::ios::trunc);
    if (!out_)
      return absl::InternalError(absl::StrCat(path, ": cannot create"));
    std::string header = SafetensorsHeader(plan, metadata);
    out_.write(header.data(), std::streamsize(header.size()));
    bytes_written_ = int64_t(header.size());
    return Check();
  }
  absl::Status Append(const std::string& name, const std::string& bytes) {
    return Append(name, bytes.data(), bytes.size());
  }
  absl::Status Append(const std::string& name, const void* data, size_t size) {
    if (next_ >= plan_->size() || (*plan_)[next_].name != name ||
        (*plan_)[next_].nbytes != int64_t(size)) {
      return absl::InternalError(
          absl::StrCat("tensor '", name, "' written out of plan order"));
    }
    ++next_;
    out_.write(static_cast<const char*>(data), std::streamsize(size));
    bytes_written_ += int64_t(size);
    return Check();
  }
  absl::Status Close() {
    if (next_ != plan_->size())
      return absl::InternalError(
          absl::StrCat(path_, ": closed before every tensor"));
    out_.flush();
    RETURN_IF_ERROR(Check());
    out_.close();
    return Check();
  }
  int64_t bytes_written() const { return bytes_written_; }

 private:
  absl::Status Check() {
    if (!out_)
      return absl::ResourceExhaustedError(
          absl::StrCat(path_, ": write failed (disk full?)"));
    return absl::OkStatus();
  }
  std::string path_;
  const std::vector<PlannedTensor>* plan_ = nullptr;
  std::ofstream out_;
  size_t next_ = 0;
  int64_t bytes_written_ = 0;
};

int Argmax(const float* v, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return best;
}

// KL(p || q) of softmax(a) and softmax(b), nats.
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

// The source's greedy continuation of `prompt` (n tokens, one Forward each).
absl::StatusOr<std::vector<int>> GreedyTokens(const Model& model,
                                              const std::vector<int>& prompt,
                                              int n) {
  ASSIGN_OR_RETURN(auto state, model.NewState(1, int(prompt.size()) + n,
                                              int(prompt.size())));
  std::vector<float> logits(size_t(model.vocab_size()));
  std::vector<ForwardRow> rows;
  for (size_t i = 0; i < prompt.size(); ++i)
    rows.push_back(ForwardRow{0, int(i), prompt[i], i + 1 == prompt.size()});
  std::vector<int> out;
  for (int k = 0; k < n; ++k) {
    RETURN_IF_ERROR(model.Forward(rows, state.get(), logits.data()));
    out.push_back(Argmax(logits.data(), model.vocab_size()));
    rows = {ForwardRow{0, int(prompt.size()) + k, out.back(), true}};
  }
  return out;
}

// How many of `expected` (the source's greedy continuation) the model's
// argmax matches when fed prompt + expected (teacher forcing).
absl::StatusOr<int> GreedyMatches(const Model& model,
                                  const std::vector<int>& prompt,
                                  const std::vector<int>& expected) {
  std::vector<int> seq = prompt;
  seq.insert(seq.end(), expected.begin(), expected.end() - 1);
  ASSIGN_OR_RETURN(auto state,
                   model.NewState(1, int(seq.size()), int(seq.size())));
  std::vector<ForwardRow> rows;
  for (size_t i = 0; i < seq.size(); ++i)
    rows.push_back(ForwardRow{0, int(i), seq[i], i + 1 >= prompt.size()});
  const int v = model.vocab_size();
  std::vector<float> logits(expected.size() * size_t(v));
  RETURN_IF_ERROR(model.Forward(rows, state.get(), logits.data()));
  int matches = 0;
  for (size_t k = 0; k < expected.size(); ++k)
    matches += Argmax(logits.data() + k * size_t(v), v) == expected[k];
  return matches;
}

absl::Status CheckFreeSpace(const std::string& dir, int64_t need,
                            int64_t margin) {
  struct statvfs vfs;
  if (::statvfs(dir.c_str(), &vfs) != 0) {
    return absl::InternalError(
        absl::StrCat(dir, ": statvfs failed: ", std::strerror(errno)));
  }
  int64_t free_bytes = int64_t(vfs.f_bavail) * int64_t(vfs.f_frsize);
  if (free_bytes < need + margin) {
    return absl::ResourceExhaustedError(
        absl::StrCat("not enough free disk space on ", dir, ": need ",
                     need + margin, " bytes (artifact ", need, " + margin ",
                     margin, "), have ", free_bytes));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int64_t> EstimateArtifactWeightBytes(
    const std::string& source_dir, const std::string& engine,
    const std::string& quantization) {
  ASSIGN_OR_RETURN(Recipe recipe, ResolveRecipe(engine, quantization));
  ASSIGN_OR_RETURN(std::vector<std::string> weight_files,
                   SourceWeightFiles(source_dir));
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  for (const std::string& f : weight_files) {
    ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(f));
    files.push_back(std::move(file));
  }
  bool tied = false;
  if (auto cfg = ReadFileToString(source_dir + "/config.json"); cfg.ok()) {
    json c = json::parse(*cfg, nullptr, false);
    tied = c.is_object() && c.contains("tie_word_embeddings") &&
           c["tie_word_embeddings"].is_boolean() &&
           c["tie_word_embeddings"].get<bool>();
  }
  ASSIGN_OR_RETURN(std::vector<PlannedTensor> plan,
                   PlanTensors(files, recipe, tied));
  int64_t total = int64_t(
      SafetensorsHeader(
          plan, {{"format", "pt"},
                 {"hangar_recipe", absl::StrCat(absl::AsciiStrToUpper(engine),
                                                ":", quantization)}})
          .size());
  for (const auto& t : plan) total += t.nbytes;
  return total;
}

absl::Status ValidateRecipe(const std::string& engine,
                            const std::string& quantization) {
  return ResolveRecipe(engine, quantization).status();
}

absl::StatusOr<QuantizeReport> QuantizeModelImpl(
    const QuantizeOptions& options) {
  ASSIGN_OR_RETURN(Recipe recipe,
                   ResolveRecipe(options.engine, options.quantization));
  if (options.output_dir.empty())
    return absl::InvalidArgumentError("output_dir: must not be empty");
  auto progress = [&](double f, const std::string& stage) {
    if (options.progress) options.progress(f, stage);
  };
  progress(0, "loading");
  // Loading the source validates it (and gives the reference logits).
  ASSIGN_OR_RETURN(
      auto source,
      Model::Load(options.source_dir, LoadOptions{.threads = options.threads}));
  if (source->info().format != "huggingface") {
    return absl::InvalidArgumentError(
        "source_dir: must be a Hugging Face model directory, not a GGUF file");
  }
  ASSIGN_OR_RETURN(std::vector<std::string> weight_files,
                   SourceWeightFiles(options.source_dir));
  QuantizeReport report;
  report.output_dir = options.output_dir;
  report.engine = absl::AsciiStrToUpper(options.engine);
  report.quantization = options.quantization;
  ASSIGN_OR_RETURN(report.source_sha256, Sha256OfFiles(weight_files));
  for (const std::string& f : weight_files) {
    ASSIGN_OR_RETURN(int64_t n, FileSize(f));
    report.source_weight_bytes += n;
  }
  QuantizeProgress counts;
  auto tensor_progress = [&](const std::string& stage) {
    counts.stage = stage;
    if (options.tensor_progress) options.tensor_progress(counts);
  };
  tensor_progress("planning");

  // Plan every output tensor from the source headers.
  const bool tied = source->config().tie_word_embeddings;
  const bool untied = tied && QuantizedDType(recipe.linear);
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  int64_t total = 0, done = 0;
  for (const std::string& f : weight_files) {
    ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(f));
    for (const auto& [name, t] : file->tensors()) total += t.elements();
    files.push_back(std::move(file));
  }
  ASSIGN_OR_RETURN(std::vector<PlannedTensor> plan,
                   PlanTensors(files, recipe, tied));
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"hangar_recipe", absl::StrCat(report.engine, ":", report.quantization)}};
  counts.tensors_total = int(plan.size());
  counts.bytes_total = int64_t(SafetensorsHeader(plan, metadata).size());
  for (const auto& t : plan) counts.bytes_total += t.nbytes;

  if (!IsDirectory(options.output_dir)) {
    for (size_t p = options.output_dir.find('/', 1); p != std::string::npos;
         p = options.output_dir.find('/', p + 1)) {
      std::string parent = options.output_dir.substr(0, p);
      if (!IsDirectory(parent)) ::mkdir(parent.c_str(), 0755);
    }
    if (::mkdir(options.output_dir.c_str(), 0755) != 0 &&
        !IsDirectory(options.output_dir)) {
      return absl::InternalError(
          absl::StrCat(options.output_dir, ": cannot create directory"));
    }
  }
  RETURN_IF_ERROR(CheckFreeSpace(options.output_dir, counts.bytes_total,
                                 options.disk_margin_bytes));

  // Convert tensor by tensor, appending each to the open file.
  StreamingSafetensorsWriter writer;
  RETURN_IF_ERROR(
      writer.Open(options.output_dir + "/model.safetensors", plan, metadata));
  auto wrote = [&](const std::string& name) {
    ++counts.tensors_done;
    counts.bytes_written = writer.bytes_written();
    counts.tensor = name;
    tensor_progress("converting");
  };
  for (const auto& file : files) {
    for (const auto& [name, t] : file->tensors()) {
      if (options.cancel != nullptr && options.cancel->load()) {
        return absl::CancelledError(
            absl::StrCat("conversion cancelled after ", counts.tensors_done,
                         " of ", counts.tensors_total, " tensors"));
      }
      report.parameters += t.elements();
      const std::string& dtype =
          IsLinear(name, t) ? recipe.linear : recipe.other;
      const bool quantize_lm_head =
          name == "model.embed_tokens.weight" && untied;
      if (!QuantizedDType(dtype) && dtype == t.dtype && !quantize_lm_head) {
        // Same storage type: the bytes as they are, straight from the map.
        RETURN_IF_ERROR(writer.Append(name, t.data, size_t(t.nbytes)));
        wrote(name);
      } else {
        // Float32 sources are read in place when aligned; others are
        // widened once.
        std::vector<float> widened;
        const float* v = reinterpret_cast<const float*>(t.data);
        if (t.dtype != "F32" ||
            reinterpret_cast<uintptr_t>(t.data) % alignof(float) != 0) {
          widened = ToFloats(t);
          v = widened.data();
        }
        if (QuantizedDType(dtype)) {
          auto [bytes, scales] = QuantizeRows(v, t.shape[0], t.shape[1], dtype);
          RETURN_IF_ERROR(writer.Append(name, bytes));
          wrote(name);
          RETURN_IF_ERROR(
              writer.Append(name + "_scale", EncodeFloats(scales, "F32")));
          wrote(name + "_scale");
        } else if (dtype == t.dtype) {
          RETURN_IF_ERROR(writer.Append(name, t.data, size_t(t.nbytes)));
          wrote(name);
        } else {
          RETURN_IF_ERROR(
              writer.Append(name, EncodeFloats(v, t.elements(), dtype)));
          wrote(name);
        }
        if (quantize_lm_head) {
          // The tied output projection is a linear layer too: store it
          // quantized as an untied lm_head (the embedding lookup keeps the
          // unquantized table).
          auto [bytes, scales] =
              QuantizeRows(v, t.shape[0], t.shape[1], recipe.linear);
          RETURN_IF_ERROR(writer.Append("lm_head.weight", bytes));
          wrote("lm_head.weight");
          RETURN_IF_ERROR(writer.Append("lm_head.weight_scale",
                                        EncodeFloats(scales, "F32")));
          wrote("lm_head.weight_scale");
        }
      }
      ReleasePages(t.data, t.nbytes);
      done += t.elements();
      progress(0.1 + 0.6 * double(done) / double(std::max<int64_t>(total, 1)),
               "quantizing");
    }
  }
  RETURN_IF_ERROR(writer.Close());
  files.clear();
  int64_t size = 0;
  for (const char* f : {"config.json", "tokenizer.json",
                        "tokenizer_config.json", "generation_config.json"}) {
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
  ASSIGN_OR_RETURN(report.weight_bytes,
                   FileSize(options.output_dir + "/model.safetensors"));
  report.size_bytes = size + report.weight_bytes;
  report.size_ratio =
      report.source_weight_bytes > 0
          ? double(report.weight_bytes) / double(report.source_weight_bytes)
          : 0;

  // Quality report.
  progress(0.75, "evaluating");
  tensor_progress("evaluating");
  std::vector<std::string> prompts = options.quality_prompts;
  if (prompts.empty()) {
    prompts = {
        "The hangar doors opened at dawn and the small plane rolled out.",
        "Once upon a time there was a little girl named Lily",
        "Numbers like 1, 2, 3 and 42 appear in the logs at 06:30."};
  }
  const int greedy = std::max(0, options.greedy_tokens);
  std::vector<std::vector<int>> ids;
  for (const std::string& p : prompts) {
    ASSIGN_OR_RETURN(std::vector<int> t, source->tokenizer().Encode(p));
    if (t.empty()) continue;
    int room = std::max(1, source->context_length() - greedy);
    if (int(t.size()) > room) t.resize(size_t(room));
    ids.push_back(std::move(t));
  }
  report.prompts = int(ids.size());
  ASSIGN_OR_RETURN(
      auto artifact,
      Model::Load(options.output_dir, LoadOptions{.threads = options.threads}));
  ASSIGN_OR_RETURN(std::vector<float> ref, AllLogits(*source, ids));
  ASSIGN_OR_RETURN(std::vector<float> got, AllLogits(*artifact, ids));
  double max_err = 0, sum_err = 0, sum_kl = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    double e = std::fabs(double(ref[i]) - double(got[i]));
    max_err = std::max(max_err, e);
    sum_err += e;
  }
  const int vocab = source->vocab_size();
  const size_t positions = ref.size() / size_t(std::max(vocab, 1));
  for (size_t p = 0; p < positions; ++p) {
    sum_kl += KlOfLogits(ref.data() + p * size_t(vocab),
                         got.data() + p * size_t(vocab), vocab);
  }
  report.max_abs_logit_error = max_err;
  report.mean_abs_logit_error = ref.empty() ? 0 : sum_err / double(ref.size());
  report.mean_kl = positions == 0 ? 0 : sum_kl / double(positions);
  for (const auto& t : ids) report.tokens_compared += int(t.size());
  if (greedy > 0 && source->context_length() > greedy) {
    int matches = 0;
    for (const auto& t : ids) {
      ASSIGN_OR_RETURN(std::vector<int> expected,
                       GreedyTokens(*source, t, greedy));
      ASSIGN_OR_RETURN(int m, GreedyMatches(*artifact, t, expected));
      matches += m;
      report.greedy_tokens_compared += greedy;
    }
    report.greedy_agreement =
        report.greedy_tokens_compared == 0
            ? 1
            : double(matches) / double(report.greedy_tokens_compared);
  }

  json manifest = {
      {"format_version", 1},
      {"recipe",
       {{"engine", report.engine}, {"quantization", report.quantization}}},
      {"source",
       {{"path", options.source_dir}, {"sha256", report.source_sha256}}},
      {"size_bytes", report.size_bytes},
      {"weights",
       {{"linear_dtype", recipe.linear},
        {"other_dtype", recipe.other},
        {"parameters", report.parameters}}},
      {"quality",
       {{"prompts", prompts},
        {"tokens_compared", report.tokens_compared},
        {"max_abs_logit_error", report.max_abs_logit_error},
        {"mean_abs_logit_error", report.mean_abs_logit_error},
        {"mean_kl", report.mean_kl},
        {"greedy_agreement", report.greedy_agreement},
        {"greedy_tokens", report.greedy_tokens_compared},
        {"size_ratio", report.size_ratio}}},
      {"created_by", "hangar engine"},
  };
  RETURN_IF_ERROR(WriteStringToFile(
      options.output_dir + "/hangar_manifest.json", manifest.dump(2)));
  progress(1, "done");
  tensor_progress("done");
  return report;
}

absl::StatusOr<QuantizeReport> QuantizeModel(const QuantizeOptions& options) {
  try {
    return QuantizeModelImpl(options);
  } catch (const std::exception& e) {
    // nlohmann::json type errors in the source's JSON files.
    return absl::InvalidArgumentError(
        absl::StrCat("QuantizeModel: ", e.what()));
  }
}

}  // namespace hangar::engine
