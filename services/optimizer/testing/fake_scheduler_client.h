// SchedulerClient in memory, for the domain unit tests: jobs are records the
// test moves through their states (SetJob), and WatchJob blocks until the
// job changes, like the real stream.
#ifndef HANGAR_SERVICES_OPTIMIZER_TESTING_FAKE_SCHEDULER_CLIENT_H_
#define HANGAR_SERVICES_OPTIMIZER_TESTING_FAKE_SCHEDULER_CLIENT_H_

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/optimizer/scheduler_client.h"

namespace hangar::optimizer::testing {

class FakeSchedulerClient final : public SchedulerClient {
 public:
  absl::StatusOr<v1::Job> SubmitJob(const v1::JobSpec& spec,
                                    const std::string& request_id) override {
    absl::MutexLock lock(&mu_);
    if (!submit_error_.ok()) return submit_error_;
    if (auto it = by_request_.find(request_id); it != by_request_.end())
      return jobs_.at(it->second);
    v1::Job job;
    job.set_name(absl::StrCat("job-", jobs_.size() + 1 + forgotten_));
    *job.mutable_spec() = spec;
    job.set_state(v1::JOB_STATE_PENDING);
    job.set_pending_reason("waiting for a free GPU");
    jobs_[job.name()] = job;
    by_request_[request_id] = job.name();
    ++submits_;
    return job;
  }
  absl::StatusOr<v1::Job> GetJob(const std::string& name) override {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(name);
    if (it == jobs_.end()) return absl::NotFoundError(name);
    return it->second;
  }
  absl::StatusOr<v1::Job> CancelJob(const std::string& name) override {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(name);
    if (it == jobs_.end()) return absl::NotFoundError(name);
    ++cancels_;
    v1::JobState s = it->second.state();
    if (s == v1::JOB_STATE_PENDING || s == v1::JOB_STATE_RUNNING) {
      it->second.set_state(v1::JOB_STATE_CANCELLED);
      it->second.set_exit_code(128 + 15);
    }
    return it->second;
  }
  absl::Status WatchJob(const std::string& name,
                        const std::function<void(const v1::Job&)>& on_update,
                        absl::Duration timeout) override {
    absl::Time deadline = absl::Now() + timeout;
    std::string last;
    while (true) {
      v1::Job job;
      {
        absl::MutexLock lock(&mu_);
        auto changed = [&] {
          auto it = jobs_.find(name);
          return it == jobs_.end() || it->second.SerializeAsString() != last;
        };
        if (!mu_.AwaitWithDeadline(absl::Condition(&changed), deadline)) {
          return absl::DeadlineExceededError("watch slice over");
        }
        auto it = jobs_.find(name);
        if (it == jobs_.end()) return absl::NotFoundError(name);
        job = it->second;
        last = job.SerializeAsString();
        ++watch_updates_;
      }
      on_update(job);
      if (job.state() == v1::JOB_STATE_SUCCEEDED ||
          job.state() == v1::JOB_STATE_FAILED ||
          job.state() == v1::JOB_STATE_CANCELLED) {
        return absl::OkStatus();
      }
    }
  }

  // --- For tests ---
  // Replaces the job's state, exit code and log tail.
  void SetJob(const std::string& name, v1::JobState state,
              const std::string& log_tail = "", int exit_code = 0) {
    absl::MutexLock lock(&mu_);
    v1::Job& j = jobs_[name];
    j.set_name(name);
    j.set_state(state);
    j.set_log_tail(log_tail);
    j.set_exit_code(exit_code);
    if (state != v1::JOB_STATE_PENDING) j.clear_pending_reason();
  }
  // Forgets every job (a scheduler that lost its state).
  void ForgetAll() {
    absl::MutexLock lock(&mu_);
    forgotten_ += int(jobs_.size());
    jobs_.clear();
    by_request_.clear();
  }
  void set_submit_error(absl::Status s) {
    absl::MutexLock lock(&mu_);
    submit_error_ = std::move(s);
  }
  std::vector<v1::Job> jobs() {
    absl::MutexLock lock(&mu_);
    std::vector<v1::Job> out;
    for (const auto& [n, j] : jobs_) out.push_back(j);
    return out;
  }
  int submits() {
    absl::MutexLock lock(&mu_);
    return submits_;
  }
  int cancels() {
    absl::MutexLock lock(&mu_);
    return cancels_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, v1::Job> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> by_request_ ABSL_GUARDED_BY(mu_);
  absl::Status submit_error_ ABSL_GUARDED_BY(mu_);
  int submits_ ABSL_GUARDED_BY(mu_) = 0;
  int cancels_ ABSL_GUARDED_BY(mu_) = 0;
  int forgotten_ ABSL_GUARDED_BY(mu_) = 0;
  int watch_updates_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hangar::optimizer::testing

#endif  // HANGAR_SERVICES_OPTIMIZER_TESTING_FAKE_SCHEDULER_CLIENT_H_
