#include "bench/engine/llama_cpp.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "engine/gguf.h"
#include "engine/tiny_model.h"

namespace hangar::bench {
namespace {

using engine::GgufFile;
using engine::GgufType;
using engine::GgufValue;
using engine::GgufWriter;
using json = nlohmann::json;

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

// Copies one metadata value of the types ConvertToGguf writes.
absl::Status CopyValue(const std::string& key, const GgufValue& v,
                       GgufWriter* w) {
  switch (v.type) {
    case GgufType::kString:
      w->AddString(key, v.s);
      return absl::OkStatus();
    case GgufType::kU32:
      w->AddU32(key, uint32_t(v.u));
      return absl::OkStatus();
    case GgufType::kI32:
      w->AddI32(key, int32_t(v.i));
      return absl::OkStatus();
    case GgufType::kF32:
      w->AddF32(key, float(v.f));
      return absl::OkStatus();
    case GgufType::kBool:
      w->AddBool(key, v.b);
      return absl::OkStatus();
    case GgufType::kArray:
      if (v.element_type == GgufType::kString) {
        w->AddStringArray(key, v.strings);
        return absl::OkStatus();
      }
      if (v.element_type == GgufType::kI32) {
        std::vector<int32_t> x(v.numbers.begin(), v.numbers.end());
        w->AddI32Array(key, x);
        return absl::OkStatus();
      }
      if (v.element_type == GgufType::kF32) {
        std::vector<float> x(v.numbers.begin(), v.numbers.end());
        w->AddF32Array(key, x);
        return absl::OkStatus();
      }
      break;
    default:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "metadata ", key, ": type ", uint32_t(v.type), " cannot be copied"));
}

}  // namespace

absl::StatusOr<std::vector<LlamaBenchResult>> ParseLlamaBenchJson(
    std::string_view text) {
  json doc = json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_array()) {
    return absl::InvalidArgumentError(
        "llama-bench output: not a JSON array (was it run with -o json?)");
  }
  std::vector<LlamaBenchResult> out;
  for (size_t i = 0; i < doc.size(); ++i) {
    const json& t = doc[i];
    if (!t.is_object())
      return absl::InvalidArgumentError(
          absl::StrCat("llama-bench output: test ", i, " is not an object"));
    for (const char* key : {"n_prompt", "n_gen", "n_threads", "avg_ts"}) {
      if (!t.contains(key) || !t[key].is_number()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "llama-bench output: test ", i, " has no number '", key, "'"));
      }
    }
    LlamaBenchResult r;
    r.n_prompt = t["n_prompt"].get<int>();
    r.n_gen = t["n_gen"].get<int>();
    r.n_threads = t["n_threads"].get<int>();
    r.avg_ts = t["avg_ts"].get<double>();
    if (t.contains("stddev_ts") && t["stddev_ts"].is_number())
      r.stddev_ts = t["stddev_ts"].get<double>();
    r.best_ts = r.avg_ts;
    if (t.contains("samples_ts") && t["samples_ts"].is_array()) {
      for (const json& x : t["samples_ts"]) {
        if (!x.is_number())
          return absl::InvalidArgumentError(absl::StrCat(
              "llama-bench output: test ", i, " has a non-number sample"));
        r.best_ts = std::max(r.best_ts, x.get<double>());
      }
    }
    auto str = [&](const char* key) {
      return t.contains(key) && t[key].is_string() ? t[key].get<std::string>()
                                                   : std::string();
    };
    r.model_type = str("model_type");
    r.cpu_info = str("cpu_info");
    r.backends = str("backends");
    r.build_commit = str("build_commit");
    out.push_back(std::move(r));
  }
  return out;
}

absl::StatusOr<std::vector<LlamaBenchResult>> RunLlamaBench(
    const std::string& binary, const std::string& model,
    const std::vector<std::string>& args) {
  char err_path[] = "/tmp/llama-bench-stderr-XXXXXX";
  int fd = mkstemp(err_path);
  if (fd < 0) return absl::InternalError("mkstemp failed");
  close(fd);
  std::string cmd = ShellQuote(binary) + " -m " + ShellQuote(model);
  for (const std::string& a : args) cmd += " " + ShellQuote(a);
  cmd += " -o json 2>" + ShellQuote(err_path);
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) {
    std::remove(err_path);
    return absl::InternalError(absl::StrCat("cannot run ", cmd));
  }
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int status = pclose(p);
  std::ifstream err_in(err_path);
  std::stringstream err;
  err << err_in.rdbuf();
  std::remove(err_path);
  std::string err_text = err.str();
  if (err_text.size() > 2000)
    err_text = err_text.substr(err_text.size() - 2000);
  if (status != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        cmd, ": exit status ", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
        "; stderr: ", err_text));
  }
  auto parsed = ParseLlamaBenchJson(out);
  if (!parsed.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        cmd, ": ", parsed.status().message(), "; stderr: ", err_text));
  }
  return parsed;
}

absl::Status WriteLlamaCppGguf(const std::string& hf_dir,
                               const std::string& gguf_path,
                               const std::string& type) {
  const std::string tmp = gguf_path + ".unpadded";
  RETURN_IF_ERROR(engine::ConvertToGguf(hf_dir, tmp, type));
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(auto in, GgufFile::Open(tmp));
    const engine::GgufTensor* embd = in->FindTensor("token_embd.weight");
    if (embd == nullptr || embd->dims.size() != 2)
      return absl::InvalidArgumentError(
          absl::StrCat(tmp, ": no 2-D token_embd.weight"));
    const int64_t rows = embd->dims[1];
    GgufWriter w;
    for (const auto& [key, v] : in->metadata()) {
      if (key == "tokenizer.ggml.tokens" ||
          key == "tokenizer.ggml.token_type") {
        continue;
      }
      RETURN_IF_ERROR(CopyValue(key, v, &w));
    }
    const GgufValue* tokens = in->Find("tokenizer.ggml.tokens");
    const GgufValue* types = in->Find("tokenizer.ggml.token_type");
    if (tokens == nullptr || types == nullptr ||
        tokens->strings.size() != types->numbers.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(tmp, ": no token list with token types"));
    }
    if (int64_t(tokens->strings.size()) > rows) {
      return absl::InvalidArgumentError(
          absl::StrCat(tmp, ": ", tokens->strings.size(), " tokens for ", rows,
                       " embedding rows"));
    }
    std::vector<std::string> t = tokens->strings;
    std::vector<int32_t> ty(types->numbers.begin(), types->numbers.end());
    for (int64_t i = int64_t(t.size()); i < rows; ++i) {
      t.push_back(absl::StrCat("[PAD", i, "]"));
      ty.push_back(5);  // UNUSED
    }
    w.AddStringArray("tokenizer.ggml.tokens", t);
    w.AddI32Array("tokenizer.ggml.token_type", ty);
    for (const auto& [name, tensor] : in->tensors()) {
      w.AddTensor(name, tensor.type, tensor.dims,
                  std::string(reinterpret_cast<const char*>(tensor.data),
                              size_t(tensor.nbytes)));
    }
    return w.Write(gguf_path);
  }();
  std::remove(tmp.c_str());
  return status;
}

}  // namespace hangar::bench
