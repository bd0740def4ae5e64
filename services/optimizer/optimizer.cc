#include "services/optimizer/optimizer.h"

#include <sys/stat.h>

#include <filesystem>
#include <iostream>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/api/job_state.h"
#include "common/api/page_token.h"
#include "common/api/time.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "services/optimizer/conversion.h"

namespace hangar::optimizer {
namespace {

// Time-ordered ids: names sort by creation time.
std::string NewId(Clock* clock) {
  static std::mt19937_64 rng{std::random_device{}()};
  static absl::Mutex mu;
  uint64_t r;
  {
    absl::MutexLock lock(&mu);
    r = rng();
  }
  return absl::StrFormat("%013x%06x", absl::ToUnixMicros(clock->Now()),
                         r & 0xffffff);
}

bool IsSha256(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!absl::ascii_isxdigit(c) || absl::ascii_isupper(c)) return false;
  return true;
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool IsDirectoryOrFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 &&
         (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode));
}

v1::QualityReport ToProto(const QualityFigures& f) {
  v1::QualityReport q;
  q.set_prompts(f.prompts);
  q.set_positions(f.positions);
  q.set_max_abs_logit_error(f.max_abs_logit_error);
  q.set_mean_kl(f.mean_kl);
  q.set_greedy_agreement(f.greedy_agreement);
  q.set_size_ratio(f.size_ratio);
  q.set_max_abs_logit_error_bound(f.max_abs_logit_error_bound);
  q.set_passed(f.passed);
  for (const std::string& n : f.notes) q.add_notes(n);
  return q;
}

v1::OptimizationPhase PhaseOf(const std::string& phase) {
  if (phase == "evaluating") return v1::OPTIMIZATION_PHASE_EVALUATING;
  if (phase == "done") return v1::OPTIMIZATION_PHASE_DONE;
  return v1::OPTIMIZATION_PHASE_CONVERTING;
}

// What identifies a request's input (request ids bind to it).
std::string Fingerprint(const v1::CreateOptimizationJobRequest& r) {
  return absl::StrCat(r.job().model(), "|", r.job().recipe().engine(), "|",
                      r.job().recipe().quantization(), "|", r.job().hardware(),
                      "|", r.source_path(), "|", r.source_sha256());
}

}  // namespace

absl::StatusOr<RecipeName> Optimizer::RecipeFromProto(
    const v1::OptimizationRecipe& recipe, const std::string& field) {
  std::string engine;
  if (recipe.engine() == v1::ENGINE_CTRANSLATE2) engine = "CTRANSLATE2";
  if (recipe.engine() == v1::ENGINE_VLLM) engine = "VLLM";
  if (engine.empty()) {
    return InvalidField(
        absl::StrCat(field, ".engine"),
        absl::StrCat("must be ENGINE_CTRANSLATE2 or ENGINE_VLLM; was ",
                     v1::Engine_Name(recipe.engine())));
  }
  std::string q = v1::Quantization_Name(recipe.quantization());
  if (recipe.quantization() == v1::QUANTIZATION_UNSPECIFIED || q.empty()) {
    return InvalidField(absl::StrCat(field, ".quantization"), "required");
  }
  q = absl::AsciiStrToLower(q.substr(std::string("QUANTIZATION_").size()));
  absl::StatusOr<RecipeName> r = ParseRecipe(engine + "/" + q);
  if (!r.ok()) {
    return InvalidField(
        absl::StrCat(field, ".quantization"),
        absl::StrCat(v1::Quantization_Name(recipe.quantization()),
                     " is not allowed with ", v1::Engine_Name(recipe.engine()),
                     " (", r.status().message(), ")"));
  }
  return r;
}

absl::StatusOr<std::unique_ptr<Optimizer>> Optimizer::Create(Options options) {
  if (options.model_store.empty())
    return InvalidField("model_store", "required");
  if (options.optimize_binary.empty())
    return InvalidField("optimize_binary", "required");
  if (options.store == nullptr || options.scheduler == nullptr ||
      options.notifier == nullptr || options.clock == nullptr) {
    return absl::InvalidArgumentError(
        "Optimizer: store, scheduler, notifier and clock are required");
  }
  if (options.watch_slice <= absl::ZeroDuration())
    return InvalidField("watch_slice", "must be positive");
  if (options.max_jobs < 1 || options.max_jobs > 256) {
    return InvalidField("max_jobs", absl::StrCat("must be in [1, 256]; was ",
                                                 options.max_jobs));
  }
  for (const auto& [recipe, bound] : options.max_logit_error_bounds) {
    if (!ParseRecipe(recipe).ok() || !(bound >= 0)) {
      return InvalidField(
          "max_logit_error_bounds",
          absl::StrCat("'", recipe, "=", bound, "' is not RECIPE=BOUND>=0"));
    }
  }
  if (options.gc_grace < absl::ZeroDuration())
    return InvalidField("gc_grace", "must be >= 0");
  std::unique_ptr<Optimizer> o(new Optimizer(std::move(options)));
  ASSIGN_OR_RETURN(o->collector_,
                   ArtifactCollector::Create(
                       {.artifacts_dir = o->options_.model_store + "/artifacts",
                        .grace = o->options_.gc_grace,
                        .store = o->options_.store,
                        .clock = o->options_.clock}));
  ASSIGN_OR_RETURN(o->tasks_,
                   TaskGroup::Create({.name = "optimizer jobs",
                                      .max_threads = o->options_.max_jobs,
                                      .max_queued = 1 << 16,
                                      .clock = o->options_.clock}));
  return o;
}

Optimizer::Optimizer(Options options) : options_(std::move(options)) {}

Optimizer::~Optimizer() {
  if (tasks_ != nullptr) tasks_->Shutdown();
}

int Optimizer::followed() const {
  absl::MutexLock lock(&mu_);
  return int(following_.size());
}

absl::Status Optimizer::Start() {
  ASSIGN_OR_RETURN(std::vector<StoredJob> jobs,
                   options_.store->ListUnfinishedJobs());
  for (const StoredJob& j : jobs) RETURN_IF_ERROR(Follow(j.job.name()));
  if (options_.collect_at_start) {
    absl::StatusOr<v1::GarbageCollectArtifactsResponse> r =
        collector_->Collect(false);
    if (!r.ok()) {
      std::cerr << "optimizer: start-up artifact collection failed: "
                << r.status() << "\n";
    } else if (r->removed_size() > 0) {
      std::cerr << "optimizer: start-up artifact collection removed "
                << r->removed_size() << " paths, " << r->bytes_freed()
                << " bytes\n";
    }
  }
  return absl::OkStatus();
}

v1::JobSpec Optimizer::SpecFor(const StoredJob& j) const {
  v1::JobSpec spec;
  const std::string recipe = absl::StrCat(
      j.job.recipe().engine() == v1::ENGINE_VLLM ? "VLLM" : "CTRANSLATE2", "/",
      absl::AsciiStrToLower(
          v1::Quantization_Name(j.job.recipe().quantization()).substr(13)));
  for (const std::string& a :
       {options_.optimize_binary, std::string("--source"), j.source_path,
        std::string("--recipe"), recipe, std::string("--out"), j.output_path}) {
    spec.add_argv(a);
  }
  if (auto it = options_.max_logit_error_bounds.find(recipe);
      it != options_.max_logit_error_bounds.end()) {
    spec.add_argv("--max_logit_error");
    spec.add_argv(absl::StrCat(it->second));
  }
  spec.set_hardware(j.job.hardware());
  spec.set_owner("optimizer:" + j.job.name());
  return spec;
}

absl::StatusOr<v1::OptimizationJob> Optimizer::CreateJob(
    const v1::CreateOptimizationJobRequest& request) {
  const std::string& rid = request.request_id();
  if (rid.empty() || rid.size() > 64) {
    return InvalidField(
        "request_id",
        absl::StrCat("must be 1 to 64 characters; was ", rid.size()));
  }
  if (request.job().model().empty())
    return InvalidField("job.model", "required");
  if (request.job().hardware().empty())
    return InvalidField("job.hardware", "required");
  ASSIGN_OR_RETURN(RecipeName recipe,
                   RecipeFromProto(request.job().recipe(), "job.recipe"));
  if (request.source_path().empty() ||
      !IsDirectoryOrFile(request.source_path())) {
    return InvalidField(
        "source_path",
        absl::StrCat("must be an existing model directory or GGUF file; was '",
                     request.source_path(), "'"));
  }
  if (!IsSha256(request.source_sha256())) {
    return InvalidField("source_sha256",
                        absl::StrCat("must be 64 lower-case hex digits; was '",
                                     request.source_sha256(), "'"));
  }
  const std::string fingerprint = Fingerprint(request);
  auto same_request =
      [&](const JobStore::Claimed& c) -> absl::StatusOr<v1::OptimizationJob> {
    if (c.fingerprint != fingerprint) {
      return InvalidField(
          "request_id",
          absl::StrCat("was used before with a different request; was '", rid,
                       "'"));
    }
    return c.job.job;
  };
  ASSIGN_OR_RETURN(std::optional<JobStore::Claimed> seen,
                   options_.store->FindRequest(rid));
  if (seen.has_value()) return same_request(*seen);

  const absl::Time now = options_.clock->Now();
  StoredJob j;
  j.job.set_name("opt-" + NewId(options_.clock));
  j.job.set_model(request.job().model());
  *j.job.mutable_recipe() = request.job().recipe();
  j.job.set_hardware(request.job().hardware());
  j.job.set_source_sha256(request.source_sha256());
  *j.job.mutable_create_time() = ToProtoTimestamp(now);
  j.source_path = request.source_path();
  j.output_path = absl::StrCat(options_.model_store, "/artifacts/",
                               request.source_sha256(), "-", recipe.Slug());

  // A finished artifact of the same input: reuse it at once.
  ASSIGN_OR_RETURN(
      std::optional<v1::Artifact> artifact,
      options_.store->FindArtifact(request.source_sha256(), recipe.Slug()));
  if (artifact.has_value() && IsDirectory(artifact->path())) {
    j.job.set_state(v1::JOB_STATE_SUCCEEDED);
    j.job.set_reused(true);
    *j.job.mutable_artifact() = *artifact;
    *j.job.mutable_quality() = artifact->quality();
    j.job.mutable_progress()->set_phase(v1::OPTIMIZATION_PHASE_DONE);
    *j.job.mutable_start_time() = ToProtoTimestamp(now);
    *j.job.mutable_end_time() = ToProtoTimestamp(now);
    // Under the key's lock, only while the artifact is still recorded (a
    // collection may have removed it since FindArtifact).
    ASSIGN_OR_RETURN(
        std::optional<JobStore::Claimed> c,
        options_.store->CreateReusingJob(j, rid, fingerprint, recipe.Slug()));
    if (c.has_value()) {
      if (!c->created) return same_request(*c);
      if (options_.metrics != nullptr)
        options_.metrics->JobState(recipe.ToString(), v1::JOB_STATE_SUCCEEDED);
      return c->job.job;
    }
    j.job.clear_reused();
    j.job.clear_artifact();
    j.job.clear_quality();
    j.job.clear_progress();
    j.job.clear_start_time();
    j.job.clear_end_time();
  }
  // The same input converting now: share that job.
  ASSIGN_OR_RETURN(std::optional<StoredJob> running,
                   options_.store->FindUnfinishedJob(request.source_sha256(),
                                                     recipe.Slug()));
  if (running.has_value()) {
    ASSIGN_OR_RETURN(
        JobStore::Claimed c,
        options_.store->BindRequest(rid, fingerprint, running->job.name()));
    return same_request(c);
  }
  j.job.set_state(v1::JOB_STATE_PENDING);
  j.job.mutable_progress()->set_phase(v1::OPTIMIZATION_PHASE_PENDING);
  ASSIGN_OR_RETURN(JobStore::Claimed c,
                   options_.store->CreateJob(j, rid, fingerprint));
  if (!c.created) return same_request(c);
  if (options_.metrics != nullptr)
    options_.metrics->JobState(recipe.ToString(), v1::JOB_STATE_PENDING);
  // Submitting happens in the follower; a failure there is retried, and a
  // restart resumes it (the job is stored PENDING without a scheduler job).
  RETURN_IF_ERROR(Follow(c.job.job.name()));
  return c.job.job;
}

absl::StatusOr<v1::OptimizationJob> Optimizer::GetJob(const std::string& name) {
  ASSIGN_OR_RETURN(StoredJob j, options_.store->GetJob(name));
  return j.job;
}

absl::StatusOr<v1::ListOptimizationJobsResponse> Optimizer::ListJobs(
    const v1::ListOptimizationJobsRequest& request) {
  ASSIGN_OR_RETURN(int limit, ResolvePageSize(request.page_size()));
  const std::string filters = FilterFingerprint(request);
  ASSIGN_OR_RETURN(std::string after,
                   DecodePageToken(request.page_token(), filters));
  ASSIGN_OR_RETURN(
      JobPage page,
      options_.store->ListJobs(
          {.model = request.model(), .state = request.state()}, after, limit));
  v1::ListOptimizationJobsResponse response;
  for (StoredJob& j : page.jobs) *response.add_jobs() = std::move(j.job);
  if (page.more && response.jobs_size() > 0) {
    response.set_next_page_token(EncodePageToken(
        response.jobs(response.jobs_size() - 1).name(), filters));
  }
  return response;
}

absl::StatusOr<v1::ListArtifactsResponse> Optimizer::ListArtifacts(
    const v1::ListArtifactsRequest& request) {
  ASSIGN_OR_RETURN(int limit, ResolvePageSize(request.page_size()));
  const std::string filters = FilterFingerprint(request);
  ASSIGN_OR_RETURN(std::string after,
                   DecodePageToken(request.page_token(), filters));
  ASSIGN_OR_RETURN(ArtifactPage page, options_.store->ListArtifacts(
                                          request.model(), after, limit));
  v1::ListArtifactsResponse response;
  for (v1::Artifact& a : page.artifacts)
    *response.add_artifacts() = std::move(a);
  if (page.more && response.artifacts_size() > 0) {
    response.set_next_page_token(EncodePageToken(
        response.artifacts(response.artifacts_size() - 1).name(), filters));
  }
  return response;
}

absl::StatusOr<v1::OptimizationJob> Optimizer::ReleaseJob(
    const v1::ReleaseOptimizationJobRequest& request) {
  const std::string& rid = request.request_id();
  if (rid.empty() || rid.size() > 64) {
    return InvalidField(
        "request_id",
        absl::StrCat("must be 1 to 64 characters; was ", rid.size()));
  }
  if (!request.name().empty()) {
    ASSIGN_OR_RETURN(std::optional<JobStore::Claimed> seen,
                     options_.store->FindRequest(rid));
    if (seen.has_value() && seen->job.job.name() != request.name()) {
      return absl::FailedPreconditionError(
          absl::StrCat("request id '", rid, "' is bound to ",
                       seen->job.job.name(), ", not ", request.name()));
    }
  }
  ASSIGN_OR_RETURN(JobStore::Released r,
                   options_.store->ReleaseRequest(rid, options_.clock->Now()));
  return r.job.job;
}

absl::StatusOr<v1::GarbageCollectArtifactsResponse> Optimizer::CollectGarbage(
    const v1::GarbageCollectArtifactsRequest& request) {
  return collector_->Collect(request.dry_run());
}

absl::StatusOr<v1::OptimizationJob> Optimizer::CancelJob(
    const std::string& name) {
  std::string scheduler_job;
  StoredJob after;
  {
    absl::MutexLock lock(&write_mu_);
    ASSIGN_OR_RETURN(StoredJob j, options_.store->GetJob(name));
    if (IsTerminalJobState(j.job.state())) {
      return absl::FailedPreconditionError(absl::StrCat(
          name, " has already ended (", v1::JobState_Name(j.job.state()), ")"));
    }
    scheduler_job = j.job.scheduler_job();
    after = j;
    after.job.set_state(v1::JOB_STATE_CANCELLED);
    after.job.set_failure_reason("cancelled by a user");
    *after.job.mutable_end_time() = ToProtoTimestamp(options_.clock->Now());
    RETURN_IF_ERROR(Store(j, after));
  }
  if (!scheduler_job.empty()) {
    // Best effort: the follower keeps watching and cancels again if this
    // call fails; hangar-optimize removes its temporary directory.
    (void)options_.scheduler->CancelJob(scheduler_job);
  }
  return after.job;
}

absl::Status Optimizer::Store(const StoredJob& before, StoredJob& after) {
  RETURN_IF_ERROR(options_.store->UpdateJob(after));
  if (before.job.state() != after.job.state() && options_.metrics != nullptr) {
    absl::StatusOr<RecipeName> r =
        RecipeFromProto(after.job.recipe(), "recipe");
    const std::string recipe = r.ok() ? r->ToString() : "unknown";
    options_.metrics->JobState(recipe, after.job.state());
    if (IsTerminalJobState(after.job.state())) {
      double seconds = absl::ToDoubleSeconds(
          options_.clock->Now() - FromProtoTimestamp(after.job.create_time()));
      options_.metrics->JobEnded(
          recipe, seconds, after.job.artifact().size_bytes(),
          after.job.has_quality() ? &after.job.quality() : nullptr);
    }
  }
  options_.notifier->Notify(after.job.name());
  return absl::OkStatus();
}

absl::Status Optimizer::Follow(const std::string& name) {
  {
    absl::MutexLock lock(&mu_);
    if (!following_.insert(name).second) return absl::OkStatus();
  }
  absl::Status s = tasks_->Submit([this, name](const StopToken& stop) {
    FollowLoop(name, stop);
    absl::MutexLock lock(&mu_);
    following_.erase(name);
  });
  if (!s.ok()) {
    absl::MutexLock lock(&mu_);
    following_.erase(name);
  }
  return s;
}

void Optimizer::FollowLoop(const std::string& name, const StopToken& stop) {
  auto backoff = [&] {
    return stop.WaitUntil(options_.clock,
                          options_.clock->Now() + options_.retry_backoff);
  };
  while (!stop.stop_requested()) {
    absl::StatusOr<StoredJob> j = options_.store->GetJob(name);
    if (!j.ok()) {
      if (absl::IsNotFound(j.status())) return;
      if (backoff()) return;
      continue;
    }
    if (j->job.scheduler_job().empty()) {
      if (IsTerminalJobState(j->job.state()))
        return;  // Cancelled before it was submitted.
      absl::StatusOr<v1::Job> submitted =
          options_.scheduler->SubmitJob(SpecFor(*j), "optimizer-" + name);
      if (!submitted.ok()) {
        if (absl::IsInvalidArgument(submitted.status())) {
          // The scheduler refuses the job (an unknown offering): final.
          absl::MutexLock lock(&write_mu_);
          absl::StatusOr<StoredJob> cur = options_.store->GetJob(name);
          if (cur.ok() && !IsTerminalJobState(cur->job.state())) {
            StoredJob after = *cur;
            after.job.set_state(v1::JOB_STATE_FAILED);
            after.job.set_failure_reason(absl::StrCat(
                "scheduler refused the job: ", submitted.status().message()));
            *after.job.mutable_end_time() =
                ToProtoTimestamp(options_.clock->Now());
            (void)Store(*cur, after);
          }
          return;
        }
        if (backoff()) return;
        continue;
      }
      absl::MutexLock lock(&write_mu_);
      absl::StatusOr<StoredJob> cur = options_.store->GetJob(name);
      if (!cur.ok()) continue;
      StoredJob after = *cur;
      after.job.set_scheduler_job(submitted->name());
      if (!Store(*cur, after).ok()) continue;
      if (IsTerminalJobState(cur->job.state())) {
        // Cancelled while submitting: cancel the scheduler job too.
        (void)options_.scheduler->CancelJob(submitted->name());
        return;
      }
      continue;
    }
    if (j->job.state() == v1::JOB_STATE_CANCELLED) {
      // Make sure the scheduler job stops; then follow it to its end so
      // nothing it wrote is mistaken for an artifact.
      (void)options_.scheduler->CancelJob(j->job.scheduler_job());
    }
    bool ended = false;
    absl::Status watch = options_.scheduler->WatchJob(
        j->job.scheduler_job(),
        [&](const v1::Job& sched) { ended = Apply(name, sched) || ended; },
        options_.watch_slice);
    if (ended) return;
    if (absl::IsNotFound(watch)) {
      // The scheduler forgot the job: submit it again (same request id).
      absl::MutexLock lock(&write_mu_);
      absl::StatusOr<StoredJob> cur = options_.store->GetJob(name);
      if (cur.ok() && !IsTerminalJobState(cur->job.state())) {
        StoredJob after = *cur;
        after.job.clear_scheduler_job();
        (void)Store(*cur, after);
      }
      continue;
    }
    if (!watch.ok() && !absl::IsDeadlineExceeded(watch) && backoff()) return;
  }
}

bool Optimizer::Apply(const std::string& name, const v1::Job& sched) {
  absl::MutexLock lock(&write_mu_);
  absl::StatusOr<StoredJob> cur = options_.store->GetJob(name);
  if (!cur.ok()) return false;
  const bool sched_ended = IsTerminalJobState(sched.state());
  if (IsTerminalJobState(cur->job.state())) {
    // Cancelled here: once the scheduler job has ended, nothing it left may
    // stay (a conversion that finished just before the cancel).
    if (sched_ended && cur->job.state() == v1::JOB_STATE_CANCELLED) {
      absl::StatusOr<RecipeName> recipe =
          RecipeFromProto(cur->job.recipe(), "recipe");
      absl::StatusOr<std::optional<v1::Artifact>> artifact =
          recipe.ok()
              ? options_.store->FindArtifact(cur->job.source_sha256(),
                                             recipe->Slug())
              : absl::StatusOr<std::optional<v1::Artifact>>(recipe.status());
      if (artifact.ok() && !artifact->has_value()) {
        std::error_code ec;
        std::filesystem::remove_all(cur->output_path, ec);
      }
    }
    return sched_ended;
  }
  StoredJob after = *cur;
  v1::OptimizationJob& job = after.job;
  ParsedOutput out = ParseConversionOutput(sched.log_tail());
  if (out.progress.has_value()) {
    v1::OptimizationProgress* p = job.mutable_progress();
    p->set_phase(PhaseOf(out.progress->phase));
    p->set_tensors_done(out.progress->tensors_done);
    p->set_tensors_total(out.progress->tensors_total);
    p->set_bytes_written(out.progress->bytes_written);
    p->set_message(out.progress->message);
  }
  if (out.report.has_value()) *job.mutable_quality() = ToProto(*out.report);
  const absl::Time now = options_.clock->Now();
  switch (sched.state()) {
    case v1::JOB_STATE_PENDING:
      job.set_state(v1::JOB_STATE_PENDING);
      job.set_pending_reason(sched.pending_reason());
      job.mutable_progress()->set_phase(v1::OPTIMIZATION_PHASE_PENDING);
      break;
    case v1::JOB_STATE_RUNNING:
      job.set_state(v1::JOB_STATE_RUNNING);
      job.clear_pending_reason();
      if (!job.has_start_time())
        *job.mutable_start_time() = ToProtoTimestamp(now);
      if (!out.progress.has_value())
        job.mutable_progress()->set_phase(v1::OPTIMIZATION_PHASE_CONVERTING);
      break;
    case v1::JOB_STATE_SUCCEEDED: {
      if (!out.report.has_value() || !out.report->passed ||
          !IsDirectory(cur->output_path)) {
        job.set_state(v1::JOB_STATE_FAILED);
        job.set_failure_reason(
            absl::StrCat("hangar-optimize exited 0 without a passing report "
                         "and artifact at ",
                         cur->output_path));
        break;
      }
      absl::StatusOr<RecipeName> recipe =
          RecipeFromProto(job.recipe(), "recipe");
      v1::Artifact a;
      a.set_name("art-" + NewId(options_.clock));
      a.set_model(job.model());
      *a.mutable_recipe() = job.recipe();
      a.set_path(cur->output_path);
      a.set_source_sha256(job.source_sha256());
      a.set_size_bytes(out.report->size_bytes);
      *a.mutable_quality() = job.quality();
      *a.mutable_create_time() = ToProtoTimestamp(now);
      if (!recipe.ok() || !options_.store->PutArtifact(a, recipe->Slug()).ok())
        return false;  // Retried.
      *job.mutable_artifact() = a;
      job.set_state(v1::JOB_STATE_SUCCEEDED);
      job.mutable_progress()->set_phase(v1::OPTIMIZATION_PHASE_DONE);
      break;
    }
    case v1::JOB_STATE_FAILED:
      job.set_state(v1::JOB_STATE_FAILED);
      if (sched.exit_code() == kExitQualityGate && out.report.has_value()) {
        job.set_failure_reason(
            absl::StrFormat("quality gate: max |logit error| %g is beyond the "
                            "recipe's bound %g",
                            out.report->max_abs_logit_error,
                            out.report->max_abs_logit_error_bound));
      } else if (out.error.has_value()) {
        job.set_failure_reason(absl::StrCat(
            "hangar-optimize exited ", sched.exit_code(), ": ", *out.error));
      } else {
        job.set_failure_reason(
            absl::StrCat("scheduler job ", sched.name(), " failed (exit code ",
                         sched.exit_code(), "): ", sched.failure_reason()));
      }
      break;
    case v1::JOB_STATE_CANCELLED:
      job.set_state(v1::JOB_STATE_CANCELLED);
      job.set_failure_reason(absl::StrCat("the scheduler cancelled the job: ",
                                          sched.failure_reason()));
      break;
    default:
      break;
  }
  if (IsTerminalJobState(job.state()))
    *job.mutable_end_time() = ToProtoTimestamp(now);
  if (!Store(*cur, after).ok()) return false;
  return IsTerminalJobState(job.state());
}

}  // namespace hangar::optimizer
