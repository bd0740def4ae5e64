// WebhookStore on PostgreSQL: tables deployment.webhook_targets and
// deployment.webhook_deliveries (migrations/0010_webhooks.sql, applied with
// the rest of the deployment schema by MigrateDeploymentSchema). Every
// statement is parameterized; times are Unix microseconds of the injected
// clock the caller passes in.
//
// Several deployment-service processes may share the tables: ClaimDue takes
// a row with FOR UPDATE SKIP LOCKED and leases it under a claim token, and
// RecordAttempt writes only while that token still holds it, so two
// senders never both attempt one delivery within a lease.
//
// Enqueue runs on the reconciler's thread, so it is bounded: it gives up
// after `enqueue_timeout` (on `clock`) even against a database that does not
// answer, and the caller logs and relies on the at-start catch-up.
#ifndef HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_PG_WEBHOOK_STORE_H_
#define HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_PG_WEBHOOK_STORE_H_

#include "common/db/pool.h"
#include "common/time/clock.h"
#include "services/deployment/webhooks/webhook_store.h"

namespace hangar::deployment::webhooks {

class PgWebhookStore final : public WebhookStore {
 public:
  // `pool` and `clock` (the pool's) are not owned and must outlive the
  // store.
  explicit PgWebhookStore(db::Pool* pool, Clock* clock = Clock::Real(),
                          absl::Duration enqueue_timeout = absl::Seconds(2))
      : pool_(pool), clock_(clock), enqueue_timeout_(enqueue_timeout) {}

  absl::StatusOr<bool> PutTarget(const std::string& deployment,
                                 const std::string& url,
                                 const std::string& secret, absl::Time now,
                                 bool only_if_new) override;
  absl::Status PutTargetChecked(const std::string& deployment,
                                const std::string& etag, const std::string& url,
                                const std::string& secret,
                                absl::Time now) override;
  absl::StatusOr<std::map<std::string, std::string>> Urls(
      const std::vector<std::string>& deployments) override;
  absl::StatusOr<bool> Enqueue(const NewDelivery& delivery) override;
  absl::StatusOr<std::optional<ClaimedDelivery>> ClaimDue(
      absl::Time now, absl::Time lease_until,
      const std::string& claim) override;
  absl::StatusOr<bool> RecordAttempt(const AttemptRecord& record) override;
  absl::StatusOr<std::optional<absl::Time>> NextDue() override;
  absl::StatusOr<std::vector<v1::WebhookDelivery>> ListDeliveries(
      const std::string& deployment, int64_t before_id, int limit) override;

 private:
  db::Pool* const pool_;
  Clock* const clock_;
  const absl::Duration enqueue_timeout_;
};

}  // namespace hangar::deployment::webhooks

#endif  // HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_PG_WEBHOOK_STORE_H_
