// JobStore in memory, for the domain unit tests (the same contract as
// pg_job_store.h). set_unavailable(true) makes every call UNAVAILABLE, as a
// stopped database does.
#ifndef HANGAR_SERVICES_OPTIMIZER_TESTING_IN_MEMORY_JOB_STORE_H_
#define HANGAR_SERVICES_OPTIMIZER_TESTING_IN_MEMORY_JOB_STORE_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/optimizer/job_store.h"

namespace hangar::optimizer::testing {

#define RETURN_IF_DOWN() \
  if (unavailable_)      \
  return absl::UnavailableError("in-memory store: unavailable")

class InMemoryJobStore final : public JobStore {
 public:
  void set_unavailable(bool v) {
    absl::MutexLock lock(&mu_);
    unavailable_ = v;
  }

  absl::StatusOr<Claimed> CreateJob(const StoredJob& job,
                                    const std::string& request_id,
                                    const std::string& fingerprint) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_DOWN();
    if (auto it = requests_.find(request_id); it != requests_.end()) {
      return Claimed{jobs_.at(it->second.first), it->second.second, false};
    }
    jobs_[job.job.name()] = job;
    requests_[request_id] = {job.job.name(), fingerprint};
    return Claimed{job, fingerprint, true};
  }
  absl::StatusOr<Claimed> BindRequest(const std::string& request_id,
                                      const std::string& fingerprint,
                                      const std::string& job_name) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_DOWN();
    if (auto it = requests_.find(request_id); it != requests_.end()) {
      return Claimed{jobs_.at(it->second.first), it->second.second, false};
    }
    auto j = jobs_.find(job_name);
    if (j == jobs_.end()) return absl::NotFoundError(job_name);
    requests_[request_id] = {job_name, fingerprint};
    return Claimed{j->second, fingerprint, true};
  }
  absl::StatusOr<std::optional<Claimed>> FindRequest(
      const std::string& request_id) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_DOWN();
    auto it = requests_.find(request_id);
    if (it == requests_.end()) return std::optional<Claimed>();
    return std::optional<Claimed>(
        Claimed{jobs_.at(it->second.first), it->second.second, false});
  }
  absl::StatusOr<StoredJob> GetJob(const std::string& name) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_DOWN();
    auto it = jobs_.find(name);
    if (it == jobs_.end())
      return absl::NotFoundError(
          absl::StrCat("optimization job ", name, " not found"));
    return it->second;
  }
  absl::Status UpdateJob(const StoredJob& job) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_DOWN();
    auto it = jobs_.find(job.job.name());
    if (it == jobs_.end()) return absl::NotFoundError(job.job.name());
    it->second = job;
    ++updates_;
    return absl::OkStatus();
  }
  absl::StatusOr<JobPage> ListJobs(const JobFilter& filter,
                                   const std::string& after_name,
                                   int limit) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_DOWN();
    JobPage page;
    for (auto it = jobs_.upper_bound(after_name); it != jobs_.end(); ++it) {
      const v1::OptimizationJob& j = it->second.job;
      if (!filter.model.empty() && j.model() != filter.model) continue;
      if (filter.state != v1::JOB_STATE_UNSPECIFIED &&
          j.state() != filter.state)
        continue;
      if (int(page.jobs.size()) == limit) {
        page.more = true;
        break;
      }
      page.jobs.push_back(it->second);
    }
    return page;
  }
  absl::StatusOr<std::vector<StoredJob>> ListUnfinishedJobs() override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_DOWN();
    std::vector<StoredJob> out;
    for (const auto& [name, j] : jobs_) {
      if (j.job.state() == v1::JOB_STATE_PENDING ||
          j.job.state() == v1::JOB_STATE_RUNNING)
        out.push_back(j);
    }
    return out;
  }
  absl::StatusOr<std::optional<StoredJob>> FindUnfinishedJob(
      const std::string& sha, const std::string& slug) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_DOWN();
    for (const auto& [name, j] : jobs_) {
      if ((j.job.state() == v1::JOB_STATE_PENDING ||
           j.job.state() == v1::JOB_STATE_RUNNING) &&
          j.job.source_sha256() == sha &&
          j.output_path.size() > sha.size() + slug.size() + 1 &&
          j.output_path.substr(j.output_path.size() - sha.size() - slug.size() -
                               2) == "/" + sha + "-" + slug) {
        return std::optional<StoredJob>(j);
      }
    }
    return std::optional<StoredJob>();
  }
  absl::Status PutArtifact(const v1::Artifact& a,
                           const std::string& slug) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_DOWN();
    artifacts_[{a.source_sha256(), slug}] = a;
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<v1::Artifact>> FindArtifact(
      const std::string& sha, const std::string& slug) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_DOWN();
    auto it = artifacts_.find({sha, slug});
    if (it == artifacts_.end()) return std::optional<v1::Artifact>();
    return std::optional<v1::Artifact>(it->second);
  }
  absl::StatusOr<ArtifactPage> ListArtifacts(const std::string& model,
                                             const std::string& after,
                                             int limit) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_DOWN();
    std::map<std::string, v1::Artifact, std::greater<>> by_name;
    for (const auto& [key, a] : artifacts_) {
      if (model.empty() || a.model() == model) by_name[a.name()] = a;
    }
    ArtifactPage page;
    for (const auto& [name, a] : by_name) {
      if (!after.empty() && name >= after) continue;
      if (int(page.artifacts.size()) == limit) {
        page.more = true;
        break;
      }
      page.artifacts.push_back(a);
    }
    return page;
  }

  absl::StatusOr<std::optional<Claimed>> CreateReusingJob(
      const StoredJob& job, const std::string& request_id,
      const std::string& fingerprint, const std::string& slug) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_DOWN();
    if (auto it = requests_.find(request_id); it != requests_.end()) {
      return std::optional<Claimed>(
          Claimed{jobs_.at(it->second.first), it->second.second, false});
    }
    if (!artifacts_.contains({job.job.source_sha256(), slug}))
      return std::optional<Claimed>();
    jobs_[job.job.name()] = job;
    requests_[request_id] = {job.job.name(), fingerprint};
    return std::optional<Claimed>(Claimed{job, fingerprint, true});
  }
  absl::StatusOr<Released> ReleaseRequest(const std::string& request_id,
                                          absl::Time now) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_DOWN();
    auto it = requests_.find(request_id);
    if (it == requests_.end()) {
      return absl::NotFoundError(
          absl::StrCat("request id '", request_id, "' not found"));
    }
    Released out;
    out.job = jobs_.at(it->second.first);
    auto [r, inserted] = released_.emplace(request_id, now);
    out.release_time = r->second;
    out.released_now = inserted;
    return out;
  }
  absl::StatusOr<bool> WithKeyLocked(
      const std::string& key,
      const std::function<absl::StatusOr<bool>(const KeyState&)>& decide)
      override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_DOWN();
    KeyState state;
    state.key = key;
    std::pair<std::string, std::string> artifact_key;
    for (const auto& [k, a] : artifacts_) {
      if (k.first + "-" + k.second == key) {
        state.artifact = a;
        artifact_key = k;
      }
    }
    for (const auto& [rid, bound] : requests_) {
      const StoredJob& j = jobs_.at(bound.first);
      if (KeyOf(j) != key) continue;
      auto rel = released_.find(rid);
      if (rel != released_.end()) {
        if (!state.last_release || *state.last_release < rel->second)
          state.last_release = rel->second;
      } else if (j.job.state() == v1::JOB_STATE_PENDING ||
                 j.job.state() == v1::JOB_STATE_RUNNING ||
                 j.job.state() == v1::JOB_STATE_SUCCEEDED) {
        ++state.live_holds;
      }
    }
    for (const auto& [name, j] : jobs_) {
      if (KeyOf(j) == key && (j.job.state() == v1::JOB_STATE_PENDING ||
                              j.job.state() == v1::JOB_STATE_RUNNING))
        state.unfinished = true;
    }
    absl::StatusOr<bool> remove = decide(state);
    if (remove.ok() && *remove && state.artifact.has_value())
      artifacts_.erase(artifact_key);
    return remove;
  }
  absl::StatusOr<std::vector<std::string>> ListArtifactKeys() override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_DOWN();
    std::vector<std::string> keys;
    for (const auto& [k, a] : artifacts_)
      keys.push_back(k.first + "-" + k.second);
    return keys;
  }

  int updates() {
    absl::MutexLock lock(&mu_);
    return updates_;
  }

 private:
  static std::string KeyOf(const StoredJob& j) {
    size_t slash = j.output_path.rfind('/');
    return slash == std::string::npos ? j.output_path
                                      : j.output_path.substr(slash + 1);
  }
  absl::Mutex mu_;
  std::map<std::string, absl::Time> released_ ABSL_GUARDED_BY(mu_);
  bool unavailable_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, StoredJob> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::pair<std::string, std::string>> requests_
      ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, std::string>, v1::Artifact> artifacts_
      ABSL_GUARDED_BY(mu_);
  int updates_ ABSL_GUARDED_BY(mu_) = 0;
};
#undef RETURN_IF_DOWN

}  // namespace hangar::optimizer::testing

#endif  // HANGAR_SERVICES_OPTIMIZER_TESTING_IN_MEMORY_JOB_STORE_H_
