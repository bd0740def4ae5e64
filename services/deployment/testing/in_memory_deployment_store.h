// DeploymentStore in memory, for the domain's unit tests: the same contract
// as PgDeploymentStore (deployment_store.h) under one mutex, with a switch
// that makes every call UNAVAILABLE, as a stopped database does.
#ifndef HANGAR_SERVICES_DEPLOYMENT_TESTING_IN_MEMORY_DEPLOYMENT_STORE_H_
#define HANGAR_SERVICES_DEPLOYMENT_TESTING_IN_MEMORY_DEPLOYMENT_STORE_H_

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/api/etag.h"
#include "common/api/time.h"
#include "services/deployment/deployment_store.h"

namespace hangar::deployment::testing {

class InMemoryDeploymentStore final : public DeploymentStore {
 public:
  void SetDown(bool down) {
    absl::MutexLock lock(&mu_);
    down_ = down;
  }

  absl::StatusOr<std::optional<RequestRecord>> FindRequest(
      const std::string& kind, const std::string& request_id) override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    auto found = requests_.find({kind, request_id});
    if (found == requests_.end()) return std::optional<RequestRecord>();
    return std::optional<RequestRecord>(found->second);
  }

  absl::StatusOr<v1::Deployment> Create(const CreateRecord& record) override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    auto known = requests_.find({"create", record.request_id});
    if (known != requests_.end()) {
      if (known->second.fingerprint != record.fingerprint) return Reused();
      return GetLocked(known->second.resource);
    }
    Row row{.deployment = record.deployment, .version = 1};
    const std::string base = row.deployment.display_name();
    for (int suffix = 1;; ++suffix) {
      std::string candidate =
          suffix == 1 ? base : absl::StrCat(base, "-", suffix);
      if (!LiveNameTaken(candidate, "")) {
        row.deployment.set_display_name(candidate);
        break;
      }
      if (record.display_name_explicit) {
        return absl::AlreadyExistsError("display_name: taken");
      }
    }
    requests_[{"create", record.request_id}] = {record.fingerprint,
                                                record.deployment.name()};
    row.revisions[record.revision.number()] = record.revision;
    rows_[record.deployment.name()] = row;
    return WithEtag(rows_[record.deployment.name()]);
  }

  absl::StatusOr<v1::Deployment> Get(const std::string& name) override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    return GetLocked(name);
  }

  absl::StatusOr<std::vector<v1::Deployment>> List(
      const DeploymentFilter& filter, const std::string& after,
      int limit) override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    std::vector<v1::Deployment> result;
    for (auto it = rows_.upper_bound(after);
         it != rows_.end() && static_cast<int>(result.size()) < limit; ++it) {
      const v1::Deployment& d = it->second.deployment;
      if (!filter.model.empty() && d.spec().model() != filter.model) continue;
      if (filter.state != v1::DEPLOYMENT_STATE_UNSPECIFIED &&
          d.state() != filter.state) {
        continue;
      }
      if (!filter.tag.empty() && std::find(d.tags().begin(), d.tags().end(),
                                           filter.tag) == d.tags().end()) {
        continue;
      }
      if (!filter.show_deleted && d.state() == v1::DEPLOYMENT_STATE_DELETED) {
        continue;
      }
      result.push_back(WithEtag(it->second));
    }
    return result;
  }

  absl::StatusOr<v1::Deployment> Update(
      const std::string& name, const std::optional<RequestClaim>& claim,
      const MutateFn& mutate) override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    absl::StatusOr<v1::Deployment> current = GetLocked(name);
    if (!current.ok()) return current.status();
    if (claim.has_value()) {
      auto known = requests_.find({claim->kind, claim->request_id});
      if (known != requests_.end()) {
        if (known->second.fingerprint != claim->fingerprint) return Reused();
        return GetLocked(known->second.resource);
      }
    }
    absl::StatusOr<Mutation> mutation = mutate(*current);
    if (!mutation.ok()) return mutation.status();
    if (!mutation->write) return *current;
    Row& row = rows_[current->name()];
    if (!mutation->lease_owner.empty() &&
        row.lease_owner != mutation->lease_owner) {
      return absl::AbortedError("lease lost");
    }
    for (const v1::Revision& revision : mutation->revision_updates) {
      if (row.revisions.contains(revision.number())) {
        row.revisions[revision.number()] = revision;
      }
    }
    v1::Deployment next = mutation->deployment;
    next.set_name(current->name());
    next.clear_etag();
    if (next.display_name() != current->display_name() &&
        next.state() != v1::DEPLOYMENT_STATE_DELETED &&
        LiveNameTaken(next.display_name(), next.name())) {
      return absl::AlreadyExistsError("display_name: taken");
    }
    if (claim.has_value()) {
      requests_[{claim->kind, claim->request_id}] = {claim->fingerprint,
                                                     current->name()};
    }
    row.deployment = next;
    ++row.version;
    if (mutation->new_revision.has_value()) {
      row.revisions[mutation->new_revision->number()] = *mutation->new_revision;
    }
    if (mutation->revoke_keys) {
      for (auto& [key_name, key] : keys_) {
        if (key.key.deployment() == next.name() && !key.key.revoked()) {
          key.key.set_revoked(true);
          *key.key.mutable_revoke_time() = ToProtoTimestamp(mutation->now);
        }
      }
    }
    return WithEtag(row);
  }

  absl::StatusOr<v1::Revision> GetRevision(const std::string& deployment,
                                           int64_t number) override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    auto row = rows_.find(deployment);
    if (row == rows_.end() || !row->second.revisions.contains(number)) {
      return absl::NotFoundError("revision not found");
    }
    return row->second.revisions.at(number);
  }

  absl::StatusOr<std::vector<v1::Revision>> ListRevisions(
      const std::string& deployment, int64_t before, int limit) override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    std::vector<v1::Revision> result;
    auto row = rows_.find(deployment);
    if (row == rows_.end()) return result;
    for (auto it = row->second.revisions.rbegin();
         it != row->second.revisions.rend() &&
         static_cast<int>(result.size()) < limit;
         ++it) {
      if (before == 0 || it->first < before) result.push_back(it->second);
    }
    return result;
  }

  absl::StatusOr<int> CountActiveApiKeys(
      const std::string& deployment) override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    int count = 0;
    for (const auto& [name, key] : keys_) {
      count += key.key.deployment() == deployment && !key.key.revoked();
    }
    return count;
  }

  absl::StatusOr<bool> RecordUsage(
      const std::string& report_id,
      const std::vector<v1::TokenUsageReport>& reports,
      absl::Time now) override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    if (!usage_reports_.insert(report_id).second) return false;
    for (const v1::TokenUsageReport& report : reports) {
      const std::string day =
          absl::FormatTime("%Y-%m-%d", FromProtoTimestamp(report.start_time()),
                           absl::UTCTimeZone());
      TokenUsageRow& row = usage_[{day, report.deployment(), report.api_key()}];
      row.date = day;
      row.deployment = report.deployment();
      row.api_key = report.api_key();
      row.requests += report.requests();
      row.prompt_tokens += report.tokens().prompt_tokens();
      row.completion_tokens += report.tokens().completion_tokens();
    }
    return true;
  }

  absl::StatusOr<std::vector<TokenUsageRow>> TokenUsage(
      const UsageQuery& query, const std::string& after, int limit) override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    std::vector<TokenUsageRow> result;
    for (const auto& [key, row] : usage_) {
      if (static_cast<int>(result.size()) >= limit) break;
      if (!Matches(query, row)) continue;
      if (!after.empty() && absl::StrCat(row.date, "|", row.deployment, "|",
                                         row.api_key) <= after) {
        continue;
      }
      result.push_back(row);
    }
    return result;
  }

  absl::StatusOr<TokenUsageRow> TokenUsageTotal(
      const UsageQuery& query) override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    TokenUsageRow total;
    for (const auto& [key, row] : usage_) {
      if (!Matches(query, row)) continue;
      total.requests += row.requests;
      total.prompt_tokens += row.prompt_tokens;
      total.completion_tokens += row.completion_tokens;
    }
    return total;
  }

  absl::StatusOr<std::pair<v1::ApiKey, bool>> CreateApiKey(
      const std::string& request_id, const std::string& fingerprint,
      const StoredApiKey& key) override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    auto known = requests_.find({"api_key", request_id});
    if (known != requests_.end()) {
      if (known->second.fingerprint != fingerprint) return Reused();
      return std::pair(keys_.at(known->second.resource).key, false);
    }
    auto row = rows_.find(key.key.deployment());
    if (row == rows_.end()) return absl::NotFoundError("deployment not found");
    if (row->second.deployment.state() == v1::DEPLOYMENT_STATE_DELETED ||
        row->second.deployment.state() == v1::DEPLOYMENT_STATE_DELETING) {
      return absl::FailedPreconditionError("deployment is deleted");
    }
    requests_[{"api_key", request_id}] = {fingerprint, key.key.name()};
    keys_[key.key.name()] = key;
    return std::pair(key.key, true);
  }

  absl::StatusOr<std::vector<v1::ApiKey>> ListApiKeys(
      const std::string& deployment, bool show_revoked,
      const std::string& after, int limit) override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    std::vector<v1::ApiKey> result;
    for (auto it = keys_.upper_bound(after);
         it != keys_.end() && static_cast<int>(result.size()) < limit; ++it) {
      const v1::ApiKey& key = it->second.key;
      if (key.deployment() != deployment) continue;
      if (key.revoked() && !show_revoked) continue;
      result.push_back(key);
    }
    return result;
  }

  absl::StatusOr<v1::ApiKey> RevokeApiKey(const std::string& name,
                                          absl::Time now) override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    auto found = keys_.find(name);
    if (found == keys_.end()) return absl::NotFoundError("api key not found");
    v1::ApiKey& key = found->second.key;
    if (!key.revoked()) {
      key.set_revoked(true);
      *key.mutable_revoke_time() = ToProtoTimestamp(now);
    }
    return key;
  }

  absl::StatusOr<std::vector<v1::ApiKeyEvent::Entry>> ActiveApiKeys() override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    std::vector<v1::ApiKeyEvent::Entry> result;
    for (const auto& [name, key] : keys_) {
      if (key.key.revoked()) continue;
      v1::ApiKeyEvent::Entry entry;
      entry.set_key_name(name);
      entry.set_deployment(key.key.deployment());
      entry.set_sha256(key.sha256);
      result.push_back(std::move(entry));
    }
    return result;
  }

  absl::StatusOr<bool> AcquireLease(const std::string& name,
                                    const std::string& owner, absl::Time now,
                                    absl::Time expiry) override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    auto row = rows_.find(name);
    if (row == rows_.end()) return absl::NotFoundError("deployment not found");
    Row& r = row->second;
    if (!r.lease_owner.empty() && r.lease_owner != owner &&
        r.lease_expiry >= now) {
      return false;
    }
    r.lease_owner = owner;
    r.lease_expiry = expiry;
    return true;
  }

  absl::Status ReleaseLease(const std::string& name,
                            const std::string& owner) override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    auto row = rows_.find(name);
    if (row != rows_.end() && row->second.lease_owner == owner) {
      row->second.lease_owner.clear();
    }
    return absl::OkStatus();
  }

  absl::Status RecordReplicaUsage(const std::vector<ReplicaSample>& samples,
                                  absl::Time now) override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    const std::string day =
        absl::FormatTime("%Y-%m-%d", now, absl::UTCTimeZone());
    for (const ReplicaSample& sample : samples) {
      const std::string replica =
          absl::StrCat(sample.replica, "@", sample.replica_create_micros);
      double& recorded = replica_cumulative_[replica];
      if (sample.cumulative_seconds <= recorded) continue;
      ReplicaUsageRow& row =
          replica_usage_[{day, sample.deployment, sample.hardware}];
      row.date = day;
      row.deployment = sample.deployment;
      row.hardware = sample.hardware;
      row.replica_seconds += sample.cumulative_seconds - recorded;
      recorded = sample.cumulative_seconds;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<ReplicaUsageRow>> ReplicaUsage(
      const UsageQuery& query, const std::string& after, int limit) override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    std::vector<ReplicaUsageRow> result;
    for (const auto& [key, row] : replica_usage_) {
      if (static_cast<int>(result.size()) >= limit) break;
      if (!MatchesReplica(query, row)) continue;
      if (!after.empty() && absl::StrCat(row.date, "|", row.deployment, "|",
                                         row.hardware) <= after) {
        continue;
      }
      result.push_back(row);
    }
    return result;
  }

  absl::StatusOr<std::vector<ReplicaUsageRow>> ReplicaUsageByHardware(
      const UsageQuery& query) override {
    absl::MutexLock lock(&mu_);
    if (down_) return Down();
    std::map<std::string, ReplicaUsageRow> by_hardware;
    for (const auto& [key, row] : replica_usage_) {
      if (!MatchesReplica(query, row)) continue;
      ReplicaUsageRow& sum = by_hardware[row.hardware];
      sum.hardware = row.hardware;
      sum.replica_seconds += row.replica_seconds;
    }
    std::vector<ReplicaUsageRow> result;
    for (auto& [hardware, row] : by_hardware) result.push_back(row);
    return result;
  }

  // Who holds the lease of `name` ("" when none), for tests.
  std::string LeaseOwner(const std::string& name) {
    absl::MutexLock lock(&mu_);
    auto row = rows_.find(name);
    return row == rows_.end() ? "" : row->second.lease_owner;
  }

 private:
  struct Row {
    v1::Deployment deployment;
    int64_t version = 1;
    std::map<int64_t, v1::Revision> revisions;
    std::string lease_owner;
    absl::Time lease_expiry = absl::InfinitePast();
  };

  static bool MatchesReplica(const UsageQuery& query,
                             const ReplicaUsageRow& row) {
    return (query.deployment.empty() || row.deployment == query.deployment) &&
           (query.start_date.empty() || row.date >= query.start_date) &&
           (query.end_date.empty() || row.date <= query.end_date);
  }

  static absl::Status Down() {
    return absl::UnavailableError("database (in memory): down");
  }
  static absl::Status Reused() {
    return absl::InvalidArgumentError(
        "request_id: was already used for a different request");
  }
  static v1::Deployment WithEtag(const Row& row) {
    v1::Deployment deployment = row.deployment;
    deployment.set_etag(MakeEtag(row.version));
    return deployment;
  }
  static bool Matches(const UsageQuery& query, const TokenUsageRow& row) {
    return (query.deployment.empty() || row.deployment == query.deployment) &&
           (query.start_date.empty() || row.date >= query.start_date) &&
           (query.end_date.empty() || row.date <= query.end_date);
  }

  bool LiveNameTaken(const std::string& display_name, const std::string& except)
      ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    for (const auto& [name, row] : rows_) {
      if (name != except && row.deployment.display_name() == display_name &&
          row.deployment.state() != v1::DEPLOYMENT_STATE_DELETED) {
        return true;
      }
    }
    return false;
  }

  absl::StatusOr<v1::Deployment> GetLocked(const std::string& name)
      ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    auto found = rows_.find(name);
    if (found != rows_.end()) return WithEtag(found->second);
    for (const auto& [id, row] : rows_) {
      if (row.deployment.display_name() == name &&
          row.deployment.state() != v1::DEPLOYMENT_STATE_DELETED) {
        return WithEtag(row);
      }
    }
    return absl::NotFoundError(
        absl::StrCat("deployment \"", name, "\" not found"));
  }

  absl::Mutex mu_;
  bool down_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, Row> rows_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, std::string>, RequestRecord> requests_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, StoredApiKey> keys_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> usage_reports_ ABSL_GUARDED_BY(mu_);
  std::map<std::tuple<std::string, std::string, std::string>, TokenUsageRow>
      usage_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, double> replica_cumulative_ ABSL_GUARDED_BY(mu_);
  std::map<std::tuple<std::string, std::string, std::string>, ReplicaUsageRow>
      replica_usage_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hangar::deployment::testing

#endif  // HANGAR_SERVICES_DEPLOYMENT_TESTING_IN_MEMORY_DEPLOYMENT_STORE_H_
