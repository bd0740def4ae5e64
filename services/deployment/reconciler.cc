#include "services/deployment/reconciler.h"

#include <algorithm>
#include <iostream>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/api/time.h"
#include "common/status/status_macros.h"
#include "google/protobuf/util/message_differencer.h"
#include "services/deployment/deployments.h"

namespace hangar::deployment {
namespace {

using google::protobuf::util::MessageDifferencer;

constexpr int kMaxRevisions = 1000;
// The scheduler's bound on ReplicaSetSpec.context_length.
constexpr int kMaxContextLength = 1 << 20;
// When the catalog does not say (a model without config numbers).
constexpr int kDefaultContextLength = 2048;

bool InFlight(v1::DeploymentState state) {
  switch (state) {
    case v1::DEPLOYMENT_STATE_PENDING:
    case v1::DEPLOYMENT_STATE_FETCHING:
    case v1::DEPLOYMENT_STATE_OPTIMIZING:
    case v1::DEPLOYMENT_STATE_SCHEDULING:
    case v1::DEPLOYMENT_STATE_DEPLOYING:
      return true;
    default:
      return false;
  }
}

bool Transient(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status) ||
         absl::IsAborted(status) || absl::IsInternal(status) ||
         absl::IsResourceExhausted(status) || absl::IsUnknown(status);
}

void Log(const std::string& name, const std::string& what) {
  std::cerr << "deployment: event=reconcile deployment=" << name << " " << what
            << std::endl;
}

// Everything one pass works on: the row, its revisions as read and as
// changed, the scheduler's sets, and what to write.
struct PassState {
  v1::Deployment read;  // As read (etag set).
  v1::Deployment next;  // What to write.
  std::map<int64_t, v1::Revision> original;
  std::map<int64_t, v1::Revision> revisions;  // Working copies.
  std::map<int64_t, v1::ReplicaSet> sets;     // Live at the scheduler.
  std::vector<ReplicaSample> samples;
  bool again = false;
  // A dependency could not be asked; the reason is shown while retrying.
  std::string retrying;
  bool revoke_keys = false;
};

void Sample(const v1::ReplicaSet& set, std::vector<ReplicaSample>* samples) {
  for (const v1::Replica& replica : set.replicas()) {
    if (replica.replica_seconds() <= 0) continue;
    samples->push_back({.deployment = set.spec().deployment(),
                        .revision = set.spec().revision(),
                        .hardware = set.spec().hardware(),
                        .replica = replica.name(),
                        .replica_create_micros = absl::ToUnixMicros(
                            FromProtoTimestamp(replica.create_time())),
                        .cumulative_seconds = replica.replica_seconds()});
  }
}

int PlacedReplicas(const v1::ReplicaSet& set) {
  int placed = 0;
  for (const v1::Replica& replica : set.replicas()) {
    if (replica.state() == v1::REPLICA_STATE_STARTING ||
        replica.state() == v1::REPLICA_STATE_READY ||
        replica.state() == v1::REPLICA_STATE_DRAINING) {
      ++placed;
    }
  }
  return placed;
}

}  // namespace

std::string OptimizationRequestId(const std::string& deployment,
                                  int64_t revision) {
  return absl::StrCat(deployment, "-r", revision, "-opt");
}

absl::StatusOr<std::unique_ptr<Reconciler>> Reconciler::Create(
    Options options) {
  if (options.owner.empty()) {
    return absl::InvalidArgumentError(
        "owner: required (this process's name in leases)");
  }
  if (options.lease_duration < absl::Seconds(1) ||
      options.lease_duration > absl::Hours(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("lease_duration: must be in [1s, 1h]; was ",
                     absl::FormatDuration(options.lease_duration)));
  }
  if (options.resync_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("resync_interval: must be positive; was ",
                     absl::FormatDuration(options.resync_interval)));
  }
  if (options.active_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("active_interval: must be positive; was ",
                     absl::FormatDuration(options.active_interval)));
  }
  if (options.lease_duration <= options.active_interval) {
    return absl::InvalidArgumentError(
        "lease_duration: must exceed active_interval (a lease is renewed by "
        "every pass)");
  }
  if (options.deploy_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("deploy_timeout: must be positive; was ",
                     absl::FormatDuration(options.deploy_timeout)));
  }
  if (options.drain_seconds < 0 || options.drain_seconds > 3600) {
    return absl::InvalidArgumentError(absl::StrCat(
        "drain_seconds: must be in [0, 3600]; was ", options.drain_seconds));
  }
  if (options.threads_per_replica < 1 || options.threads_per_replica > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("threads_per_replica: must be in [1, 256]; was ",
                     options.threads_per_replica));
  }
  if (options.max_context_length < 1 ||
      options.max_context_length > kMaxContextLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_context_length: must be in [1, ", kMaxContextLength,
                     "]; was ", options.max_context_length));
  }
  if (options.store == nullptr || options.catalog == nullptr ||
      options.optimizer == nullptr || options.scheduler == nullptr ||
      options.models == nullptr || options.offerings == nullptr ||
      options.notifier == nullptr || options.clock == nullptr) {
    return absl::InvalidArgumentError(
        "Reconciler: store, catalog, optimizer, scheduler, models, offerings, "
        "notifier and clock are required");
  }
  return std::unique_ptr<Reconciler>(new Reconciler(std::move(options)));
}

Reconciler::Reconciler(Options options) : options_(std::move(options)) {}

Reconciler::~Reconciler() { Stop(); }

void Reconciler::Start() {
  if (options_.events != nullptr) {
    // At least once: a change that committed just before a crash is told
    // again here (the sink deduplicates).
    std::string after;
    for (;;) {
      absl::StatusOr<std::vector<v1::Deployment>> page =
          options_.store->List({}, after, 1000);
      if (!page.ok()) {
        Log("*", absl::StrCat("startup_events_failed error=\"",
                              page.status().ToString(), "\""));
        break;
      }
      if (page->empty()) break;
      after = page->back().name();
      for (const v1::Deployment& deployment : *page) {
        options_.events->OnDeploymentStateChanged(deployment);
      }
    }
  }
  thread_ = std::thread([this] { Loop(); });
}

void Reconciler::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  std::map<std::string, bool> leased;
  {
    absl::MutexLock lock(&mu_);
    leased.swap(leased_);
  }
  absl::MutexLock pass_lock(&pass_mu_);
  for (const auto& [name, held] : leased) {
    (void)options_.store->ReleaseLease(name, options_.owner);
  }
}

void Reconciler::Wake(const std::string& name) {
  absl::MutexLock lock(&mu_);
  Due(name, absl::InfinitePast());
}

void Reconciler::Due(const std::string& name, absl::Time when) {
  auto [it, inserted] = due_.emplace(name, when);
  if (!inserted) it->second = std::min(it->second, when);
}

int64_t Reconciler::passes() const {
  absl::MutexLock lock(&mu_);
  return passes_;
}

void Reconciler::Loop() {
  for (;;) {
    std::string name;
    bool resync = false;
    {
      absl::MutexLock lock(&mu_);
      for (;;) {
        if (stopping_) return;
        const absl::Time now = options_.clock->Now();
        if (now >= next_resync_) {
          resync = true;
          next_resync_ = now + options_.resync_interval;
          break;
        }
        auto earliest = due_.end();
        for (auto it = due_.begin(); it != due_.end(); ++it) {
          if (earliest == due_.end() || it->second < earliest->second) {
            earliest = it;
          }
        }
        if (earliest != due_.end() && earliest->second <= now) {
          name = earliest->first;
          due_.erase(earliest);
          break;
        }
        absl::Time deadline = next_resync_;
        if (earliest != due_.end()) {
          deadline = std::min(deadline, earliest->second);
        }
        // Wakes when a deployment becomes due at once (Wake) or on Stop.
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          if (stopping_) return true;
          for (const auto& [key, when] : due_) {
            if (when == absl::InfinitePast()) return true;
          }
          return false;
        };
        options_.clock->AwaitWithDeadline(&mu_, absl::Condition(&ready),
                                          deadline);
      }
    }
    if (resync) {
      std::vector<std::string> names;
      std::string after;
      for (;;) {
        absl::StatusOr<std::vector<v1::Deployment>> page =
            options_.store->List({}, after, 1000);
        if (!page.ok()) {
          Log("*", absl::StrCat("resync_failed error=\"",
                                page.status().ToString(), "\""));
          break;
        }
        if (page->empty()) break;
        after = page->back().name();
        for (const v1::Deployment& deployment : *page) {
          names.push_back(deployment.name());
        }
      }
      absl::MutexLock lock(&mu_);
      const absl::Time now = options_.clock->Now();
      for (const std::string& n : names) Due(n, now);
      continue;
    }
    bool again = false;
    absl::Status status = Pass(name, &again);
    if (!status.ok()) {
      Log(name, absl::StrCat("pass_failed error=\"", status.ToString(), "\""));
      again = true;
    }
    if (again) {
      absl::MutexLock lock(&mu_);
      Due(name, options_.clock->Now() + options_.active_interval);
    }
  }
}

absl::Status Reconciler::ReconcileAll() {
  absl::Status first;
  std::string after;
  for (;;) {
    ASSIGN_OR_RETURN(std::vector<v1::Deployment> page,
                     options_.store->List({}, after, 1000));
    if (page.empty()) break;
    after = page.back().name();
    for (const v1::Deployment& deployment : page) {
      bool again = false;
      absl::Status status = Pass(deployment.name(), &again);
      if (!status.ok() && first.ok()) first = status;
    }
  }
  return first;
}

absl::Status Reconciler::ReconcileOne(const std::string& name) {
  bool again = false;
  return Pass(name, &again);
}

absl::Status Reconciler::Pass(const std::string& name, bool* again) {
  absl::MutexLock pass_lock(&pass_mu_);
  {
    absl::MutexLock lock(&mu_);
    ++passes_;
  }
  DeploymentStore& store = *options_.store;
  const absl::Time now = options_.clock->Now();
  ASSIGN_OR_RETURN(bool held,
                   store.AcquireLease(name, options_.owner, now,
                                      now + options_.lease_duration));
  if (!held) {
    // Another process drives it; the resync looks again.
    absl::MutexLock lock(&mu_);
    leased_.erase(name);
    return absl::OkStatus();
  }
  {
    absl::MutexLock lock(&mu_);
    leased_[name] = true;
  }
  PassState p;
  ASSIGN_OR_RETURN(p.read, store.Get(name));
  if (p.read.state() == v1::DEPLOYMENT_STATE_DELETED) {
    absl::MutexLock lock(&mu_);
    leased_.erase(name);
    return store.ReleaseLease(name, options_.owner);
  }
  p.next = p.read;
  ASSIGN_OR_RETURN(std::vector<v1::Revision> revisions,
                   store.ListRevisions(name, 0, kMaxRevisions));
  for (v1::Revision& revision : revisions) {
    p.original[revision.number()] = revision;
    p.revisions[revision.number()] = std::move(revision);
  }
  ASSIGN_OR_RETURN(std::vector<v1::ReplicaSet> sets,
                   options_.scheduler->ListReplicaSets(name));
  for (v1::ReplicaSet& set : sets) {
    Sample(set, &p.samples);
    p.sets[set.spec().revision()] = std::move(set);
  }

  // Helpers over `p`.
  // A revision that will never serve again gives up its hold on its
  // optimizer artifact, so the optimizer may collect an artifact no
  // revision uses (a newer revision with the same recipe holds it under its
  // own request id). Idempotent; a failure is logged, not retried: the cost
  // is disk, not correctness.
  auto release_artifact = [&](const v1::Revision& revision) {
    if (revision.optimization_job().empty()) return;
    absl::Status released = options_.optimizer->ReleaseOptimizationJob(
        OptimizationRequestId(name, revision.number()));
    if (!released.ok() && !absl::IsNotFound(released)) {
      Log(name, absl::StrCat("release_failed job=", revision.optimization_job(),
                             " error=\"", released.ToString(), "\""));
    }
  };
  auto delete_set = [&](int64_t number) -> absl::Status {
    absl::StatusOr<std::optional<v1::ReplicaSet>> final_state =
        options_.scheduler->DeleteReplicaSet(name, number,
                                             options_.drain_seconds);
    if (!final_state.ok()) return final_state.status();
    if (final_state->has_value()) Sample(**final_state, &p.samples);
    p.sets.erase(number);
    auto revision = p.revisions.find(number);
    if (revision != p.revisions.end()) {
      if (revision->second.has_ready_time() &&
          !revision->second.has_retire_time()) {
        *revision->second.mutable_retire_time() = ToProtoTimestamp(now);
      }
      release_artifact(revision->second);
    }
    // A drained set lingers at the scheduler until its replicas stop.
    p.again = true;
    return absl::OkStatus();
  };
  auto cancel_job = [&](const v1::Revision& revision) {
    if (revision.optimization_job().empty()) return;
    absl::Status cancelled =
        options_.optimizer->CancelOptimizationJob(revision.optimization_job());
    if (!cancelled.ok() && !absl::IsFailedPrecondition(cancelled) &&
        !absl::IsNotFound(cancelled)) {
      Log(name, absl::StrCat("cancel_failed job=", revision.optimization_job(),
                             " error=\"", cancelled.ToString(), "\""));
    }
    release_artifact(revision);
  };
  auto fail = [](v1::Revision& revision, std::string reason) {
    revision.set_state(v1::DEPLOYMENT_STATE_FAILED);
    revision.set_state_reason(std::move(reason));
  };

  const v1::DeploymentState state = p.read.state();
  const int64_t latest = p.read.latest_revision();
  int64_t serving = p.read.serving_revision();
  v1::Progress progress;

  if (state == v1::DEPLOYMENT_STATE_DELETING ||
      state == v1::DEPLOYMENT_STATE_UNDEPLOYED) {
    // Release everything.
    for (auto it = deploying_since_.lower_bound({name, 0});
         it != deploying_since_.end() && it->first.first == name;) {
      it = deploying_since_.erase(it);
    }
    const char* why =
        state == v1::DEPLOYMENT_STATE_DELETING ? "deleted" : "undeployed";
    for (auto& [number, revision] : p.revisions) {
      if (InFlight(revision.state())) {
        if (revision.state() == v1::DEPLOYMENT_STATE_OPTIMIZING) {
          cancel_job(revision);
        }
        fail(revision, absl::StrCat("stopped: the deployment was ", why));
      }
      if (revision.has_ready_time() && !revision.has_retire_time()) {
        *revision.mutable_retire_time() = ToProtoTimestamp(now);
      }
    }
    const bool had_sets = !p.sets.empty();
    std::vector<int64_t> numbers;
    for (const auto& [number, set] : p.sets) numbers.push_back(number);
    for (int64_t number : numbers) {
      if (absl::Status deleted = delete_set(number); !deleted.ok()) {
        p.retrying = deleted.ToString();
        p.again = true;
      }
    }
    p.next.set_serving_revision(0);
    p.next.set_ready_replicas(0);
    p.next.set_desired_replicas(0);
    p.next.mutable_hourly_cost()->set_micros(0);
    p.next.clear_progress();
    if (state == v1::DEPLOYMENT_STATE_DELETING) {
      if (!had_sets && p.retrying.empty()) {
        p.next.set_state(v1::DEPLOYMENT_STATE_DELETED);
        p.next.set_state_reason("deleted; replicas released, keys revoked");
        p.revoke_keys = true;
      } else {
        p.next.set_state_reason("deleting: releasing replicas");
        p.again = true;
      }
    } else {
      p.next.set_state_reason(had_sets ? "undeployed: releasing replicas"
                                       : "undeployed: no replica runs");
    }
  } else if (p.revisions.contains(latest)) {
    v1::Revision& rev = p.revisions[latest];
    // A newer revision supersedes any other still on its way.
    for (auto& [number, revision] : p.revisions) {
      if (number == latest || number == serving) continue;
      if (InFlight(revision.state())) {
        if (revision.state() == v1::DEPLOYMENT_STATE_OPTIMIZING) {
          cancel_job(revision);
        }
        fail(revision, absl::StrCat("superseded by revision ", latest));
      }
    }

    std::map<std::string, int> context_lengths;
    auto build_spec = [&](const v1::Revision& revision,
                          bool serve) -> absl::StatusOr<v1::ReplicaSetSpec> {
      const v1::DeploymentSpec& spec = revision.spec();
      auto known = context_lengths.find(spec.model());
      if (known == context_lengths.end()) {
        ASSIGN_OR_RETURN(ModelFacts facts,
                         options_.models->GetModelFacts(spec.model()));
        int context = facts.context_length > 0 ? facts.context_length
                                               : kDefaultContextLength;
        known = context_lengths
                    .emplace(spec.model(),
                             std::min(context, options_.max_context_length))
                    .first;
      }
      v1::ReplicaSetSpec out;
      out.set_deployment(name);
      out.set_revision(revision.number());
      out.set_display_name(p.read.display_name());
      out.set_model(spec.model());
      *out.mutable_recipe() = spec.optimization();
      out.set_artifact_path(revision.artifact());
      out.set_hardware(spec.hardware());
      out.set_min_replicas(spec.min_replicas());
      out.set_max_replicas(spec.max_replicas());
      out.set_scale_up_delay_seconds(spec.scale_up_delay_seconds());
      out.set_scale_down_delay_seconds(spec.scale_down_delay_seconds());
      out.set_inference_batch_size(spec.inference_batch_size());
      out.set_context_length(known->second);
      out.set_threads_per_replica(options_.threads_per_replica);
      *out.mutable_sampling() = spec.sampling();
      out.set_serving(serve);
      return out;
    };
    // Applies revision `revision`'s set unless the scheduler already runs it
    // as wanted. Returns the set.
    auto ensure_set = [&](const v1::Revision& revision,
                          bool serve) -> absl::StatusOr<v1::ReplicaSet> {
      auto have = p.sets.find(revision.number());
      if (have != p.sets.end() && have->second.spec().serving() == serve &&
          have->second.spec().artifact_path() == revision.artifact()) {
        return have->second;
      }
      ASSIGN_OR_RETURN(v1::ReplicaSetSpec spec, build_spec(revision, serve));
      ASSIGN_OR_RETURN(v1::ReplicaSet set,
                       options_.scheduler->ApplyReplicaSet(spec));
      p.sets[revision.number()] = set;
      return set;
    };
    // A call failed: permanent errors fail the revision, others retry.
    auto failed_call = [&](const char* dependency, const absl::Status& status) {
      if (Transient(status)) {
        p.retrying = status.ToString();
        p.again = true;
      } else {
        fail(rev, absl::StrCat(dependency, ": ", status.message()));
      }
    };

    // Drive the newest revision as far as it goes in this pass.
    std::string source_path;
    for (int step = 0; step < 8 && p.retrying.empty(); ++step) {
      const v1::DeploymentState before = rev.state();
      switch (rev.state()) {
        case v1::DEPLOYMENT_STATE_PENDING:
        case v1::DEPLOYMENT_STATE_FETCHING: {
          absl::StatusOr<v1::Preparation> preparation =
              options_.catalog->PrepareModel(rev.spec().model());
          if (!preparation.ok()) {
            failed_call("catalog", preparation.status());
            break;
          }
          if (preparation->state() == v1::PREPARATION_STATE_PREPARED) {
            rev.set_source_sha256(preparation->sha256());
            source_path = preparation->local_path();
            if (rev.spec().optimization().engine() == v1::ENGINE_NONE ||
                rev.spec().optimization().engine() == v1::ENGINE_UNSPECIFIED) {
              rev.set_artifact(preparation->local_path());
              rev.set_state(v1::DEPLOYMENT_STATE_SCHEDULING);
              rev.set_state_reason("placing replicas");
            } else {
              rev.set_state(v1::DEPLOYMENT_STATE_OPTIMIZING);
              rev.set_state_reason("starting the optimizer job");
            }
          } else if (preparation->state() == v1::PREPARATION_STATE_FAILED) {
            fail(rev, absl::StrCat("catalog: preparing ", rev.spec().model(),
                                   " failed: ", preparation->failure_reason()));
          } else {
            rev.set_state(v1::DEPLOYMENT_STATE_FETCHING);
            rev.set_state_reason(
                preparation->progress().message().empty()
                    ? absl::StrCat("downloading ", rev.spec().model())
                    : preparation->progress().message());
            progress = preparation->progress();
            p.again = true;
          }
          break;
        }
        case v1::DEPLOYMENT_STATE_OPTIMIZING: {
          absl::StatusOr<v1::OptimizationJob> job;
          if (rev.optimization_job().empty()) {
            if (source_path.empty()) {
              absl::StatusOr<v1::Preparation> preparation =
                  options_.catalog->PrepareModel(rev.spec().model());
              if (!preparation.ok()) {
                failed_call("catalog", preparation.status());
                break;
              }
              if (preparation->state() != v1::PREPARATION_STATE_PREPARED) {
                rev.set_state(v1::DEPLOYMENT_STATE_FETCHING);
                rev.set_state_reason("the prepared copy went away; fetching");
                p.again = true;
                break;
              }
              source_path = preparation->local_path();
              rev.set_source_sha256(preparation->sha256());
            }
            v1::CreateOptimizationJobRequest request;
            request.mutable_job()->set_model(rev.spec().model());
            *request.mutable_job()->mutable_recipe() =
                rev.spec().optimization();
            request.mutable_job()->set_hardware(rev.spec().hardware());
            request.set_source_path(source_path);
            request.set_source_sha256(rev.source_sha256());
            request.set_request_id(OptimizationRequestId(name, latest));
            job = options_.optimizer->CreateOptimizationJob(request);
            if (job.ok()) rev.set_optimization_job(job->name());
          } else {
            job =
                options_.optimizer->GetOptimizationJob(rev.optimization_job());
          }
          if (!job.ok()) {
            failed_call("optimizer", job.status());
            break;
          }
          if (job->state() == v1::JOB_STATE_SUCCEEDED) {
            rev.set_artifact(job->artifact().path());
            rev.set_state(v1::DEPLOYMENT_STATE_SCHEDULING);
            rev.set_state_reason(
                job->reused()
                    ? absl::StrCat("reused artifact ", job->artifact().name())
                    : "placing replicas");
          } else if (job->state() == v1::JOB_STATE_FAILED) {
            fail(rev, absl::StrCat("optimizer job ", job->name(), ": ",
                                   job->failure_reason()));
          } else if (job->state() == v1::JOB_STATE_CANCELLED) {
            fail(rev,
                 absl::StrCat("optimizer job ", job->name(), " was cancelled"));
          } else {
            const v1::OptimizationProgress& at = job->progress();
            progress.set_done(at.tensors_done());
            progress.set_total(at.tensors_total());
            progress.set_message(at.message());
            rev.set_state_reason(
                job->state() == v1::JOB_STATE_PENDING
                    ? absl::StrCat("optimizer job ", job->name(),
                                   " waiting: ", job->pending_reason())
                    : absl::StrCat("optimizer job ", job->name(), ": ",
                                   v1::OptimizationPhase_Name(at.phase())));
            p.again = true;
          }
          break;
        }
        case v1::DEPLOYMENT_STATE_SCHEDULING:
        case v1::DEPLOYMENT_STATE_DEPLOYING: {
          const bool serve_now = serving == 0 || serving == latest;
          absl::StatusOr<v1::ReplicaSet> set = ensure_set(rev, serve_now);
          if (!set.ok()) {
            failed_call("scheduler", set.status());
            break;
          }
          const int min = rev.spec().min_replicas();
          if (set->ready_replicas() >= min) {
            if (!serve_now) {
              // Zero downtime: the new revision takes the traffic, then
              // the old one drains and goes.
              absl::StatusOr<v1::ReplicaSet> flipped = ensure_set(rev, true);
              if (!flipped.ok()) {
                failed_call("scheduler", flipped.status());
                break;
              }
              if (p.sets.contains(serving)) {
                absl::StatusOr<v1::ReplicaSet> off =
                    ensure_set(p.revisions[serving], false);
                if (!off.ok()) {
                  failed_call("scheduler", off.status());
                  break;
                }
              }
              v1::Revision& old = p.revisions[serving];
              old.set_state_reason(
                  absl::StrCat("retired: replaced by revision ", latest));
              if (p.sets.contains(serving)) {
                if (absl::Status deleted = delete_set(serving); !deleted.ok()) {
                  // Retried by the cleanup of later passes.
                  Log(name,
                      absl::StrCat("release_failed revision=", serving,
                                   " error=\"", deleted.ToString(), "\""));
                  p.again = true;
                }
              }
              if (!old.has_retire_time()) {
                *old.mutable_retire_time() = ToProtoTimestamp(now);
              }
            }
            rev.set_state(v1::DEPLOYMENT_STATE_DEPLOYED);
            rev.set_state_reason(absl::StrCat(set->ready_replicas(), " of ",
                                              min, " replicas ready; serving"));
            if (!rev.has_ready_time()) {
              *rev.mutable_ready_time() = ToProtoTimestamp(now);
            }
            serving = latest;
          } else {
            std::string pending;
            for (const v1::Replica& replica : set->replicas()) {
              if (replica.state() == v1::REPLICA_STATE_PENDING &&
                  !replica.pending_reason().empty()) {
                pending = replica.pending_reason();
              }
            }
            const std::pair<std::string, int64_t> key(name, latest);
            if (!pending.empty()) {
              deploying_since_.erase(key);
              rev.set_state(v1::DEPLOYMENT_STATE_SCHEDULING);
              rev.set_state_reason(absl::StrCat("waiting for GPUs: ", pending));
            } else if (const absl::Time since =
                           deploying_since_.try_emplace(key, now).first->second;
                       now - since >= options_.deploy_timeout) {
              deploying_since_.erase(key);
              std::map<std::string, int> states;
              for (const v1::Replica& replica : set->replicas()) {
                ++states[v1::ReplicaState_Name(replica.state())];
              }
              std::string listed;
              for (const auto& [replica_state, count] : states) {
                absl::StrAppend(&listed, listed.empty() ? "" : ", ", count, " ",
                                replica_state);
              }
              fail(rev,
                   absl::StrCat(
                       "deploy_timeout: ", set->ready_replicas(), " of ", min,
                       " replicas READY after ",
                       absl::FormatDuration(options_.deploy_timeout),
                       " (replicas: ", listed.empty() ? "none" : listed, ")"));
              break;
            } else {
              rev.set_state(v1::DEPLOYMENT_STATE_DEPLOYING);
              rev.set_state_reason(absl::StrCat(set->ready_replicas(), " of ",
                                                min, " replicas ready"));
            }
            progress.set_done(set->ready_replicas());
            progress.set_total(min);
            progress.set_message("replicas ready");
            p.again = true;
          }
          break;
        }
        case v1::DEPLOYMENT_STATE_DEPLOYED: {
          // Steady: the scheduler keeps running it as wanted.
          absl::StatusOr<v1::ReplicaSet> set = ensure_set(rev, true);
          if (!set.ok()) {
            if (Transient(set.status())) {
              p.retrying = set.status().ToString();
              p.again = true;
            } else {
              Log(name, absl::StrCat("apply_failed error=\"",
                                     set.status().ToString(), "\""));
            }
          }
          serving = latest;
          break;
        }
        default:
          break;
      }
      if (rev.state() == before || rev.state() == v1::DEPLOYMENT_STATE_FAILED) {
        break;
      }
    }
    // Forget deadlines of revisions that are no longer DEPLOYING.
    for (auto it = deploying_since_.lower_bound({name, 0});
         it != deploying_since_.end() && it->first.first == name;) {
      if (it->first.second != latest ||
          rev.state() != v1::DEPLOYMENT_STATE_DEPLOYING) {
        it = deploying_since_.erase(it);
      } else {
        ++it;
      }
    }
    // The revision still serving keeps its set when a newer one failed or
    // is on its way.
    if (serving > 0 && serving != latest && p.revisions.contains(serving) &&
        p.retrying.empty()) {
      absl::StatusOr<v1::ReplicaSet> kept =
          ensure_set(p.revisions[serving], true);
      if (!kept.ok()) {
        p.retrying = kept.status().ToString();
        p.again = true;
      }
    }
    // Release every set nothing wants: superseded, failed, retired.
    std::set<int64_t> wanted;
    if (serving > 0) wanted.insert(serving);
    if (rev.state() == v1::DEPLOYMENT_STATE_SCHEDULING ||
        rev.state() == v1::DEPLOYMENT_STATE_DEPLOYING ||
        rev.state() == v1::DEPLOYMENT_STATE_DEPLOYED) {
      wanted.insert(latest);
    }
    std::vector<int64_t> unwanted;
    for (const auto& [number, set] : p.sets) {
      if (!wanted.contains(number)) unwanted.push_back(number);
    }
    for (int64_t number : unwanted) {
      if (absl::Status deleted = delete_set(number); !deleted.ok()) {
        Log(name, absl::StrCat("release_failed revision=", number, " error=\"",
                               deleted.ToString(), "\""));
        p.again = true;
      }
    }

    // The deployment shows its newest revision; the serving one's replicas.
    p.next.set_serving_revision(serving);
    if (rev.state() == v1::DEPLOYMENT_STATE_FAILED) {
      p.next.set_state(v1::DEPLOYMENT_STATE_FAILED);
      p.next.set_state_reason(
          serving > 0 ? absl::StrCat("revision ", latest,
                                     " failed: ", rev.state_reason(),
                                     "; revision ", serving, " still serves")
                      : rev.state_reason());
    } else {
      p.next.set_state(rev.state());
      p.next.set_state_reason(
          p.retrying.empty() ? rev.state_reason()
                             : absl::StrCat(rev.state_reason(),
                                            " (retrying: ", p.retrying, ")"));
    }
    if (InFlight(rev.state())) {
      *p.next.mutable_progress() = progress;
    } else {
      p.next.clear_progress();
    }
    const int64_t shown = serving > 0 ? serving : latest;
    auto shown_set = p.sets.find(shown);
    if (shown_set != p.sets.end()) {
      p.next.set_ready_replicas(shown_set->second.ready_replicas());
      p.next.set_desired_replicas(
          std::max(shown_set->second.desired_replicas(),
                   shown_set->second.spec().min_replicas()));
    } else {
      p.next.set_ready_replicas(0);
      p.next.set_desired_replicas(rev.spec().min_replicas());
    }
    // The cost of every replica holding GPUs now.
    int64_t hourly = 0;
    for (const auto& [number, set] : p.sets) {
      const int placed = PlacedReplicas(set);
      if (placed == 0) continue;
      absl::StatusOr<OfferingFacts> offering =
          options_.offerings->GetOfferingFacts(set.spec().hardware());
      if (!offering.ok()) {
        hourly = p.read.hourly_cost().micros();  // Keep what was known.
        break;
      }
      hourly += offering->hourly_price_micros * placed;
    }
    p.next.mutable_hourly_cost()->set_micros(hourly);
    if (p.next.hourly_cost().currency_code().empty()) {
      p.next.mutable_hourly_cost()->set_currency_code("USD");
    }
  }

  if (absl::Status recorded = store.RecordReplicaUsage(p.samples, now);
      !recorded.ok()) {
    Log(name, absl::StrCat("usage_failed error=\"", recorded.ToString(), "\""));
    p.again = true;
  }

  // Write what changed, in one transaction, only over the row as read.
  std::vector<v1::Revision> changed;
  for (const auto& [number, revision] : p.revisions) {
    if (!MessageDifferencer::Equals(revision, p.original[number])) {
      changed.push_back(revision);
    }
  }
  v1::Deployment compare = p.next;
  compare.set_etag(p.read.etag());
  *compare.mutable_update_time() = p.read.update_time();
  const bool deployment_changed = !MessageDifferencer::Equals(compare, p.read);
  *again = p.again || InFlight(p.next.state()) ||
           p.next.state() == v1::DEPLOYMENT_STATE_DELETING;
  if (!deployment_changed && changed.empty()) return absl::OkStatus();
  *p.next.mutable_update_time() = ToProtoTimestamp(now);
  absl::StatusOr<v1::Deployment> written = store.Update(
      name, std::nullopt,
      [&](const v1::Deployment& current) -> absl::StatusOr<Mutation> {
        if (current.etag() != p.read.etag()) {
          return absl::AbortedError(
              "the deployment changed during the pass; looking again");
        }
        Mutation mutation{
            .deployment = p.next, .revoke_keys = p.revoke_keys, .now = now};
        mutation.revision_updates = changed;
        mutation.lease_owner = options_.owner;
        return mutation;
      });
  if (!written.ok()) {
    if (absl::IsAborted(written.status())) {
      *again = true;
      return absl::OkStatus();
    }
    return written.status();
  }
  options_.notifier->Notify(name);
  if (p.revoke_keys) options_.notifier->Notify(kApiKeysWatchKey);
  if (written->state() != p.read.state() ||
      written->serving_revision() != p.read.serving_revision() ||
      written->state_reason() != p.read.state_reason()) {
    Log(name, absl::StrCat("state=", v1::DeploymentState_Name(written->state()),
                           " serving=", written->serving_revision(),
                           " reason=\"", written->state_reason(), "\""));
  }
  if (options_.events != nullptr &&
      (written->state() != p.read.state() ||
       written->serving_revision() != p.read.serving_revision())) {
    options_.events->OnDeploymentStateChanged(*written);
  }
  if (written->state() == v1::DEPLOYMENT_STATE_DELETED) {
    absl::MutexLock lock(&mu_);
    leased_.erase(name);
    *again = false;
    return store.ReleaseLease(name, options_.owner);
  }
  return absl::OkStatus();
}

}  // namespace hangar::deployment
