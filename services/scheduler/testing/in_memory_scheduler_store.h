// An in-memory SchedulerStore for the Scheduler's unit tests: the same
// contract as PgSchedulerStore, plus a switch that makes every call
// UNAVAILABLE (as a stopped database does) and a write counter.
#ifndef HANGAR_SERVICES_SCHEDULER_TESTING_IN_MEMORY_SCHEDULER_STORE_H_
#define HANGAR_SERVICES_SCHEDULER_TESTING_IN_MEMORY_SCHEDULER_STORE_H_

#include <algorithm>
#include <map>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/scheduler/scheduler_store.h"

namespace hangar::scheduler::testing {

class InMemorySchedulerStore final : public SchedulerStore {
 public:
  absl::StatusOr<SchedulerSnapshot> Load() override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return Down();
    SchedulerSnapshot snapshot;
    for (const auto& [key, set] : sets_) snapshot.sets.push_back(set);
    for (const auto& [name, replica] : replicas_) {
      snapshot.replicas.push_back(replica);
    }
    for (const auto& [name, job] : jobs_) snapshot.jobs.push_back(job);
    std::sort(
        snapshot.jobs.begin(), snapshot.jobs.end(),
        [](const StoredJob& a, const StoredJob& b) {
          return std::make_pair(a.job.create_time().seconds(), a.job.name()) <
                 std::make_pair(b.job.create_time().seconds(), b.job.name());
        });
    return snapshot;
  }

  absl::Status PutSet(const StoredSet& set) override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return Down();
    ++writes_;
    sets_[{set.spec.deployment(), set.spec.revision()}] = set;
    return absl::OkStatus();
  }

  absl::Status DeleteSet(const std::string& deployment,
                         int64_t revision) override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return Down();
    ++writes_;
    if (sets_.erase({deployment, revision}) == 0) {
      return absl::NotFoundError(
          absl::StrCat("replica set ", deployment, "/", revision));
    }
    for (auto it = replicas_.begin(); it != replicas_.end();) {
      if (it->second.deployment == deployment &&
          it->second.revision == revision) {
        it = replicas_.erase(it);
      } else {
        ++it;
      }
    }
    return absl::OkStatus();
  }

  absl::Status PutReplica(const StoredReplica& replica) override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return Down();
    ++writes_;
    if (!sets_.contains({replica.deployment, replica.revision})) {
      return absl::FailedPreconditionError(
          absl::StrCat("replica ", replica.name, ": its set does not exist"));
    }
    replicas_[replica.name] = replica;
    return absl::OkStatus();
  }

  absl::Status DeleteReplica(const std::string& name) override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return Down();
    ++writes_;
    replicas_.erase(name);
    return absl::OkStatus();
  }

  absl::StatusOr<StoredJob> CreateJob(const StoredJob& job) override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return Down();
    for (const auto& [name, existing] : jobs_) {
      if (existing.request_id == job.request_id) return existing;
    }
    ++writes_;
    jobs_[job.job.name()] = job;
    return job;
  }

  absl::Status PutJob(const StoredJob& job) override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return Down();
    auto it = jobs_.find(job.job.name());
    if (it == jobs_.end()) return absl::NotFoundError(job.job.name());
    ++writes_;
    it->second = job;
    return absl::OkStatus();
  }

  void set_unavailable(bool unavailable) {
    absl::MutexLock lock(&mu_);
    unavailable_ = unavailable;
  }
  int writes() {
    absl::MutexLock lock(&mu_);
    return writes_;
  }

 private:
  static absl::Status Down() {
    return absl::UnavailableError("in-memory store: unavailable");
  }

  absl::Mutex mu_;
  std::map<std::pair<std::string, int64_t>, StoredSet> sets_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, StoredReplica> replicas_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, StoredJob> jobs_ ABSL_GUARDED_BY(mu_);
  bool unavailable_ ABSL_GUARDED_BY(mu_) = false;
  int writes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hangar::scheduler::testing

#endif  // HANGAR_SERVICES_SCHEDULER_TESTING_IN_MEMORY_SCHEDULER_STORE_H_
