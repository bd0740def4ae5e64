// LocalExecutor: the embedded Executor — every replica and job is a child
// process on this host (a pool's GPUs are slots; the engine runs on CPU).
//
// A replica is a `hangar-runner` child started with
//   --model=<artifact> --host=127.0.0.1 --port=0 --port_file=<run dir>/...
//   --deployment --revision --replica --threads --max_batch [--max_context]
//   --drain_timeout and the deployment's sampling flags,
// so it binds a free loopback port and writes it to a port file unique to
// that start. It turns READY only when grpc.health.v1 Check answers SERVING
// and RunnerService.Info names the expected deployment, revision and
// replica, so a port reused by another runner is never taken for this one.
// Readiness is probed by clock-driven tasks with exponential backoff
// (probe_interval_initial .. probe_interval_max) until start_timeout, after
// which the runner is killed and counted as a failed start.
//
// A READY runner's health is checked every health_interval; after
// health_failure_threshold failures in a row (or an Info naming another
// replica) it is killed as hung and handled like a runner that died.
//
// A runner that dies is FAILED at once (exit status, log tail, last_error)
// and started again after restart_backoff_initial, doubling on each failure
// up to restart_backoff_max; a replica that stayed READY for
// backoff_reset_after starts over from the initial backoff. A crash loop
// therefore shows as FAILED with the last exit status and log tail between
// ever slower restarts — never hidden, never a busy loop.
//
// Jobs run argv (argv[0] absolute or found in binary_dirs) with the extra
// environment, until they exit or their timeout (SIGTERM, then SIGKILL after
// kill_grace); a binary that cannot be run is a FAILED job naming it.
//
// Processes: all children are forked by one ProcessMonitor thread (see
// common/process/process_monitor.h), each in its own process group, through
// hangar-exec-wrapper (exec_wrapper_main.cc), which sends the child's stdout
// and stderr to <run_dir>/logs/<name>.log (the log tail of a status is read
// from there) and, for a job, records its exit status in
// <run_dir>/run/<name>.<start id>.exit. Log files are capped: every
// log_check_interval a file over log_max_bytes is copied to <name>.log.1
// (replacing the previous one) and truncated (the child appends).
//
// Surviving the scheduler (detach_children, which needs a run_dir that the
// next scheduler uses again — hangar-scheduler sets it when --state_dir is
// given): children get no parent-death signal, so a scheduler killed with
// SIGKILL leaves them running, and the next executor's Adopt() finds them
// by scanning /proc for processes whose command line names this run_dir
// (a runner's --port_file, a job wrapper's --exit_file): a recorded replica
// or job is re-adopted (pid and start time preferred when several match),
// health checks reconnect to the port its port file names, a job's exit is
// noticed through a pidfd and its status read from the exit file; a record
// with no process is restarted (replica) or reported from its exit file
// (job); a process no record claims is killed (an orphan). Without
// detach_children children get the parent-death signal SIGKILL and die
// with this process.
//
// Stopping: the destructor stops every child — SIGTERM to its process
// group, SIGKILL after kill_grace — and waits until each is gone, so a
// scheduler that ends normally (SIGTERM, `make down`) leaves nothing behind.
// Only leave_children_on_destroy (a scheduler upgrade that hands its
// replicas to the next one) leaves them running.
//
// A replica's GPU slots reach its runner (and a job) as
// CUDA_VISIBLE_DEVICES; the built-in engine ignores them.
//
// Threads: one supervisor thread owns every timer (restarts, probes, start
// deadlines, kill deadlines, job timeouts) and waits on the injected Clock
// until the next one is due or something changes; it also delivers the
// observer's callbacks, in order. Readiness probes (blocking gRPC calls with
// a deadline) run as one-shot tasks in a small TaskGroup.
//
//   ASSIGN_OR_RETURN(auto executor, LocalExecutor::Create({
//       .runner_path = "/opt/hangar/bin/hangar-runner",
//       .observer = {.on_replica = [&](const ReplicaStatus& s) { ... }}}));
//   RETURN_IF_ERROR(executor->StartReplica({.name = "dep-a-r1-0", ...}));
#ifndef HANGAR_SERVICES_SCHEDULER_LOCAL_EXECUTOR_H_
#define HANGAR_SERVICES_SCHEDULER_LOCAL_EXECUTOR_H_

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/concurrency/task_group.h"
#include "common/process/process_monitor.h"
#include "common/time/clock.h"
#include "services/scheduler/executor.h"

namespace hangar::scheduler {

class LocalExecutor final : public Executor {
 public:
  struct Options {
    // The hangar-runner binary. Empty: hangar-runner next to this process's
    // binary, else <its dir>/../runner/hangar-runner (the build tree). A
    // path given here must be an executable file.
    std::string runner_path;
    // Extra flags for every runner (e.g. "--metrics_port=-1").
    std::vector<std::string> runner_args;
    // Where a job's relative argv[0] is looked up, in order. Empty: the
    // directory of this process's binary.
    std::vector<std::string> binary_dirs;
    // hangar-exec-wrapper. Empty: next to this process's binary, else
    // <its dir>/../scheduler/hangar-exec-wrapper. Must be executable.
    std::string wrapper_path;
    // State directory: run/ (port and exit files) and logs/. Empty: a fresh
    // temporary directory, removed by the destructor.
    std::string run_dir;
    // Children outlive this process (no parent-death signal) for the next
    // executor on the same run_dir to Adopt(); needs run_dir.
    bool detach_children = false;
    // The destructor leaves children running (needs detach_children).
    bool leave_children_on_destroy = false;
    // A log file over this size is rotated to <name>.log.1, in
    // [1 KiB, 1 GiB]; checked every log_check_interval, in [10ms, 1h].
    int64_t log_max_bytes = 16 << 20;
    absl::Duration log_check_interval = absl::Seconds(10);

    // Longest time from a runner's start to READY, in [1s, 1h].
    absl::Duration start_timeout = absl::Minutes(2);
    // Readiness probing: first delay and cap of its exponential backoff,
    // each in [1ms, 10s], initial <= max.
    absl::Duration probe_interval_initial = absl::Milliseconds(20);
    absl::Duration probe_interval_max = absl::Milliseconds(500);
    // Deadline of each health/Info call, in [10ms, 1m].
    absl::Duration probe_rpc_timeout = absl::Seconds(2);
    // A READY runner's health is checked this often (0: never), in
    // [0, 1h]; `health_failure_threshold` failed checks in a row (in
    // [1, 100]) kill it as hung, and it is restarted like one that died.
    absl::Duration health_interval = absl::Seconds(5);
    int health_failure_threshold = 3;
    // Restart backoff after a runner died: first delay and cap, each in
    // [1ms, 1h], initial <= max.
    absl::Duration restart_backoff_initial = absl::Seconds(1);
    absl::Duration restart_backoff_max = absl::Minutes(1);
    // READY this long resets the backoff to its initial delay, in [0, 1d].
    absl::Duration backoff_reset_after = absl::Minutes(5);
    // The runner's own --drain_timeout (in-flight work after SIGTERM), in
    // [0, 1h].
    absl::Duration runner_drain_timeout = absl::Seconds(30);
    // After SIGTERM (a stop past its drain, a job's timeout or cancel), how
    // long before SIGKILL, in [0, 10m].
    absl::Duration kill_grace = absl::Seconds(5);
    // Bytes of output kept per process, in [0, 1 MiB].
    size_t log_tail_bytes = 8 * 1024;
    // Concurrent readiness probes, in [1, 64].
    int max_probes = 4;

    // Injected dependencies.
    ExecutorObserver observer;
    // Every timer reads it; never null.
    Clock* clock = Clock::Real();
  };

  static absl::StatusOr<std::unique_ptr<LocalExecutor>> Create(Options options);
  // Stops every child (SIGTERM, SIGKILL after kill_grace; or, with
  // leave_children_on_destroy, leaves them) and the supervisor; no observer
  // callback runs after it returns.
  ~LocalExecutor() override;

  absl::Status StartReplica(const ReplicaSpec& spec) override;
  absl::Status StopReplica(absl::string_view name,
                           absl::Duration drain) override;
  absl::Status ForgetReplica(absl::string_view name) override;
  absl::Status Adopt(const std::vector<RecordedReplica>& replicas,
                     const std::vector<RecordedJob>& jobs) override;
  absl::StatusOr<ReplicaStatus> GetReplica(absl::string_view name) override;
  std::vector<ReplicaStatus> ListReplicas() override;

  absl::Status StartJob(const JobSpec& spec) override;
  absl::Status CancelJob(absl::string_view name) override;
  absl::Status ForgetJob(absl::string_view name) override;
  absl::StatusOr<JobStatus> GetJob(absl::string_view name) override;
  std::vector<JobStatus> ListJobs() override;

  // The runner binary in use.
  const std::string& runner_path() const { return options_.runner_path; }
  // The state directory in use (absolute).
  const std::string& run_dir() const { return options_.run_dir; }
  // Where a replica's or job's output goes.
  std::string LogPath(absl::string_view name) const;

  // The command line a replica's runner gets (for tests and logs).
  std::vector<std::string> RunnerArgv(const ReplicaSpec& spec,
                                      const std::string& port_file) const;

  // ---------------------------------------------------------------------
  // Implementation details.
 private:
  enum class Phase {
    kSpawnDue,  // start now (first start, or adoption found nothing)
    kSpawning,  // the supervisor is forking it
    kStarting,  // running, probed until READY
    kReady,
    kBackoff,   // FAILED, restarted at status.next_restart_time
    kDraining,  // SIGTERM sent; SIGKILL at kill_at
    kStopped,
  };
  struct Replica {
    ReplicaStatus status;
    Phase phase = Phase::kSpawnDue;
    // New on every start; exits and probe results of an older one are
    // ignored.
    uint64_t generation = 0;
    std::string port_file;
    absl::Time start_deadline = absl::InfiniteFuture();
    absl::Time next_probe = absl::InfiniteFuture();
    int probe_attempt = 0;
    // Failed health checks in a row while READY.
    int health_failures = 0;
    bool probe_in_flight = false;
    absl::Time kill_at = absl::InfiniteFuture();
    bool killed = false;
    bool stop_requested = false;
    absl::Duration drain;
    int consecutive_failures = 0;
    // Why the supervisor killed it (start timeout, wrong identity).
    std::string kill_reason;
  };
  struct Job {
    JobStatus status;
    std::string exit_file;
    bool spawning = true;
    absl::Time deadline = absl::InfiniteFuture();
    absl::Time kill_at = absl::InfiniteFuture();
    bool term_sent = false;
    bool killed = false;
    bool cancel_requested = false;
    bool timed_out = false;
  };
  struct SpawnWork {
    std::string name;
    uint64_t generation;
    ProcessMonitor::SpawnOptions options;
  };
  // A process of this run_dir found in /proc.
  struct Found {
    pid_t pid = 0;
    uint64_t start_ticks = 0;
    bool job = false;
    std::string name;
    // The runner's --port_file or the wrapper's --exit_file.
    std::string file;
    std::vector<std::string> args;
  };
  struct ProbeWork {
    std::string name;
    uint64_t generation;
    std::string port_file;
    std::string address;
    ReplicaSpec spec;
  };
  enum class ProbeOutcome { kNotYet, kReady, kWrongIdentity };
  struct ProbeResult {
    ProbeOutcome outcome = ProbeOutcome::kNotYet;
    std::string address;
    std::string detail;
  };
  using Notification = std::variant<ReplicaStatus, JobStatus>;

  explicit LocalExecutor(Options options);

  void Loop();
  // The destructor's first half: stops every child and waits (bounded).
  void StopChildren();
  // Every process whose command line names this run_dir.
  std::vector<Found> ScanProcesses() const;
  // The wrapper's command line around `argv`.
  std::vector<std::string> WrapperArgv(
      const std::string& name, const std::string& exit_file,
      const std::vector<std::string>& argv) const;
  // The output of the last start of `name` (after the wrapper's header).
  std::string ReadLogTail(const std::string& name) const;
  // Rotates the log files over log_max_bytes.
  void CapLogs(const std::vector<std::string>& names) const;
  // Unique per start in this run_dir: "<executor id>-<generation>".
  std::string StartId(uint64_t generation) const;
  // Fires due timers; fills the work to do outside the lock; returns the
  // next deadline.
  absl::Time PlanLocked(absl::Time now, std::vector<SpawnWork>& spawns,
                        std::vector<ProbeWork>& probes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplySpawnLocked(const SpawnWork& work, const absl::StatusOr<pid_t>& pid)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SubmitProbe(ProbeWork work);
  ProbeResult Probe(const ProbeWork& work) const;
  void ApplyProbe(const ProbeWork& work, const ProbeResult& result);
  void OnReplicaExit(const std::string& name, uint64_t generation,
                     const ExitStatus& exit, std::string log_tail);
  void OnJobExit(const std::string& name, const ExitStatus& exit);
  // FAILED now, restarted after the backoff.
  void FailLocked(Replica& replica, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NotifyLocked(const Replica& replica) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NotifyLocked(const Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Resolves a job's argv[0]; the error is the job's failure reason.
  absl::StatusOr<std::string> ResolveBinary(const std::string& name) const;

  Options options_;
  bool owns_run_dir_ = false;
  // Distinguishes this executor's file names from an earlier one's.
  std::string executor_id_;
  std::unique_ptr<ProcessMonitor> monitor_;
  std::unique_ptr<TaskGroup> probes_;
  std::thread supervisor_;

  absl::Mutex mu_;  // Protects everything below.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The destructor is stopping every child: nothing new starts.
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_log_check_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Set on every change the supervisor must look at; it clears it.
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, Replica, std::less<>> replicas_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Job, std::less<>> jobs_ ABSL_GUARDED_BY(mu_);
  std::deque<Notification> notifications_ ABSL_GUARDED_BY(mu_);
  // Generations are unique across replicas, so that a probe or exit of a
  // forgotten replica never matches a new one of the same name.
  uint64_t last_generation_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hangar::scheduler

#endif  // HANGAR_SERVICES_SCHEDULER_LOCAL_EXECUTOR_H_
