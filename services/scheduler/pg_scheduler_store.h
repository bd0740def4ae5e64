// SchedulerStore on PostgreSQL, in the `scheduler` schema built by
// services/scheduler/migrations/*.sql (MigrateSchedulerSchema).
//
//   ASSIGN_OR_RETURN(auto pool, db::Pool::Create({.conninfo = db}));
//   RETURN_IF_ERROR(MigrateSchedulerSchema(*pool));
//   PgSchedulerStore store(pool.get());
//
// Every query is parameterized. Specs are serialized hangar.v1 messages in
// bytea columns (sent as hex text); times are timestamptz, sent and read as
// microseconds since the epoch (-1 for NULL).
#ifndef HANGAR_SERVICES_SCHEDULER_PG_SCHEDULER_STORE_H_
#define HANGAR_SERVICES_SCHEDULER_PG_SCHEDULER_STORE_H_

#include <string>

#include "common/db/pool.h"
#include "services/scheduler/scheduler_store.h"

namespace hangar::scheduler {

// Applies the scheduler schema's migrations (idempotent).
absl::Status MigrateSchedulerSchema(db::Pool& pool);

class PgSchedulerStore final : public SchedulerStore {
 public:
  // `pool` is not owned and must outlive the store.
  explicit PgSchedulerStore(db::Pool* pool) : pool_(pool) {}

  absl::StatusOr<SchedulerSnapshot> Load() override;
  absl::Status PutSet(const StoredSet& set) override;
  absl::Status DeleteSet(const std::string& deployment,
                         int64_t revision) override;
  absl::Status PutReplica(const StoredReplica& replica) override;
  absl::Status DeleteReplica(const std::string& name) override;
  absl::StatusOr<StoredJob> CreateJob(const StoredJob& job) override;
  absl::Status PutJob(const StoredJob& job) override;

 private:
  db::Pool* const pool_;
};

}  // namespace hangar::scheduler

#endif  // HANGAR_SERVICES_SCHEDULER_PG_SCHEDULER_STORE_H_
