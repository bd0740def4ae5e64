#include "services/catalog/catalog.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/auth/crypto.h"
#include "common/status/status_macros.h"
#include "nlohmann/json.hpp"
#include "services/catalog/memory_estimate.h"
#include "services/catalog/model_validation.h"
#include "services/catalog/weights_header.h"

namespace hangar::catalog {
namespace {

namespace fs = std::filesystem;
using ::nlohmann::json;

constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 1000;
// Written into a prepared directory once every file is verified.
constexpr char kPreparedMarker[] = ".hangar-prepared";

const std::vector<v1::Engine>& AllEngines() {
  static const auto* const engines = new std::vector<v1::Engine>{
      v1::ENGINE_NONE, v1::ENGINE_CTRANSLATE2, v1::ENGINE_VLLM};
  return *engines;
}

absl::Status WithPrefix(absl::string_view prefix, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

// Files of a repository that a replica needs: configs, tokenizer, and the
// safetensors weights (top level only; other formats are not fetched).
bool IsNeededFile(const std::string& path) {
  // Plain top-level names only: they become paths in the model store.
  if (path.empty() || path.size() > 255 || path[0] == '.') return false;
  for (char c : path) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != '-') {
      return false;
    }
  }
  static const std::set<std::string> kExact = {"config.json",
                                               "generation_config.json",
                                               "tokenizer.json",
                                               "tokenizer_config.json",
                                               "special_tokens_map.json",
                                               "tokenizer.model",
                                               "model.safetensors.index.json"};
  return kExact.count(path) > 0 || absl::EndsWith(path, ".safetensors");
}

std::string PageToken(absl::string_view fingerprint, absl::string_view after) {
  return absl::WebSafeBase64Escape(
      absl::StrCat("v1\n", fingerprint, "\n", after));
}

// Returns the name to continue after, or INVALID_ARGUMENT.
absl::StatusOr<std::string> ParsePageToken(absl::string_view token,
                                           absl::string_view fingerprint) {
  if (token.empty()) return std::string();
  std::string text;
  const absl::Status invalid = absl::InvalidArgumentError(
      "page_token: not a token this call returned with the same filters");
  if (!absl::WebSafeBase64Unescape(token, &text)) return invalid;
  std::vector<std::string> parts =
      absl::StrSplit(text, absl::MaxSplits('\n', 2));
  if (parts.size() != 3 || parts[0] != "v1" || parts[1] != fingerprint) {
    return invalid;
  }
  return parts[2];
}

std::string FilterFingerprint(const v1::ListModelsRequest& request) {
  return auth::Sha256Hex(absl::StrCat(request.source(), "\x1f",
                                      request.family(), "\x1f", request.tag(),
                                      "\x1f", request.query(), "\x1f",
                                      request.supports_engine(), "\x1f",
                                      request.fits_gpu_memory_bytes(), "\x1f",
                                      request.runs_on_cpu()))
      .substr(0, 16);
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          int64_t max_bytes) {
  std::error_code error;
  auto size = fs::file_size(path, error);
  if (error) return absl::NotFoundError(absl::StrCat(path, " is missing"));
  if (static_cast<int64_t>(size) > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is larger than ", max_bytes, " bytes"));
  }
  std::ifstream file(path, std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
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
                           absl::string_view config_text) {
  std::string main = weights.MainDtype();
  if (IsFloatDtype(main)) return main;
  json config =
      json::parse(config_text.begin(), config_text.end(), nullptr, false);
  if (config.is_object() && config.contains("torch_dtype") &&
      config["torch_dtype"].is_string() &&
      IsFloatDtype(config["torch_dtype"].get<std::string>())) {
    return config["torch_dtype"].get<std::string>();
  }
  return "bfloat16";
}

}  // namespace

Catalog::Catalog(Options options)
    : options_(std::move(options)), downloader_(options_.hub, [this] {
        FileDownloader::Options download = options_.download;
        download.clock = options_.clock;
        return download;
      }()) {}

absl::StatusOr<std::unique_ptr<Catalog>> Catalog::Create(Options options) {
  if (options.store == nullptr || options.hub == nullptr ||
      options.deployment_usage == nullptr || options.secrets == nullptr ||
      options.clock == nullptr) {
    return absl::InvalidArgumentError(
        "Catalog needs a store, a hub client, a deployment usage, a secret "
        "box and a clock");
  }
  if (options.model_store.empty()) {
    return absl::InvalidArgumentError("model_store: required (a directory)");
  }
  std::error_code error;
  fs::create_directories(options.model_store, error);
  if (error || !fs::is_directory(options.model_store)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model_store: cannot use ", options.model_store, " as a directory",
        error ? absl::StrCat(": ", error.message()) : ""));
  }
  if (!options.local_model_root.empty() &&
      !fs::is_directory(options.local_model_root, error)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "local_model_root: ", options.local_model_root, " is not a directory"));
  }
  if (options.progress_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("progress_interval must be positive");
  }
  std::unique_ptr<Catalog> catalog(new Catalog(std::move(options)));
  RETURN_IF_ERROR(catalog->Start());
  return catalog;
}

absl::Status Catalog::Start() {
  RETURN_IF_ERROR(options_.store->UpsertCurated(options_.curated_models));
  // Resume work a restart interrupted.
  ASSIGN_OR_RETURN(std::vector<std::string> importing,
                   options_.store->ListNamesInState(v1::MODEL_STATE_IMPORTING));
  for (const std::string& name : importing) {
    absl::StatusOr<v1::Model> model = options_.store->GetModel(name);
    if (!model.ok()) continue;
    if (model->source() == v1::MODEL_SOURCE_LOCAL) {
      RunInBackground([this, name] { FinishLocalImport(name); });
    } else {
      std::string connection = model->connection();
      RunInBackground([this, name, connection] {
        absl::StatusOr<std::string> token =
            connection.empty() ? std::string()
                               : OpenToken("connection", connection);
        if (!token.ok()) {
          CompleteImport(name, v1::MODEL_SOURCE_HUGGING_FACE, token.status());
          return;
        }
        FinishHubImport(name, *token);
      });
    }
  }
  ASSIGN_OR_RETURN(
      std::vector<std::string> downloading,
      options_.store->ListNamesPreparing(v1::PREPARATION_STATE_DOWNLOADING));
  for (const std::string& name : downloading) {
    RunInBackground([this, name] {
      absl::StatusOr<v1::Preparation> preparation = PrepareModel(name);
      if (!preparation.ok()) {
        v1::Preparation failed;
        failed.set_state(v1::PREPARATION_STATE_FAILED);
        failed.set_failure_reason(preparation.status().ToString());
        options_.store->SetPreparation(name, failed).IgnoreError();
        Notify(name);
      }
    });
  }
  RefreshStateGauge();
  return absl::OkStatus();
}

Catalog::~Catalog() {
  std::map<uint64_t, std::thread> workers;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    stopping_ = true;
    for (auto& [name, job] : downloads_) job->cancelled = true;
    workers.swap(workers_);
  }
  for (auto& [id, worker] : workers) worker.join();
}

void Catalog::RunInBackground(std::function<void()> work) {
  absl::MutexLock lock(&mu_);
  if (shutting_down_) return;
  JoinFinishedLocked();
  const uint64_t id = next_worker_id_++;
  workers_.emplace(id, std::thread([this, id, work = std::move(work)] {
                     work();
                     absl::MutexLock done_lock(&mu_);
                     finished_workers_.push_back(id);
                   }));
}

void Catalog::JoinFinishedLocked() {
  // A finished worker only has to return from its lambda; joining it under
  // the lock is safe because it takes no lock after announcing itself.
  for (uint64_t id : finished_workers_) {
    auto it = workers_.find(id);
    if (it == workers_.end()) continue;
    it->second.join();
    workers_.erase(it);
  }
  finished_workers_.clear();
}

void Catalog::Notify(const std::string& name) {
  absl::MutexLock lock(&mu_);
  ++generations_[name];
}

uint64_t Catalog::ChangeGeneration(const std::string& name) {
  absl::MutexLock lock(&mu_);
  return generations_[name];
}

uint64_t Catalog::WaitForChange(const std::string& name, uint64_t seen,
                                absl::Duration timeout) {
  const absl::Time deadline = options_.clock->Now() + timeout;
  absl::MutexLock lock(&mu_);
  auto changed = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return generations_[name] != seen || shutting_down_;
  };
  options_.clock->AwaitWithDeadline(&mu_, absl::Condition(&changed), deadline);
  return generations_[name];
}

void Catalog::RefreshStateGauge() {
  if (options_.metrics == nullptr) return;
  absl::StatusOr<std::map<v1::ModelState, int64_t>> counts =
      options_.store->CountByState();
  if (counts.ok()) options_.metrics->SetModelsByState(*counts);
}

void Catalog::OverlayLiveProgress(v1::Model& model) {
  std::shared_ptr<DownloadJob> job;
  {
    absl::MutexLock lock(&mu_);
    auto it = downloads_.find(model.name());
    if (it == downloads_.end()) return;
    job = it->second;
  }
  absl::MutexLock lock(&job->mu);
  *model.mutable_preparation() = job->preparation;
}

// --- Models ---

absl::StatusOr<v1::ListModelsResponse> Catalog::ListModels(
    const v1::ListModelsRequest& request) {
  if (request.page_size() < 0 || request.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(absl::StrCat("page_size: must be in [0, ",
                                                   kMaxPageSize, "]; was ",
                                                   request.page_size()));
  }
  RETURN_IF_ERROR(ValidateText("family", request.family(), kMaxTagLength));
  RETURN_IF_ERROR(ValidateText("tag", request.tag(), kMaxTagLength));
  RETURN_IF_ERROR(ValidateText("query", request.query(), kMaxQueryLength));
  if (request.fits_gpu_memory_bytes() < 0) {
    return absl::InvalidArgumentError(
        "fits_gpu_memory_bytes: must not be negative");
  }
  if (!v1::ModelSource_IsValid(request.source()) ||
      !v1::Engine_IsValid(request.supports_engine())) {
    return absl::InvalidArgumentError(
        "source/supports_engine: unknown enum value");
  }
  const std::string fingerprint = FilterFingerprint(request);
  ASSIGN_OR_RETURN(std::string after,
                   ParsePageToken(request.page_token(), fingerprint));
  const int limit =
      request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  ModelFilter filter{.source = request.source(),
                     .family = request.family(),
                     .tag = request.tag(),
                     .query = request.query(),
                     .supports_engine = request.supports_engine(),
                     .fits_gpu_memory_bytes = request.fits_gpu_memory_bytes(),
                     .runs_on_cpu = request.runs_on_cpu()};
  ASSIGN_OR_RETURN(ModelPage page,
                   options_.store->ListModels(filter, after, limit));
  v1::ListModelsResponse response;
  for (v1::Model& model : page.models) {
    OverlayLiveProgress(model);
    *response.add_models() = std::move(model);
  }
  if (page.more && response.models_size() > 0) {
    response.set_next_page_token(PageToken(
        fingerprint, response.models(response.models_size() - 1).name()));
  }
  response.set_total_size(static_cast<int32_t>(page.total));
  return response;
}

absl::StatusOr<v1::Model> Catalog::GetModel(const std::string& name) {
  RETURN_IF_ERROR(ValidateModelName("name", name));
  ASSIGN_OR_RETURN(v1::Model model, options_.store->GetModel(name));
  OverlayLiveProgress(model);
  return model;
}

absl::StatusOr<v1::Model> Catalog::ImportModel(
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

absl::StatusOr<v1::Model> Catalog::ImportFromHub(
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
                     OpenToken("hugging_face.connection", source.connection()));
  }
  if (options_.store->GetModel(name).ok()) {
    return absl::AlreadyExistsError(
        absl::StrCat("name: model \"", name, "\" already exists"));
  }
  absl::StatusOr<RepoInfo> info =
      options_.hub->GetRepoInfo(source.repo(), revision, token);
  if (!info.ok()) {
    const bool revision_missing =
        absl::StartsWith(info.status().message(), "revision not found");
    return WithPrefix(
        absl::StrCat(
            revision_missing ? "hugging_face.revision" : "hugging_face.repo",
            ": \"", source.repo(), "\" at revision \"", revision, "\": "),
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
  ASSIGN_OR_RETURN(v1::Model created, options_.store->CreateModel(model));
  Notify(name);
  RefreshStateGauge();
  RunInBackground([this, name, token] { FinishHubImport(name, token); });
  return created;
}

absl::StatusOr<v1::Model> Catalog::ImportLocal(
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
  ASSIGN_OR_RETURN(v1::Model created, options_.store->CreateModel(model));
  Notify(name);
  RefreshStateGauge();
  RunInBackground([this, name] { FinishLocalImport(name); });
  return created;
}

void Catalog::FinishHubImport(const std::string& name,
                              const std::string& token) {
  absl::StatusOr<v1::Model> model = options_.store->GetModel(name);
  if (!model.ok()) return;  // Deleted meanwhile.
  CompleteImport(name, v1::MODEL_SOURCE_HUGGING_FACE,
                 InspectHubModel(*model, token));
}

void Catalog::FinishLocalImport(const std::string& name) {
  absl::StatusOr<v1::Model> model = options_.store->GetModel(name);
  if (!model.ok()) return;
  absl::StatusOr<v1::Model> inspected = InspectLocalModel(*model);
  CompleteImport(name, v1::MODEL_SOURCE_LOCAL, inspected);
  if (inspected.ok()) {
    v1::Preparation prepared;
    prepared.set_state(v1::PREPARATION_STATE_PREPARED);
    prepared.set_local_path(model->local_path());
    options_.store->SetPreparation(name, prepared).IgnoreError();
    Notify(name);
  }
}

void Catalog::CompleteImport(const std::string& name, v1::ModelSource source,
                             const absl::StatusOr<v1::Model>& inspected) {
  if (stopping_ && !inspected.ok() &&
      inspected.status().code() == absl::StatusCode::kCancelled) {
    return;  // Shutting down: resumed by the next start.
  }
  absl::StatusOr<v1::Model> updated = options_.store->UpdateModel(
      name, [&](v1::Model& current) -> absl::Status {
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
      });
  if (updated.ok() && options_.metrics != nullptr) {
    options_.metrics->ImportFinished(source, inspected.ok() ? "ok" : "failed");
  }
  Notify(name);
  RefreshStateGauge();
}

absl::StatusOr<v1::Model> Catalog::InspectHubModel(const v1::Model& model,
                                                   const std::string& token) {
  const std::string& repo = model.hf_repo();
  const std::string& revision = model.resolved_revision();
  ASSIGN_OR_RETURN(RepoInfo info,
                   options_.hub->GetRepoInfo(repo, revision, token));
  ASSIGN_OR_RETURN(
      std::string config_text,
      options_.hub->GetFile(repo, revision, "config.json", token, 1 << 20));
  ASSIGN_OR_RETURN(ArchitectureSpec spec,
                   ArchitectureSpecFromConfigText(config_text));

  std::vector<std::string> shards;
  auto has_file = [&](absl::string_view path) {
    return std::any_of(info.files.begin(), info.files.end(),
                       [&](const HubFile& f) { return f.path == path; });
  };
  if (has_file("model.safetensors.index.json")) {
    ASSIGN_OR_RETURN(
        std::string index_text,
        options_.hub->GetFile(repo, revision, "model.safetensors.index.json",
                              token, 16 << 20));
    json index = json::parse(index_text, nullptr, false);
    if (index.is_discarded() || !index.contains("weight_map") ||
        !index["weight_map"].is_object()) {
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
    if (stopping_) return absl::CancelledError("shutting down");
    ASSIGN_OR_RETURN(
        std::string first,
        options_.hub->GetRange(repo, revision, shard, token, 0, 8));
    ASSIGN_OR_RETURN(int64_t length, SafetensorsHeaderLength(first, shard));
    ASSIGN_OR_RETURN(
        std::string header,
        options_.hub->GetRange(repo, revision, shard, token, 8, length));
    ASSIGN_OR_RETURN(WeightsSummary summary,
                     ParseSafetensorsHeader(header, shard));
    weights.Merge(summary);
  }
  v1::Model result = model;
  if (result.license().empty()) result.set_license(info.license);
  ApplyInspection(spec, weights, PublishedDtype(weights, config_text),
                  options_.cpu_max_parameters, result);
  return result;
}

absl::StatusOr<v1::Model> Catalog::InspectLocalModel(const v1::Model& model) {
  const std::string& path = model.local_path();
  v1::Model result = model;
  if (absl::EndsWith(path, ".gguf")) {
    ASSIGN_OR_RETURN(GgufSummary gguf, ReadGgufFile(path));
    if (result.license().empty()) result.set_license(gguf.license);
    ApplyInspection(gguf.spec, gguf.weights, gguf.dtype,
                    options_.cpu_max_parameters, result);
    return result;
  }
  ASSIGN_OR_RETURN(
      std::string config_text,
      ReadSmallFile((fs::path(path) / "config.json").string(), 1 << 20));
  ASSIGN_OR_RETURN(ArchitectureSpec spec,
                   ArchitectureSpecFromConfigText(config_text));
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
  ApplyInspection(spec, weights, PublishedDtype(weights, config_text),
                  options_.cpu_max_parameters, result);
  return result;
}

absl::StatusOr<v1::Model> Catalog::UpdateModel(
    const v1::UpdateModelRequest& request) {
  const v1::Model& changes = request.model();
  RETURN_IF_ERROR(ValidateModelName("model.name", changes.name()));
  if (request.update_mask().paths_size() == 0) {
    return absl::InvalidArgumentError(
        "update_mask: required; updatable paths: description, display_name, "
        "tags");
  }
  for (const std::string& path : request.update_mask().paths()) {
    if (path == "description") {
      RETURN_IF_ERROR(ValidateText("model.description", changes.description(),
                                   kMaxDescriptionLength));
    } else if (path == "display_name") {
      RETURN_IF_ERROR(ValidateText("model.display_name", changes.display_name(),
                                   kMaxDisplayNameLength));
    } else if (path == "tags") {
      RETURN_IF_ERROR(ValidateTags(
          "model.tags", std::vector<std::string>(changes.tags().begin(),
                                                 changes.tags().end())));
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "update_mask: path ", QuoteForMessage(path),
          " cannot be updated; updatable: description, display_name, tags"));
    }
  }
  ASSIGN_OR_RETURN(
      v1::Model updated,
      options_.store->UpdateModel(
          changes.name(), [&](v1::Model& current) -> absl::Status {
            if (!changes.etag().empty() && changes.etag() != current.etag()) {
              return absl::AbortedError(
                  absl::StrCat("model.etag: \"", changes.etag(),
                               "\" is stale; the model is at \"",
                               current.etag(), "\": read it again"));
            }
            for (const std::string& path : request.update_mask().paths()) {
              if (path == "description")
                current.set_description(changes.description());
              if (path == "display_name")
                current.set_display_name(changes.display_name());
              if (path == "tags") *current.mutable_tags() = changes.tags();
            }
            return absl::OkStatus();
          }));
  Notify(changes.name());
  OverlayLiveProgress(updated);
  return updated;
}

absl::Status Catalog::DeleteModel(const v1::DeleteModelRequest& request) {
  RETURN_IF_ERROR(ValidateModelName("name", request.name()));
  ASSIGN_OR_RETURN(v1::Model model, options_.store->GetModel(request.name()));
  if (model.source() == v1::MODEL_SOURCE_CURATED) {
    return absl::FailedPreconditionError(
        absl::StrCat("name: \"", request.name(),
                     "\" is a curated model and cannot be deleted"));
  }
  auto check_etag = [&](const v1::Model& current) -> absl::Status {
    if (!request.etag().empty() && request.etag() != current.etag()) {
      return absl::AbortedError(absl::StrCat("etag: \"", request.etag(),
                                             "\" is stale; the model is at \"",
                                             current.etag(), "\""));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(check_etag(model));
  ASSIGN_OR_RETURN(std::vector<std::string> users,
                   options_.deployment_usage->DeploymentsUsing(request.name()));
  if (!users.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("name: \"", request.name(), "\" is used by deployment(s) ",
                     absl::StrJoin(users, ", "), "; delete them first"));
  }
  RETURN_IF_ERROR(options_.store->DeleteModel(request.name(), check_etag));
  {
    absl::MutexLock lock(&mu_);
    if (auto it = downloads_.find(request.name()); it != downloads_.end()) {
      it->second->cancelled = true;
    }
  }
  Notify(request.name());
  RefreshStateGauge();
  return absl::OkStatus();
}

absl::StatusOr<v1::Preparation> Catalog::PrepareModel(const std::string& name) {
  RETURN_IF_ERROR(ValidateModelName("name", name));
  ASSIGN_OR_RETURN(v1::Model model, options_.store->GetModel(name));
  if (model.state() != v1::MODEL_STATE_READY) {
    return absl::FailedPreconditionError(absl::StrCat(
        "name: \"", name, "\" is ", v1::ModelState_Name(model.state()),
        "; only READY models can be prepared"));
  }
  if (model.source() == v1::MODEL_SOURCE_LOCAL) {
    std::error_code error;
    if (!fs::exists(model.local_path(), error)) {
      return absl::FailedPreconditionError(
          absl::StrCat("name: \"", name, "\" was imported from ",
                       model.local_path(), ", which no longer exists"));
    }
    return model.preparation();
  }
  if (!model.local_path().empty()) {
    // A curated model served from the local model root (the test model).
    absl::StatusOr<std::string> path = ResolvePathUnderRoot(
        "local_path", options_.local_model_root, model.local_path());
    if (!path.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("\"", name, "\" is served from --local_model_root/",
                       model.local_path(),
                       ", which is unusable: ", path.status().message()));
    }
    if (model.preparation().state() != v1::PREPARATION_STATE_PREPARED ||
        model.preparation().local_path() != *path) {
      v1::Preparation prepared;
      prepared.set_state(v1::PREPARATION_STATE_PREPARED);
      prepared.set_local_path(*path);
      RETURN_IF_ERROR(options_.store->SetPreparation(name, prepared));
      Notify(name);
      return prepared;
    }
    return model.preparation();
  }
  return PrepareFromHub(model);
}

absl::StatusOr<v1::Preparation> Catalog::PrepareFromHub(
    const v1::Model& model) {
  const std::string& name = model.name();
  auto live = [&]() -> std::optional<v1::Preparation> {
    absl::MutexLock lock(&mu_);
    auto it = downloads_.find(name);
    if (it == downloads_.end()) return std::nullopt;
    absl::MutexLock job_lock(&it->second->mu);
    return it->second->preparation;
  };
  if (auto preparation = live()) return *preparation;
  const v1::Preparation& stored = model.preparation();
  if (stored.state() == v1::PREPARATION_STATE_PREPARED &&
      fs::exists(fs::path(stored.local_path()) / kPreparedMarker)) {
    return stored;
  }
  // Imported models use their own connection; curated ones (some are
  // gated, e.g. meta-llama) the operator's curated_connection, if any.
  const std::string connection =
      !model.connection().empty()                  ? model.connection()
      : model.source() == v1::MODEL_SOURCE_CURATED ? options_.curated_connection
                                                   : "";
  std::string token;
  if (!connection.empty()) {
    absl::StatusOr<std::string> opened = OpenToken("connection", connection);
    if (!opened.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "\"", name, "\" is fetched through connection \"", connection,
          "\", which is unusable: ", opened.status().message()));
    }
    token = *std::move(opened);
  }
  const std::string revision = model.resolved_revision().empty()
                                   ? model.revision()
                                   : model.resolved_revision();
  // Ask the Hub before starting: no network is an error of this call.
  ASSIGN_OR_RETURN(RepoInfo info,
                   options_.hub->GetRepoInfo(model.hf_repo(), revision, token));
  const std::string commit = info.sha.empty() ? revision : info.sha;
  if (!ValidateRevision("revision", commit).ok()) {
    return absl::FailedPreconditionError(
        "the Hub returned an invalid commit id");
  }
  const std::string directory =
      (fs::path(options_.model_store) / model.hf_repo() / commit).string();
  std::error_code error;
  fs::create_directories(directory, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create ", directory, ": ", error.message()));
  }
  int64_t total = 0;
  for (const HubFile& file : info.files) {
    if (IsNeededFile(file.path) && file.size > 0) total += file.size;
  }
  auto job = std::make_shared<DownloadJob>();
  v1::Preparation preparation;
  preparation.set_state(v1::PREPARATION_STATE_DOWNLOADING);
  preparation.mutable_progress()->set_total(total);
  preparation.mutable_progress()->set_message("starting");
  preparation.set_local_path(directory);
  {
    absl::MutexLock job_lock(&job->mu);
    job->preparation = preparation;
  }
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_)
      return absl::UnavailableError("the catalog is shutting down");
    if (auto it = downloads_.find(name); it != downloads_.end()) {
      absl::MutexLock job_lock(&it->second->mu);  // Lost a race: share it.
      return it->second->preparation;
    }
    downloads_[name] = job;
  }
  RETURN_IF_ERROR(options_.store->SetPreparation(name, preparation));
  Notify(name);
  RunInBackground([this, name, job, repo = model.hf_repo(),
                   info = std::move(info), token, directory]() mutable {
    RunDownload(name, job, repo, std::move(info), token, directory);
  });
  return preparation;
}

void Catalog::RunDownload(const std::string& name,
                          std::shared_ptr<DownloadJob> job, std::string repo,
                          RepoInfo info, std::string token,
                          std::string directory) {
  const absl::Time start = options_.clock->Now();
  absl::Time last_report = start;
  const std::string commit = info.sha;
  auto snapshot = [&] {
    absl::MutexLock lock(&job->mu);
    return job->preparation;
  };
  auto report = [&](bool force) {
    const absl::Time now = options_.clock->Now();
    if (!force && now - last_report < options_.progress_interval) return;
    last_report = now;
    options_.store->SetPreparation(name, snapshot()).IgnoreError();
    Notify(name);
  };
  std::vector<std::string> manifest;
  absl::Status status = absl::OkStatus();
  for (const HubFile& file : info.files) {
    if (!IsNeededFile(file.path)) continue;
    {
      absl::MutexLock lock(&job->mu);
      job->preparation.mutable_progress()->set_message(
          absl::StrCat("downloading ", file.path));
    }
    report(true);
    absl::StatusOr<std::string> sha256 = downloader_.Download(
        {.repo = repo,
         .revision = commit.empty() ? "main" : commit,
         .token = token,
         .file = file,
         .destination = (fs::path(directory) / file.path).string()},
        [&](int64_t delta) {
          {
            absl::MutexLock lock(&job->mu);
            v1::Progress* progress = job->preparation.mutable_progress();
            progress->set_done(progress->done() + delta);
          }
          if (options_.metrics != nullptr)
            options_.metrics->BytesDownloaded(delta);
          report(false);
        },
        &job->cancelled);
    if (!sha256.ok()) {
      status = sha256.status();
      break;
    }
    manifest.push_back(absl::StrCat(*sha256, "  ", file.path, "\n"));
  }
  v1::Preparation final_state = snapshot();
  std::string result = "ok";
  if (status.ok()) {
    std::sort(manifest.begin(), manifest.end());
    const std::string manifest_text = absl::StrJoin(manifest, "");
    std::ofstream marker((fs::path(directory) / kPreparedMarker).string(),
                         std::ios::trunc);
    marker << manifest_text;
    marker.close();
    if (!marker) {
      status = absl::FailedPreconditionError(
          absl::StrCat("cannot write ", directory, "/", kPreparedMarker));
    } else {
      final_state.set_state(v1::PREPARATION_STATE_PREPARED);
      final_state.set_sha256(auth::Sha256Hex(manifest_text));
      final_state.mutable_progress()->set_done(final_state.progress().total());
      final_state.mutable_progress()->set_message("prepared");
      final_state.clear_failure_reason();
    }
  }
  if (!status.ok()) {
    result =
        status.code() == absl::StatusCode::kCancelled ? "cancelled" : "failed";
    if (result == "cancelled" && stopping_) {
      // Shutting down: leave DOWNLOADING so the next start resumes it.
      absl::MutexLock lock(&mu_);
      downloads_.erase(name);
      return;
    }
    final_state.set_state(v1::PREPARATION_STATE_FAILED);
    final_state.set_failure_reason(status.ToString());
    final_state.mutable_progress()->set_message("failed");
  }
  options_.store->SetPreparation(name, final_state).IgnoreError();
  {
    absl::MutexLock lock(&mu_);
    downloads_.erase(name);
  }
  if (options_.metrics != nullptr) {
    options_.metrics->DownloadFinished(
        result, absl::ToDoubleSeconds(options_.clock->Now() - start));
  }
  Notify(name);
}

// --- Connections ---

absl::StatusOr<std::string> Catalog::OpenToken(const std::string& field,
                                               const std::string& name) {
  absl::StatusOr<StoredConnection> stored = options_.store->GetConnection(name);
  if (!stored.ok()) {
    if (stored.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(
          absl::StrCat(field, ": connection \"", name, "\" not found"));
    }
    return stored.status();
  }
  absl::StatusOr<std::string> token =
      options_.secrets->Open(stored->sealed_token, name);
  if (!token.ok()) {
    return absl::DataLossError(
        absl::StrCat("connection \"", name,
                     "\": its token cannot be decrypted (was the secret key "
                     "file replaced?)"));
  }
  return token;
}

absl::StatusOr<v1::Connection> Catalog::CreateConnection(
    const v1::Connection& connection) {
  RETURN_IF_ERROR(ValidateConnectionName("connection.name", connection.name()));
  RETURN_IF_ERROR(ValidateText("connection.description",
                               connection.description(),
                               kMaxDescriptionLength));
  RETURN_IF_ERROR(ValidateToken("connection.token", connection.token()));
  ASSIGN_OR_RETURN(
      std::string sealed,
      options_.secrets->Seal(connection.token(), connection.name()));
  StoredConnection stored;
  stored.connection.set_name(connection.name());
  stored.connection.set_description(connection.description());
  // A quarter of the token at most, and never more than 5 characters.
  const size_t shown = std::min<size_t>(5, connection.token().size() / 4);
  stored.connection.set_token_prefix(
      absl::StrCat(connection.token().substr(0, shown), "..."));
  stored.sealed_token = std::move(sealed);
  return options_.store->CreateConnection(stored);
}

absl::StatusOr<v1::Connection> Catalog::GetConnection(const std::string& name) {
  RETURN_IF_ERROR(ValidateConnectionName("name", name));
  ASSIGN_OR_RETURN(StoredConnection stored,
                   options_.store->GetConnection(name));
  return stored.connection;
}

absl::StatusOr<v1::ListConnectionsResponse> Catalog::ListConnections(
    const v1::ListConnectionsRequest& request) {
  if (request.page_size() < 0 || request.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(absl::StrCat("page_size: must be in [0, ",
                                                   kMaxPageSize, "]; was ",
                                                   request.page_size()));
  }
  ASSIGN_OR_RETURN(std::string after,
                   ParsePageToken(request.page_token(), "connections"));
  const int limit =
      request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  ASSIGN_OR_RETURN(auto page, options_.store->ListConnections(after, limit));
  v1::ListConnectionsResponse response;
  for (v1::Connection& connection : page.first) {
    *response.add_connections() = std::move(connection);
  }
  if (page.second && response.connections_size() > 0) {
    response.set_next_page_token(PageToken(
        "connections",
        response.connections(response.connections_size() - 1).name()));
  }
  return response;
}

absl::Status Catalog::DeleteConnection(const std::string& name) {
  RETURN_IF_ERROR(ValidateConnectionName("name", name));
  return options_.store->DeleteConnection(name);
}

}  // namespace hangar::catalog
