#include "services/scheduler/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <random>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/api/etag.h"
#include "common/api/page_token.h"
#include "common/api/time.h"
#include "common/status/status_macros.h"
#include "google/protobuf/util/message_differencer.h"
#include "services/scheduler/hardware_config.h"

namespace hangar::scheduler {
namespace {

using ::google::protobuf::util::MessageDifferencer;

constexpr absl::Duration kMaxJobTimeout = absl::Hours(24 * 7);
constexpr int kMaxThreads = 256;
constexpr int kMaxContextLength = 1 << 20;

std::string SetName(const std::string& deployment, int64_t revision) {
  return absl::StrCat(deployment, "/", revision);
}

std::string ReplicaName(const std::string& deployment, int64_t revision,
                        int index) {
  return absl::StrCat(deployment, "-r", revision, "-", index);
}

bool IsDeploymentId(absl::string_view id) {
  if (id.empty() || id.size() > 63) return false;
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

v1::Priority ToProto(Priority priority) {
  switch (priority) {
    case Priority::kServing:
      return v1::PRIORITY_SERVING;
    case Priority::kOptimization:
      return v1::PRIORITY_OPTIMIZATION;
    case Priority::kScaleOut:
      return v1::PRIORITY_SCALE_OUT;
  }
  return v1::PRIORITY_UNSPECIFIED;
}

Priority FromProto(v1::Priority priority) {
  switch (priority) {
    case v1::PRIORITY_OPTIMIZATION:
      return Priority::kOptimization;
    case v1::PRIORITY_SCALE_OUT:
      return Priority::kScaleOut;
    default:
      return Priority::kServing;
  }
}

v1::ReplicaState ToProto(ReplicaState state) {
  switch (state) {
    case ReplicaState::kStarting:
      return v1::REPLICA_STATE_STARTING;
    case ReplicaState::kReady:
      return v1::REPLICA_STATE_READY;
    case ReplicaState::kDraining:
      return v1::REPLICA_STATE_DRAINING;
    case ReplicaState::kStopped:
      return v1::REPLICA_STATE_STOPPED;
    case ReplicaState::kFailed:
      return v1::REPLICA_STATE_FAILED;
  }
  return v1::REPLICA_STATE_UNSPECIFIED;
}

v1::JobState ToProto(JobState state) {
  switch (state) {
    case JobState::kPending:
      return v1::JOB_STATE_PENDING;
    case JobState::kRunning:
      return v1::JOB_STATE_RUNNING;
    case JobState::kSucceeded:
      return v1::JOB_STATE_SUCCEEDED;
    case JobState::kFailed:
      return v1::JOB_STATE_FAILED;
    case JobState::kCancelled:
      return v1::JOB_STATE_CANCELLED;
  }
  return v1::JOB_STATE_UNSPECIFIED;
}

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

SamplingValues ToSampling(const v1::SamplingParams& sampling) {
  SamplingValues values;
  if (sampling.has_temperature()) values.temperature = sampling.temperature();
  if (sampling.has_max_tokens()) values.max_tokens = sampling.max_tokens();
  if (sampling.has_top_p()) values.top_p = sampling.top_p();
  if (sampling.has_top_k()) values.top_k = sampling.top_k();
  values.stop_sequences.assign(sampling.stop_sequences().begin(),
                               sampling.stop_sequences().end());
  if (sampling.has_seed()) values.seed = sampling.seed();
  return values;
}

ScalingPolicy PolicyOf(const v1::ReplicaSetSpec& spec) {
  return {.min_replicas = spec.min_replicas(),
          .max_replicas = spec.max_replicas(),
          .inference_batch_size = spec.inference_batch_size(),
          .scale_up_delay = absl::Seconds(spec.scale_up_delay_seconds()),
          .scale_down_delay = absl::Seconds(spec.scale_down_delay_seconds())};
}

absl::Status OutOfRange(absl::string_view field, int64_t low, int64_t high,
                        int64_t value) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": must be in [", low, ", ", high, "]; was ", value));
}

std::string NewJobName() {
  static absl::Mutex mu(absl::kConstInit);
  static std::mt19937_64* random = new std::mt19937_64(std::random_device{}());
  absl::MutexLock lock(&mu);
  return absl::StrFormat("job-%016x", (*random)());
}

// What the executor runs for a job.
JobSpec JobSpecOf(const v1::Job& job) {
  return {.name = job.name(),
          .argv = {job.spec().argv().begin(), job.spec().argv().end()},
          .env = {job.spec().env().begin(), job.spec().env().end()},
          .timeout = job.spec().has_timeout()
                         ? FromProtoDuration(job.spec().timeout())
                         : absl::Hours(1),
          .assignment = {.node = job.node(),
                         .gpus = {job.gpus().begin(), job.gpus().end()}}};
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace

std::string JobKey(absl::string_view name) {
  return absl::StrCat("jobs/", name);
}

Scheduler::Scheduler(Options options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(Options options) {
  if (options.store == nullptr || options.notifier == nullptr ||
      options.clock == nullptr || !options.make_executor) {
    return absl::InvalidArgumentError(
        "scheduler: store, notifier, clock and make_executor are required");
  }
  if (options.autoscale_period < absl::Milliseconds(10) ||
      options.autoscale_period > absl::Hours(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("autoscale_period: must be in [10ms, 1h]; was ",
                     absl::FormatDuration(options.autoscale_period)));
  }
  if (options.default_drain < absl::ZeroDuration() ||
      options.default_drain > absl::Hours(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("default_drain: must be in [0, 1h]; was ",
                     absl::FormatDuration(options.default_drain)));
  }
  RETURN_IF_ERROR(ValidateHardwareConfig(options.hardware));
  std::unique_ptr<Scheduler> scheduler(new Scheduler(std::move(options)));
  Scheduler& s = *scheduler;
  s.nodes_ = NodesFromConfig(s.options_.hardware);
  ASSIGN_OR_RETURN(
      s.placer_,
      Placer::Create({.policy = s.options_.placement_policy}, s.nodes_));
  ASSIGN_OR_RETURN(
      s.autoscaler_,
      Autoscaler::Create({.default_report_ttl = s.options_.default_report_ttl,
                          .clock = s.options_.clock}));
  ExecutorObserver observer{
      .on_replica =
          [raw = scheduler.get()](const ReplicaStatus& status) {
            absl::MutexLock lock(&raw->inbox_mu_);
            raw->inbox_.push_back(status);
            ++raw->queued_;
          },
      .on_job =
          [raw = scheduler.get()](const JobStatus& status) {
            absl::MutexLock lock(&raw->inbox_mu_);
            raw->inbox_.push_back(status);
            ++raw->queued_;
          }};
  ASSIGN_OR_RETURN(s.executor_, s.options_.make_executor(std::move(observer)));
  if (s.executor_ == nullptr) {
    return absl::InvalidArgumentError("make_executor: returned no executor");
  }
  RETURN_IF_ERROR(s.Recover());
  // The first evaluation is due one period after Create, whenever the
  // thread gets to run.
  const absl::Time first =
      s.options_.clock->Now() + s.options_.autoscale_period;
  s.loop_ = std::thread([raw = scheduler.get(), first] { raw->Loop(first); });
  return scheduler;
}

Scheduler::~Scheduler() {
  {
    absl::MutexLock lock(&inbox_mu_);
    stopping_ = true;
  }
  if (loop_.joinable()) loop_.join();
  {
    // Destroying the executor stops every job it runs: each goes back to
    // the queue (stored as PENDING), to run again after the next start.
    absl::MutexLock lock(&mu_);
    for (auto& [name, job] : jobs_) {
      v1::Job& proto = job.stored.job;
      if (proto.state() != v1::JOB_STATE_RUNNING) continue;
      proto.set_state(v1::JOB_STATE_PENDING);
      proto.clear_node();
      proto.clear_gpus();
      proto.clear_start_time();
      proto.set_pending_reason("re-queued: the scheduler stopped while it ran");
      job.stored.pid = 0;
      job.stored.start_ticks = 0;
      PersistJobLocked(job);
    }
  }
  executor_.reset();
}

// --- Recovery -------------------------------------------------------------

absl::Status Scheduler::Recover() {
  ASSIGN_OR_RETURN(SchedulerSnapshot snapshot, options_.store->Load());
  std::vector<std::string> announce;
  {
    absl::MutexLock lock(&mu_);
    for (StoredSet& stored : snapshot.sets) {
      const SetKey key{stored.spec.deployment(), stored.spec.revision()};
      SetRec& set = sets_[key];
      set.stored = std::move(stored);
      if (!set.stored.deleting) {
        RETURN_IF_ERROR(autoscaler_->SetPolicy(SetName(key.first, key.second),
                                               PolicyOf(set.stored.spec)));
      }
    }
    std::sort(snapshot.replicas.begin(), snapshot.replicas.end(),
              [](const StoredReplica& a, const StoredReplica& b) {
                return std::tie(a.create_time, a.name) <
                       std::tie(b.create_time, b.name);
              });
    std::vector<RecordedReplica> recorded;
    std::vector<std::pair<SetKey, int>> to_place;
    std::vector<std::pair<SetKey, int>> to_stop;
    for (StoredReplica& stored : snapshot.replicas) {
      const SetKey key{stored.deployment, stored.revision};
      auto set_it = sets_.find(key);
      if (set_it == sets_.end()) continue;
      SetRec& set = set_it->second;
      ReplicaRec& rec = set.replicas[stored.index];
      rec.stored = std::move(stored);
      replica_sets_[rec.stored.name] = key;
      const v1::ReplicaSetSpec& spec = set.stored.spec;
      const bool placed = !rec.stored.node.empty() &&
                          rec.stored.state != v1::REPLICA_STATE_PENDING;
      if (placed) {
        absl::Status booked = placer_->Restore(
            MakeRequest(rec.stored.name, spec.hardware(), spec.memory_bytes(),
                        FromProto(rec.stored.priority)),
            rec.stored.node, rec.stored.gpus);
        if (booked.ok()) {
          RecordedReplica record;
          record.spec = {
              .name = rec.stored.name,
              .deployment = spec.deployment(),
              .revision = spec.revision(),
              .artifact_path = spec.artifact_path(),
              .threads = spec.threads_per_replica(),
              .max_batch = spec.inference_batch_size(),
              .context_length = spec.context_length(),
              .sampling = ToSampling(spec.sampling()),
              .assignment = {.node = rec.stored.node, .gpus = rec.stored.gpus}};
          record.pid = rec.stored.pid;
          record.start_ticks = rec.stored.start_ticks;
          record.address = rec.stored.address;
          record.restarts = rec.stored.restarts;
          recorded.push_back(std::move(record));
          // Until the executor says otherwise (re-adopted: READY again).
          rec.stored.state = v1::REPLICA_STATE_STARTING;
          if (rec.stored.stopping) to_stop.push_back({key, rec.stored.index});
          continue;
        }
        std::cerr << "scheduler: replica " << rec.stored.name
                  << ": recorded GPUs cannot be booked again ("
                  << booked.message() << "); placing it afresh" << std::endl;
      }
      rec.stored.node.clear();
      rec.stored.gpus.clear();
      rec.stored.address.clear();
      rec.stored.pid = 0;
      rec.stored.start_ticks = 0;
      rec.stored.placed_time.reset();
      rec.stored.state = v1::REPLICA_STATE_PENDING;
      to_place.push_back({key, rec.stored.index});
    }
    // Running jobs keep their GPUs and are followed again (their processes
    // outlive a scheduler killed without a chance to stop them).
    std::vector<RecordedJob> recorded_jobs;
    std::vector<std::string> job_order;  // By create time, as stored.
    for (StoredJob& stored : snapshot.jobs) {
      const std::string name = stored.job.name();
      job_order.push_back(name);
      JobRec& job = jobs_[name];
      job.stored = std::move(stored);
      jobs_by_request_[job.stored.request_id] = name;
      v1::Job& proto = job.stored.job;
      if (proto.state() != v1::JOB_STATE_RUNNING) continue;
      absl::Status booked = placer_->Restore(
          MakeRequest(name, proto.spec().hardware(),
                      proto.spec().memory_bytes(), Priority::kOptimization),
          proto.node(), {proto.gpus().begin(), proto.gpus().end()});
      if (!booked.ok()) {
        // Followed all the same: it runs there whatever the file says now.
        std::cerr << "scheduler: job " << name
                  << ": recorded GPUs cannot be booked again ("
                  << booked.message() << ")" << std::endl;
      }
      recorded_jobs.push_back(
          {.spec = JobSpecOf(proto),
           .pid = job.stored.pid,
           .start_ticks = job.stored.start_ticks,
           .start_time = proto.has_start_time()
                             ? std::optional<absl::Time>(
                                   FromProtoTimestamp(proto.start_time()))
                             : std::nullopt});
    }
    RETURN_IF_ERROR(executor_->Adopt(recorded, recorded_jobs));
    for (const auto& [key, index] : to_stop) {
      SetRec& set = sets_.at(key);
      StopReplicaLocked(set, set.replicas.at(index), options_.default_drain);
    }
    for (const auto& [key, index] : to_place) {
      auto set_it = sets_.find(key);
      if (set_it == sets_.end()) continue;
      auto rec_it = set_it->second.replicas.find(index);
      if (rec_it == set_it->second.replicas.end()) continue;
      if (rec_it->second.stored.stopping) {
        const bool gone = RemoveReplicaLocked(set_it->second, index);
        (void)gone;
        continue;
      }
      PlaceReplicaLocked(set_it->second, rec_it->second);
    }
    for (const std::string& name : job_order) {
      JobRec& job = jobs_.at(name);
      v1::Job& proto = job.stored.job;
      if (proto.state() == v1::JOB_STATE_PENDING) {
        proto.clear_node();
        proto.clear_gpus();
        absl::StatusOr<Placer::Decision> decision = placer_->Submit(
            MakeRequest(name, proto.spec().hardware(),
                        proto.spec().memory_bytes(), Priority::kOptimization));
        if (decision.ok() && decision->placed) {
          StartJobLocked(job, decision->placement);
        } else if (!decision.ok()) {
          proto.set_state(v1::JOB_STATE_FAILED);
          proto.set_failure_reason(std::string(decision.status().message()));
          PersistJobLocked(job);
        }
      }
    }
    std::vector<SetKey> keys;
    for (const auto& [key, set] : sets_) keys.push_back(key);
    for (const SetKey& key : keys) {
      auto it = sets_.find(key);
      if (it == sets_.end()) continue;
      if (it->second.stored.deleting && it->second.replicas.empty()) {
        // Its last replica was removed just before the previous scheduler
        // ended: finish the deletion.
        if (absl::Status deleted =
                options_.store->DeleteSet(key.first, key.second);
            !deleted.ok() && !absl::IsNotFound(deleted)) {
          return deleted;
        }
        sets_.erase(it);
        continue;
      }
      ReconcileLocked(it->second);
    }
    RefreshLocked();
  }
  options_.notifier->Notify(kReplicaSetsKey);
  return absl::OkStatus();
}

// --- The loop -------------------------------------------------------------

void Scheduler::Loop(absl::Time next_autoscale) {
  while (true) {
    std::deque<Event> events;
    {
      absl::MutexLock lock(&inbox_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(inbox_mu_) {
        return stopping_ || kick_ || !inbox_.empty();
      };
      options_.clock->AwaitWithDeadline(&inbox_mu_, absl::Condition(&ready),
                                        next_autoscale);
      if (stopping_) return;
      events.swap(inbox_);
      kick_ = false;
    }
    bool changed = !events.empty();
    std::vector<std::string> keys;
    {
      absl::MutexLock lock(&mu_);
      for (const Event& event : events) {
        if (const auto* replica = std::get_if<ReplicaStatus>(&event)) {
          ApplyReplicaStatus(*replica);
        } else {
          const JobStatus& job = std::get<JobStatus>(event);
          ApplyJobStatus(job);
          dirty_jobs_.insert(job.spec.name);
        }
      }
      if (options_.clock->Now() >= next_autoscale) {
        EvaluateAutoscalerLocked();
        next_autoscale = options_.clock->Now() + options_.autoscale_period;
        changed = true;
      }
      if (changed) RefreshLocked();
      keys = TakeDirtyLocked();
    }
    if (changed) Announce(keys);
    absl::MutexLock lock(&inbox_mu_);
    applied_ += events.size();
  }
}

void Scheduler::Sync() {
  absl::MutexLock lock(&inbox_mu_);
  const uint64_t target = queued_;
  auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(inbox_mu_) {
    return applied_ >= target || stopping_;
  };
  inbox_mu_.Await(absl::Condition(&done));
}

// --- Helpers (mu_ held) ---------------------------------------------------

Request Scheduler::MakeRequest(const std::string& workload,
                               const std::string& hardware,
                               int64_t memory_bytes, Priority priority) {
  Request request;
  request.workload = workload;
  if (const config::OfferingConfig* offering =
          FindOffering(options_.hardware, hardware)) {
    request.pool = offering->pool();
    request.gpus = offering->gpu_count();
  }
  request.memory_bytes = memory_bytes;
  request.priority = priority;
  request.enqueue_time = options_.clock->Now();
  return request;
}

absl::Status Scheduler::ValidateSpec(const v1::ReplicaSetSpec& spec) {
  if (!IsDeploymentId(spec.deployment())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.deployment: must be 1 to 63 characters of [a-z0-9._-]; was \"",
        spec.deployment(), "\""));
  }
  if (spec.revision() < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.revision: must be at least 1; was ", spec.revision()));
  }
  if (spec.artifact_path().empty()) {
    return absl::InvalidArgumentError("spec.artifact_path: required");
  }
  const config::OfferingConfig* offering =
      FindOffering(options_.hardware, spec.hardware());
  if (offering == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.hardware: unknown offering (see ListHardware); was \"",
        spec.hardware(), "\""));
  }
  if (spec.min_replicas() < 0 || spec.min_replicas() > kMaxReplicas) {
    return OutOfRange("spec.min_replicas", 0, kMaxReplicas,
                      spec.min_replicas());
  }
  const int max_low = std::max(1, spec.min_replicas());
  if (spec.max_replicas() < max_low || spec.max_replicas() > kMaxReplicas) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.max_replicas: must be in [max(1, min_replicas) = ", max_low, ", ",
        kMaxReplicas, "]; was ", spec.max_replicas()));
  }
  if (spec.scale_up_delay_seconds() < 0 ||
      spec.scale_up_delay_seconds() > 86400) {
    return OutOfRange("spec.scale_up_delay_seconds", 0, 86400,
                      spec.scale_up_delay_seconds());
  }
  if (spec.scale_down_delay_seconds() < 0 ||
      spec.scale_down_delay_seconds() > 86400) {
    return OutOfRange("spec.scale_down_delay_seconds", 0, 86400,
                      spec.scale_down_delay_seconds());
  }
  if (spec.inference_batch_size() < 1 ||
      spec.inference_batch_size() > kMaxInferenceBatchSize) {
    return OutOfRange("spec.inference_batch_size", 1, kMaxInferenceBatchSize,
                      spec.inference_batch_size());
  }
  if (spec.context_length() < 1 || spec.context_length() > kMaxContextLength) {
    return OutOfRange("spec.context_length", 1, kMaxContextLength,
                      spec.context_length());
  }
  if (spec.threads_per_replica() < 1 ||
      spec.threads_per_replica() > kMaxThreads) {
    return OutOfRange("spec.threads_per_replica", 1, kMaxThreads,
                      spec.threads_per_replica());
  }
  if (spec.memory_bytes() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.memory_bytes: must be >= 0; was ", spec.memory_bytes()));
  }
  Request request =
      MakeRequest("check", spec.hardware(), 0, Priority::kServing);
  if (absl::Status fits = placer_->CheckFeasible(request); !fits.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.hardware: ", fits.message()));
  }
  request.memory_bytes = spec.memory_bytes();
  if (absl::Status fits = placer_->CheckFeasible(request); !fits.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.memory_bytes: ", fits.message()));
  }
  return absl::OkStatus();
}

Scheduler::SetRec* Scheduler::FindSetLocked(const std::string& deployment,
                                            int64_t revision) {
  auto it = sets_.find({deployment, revision});
  return it == sets_.end() ? nullptr : &it->second;
}

int Scheduler::LiveReplicasLocked(const SetRec& set) {
  int live = 0;
  for (const auto& [index, rec] : set.replicas) {
    if (!rec.stored.stopping) ++live;
  }
  return live;
}

void Scheduler::ReconcileLocked(SetRec& set) {
  const v1::ReplicaSetSpec& spec = set.stored.spec;
  const SetKey key{spec.deployment(), spec.revision()};
  const int target = set.stored.deleting ? 0 : set.stored.desired;
  int live = LiveReplicasLocked(set);
  while (live < target) {
    int index = 0;
    while (set.replicas.contains(index)) ++index;
    ReplicaRec& rec = set.replicas[index];
    rec.stored.name = ReplicaName(spec.deployment(), spec.revision(), index);
    rec.stored.deployment = spec.deployment();
    rec.stored.revision = spec.revision();
    rec.stored.index = index;
    rec.stored.state = v1::REPLICA_STATE_PENDING;
    rec.stored.priority = live < spec.min_replicas() ? v1::PRIORITY_SERVING
                                                     : v1::PRIORITY_SCALE_OUT;
    rec.stored.create_time = options_.clock->Now();
    replica_sets_[rec.stored.name] = key;
    ++set.stored.version;
    PlaceReplicaLocked(set, rec);
    ++live;
  }
  if (live <= target) return;
  // Scale in: pending first, then starting or failed, then ready; the
  // newest (highest index) first within each.
  std::vector<std::pair<int, int>> candidates;  // (rank, -index)
  for (const auto& [index, rec] : set.replicas) {
    if (rec.stored.stopping) continue;
    int rank = 2;
    if (rec.stored.state == v1::REPLICA_STATE_PENDING) {
      rank = 0;
    } else if (rec.stored.state != v1::REPLICA_STATE_READY) {
      rank = 1;
    }
    candidates.push_back({rank, -index});
  }
  std::sort(candidates.begin(), candidates.end());
  std::vector<int> stop;
  for (const auto& [rank, negative_index] : candidates) {
    if (live <= target) break;
    stop.push_back(-negative_index);
    --live;
  }
  for (int index : stop) {
    auto it = set.replicas.find(index);
    if (it == set.replicas.end()) continue;
    if (it->second.stored.state == v1::REPLICA_STATE_PENDING &&
        it->second.stored.node.empty()) {
      it->second.stored.stopping = true;
      if (RemoveReplicaLocked(set, index)) return;  // The set is gone.
      continue;
    }
    StopReplicaLocked(set, it->second, options_.default_drain);
  }
}

void Scheduler::PlaceReplicaLocked(SetRec& set, ReplicaRec& rec) {
  const v1::ReplicaSetSpec& spec = set.stored.spec;
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<Placer::Decision> decision = placer_->Submit(
      MakeRequest(rec.stored.name, spec.hardware(), spec.memory_bytes(),
                  FromProto(rec.stored.priority)));
  if (options_.metrics != nullptr && decision.ok()) {
    options_.metrics->Placement(decision->placed, SecondsSince(start));
  }
  if (!decision.ok()) {
    rec.stored.state = v1::REPLICA_STATE_FAILED;
    rec.stored.last_error =
        absl::StrCat("placement: ", decision.status().message());
    PersistReplicaLocked(rec);
    return;
  }
  if (decision->placed) {
    StartReplicaLocked(set, rec, decision->placement);
    return;
  }
  rec.stored.state = v1::REPLICA_STATE_PENDING;
  rec.pending_reason = decision->reason;
  PersistReplicaLocked(rec);
}

void Scheduler::StartReplicaLocked(SetRec& set, ReplicaRec& rec,
                                   const Placement& placement) {
  const v1::ReplicaSetSpec& spec = set.stored.spec;
  rec.stored.node = nodes_[placement.node].name;
  rec.stored.gpus = placement.gpus;
  rec.stored.placed_time = options_.clock->Now();
  rec.stored.state = v1::REPLICA_STATE_STARTING;
  rec.pending_reason.clear();
  ++set.stored.version;
  ReplicaSpec replica{
      .name = rec.stored.name,
      .deployment = spec.deployment(),
      .revision = spec.revision(),
      .artifact_path = spec.artifact_path(),
      .threads = spec.threads_per_replica(),
      .max_batch = spec.inference_batch_size(),
      .context_length = spec.context_length(),
      .sampling = ToSampling(spec.sampling()),
      .assignment = {.node = rec.stored.node, .gpus = rec.stored.gpus}};
  // The record exists before the runner does, so a restart never loses it.
  PersistReplicaLocked(rec);
  absl::Status started = executor_->StartReplica(replica);
  if (!started.ok()) {
    rec.stored.state = v1::REPLICA_STATE_FAILED;
    rec.stored.last_error =
        absl::StrCat("could not start: ", started.message());
    PersistReplicaLocked(rec);
  }
}

void Scheduler::StopReplicaLocked(SetRec& set, ReplicaRec& rec,
                                  absl::Duration drain) {
  rec.stored.stopping = true;
  ++set.stored.version;
  absl::Status stopped = executor_->StopReplica(rec.stored.name, drain);
  if (absl::IsNotFound(stopped)) {
    // The executor never ran it (a failed start): nothing to drain.
    RemoveReplicaLocked(set, rec.stored.index);
    return;
  }
  rec.stored.state = v1::REPLICA_STATE_DRAINING;
  PersistReplicaLocked(rec);
}

void Scheduler::ReleaseLocked(const std::string& workload) {
  absl::StatusOr<std::vector<Placer::Started>> started =
      placer_->Release(workload);
  if (started.ok()) StartedLocked(*started);
}

void Scheduler::StartedLocked(const std::vector<Placer::Started>& started) {
  for (const Placer::Started& item : started) {
    if (auto it = replica_sets_.find(item.workload);
        it != replica_sets_.end()) {
      SetRec* set = FindSetLocked(it->second.first, it->second.second);
      if (set == nullptr) continue;
      for (auto& [index, rec] : set->replicas) {
        if (rec.stored.name == item.workload) {
          StartReplicaLocked(*set, rec, item.placement);
          break;
        }
      }
    } else if (auto job = jobs_.find(item.workload); job != jobs_.end()) {
      StartJobLocked(job->second, item.placement);
      dirty_jobs_.insert(item.workload);
    }
  }
}

bool Scheduler::RemoveReplicaLocked(SetRec& set, int index) {
  auto it = set.replicas.find(index);
  if (it == set.replicas.end()) return false;
  const std::string name = it->second.stored.name;
  set.replicas.erase(it);
  replica_sets_.erase(name);
  ++set.stored.version;
  if (absl::Status deleted = options_.store->DeleteReplica(name);
      !deleted.ok()) {
    std::cerr << "scheduler: forgetting replica " << name << ": "
              << deleted.message() << std::endl;
  }
  (void)executor_->ForgetReplica(name);
  ReleaseLocked(name);
  if (set.stored.deleting && set.replicas.empty()) {
    const SetKey key{set.stored.spec.deployment(), set.stored.spec.revision()};
    if (absl::Status deleted = options_.store->DeleteSet(key.first, key.second);
        !deleted.ok() && !absl::IsNotFound(deleted)) {
      std::cerr << "scheduler: deleting replica set "
                << SetName(key.first, key.second) << ": " << deleted.message()
                << std::endl;
    }
    autoscaler_->RemoveSet(SetName(key.first, key.second));
    sets_.erase(key);
    return true;
  }
  return false;
}

void Scheduler::StartJobLocked(JobRec& job, const Placement& placement) {
  v1::Job& proto = job.stored.job;
  proto.set_node(nodes_[placement.node].name);
  proto.clear_gpus();
  for (int gpu : placement.gpus) proto.add_gpus(gpu);
  proto.set_state(v1::JOB_STATE_RUNNING);
  proto.clear_pending_reason();
  *proto.mutable_start_time() = ToProtoTimestamp(options_.clock->Now());
  absl::Status started = executor_->StartJob(JobSpecOf(proto));
  if (!started.ok()) {
    proto.set_state(v1::JOB_STATE_FAILED);
    proto.set_failure_reason(
        absl::StrCat("could not start: ", started.message()));
    FinishJobLocked(job);
    return;
  }
  PersistJobLocked(job);
}

void Scheduler::FinishJobLocked(JobRec& job) {
  v1::Job& proto = job.stored.job;
  if (!proto.has_end_time()) {
    *proto.mutable_end_time() = ToProtoTimestamp(options_.clock->Now());
  }
  PersistJobLocked(job);
  dirty_jobs_.insert(proto.name());
  (void)executor_->ForgetJob(proto.name());
  ReleaseLocked(proto.name());
}

void Scheduler::ApplyReplicaStatus(const ReplicaStatus& status) {
  auto owner = replica_sets_.find(status.spec.name);
  if (owner == replica_sets_.end()) {
    if (status.state == ReplicaState::kStopped) {
      (void)executor_->ForgetReplica(status.spec.name);
    }
    return;
  }
  SetRec* set = FindSetLocked(owner->second.first, owner->second.second);
  if (set == nullptr) return;
  auto rec_it = set->replicas.end();
  for (auto it = set->replicas.begin(); it != set->replicas.end(); ++it) {
    if (it->second.stored.name == status.spec.name) rec_it = it;
  }
  if (rec_it == set->replicas.end()) return;
  ReplicaRec& rec = rec_it->second;
  if (rec.stored.node.empty()) return;  // Not placed: a stale event.
  StoredReplica& stored = rec.stored;
  const int new_restarts = status.restarts - stored.restarts;
  if (new_restarts > 0 && options_.metrics != nullptr) {
    options_.metrics->Restarts(new_restarts);
  }
  stored.restarts = status.restarts;
  stored.pid = status.pid;
  stored.start_ticks = status.start_ticks;
  stored.address = status.address;
  stored.last_error = status.last_error;
  if (status.ready_time.has_value()) stored.ready_time = status.ready_time;
  v1::ReplicaState state = ToProto(status.state);
  if (stored.stopping && state != v1::REPLICA_STATE_STOPPED) {
    state = v1::REPLICA_STATE_DRAINING;
  }
  stored.state = state;
  ++set->stored.version;
  if (state == v1::REPLICA_STATE_STOPPED) {
    const bool expected = stored.stopping;
    if (RemoveReplicaLocked(*set, stored.index)) return;
    if (!expected) ReconcileLocked(*set);  // A replacement.
    return;
  }
  PersistReplicaLocked(rec);
}

void Scheduler::ApplyJobStatus(const JobStatus& status) {
  auto it = jobs_.find(status.spec.name);
  if (it == jobs_.end()) return;
  JobRec& job = it->second;
  v1::Job& proto = job.stored.job;
  if (IsTerminal(proto.state())) return;
  job.stored.pid = status.pid;
  job.stored.start_ticks = status.start_ticks;
  proto.set_state(ToProto(status.state));
  proto.set_log_tail(status.log_tail);
  if (status.start_time.has_value()) {
    *proto.mutable_start_time() = ToProtoTimestamp(*status.start_time);
  }
  if (IsTerminal(proto.state())) {
    proto.set_exit_code(status.exit_code.value_or(0));
    proto.set_failure_reason(status.failure_reason);
    if (status.end_time.has_value()) {
      *proto.mutable_end_time() = ToProtoTimestamp(*status.end_time);
    }
    FinishJobLocked(job);
    return;
  }
  PersistJobLocked(job);
}

void Scheduler::PersistSetLocked(SetRec& set) {
  if (absl::Status put = options_.store->PutSet(set.stored); !put.ok()) {
    std::cerr << "scheduler: storing replica set "
              << SetName(set.stored.spec.deployment(),
                         set.stored.spec.revision())
              << ": " << put.message() << std::endl;
  }
}

void Scheduler::PersistReplicaLocked(const ReplicaRec& rec) {
  if (absl::Status put = options_.store->PutReplica(rec.stored); !put.ok()) {
    std::cerr << "scheduler: storing replica " << rec.stored.name << ": "
              << put.message() << std::endl;
  }
}

void Scheduler::PersistJobLocked(const JobRec& job) {
  if (absl::Status put = options_.store->PutJob(job.stored); !put.ok()) {
    std::cerr << "scheduler: storing job " << job.stored.job.name() << ": "
              << put.message() << std::endl;
  }
}

void Scheduler::RefreshLocked() {
  std::map<std::string, int> pending_classes;
  for (const Placer::PendingItem& item : placer_->Pending()) {
    pending_classes[PendingReasonClass(item.reason)]++;
    const std::string& name = item.request.workload;
    if (auto owner = replica_sets_.find(name); owner != replica_sets_.end()) {
      SetRec* set = FindSetLocked(owner->second.first, owner->second.second);
      if (set == nullptr) continue;
      for (auto& [index, rec] : set->replicas) {
        if (rec.stored.name == name) rec.pending_reason = item.reason;
      }
    } else if (auto job = jobs_.find(name); job != jobs_.end()) {
      if (job->second.stored.job.pending_reason() != item.reason) {
        job->second.stored.job.set_pending_reason(item.reason);
        dirty_jobs_.insert(name);
      }
    }
  }
  if (options_.metrics == nullptr) return;
  options_.metrics->SetPending(pending_classes);
  for (const config::PoolConfig& pool : options_.hardware.pools()) {
    absl::StatusOr<Placer::PoolStatus> status =
        placer_->GetPoolStatus(pool.name());
    if (status.ok()) {
      options_.metrics->SetPoolGpus(pool.name(), status->total_gpus,
                                    status->total_gpus - status->free_gpus);
    }
  }
  std::map<std::string, int> states;
  for (const auto& [key, set] : sets_) {
    for (const auto& [index, rec] : set.replicas) {
      std::string name = v1::ReplicaState_Name(rec.stored.state);
      states[name.substr(std::string("REPLICA_STATE_").size())]++;
    }
  }
  options_.metrics->SetReplicas(states);
}

v1::ReplicaSet Scheduler::ToProtoLocked(const SetRec& set) {
  v1::ReplicaSet proto;
  *proto.mutable_spec() = set.stored.spec;
  const absl::Time now = options_.clock->Now();
  int ready = 0;
  for (const auto& [index, rec] : set.replicas) {
    const StoredReplica& r = rec.stored;
    v1::Replica* replica = proto.add_replicas();
    replica->set_name(r.name);
    replica->set_deployment(r.deployment);
    replica->set_revision(r.revision);
    replica->set_state(r.state);
    replica->set_priority(r.priority);
    replica->set_node(r.node);
    for (int gpu : r.gpus) replica->add_gpus(gpu);
    replica->set_address(r.address);
    replica->set_restarts(r.restarts);
    replica->set_last_error(r.last_error);
    replica->set_pending_reason(rec.pending_reason);
    *replica->mutable_create_time() = ToProtoTimestamp(r.create_time);
    if (r.ready_time.has_value()) {
      *replica->mutable_ready_time() = ToProtoTimestamp(*r.ready_time);
    }
    double seconds = r.replica_seconds;
    if (r.placed_time.has_value() && now > *r.placed_time) {
      seconds += absl::ToDoubleSeconds(now - *r.placed_time);
    }
    replica->set_replica_seconds(seconds);
    if (r.state == v1::REPLICA_STATE_READY) ++ready;
  }
  proto.set_ready_replicas(ready);
  proto.set_desired_replicas(set.stored.deleting ? 0 : set.stored.desired);
  proto.set_load(set.load);
  proto.set_etag(MakeEtag(set.stored.version));
  return proto;
}

void Scheduler::EvaluateAutoscalerLocked() {
  std::vector<SetKey> keys;
  for (const auto& [key, set] : sets_) {
    if (!set.stored.deleting) keys.push_back(key);
  }
  for (const SetKey& key : keys) {
    auto it = sets_.find(key);
    if (it == sets_.end()) continue;
    SetRec& set = it->second;
    const std::string name = SetName(key.first, key.second);
    absl::StatusOr<ScalingDecision> decision =
        autoscaler_->Evaluate(name, set.stored.desired);
    if (!decision.ok()) continue;
    if (set.load != decision->load) {
      set.load = decision->load;
      ++set.stored.version;
    }
    if (options_.metrics != nullptr) {
      options_.metrics->AutoscalerLoad(name, decision->load);
    }
    if (!decision->changed()) continue;
    if (options_.metrics != nullptr) {
      options_.metrics->AutoscalerDecision(
          name, decision->target > decision->current, decision->load);
    }
    std::cerr << "scheduler: " << name << ": " << decision->current << " -> "
              << decision->target << " replicas (" << decision->reason << ")"
              << std::endl;
    set.stored.desired = decision->target;
    ++set.stored.version;
    PersistSetLocked(set);
    ReconcileLocked(set);
  }
}

std::vector<std::string> Scheduler::TakeDirtyLocked() {
  std::vector<std::string> keys;
  for (const std::string& name : dirty_jobs_) keys.push_back(JobKey(name));
  dirty_jobs_.clear();
  return keys;
}

void Scheduler::Announce(const std::vector<std::string>& keys) {
  options_.notifier->Notify(kReplicaSetsKey);
  for (const std::string& key : keys) options_.notifier->Notify(key);
}

// --- Hardware -------------------------------------------------------------

absl::StatusOr<v1::ListHardwareResponse> Scheduler::ListHardware(
    const v1::ListHardwareRequest& request) {
  ASSIGN_OR_RETURN(int page_size, ResolvePageSize(request.page_size()));
  const std::string fingerprint = FilterFingerprint(request);
  ASSIGN_OR_RETURN(std::string after,
                   DecodePageToken(request.page_token(), fingerprint));
  std::vector<const config::OfferingConfig*> offerings;
  for (const config::OfferingConfig& offering : options_.hardware.offerings()) {
    if (offering.id() > after) offerings.push_back(&offering);
  }
  std::sort(offerings.begin(), offerings.end(),
            [](const auto* a, const auto* b) { return a->id() < b->id(); });
  v1::ListHardwareResponse response;
  for (const config::OfferingConfig* offering : offerings) {
    if (response.offerings_size() == page_size) {
      response.set_next_page_token(
          EncodePageToken(response.offerings(page_size - 1).id(), fingerprint));
      break;
    }
    const config::PoolConfig* pool =
        FindPool(options_.hardware, offering->pool());
    v1::HardwareOffering* out = response.add_offerings();
    out->set_id(offering->id());
    out->set_display_name(offering->display_name());
    out->set_pool(offering->pool());
    out->set_gpu_count(offering->gpu_count());
    out->mutable_hourly_price()->set_currency_code("USD");
    out->mutable_hourly_price()->set_micros(
        offering->hourly_price_usd_micros());
    if (pool != nullptr) {
      out->set_gpu_model(pool->gpu_model());
      out->set_gpu_memory_bytes(pool->gpu_memory_bytes());
      out->set_supports_fp8(pool->supports_fp8());
      out->set_supports_bf16(pool->supports_bf16());
    }
    absl::StatusOr<Placer::Availability> availability =
        placer_->GetAvailability(offering->pool(), offering->gpu_count(), 0, 0);
    if (availability.ok()) {
      out->set_available_replicas(availability->available);
      out->set_total_replicas(availability->total);
      out->set_availability(
          absl::StrCat(availability->available, " of ", availability->total,
                       availability->total == 1 ? " replica fits now"
                                                : " replicas fit now"));
    }
  }
  return response;
}

absl::StatusOr<v1::ListPoolsResponse> Scheduler::ListPools(
    const v1::ListPoolsRequest& request) {
  ASSIGN_OR_RETURN(int page_size, ResolvePageSize(request.page_size()));
  const std::string fingerprint = FilterFingerprint(request);
  ASSIGN_OR_RETURN(std::string after,
                   DecodePageToken(request.page_token(), fingerprint));
  std::vector<const config::PoolConfig*> pools;
  for (const config::PoolConfig& pool : options_.hardware.pools()) {
    if (pool.name() > after) pools.push_back(&pool);
  }
  std::sort(pools.begin(), pools.end(),
            [](const auto* a, const auto* b) { return a->name() < b->name(); });
  v1::ListPoolsResponse response;
  for (const config::PoolConfig* pool : pools) {
    if (response.pools_size() == page_size) {
      response.set_next_page_token(
          EncodePageToken(response.pools(page_size - 1).name(), fingerprint));
      break;
    }
    v1::Pool* out = response.add_pools();
    out->set_name(pool->name());
    out->set_gpu_model(pool->gpu_model());
    out->set_gpu_memory_bytes(pool->gpu_memory_bytes());
    out->set_gpus_per_node(pool->gpus_per_node());
    out->set_node_count(pool->node_count());
    out->set_executor(pool->executor() == config::KUBERNETES
                          ? v1::EXECUTOR_KIND_KUBERNETES
                          : v1::EXECUTOR_KIND_LOCAL);
    out->set_supports_fp8(pool->supports_fp8());
    out->set_supports_bf16(pool->supports_bf16());
    absl::StatusOr<Placer::PoolStatus> status =
        placer_->GetPoolStatus(pool->name());
    if (status.ok()) out->set_free_gpus(status->free_gpus);
  }
  return response;
}

absl::StatusOr<v1::PoolStatus> Scheduler::GetPoolStatus(
    const std::string& pool_name) {
  if (pool_name.empty()) return absl::InvalidArgumentError("pool: required");
  const config::PoolConfig* pool = FindPool(options_.hardware, pool_name);
  if (pool == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("pool: no pool named \"", pool_name, "\""));
  }
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Placer::PoolStatus status,
                   placer_->GetPoolStatus(pool_name));
  v1::PoolStatus out;
  v1::Pool* p = out.mutable_pool();
  p->set_name(pool->name());
  p->set_gpu_model(pool->gpu_model());
  p->set_gpu_memory_bytes(pool->gpu_memory_bytes());
  p->set_gpus_per_node(pool->gpus_per_node());
  p->set_node_count(pool->node_count());
  p->set_executor(pool->executor() == config::KUBERNETES
                      ? v1::EXECUTOR_KIND_KUBERNETES
                      : v1::EXECUTOR_KIND_LOCAL);
  p->set_supports_fp8(pool->supports_fp8());
  p->set_supports_bf16(pool->supports_bf16());
  p->set_free_gpus(status.free_gpus);
  for (const Placer::NodeStatus& node : status.nodes) {
    v1::NodeStatus* n = out.add_nodes();
    n->set_name(node.name);
    n->set_gpu_count(node.gpu_count);
    n->set_free_gpus(node.free_gpus);
    for (int milli : node.gpu_milli_allocated)
      n->add_gpu_milli_allocated(milli);
    for (const std::string& w : node.workloads) n->add_workloads(w);
  }
  for (const Placer::PendingItem& item : status.pending) {
    v1::PendingItem* pending = out.add_pending();
    const std::string& name = item.request.workload;
    pending->set_workload(name);
    pending->set_priority(ToProto(item.request.priority));
    pending->set_reason(item.reason);
    *pending->mutable_enqueue_time() =
        ToProtoTimestamp(item.request.enqueue_time);
    if (auto owner = replica_sets_.find(name); owner != replica_sets_.end()) {
      if (SetRec* set =
              FindSetLocked(owner->second.first, owner->second.second)) {
        pending->set_offering(set->stored.spec.hardware());
      }
    } else if (auto job = jobs_.find(name); job != jobs_.end()) {
      pending->set_offering(job->second.stored.job.spec().hardware());
    }
  }
  out.set_fragmentation(status.fragmentation);
  out.set_policy(status.policy);
  return out;
}

// --- Replica sets ---------------------------------------------------------

absl::StatusOr<v1::ReplicaSet> Scheduler::ApplyReplicaSet(
    const v1::ReplicaSetSpec& spec) {
  v1::ReplicaSet result;
  std::vector<std::string> keys;
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(ValidateSpec(spec));
    const SetKey key{spec.deployment(), spec.revision()};
    const std::string name = SetName(key.first, key.second);
    if (SetRec* set = FindSetLocked(key.first, key.second)) {
      if (set->stored.deleting) {
        return absl::FailedPreconditionError(absl::StrCat(
            "replica set ", name, " is being deleted; apply a new revision"));
      }
      if (MessageDifferencer::Equals(spec, set->stored.spec)) {
        return ToProtoLocked(*set);  // Idempotent: nothing changes.
      }
      // What the runners were started with cannot change in place.
      const v1::ReplicaSetSpec& old = set->stored.spec;
      std::string changed;
      if (spec.artifact_path() != old.artifact_path()) {
        changed = "artifact_path";
      } else if (spec.hardware() != old.hardware()) {
        changed = "hardware";
      } else if (spec.model() != old.model()) {
        changed = "model";
      } else if (!MessageDifferencer::Equals(spec.recipe(), old.recipe())) {
        changed = "recipe";
      } else if (spec.inference_batch_size() != old.inference_batch_size()) {
        changed = "inference_batch_size";
      } else if (spec.context_length() != old.context_length()) {
        changed = "context_length";
      } else if (spec.threads_per_replica() != old.threads_per_replica()) {
        changed = "threads_per_replica";
      } else if (spec.memory_bytes() != old.memory_bytes()) {
        changed = "memory_bytes";
      } else if (!MessageDifferencer::Equals(spec.sampling(), old.sampling())) {
        changed = "sampling";
      }
      if (!changed.empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat("spec.", changed, ": cannot change on revision ",
                         spec.revision(), " of ", spec.deployment(),
                         " (its runners use it); apply a new revision"));
      }
      StoredSet updated = set->stored;
      updated.spec = spec;
      updated.desired =
          std::clamp(updated.desired, spec.min_replicas(), spec.max_replicas());
      ++updated.version;
      RETURN_IF_ERROR(options_.store->PutSet(updated));
      set->stored = std::move(updated);
      RETURN_IF_ERROR(autoscaler_->SetPolicy(name, PolicyOf(spec)));
      ReconcileLocked(*set);
      RefreshLocked();
      result = ToProtoLocked(*set);
    } else {
      StoredSet stored{.spec = spec,
                       .desired = spec.min_replicas(),
                       .deleting = false,
                       .version = 1,
                       .create_time = options_.clock->Now()};
      RETURN_IF_ERROR(options_.store->PutSet(stored));
      RETURN_IF_ERROR(autoscaler_->SetPolicy(name, PolicyOf(spec)));
      SetRec& created = sets_[key];
      created.stored = std::move(stored);
      ReconcileLocked(created);
      RefreshLocked();
      result = ToProtoLocked(created);
    }
    keys = TakeDirtyLocked();
  }
  Announce(keys);
  return result;
}

absl::StatusOr<v1::ReplicaSet> Scheduler::GetReplicaSet(
    const std::string& deployment, int64_t revision) {
  absl::MutexLock lock(&mu_);
  SetRec* set = FindSetLocked(deployment, revision);
  if (set == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "replica set ", SetName(deployment, revision), " not found"));
  }
  return ToProtoLocked(*set);
}

absl::StatusOr<v1::ListReplicaSetsResponse> Scheduler::ListReplicaSets(
    const v1::ListReplicaSetsRequest& request) {
  ASSIGN_OR_RETURN(int page_size, ResolvePageSize(request.page_size()));
  const std::string fingerprint = FilterFingerprint(request);
  ASSIGN_OR_RETURN(std::string after,
                   DecodePageToken(request.page_token(), fingerprint));
  auto sort_key = [](const SetKey& key) {
    return absl::StrFormat("%s\x1f%020d", key.first, key.second);
  };
  v1::ListReplicaSetsResponse response;
  absl::MutexLock lock(&mu_);
  std::string last;
  for (const auto& [key, set] : sets_) {
    if (!request.deployment().empty() && key.first != request.deployment()) {
      continue;
    }
    const std::string k = sort_key(key);
    if (!after.empty() && k <= after) continue;
    if (response.replica_sets_size() == page_size) {
      response.set_next_page_token(EncodePageToken(last, fingerprint));
      break;
    }
    *response.add_replica_sets() = ToProtoLocked(set);
    last = k;
  }
  return response;
}

absl::StatusOr<v1::ReplicaSet> Scheduler::DeleteReplicaSet(
    const v1::DeleteReplicaSetRequest& request) {
  absl::Duration drain = options_.default_drain;
  if (request.has_drain_seconds()) {
    if (request.drain_seconds() < 0 || request.drain_seconds() > 3600) {
      return OutOfRange("drain_seconds", 0, 3600, request.drain_seconds());
    }
    drain = absl::Seconds(request.drain_seconds());
  }
  v1::ReplicaSet result;
  std::vector<std::string> keys;
  {
    absl::MutexLock lock(&mu_);
    SetRec* set = FindSetLocked(request.deployment(), request.revision());
    if (set == nullptr) {
      return absl::NotFoundError(absl::StrCat(
          "replica set ", SetName(request.deployment(), request.revision()),
          " not found"));
    }
    if (!set->stored.deleting) {
      StoredSet updated = set->stored;
      updated.deleting = true;
      ++updated.version;
      RETURN_IF_ERROR(options_.store->PutSet(updated));
      set->stored = std::move(updated);
      autoscaler_->RemoveSet(SetName(request.deployment(), request.revision()));
    }
    // The final state, should the set go during this call (nothing placed).
    v1::ReplicaSet final_state = ToProtoLocked(*set);
    final_state.set_desired_replicas(0);
    for (v1::Replica& replica : *final_state.mutable_replicas()) {
      replica.set_state(v1::REPLICA_STATE_STOPPED);
    }
    std::vector<int> indexes;
    for (const auto& [index, rec] : set->replicas) indexes.push_back(index);
    bool gone = false;
    for (int index : indexes) {
      auto it = set->replicas.find(index);
      if (it == set->replicas.end()) continue;
      ReplicaRec& rec = it->second;
      if (rec.stored.node.empty()) {
        rec.stored.stopping = true;
        gone = RemoveReplicaLocked(*set, index);
        if (gone) break;
      } else if (!rec.stored.stopping) {
        StopReplicaLocked(*set, rec, drain);
      } else {
        // Already draining: a shorter drain now applies.
        (void)executor_->StopReplica(rec.stored.name, drain);
      }
    }
    if (!gone) {
      set = FindSetLocked(request.deployment(), request.revision());
      if (set != nullptr && set->replicas.empty()) {
        // Nothing to drain: the set goes now.
        result = ToProtoLocked(*set);
        if (absl::Status deleted = options_.store->DeleteSet(
                request.deployment(), request.revision());
            !deleted.ok() && !absl::IsNotFound(deleted)) {
          return deleted;
        }
        sets_.erase({request.deployment(), request.revision()});
        gone = true;
      } else if (set != nullptr) {
        result = ToProtoLocked(*set);
      }
    }
    if (gone && result.spec().deployment().empty()) result = final_state;
    RefreshLocked();
    keys = TakeDirtyLocked();
  }
  Announce(keys);
  return result;
}

std::vector<v1::ReplicaSet> Scheduler::ReplicaSets(
    const std::string& deployment) {
  absl::MutexLock lock(&mu_);
  std::vector<v1::ReplicaSet> sets;
  for (const auto& [key, set] : sets_) {
    if (!deployment.empty() && key.first != deployment) continue;
    sets.push_back(ToProtoLocked(set));
  }
  return sets;
}

std::vector<v1::Route> Scheduler::Routes() {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Route> routes;
  for (const auto& [key, set] : sets_) {
    const v1::ReplicaSetSpec& spec = set.stored.spec;
    v1::Route& route = routes.emplace_back();
    route.set_deployment(spec.deployment());
    route.set_display_name(spec.display_name());
    route.set_revision(spec.revision());
    route.set_serving(spec.serving() && !set.stored.deleting);
    route.set_inference_batch_size(spec.inference_batch_size());
    route.set_context_length(spec.context_length());
    *route.mutable_sampling() = spec.sampling();
    for (const auto& [index, rec] : set.replicas) {
      const StoredReplica& r = rec.stored;
      if (r.address.empty()) continue;
      if (r.state != v1::REPLICA_STATE_READY &&
          r.state != v1::REPLICA_STATE_DRAINING) {
        continue;
      }
      v1::RouteReplica* replica = route.add_replicas();
      replica->set_name(r.name);
      replica->set_address(r.address);
      replica->set_state(r.state);
      replica->set_max_batch(spec.inference_batch_size());
    }
  }
  return routes;
}

// --- Jobs -----------------------------------------------------------------

absl::StatusOr<v1::Job> Scheduler::SubmitJob(
    const v1::SubmitJobRequest& request) {
  const v1::JobSpec& spec = request.spec();
  if (request.request_id().empty() || request.request_id().size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id: must be 1 to 64 characters; was ",
                     request.request_id().size(), " characters"));
  }
  if (spec.argv().empty() || spec.argv(0).empty()) {
    return absl::InvalidArgumentError("spec.argv: required (a program)");
  }
  for (int i = 0; i < spec.env_size(); ++i) {
    if (spec.env(i).find('=') == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "spec.env[", i, "]: must be NAME=value; was \"", spec.env(i), "\""));
    }
  }
  if (FindOffering(options_.hardware, spec.hardware()) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.hardware: unknown offering (see ListHardware); was \"",
        spec.hardware(), "\""));
  }
  if (spec.memory_bytes() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.memory_bytes: must be >= 0; was ", spec.memory_bytes()));
  }
  if (spec.has_timeout()) {
    const absl::Duration timeout = FromProtoDuration(spec.timeout());
    if (timeout <= absl::ZeroDuration() || timeout > kMaxJobTimeout) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec.timeout: must be in (0, 7 days]; was ",
                       absl::FormatDuration(timeout)));
    }
  }
  v1::Job result;
  std::vector<std::string> keys;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = jobs_by_request_.find(request.request_id());
        it != jobs_by_request_.end()) {
      const v1::Job& existing = jobs_.at(it->second).stored.job;
      if (!MessageDifferencer::Equals(existing.spec(), spec)) {
        return absl::AlreadyExistsError(
            absl::StrCat("request_id: already used by ", existing.name(),
                         " with a different spec"));
      }
      return existing;
    }
    Request placement = MakeRequest(
        "check", spec.hardware(), spec.memory_bytes(), Priority::kOptimization);
    if (absl::Status fits = placer_->CheckFeasible(placement); !fits.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("spec: ", fits.message()));
    }
    StoredJob stored;
    stored.request_id = request.request_id();
    stored.job.set_name(NewJobName());
    *stored.job.mutable_spec() = spec;
    stored.job.set_state(v1::JOB_STATE_PENDING);
    *stored.job.mutable_create_time() = ToProtoTimestamp(options_.clock->Now());
    ASSIGN_OR_RETURN(StoredJob created, options_.store->CreateJob(stored));
    const std::string name = created.job.name();
    JobRec& job = jobs_[name];
    job.stored = std::move(created);
    jobs_by_request_[request.request_id()] = name;
    if (job.stored.job.state() == v1::JOB_STATE_PENDING) {
      placement.workload = name;
      const auto start = std::chrono::steady_clock::now();
      absl::StatusOr<Placer::Decision> decision = placer_->Submit(placement);
      if (options_.metrics != nullptr && decision.ok()) {
        options_.metrics->Placement(decision->placed, SecondsSince(start));
      }
      if (!decision.ok()) {
        job.stored.job.set_state(v1::JOB_STATE_FAILED);
        job.stored.job.set_failure_reason(
            absl::StrCat("placement: ", decision.status().message()));
        FinishJobLocked(job);
      } else if (decision->placed) {
        StartJobLocked(job, decision->placement);
      } else {
        job.stored.job.set_pending_reason(decision->reason);
      }
    }
    RefreshLocked();
    result = job.stored.job;
    dirty_jobs_.insert(name);
    keys = TakeDirtyLocked();
  }
  Announce(keys);
  return result;
}

absl::StatusOr<v1::Job> Scheduler::GetJob(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(name);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("job \"", name, "\" not found"));
  }
  v1::Job job = it->second.stored.job;
  if (job.state() == v1::JOB_STATE_RUNNING) {
    absl::StatusOr<JobStatus> status = executor_->GetJob(name);
    if (status.ok()) job.set_log_tail(status->log_tail);
  }
  return job;
}

absl::StatusOr<v1::ListJobsResponse> Scheduler::ListJobs(
    const v1::ListJobsRequest& request) {
  ASSIGN_OR_RETURN(int page_size, ResolvePageSize(request.page_size()));
  const std::string fingerprint = FilterFingerprint(request);
  ASSIGN_OR_RETURN(std::string after,
                   DecodePageToken(request.page_token(), fingerprint));
  v1::ListJobsResponse response;
  absl::MutexLock lock(&mu_);
  for (auto it = jobs_.upper_bound(after); it != jobs_.end(); ++it) {
    const v1::Job& job = it->second.stored.job;
    if (!request.owner().empty() && job.spec().owner() != request.owner()) {
      continue;
    }
    if (response.jobs_size() == page_size) {
      response.set_next_page_token(
          EncodePageToken(response.jobs(page_size - 1).name(), fingerprint));
      break;
    }
    *response.add_jobs() = job;
  }
  return response;
}

absl::StatusOr<v1::Job> Scheduler::CancelJob(const std::string& name) {
  v1::Job result;
  std::vector<std::string> keys;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(name);
    if (it == jobs_.end()) {
      return absl::NotFoundError(absl::StrCat("job \"", name, "\" not found"));
    }
    JobRec& job = it->second;
    v1::Job& proto = job.stored.job;
    if (proto.state() == v1::JOB_STATE_PENDING) {
      proto.set_state(v1::JOB_STATE_CANCELLED);
      proto.set_failure_reason("cancelled before it started");
      proto.clear_pending_reason();
      FinishJobLocked(job);
    } else if (proto.state() == v1::JOB_STATE_RUNNING) {
      // CANCELLED arrives from the executor once the process ended.
      (void)executor_->CancelJob(name);
    }
    RefreshLocked();
    result = proto;
    keys = TakeDirtyLocked();
  }
  Announce(keys);
  return result;
}

// --- Load -----------------------------------------------------------------

absl::Status Scheduler::ReportLoad(const v1::ReportLoadRequest& request) {
  if (request.reporter().empty() || request.reporter().size() > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("reporter: must be 1 to 128 characters; was ",
                     request.reporter().size(), " characters"));
  }
  if (!request.has_report_time()) {
    return absl::InvalidArgumentError("report_time: required");
  }
  absl::Duration ttl = options_.default_report_ttl;
  if (request.has_ttl()) {
    ttl = FromProtoDuration(request.ttl());
    if (ttl < absl::Seconds(1) || ttl > absl::Seconds(300)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ttl: must be in [1s, 300s]; was ", absl::FormatDuration(ttl)));
    }
  }
  for (int i = 0; i < request.loads_size(); ++i) {
    const v1::RevisionLoad& load = request.loads(i);
    if (load.queued() < 0 || load.in_flight() < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "loads[", i, "]: queued and in_flight must be >= 0; were ",
          load.queued(), " and ", load.in_flight()));
    }
    if (load.deployment().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("loads[", i, "].deployment: required"));
    }
  }
  // The report counts until report_time + ttl (never longer than ttl from
  // now, whatever the reporter's clock says).
  const absl::Time now = options_.clock->Now();
  absl::Duration remaining =
      FromProtoTimestamp(request.report_time()) + ttl - now;
  if (remaining > ttl) remaining = ttl;
  if (remaining <= absl::ZeroDuration()) return absl::OkStatus();  // Expired.
  std::vector<std::string> keys;
  {
    absl::MutexLock lock(&mu_);
    for (const v1::RevisionLoad& load : request.loads()) {
      RETURN_IF_ERROR(autoscaler_->ReportLoad(
          SetName(load.deployment(), load.revision()), request.reporter(),
          load.queued(), load.in_flight(), remaining));
    }
    EvaluateAutoscalerLocked();
    RefreshLocked();
    keys = TakeDirtyLocked();
  }
  Announce(keys);
  return absl::OkStatus();
}

void Scheduler::EvaluateAutoscaler() {
  std::vector<std::string> keys;
  {
    absl::MutexLock lock(&mu_);
    EvaluateAutoscalerLocked();
    RefreshLocked();
    keys = TakeDirtyLocked();
  }
  Announce(keys);
}

}  // namespace hangar::scheduler
