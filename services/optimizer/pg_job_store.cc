#include "services/optimizer/pg_job_store.h"

#include <filesystem>
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "common/db/migrations.h"
#include "common/status/status_macros.h"
#include "google/protobuf/util/json_util.h"
#include "hangar/migrations/optimizer.h"

namespace hangar::optimizer {
namespace {

constexpr char kJobColumns[] = "job::text, source_path, output_path";

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out);
  return out;
}

template <typename T>
absl::StatusOr<T> FromJson(const std::string& json) {
  T m;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(json, &m, options).ok()) {
    return absl::DataLossError(absl::StrCat("optimizer store: a stored ",
                                            T::descriptor()->name(),
                                            " is malformed"));
  }
  return m;
}

absl::StatusOr<StoredJob> JobFromRow(const pqxx::row& row) {
  StoredJob j;
  ASSIGN_OR_RETURN(j.job,
                   FromJson<v1::OptimizationJob>(row[0].as<std::string>()));
  j.source_path = row[1].as<std::string>();
  j.output_path = row[2].as<std::string>();
  return j;
}

std::string ArtifactKey(const StoredJob& j) {
  return std::filesystem::path(j.output_path).filename().string();
}

// The request id's binding and its job, if bound.
absl::StatusOr<std::optional<JobStore::Claimed>> SelectRequest(
    pqxx::work& tx, const std::string& request_id) {
  pqxx::result r = tx.exec_params(
      absl::StrCat(
          "SELECT ", kJobColumns,
          ", r.fingerprint FROM optimizer.requests r JOIN optimizer.jobs j "
          "ON j.name = r.job_name WHERE r.request_id = $1"),
      request_id);
  if (r.empty()) return std::optional<JobStore::Claimed>();
  ASSIGN_OR_RETURN(StoredJob j, JobFromRow(r[0]));
  return std::optional<JobStore::Claimed>(
      JobStore::Claimed{std::move(j), r[0][3].as<std::string>(), false});
}

// Takes the artifact key's lock until the transaction ends (job_store.h).
void LockKey(pqxx::work& tx, const std::string& key) {
  tx.exec_params("SELECT pg_advisory_xact_lock(hashtextextended($1, 7103))",
                 "optimizer-artifact:" + key);
}

absl::Time TimeOf(const pqxx::field& f) {
  return absl::FromUnixMicros(f.as<int64_t>());
}

constexpr char kRaced[] = "request id bound concurrently";

}  // namespace

absl::Status MigrateOptimizerSchema(db::Pool& pool) {
  return db::ApplyMigrations(pool, migrations::optimizer::kSchema,
                             migrations::optimizer::Migrations());
}

absl::StatusOr<JobStore::Claimed> PgJobStore::CreateJob(
    const StoredJob& job, const std::string& request_id,
    const std::string& fingerprint) {
  return pool_->Transact<Claimed>(
      [&](pqxx::work& tx) -> absl::StatusOr<Claimed> {
        LockKey(tx, ArtifactKey(job));
        ASSIGN_OR_RETURN(std::optional<Claimed> seen,
                         SelectRequest(tx, request_id));
        if (seen.has_value()) return *seen;
        tx.exec_params(
            "INSERT INTO optimizer.jobs (name, model, state, source_sha256, "
            "artifact_key, source_path, output_path, job) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)",
            job.job.name(), job.job.model(), static_cast<int>(job.job.state()),
            job.job.source_sha256(), ArtifactKey(job), job.source_path,
            job.output_path, ToJson(job.job));
        pqxx::result r = tx.exec_params(
            "INSERT INTO optimizer.requests (request_id, job_name, "
            "fingerprint) VALUES ($1, $2, $3) "
            "ON CONFLICT (request_id) DO NOTHING",
            request_id, job.job.name(), fingerprint);
        if (r.affected_rows() == 0) {
          // A concurrent create bound the id first: retry the transaction.
          return absl::AbortedError("request id bound concurrently");
        }
        return Claimed{job, fingerprint, true};
      },
      {.isolation = db::Isolation::kSerializable});
}

absl::StatusOr<JobStore::Claimed> PgJobStore::BindRequest(
    const std::string& request_id, const std::string& fingerprint,
    const std::string& job_name) {
  return pool_->Transact<Claimed>(
      [&](pqxx::work& tx) -> absl::StatusOr<Claimed> {
        ASSIGN_OR_RETURN(std::optional<Claimed> seen,
                         SelectRequest(tx, request_id));
        if (seen.has_value()) return *seen;
        pqxx::result r =
            tx.exec_params(absl::StrCat("SELECT ", kJobColumns,
                                        " FROM optimizer.jobs WHERE name = $1"),
                           job_name);
        if (r.empty())
          return absl::NotFoundError(
              absl::StrCat("optimization job ", job_name, " not found"));
        ASSIGN_OR_RETURN(StoredJob j, JobFromRow(r[0]));
        tx.exec_params(
            "INSERT INTO optimizer.requests (request_id, job_name, "
            "fingerprint) VALUES ($1, $2, $3)",
            request_id, job_name, fingerprint);
        return Claimed{std::move(j), fingerprint, true};
      },
      {.isolation = db::Isolation::kSerializable});
}

absl::StatusOr<std::optional<JobStore::Claimed>> PgJobStore::FindRequest(
    const std::string& request_id) {
  return pool_->Transact<std::optional<Claimed>>(
      [&](pqxx::work& tx) { return SelectRequest(tx, request_id); },
      {.read_only = true});
}

absl::StatusOr<StoredJob> PgJobStore::GetJob(const std::string& name) {
  return pool_->Transact<StoredJob>(
      [&](pqxx::work& tx) -> absl::StatusOr<StoredJob> {
        pqxx::result r =
            tx.exec_params(absl::StrCat("SELECT ", kJobColumns,
                                        " FROM optimizer.jobs WHERE name = $1"),
                           name);
        if (r.empty())
          return absl::NotFoundError(
              absl::StrCat("optimization job ", name, " not found"));
        return JobFromRow(r[0]);
      },
      {.read_only = true});
}

absl::Status PgJobStore::UpdateJob(const StoredJob& job) {
  return pool_->Transact([&](pqxx::work& tx) -> absl::Status {
    pqxx::result r = tx.exec_params(
        "UPDATE optimizer.jobs SET state = $2, job = $3::jsonb, update_time = "
        "now() WHERE name = $1",
        job.job.name(), static_cast<int>(job.job.state()), ToJson(job.job));
    if (r.affected_rows() == 0)
      return absl::NotFoundError(
          absl::StrCat("optimization job ", job.job.name()));
    return absl::OkStatus();
  });
}

absl::StatusOr<JobPage> PgJobStore::ListJobs(const JobFilter& filter,
                                             const std::string& after_name,
                                             int limit) {
  return pool_->Transact<JobPage>(
      [&](pqxx::work& tx) -> absl::StatusOr<JobPage> {
        pqxx::result rows = tx.exec_params(
            absl::StrCat("SELECT ", kJobColumns,
                         " FROM optimizer.jobs WHERE ($1 = '' OR model = $1) "
                         "AND ($2 = 0 OR state = $2) "
                         "AND name > $3 ORDER BY name LIMIT $4"),
            filter.model, static_cast<int>(filter.state), after_name,
            limit + 1);
        JobPage page;
        for (const pqxx::row& row : rows) {
          if (int(page.jobs.size()) == limit) {
            page.more = true;
            break;
          }
          ASSIGN_OR_RETURN(StoredJob j, JobFromRow(row));
          page.jobs.push_back(std::move(j));
        }
        return page;
      },
      {.read_only = true});
}

absl::StatusOr<std::vector<StoredJob>> PgJobStore::ListUnfinishedJobs() {
  return pool_->Transact<std::vector<StoredJob>>(
      [&](pqxx::work& tx) -> absl::StatusOr<std::vector<StoredJob>> {
        pqxx::result rows = tx.exec(absl::StrCat(
            "SELECT ", kJobColumns,
            " FROM optimizer.jobs WHERE state IN (1, 2) ORDER BY name"));
        std::vector<StoredJob> out;
        for (const pqxx::row& row : rows) {
          ASSIGN_OR_RETURN(StoredJob j, JobFromRow(row));
          out.push_back(std::move(j));
        }
        return out;
      },
      {.read_only = true});
}

absl::StatusOr<std::optional<StoredJob>> PgJobStore::FindUnfinishedJob(
    const std::string& source_sha256, const std::string& recipe_slug) {
  return pool_->Transact<std::optional<StoredJob>>(
      [&](pqxx::work& tx) -> absl::StatusOr<std::optional<StoredJob>> {
        pqxx::result r = tx.exec_params(
            absl::StrCat("SELECT ", kJobColumns,
                         " FROM optimizer.jobs WHERE artifact_key = $1 AND "
                         "state IN (1, 2) ORDER BY name LIMIT 1"),
            absl::StrCat(source_sha256, "-", recipe_slug));
        if (r.empty()) return std::optional<StoredJob>();
        ASSIGN_OR_RETURN(StoredJob j, JobFromRow(r[0]));
        return std::optional<StoredJob>(std::move(j));
      },
      {.read_only = true});
}

absl::Status PgJobStore::PutArtifact(const v1::Artifact& a,
                                     const std::string& recipe_slug) {
  return pool_->Transact([&](pqxx::work& tx) -> absl::Status {
    tx.exec_params(
        "INSERT INTO optimizer.artifacts (source_sha256, recipe, name, model, "
        "artifact) "
        "VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (source_sha256, "
        "recipe) DO UPDATE SET "
        "name = EXCLUDED.name, model = EXCLUDED.model, artifact = "
        "EXCLUDED.artifact",
        a.source_sha256(), recipe_slug, a.name(), a.model(), ToJson(a));
    return absl::OkStatus();
  });
}

absl::StatusOr<std::optional<v1::Artifact>> PgJobStore::FindArtifact(
    const std::string& source_sha256, const std::string& recipe_slug) {
  return pool_->Transact<std::optional<v1::Artifact>>(
      [&](pqxx::work& tx) -> absl::StatusOr<std::optional<v1::Artifact>> {
        pqxx::result r = tx.exec_params(
            "SELECT artifact::text FROM optimizer.artifacts WHERE "
            "source_sha256 = $1 AND recipe = $2",
            source_sha256, recipe_slug);
        if (r.empty()) return std::optional<v1::Artifact>();
        ASSIGN_OR_RETURN(v1::Artifact a,
                         FromJson<v1::Artifact>(r[0][0].as<std::string>()));
        return std::optional<v1::Artifact>(std::move(a));
      },
      {.read_only = true});
}

absl::StatusOr<std::optional<JobStore::Claimed>> PgJobStore::CreateReusingJob(
    const StoredJob& job, const std::string& request_id,
    const std::string& fingerprint, const std::string& recipe_slug) {
  // Read committed: every statement after the lock sees what a collector
  // that held the lock before committed.
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<std::optional<Claimed>> r =
        pool_->Transact<std::optional<Claimed>>(
            [&](pqxx::work& tx) -> absl::StatusOr<std::optional<Claimed>> {
              LockKey(tx, ArtifactKey(job));
              ASSIGN_OR_RETURN(std::optional<Claimed> seen,
                               SelectRequest(tx, request_id));
              if (seen.has_value()) return seen;
              pqxx::result a = tx.exec_params(
                  "SELECT 1 FROM optimizer.artifacts WHERE source_sha256 = $1 "
                  "AND recipe = $2 FOR SHARE",
                  job.job.source_sha256(), recipe_slug);
              if (a.empty()) return std::optional<Claimed>();
              tx.exec_params(
                  "INSERT INTO optimizer.jobs (name, model, state, "
                  "source_sha256, artifact_key, source_path, output_path, job) "
                  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)",
                  job.job.name(), job.job.model(),
                  static_cast<int>(job.job.state()), job.job.source_sha256(),
                  ArtifactKey(job), job.source_path, job.output_path,
                  ToJson(job.job));
              pqxx::result q = tx.exec_params(
                  "INSERT INTO optimizer.requests (request_id, job_name, "
                  "fingerprint) VALUES ($1, $2, $3) "
                  "ON CONFLICT (request_id) DO NOTHING",
                  request_id, job.job.name(), fingerprint);
              if (q.affected_rows() == 0) return absl::AbortedError(kRaced);
              return std::optional<Claimed>(Claimed{job, fingerprint, true});
            });
    if (r.ok() || attempt == 2 || r.status().message() != kRaced) return r;
  }
}

absl::StatusOr<JobStore::Released> PgJobStore::ReleaseRequest(
    const std::string& request_id, absl::Time now) {
  return pool_->Transact<Released>(
      [&](pqxx::work& tx) -> absl::StatusOr<Released> {
        pqxx::result r = tx.exec_params(
            "SELECT (extract(epoch FROM release_time) * 1000000)::bigint "
            "FROM optimizer.requests WHERE request_id = $1 FOR UPDATE",
            request_id);
        if (r.empty()) {
          return absl::NotFoundError(
              absl::StrCat("request id '", request_id, "' not found"));
        }
        Released out;
        if (r[0][0].is_null()) {
          tx.exec_params(
              "UPDATE optimizer.requests SET release_time = "
              "to_timestamp($2::double precision / 1000000) "
              "WHERE request_id = $1",
              request_id, absl::ToUnixMicros(now));
          out.release_time = absl::FromUnixMicros(absl::ToUnixMicros(now));
          out.released_now = true;
        } else {
          out.release_time = TimeOf(r[0][0]);
        }
        ASSIGN_OR_RETURN(std::optional<Claimed> c,
                         SelectRequest(tx, request_id));
        out.job = std::move(c->job);
        return out;
      });
}

absl::StatusOr<bool> PgJobStore::WithKeyLocked(
    const std::string& key,
    const std::function<absl::StatusOr<bool>(const KeyState&)>& decide) {
  return pool_->Transact<bool>([&](pqxx::work& tx) -> absl::StatusOr<bool> {
    LockKey(tx, key);
    KeyState state;
    state.key = key;
    pqxx::result a = tx.exec_params(
        "SELECT artifact::text FROM optimizer.artifacts WHERE "
        "source_sha256 || '-' || recipe = $1 FOR UPDATE",
        key);
    if (!a.empty()) {
      ASSIGN_OR_RETURN(v1::Artifact art,
                       FromJson<v1::Artifact>(a[0][0].as<std::string>()));
      state.artifact = std::move(art);
    }
    pqxx::result h = tx.exec_params(
        "SELECT count(r.request_id) FILTER (WHERE r.release_time IS NULL AND "
        "j.state IN (1, 2, 3)), "
        "coalesce(bool_or(j.state IN (1, 2)), false), "
        "(extract(epoch FROM max(r.release_time)) * 1000000)::bigint "
        "FROM optimizer.jobs j LEFT JOIN optimizer.requests r "
        "ON r.job_name = j.name WHERE j.artifact_key = $1",
        key);
    state.live_holds = h[0][0].as<int>();
    state.unfinished = h[0][1].as<bool>();
    if (!h[0][2].is_null()) state.last_release = TimeOf(h[0][2]);
    ASSIGN_OR_RETURN(bool remove, decide(state));
    if (remove && state.artifact.has_value()) {
      tx.exec_params(
          "DELETE FROM optimizer.artifacts WHERE source_sha256 || '-' || "
          "recipe = $1",
          key);
    }
    return remove;
  });
}

absl::StatusOr<std::vector<std::string>> PgJobStore::ListArtifactKeys() {
  return pool_->Transact<std::vector<std::string>>(
      [&](pqxx::work& tx) -> absl::StatusOr<std::vector<std::string>> {
        std::vector<std::string> keys;
        for (const pqxx::row& row :
             tx.exec("SELECT source_sha256 || '-' || recipe FROM "
                     "optimizer.artifacts ORDER BY 1")) {
          keys.push_back(row[0].as<std::string>());
        }
        return keys;
      },
      {.read_only = true});
}

absl::StatusOr<ArtifactPage> PgJobStore::ListArtifacts(const std::string& model,
                                                       const std::string& after,
                                                       int limit) {
  return pool_->Transact<ArtifactPage>(
      [&](pqxx::work& tx) -> absl::StatusOr<ArtifactPage> {
        pqxx::result rows = tx.exec_params(
            "SELECT artifact::text FROM optimizer.artifacts WHERE ($1 = '' OR "
            "model = $1) "
            "AND ($2 = '' OR name < $2) ORDER BY name DESC LIMIT $3",
            model, after, limit + 1);
        ArtifactPage page;
        for (const pqxx::row& row : rows) {
          if (int(page.artifacts.size()) == limit) {
            page.more = true;
            break;
          }
          ASSIGN_OR_RETURN(v1::Artifact a,
                           FromJson<v1::Artifact>(row[0].as<std::string>()));
          page.artifacts.push_back(std::move(a));
        }
        return page;
      },
      {.read_only = true});
}

}  // namespace hangar::optimizer
