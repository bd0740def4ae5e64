// ProcessMonitor: production child processes — spawn, watch, signal, reap —
// with one thread for all of them and no orphans.
//
// The scheduler's executor runs every model replica (hangar-runner) and every
// optimization job as a child process through one ProcessMonitor. The
// monitor's single thread forks every child, reads every child's stdout and
// stderr into a bounded log tail (the last `log_tail_bytes`, 8 KiB by
// default), and notices every exit through a pidfd, all in one poll() with no
// timeout: nothing polls on a timer.
//
//   ASSIGN_OR_RETURN(auto monitor, ProcessMonitor::Create({.name = "jobs"}));
//   ASSIGN_OR_RETURN(pid_t pid, monitor->Spawn(
//       {.argv = {"/bin/sh", "-c", "echo hi; exit 3"}},
//       [](pid_t pid, const ExitStatus& status, std::string log_tail) {
//         // status.ToString() == "exited with code 3", log_tail == "hi\n"
//       }));
//   monitor->Signal(pid, SIGTERM);          // the child's whole process group
//
// Guarantees:
//  - Each child leads its own process group (Signal() reaches everything it
//    started) and, unless SpawnOptions::outlive_monitor, gets
//    PR_SET_PDEATHSIG(SIGKILL): if this process dies — even by SIGKILL — the
//    kernel kills the child. The parent-death signal follows the *thread*
//    that forked, which is why every fork happens on the monitor's own
//    thread, alive exactly as long as the monitor.
//  - The destructor SIGKILLs the process group of every child (and adopted
//    process) not marked outlive_monitor, waits until each is gone and reaps
//    it; exit callbacks do not run during destruction.
//  - Spawn() reports a binary that cannot be executed as an error naming
//    argv[0] and errno's text (exec failures travel back through a
//    close-on-exec pipe), never as a child that exits 127.
//  - Watch() follows a process this monitor did not start (a runner left by a
//    previous scheduler): its exit is noticed through a pidfd too; its exit
//    status is unknown unless it happens to be a child of this process.
//  - Exit callbacks run on the monitor's thread, one at a time, after the
//    child is reaped and its remaining output read. They may call Spawn(),
//    Signal() and LogTail() (Spawn() from the monitor's thread forks inline)
//    but must not destroy the monitor.
//
// Thread-safety: every method may be called from any thread.
#ifndef HANGAR_COMMON_PROCESS_PROCESS_MONITOR_H_
#define HANGAR_COMMON_PROCESS_PROCESS_MONITOR_H_

#include <sys/types.h>

#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace hangar {

// How a process ended.
struct ExitStatus {
  // The exit code when it exited normally; -1 otherwise.
  int exit_code = -1;
  // The signal that killed it; 0 when it exited normally.
  int signal = 0;
  // False for a watched process that was not our child (its status cannot
  // be read); exit_code and signal are then meaningless.
  bool known = true;

  // The exit code, or 128 + the signal (the shell's convention); -1 unknown.
  int code() const;
  bool success() const { return known && signal == 0 && exit_code == 0; }
  // "exited with code 3", "killed by signal 9 (Killed)", "exit status unknown".
  std::string ToString() const;
};

// The last `capacity` bytes written to it. Not thread-safe by itself.
class LogTail {
 public:
  explicit LogTail(size_t capacity) : capacity_(capacity) {}
  void Append(const char* data, size_t size);
  const std::string& text() const { return text_; }

 private:
  size_t capacity_;
  std::string text_;
};

class ProcessMonitor {
 public:
  struct Options {
    // Names the monitor's thread in log lines.
    std::string name = "processes";
    // Bytes of each child's combined stdout/stderr kept, in [0, 1 MiB].
    size_t log_tail_bytes = 8 * 1024;
  };

  struct SpawnOptions {
    // argv[0] is the path of the binary (no PATH search). Required.
    std::vector<std::string> argv;
    // "NAME=value" entries added to (and overriding) this process's
    // environment.
    std::vector<std::string> env;
    // When true: no parent-death signal, and the monitor's destructor leaves
    // the child running (for a replica meant to survive a scheduler upgrade
    // and be adopted by the next one).
    bool outlive_monitor = false;
  };

  // Called once per child when it has ended (see the guarantees above).
  using ExitCallback = std::function<void(pid_t pid, const ExitStatus& status,
                                          std::string log_tail)>;

  static absl::StatusOr<std::unique_ptr<ProcessMonitor>> Create(
      Options options);
  ~ProcessMonitor();
  ProcessMonitor(const ProcessMonitor&) = delete;
  ProcessMonitor& operator=(const ProcessMonitor&) = delete;

  // Starts a child; returns its pid (also its process group id) once it has
  // exec'd. INVALID_ARGUMENT for an empty argv; NOT_FOUND /
  // PERMISSION_DENIED / INTERNAL naming argv[0] when it cannot be executed;
  // FAILED_PRECONDITION after destruction began.
  absl::StatusOr<pid_t> Spawn(const SpawnOptions& options,
                              ExitCallback on_exit);

  // Follows `pid`, a process this monitor did not start; `on_exit` runs when
  // it ends. `kill_on_destroy` makes it one of the processes the destructor
  // kills. NOT_FOUND when no such process runs.
  absl::Status Watch(pid_t pid, bool kill_on_destroy, ExitCallback on_exit);

  // Sends `signal_number` to the process group of `pid`, a process spawned or
  // watched here and not yet ended. Returns whether it was sent.
  bool Signal(pid_t pid, int signal_number);

  // What the child wrote last (empty for watched processes).
  std::string LogTail(pid_t pid) const;

  // Processes spawned or watched here that have not ended.
  int running() const;

  // ---------------------------------------------------------------------
  // Implementation details.
 private:
  struct Process {
    pid_t pid = -1;
    int pidfd = -1;
    int output_fd = -1;  // -1 once closed (EOF) or for watched processes
    bool child = true;   // spawned here (waitpid works)
    bool kill_on_destroy = true;
    ExitCallback on_exit;
    std::unique_ptr<hangar::LogTail> tail;
  };
  struct SpawnRequest {
    const SpawnOptions* options;
    ExitCallback on_exit;
    bool done = false;
    absl::StatusOr<pid_t> result = absl::InternalError("not run");
  };

  explicit ProcessMonitor(Options options);

  void Loop();
  // Runs on the monitor's thread.
  absl::StatusOr<pid_t> SpawnOnThread(const SpawnOptions& options,
                                      ExitCallback on_exit);
  void Wake();
  // Reads what `process` has written so far; closes its pipe on EOF.
  void DrainOutputLocked(Process& process) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Handles the exit of `pid` (its pidfd turned readable).
  void Reap(pid_t pid);

  const Options options_;
  int wake_fd_ = -1;  // eventfd that interrupts poll()
  std::thread thread_;

  mutable absl::Mutex mu_;  // Protects everything below.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<pid_t, Process> processes_ ABSL_GUARDED_BY(mu_);
  std::deque<SpawnRequest*> spawn_requests_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hangar

#endif  // HANGAR_COMMON_PROCESS_PROCESS_MONITOR_H_
