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
