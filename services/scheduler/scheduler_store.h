// SchedulerStore: what the scheduler must remember across a restart.
//
// The Scheduler (scheduler.h) keeps its working state in memory and writes
// every change through to this store before it announces it; after a
// restart Load() returns everything it had written, from which it rebuilds
// the Placer's allocations and re-adopts (or restarts) runners. Three kinds
// of record:
//  - replica sets: the spec as applied, the autoscaler's current target and
//    whether the set is being deleted (its replicas drain);
//  - replicas: one row per replica that exists (placed or pending), with its
//    state, node, GPU slots, address, pid and its start time, restarts,
//    last error, times and the replica-seconds accumulated by earlier
//    placements;
//  - jobs: the spec, the idempotency key (unique), state, pid and its start
//    time, exit code, log tail and times.
// Writes are upserts keyed by name so a retried write is harmless. Two
// implementations: PgSchedulerStore (pg_scheduler_store.h, schema
// `scheduler`) and testing/in_memory_scheduler_store.h for unit tests.
#ifndef HANGAR_SERVICES_SCHEDULER_SCHEDULER_STORE_H_
#define HANGAR_SERVICES_SCHEDULER_SCHEDULER_STORE_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hangar/v1/scheduler.pb.h"

namespace hangar::scheduler {

struct StoredSet {
  v1::ReplicaSetSpec spec;
  // The replica count the scheduler aims at now, in [min, max].
  int desired = 0;
  // DeleteReplicaSet was called: replicas drain, then the row goes.
  bool deleting = false;
  // Bumped on every change; the etag.
  int64_t version = 1;
  absl::Time create_time = absl::UnixEpoch();
};

struct StoredReplica {
  // "<deployment>-r<revision>-<index>".
  std::string name;
  std::string deployment;
  int64_t revision = 0;
  int index = 0;
  v1::ReplicaState state = v1::REPLICA_STATE_PENDING;
  v1::Priority priority = v1::PRIORITY_SERVING;
  // Empty while pending.
  std::string node;
  std::vector<int> gpus;
  std::string address;
  pid_t pid = 0;
  // The runner's start time (ReplicaStatus::start_ticks; 0 unknown).
  uint64_t start_ticks = 0;
  int restarts = 0;
  std::string last_error;
  // Being drained and stopped (scale-in or set deletion).
  bool stopping = false;
  absl::Time create_time = absl::UnixEpoch();
  std::optional<absl::Time> ready_time;
  // Since when it holds GPUs (unset while pending).
  std::optional<absl::Time> placed_time;
  // Seconds of earlier placements, before placed_time.
  double replica_seconds = 0;
};

struct StoredJob {
  // name, spec, state, node, gpus, exit code, log tail, failure reason and
  // times (pending_reason is not stored: it is recomputed).
  v1::Job job;
  std::string request_id;
  pid_t pid = 0;
  // The process's start time (JobStatus::start_ticks; 0 unknown).
  uint64_t start_ticks = 0;
};

struct SchedulerSnapshot {
  std::vector<StoredSet> sets;
  std::vector<StoredReplica> replicas;
  std::vector<StoredJob> jobs;
};

class SchedulerStore {
 public:
  virtual ~SchedulerStore() = default;

  // Everything stored: sets by (deployment, revision), replicas by name,
  // jobs by create time.
  virtual absl::StatusOr<SchedulerSnapshot> Load() = 0;

  // Inserts or replaces the set keyed by (deployment, revision).
  virtual absl::Status PutSet(const StoredSet& set) = 0;
  // Removes the set and its replicas; NOT_FOUND if absent.
  virtual absl::Status DeleteSet(const std::string& deployment,
                                 int64_t revision) = 0;

  // Inserts or replaces the replica keyed by name; its set must exist
  // (FAILED_PRECONDITION otherwise).
  virtual absl::Status PutReplica(const StoredReplica& replica) = 0;
  // Removes a replica; absent is fine.
  virtual absl::Status DeleteReplica(const std::string& name) = 0;

  // Inserts `job` unless a job with its request_id exists; returns the job
  // stored under that request_id (the new one, or the earlier one).
  virtual absl::StatusOr<StoredJob> CreateJob(const StoredJob& job) = 0;
  // Replaces an existing job (NOT_FOUND if absent).
  virtual absl::Status PutJob(const StoredJob& job) = 0;
};

}  // namespace hangar::scheduler

#endif  // HANGAR_SERVICES_SCHEDULER_SCHEDULER_STORE_H_
