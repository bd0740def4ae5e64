// JobStore on PostgreSQL: the `optimizer` schema of
// services/optimizer/migrations/*.sql (MigrateOptimizerSchema), through
// db::Pool::Transact with parameterized queries. CreateJob and BindRequest
// insert the request id with ON CONFLICT DO NOTHING in the same transaction
// as the job, so two concurrent creates with one id make one job.
//
//   RETURN_IF_ERROR(MigrateOptimizerSchema(*pool));
//   PgJobStore store(pool.get());
#ifndef HANGAR_SERVICES_OPTIMIZER_PG_JOB_STORE_H_
#define HANGAR_SERVICES_OPTIMIZER_PG_JOB_STORE_H_

#include "common/db/pool.h"
#include "services/optimizer/job_store.h"

namespace hangar::optimizer {

absl::Status MigrateOptimizerSchema(db::Pool& pool);

class PgJobStore final : public JobStore {
 public:
  // `pool` is not owned and must outlive the store.
  explicit PgJobStore(db::Pool* pool) : pool_(pool) {}

  absl::StatusOr<Claimed> CreateJob(const StoredJob& job,
                                    const std::string& request_id,
                                    const std::string& fingerprint) override;
  absl::StatusOr<Claimed> BindRequest(const std::string& request_id,
                                      const std::string& fingerprint,
                                      const std::string& job_name) override;
  absl::StatusOr<std::optional<Claimed>> FindRequest(
      const std::string& request_id) override;
  absl::StatusOr<StoredJob> GetJob(const std::string& name) override;
  absl::Status UpdateJob(const StoredJob& job) override;
  absl::StatusOr<JobPage> ListJobs(const JobFilter& filter,
                                   const std::string& after_name,
                                   int limit) override;
  absl::StatusOr<std::vector<StoredJob>> ListUnfinishedJobs() override;
  absl::StatusOr<std::optional<StoredJob>> FindUnfinishedJob(
      const std::string& source_sha256,
      const std::string& recipe_slug) override;
  absl::Status PutArtifact(const v1::Artifact& artifact,
                           const std::string& recipe_slug) override;
  absl::StatusOr<std::optional<v1::Artifact>> FindArtifact(
      const std::string& source_sha256,
      const std::string& recipe_slug) override;
  absl::StatusOr<std::optional<Claimed>> CreateReusingJob(
      const StoredJob& job, const std::string& request_id,
      const std::string& fingerprint, const std::string& recipe_slug) override;
  absl::StatusOr<Released> ReleaseRequest(const std::string& request_id,
                                          absl::Time now) override;
  absl::StatusOr<bool> WithKeyLocked(
      const std::string& key,
      const std::function<absl::StatusOr<bool>(const KeyState&)>& decide)
      override;
  absl::StatusOr<std::vector<std::string>> ListArtifactKeys() override;
  absl::StatusOr<ArtifactPage> ListArtifacts(const std::string& model,
                                             const std::string& after,
                                             int limit) override;

 private:
  db::Pool* pool_;
};

}  // namespace hangar::optimizer

#endif  // HANGAR_SERVICES_OPTIMIZER_PG_JOB_STORE_H_
