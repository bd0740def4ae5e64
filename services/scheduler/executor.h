// Executor: where the scheduler's placed work actually runs.
//
// Placement decides *where* a replica or a job goes (a node and GPU slots of
// a pool); an Executor makes it *run there* and reports what becomes of it.
// The interface is plain C++ — no gRPC or proto types — so that the embedded
// LocalExecutor (child processes on this host, local_executor.h) and a later
// Kubernetes executor (pods) are interchangeable behind the scheduler.
//
// Two kinds of workload:
//  - A replica is one model runner (hangar-runner): an artifact, its thread
//    count, batch size, context length, the deployment's sampling values and
//    its identity (deployment, revision, replica name). It is meant to run
//    until stopped: an executor restarts one that dies, with exponential
//    backoff, and reports each death (FAILED with the exit status and the
//    log tail) instead of hiding it. Its states:
//
//      STARTING ──(health SERVING and Info names this replica)──> READY
//        ^  │ died, or not READY in time            died, or hung │
//        │  v                                                     │
//        │  FAILED <──────────────────────────────────────────────┘
//        └──┘ backoff elapsed (restarts + 1)
//
//      StopReplica(): DRAINING (no new work; SIGTERM, the runner finishes
//      in-flight work) ──(exit, or SIGKILL after drain + grace)──> STOPPED
//
//  - A job is a program run to completion (an optimization): argv, extra
//    environment and a timeout. RUNNING → SUCCEEDED (exit 0) | FAILED (another
//    exit code, a timeout, a binary that cannot be run) | CANCELLED.
//    (PENDING belongs to the scheduler's queue, before a job reaches here.)
//
// Observation is push: every change of a workload's status is delivered, in
// order, to the Observer given to the executor at creation; Get*/List* read
// the current status at any time. Statuses are values (copies).
//
// Recovery is level-triggered: after a scheduler restart, Adopt() receives
// the replicas and the running jobs the scheduler had recorded (spec, pid and
// the process's start time). An executor re-adopts a recorded replica whose
// process is still the one it started and whose Info names that replica; it
// starts a fresh one for every other record. A recorded job whose process
// still runs is followed again until it ends; one that ended meanwhile is
// reported with the exit status it left behind (or FAILED, status unknown).
// Processes of the executor that no record claims are killed. It never runs
// two processes for one replica or job name.
//
// Thread-safety: every method may be called from any thread. Observer
// callbacks run on an executor thread, one at a time; they may call Get*/
// List*/Start*/Stop* but must not block on another callback.
#ifndef HANGAR_SERVICES_SCHEDULER_EXECUTOR_H_
#define HANGAR_SERVICES_SCHEDULER_EXECUTOR_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace hangar::scheduler {

enum class ReplicaState { kStarting, kReady, kDraining, kStopped, kFailed };
enum class JobState { kPending, kRunning, kSucceeded, kFailed, kCancelled };

// "STARTING", "READY", ...; "PENDING", "RUNNING", ...
absl::string_view ReplicaStateName(ReplicaState state);
absl::string_view JobStateName(JobState state);

// The deployment's sampling values (see common.proto SamplingParams): each
// unset value is the runner's default.
struct SamplingValues {
  std::optional<float> temperature;
  std::optional<int> max_tokens;
  std::optional<float> top_p;
  std::optional<int> top_k;
  std::vector<std::string> stop_sequences;
  std::optional<uint64_t> seed;
};

// Where placement put a workload.
struct Assignment {
  std::string node;
  // GPU slot indexes on the node.
  std::vector<int> gpus;
};

struct ReplicaSpec {
  // Unique among the executor's replicas: letters, digits, '.', '_', '-'
  // (the scheduler uses "<deployment>-r<revision>-<index>"). Required.
  std::string name;
  // Identity reported by the runner's Info. deployment is required.
  std::string deployment;
  int64_t revision = 0;
  // The artifact (or prepared model) the runner loads. Required.
  std::string artifact_path;
  // Engine threads, in [1, 256].
  int threads = 1;
  // Sequences decoded together, in [1, 256].
  int max_batch = 8;
  // Tokens per sequence; 0 means the model's.
  int context_length = 0;
  SamplingValues sampling;
  Assignment assignment;
};

struct ReplicaStatus {
  ReplicaSpec spec;
  ReplicaState state = ReplicaState::kStarting;
  // The runner's process (0 while none runs) and its host:port once known.
  pid_t pid = 0;
  // When that process started (/proc/<pid>/stat starttime, clock ticks since
  // boot; 0 unknown): a pid and its start time name one process for good.
  uint64_t start_ticks = 0;
  std::string address;
  // Where its output goes (empty when the executor keeps none).
  std::string log_path;
  // How many times it was started again after it died (or could not start).
  int restarts = 0;
  // Why it last failed, for people ("exited with code 1; restarting in 2s").
  std::string last_error;
  // How its last process ended, when one did.
  std::optional<int> last_exit_code;
  // The last output (at most 8 KiB) of its last process that ended; from
  // GetReplica() while a process runs, that process's output so far.
  std::string log_tail;
  // When it last turned READY.
  std::optional<absl::Time> ready_time;
  // While FAILED and waiting to start again: when it will.
  std::optional<absl::Time> next_restart_time;
};

struct JobSpec {
  // Unique among the executor's jobs. Required.
  std::string name;
  // argv[0] is an absolute path or a file name found next to the executor's
  // binaries. Required.
  std::vector<std::string> argv;
  // Extra environment, "NAME=value" each.
  std::vector<std::string> env;
  // Longest run before the job is stopped and FAILED; in (0, 7 days].
  absl::Duration timeout = absl::Hours(1);
  Assignment assignment;
};

struct JobStatus {
  JobSpec spec;
  JobState state = JobState::kRunning;
  pid_t pid = 0;
  // As in ReplicaStatus.
  uint64_t start_ticks = 0;
  std::string log_path;
  // Once ended: the exit code, or 128 + the signal that killed it.
  std::optional<int> exit_code;
  // The last output (at most 8 KiB); from GetJob() while it runs, its
  // output so far.
  std::string log_tail;
  // Why it FAILED or was CANCELLED, for people.
  std::string failure_reason;
  std::optional<absl::Time> start_time;
  std::optional<absl::Time> end_time;
};

// A replica as the scheduler recorded it before a restart.
struct RecordedReplica {
  ReplicaSpec spec;
  pid_t pid = 0;
  uint64_t start_ticks = 0;
  std::string address;
  int restarts = 0;
};

// A job the scheduler recorded as RUNNING before a restart.
struct RecordedJob {
  JobSpec spec;
  pid_t pid = 0;
  uint64_t start_ticks = 0;
  std::optional<absl::Time> start_time;
};

// Receives every status change, in order.
struct ExecutorObserver {
  std::function<void(const ReplicaStatus&)> on_replica;
  std::function<void(const JobStatus&)> on_job;
};

class Executor {
 public:
  virtual ~Executor() = default;

  // Starts a replica (STARTING at once). INVALID_ARGUMENT for a bad spec;
  // ALREADY_EXISTS while a replica of that name is not STOPPED (a STOPPED
  // one is replaced).
  virtual absl::Status StartReplica(const ReplicaSpec& spec) = 0;

  // DRAINING at once, then STOPPED once its process ended; a process still
  // running `drain` + the executor's kill grace later is killed. A FAILED
  // replica waiting for its restart is STOPPED at once. NOT_FOUND for an
  // unknown name; stopping a stopping or STOPPED replica changes nothing.
  virtual absl::Status StopReplica(absl::string_view name,
                                   absl::Duration drain) = 0;

  // Drops a STOPPED replica from the executor's list. FAILED_PRECONDITION
  // while it is not STOPPED.
  virtual absl::Status ForgetReplica(absl::string_view name) = 0;

  // Re-adopts or restarts each recorded replica and follows (or reports the
  // end of) each recorded job (see above); called once, before anything is
  // started. Returns at once; the outcome arrives through the observer.
  // ALREADY_EXISTS (and adopts nothing) when one names a replica or job the
  // executor already runs.
  virtual absl::Status Adopt(const std::vector<RecordedReplica>& replicas,
                             const std::vector<RecordedJob>& jobs) = 0;

  virtual absl::StatusOr<ReplicaStatus> GetReplica(absl::string_view name) = 0;
  virtual std::vector<ReplicaStatus> ListReplicas() = 0;

  // Runs a job (RUNNING, or FAILED at once when its binary cannot be run).
  // INVALID_ARGUMENT for a bad spec; ALREADY_EXISTS for a known name.
  virtual absl::Status StartJob(const JobSpec& spec) = 0;

  // Stops a running job: CANCELLED once it ended (SIGTERM, SIGKILL after the
  // kill grace). NOT_FOUND for an unknown name; an ended job stays as it is.
  virtual absl::Status CancelJob(absl::string_view name) = 0;

  // Drops an ended job. FAILED_PRECONDITION while it runs.
  virtual absl::Status ForgetJob(absl::string_view name) = 0;

  virtual absl::StatusOr<JobStatus> GetJob(absl::string_view name) = 0;
  virtual std::vector<JobStatus> ListJobs() = 0;
};

}  // namespace hangar::scheduler

#endif  // HANGAR_SERVICES_SCHEDULER_EXECUTOR_H_
