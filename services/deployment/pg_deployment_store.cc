#include "services/deployment/pg_deployment_store.h"

#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/api/etag.h"
#include "common/api/time.h"
#include "common/db/migrations.h"
#include "common/server/call_context.h"
#include "google/protobuf/util/json_util.h"
#include "hangar/migrations/deployment.h"

namespace hangar::deployment {
namespace {

constexpr int kDeleted = v1::DEPLOYMENT_STATE_DELETED;
constexpr int kDeleting = v1::DEPLOYMENT_STATE_DELETING;

int64_t Micros(absl::Time time) { return absl::ToUnixMicros(time); }

std::string ToJson(const google::protobuf::Message& message) {
  std::string json;
  // Serializing a message we built cannot fail.
  (void)google::protobuf::util::MessageToJsonString(message, &json);
  return json;
}

template <typename T>
absl::StatusOr<T> FromJson(const std::string& json) {
  T message;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // Rows written by a newer version.
  auto status =
      google::protobuf::util::JsonStringToMessage(json, &message, options);
  if (!status.ok()) {
    return absl::DataLossError(
        absl::StrCat("stored row does not parse: ", status.ToString()));
  }
  return message;
}

absl::StatusOr<v1::Deployment> RowToDeployment(const pqxx::row& row) {
  absl::StatusOr<v1::Deployment> deployment =
      FromJson<v1::Deployment>(row["body"].as<std::string>());
  if (!deployment.ok()) return deployment.status();
  deployment->set_etag(MakeEtag(row["version"].as<int64_t>()));
  return deployment;
}

constexpr char kDeploymentColumns[] = "body::text AS body, version";

absl::StatusOr<v1::Deployment> SelectDeployment(pqxx::transaction_base& tx,
                                                const std::string& name) {
  pqxx::result rows = tx.exec_params(
      absl::StrCat("SELECT ", kDeploymentColumns,
                   " FROM deployment.deployments WHERE name = $1"),
      name);
  if (rows.empty()) {
    rows = tx.exec_params(
        absl::StrCat("SELECT ", kDeploymentColumns,
                     " FROM deployment.deployments WHERE display_name = $1 "
                     "AND state <> $2"),
        name, kDeleted);
  }
  if (rows.empty()) {
    return absl::NotFoundError(
        absl::StrCat("deployment \"", name, "\" not found"));
  }
  return RowToDeployment(rows[0]);
}

v1::ApiKey RowToApiKey(const pqxx::row& row) {
  v1::ApiKey key;
  key.set_name(row["name"].as<std::string>());
  key.set_deployment(row["deployment"].as<std::string>());
  key.set_display_name(row["display_name"].as<std::string>());
  key.set_prefix(row["prefix"].as<std::string>());
  *key.mutable_create_time() = ToProtoTimestamp(
      absl::FromUnixMicros(row["create_micros"].as<int64_t>()));
  if (!row["last_used_micros"].is_null()) {
    *key.mutable_last_used_time() = ToProtoTimestamp(
        absl::FromUnixMicros(row["last_used_micros"].as<int64_t>()));
  }
  if (!row["revoke_micros"].is_null()) {
    key.set_revoked(true);
    *key.mutable_revoke_time() = ToProtoTimestamp(
        absl::FromUnixMicros(row["revoke_micros"].as<int64_t>()));
  }
  return key;
}

constexpr char kKeyColumns[] =
    "name, deployment, display_name, prefix, create_micros, "
    "last_used_micros, revoke_micros";

// Claims (kind, request_id) for `resource`. Returns the existing record
// when another request claimed it first (committed: ON CONFLICT waits for a
// concurrent claimer to finish).
std::optional<RequestRecord> ClaimRequest(pqxx::work& tx,
                                          const std::string& kind,
                                          const std::string& request_id,
                                          const std::string& fingerprint,
                                          const std::string& resource,
                                          absl::Time now) {
  pqxx::result inserted = tx.exec_params(
      "INSERT INTO deployment.request_ids "
      "(kind, request_id, fingerprint, resource, create_micros) "
      "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
      kind, request_id, fingerprint, resource, Micros(now));
  if (inserted.affected_rows() == 1) return std::nullopt;
  pqxx::result rows = tx.exec_params(
      "SELECT fingerprint, resource FROM deployment.request_ids "
      "WHERE kind = $1 AND request_id = $2",
      kind, request_id);
  return RequestRecord{rows[0][0].as<std::string>(),
                       rows[0][1].as<std::string>()};
}

absl::Status RequestReused() {
  return absl::InvalidArgumentError(
      "request_id: was already used for a different request; use a new "
      "request_id for a new request");
}

}  // namespace

absl::Status MigrateDeploymentSchema(db::Pool& pool) {
  return db::ApplyMigrations(pool, migrations::deployment::kSchema,
                             migrations::deployment::Migrations());
}

absl::StatusOr<std::optional<RequestRecord>> PgDeploymentStore::FindRequest(
    const std::string& kind, const std::string& request_id) {
  return pool_->Transact<std::optional<RequestRecord>>(
      [&](pqxx::work& tx) -> absl::StatusOr<std::optional<RequestRecord>> {
        pqxx::result rows = tx.exec_params(
            "SELECT fingerprint, resource FROM deployment.request_ids "
            "WHERE kind = $1 AND request_id = $2",
            kind, request_id);
        if (rows.empty()) return std::optional<RequestRecord>();
        return std::optional<RequestRecord>(RequestRecord{
            rows[0][0].as<std::string>(), rows[0][1].as<std::string>()});
      },
      {.read_only = true});
}

namespace {

// One statement writes a create: the request id's claim, the deployment and
// revision 1, each insert fed by the one before (data-modifying CTEs; the
// revision's foreign key is checked at the end of the statement). A claim
// that conflicts inserts nothing and the statement returns 0: a retry. The
// live display name is left to the partial unique index
// deployments_live_display_name.
constexpr char kCreateSql[] =
    "WITH claim AS ("
    " INSERT INTO deployment.request_ids"
    " (kind, request_id, fingerprint, resource, create_micros)"
    " VALUES ('create', $1, $2, $3, $4) ON CONFLICT DO NOTHING"
    " RETURNING resource),"
    " dep AS ("
    " INSERT INTO deployment.deployments"
    " (name, display_name, model, state, version, body)"
    " SELECT resource, $5, $6, $7, 1, $8::jsonb FROM claim RETURNING name),"
    " rev AS ("
    " INSERT INTO deployment.revisions (deployment, number, body)"
    " SELECT name, $9, $10::jsonb FROM dep RETURNING 1)"
    " SELECT count(*) FROM rev";

// Whether `e` is the live display name's unique index refusing a name.
bool IsDisplayNameTaken(const pqxx::unique_violation& e) {
  return std::string_view(e.what()).find("deployments_live_display_name") !=
         std::string_view::npos;
}

absl::Status DisplayNameTaken(const std::string& name) {
  return absl::AlreadyExistsError(
      absl::StrCat("display_name: \"", name,
                   "\" is taken by a live deployment; choose another"));
}

// The deployment a create's request id names (a retry), or RequestReused.
absl::StatusOr<v1::Deployment> AnswerRetry(pqxx::transaction_base& tx,
                                           const CreateRecord& record) {
  pqxx::result rows = tx.exec_params(
      "SELECT fingerprint, resource FROM deployment.request_ids "
      "WHERE kind = 'create' AND request_id = $1",
      record.request_id);
  if (rows.empty()) {
    return absl::InternalError("request_id claim vanished");
  }
  if (rows[0][0].as<std::string>() != record.fingerprint) {
    return RequestReused();
  }
  return SelectDeployment(tx, rows[0][1].as<std::string>());
}

}  // namespace

absl::StatusOr<v1::Deployment> PgDeploymentStore::Create(
    const CreateRecord& record) {
  v1::Deployment deployment = record.deployment;
  deployment.clear_etag();
  const std::string base = deployment.display_name();
  const std::string revision_json = ToJson(record.revision);
  // The common case in one statement: the name as given (or derived) is
  // free. `taken` reports that the index refused it.
  bool taken = false;
  absl::StatusOr<v1::Deployment> created = pool_->Transact<v1::Deployment>(
      [&](pqxx::work& tx) -> absl::StatusOr<v1::Deployment> {
        taken = false;
        pqxx::result rows;
        try {
          rows = tx.exec_params(
              kCreateSql, record.request_id, record.fingerprint,
              deployment.name(), Micros(record.now), deployment.display_name(),
              deployment.spec().model(), static_cast<int>(deployment.state()),
              ToJson(deployment), record.revision.number(), revision_json);
        } catch (const pqxx::unique_violation& e) {
          if (!IsDisplayNameTaken(e)) throw;
          taken = true;
          return DisplayNameTaken(base);
        }
        if (rows[0][0].as<int64_t>() == 0) return AnswerRetry(tx, record);
        v1::Deployment result = deployment;
        result.set_etag(MakeEtag(1));
        return result;
      });
  if (!taken || record.display_name_explicit) return created;

  // A derived name that is taken: look for the next free "<base>-N" (rare;
  // two statements per candidate), in a transaction of its own since the
  // failed statement aborted the first.
  return pool_->Transact<v1::Deployment>(
      [&](pqxx::work& tx) -> absl::StatusOr<v1::Deployment> {
        v1::Deployment named = deployment;
        for (int suffix = 2;; ++suffix) {
          std::string candidate = absl::StrCat(base, "-", suffix);
          pqxx::result used = tx.exec_params(
              "SELECT 1 FROM deployment.deployments "
              "WHERE display_name = $1 AND state <> $2",
              candidate, kDeleted);
          if (used.empty()) {
            named.set_display_name(candidate);
            break;
          }
          if (suffix >= 1000) {
            return absl::ResourceExhaustedError(
                absl::StrCat("display_name: no free name derived from \"", base,
                             "\"; give one"));
          }
        }
        // A concurrent create may take the candidate first: the index then
        // refuses it and the caller's retry (same request id) tries again.
        pqxx::result rows = tx.exec_params(
            kCreateSql, record.request_id, record.fingerprint, named.name(),
            Micros(record.now), named.display_name(), named.spec().model(),
            static_cast<int>(named.state()), ToJson(named),
            record.revision.number(), revision_json);
        if (rows[0][0].as<int64_t>() == 0) return AnswerRetry(tx, record);
        named.set_etag(MakeEtag(1));
        return named;
      });
}

namespace {

// GetDeployment's one statement: by id, else by live display name (the id
// wins), with the webhook URL beside it.
constexpr char kGetSql[] =
    "SELECT d.body::text AS body, d.version, w.url"
    " FROM deployment.deployments d"
    " LEFT JOIN deployment.webhook_targets w"
    " ON w.deployment = d.name AND w.url <> ''"
    " WHERE d.name = $1 OR (d.display_name = $1 AND d.state <> $2)"
    " ORDER BY d.name = $1 DESC LIMIT 1";

absl::StatusOr<v1::Deployment> GetOne(pqxx::transaction_base& tx,
                                      const std::string& name) {
  pqxx::result rows = tx.exec_params(kGetSql, name, kDeleted);
  if (rows.empty()) {
    return absl::NotFoundError(
        absl::StrCat("deployment \"", name, "\" not found"));
  }
  absl::StatusOr<v1::Deployment> deployment = RowToDeployment(rows[0]);
  if (!deployment.ok()) return deployment.status();
  deployment->set_webhook_url(
      rows[0]["url"].is_null() ? "" : rows[0]["url"].as<std::string>());
  return deployment;
}

}  // namespace

absl::StatusOr<v1::Deployment> PgDeploymentStore::Get(const std::string& name) {
  // A single read needs no transaction: in autocommit it is one round trip
  // (no BEGIN, SET LOCAL or COMMIT). The pool's watchdog bounds it by the
  // call's deadline; without one (or when the connection broke) it runs as
  // a transaction, which carries statement_timeout and reconnects.
  // The read pool has no probe of its own: the main pool's tells it when
  // the database is down, so reads fail fast as writes do.
  if (absl::Status outage = pool_->Outage(); !outage.ok()) return outage;
  if (CallContext::CurrentDeadline() != absl::InfiniteFuture()) {
    std::optional<absl::StatusOr<v1::Deployment>> found;
    absl::Status status =
        read_pool_->WithConnection([&](pqxx::connection& connection) {
          pqxx::nontransaction tx(connection);
          found = GetOne(tx, name);
          return found->status();
        });
    if (found.has_value() && !absl::IsUnavailable(found->status())) {
      return *std::move(found);
    }
    if (!absl::IsUnavailable(status)) return status;
  }
  return read_pool_->Transact<v1::Deployment>(
      [&](pqxx::work& tx) { return GetOne(tx, name); });
}

absl::StatusOr<std::vector<v1::Deployment>> PgDeploymentStore::List(
    const DeploymentFilter& filter, const std::string& after, int limit) {
  using Result = std::vector<v1::Deployment>;
  if (absl::Status outage = pool_->Outage(); !outage.ok()) return outage;
  return read_pool_->Transact<Result>(
      [&](pqxx::work& tx) -> absl::StatusOr<Result> {
        // Empty filters are written as conditions that always hold, so the
        // statement stays one parameterized text.
        pqxx::result rows = tx.exec_params(
            absl::StrCat("SELECT ", kDeploymentColumns,
                         " FROM deployment.deployments WHERE name > $1"
                         " AND ($2 = '' OR model = $2)"
                         " AND ($3 = 0 OR state = $3)"
                         " AND ($4 = '' OR jsonb_exists(body->'tags', $4))"
                         " AND ($5 OR state <> $6)"
                         " ORDER BY name LIMIT $7"),
            after, filter.model, static_cast<int>(filter.state), filter.tag,
            filter.show_deleted, kDeleted, limit);
        Result deployments;
        for (const pqxx::row& row : rows) {
          absl::StatusOr<v1::Deployment> deployment = RowToDeployment(row);
          if (!deployment.ok()) return deployment.status();
          deployments.push_back(*std::move(deployment));
        }
        return deployments;
      },
      {.read_only = true});
}

absl::StatusOr<v1::Deployment> PgDeploymentStore::Update(
    const std::string& name, const std::optional<RequestClaim>& claim,
    const MutateFn& mutate) {
  return pool_->Transact<v1::Deployment>(
      [&](pqxx::work& tx) -> absl::StatusOr<v1::Deployment> {
        absl::StatusOr<v1::Deployment> found = SelectDeployment(tx, name);
        if (!found.ok()) return found.status();
        // Lock the row, then read it again: the first read may predate a
        // write that committed while we waited for the lock.
        tx.exec_params(
            "SELECT 1 FROM deployment.deployments WHERE name = $1 FOR UPDATE",
            found->name());
        absl::StatusOr<v1::Deployment> current =
            SelectDeployment(tx, found->name());
        if (!current.ok()) return current.status();
        if (claim.has_value()) {
          std::optional<RequestRecord> claimed =
              ClaimRequest(tx, claim->kind, claim->request_id,
                           claim->fingerprint, current->name(), claim->now);
          if (claimed.has_value()) {
            if (claimed->fingerprint != claim->fingerprint) {
              return RequestReused();
            }
            return SelectDeployment(tx, claimed->resource);
          }
        }
        absl::StatusOr<Mutation> mutation = mutate(*current);
        if (!mutation.ok()) return mutation.status();
        if (!mutation->write) return *current;
        if (!mutation->lease_owner.empty()) {
          pqxx::result held = tx.exec_params(
              "SELECT 1 FROM deployment.deployments WHERE name = $1 "
              "AND lease_owner = $2",
              current->name(), mutation->lease_owner);
          if (held.empty()) {
            return absl::AbortedError(
                absl::StrCat("deployment \"", current->name(),
                             "\": the lease of ", mutation->lease_owner,
                             " was lost; another reconciler drives it"));
          }
        }
        for (const v1::Revision& revision : mutation->revision_updates) {
          tx.exec_params(
              "UPDATE deployment.revisions SET body = $3::jsonb "
              "WHERE deployment = $1 AND number = $2",
              current->name(), revision.number(), ToJson(revision));
        }
        v1::Deployment next = std::move(mutation->deployment);
        next.set_name(current->name());
        next.clear_etag();
        if (next.display_name() != current->display_name() &&
            next.state() != kDeleted) {
          pqxx::result taken = tx.exec_params(
              "SELECT 1 FROM deployment.deployments "
              "WHERE display_name = $1 AND state <> $2 AND name <> $3",
              next.display_name(), kDeleted, next.name());
          if (!taken.empty()) {
            return absl::AlreadyExistsError(absl::StrCat(
                "display_name: \"", next.display_name(),
                "\" is taken by a live deployment; choose another"));
          }
        }
        pqxx::result updated = tx.exec_params(
            "UPDATE deployment.deployments SET display_name = $2, "
            "model = $3, state = $4, body = $5::jsonb, version = version + 1 "
            "WHERE name = $1 RETURNING version",
            next.name(), next.display_name(), next.spec().model(),
            static_cast<int>(next.state()), ToJson(next));
        if (mutation->new_revision.has_value()) {
          tx.exec_params(
              "INSERT INTO deployment.revisions (deployment, number, body) "
              "VALUES ($1, $2, $3::jsonb)",
              next.name(), mutation->new_revision->number(),
              ToJson(*mutation->new_revision));
        }
        if (mutation->revoke_keys) {
          tx.exec_params(
              "UPDATE deployment.api_keys SET revoke_micros = $2 "
              "WHERE deployment = $1 AND revoke_micros IS NULL",
              next.name(), Micros(mutation->now));
        }
        next.set_etag(MakeEtag(updated[0][0].as<int64_t>()));
        return next;
      });
}

absl::StatusOr<v1::Revision> PgDeploymentStore::GetRevision(
    const std::string& deployment, int64_t number) {
  return pool_->Transact<v1::Revision>(
      [&](pqxx::work& tx) -> absl::StatusOr<v1::Revision> {
        pqxx::result rows = tx.exec_params(
            "SELECT body::text FROM deployment.revisions "
            "WHERE deployment = $1 AND number = $2",
            deployment, number);
        if (rows.empty()) {
          return absl::NotFoundError(absl::StrCat("revision ", number, " of \"",
                                                  deployment, "\" not found"));
        }
        return FromJson<v1::Revision>(rows[0][0].as<std::string>());
      },
      {.read_only = true});
}

absl::StatusOr<std::vector<v1::Revision>> PgDeploymentStore::ListRevisions(
    const std::string& deployment, int64_t before, int limit) {
  using Result = std::vector<v1::Revision>;
  return pool_->Transact<Result>(
      [&](pqxx::work& tx) -> absl::StatusOr<Result> {
        pqxx::result rows = tx.exec_params(
            "SELECT body::text FROM deployment.revisions "
            "WHERE deployment = $1 AND ($2 = 0 OR number < $2) "
            "ORDER BY number DESC LIMIT $3",
            deployment, before, limit);
        Result revisions;
        for (const pqxx::row& row : rows) {
          absl::StatusOr<v1::Revision> revision =
              FromJson<v1::Revision>(row[0].as<std::string>());
          if (!revision.ok()) return revision.status();
          revisions.push_back(*std::move(revision));
        }
        return revisions;
      },
      {.read_only = true});
}

absl::StatusOr<int> PgDeploymentStore::CountActiveApiKeys(
    const std::string& deployment) {
  return pool_->Transact<int>(
      [&](pqxx::work& tx) -> absl::StatusOr<int> {
        pqxx::result rows = tx.exec_params(
            "SELECT count(*) FROM deployment.api_keys "
            "WHERE deployment = $1 AND revoke_micros IS NULL",
            deployment);
        return rows[0][0].as<int>();
      },
      {.read_only = true});
}

absl::StatusOr<bool> PgDeploymentStore::RecordUsage(
    const std::string& report_id,
    const std::vector<v1::TokenUsageReport>& reports, absl::Time now) {
  return pool_->Transact<bool>([&](pqxx::work& tx) -> absl::StatusOr<bool> {
    pqxx::result claimed = tx.exec_params(
        "INSERT INTO deployment.usage_reports (report_id, create_micros) "
        "VALUES ($1, $2) ON CONFLICT DO NOTHING",
        report_id, Micros(now));
    if (claimed.affected_rows() == 0) return false;  // Counted before.
    for (size_t i = 0; i < reports.size(); ++i) {
      const v1::TokenUsageReport& report = reports[i];
      const int64_t start = Micros(FromProtoTimestamp(report.start_time()));
      const int64_t end = Micros(FromProtoTimestamp(report.end_time()));
      const std::string day =
          absl::FormatTime("%Y-%m-%d", FromProtoTimestamp(report.start_time()),
                           absl::UTCTimeZone());
      tx.exec_params(
          "INSERT INTO deployment.token_usage (report_id, item, api_key, "
          "deployment, revision, start_micros, end_micros, day, requests, "
          "prompt_tokens, completion_tokens) VALUES ($1, $2, $3, $4, $5, $6, "
          "$7, $8::date, $9, $10, $11)",
          report_id, static_cast<int>(i), report.api_key(), report.deployment(),
          report.revision(), start, end, day, report.requests(),
          report.tokens().prompt_tokens(), report.tokens().completion_tokens());
      tx.exec_params(
          "UPDATE deployment.api_keys SET last_used_micros = "
          "GREATEST(COALESCE(last_used_micros, 0), $2) WHERE name = $1",
          report.api_key(), end);
    }
    return true;
  });
}

namespace {

// The WHERE clause of usage queries over $1 (deployment), $2 (start date),
// $3 (end date).
constexpr char kUsageWhere[] =
    " WHERE ($1 = '' OR deployment = $1)"
    " AND (NULLIF($2, '') IS NULL OR day >= NULLIF($2, '')::date)"
    " AND (NULLIF($3, '') IS NULL OR day <= NULLIF($3, '')::date)";

}  // namespace

absl::StatusOr<std::vector<TokenUsageRow>> PgDeploymentStore::TokenUsage(
    const UsageQuery& query, const std::string& after, int limit) {
  using Result = std::vector<TokenUsageRow>;
  return pool_->Transact<Result>(
      [&](pqxx::work& tx) -> absl::StatusOr<Result> {
        pqxx::result rows = tx.exec_params(
            absl::StrCat(
                "SELECT to_char(day, 'YYYY-MM-DD') AS date, deployment, "
                "api_key, sum(requests), sum(prompt_tokens), "
                "sum(completion_tokens) FROM deployment.token_usage",
                kUsageWhere,
                " AND ($4 = '' OR (to_char(day, 'YYYY-MM-DD') || '|' || "
                "deployment || '|' || api_key) > $4)"
                " GROUP BY day, deployment, api_key"
                " ORDER BY day, deployment, api_key LIMIT $5"),
            query.deployment, query.start_date, query.end_date, after, limit);
        Result result;
        for (const pqxx::row& row : rows) {
          result.push_back({.date = row[0].as<std::string>(),
                            .deployment = row[1].as<std::string>(),
                            .api_key = row[2].as<std::string>(),
                            .requests = row[3].as<int64_t>(),
                            .prompt_tokens = row[4].as<int64_t>(),
                            .completion_tokens = row[5].as<int64_t>()});
        }
        return result;
      },
      {.read_only = true});
}

absl::StatusOr<TokenUsageRow> PgDeploymentStore::TokenUsageTotal(
    const UsageQuery& query) {
  return pool_->Transact<TokenUsageRow>(
      [&](pqxx::work& tx) -> absl::StatusOr<TokenUsageRow> {
        pqxx::result rows =
            tx.exec_params(absl::StrCat("SELECT COALESCE(sum(requests), 0), "
                                        "COALESCE(sum(prompt_tokens), 0), "
                                        "COALESCE(sum(completion_tokens), 0) "
                                        "FROM deployment.token_usage",
                                        kUsageWhere),
                           query.deployment, query.start_date, query.end_date);
        return TokenUsageRow{.requests = rows[0][0].as<int64_t>(),
                             .prompt_tokens = rows[0][1].as<int64_t>(),
                             .completion_tokens = rows[0][2].as<int64_t>()};
      },
      {.read_only = true});
}

absl::StatusOr<std::pair<v1::ApiKey, bool>> PgDeploymentStore::CreateApiKey(
    const std::string& request_id, const std::string& fingerprint,
    const StoredApiKey& key) {
  using Result = std::pair<v1::ApiKey, bool>;
  return pool_->Transact<Result>([&](pqxx::work& tx) -> absl::StatusOr<Result> {
    const absl::Time now = FromProtoTimestamp(key.key.create_time());
    std::optional<RequestRecord> claimed = ClaimRequest(
        tx, "api_key", request_id, fingerprint, key.key.name(), now);
    if (claimed.has_value()) {
      if (claimed->fingerprint != fingerprint) return RequestReused();
      pqxx::result rows = tx.exec_params(
          absl::StrCat("SELECT ", kKeyColumns,
                       " FROM deployment.api_keys WHERE name = $1"),
          claimed->resource);
      if (rows.empty()) {
        return absl::InternalError("request_id names a missing key");
      }
      return Result(RowToApiKey(rows[0]), false);
    }
    pqxx::result state = tx.exec_params(
        "SELECT state FROM deployment.deployments WHERE name = $1 FOR SHARE",
        key.key.deployment());
    if (state.empty()) {
      return absl::NotFoundError(
          absl::StrCat("deployment \"", key.key.deployment(), "\" not found"));
    }
    const int current = state[0][0].as<int>();
    if (current == kDeleted || current == kDeleting) {
      return absl::FailedPreconditionError(
          absl::StrCat("deployment \"", key.key.deployment(),
                       "\" is deleted; it takes no new keys"));
    }
    tx.exec_params(
        "INSERT INTO deployment.api_keys (name, deployment, display_name, "
        "prefix, sha256, create_micros) VALUES ($1, $2, $3, $4, $5, $6)",
        key.key.name(), key.key.deployment(), key.key.display_name(),
        key.key.prefix(), key.sha256, Micros(now));
    return Result(key.key, true);
  });
}

absl::StatusOr<std::vector<v1::ApiKey>> PgDeploymentStore::ListApiKeys(
    const std::string& deployment, bool show_revoked, const std::string& after,
    int limit) {
  using Result = std::vector<v1::ApiKey>;
  return pool_->Transact<Result>(
      [&](pqxx::work& tx) -> absl::StatusOr<Result> {
        pqxx::result rows = tx.exec_params(
            absl::StrCat("SELECT ", kKeyColumns,
                         " FROM deployment.api_keys WHERE deployment = $1"
                         " AND name > $2 AND ($3 OR revoke_micros IS NULL)"
                         " ORDER BY name LIMIT $4"),
            deployment, after, show_revoked, limit);
        Result keys;
        for (const pqxx::row& row : rows) keys.push_back(RowToApiKey(row));
        return keys;
      },
      {.read_only = true});
}

absl::StatusOr<v1::ApiKey> PgDeploymentStore::RevokeApiKey(
    const std::string& name, absl::Time now) {
  return pool_->Transact<v1::ApiKey>(
      [&](pqxx::work& tx) -> absl::StatusOr<v1::ApiKey> {
        pqxx::result rows = tx.exec_params(
            absl::StrCat("UPDATE deployment.api_keys SET revoke_micros = "
                         "COALESCE(revoke_micros, $2) WHERE name = $1 "
                         "RETURNING ",
                         kKeyColumns),
            name, Micros(now));
        if (rows.empty()) {
          return absl::NotFoundError(
              absl::StrCat("api key \"", name, "\" not found"));
        }
        return RowToApiKey(rows[0]);
      });
}

absl::StatusOr<std::vector<v1::ApiKeyEvent::Entry>>
PgDeploymentStore::ActiveApiKeys() {
  using Result = std::vector<v1::ApiKeyEvent::Entry>;
  return pool_->Transact<Result>(
      [&](pqxx::work& tx) -> absl::StatusOr<Result> {
        pqxx::result rows = tx.exec(
            "SELECT name, deployment, sha256 FROM deployment.api_keys "
            "WHERE revoke_micros IS NULL ORDER BY name");
        Result entries;
        for (const pqxx::row& row : rows) {
          v1::ApiKeyEvent::Entry entry;
          entry.set_key_name(row[0].as<std::string>());
          entry.set_deployment(row[1].as<std::string>());
          entry.set_sha256(row[2].as<std::string>());
          entries.push_back(std::move(entry));
        }
        return entries;
      },
      {.read_only = true});
}

absl::StatusOr<bool> PgDeploymentStore::AcquireLease(const std::string& name,
                                                     const std::string& owner,
                                                     absl::Time now,
                                                     absl::Time expiry) {
  return pool_->Transact<bool>([&](pqxx::work& tx) -> absl::StatusOr<bool> {
    // One statement: of two reconcilers racing for a free lease, the row
    // lock makes the second re-check the condition and find it taken.
    pqxx::result taken = tx.exec_params(
        "UPDATE deployment.deployments SET lease_owner = $2, "
        "lease_expiry_micros = $4 WHERE name = $1 AND (lease_owner IS NULL "
        "OR lease_owner = $2 OR lease_expiry_micros < $3) RETURNING 1",
        name, owner, Micros(now), Micros(expiry));
    if (!taken.empty()) return true;
    pqxx::result exists = tx.exec_params(
        "SELECT 1 FROM deployment.deployments WHERE name = $1", name);
    if (exists.empty()) {
      return absl::NotFoundError(
          absl::StrCat("deployment \"", name, "\" not found"));
    }
    return false;
  });
}

absl::Status PgDeploymentStore::ReleaseLease(const std::string& name,
                                             const std::string& owner) {
  return pool_
      ->Transact<bool>([&](pqxx::work& tx) -> absl::StatusOr<bool> {
        tx.exec_params(
            "UPDATE deployment.deployments SET lease_owner = NULL, "
            "lease_expiry_micros = NULL WHERE name = $1 AND lease_owner = $2",
            name, owner);
        return true;
      })
      .status();
}

absl::Status PgDeploymentStore::RecordReplicaUsage(
    const std::vector<ReplicaSample>& samples, absl::Time now) {
  if (samples.empty()) return absl::OkStatus();
  const std::string day =
      absl::FormatTime("%Y-%m-%d", now, absl::UTCTimeZone());
  return pool_
      ->Transact<bool>([&](pqxx::work& tx) -> absl::StatusOr<bool> {
        for (const ReplicaSample& sample : samples) {
          const std::string replica =
              absl::StrCat(sample.replica, "@", sample.replica_create_micros);
          // Serializes writers of one replica (leases already do; this
          // keeps the arithmetic right even if two ever overlapped).
          tx.exec_params("SELECT pg_advisory_xact_lock(hashtext($1))", replica);
          tx.exec_params(
              "INSERT INTO deployment.replica_usage (replica, "
              "cumulative_seconds, deployment, revision, hardware, day, "
              "seconds, create_micros) SELECT $1, $2, $3, $4, $5, $6::date, "
              "$2 - prev, $7 FROM (SELECT COALESCE(max(cumulative_seconds), 0) "
              "AS prev FROM deployment.replica_usage WHERE replica = $1) p "
              "WHERE $2 > prev ON CONFLICT DO NOTHING",
              replica, sample.cumulative_seconds, sample.deployment,
              sample.revision, sample.hardware, day, Micros(now));
        }
        return true;
      })
      .status();
}

absl::StatusOr<std::vector<ReplicaUsageRow>> PgDeploymentStore::ReplicaUsage(
    const UsageQuery& query, const std::string& after, int limit) {
  using Result = std::vector<ReplicaUsageRow>;
  return pool_->Transact<Result>(
      [&](pqxx::work& tx) -> absl::StatusOr<Result> {
        pqxx::result rows = tx.exec_params(
            absl::StrCat(
                "SELECT to_char(day, 'YYYY-MM-DD') AS date, deployment, "
                "hardware, sum(seconds) FROM deployment.replica_usage",
                kUsageWhere,
                " AND ($4 = '' OR (to_char(day, 'YYYY-MM-DD') || '|' || "
                "deployment || '|' || hardware) > $4)"
                " GROUP BY day, deployment, hardware"
                " ORDER BY day, deployment, hardware LIMIT $5"),
            query.deployment, query.start_date, query.end_date, after, limit);
        Result result;
        for (const pqxx::row& row : rows) {
          result.push_back({.date = row[0].as<std::string>(),
                            .deployment = row[1].as<std::string>(),
                            .hardware = row[2].as<std::string>(),
                            .replica_seconds = row[3].as<double>()});
        }
        return result;
      },
      {.read_only = true});
}

absl::StatusOr<std::vector<ReplicaUsageRow>>
PgDeploymentStore::ReplicaUsageByHardware(const UsageQuery& query) {
  using Result = std::vector<ReplicaUsageRow>;
  return pool_->Transact<Result>(
      [&](pqxx::work& tx) -> absl::StatusOr<Result> {
        pqxx::result rows = tx.exec_params(
            absl::StrCat("SELECT hardware, sum(seconds) FROM "
                         "deployment.replica_usage",
                         kUsageWhere, " GROUP BY hardware ORDER BY hardware"),
            query.deployment, query.start_date, query.end_date);
        Result result;
        for (const pqxx::row& row : rows) {
          result.push_back({.hardware = row[0].as<std::string>(),
                            .replica_seconds = row[1].as<double>()});
        }
        return result;
      },
      {.read_only = true});
}

}  // namespace hangar::deployment
