#include "services/deployment/webhooks/pg_webhook_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/api/etag.h"
#include "common/api/time.h"

namespace hangar::deployment::webhooks {
namespace {

constexpr int kPending = v1::WebhookDelivery::STATUS_PENDING;
constexpr int kFailed = v1::WebhookDelivery::STATUS_FAILED;
constexpr int kDeleted = v1::DEPLOYMENT_STATE_DELETED;

int64_t Micros(absl::Time time) { return absl::ToUnixMicros(time); }
absl::Time FromMicros(int64_t micros) { return absl::FromUnixMicros(micros); }

// Upserts the target inside `tx`. Returns whether a row was written.
bool WriteTarget(pqxx::work& tx, const std::string& deployment,
                 const std::string& url, const std::string& secret,
                 absl::Time now, bool only_if_new) {
  const std::string stored_secret = url.empty() ? "" : secret;
  pqxx::result rows = tx.exec_params(
      only_if_new
          ? "INSERT INTO deployment.webhook_targets "
            "(deployment, url, secret, update_micros) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (deployment) DO NOTHING RETURNING deployment"
          : "INSERT INTO deployment.webhook_targets "
            "(deployment, url, secret, update_micros) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (deployment) DO UPDATE SET url = EXCLUDED.url, "
            "secret = EXCLUDED.secret, update_micros = EXCLUDED.update_micros "
            "RETURNING deployment",
      deployment, url, stored_secret, Micros(now));
  return !rows.empty();
}

}  // namespace

absl::StatusOr<bool> PgWebhookStore::PutTarget(const std::string& deployment,
                                               const std::string& url,
                                               const std::string& secret,
                                               absl::Time now,
                                               bool only_if_new) {
  return pool_->Transact<bool>([&](pqxx::work& tx) -> absl::StatusOr<bool> {
    return WriteTarget(tx, deployment, url, secret, now, only_if_new);
  });
}

absl::Status PgWebhookStore::PutTargetChecked(const std::string& deployment,
                                              const std::string& etag,
                                              const std::string& url,
                                              const std::string& secret,
                                              absl::Time now) {
  return pool_->Transact([&](pqxx::work& tx) -> absl::Status {
    pqxx::result rows = tx.exec_params(
        "SELECT version, state FROM deployment.deployments WHERE name = $1 "
        "FOR UPDATE",
        deployment);
    if (rows.empty()) {
      return absl::NotFoundError(
          absl::StrCat("deployment \"", deployment, "\" not found"));
    }
    const int64_t version = rows[0][0].as<int64_t>();
    absl::Status fresh =
        CheckEtag(etag, MakeEtag(version), false, "deployment.etag");
    if (!fresh.ok()) return fresh;
    if (rows[0][1].as<int>() == kDeleted) {
      return absl::FailedPreconditionError(absl::StrCat(
          "deployment \"", deployment, "\" is DELETED; it cannot be changed"));
    }
    tx.exec_params(
        "UPDATE deployment.deployments SET version = version + 1 "
        "WHERE name = $1",
        deployment);
    WriteTarget(tx, deployment, url, secret, now, /*only_if_new=*/false);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::map<std::string, std::string>> PgWebhookStore::Urls(
    const std::vector<std::string>& deployments) {
  using Result = std::map<std::string, std::string>;
  if (deployments.empty()) return Result();
  // Deployment ids never hold a newline, so one text parameter carries the
  // whole list.
  const std::string names = absl::StrJoin(deployments, "\n");
  return pool_->Transact<Result>(
      [&](pqxx::work& tx) -> absl::StatusOr<Result> {
        pqxx::result rows = tx.exec_params(
            "SELECT deployment, url FROM deployment.webhook_targets "
            "WHERE deployment = ANY (string_to_array($1, E'\\n')) "
            "AND url <> ''",
            names);
        Result urls;
        for (const pqxx::row& row : rows) {
          urls[row[0].as<std::string>()] = row[1].as<std::string>();
        }
        return urls;
      },
      {.read_only = true});
}

absl::StatusOr<bool> PgWebhookStore::Enqueue(const NewDelivery& delivery) {
  const db::TransactOptions bounded{.deadline =
                                        clock_->Now() + enqueue_timeout_};
  return pool_->Transact<bool>(
      [&](pqxx::work& tx) -> absl::StatusOr<bool> {
        pqxx::result rows = tx.exec_params(
            "INSERT INTO deployment.webhook_deliveries "
            "(deployment, revision, event, display_name, state, reason, "
            "event_micros, url, status, create_micros, next_attempt_micros) "
            "SELECT $1, $2, $3, $4, $5, $6, $7, t.url, $8, $9, $9 "
            "FROM deployment.webhook_targets t "
            "WHERE t.deployment = $1 AND t.url <> '' "
            "ON CONFLICT (deployment, revision, event) DO NOTHING RETURNING id",
            delivery.deployment, delivery.revision, delivery.event,
            delivery.display_name, delivery.state, delivery.reason,
            Micros(delivery.event_time), kPending, Micros(delivery.now));
        return !rows.empty();
      },
      bounded);
}

absl::StatusOr<std::optional<ClaimedDelivery>> PgWebhookStore::ClaimDue(
    absl::Time now, absl::Time lease_until, const std::string& claim) {
  using Result = std::optional<ClaimedDelivery>;
  for (;;) {
    bool target_gone = false;
    absl::StatusOr<Result> claimed =
        pool_->Transact<Result>([&](pqxx::work& tx) -> absl::StatusOr<Result> {
          target_gone = false;
          pqxx::result rows = tx.exec_params(
              "SELECT d.id, d.deployment, d.revision, d.event, "
              "d.display_name, d.state, d.reason, d.event_micros, "
              "d.attempts, coalesce(t.url, ''), coalesce(t.secret, '') "
              "FROM deployment.webhook_deliveries d "
              "LEFT JOIN deployment.webhook_targets t "
              "ON t.deployment = d.deployment "
              "WHERE d.status = $1 AND d.next_attempt_micros <= $2 "
              "ORDER BY d.next_attempt_micros, d.id LIMIT 1 "
              "FOR UPDATE OF d SKIP LOCKED",
              kPending, Micros(now));
          if (rows.empty()) return Result();
          const pqxx::row& row = rows[0];
          ClaimedDelivery delivery;
          delivery.id = row[0].as<int64_t>();
          delivery.deployment = row[1].as<std::string>();
          delivery.revision = row[2].as<int64_t>();
          delivery.event = row[3].as<std::string>();
          delivery.display_name = row[4].as<std::string>();
          delivery.state = row[5].as<std::string>();
          delivery.reason = row[6].as<std::string>();
          delivery.event_time = FromMicros(row[7].as<int64_t>());
          delivery.attempts = row[8].as<int>();
          delivery.url = row[9].as<std::string>();
          delivery.secret = row[10].as<std::string>();
          delivery.claim = claim;
          if (delivery.url.empty()) {
            // The webhook was removed: nowhere to send it any more.
            tx.exec_params(
                "UPDATE deployment.webhook_deliveries SET status = $2, "
                "last_error = 'the deployment''s webhook was removed', "
                "next_attempt_micros = NULL, claim = NULL WHERE id = $1",
                delivery.id, kFailed);
            target_gone = true;
            return Result();
          }
          tx.exec_params(
              "UPDATE deployment.webhook_deliveries SET claim = $2, "
              "next_attempt_micros = $3 WHERE id = $1",
              delivery.id, claim, Micros(lease_until));
          return Result(std::move(delivery));
        });
    if (!claimed.ok() || !target_gone) return claimed;
  }
}

absl::StatusOr<bool> PgWebhookStore::RecordAttempt(
    const AttemptRecord& record) {
  return pool_->Transact<bool>([&](pqxx::work& tx) -> absl::StatusOr<bool> {
    std::optional<int64_t> next;
    if (record.next_attempt.has_value()) next = Micros(*record.next_attempt);
    pqxx::result rows = tx.exec_params(
        "UPDATE deployment.webhook_deliveries SET attempts = attempts + 1, "
        "url = $3, status = $4, last_http_status = $5, last_error = $6, "
        "last_attempt_micros = $7, next_attempt_micros = $8, claim = NULL "
        "WHERE id = $1 AND claim = $2 AND status = 1 RETURNING id",
        record.id, record.claim, record.url, static_cast<int>(record.status),
        record.http_status, record.error, Micros(record.attempt_time), next);
    return !rows.empty();
  });
}

absl::StatusOr<std::optional<absl::Time>> PgWebhookStore::NextDue() {
  using Result = std::optional<absl::Time>;
  return pool_->Transact<Result>(
      [&](pqxx::work& tx) -> absl::StatusOr<Result> {
        pqxx::result rows = tx.exec_params(
            "SELECT min(next_attempt_micros) "
            "FROM deployment.webhook_deliveries WHERE status = $1",
            kPending);
        if (rows.empty() || rows[0][0].is_null()) return Result();
        return Result(FromMicros(rows[0][0].as<int64_t>()));
      },
      {.read_only = true});
}

absl::StatusOr<std::vector<v1::WebhookDelivery>> PgWebhookStore::ListDeliveries(
    const std::string& deployment, int64_t before_id, int limit) {
  using Result = std::vector<v1::WebhookDelivery>;
  return pool_->Transact<Result>(
      [&](pqxx::work& tx) -> absl::StatusOr<Result> {
        pqxx::result rows = tx.exec_params(
            "SELECT id, event, revision, url, status, attempts, "
            "last_http_status, last_error, create_micros, "
            "last_attempt_micros, next_attempt_micros "
            "FROM deployment.webhook_deliveries "
            "WHERE deployment = $1 AND ($2 = 0 OR id < $2) "
            "ORDER BY id DESC LIMIT $3",
            deployment, before_id, limit);
        Result deliveries;
        for (const pqxx::row& row : rows) {
          v1::WebhookDelivery delivery;
          delivery.set_name(absl::StrCat("whd-", row[0].as<int64_t>()));
          delivery.set_deployment(deployment);
          delivery.set_event(row[1].as<std::string>());
          delivery.set_revision(row[2].as<int64_t>());
          delivery.set_url(row[3].as<std::string>());
          delivery.set_status(
              static_cast<v1::WebhookDelivery::Status>(row[4].as<int>()));
          delivery.set_attempts(row[5].as<int>());
          delivery.set_last_http_status(row[6].as<int>());
          delivery.set_last_error(row[7].as<std::string>());
          *delivery.mutable_create_time() =
              ToProtoTimestamp(FromMicros(row[8].as<int64_t>()));
          if (!row[9].is_null()) {
            *delivery.mutable_last_attempt_time() =
                ToProtoTimestamp(FromMicros(row[9].as<int64_t>()));
          }
          if (!row[10].is_null()) {
            *delivery.mutable_next_attempt_time() =
                ToProtoTimestamp(FromMicros(row[10].as<int64_t>()));
          }
          deliveries.push_back(std::move(delivery));
        }
        return deliveries;
      },
      {.read_only = true});
}

}  // namespace hangar::deployment::webhooks
