#include "services/catalog/preparation_manager.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/api/time.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "common/util/file.h"
#include "common/util/sha256.h"
#include "services/catalog/model_validation.h"

namespace hangar::catalog {
namespace {

namespace fs = std::filesystem;

std::string Seconds(absl::Duration duration) {
  return absl::StrCat(absl::ToDoubleSeconds(duration));
}

// Preparation.sha256 of a model prepared in place: the SHA-256 over its
// *.safetensors files in name order, or of the file itself for a GGUF file
// (what the optimizer's converter computes as the source checksum).
absl::StatusOr<std::string> LocalWeightsSha256(const std::string& dir) {
  std::error_code error;
  if (fs::is_regular_file(dir, error)) return Sha256OfFiles({dir});
  std::vector<std::string> files;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
    if (entry.path().extension() == ".safetensors") {
      files.push_back(entry.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " holds no *.safetensors file"));
  }
  return Sha256OfFiles(files);
}

}  // namespace

bool IsNeededFile(const std::string& path) {
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

PreparationManager::PreparationManager(Options options)
    : options_(std::move(options)),
      context_(options_.context),
      downloader_(context_.hub, [this] {
        FileDownloader::Options download = options_.download;
        download.clock = context_.clock;
        download.log = context_.log;
        return download;
      }()) {}

absl::StatusOr<std::unique_ptr<PreparationManager>> PreparationManager::Create(
    Options options) {
  if (options.model_store.empty()) {
    return InvalidField("model_store", "required (a directory)");
  }
  RETURN_IF_ERROR(options.context.Complete("PreparationManager"));
  if (options.progress_interval <= absl::ZeroDuration()) {
    return InvalidField("progress_interval", "must be positive");
  }
  if (options.hub_retry.initial_backoff <= absl::ZeroDuration() ||
      options.hub_retry.max_backoff < options.hub_retry.initial_backoff) {
    return InvalidField(
        "hub_retry.initial_backoff",
        absl::StrCat("must be positive and at most hub_retry.max_backoff (",
                     absl::FormatDuration(options.hub_retry.max_backoff),
                     "); was ",
                     absl::FormatDuration(options.hub_retry.initial_backoff)));
  }
  if (options.hub_retry.budget < absl::ZeroDuration()) {
    return InvalidField("hub_retry.budget", "must not be negative");
  }
  return std::unique_ptr<PreparationManager>(
      new PreparationManager(std::move(options)));
}

PreparationManager::~PreparationManager() { Shutdown(); }

void PreparationManager::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutting_down_ = true;
  for (auto& [name, job] : jobs_) job->cancel.Cancel();
}

std::optional<v1::Preparation> PreparationManager::Live(
    const std::string& name) {
  std::shared_ptr<Job> job;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(name);
    if (it == jobs_.end()) return std::nullopt;
    job = it->second;
  }
  absl::MutexLock lock(&job->mu);
  return job->preparation;
}

void PreparationManager::CancelAndWait(const std::string& name,
                                       absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(name);
  if (it == jobs_.end()) return;
  it->second->cancel.Cancel();
  auto gone = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return jobs_.count(name) == 0;
  };
  mu_.AwaitWithTimeout(absl::Condition(&gone), timeout);
}

void PreparationManager::LogState(const std::string& name,
                                  const v1::Preparation& preparation) {
  context_.log->Write(
      "preparation_state",
      {{"model", name},
       {"state", v1::PreparationState_Name(preparation.state())},
       {"done", absl::StrCat(preparation.progress().done())},
       {"total", absl::StrCat(preparation.progress().total())},
       {"reason", preparation.failure_reason()}});
}

absl::StatusOr<v1::Preparation> PreparationManager::Prepare(
    const std::string& name) {
  RETURN_IF_ERROR(ValidateModelName("name", name));
  ASSIGN_OR_RETURN(v1::Model model, context_.models->GetModel(name));
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
    if (!model.preparation().sha256().empty()) return model.preparation();
    // The checksum the optimizer keys its artifacts by; computed once, on
    // the first preparation (an import only records where the files are).
    absl::StatusOr<std::string> sha256 = LocalWeightsSha256(model.local_path());
    if (!sha256.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "name: \"", name, "\" was imported from ", model.local_path(),
          ", which is unusable: ", sha256.status().message()));
    }
    v1::Preparation prepared = model.preparation();
    prepared.set_state(v1::PREPARATION_STATE_PREPARED);
    if (prepared.local_path().empty())
      prepared.set_local_path(model.local_path());
    prepared.set_sha256(*sha256);
    RETURN_IF_ERROR(context_.models->SetPreparation(name, prepared));
    LogState(name, prepared);
    context_.notifier->Notify(name);
    return prepared;
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
        model.preparation().local_path() != *path ||
        model.preparation().sha256().empty()) {
      v1::Preparation prepared;
      prepared.set_state(v1::PREPARATION_STATE_PREPARED);
      prepared.set_local_path(*path);
      absl::StatusOr<std::string> sha256 = LocalWeightsSha256(*path);
      if (!sha256.ok()) {
        return absl::FailedPreconditionError(
            absl::StrCat("\"", name, "\" is served from --local_model_root/",
                         model.local_path(),
                         ", which is unusable: ", sha256.status().message()));
      }
      prepared.set_sha256(*sha256);
      RETURN_IF_ERROR(context_.models->SetPreparation(name, prepared));
      LogState(name, prepared);
      context_.notifier->Notify(name);
      return prepared;
    }
    return model.preparation();
  }
  return PrepareFromHub(model, /*background=*/false);
}

absl::StatusOr<std::string> PreparationManager::TokenFor(
    const v1::Model& model) {
  // Imported models use their own connection; curated ones (some are
  // gated, e.g. meta-llama) the operator's curated_connection, if any.
  const std::string connection =
      !model.connection().empty()                  ? model.connection()
      : model.source() == v1::MODEL_SOURCE_CURATED ? options_.curated_connection
                                                   : "";
  if (connection.empty()) return std::string();
  absl::StatusOr<std::string> token =
      context_.connections->OpenToken("connection", connection);
  if (!token.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "\"", model.name(), "\" is fetched through connection \"", connection,
        "\", which is unusable: ", token.status().message()));
  }
  return token;
}

absl::StatusOr<v1::Preparation> PreparationManager::PrepareFromHub(
    const v1::Model& model, bool background) {
  const std::string& name = model.name();
  if (std::optional<v1::Preparation> live = Live(name)) return *live;
  const v1::Preparation& stored = model.preparation();
  if (!background && stored.state() == v1::PREPARATION_STATE_PREPARED &&
      fs::exists(fs::path(stored.local_path()) / kPreparedMarker)) {
    return stored;
  }
  ASSIGN_OR_RETURN(std::string token, TokenFor(model));
  Source source{.name = name,
                .repo = model.hf_repo(),
                .revision = model.resolved_revision().empty()
                                ? model.revision()
                                : model.resolved_revision(),
                .token = std::move(token)};
  std::optional<RepoInfo> info;
  v1::Preparation preparation;
  preparation.set_state(v1::PREPARATION_STATE_DOWNLOADING);
  if (!background) {
    // Ask the Hub before starting: no network is an error of this call.
    ASSIGN_OR_RETURN(info, context_.hub->GetRepoInfo(
                               source.repo, source.revision, source.token));
    const std::string commit = info->sha.empty() ? source.revision : info->sha;
    if (!ValidateRevision("revision", commit).ok()) {
      return absl::FailedPreconditionError(
          "the Hub returned an invalid commit id");
    }
    source.directory =
        (fs::path(options_.model_store) / source.repo / commit).string();
    int64_t total = 0;
    for (const HubFile& file : info->files) {
      if (IsNeededFile(file.path) && file.size > 0) total += file.size;
    }
    preparation.mutable_progress()->set_total(total);
    preparation.mutable_progress()->set_message("starting");
  } else {
    // Resumed at start: the Hub is asked in the background, with retries.
    source.directory = stored.local_path();
    *preparation.mutable_progress() = stored.progress();
    preparation.mutable_progress()->set_message("resuming");
  }
  preparation.set_local_path(source.directory);
  auto job = std::make_shared<Job>();
  {
    absl::MutexLock job_lock(&job->mu);
    job->preparation = preparation;
  }
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) {
      return absl::UnavailableError("the catalog is shutting down");
    }
    if (auto it = jobs_.find(name); it != jobs_.end()) {
      absl::MutexLock job_lock(&it->second->mu);  // Lost a race: share it.
      return it->second->preparation;
    }
    jobs_[name] = job;
  }
  absl::Status status = context_.models->SetPreparation(name, preparation);
  if (status.ok()) {
    status = context_.tasks->Submit(
        [this, source, job, info = std::move(info)](const StopToken&) {
          Run(source, job, info);
        });
  }
  if (!status.ok()) {
    absl::MutexLock lock(&mu_);
    jobs_.erase(name);
    return status;
  }
  LogState(name, preparation);
  context_.notifier->Notify(name);
  return preparation;
}

void PreparationManager::Publish(const std::string& name, Job& job) {
  v1::Preparation snapshot;
  {
    absl::MutexLock lock(&job.mu);
    snapshot = job.preparation;
  }
  context_.models->SetPreparation(name, snapshot).IgnoreError();
  context_.notifier->Notify(name);
}

absl::Status PreparationManager::DownloadAll(const Source& source, Job& job,
                                             const RepoInfo& info,
                                             std::string* manifest) {
  absl::Time last_report = context_.clock->Now();
  auto report = [&](bool force) {
    const absl::Time now = context_.clock->Now();
    if (!force && now - last_report < options_.progress_interval) return;
    last_report = now;
    Publish(source.name, job);
  };
  std::error_code error;
  fs::create_directories(source.directory, error);
  if (error) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create ", source.directory, ": ", error.message()));
  }
  int64_t total = 0;
  for (const HubFile& file : info.files) {
    if (IsNeededFile(file.path) && file.size > 0) total += file.size;
  }
  // Every pass counts again from what is on disk (the downloader reports
  // finished and partial files first); what watchers see does not fall back
  // below what the last pass reached while this one recounts.
  int64_t shown = 0;
  int64_t counted = 0;
  {
    absl::MutexLock lock(&job.mu);
    job.preparation.mutable_progress()->set_total(total);
    shown = job.preparation.progress().done();
  }
  std::vector<std::string> lines;
  for (const HubFile& file : info.files) {
    if (!IsNeededFile(file.path)) continue;
    {
      absl::MutexLock lock(&job.mu);
      job.preparation.mutable_progress()->set_message(
          absl::StrCat("downloading ", file.path));
    }
    report(true);
    const std::string commit = info.sha.empty() ? source.revision : info.sha;
    absl::StatusOr<std::string> sha256 = downloader_.Download(
        {.repo = source.repo,
         .revision = commit,
         .token = source.token,
         .file = file,
         .destination = (fs::path(source.directory) / file.path).string()},
        [&](int64_t delta) {
          {
            absl::MutexLock lock(&job.mu);
            counted += delta;
            if (delta < 0) shown = counted;  // Bytes discarded (checksum).
            job.preparation.mutable_progress()->set_done(
                std::max(counted, shown));
          }
          if (context_.metrics != nullptr && delta > 0) {
            context_.metrics->BytesDownloaded(delta);
          }
          report(false);
        },
        &job.cancel);
    if (!sha256.ok()) return PrefixStatus(file.path, sha256.status());
    lines.push_back(absl::StrCat(*sha256, "  ", file.path, "\n"));
  }
  std::sort(lines.begin(), lines.end());
  *manifest = absl::StrJoin(lines, "");
  return absl::OkStatus();
}

void PreparationManager::Run(const Source& initial, std::shared_ptr<Job> job,
                             std::optional<RepoInfo> info) {
  Source source = initial;
  const absl::Time start = context_.clock->Now();
  int attempt = 0;
  absl::Time outage_start = absl::InfinitePast();
  int64_t done_at_failure = -1;
  while (true) {
    absl::Status status = absl::OkStatus();
    std::string manifest;
    if (!info.has_value()) {
      absl::StatusOr<RepoInfo> fetched =
          context_.hub->GetRepoInfo(source.repo, source.revision, source.token);
      if (fetched.ok()) {
        info = *std::move(fetched);
        const std::string commit =
            info->sha.empty() ? source.revision : info->sha;
        if (source.directory.empty()) {
          source.directory =
              (fs::path(options_.model_store) / source.repo / commit).string();
          absl::MutexLock lock(&job->mu);
          job->preparation.set_local_path(source.directory);
        }
      } else {
        status = fetched.status();
      }
    }
    if (status.ok()) status = DownloadAll(source, *job, *info, &manifest);
    if (job->cancel.cancelled()) {
      status = absl::CancelledError("cancelled");
    }
    if (status.code() != absl::StatusCode::kUnavailable) {
      Finish(source, job, status, manifest, start);
      return;
    }
    // The Hub is unreachable: wait for it, within the budget per outage.
    const absl::Time now = context_.clock->Now();
    int64_t done;
    {
      absl::MutexLock lock(&job->mu);
      done = job->preparation.progress().done();
    }
    if (done > done_at_failure || outage_start == absl::InfinitePast()) {
      outage_start = now;  // Progress since the last failure: a new outage.
      attempt = 0;
    }
    done_at_failure = done;
    ++attempt;
    absl::Duration backoff = options_.hub_retry.initial_backoff;
    for (int i = 1; i < attempt && backoff < options_.hub_retry.max_backoff;
         ++i) {
      backoff *= 2;
    }
    backoff = std::min(backoff, options_.hub_retry.max_backoff);
    if (now + backoff > outage_start + options_.hub_retry.budget) {
      Finish(source, job,
             absl::UnavailableError(absl::StrCat(
                 "gave up waiting for the Hub after ",
                 absl::FormatDuration(now - outage_start), " (budget ",
                 absl::FormatDuration(options_.hub_retry.budget),
                 "): ", status.message())),
             "", start);
      return;
    }
    const absl::Time next = now + backoff;
    {
      absl::MutexLock lock(&job->mu);
      v1::Preparation& p = job->preparation;
      p.set_retry_attempt(attempt);
      *p.mutable_next_retry_time() = ToProtoTimestamp(next);
      p.set_last_error(std::string(status.message()));
      p.mutable_progress()->set_message(
          absl::StrCat("waiting for the Hub (attempt ", attempt, ", next in ",
                       Seconds(backoff), " s): ", status.message()));
    }
    context_.log->Write("preparation_waiting",
                        {{"model", source.name},
                         {"attempt", absl::StrCat(attempt)},
                         {"next_in_s", Seconds(backoff)},
                         {"error", std::string(status.message())}});
    if (context_.metrics != nullptr) context_.metrics->HubRetry();
    Publish(source.name, *job);
    if (job->cancel.WaitUntil(context_.clock, next)) {
      Finish(source, job, absl::CancelledError("cancelled"), "", start);
      return;
    }
    {
      absl::MutexLock lock(&job->mu);
      job->preparation.clear_next_retry_time();
      job->preparation.mutable_progress()->set_message(
          absl::StrCat("retrying (attempt ", attempt, ")"));
    }
    context_.log->Write(
        "preparation_retry",
        {{"model", source.name}, {"attempt", absl::StrCat(attempt)}});
    if (!info.has_value()) continue;
    // Ask again for the files too (a fresh listing, same commit).
    info.reset();
  }
}

void PreparationManager::Finish(const Source& source, std::shared_ptr<Job> job,
                                const absl::Status& download_status,
                                const std::string& manifest, absl::Time start) {
  absl::Status status = download_status;
  bool stopping;
  {
    absl::MutexLock lock(&mu_);
    stopping = shutting_down_;
  }
  v1::Preparation final_state;
  {
    absl::MutexLock lock(&job->mu);
    final_state = job->preparation;
  }
  final_state.set_retry_attempt(0);
  final_state.clear_next_retry_time();
  final_state.clear_last_error();
  std::string result = "ok";
  if (status.ok()) {
    status = WriteStringToFile(
        (fs::path(source.directory) / kPreparedMarker).string(), manifest);
    if (status.ok()) {
      final_state.set_state(v1::PREPARATION_STATE_PREPARED);
      final_state.set_sha256(Sha256Hex(manifest));
      final_state.mutable_progress()->set_done(final_state.progress().total());
      final_state.mutable_progress()->set_message("prepared");
      final_state.clear_failure_reason();
    }
  }
  if (!status.ok() && status.code() == absl::StatusCode::kCancelled) {
    // Shut down (resumed at the next start) or deleted: nothing to record.
    absl::MutexLock lock(&mu_);
    jobs_.erase(source.name);
    context_.log->Write(
        "preparation_stopped",
        {{"model", source.name}, {"why", stopping ? "shutdown" : "cancelled"}});
    return;
  }
  if (!status.ok()) {
    result = "failed";
    final_state.set_state(v1::PREPARATION_STATE_FAILED);
    final_state.set_failure_reason(status.ToString());
    final_state.mutable_progress()->set_message("failed");
    context_.log->Write(
        "download_failed",
        {{"model", source.name}, {"error", std::string(status.message())}});
  }
  context_.models->SetPreparation(source.name, final_state).IgnoreError();
  {
    absl::MutexLock lock(&mu_);
    jobs_.erase(source.name);
  }
  if (context_.metrics != nullptr) {
    context_.metrics->DownloadFinished(
        result, absl::ToDoubleSeconds(context_.clock->Now() - start));
  }
  LogState(source.name, final_state);
  context_.notifier->Notify(source.name);
}

absl::Status PreparationManager::ResumeInterrupted() {
  ASSIGN_OR_RETURN(
      std::vector<std::string> downloading,
      context_.models->ListNamesPreparing(v1::PREPARATION_STATE_DOWNLOADING));
  for (const std::string& name : downloading) {
    absl::StatusOr<v1::Model> model = context_.models->GetModel(name);
    if (!model.ok()) continue;
    absl::StatusOr<v1::Preparation> resumed =
        PrepareFromHub(*model, /*background=*/true);
    if (!resumed.ok()) {
      v1::Preparation failed = model->preparation();
      failed.set_state(v1::PREPARATION_STATE_FAILED);
      failed.set_failure_reason(resumed.status().ToString());
      context_.models->SetPreparation(name, failed).IgnoreError();
      LogState(name, failed);
      context_.notifier->Notify(name);
    }
  }
  return absl::OkStatus();
}

}  // namespace hangar::catalog
