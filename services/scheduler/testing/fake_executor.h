// A scripted Executor for the Scheduler's unit tests: it records what the
// scheduler asks for (starts, stops, adoptions, jobs) and reports only what
// the test makes it report (Emit*), through the observer given at creation,
// on the test's thread.
#ifndef HANGAR_SERVICES_SCHEDULER_TESTING_FAKE_EXECUTOR_H_
#define HANGAR_SERVICES_SCHEDULER_TESTING_FAKE_EXECUTOR_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/scheduler/executor.h"

namespace hangar::scheduler::testing {

class FakeExecutor final : public Executor {
 public:
  explicit FakeExecutor(ExecutorObserver observer)
      : observer_(std::move(observer)) {}

  absl::Status StartReplica(const ReplicaSpec& spec) override {
    absl::MutexLock lock(&mu_);
    auto it = replicas_.find(spec.name);
    if (it != replicas_.end() && it->second.state != ReplicaState::kStopped) {
      return absl::AlreadyExistsError(spec.name);
    }
    replicas_[spec.name] = {.spec = spec, .state = ReplicaState::kStarting};
    started_.push_back(spec.name);
    return absl::OkStatus();
  }
  absl::Status StopReplica(absl::string_view name,
                           absl::Duration drain) override {
    absl::MutexLock lock(&mu_);
    auto it = replicas_.find(std::string(name));
    if (it == replicas_.end()) return absl::NotFoundError(name);
    if (it->second.state != ReplicaState::kStopped) {
      it->second.state = ReplicaState::kDraining;
    }
    stopped_.push_back(std::string(name));
    last_drain_ = drain;
    return absl::OkStatus();
  }
  absl::Status ForgetReplica(absl::string_view name) override {
    absl::MutexLock lock(&mu_);
    auto it = replicas_.find(std::string(name));
    if (it == replicas_.end()) return absl::NotFoundError(name);
    if (it->second.state != ReplicaState::kStopped) {
      return absl::FailedPreconditionError(name);
    }
    replicas_.erase(it);
    return absl::OkStatus();
  }
  // Adopted jobs stay RUNNING until the test emits their end.
  absl::Status Adopt(const std::vector<RecordedReplica>& recorded,
                     const std::vector<RecordedJob>& jobs) override {
    absl::MutexLock lock(&mu_);
    for (const RecordedReplica& record : recorded) {
      if (replicas_.contains(record.spec.name)) {
        return absl::AlreadyExistsError(record.spec.name);
      }
    }
    for (const RecordedJob& record : jobs) {
      if (jobs_.contains(record.spec.name)) {
        return absl::AlreadyExistsError(record.spec.name);
      }
    }
    for (const RecordedReplica& record : recorded) {
      replicas_[record.spec.name] = {.spec = record.spec,
                                     .state = ReplicaState::kStarting,
                                     .pid = record.pid,
                                     .start_ticks = record.start_ticks,
                                     .address = record.address,
                                     .restarts = record.restarts};
      adopted_.push_back(record);
    }
    for (const RecordedJob& record : jobs) {
      jobs_[record.spec.name] = {.spec = record.spec,
                                 .state = JobState::kRunning,
                                 .pid = record.pid,
                                 .start_ticks = record.start_ticks};
      adopted_jobs_.push_back(record);
    }
    return absl::OkStatus();
  }
  absl::StatusOr<ReplicaStatus> GetReplica(absl::string_view name) override {
    absl::MutexLock lock(&mu_);
    auto it = replicas_.find(std::string(name));
    if (it == replicas_.end()) return absl::NotFoundError(name);
    return it->second;
  }
  std::vector<ReplicaStatus> ListReplicas() override {
    absl::MutexLock lock(&mu_);
    std::vector<ReplicaStatus> list;
    for (const auto& [name, status] : replicas_) list.push_back(status);
    return list;
  }
  absl::Status StartJob(const JobSpec& spec) override {
    absl::MutexLock lock(&mu_);
    if (jobs_.contains(spec.name)) return absl::AlreadyExistsError(spec.name);
    jobs_[spec.name] = {.spec = spec, .state = JobState::kRunning};
    return absl::OkStatus();
  }
  absl::Status CancelJob(absl::string_view name) override {
    absl::MutexLock lock(&mu_);
    if (!jobs_.contains(std::string(name))) return absl::NotFoundError(name);
    cancelled_.push_back(std::string(name));
    return absl::OkStatus();
  }
  absl::Status ForgetJob(absl::string_view name) override {
    absl::MutexLock lock(&mu_);
    jobs_.erase(std::string(name));
    return absl::OkStatus();
  }
  absl::StatusOr<JobStatus> GetJob(absl::string_view name) override {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(std::string(name));
    if (it == jobs_.end()) return absl::NotFoundError(name);
    return it->second;
  }
  std::vector<JobStatus> ListJobs() override {
    absl::MutexLock lock(&mu_);
    std::vector<JobStatus> list;
    for (const auto& [name, status] : jobs_) list.push_back(status);
    return list;
  }

  // Reports a replica's new state (READY gets an address when none given).
  void EmitReplica(const std::string& name, ReplicaState state,
                   int restarts = -1, std::string address = "") {
    ReplicaStatus status;
    {
      absl::MutexLock lock(&mu_);
      ReplicaStatus& current = replicas_[name];
      current.state = state;
      if (restarts >= 0) current.restarts = restarts;
      if (state == ReplicaState::kReady && current.address.empty()) {
        current.address = address.empty()
                              ? absl::StrCat("127.0.0.1:", 20000 + port_++)
                              : address;
        current.pid = 1000 + port_;
      }
      if (state == ReplicaState::kStopped) current.pid = 0;
      status = current;
    }
    observer_.on_replica(status);
  }
  void EmitJob(const std::string& name, JobState state,
               std::optional<int> exit_code = std::nullopt,
               std::string log_tail = "") {
    JobStatus status;
    {
      absl::MutexLock lock(&mu_);
      JobStatus& current = jobs_[name];
      current.state = state;
      current.exit_code = exit_code;
      current.log_tail = std::move(log_tail);
      if (state == JobState::kFailed) current.failure_reason = "exited";
      status = current;
    }
    observer_.on_job(status);
  }

  std::vector<std::string> started() {
    absl::MutexLock lock(&mu_);
    return started_;
  }
  std::vector<std::string> stopped() {
    absl::MutexLock lock(&mu_);
    return stopped_;
  }
  std::vector<RecordedReplica> adopted() {
    absl::MutexLock lock(&mu_);
    return adopted_;
  }
  std::vector<RecordedJob> adopted_jobs() {
    absl::MutexLock lock(&mu_);
    return adopted_jobs_;
  }
  std::vector<std::string> cancelled() {
    absl::MutexLock lock(&mu_);
    return cancelled_;
  }
  bool has_job(const std::string& name) {
    absl::MutexLock lock(&mu_);
    return jobs_.contains(name);
  }
  int replica_count() {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(replicas_.size());
  }

 private:
  const ExecutorObserver observer_;
  absl::Mutex mu_;
  std::map<std::string, ReplicaStatus> replicas_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, JobStatus> jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> started_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> stopped_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> cancelled_ ABSL_GUARDED_BY(mu_);
  std::vector<RecordedReplica> adopted_ ABSL_GUARDED_BY(mu_);
  std::vector<RecordedJob> adopted_jobs_ ABSL_GUARDED_BY(mu_);
  absl::Duration last_drain_ ABSL_GUARDED_BY(mu_);
  int port_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hangar::scheduler::testing

#endif  // HANGAR_SERVICES_SCHEDULER_TESTING_FAKE_EXECUTOR_H_
