#include "services/scheduler/pg_scheduler_store.h"

#include <pqxx/pqxx>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/api/time.h"
#include "common/db/migrations.h"
#include "hangar/migrations/scheduler.h"

namespace hangar::scheduler {
namespace {

// "timestamptz 'epoch' + $n * 1us", NULL for a negative value.
std::string TimeParam(int n) {
  return absl::StrCat("(CASE WHEN $", n, "::bigint < 0 THEN NULL ELSE ",
                      "timestamptz 'epoch' + $", n,
                      "::bigint * interval '1 microsecond' END)");
}

std::string TimeColumn(const std::string& column) {
  return absl::StrCat("coalesce((extract(epoch FROM ", column,
                      ") * 1000000)::bigint, -1)");
}

int64_t Micros(absl::Time time) { return absl::ToUnixMicros(time); }
int64_t Micros(const std::optional<absl::Time>& time) {
  return time.has_value() ? absl::ToUnixMicros(*time) : -1;
}
std::optional<absl::Time> OptionalTime(int64_t micros) {
  if (micros < 0) return std::nullopt;
  return absl::FromUnixMicros(micros);
}

std::string GpusLiteral(const std::vector<int>& gpus) {
  return absl::StrCat("{", absl::StrJoin(gpus, ","), "}");
}
std::vector<int> ParseGpus(const std::string& text) {
  std::vector<int> gpus;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int value = 0;
    if (absl::SimpleAtoi(part, &value)) gpus.push_back(value);
  }
  return gpus;
}

std::string Hex(const google::protobuf::Message& message) {
  return absl::BytesToHexString(message.SerializeAsString());
}

absl::Status ParseHex(const std::string& hex, google::protobuf::Message& out,
                      absl::string_view what) {
  if (!out.ParseFromString(absl::HexStringToBytes(hex))) {
    return absl::DataLossError(absl::StrCat(what, ": stored spec is corrupt"));
  }
  return absl::OkStatus();
}

constexpr char kJobColumns[] =
    "name, request_id, encode(spec, 'hex'), state, node, "
    "array_to_string(gpus, ','), pid, exit_code, log_tail, failure_reason, "
    "coalesce((extract(epoch FROM create_time) * 1000000)::bigint, -1), "
    "coalesce((extract(epoch FROM start_time) * 1000000)::bigint, -1), "
    "coalesce((extract(epoch FROM end_time) * 1000000)::bigint, -1), "
    "pid_start_ticks";

absl::StatusOr<StoredJob> RowToJob(const pqxx::row& row) {
  StoredJob stored;
  v1::Job& job = stored.job;
  job.set_name(row[0].as<std::string>());
  stored.request_id = row[1].as<std::string>();
  v1::JobSpec spec;
  absl::Status parsed = ParseHex(row[2].as<std::string>(), spec, job.name());
  if (!parsed.ok()) return parsed;
  *job.mutable_spec() = std::move(spec);
  job.set_state(static_cast<v1::JobState>(row[3].as<int>()));
  job.set_node(row[4].as<std::string>());
  for (int gpu : ParseGpus(row[5].as<std::string>())) job.add_gpus(gpu);
  stored.pid = row[6].as<int>();
  job.set_exit_code(row[7].as<int>());
  job.set_log_tail(row[8].as<std::string>());
  job.set_failure_reason(row[9].as<std::string>());
  if (auto t = OptionalTime(row[10].as<int64_t>())) {
    *job.mutable_create_time() = ToProtoTimestamp(*t);
  }
  if (auto t = OptionalTime(row[11].as<int64_t>())) {
    *job.mutable_start_time() = ToProtoTimestamp(*t);
  }
  if (auto t = OptionalTime(row[12].as<int64_t>())) {
    *job.mutable_end_time() = ToProtoTimestamp(*t);
  }
  stored.start_ticks = static_cast<uint64_t>(row[13].as<int64_t>());
  return stored;
}

int64_t JobTime(const v1::Job& job, const google::protobuf::Timestamp& t,
                bool has) {
  (void)job;
  return has ? Micros(FromProtoTimestamp(t)) : -1;
}

}  // namespace

absl::Status MigrateSchedulerSchema(db::Pool& pool) {
  return db::ApplyMigrations(pool, migrations::scheduler::kSchema,
                             migrations::scheduler::Migrations());
}

absl::StatusOr<SchedulerSnapshot> PgSchedulerStore::Load() {
  return pool_->Transact<SchedulerSnapshot>(
      [&](pqxx::work& tx) -> absl::StatusOr<SchedulerSnapshot> {
        SchedulerSnapshot snapshot;
        for (const pqxx::row& row : tx.exec(absl::StrCat(
                 "SELECT deployment, revision, encode(spec, 'hex'), desired, "
                 "deleting, version, ",
                 TimeColumn("create_time"),
                 " FROM scheduler.replica_sets ORDER BY deployment, "
                 "revision"))) {
          StoredSet set;
          absl::Status parsed =
              ParseHex(row[2].as<std::string>(), set.spec,
                       absl::StrCat(row[0].as<std::string>(), "/",
                                    row[1].as<int64_t>()));
          if (!parsed.ok()) return parsed;
          set.desired = row[3].as<int>();
          set.deleting = row[4].as<bool>();
          set.version = row[5].as<int64_t>();
          set.create_time = absl::FromUnixMicros(row[6].as<int64_t>());
          snapshot.sets.push_back(std::move(set));
        }
        for (const pqxx::row& row : tx.exec(absl::StrCat(
                 "SELECT name, deployment, revision, index, state, priority, "
                 "node, array_to_string(gpus, ','), address, pid, restarts, "
                 "last_error, stopping, ",
                 TimeColumn("create_time"), ", ", TimeColumn("ready_time"),
                 ", ", TimeColumn("placed_time"),
                 ", replica_seconds, pid_start_ticks FROM scheduler.replicas "
                 "ORDER BY name"))) {
          StoredReplica r;
          r.name = row[0].as<std::string>();
          r.deployment = row[1].as<std::string>();
          r.revision = row[2].as<int64_t>();
          r.index = row[3].as<int>();
          r.state = static_cast<v1::ReplicaState>(row[4].as<int>());
          r.priority = static_cast<v1::Priority>(row[5].as<int>());
          r.node = row[6].as<std::string>();
          r.gpus = ParseGpus(row[7].as<std::string>());
          r.address = row[8].as<std::string>();
          r.pid = row[9].as<int>();
          r.restarts = row[10].as<int>();
          r.last_error = row[11].as<std::string>();
          r.stopping = row[12].as<bool>();
          r.create_time = absl::FromUnixMicros(row[13].as<int64_t>());
          r.ready_time = OptionalTime(row[14].as<int64_t>());
          r.placed_time = OptionalTime(row[15].as<int64_t>());
          r.replica_seconds = row[16].as<double>();
          r.start_ticks = static_cast<uint64_t>(row[17].as<int64_t>());
          snapshot.replicas.push_back(std::move(r));
        }
        for (const pqxx::row& row :
             tx.exec(absl::StrCat("SELECT ", kJobColumns,
                                  " FROM scheduler.jobs ORDER BY create_time, "
                                  "name"))) {
          absl::StatusOr<StoredJob> job = RowToJob(row);
          if (!job.ok()) return job.status();
          snapshot.jobs.push_back(*std::move(job));
        }
        return snapshot;
      },
      {.read_only = true});
}

absl::Status PgSchedulerStore::PutSet(const StoredSet& set) {
  return pool_->Transact([&](pqxx::work& tx) -> absl::Status {
    tx.exec_params(
        absl::StrCat(
            "INSERT INTO scheduler.replica_sets (deployment, revision, spec, "
            "desired, deleting, version, create_time) VALUES ($1, $2, "
            "decode($3, 'hex'), $4, $5, $6, ",
            TimeParam(7),
            ") ON CONFLICT (deployment, revision) DO UPDATE SET spec = "
            "EXCLUDED.spec, desired = EXCLUDED.desired, deleting = "
            "EXCLUDED.deleting, version = EXCLUDED.version"),
        set.spec.deployment(), set.spec.revision(), Hex(set.spec), set.desired,
        set.deleting, set.version, Micros(set.create_time));
    return absl::OkStatus();
  });
}

absl::Status PgSchedulerStore::DeleteSet(const std::string& deployment,
                                         int64_t revision) {
  return pool_->Transact([&](pqxx::work& tx) -> absl::Status {
    pqxx::result deleted = tx.exec_params(
        "DELETE FROM scheduler.replica_sets WHERE deployment = $1 AND "
        "revision = $2 RETURNING deployment",
        deployment, revision);
    if (deleted.empty()) {
      return absl::NotFoundError(
          absl::StrCat("replica set ", deployment, "/", revision));
    }
    return absl::OkStatus();
  });
}

absl::Status PgSchedulerStore::PutReplica(const StoredReplica& r) {
  return pool_->Transact([&](pqxx::work& tx) -> absl::Status {
    pqxx::result set = tx.exec_params(
        "SELECT 1 FROM scheduler.replica_sets WHERE deployment = $1 AND "
        "revision = $2",
        r.deployment, r.revision);
    if (set.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("replica ", r.name, ": its set does not exist"));
    }
    tx.exec_params(
        absl::StrCat(
            "INSERT INTO scheduler.replicas (name, deployment, revision, "
            "index, state, priority, node, gpus, address, pid, restarts, "
            "last_error, stopping, create_time, ready_time, placed_time, "
            "replica_seconds, pid_start_ticks) VALUES ($1, $2, $3, $4, $5, "
            "$6, $7, $8::integer[], $9, $10, $11, $12, $13, ",
            TimeParam(14), ", ", TimeParam(15), ", ", TimeParam(16),
            ", $17, $18) ON CONFLICT (name) DO UPDATE SET state = "
            "EXCLUDED.state, pid_start_ticks = EXCLUDED.pid_start_ticks, "
            "priority = EXCLUDED.priority, node = EXCLUDED.node, gpus = "
            "EXCLUDED.gpus, address = EXCLUDED.address, pid = EXCLUDED.pid, "
            "restarts = EXCLUDED.restarts, last_error = EXCLUDED.last_error, "
            "stopping = EXCLUDED.stopping, ready_time = EXCLUDED.ready_time, "
            "placed_time = EXCLUDED.placed_time, replica_seconds = "
            "EXCLUDED.replica_seconds"),
        r.name, r.deployment, r.revision, r.index, static_cast<int>(r.state),
        static_cast<int>(r.priority), r.node, GpusLiteral(r.gpus), r.address,
        static_cast<int>(r.pid), r.restarts, r.last_error, r.stopping,
        Micros(r.create_time), Micros(r.ready_time), Micros(r.placed_time),
        r.replica_seconds, static_cast<int64_t>(r.start_ticks));
    return absl::OkStatus();
  });
}

absl::Status PgSchedulerStore::DeleteReplica(const std::string& name) {
  return pool_->Transact([&](pqxx::work& tx) -> absl::Status {
    tx.exec_params("DELETE FROM scheduler.replicas WHERE name = $1", name);
    return absl::OkStatus();
  });
}

absl::StatusOr<StoredJob> PgSchedulerStore::CreateJob(const StoredJob& stored) {
  const v1::Job& job = stored.job;
  return pool_->Transact<StoredJob>(
      [&](pqxx::work& tx) -> absl::StatusOr<StoredJob> {
        tx.exec_params(
            absl::StrCat(
                "INSERT INTO scheduler.jobs (name, request_id, spec, owner, "
                "state, node, gpus, pid, exit_code, log_tail, failure_reason, "
                "create_time, start_time, end_time) VALUES ($1, $2, "
                "decode($3, 'hex'), $4, $5, $6, $7::integer[], $8, $9, $10, "
                "$11, ",
                TimeParam(12), ", ", TimeParam(13), ", ", TimeParam(14),
                ") ON CONFLICT (request_id) DO NOTHING"),
            job.name(), stored.request_id, Hex(job.spec()), job.spec().owner(),
            static_cast<int>(job.state()), job.node(),
            GpusLiteral({job.gpus().begin(), job.gpus().end()}),
            static_cast<int>(stored.pid), job.exit_code(), job.log_tail(),
            job.failure_reason(),
            JobTime(job, job.create_time(), job.has_create_time()),
            JobTime(job, job.start_time(), job.has_start_time()),
            JobTime(job, job.end_time(), job.has_end_time()));
        pqxx::result rows = tx.exec_params(
            absl::StrCat("SELECT ", kJobColumns,
                         " FROM scheduler.jobs WHERE request_id = $1"),
            stored.request_id);
        if (rows.empty()) {
          return absl::InternalError("job vanished after its insert");
        }
        return RowToJob(rows[0]);
      });
}

absl::Status PgSchedulerStore::PutJob(const StoredJob& stored) {
  const v1::Job& job = stored.job;
  return pool_->Transact([&](pqxx::work& tx) -> absl::Status {
    pqxx::result rows = tx.exec_params(
        absl::StrCat("UPDATE scheduler.jobs SET state = $2, node = $3, gpus = "
                     "$4::integer[], pid = $5, exit_code = $6, log_tail = $7, "
                     "failure_reason = $8, pid_start_ticks = $11, "
                     "start_time = ",
                     TimeParam(9), ", end_time = ", TimeParam(10),
                     " WHERE name = $1 RETURNING name"),
        job.name(), static_cast<int>(job.state()), job.node(),
        GpusLiteral({job.gpus().begin(), job.gpus().end()}),
        static_cast<int>(stored.pid), job.exit_code(), job.log_tail(),
        job.failure_reason(),
        JobTime(job, job.start_time(), job.has_start_time()),
        JobTime(job, job.end_time(), job.has_end_time()),
        static_cast<int64_t>(stored.start_ticks));
    if (rows.empty()) return absl::NotFoundError(job.name());
    return absl::OkStatus();
  });
}

}  // namespace hangar::scheduler
