#include "services/optimizer/conversion.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/util/file.h"
#include "services/optimizer/converter.h"

namespace hangar::optimizer {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

int ExitCodeFor(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
      return kExitBadInput;
    case absl::StatusCode::kResourceExhausted:
      return kExitNoSpace;
    case absl::StatusCode::kCancelled:
      return kExitCancelled;
    default:
      return kExitInternal;
  }
}

void RemoveTree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
}

// Removes ".<name>.tmp-*" beside `output` (left by a killed run).
void SweepTemporaries(const std::string& parent, const std::string& name) {
  std::error_code ec;
  const std::string prefix = "." + name + ".tmp-";
  for (const auto& entry : fs::directory_iterator(parent, ec)) {
    if (absl::StartsWith(entry.path().filename().string(), prefix))
      RemoveTree(entry.path().string());
  }
}

json ReportJson(const QualityFigures& q) {
  return {{"event", "report"},
          {"passed", q.passed},
          {"artifact", q.artifact},
          {"source_sha256", q.source_sha256},
          {"recipe", q.recipe},
          {"size_bytes", q.size_bytes},
          {"prompts", q.prompts},
          {"positions", q.positions},
          {"max_abs_logit_error", q.max_abs_logit_error},
          {"max_abs_logit_error_bound", q.max_abs_logit_error_bound},
          {"mean_abs_logit_error", q.mean_abs_logit_error},
          {"mean_kl", q.mean_kl},
          {"greedy_agreement", q.greedy_agreement},
          {"greedy_tokens", q.greedy_tokens},
          {"size_ratio", q.size_ratio},
          {"source_format", q.source_format},
          {"notes", q.notes}};
}

}  // namespace

int RunConversion(const ConversionOptions& options,
                  const std::function<void(const std::string&)>& emit) {
  auto fail = [&](int code, const std::string& message) {
    emit(json{{"event", "error"}, {"exit_code", code}, {"message", message}}
             .dump());
    return code;
  };
  if (auto s = ParseRecipe(options.recipe.ToString()).status(); !s.ok()) {
    return fail(kExitBadInput, std::string(s.message()));
  }
  if (options.output.empty() || options.output == "/")
    return fail(kExitBadInput, "--out: must name a directory");
  const fs::path out = fs::path(options.output).lexically_normal();
  const std::string name = out.filename().string();
  const std::string parent =
      out.parent_path().empty() ? "." : out.parent_path().string();
  std::error_code ec;
  if (fs::exists(out, ec)) {
    return fail(kExitBadInput,
                absl::StrCat("--out: ", out.string(), " already exists"));
  }
  struct stat st;
  if (::stat(options.source.c_str(), &st) != 0) {
    return fail(kExitBadInput,
                absl::StrCat("--source: ", options.source, " does not exist"));
  }
  fs::create_directories(parent, ec);
  if (ec)
    return fail(kExitInternal,
                absl::StrCat(parent, ": cannot create: ", ec.message()));
  SweepTemporaries(parent, name);
  ::unlink((out.string() + ".report.json").c_str());
  const std::string tmp = absl::StrCat(parent, "/.", name, ".tmp-", ::getpid());

  ConvertOptions q;
  q.source = options.source;
  q.output_dir = tmp;
  q.recipe = options.recipe;
  q.threads = options.threads;
  q.disk_margin_bytes = options.disk_margin_bytes;
  q.cancel = options.cancel;
  q.progress = [&](const ConvertProgress& p) {
    json line = {{"event", "progress"},
                 {"phase", p.stage},
                 {"tensors_done", p.tensors_done},
                 {"tensors_total", p.tensors_total},
                 {"bytes_written", p.bytes_written},
                 {"bytes_total", p.bytes_total}};
    if (!p.tensor.empty()) line["message"] = "converting " + p.tensor;
    emit(line.dump());
  };
  absl::StatusOr<ConvertReport> r = ConvertModel(q);
  if (r.ok() && options.cancel != nullptr && options.cancel->load()) {
    r = absl::CancelledError("conversion cancelled during evaluation");
  }
  if (!r.ok()) {
    RemoveTree(tmp);
    return fail(ExitCodeFor(r.status()), std::string(r.status().message()));
  }
  QualityFigures f;
  f.prompts = r->prompts;
  f.positions = r->positions;
  f.max_abs_logit_error = r->max_abs_logit_error;
  f.max_abs_logit_error_bound =
      options.max_logit_error.value_or(MaxLogitErrorBound(options.recipe));
  f.mean_abs_logit_error = r->mean_abs_logit_error;
  f.mean_kl = r->mean_kl;
  f.greedy_agreement = r->greedy_agreement;
  f.greedy_tokens = r->greedy_tokens;
  f.source_format = r->source_format;
  f.notes = r->notes;
  f.size_ratio = r->size_ratio;
  f.size_bytes = r->size_bytes;
  f.source_sha256 = r->source_sha256;
  f.recipe = options.recipe.ToString();
  f.passed = f.max_abs_logit_error <= f.max_abs_logit_error_bound;
  if (!f.passed) {
    RemoveTree(tmp);
    json report = ReportJson(f);
    (void)WriteStringToFile(out.string() + ".report.json", report.dump(2));
    emit(report.dump());
    return kExitQualityGate;
  }
  if (::rename(tmp.c_str(), out.c_str()) != 0) {
    int err = errno;
    RemoveTree(tmp);
    return fail(kExitInternal,
                absl::StrCat("rename ", tmp, " -> ", out.string(), ": ",
                             std::strerror(err)));
  }
  f.artifact = out.string();
  emit(ReportJson(f).dump());
  return kExitOk;
}

ParsedOutput ParseConversionOutput(const std::string& text) {
  ParsedOutput out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line.front() != '{') continue;
    json j = json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("event") || !j["event"].is_string())
      continue;
    try {
      const std::string event = j["event"].get<std::string>();
      if (event == "progress") {
        ProgressLine p;
        p.phase = j.value("phase", "");
        p.tensors_done = j.value("tensors_done", 0);
        p.tensors_total = j.value("tensors_total", 0);
        p.bytes_written = j.value("bytes_written", int64_t{0});
        p.bytes_total = j.value("bytes_total", int64_t{0});
        p.message = j.value("message", "");
        out.progress = p;
      } else if (event == "report") {
        QualityFigures q;
        q.passed = j.value("passed", false);
        q.prompts = j.value("prompts", 0);
        q.positions = j.value("positions", 0);
        q.max_abs_logit_error = j.value("max_abs_logit_error", 0.0);
        q.max_abs_logit_error_bound = j.value("max_abs_logit_error_bound", 0.0);
        q.mean_abs_logit_error = j.value("mean_abs_logit_error", 0.0);
        q.mean_kl = j.value("mean_kl", 0.0);
        q.greedy_agreement = j.value("greedy_agreement", 0.0);
        q.greedy_tokens = j.value("greedy_tokens", 0);
        q.size_ratio = j.value("size_ratio", 0.0);
        q.size_bytes = j.value("size_bytes", int64_t{0});
        q.artifact = j.value("artifact", "");
        q.source_sha256 = j.value("source_sha256", "");
        q.recipe = j.value("recipe", "");
        q.source_format = j.value("source_format", "");
        if (j.contains("notes") && j["notes"].is_array()) {
          for (const json& n : j["notes"])
            if (n.is_string()) q.notes.push_back(n.get<std::string>());
        }
        out.report = q;
      } else if (event == "error") {
        out.error = j.value("message", "");
      }
    } catch (const json::exception&) {
      // A line of the wrong shape is someone else's output: skip it.
    }
  }
  return out;
}

}  // namespace hangar::optimizer
