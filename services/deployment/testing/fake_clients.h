// In-memory fakes of the reconciler's clients (clients.h) for domain unit
// tests. Each counts what it was asked, so a test proves that a restart
// makes no duplicates (jobs per request id, replica sets created per
// revision), has a "down" switch (UNAVAILABLE naming the dependency), and
// lets the test move the outside world: a preparation finishing, a job
// progressing, succeeding or failing, replicas becoming READY.
#ifndef HANGAR_SERVICES_DEPLOYMENT_TESTING_FAKE_CLIENTS_H_
#define HANGAR_SERVICES_DEPLOYMENT_TESTING_FAKE_CLIENTS_H_

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/deployment/clients.h"

namespace hangar::deployment::testing {

class FakeCatalogClient final : public CatalogClient {
 public:
  // Unless set, a model is PREPARED at /store/<model> with sha "sha-<model>".
  void SetPreparation(const std::string& model, v1::Preparation preparation) {
    absl::MutexLock lock(&mu_);
    preparations_[model] = std::move(preparation);
  }
  void SetDown(bool down) {
    absl::MutexLock lock(&mu_);
    down_ = down;
  }
  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  absl::StatusOr<v1::Preparation> PrepareModel(
      const std::string& model) override {
    absl::MutexLock lock(&mu_);
    ++calls_;
    if (down_) return absl::UnavailableError("catalog (fake): down");
    auto found = preparations_.find(model);
    if (found != preparations_.end()) return found->second;
    v1::Preparation prepared;
    prepared.set_state(v1::PREPARATION_STATE_PREPARED);
    prepared.set_local_path("/store/" + model);
    prepared.set_sha256("sha-" + model);
    return prepared;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, v1::Preparation> preparations_ ABSL_GUARDED_BY(mu_);
  bool down_ ABSL_GUARDED_BY(mu_) = false;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
};

class FakeOptimizerClient final : public OptimizerClient {
 public:
  // Runs after a job is created (outside the lock), e.g. to "crash" the
  // reconciler before it records the job.
  void OnCreate(std::function<void()> hook) {
    absl::MutexLock lock(&mu_);
    on_create_ = std::move(hook);
  }
  void SetDown(bool down) {
    absl::MutexLock lock(&mu_);
    down_ = down;
  }
  // Refuses the next creates with `status` (OK: accept again).
  void RefuseCreates(absl::Status status) {
    absl::MutexLock lock(&mu_);
    refuse_ = std::move(status);
  }
  // Jobs made (distinct), and CreateOptimizationJob calls per request id.
  int jobs_created() {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(jobs_.size());
  }
  int creates(const std::string& request_id) {
    absl::MutexLock lock(&mu_);
    auto found = creates_.find(request_id);
    return found == creates_.end() ? 0 : found->second;
  }
  std::optional<v1::OptimizationJob> JobFor(const std::string& request_id) {
    absl::MutexLock lock(&mu_);
    auto found = by_request_.find(request_id);
    if (found == by_request_.end()) return std::nullopt;
    return jobs_.at(found->second);
  }
  void Progress(const std::string& name, int done, int total) {
    absl::MutexLock lock(&mu_);
    v1::OptimizationJob& job = jobs_.at(name);
    job.set_state(v1::JOB_STATE_RUNNING);
    job.mutable_progress()->set_phase(v1::OPTIMIZATION_PHASE_CONVERTING);
    job.mutable_progress()->set_tensors_done(done);
    job.mutable_progress()->set_tensors_total(total);
    job.mutable_progress()->set_message(absl::StrCat("tensor ", done));
  }
  void Succeed(const std::string& name, const std::string& path) {
    absl::MutexLock lock(&mu_);
    v1::OptimizationJob& job = jobs_.at(name);
    job.set_state(v1::JOB_STATE_SUCCEEDED);
    job.mutable_artifact()->set_name("art-" + name.substr(4));
    job.mutable_artifact()->set_path(path);
  }
  void Fail(const std::string& name, const std::string& reason) {
    absl::MutexLock lock(&mu_);
    v1::OptimizationJob& job = jobs_.at(name);
    job.set_state(v1::JOB_STATE_FAILED);
    job.set_failure_reason(reason);
  }
  std::vector<std::string> cancelled() {
    absl::MutexLock lock(&mu_);
    return cancelled_;
  }
  // Request ids whose hold was released (each once, however often asked).
  std::set<std::string> released() {
    absl::MutexLock lock(&mu_);
    return released_;
  }

  absl::StatusOr<v1::OptimizationJob> CreateOptimizationJob(
      const v1::CreateOptimizationJobRequest& request) override {
    std::function<void()> hook;
    v1::OptimizationJob result;
    {
      absl::MutexLock lock(&mu_);
      if (down_) return absl::UnavailableError("optimizer (fake): down");
      if (!refuse_.ok()) return refuse_;
      ++creates_[request.request_id()];
      auto known = by_request_.find(request.request_id());
      if (known != by_request_.end()) return jobs_.at(known->second);
      v1::OptimizationJob job = request.job();
      job.set_name(absl::StrCat("opt-", ++next_id_));
      job.set_state(v1::JOB_STATE_PENDING);
      job.set_pending_reason("waiting for a place");
      job.set_source_sha256(request.source_sha256());
      last_source_path_ = request.source_path();
      jobs_[job.name()] = job;
      by_request_[request.request_id()] = job.name();
      result = job;
      hook = on_create_;
    }
    if (hook) hook();
    return result;
  }
  absl::StatusOr<v1::OptimizationJob> GetOptimizationJob(
      const std::string& name) override {
    absl::MutexLock lock(&mu_);
    if (down_) return absl::UnavailableError("optimizer (fake): down");
    auto found = jobs_.find(name);
    if (found == jobs_.end()) return absl::NotFoundError("no such job");
    return found->second;
  }
  absl::Status CancelOptimizationJob(const std::string& name) override {
    absl::MutexLock lock(&mu_);
    if (down_) return absl::UnavailableError("optimizer (fake): down");
    auto found = jobs_.find(name);
    if (found == jobs_.end()) return absl::NotFoundError("no such job");
    v1::OptimizationJob& job = found->second;
    if (job.state() != v1::JOB_STATE_PENDING &&
        job.state() != v1::JOB_STATE_RUNNING) {
      return absl::FailedPreconditionError("job has ended");
    }
    job.set_state(v1::JOB_STATE_CANCELLED);
    cancelled_.push_back(name);
    return absl::OkStatus();
  }
  absl::Status ReleaseOptimizationJob(const std::string& request_id) override {
    absl::MutexLock lock(&mu_);
    if (down_) return absl::UnavailableError("optimizer (fake): down");
    if (!by_request_.contains(request_id)) {
      return absl::NotFoundError("no job under that request id");
    }
    released_.insert(request_id);
    return absl::OkStatus();
  }
  std::string last_source_path() {
    absl::MutexLock lock(&mu_);
    return last_source_path_;
  }

 private:
  absl::Mutex mu_;
  std::function<void()> on_create_ ABSL_GUARDED_BY(mu_);
  bool down_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status refuse_ ABSL_GUARDED_BY(mu_);
  int next_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, v1::OptimizationJob> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> by_request_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> creates_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> cancelled_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> released_ ABSL_GUARDED_BY(mu_);
  std::string last_source_path_ ABSL_GUARDED_BY(mu_);
};

// Replica sets keyed by (deployment, revision). A new set gets min_replicas
// replicas STARTING (PENDING with a reason while `SetNoCapacity`); the test
// makes them READY. A deleted set is gone at once.
class FakeSchedulerClient final : public SchedulerClient {
 public:
  using Key = std::pair<std::string, int64_t>;

  void OnApply(std::function<void()> hook) {
    absl::MutexLock lock(&mu_);
    on_apply_ = std::move(hook);
  }
  void SetDown(bool down) {
    absl::MutexLock lock(&mu_);
    down_ = down;
  }
  void SetNoCapacity(bool none) {
    absl::MutexLock lock(&mu_);
    no_capacity_ = none;
  }
  void RefuseApplies(absl::Status status) {
    absl::MutexLock lock(&mu_);
    refuse_ = std::move(status);
  }
  // New sets come up READY at once.
  void SetAutoReady(bool ready) {
    absl::MutexLock lock(&mu_);
    auto_ready_ = ready;
  }
  void MakeReady(const std::string& deployment, int64_t revision) {
    absl::MutexLock lock(&mu_);
    auto found = sets_.find({deployment, revision});
    if (found == sets_.end()) return;
    SetReadyLocked(found->second);
  }
  // Every replica of the set has held its GPUs `seconds` longer.
  void AddSeconds(const std::string& deployment, int64_t revision,
                  double seconds) {
    absl::MutexLock lock(&mu_);
    auto found = sets_.find({deployment, revision});
    if (found == sets_.end()) return;
    for (v1::Replica& replica : *found->second.mutable_replicas()) {
      replica.set_replica_seconds(replica.replica_seconds() + seconds);
    }
  }
  // Sets created per (deployment, revision) over the fake's life (a set
  // deleted and made again counts twice).
  int creations(const std::string& deployment, int64_t revision) {
    absl::MutexLock lock(&mu_);
    auto found = creations_.find({deployment, revision});
    return found == creations_.end() ? 0 : found->second;
  }
  int deletions(const std::string& deployment, int64_t revision) {
    absl::MutexLock lock(&mu_);
    auto found = deletions_.find({deployment, revision});
    return found == deletions_.end() ? 0 : found->second;
  }
  std::optional<v1::ReplicaSet> Set(const std::string& deployment,
                                    int64_t revision) {
    absl::MutexLock lock(&mu_);
    auto found = sets_.find({deployment, revision});
    if (found == sets_.end()) return std::nullopt;
    return found->second;
  }
  int set_count(const std::string& deployment) {
    absl::MutexLock lock(&mu_);
    int count = 0;
    for (const auto& [key, set] : sets_) count += key.first == deployment;
    return count;
  }

  absl::StatusOr<v1::ReplicaSet> ApplyReplicaSet(
      const v1::ReplicaSetSpec& spec) override {
    std::function<void()> hook;
    v1::ReplicaSet result;
    {
      absl::MutexLock lock(&mu_);
      if (down_) return absl::UnavailableError("scheduler (fake): down");
      if (!refuse_.ok()) return refuse_;
      const Key key{spec.deployment(), spec.revision()};
      auto found = sets_.find(key);
      if (found == sets_.end()) {
        ++creations_[key];
        v1::ReplicaSet set;
        for (int i = 0; i < spec.min_replicas(); ++i) {
          v1::Replica* replica = set.add_replicas();
          replica->set_name(
              absl::StrCat(spec.deployment(), "-r", spec.revision(), "-", i));
          replica->set_deployment(spec.deployment());
          replica->set_revision(spec.revision());
          replica->mutable_create_time()->set_seconds(1000 + i);
          if (no_capacity_) {
            replica->set_state(v1::REPLICA_STATE_PENDING);
            replica->set_pending_reason("no node has a free GPU");
          } else {
            replica->set_state(v1::REPLICA_STATE_STARTING);
          }
        }
        set.set_desired_replicas(spec.min_replicas());
        found = sets_.emplace(key, std::move(set)).first;
        if (auto_ready_ && !no_capacity_) SetReadyLocked(found->second);
      }
      *found->second.mutable_spec() = spec;
      result = found->second;
      hook = on_apply_;
    }
    if (hook) hook();
    return result;
  }
  absl::StatusOr<std::vector<v1::ReplicaSet>> ListReplicaSets(
      const std::string& deployment) override {
    absl::MutexLock lock(&mu_);
    if (down_) return absl::UnavailableError("scheduler (fake): down");
    std::vector<v1::ReplicaSet> sets;
    for (const auto& [key, set] : sets_) {
      if (key.first == deployment) sets.push_back(set);
    }
    return sets;
  }
  absl::StatusOr<std::optional<v1::ReplicaSet>> DeleteReplicaSet(
      const std::string& deployment, int64_t revision,
      int drain_seconds) override {
    absl::MutexLock lock(&mu_);
    if (down_) return absl::UnavailableError("scheduler (fake): down");
    auto found = sets_.find({deployment, revision});
    if (found == sets_.end()) return std::optional<v1::ReplicaSet>();
    ++deletions_[{deployment, revision}];
    v1::ReplicaSet final_state = found->second;
    sets_.erase(found);
    return std::optional<v1::ReplicaSet>(std::move(final_state));
  }

 private:
  static void SetReadyLocked(v1::ReplicaSet& set) {
    int ready = 0;
    for (v1::Replica& replica : *set.mutable_replicas()) {
      replica.set_state(v1::REPLICA_STATE_READY);
      replica.clear_pending_reason();
      ++ready;
    }
    set.set_ready_replicas(ready);
  }

  absl::Mutex mu_;
  std::function<void()> on_apply_ ABSL_GUARDED_BY(mu_);
  bool down_ ABSL_GUARDED_BY(mu_) = false;
  bool no_capacity_ ABSL_GUARDED_BY(mu_) = false;
  bool auto_ready_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status refuse_ ABSL_GUARDED_BY(mu_);
  std::map<Key, v1::ReplicaSet> sets_ ABSL_GUARDED_BY(mu_);
  std::map<Key, int> creations_ ABSL_GUARDED_BY(mu_);
  std::map<Key, int> deletions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hangar::deployment::testing

#endif  // HANGAR_SERVICES_DEPLOYMENT_TESTING_FAKE_CLIENTS_H_
