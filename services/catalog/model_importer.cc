#include "services/catalog/model_importer.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "common/util/file.h"
#include "nlohmann/json.hpp"
#include "services/catalog/memory_estimate.h"
#include "services/catalog/model_validation.h"
#include "services/catalog/preparation_manager.h"
#include "services/catalog/weights_header.h"

namespace hangar::catalog {
namespace {

namespace fs = std::filesystem;
using ::nlohmann::json;

constexpr int64_t kMaxConfigBytes = 1 << 20;
constexpr int64_t kMaxIndexBytes = 16 << 20;

const std::vector<v1::Engine>& AllEngines() {
  static const auto* const engines = new std::vector<v1::Engine>{
      v1::ENGINE_NONE, v1::ENGINE_CTRANSLATE2, v1::ENGINE_VLLM};
  return *engines;
}

// The display name a new import gets: the part after the owner.
std::string DefaultDisplayName(const std::string& name) {
  size_t slash = name.find('/');
  return slash == std::string::npos ? name : name.substr(slash + 1);
}

// Fills the architecture-derived fields of `model` and marks it READY.
void ApplyInspection(const ArchitectureSpec& spec,
                     const WeightsSummary& weights, const std::string& dtype,
                     int64_t cpu_max_parameters, v1::Model& model) {
  model.set_architecture(spec.architecture);
  model.set_family(FamilyOfArchitecture(spec.architecture));
  model.set_context_length(static_cast<int32_t>(spec.max_position_embeddings));
  model.set_default_dtype(dtype);
  model.set_parameter_count(weights.parameters > 0 ? weights.parameters
                                                   : ParameterCount(spec));
  FillComputedFields(spec, AllEngines(), &model);
  model.set_runs_on_cpu(model.parameter_count() <= cpu_max_parameters);
  model.set_state(v1::MODEL_STATE_READY);
  model.clear_failure_reason();
}

// The Hangar dtype the weights are stored in: the safetensors majority when
// it is a float type, else config.json's torch_dtype, else bfloat16.
std::string PublishedDtype(const WeightsSummary& weights,
                           const ConfigSummary& config) {
  std::string main = weights.MainDtype();
  if (IsFloatDtype(main)) return main;
  if (!config.torch_dtype.empty()) return config.torch_dtype;
  return "bfloat16";
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelImporter>> ModelImporter::Create(
    Options options) {
  RETURN_IF_ERROR(options.context.Complete("ModelImporter"));
  std::error_code error;
  if (!options.local_model_root.empty() &&
      !fs::is_directory(options.local_model_root, error)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "local_model_root: ", options.local_model_root, " is not a directory"));
  }
  if (options.cpu_max_parameters < 0) {
    return InvalidField("cpu_max_parameters", "must not be negative");
  }
  return std::unique_ptr<ModelImporter>(new ModelImporter(std::move(options)));
}

absl::StatusOr<v1::Model> ModelImporter::Import(
    const v1::ImportModelRequest& request) {
  RETURN_IF_ERROR(ValidateText("description", request.description(),
                               kMaxDescriptionLength));
  RETURN_IF_ERROR(ValidateTags(
      "tags",
      std::vector<std::string>(request.tags().begin(), request.tags().end())));
  switch (request.source_case()) {
    case v1::ImportModelRequest::kHuggingFace:
      return ImportFromHub(request);
    case v1::ImportModelRequest::kLocal:
      return ImportLocal(request);
    default:
      return absl::InvalidArgumentError(
          "source: set hugging_face (a repository) or local (a path)");
  }
}

absl::StatusOr<v1::Model> ModelImporter::ImportFromHub(
    const v1::ImportModelRequest& request) {
  const v1::HuggingFaceSource& source = request.hugging_face();
  RETURN_IF_ERROR(ValidateRepoId("hugging_face.repo", source.repo()));
  const std::string revision =
      source.revision().empty() ? "main" : source.revision();
  RETURN_IF_ERROR(ValidateRevision("hugging_face.revision", revision));
  const std::string name =
      request.name().empty() ? source.repo() : request.name();
  RETURN_IF_ERROR(ValidateModelName("name", name));
  std::string token;
  if (!source.connection().empty()) {
    RETURN_IF_ERROR(
        ValidateConnectionName("hugging_face.connection", source.connection()));
    ASSIGN_OR_RETURN(token,
                     context_.connections->OpenToken("hugging_face.connection",
                                                     source.connection()));
  }
  if (context_.models->GetModel(name).ok()) {
    return absl::AlreadyExistsError(
        absl::StrCat("name: model \"", name, "\" already exists"));
  }
  absl::StatusOr<RepoInfo> info =
      context_.hub->GetRepoInfo(source.repo(), revision, token);
  if (!info.ok()) {
    const bool revision_missing =
        absl::StartsWith(info.status().message(), "revision not found");
    return PrefixStatus(
        absl::StrCat(
            revision_missing ? "hugging_face.revision" : "hugging_face.repo",
            ": \"", source.repo(), "\" at revision \"", revision, "\""),
        info.status());
  }
  v1::Model model;
  model.set_name(name);
  model.set_display_name(DefaultDisplayName(source.repo()));
  model.set_description(request.description());
  *model.mutable_tags() = request.tags();
  model.set_source(v1::MODEL_SOURCE_HUGGING_FACE);
  model.set_state(v1::MODEL_STATE_IMPORTING);
  model.set_hf_repo(source.repo());
  model.set_revision(revision);
  model.set_resolved_revision(info->sha.empty() ? revision : info->sha);
  model.set_connection(source.connection());
  model.set_license(info->license);
  model.mutable_preparation()->set_state(v1::PREPARATION_STATE_NOT_PREPARED);
  return Start(model, std::move(token));
}

absl::StatusOr<v1::Model> ModelImporter::ImportLocal(
    const v1::ImportModelRequest& request) {
  ASSIGN_OR_RETURN(std::string path,
                   ResolvePathUnderRoot("local.path", options_.local_model_root,
                                        request.local().path()));
  const bool is_gguf =
      fs::is_regular_file(path) && absl::EndsWith(path, ".gguf");
  if (!is_gguf && !fs::is_directory(path)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "local.path: must be a model directory or a .gguf file; was ",
        QuoteForMessage(request.local().path())));
  }
  std::string name = request.name();
  if (name.empty()) {
    std::string base = fs::path(path).filename().string();
    if (is_gguf) base = base.substr(0, base.size() - 5);
    name = absl::StrCat("local/", base);
    if (!ValidateModelName("name", name).ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "name: required, because the default derived from local.path (",
          QuoteForMessage(name), ") is not a valid model name"));
    }
  }
  RETURN_IF_ERROR(ValidateModelName("name", name));
  v1::Model model;
  model.set_name(name);
  model.set_display_name(DefaultDisplayName(name));
  model.set_description(request.description());
  *model.mutable_tags() = request.tags();
  model.set_source(v1::MODEL_SOURCE_LOCAL);
  model.set_state(v1::MODEL_STATE_IMPORTING);
  model.set_local_path(path);
  model.mutable_preparation()->set_state(v1::PREPARATION_STATE_NOT_PREPARED);
  return Start(model, "");
}

absl::StatusOr<v1::Model> ModelImporter::Start(const v1::Model& model,
                                               std::string token) {
  ASSIGN_OR_RETURN(v1::Model created, context_.models->CreateModel(model));
  context_.log->Write("import_state",
                      {{"model", model.name()},
                       {"source", v1::ModelSource_Name(model.source())},
                       {"state", "IMPORTING"}});
  context_.notifier->Notify(model.name());
  if (context_.metrics != nullptr) {
    context_.metrics->RefreshModelsByState(*context_.models);
  }
  if (absl::Status submitted =
          Submit(model.name(), model.source(), std::move(token));
      !submitted.ok()) {
    Complete(model.name(), model.source(), submitted);
  }
  return created;
}

absl::Status ModelImporter::Submit(const std::string& name,
                                   v1::ModelSource source, std::string token) {
  return context_.tasks->Submit(
      [this, name, source, token = std::move(token)](const StopToken& stop) {
        Finish(name, source, token, stop);
      });
}

absl::Status ModelImporter::ResumeInterrupted() {
  ASSIGN_OR_RETURN(
      std::vector<std::string> importing,
      context_.models->ListNamesInState(v1::MODEL_STATE_IMPORTING));
  for (const std::string& name : importing) {
    absl::StatusOr<v1::Model> model = context_.models->GetModel(name);
    if (!model.ok()) continue;
    std::string token;
    if (!model->connection().empty()) {
      absl::StatusOr<std::string> opened =
          context_.connections->OpenToken("connection", model->connection());
      if (!opened.ok()) {
        Complete(name, model->source(), opened.status());
        continue;
      }
      token = *std::move(opened);
    }
    if (absl::Status submitted = Submit(name, model->source(), token);
        !submitted.ok()) {
      return submitted;
    }
  }
  return absl::OkStatus();
}

void ModelImporter::Finish(const std::string& name, v1::ModelSource source,
                           const std::string& token, const StopToken& stop) {
  absl::StatusOr<v1::Model> model = context_.models->GetModel(name);
  if (!model.ok()) return;  // Deleted meanwhile.
  absl::StatusOr<v1::Model> inspected =
      source == v1::MODEL_SOURCE_LOCAL ? InspectLocalModel(*model)
                                       : InspectHubModel(*model, token, stop);
  if (stop.stop_requested() && !inspected.ok() &&
      inspected.status().code() == absl::StatusCode::kCancelled) {
    return;  // Shutting down: resumed by the next start.
  }
  Complete(name, source, inspected);
  if (source == v1::MODEL_SOURCE_LOCAL && inspected.ok()) {
    v1::Preparation prepared;
    prepared.set_state(v1::PREPARATION_STATE_PREPARED);
    prepared.set_local_path(model->local_path());
    if (context_.models->SetPreparation(name, prepared).ok()) {
      context_.notifier->Notify(name);
    }
  }
}

void ModelImporter::Complete(const std::string& name, v1::ModelSource source,
                             const absl::StatusOr<v1::Model>& inspected) {
  absl::StatusOr<v1::Model> updated = context_.models->UpdateModel(
      name,
      [&](v1::Model& current) -> absl::Status {
        if (current.state() != v1::MODEL_STATE_IMPORTING) {
          return absl::FailedPreconditionError("no longer importing");
        }
        if (inspected.ok()) {
          v1::Model result = *inspected;
          *result.mutable_create_time() = current.create_time();
          current = std::move(result);
        } else {
          current.set_state(v1::MODEL_STATE_FAILED);
          current.set_failure_reason(inspected.status().ToString());
        }
        return absl::OkStatus();
      },
      /*user_edited=*/{});
  if (updated.ok()) {
    context_.log->Write("import_state",
                        {{"model", name},
                         {"source", v1::ModelSource_Name(source)},
                         {"state", v1::ModelState_Name(updated->state())},
                         {"reason", updated->failure_reason()}});
    if (context_.metrics != nullptr) {
      context_.metrics->ImportFinished(source,
                                       inspected.ok() ? "ok" : "failed");
      context_.metrics->RefreshModelsByState(*context_.models);
    }
  }
  context_.notifier->Notify(name);
}

absl::StatusOr<v1::Model> ModelImporter::InspectHubModel(
    const v1::Model& model, const std::string& token, const StopToken& stop) {
  const std::string& repo = model.hf_repo();
  const std::string& revision = model.resolved_revision();
  ASSIGN_OR_RETURN(RepoInfo info,
                   context_.hub->GetRepoInfo(repo, revision, token));
  ASSIGN_OR_RETURN(std::string config_text,
                   context_.hub->GetFile(repo, revision, "config.json", token,
                                         kMaxConfigBytes));
  ASSIGN_OR_RETURN(ConfigSummary config,
                   SummarizeConfigJson(config_text, "config.json"));

  std::vector<std::string> shards;
  auto has_file = [&](absl::string_view path) {
    return std::any_of(info.files.begin(), info.files.end(),
                       [&](const HubFile& f) { return f.path == path; });
  };
  if (has_file("model.safetensors.index.json")) {
    ASSIGN_OR_RETURN(
        std::string index_text,
        context_.hub->GetFile(repo, revision, "model.safetensors.index.json",
                              token, kMaxIndexBytes));
    json index = json::parse(index_text, nullptr, false);
    if (index.is_discarded() || !index.is_object() ||
        !index.contains("weight_map") || !index["weight_map"].is_object()) {
      return absl::InvalidArgumentError(
          "model.safetensors.index.json: missing \"weight_map\"");
    }
    std::set<std::string> unique;
    for (const auto& [tensor, file] : index["weight_map"].items()) {
      if (file.is_string()) unique.insert(file.get<std::string>());
    }
    shards.assign(unique.begin(), unique.end());
  } else {
    for (const HubFile& file : info.files) {
      if (IsNeededFile(file.path) &&
          absl::EndsWith(file.path, ".safetensors")) {
        shards.push_back(file.path);
      }
    }
  }
  if (shards.empty()) {
    return absl::FailedPreconditionError(
        "the repository has no *.safetensors weights (other formats are not "
        "supported)");
  }
  WeightsSummary weights;
  for (const std::string& shard : shards) {
    if (stop.stop_requested()) return absl::CancelledError("shutting down");
    ASSIGN_OR_RETURN(
        std::string first,
        context_.hub->GetRange(repo, revision, shard, token, 0, 8));
    ASSIGN_OR_RETURN(int64_t length, SafetensorsHeaderLength(first, shard));
    ASSIGN_OR_RETURN(
        std::string header,
        context_.hub->GetRange(repo, revision, shard, token, 8, length));
    ASSIGN_OR_RETURN(WeightsSummary summary,
                     SummarizeSafetensorsHeader(header, shard));
    weights.Merge(summary);
  }
  v1::Model result = model;
  if (result.license().empty()) result.set_license(info.license);
  ApplyInspection(config.spec, weights, PublishedDtype(weights, config),
                  options_.cpu_max_parameters, result);
  return result;
}

absl::StatusOr<v1::Model> ModelImporter::InspectLocalModel(
    const v1::Model& model) {
  const std::string& path = model.local_path();
  v1::Model result = model;
  if (absl::EndsWith(path, ".gguf")) {
    ASSIGN_OR_RETURN(GgufSummary gguf, ReadGgufFile(path));
    if (result.license().empty()) result.set_license(gguf.license);
    ApplyInspection(gguf.spec, gguf.weights, gguf.dtype,
                    options_.cpu_max_parameters, result);
    return result;
  }
  const std::string config_path = (fs::path(path) / "config.json").string();
  ASSIGN_OR_RETURN(std::string config_text,
                   ReadFileToString(config_path, kMaxConfigBytes));
  ASSIGN_OR_RETURN(ConfigSummary config,
                   SummarizeConfigJson(config_text, config_path));
  if (!fs::exists(fs::path(path) / "tokenizer.json")) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " has no tokenizer.json"));
  }
  WeightsSummary weights;
  int files = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(path)) {
    if (!entry.is_regular_file() ||
        !absl::EndsWith(entry.path().filename().string(), ".safetensors")) {
      continue;
    }
    ASSIGN_OR_RETURN(WeightsSummary summary,
                     ReadSafetensorsFile(entry.path().string()));
    weights.Merge(summary);
    ++files;
  }
  if (files == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " has no *.safetensors weights"));
  }
  ApplyInspection(config.spec, weights, PublishedDtype(weights, config),
                  options_.cpu_max_parameters, result);
  return result;
}

}  // namespace hangar::catalog
