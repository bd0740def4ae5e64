// DeploymentStore on PostgreSQL (schema `deployment`, migrations embedded
// from migrations/). Deployments and revisions are kept as proto3 JSON with
// the filtered columns beside them; every statement is parameterized, so
// text from clients (descriptions, display names) is stored verbatim and
// never read as SQL.
#ifndef HANGAR_SERVICES_DEPLOYMENT_PG_DEPLOYMENT_STORE_H_
#define HANGAR_SERVICES_DEPLOYMENT_PG_DEPLOYMENT_STORE_H_

#include "common/db/pool.h"
#include "services/deployment/deployment_store.h"

namespace hangar::deployment {

// Applies the embedded migrations to schema `deployment`.
absl::Status MigrateDeploymentSchema(db::Pool& pool);

class PgDeploymentStore final : public DeploymentStore {
 public:
  // `pool` is not owned; its search_path need not name the schema (every
  // statement qualifies its tables). `read_pool` (not owned; null: `pool`)
  // serves Get and List, so that reads do not queue behind creates and
  // reconciler passes for a connection.
  explicit PgDeploymentStore(db::Pool* pool, db::Pool* read_pool = nullptr)
      : pool_(pool), read_pool_(read_pool != nullptr ? read_pool : pool) {}

  absl::StatusOr<std::optional<RequestRecord>> FindRequest(
      const std::string& kind, const std::string& request_id) override;
  absl::StatusOr<v1::Deployment> Create(const CreateRecord& record) override;
  absl::StatusOr<v1::Deployment> Get(const std::string& name) override;
  absl::StatusOr<std::vector<v1::Deployment>> List(
      const DeploymentFilter& filter, const std::string& after,
      int limit) override;
  absl::StatusOr<v1::Deployment> Update(
      const std::string& name, const std::optional<RequestClaim>& claim,
      const MutateFn& mutate) override;
  absl::StatusOr<v1::Revision> GetRevision(const std::string& deployment,
                                           int64_t number) override;
  absl::StatusOr<std::vector<v1::Revision>> ListRevisions(
      const std::string& deployment, int64_t before, int limit) override;
  absl::StatusOr<int> CountActiveApiKeys(
      const std::string& deployment) override;
  absl::StatusOr<bool> RecordUsage(
      const std::string& report_id,
      const std::vector<v1::TokenUsageReport>& reports,
      absl::Time now) override;
  absl::StatusOr<std::vector<TokenUsageRow>> TokenUsage(
      const UsageQuery& query, const std::string& after, int limit) override;
  absl::StatusOr<TokenUsageRow> TokenUsageTotal(
      const UsageQuery& query) override;
  absl::StatusOr<std::pair<v1::ApiKey, bool>> CreateApiKey(
      const std::string& request_id, const std::string& fingerprint,
      const StoredApiKey& key) override;
  absl::StatusOr<std::vector<v1::ApiKey>> ListApiKeys(
      const std::string& deployment, bool show_revoked,
      const std::string& after, int limit) override;
  absl::StatusOr<v1::ApiKey> RevokeApiKey(const std::string& name,
                                          absl::Time now) override;
  absl::StatusOr<std::vector<v1::ApiKeyEvent::Entry>> ActiveApiKeys() override;
  absl::StatusOr<bool> AcquireLease(const std::string& name,
                                    const std::string& owner, absl::Time now,
                                    absl::Time expiry) override;
  absl::Status ReleaseLease(const std::string& name,
                            const std::string& owner) override;
  absl::Status RecordReplicaUsage(const std::vector<ReplicaSample>& samples,
                                  absl::Time now) override;
  absl::StatusOr<std::vector<ReplicaUsageRow>> ReplicaUsage(
      const UsageQuery& query, const std::string& after, int limit) override;
  absl::StatusOr<std::vector<ReplicaUsageRow>> ReplicaUsageByHardware(
      const UsageQuery& query) override;

 private:
  db::Pool* const pool_;
  db::Pool* const read_pool_;
};

}  // namespace hangar::deployment

#endif  // HANGAR_SERVICES_DEPLOYMENT_PG_DEPLOYMENT_STORE_H_
