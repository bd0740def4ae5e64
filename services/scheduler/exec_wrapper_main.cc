// hangar-exec-wrapper: how the LocalExecutor (local_executor.h) starts every
// child, so that a child outlives a scheduler that dies and the next
// scheduler can still read its output and its exit status.
//
//   hangar-exec-wrapper --name=<workload> --log_file=<path>
//       [--exit_file=<path>] -- <program> <args>...
//
// Both modes append one header line to the log file ("--- hangar-exec-wrapper:
// <workload> pid <pid> started <program> at <time>"; the executor's log tail
// starts after the last one) and send the program's stdout and stderr to it
// (O_APPEND, so the executor may copy-and-truncate the file to cap it).
//
//  - Without --exit_file (replicas): the wrapper execs the program in place;
//    the pid the executor knows is the program's, and its exit status is
//    the program's (readable only by its parent).
//  - With --exit_file (jobs): the wrapper forks the program, forwards
//    SIGTERM/SIGINT/SIGHUP/SIGQUIT to it, waits for it and writes
//    "exited <code>" or "killed <signal>" to the exit file (atomically:
//    a temporary file renamed), then ends the same way (the same code, or
//    the same signal raised again). A scheduler that adopted the job after a
//    restart cannot wait for a process that is not its child; it notices the
//    exit through a pidfd and reads the file. The program gets the parent
//    death signal SIGKILL from the wrapper: the two share one fate.
//
// Exit codes of its own: 127 when the program cannot be executed (the reason
// is in the log), 125 for a usage error or a log file that cannot be opened.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace {

constexpr int kUsage = 125;
constexpr int kCannotExec = 127;

volatile sig_atomic_t child_pid = 0;

void Forward(int signal_number) {
  if (child_pid > 0) kill(child_pid, signal_number);
}

bool WriteAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t wrote = write(fd, text.data() + done, text.size() - done);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0) return false;
    done += static_cast<size_t>(wrote);
  }
  return true;
}

std::string Now() {
  char buffer[64];
  time_t now = time(nullptr);
  struct tm utc;
  gmtime_r(&now, &utc);
  strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buffer;
}

// Writes `text` to `path` through a temporary file and a rename.
bool WriteExitFile(const std::string& path, const std::string& text) {
  const std::string temporary = path + ".tmp";
  int fd =
      open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = WriteAll(fd, text) && fsync(fd) == 0;
  ok = close(fd) == 0 && ok;
  return ok && rename(temporary.c_str(), path.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string name;
  std::string log_file;
  std::string exit_file;
  int first = argc;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") {
      first = i + 1;
      break;
    }
    if (arg.rfind("--name=", 0) == 0) {
      name = arg.substr(7);
    } else if (arg.rfind("--log_file=", 0) == 0) {
      log_file = arg.substr(11);
    } else if (arg.rfind("--exit_file=", 0) == 0) {
      exit_file = arg.substr(12);
    } else {
      fprintf(stderr, "hangar-exec-wrapper: unknown argument \"%s\"\n",
              arg.c_str());
      return kUsage;
    }
  }
  if (log_file.empty() || first >= argc) {
    fprintf(stderr,
            "usage: hangar-exec-wrapper --name=<workload> --log_file=<path> "
            "[--exit_file=<path>] -- <program> <args>...\n");
    return kUsage;
  }
  int log =
      open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) {
    fprintf(stderr, "hangar-exec-wrapper: --log_file=%s: %s\n",
            log_file.c_str(), strerror(errno));
    return kUsage;
  }
  WriteAll(log, "--- hangar-exec-wrapper: " + name + " pid " +
                    std::to_string(getpid()) + " started " + argv[first] +
                    " at " + Now() + "\n");
  dup2(log, STDOUT_FILENO);
  dup2(log, STDERR_FILENO);
  close(log);

  if (exit_file.empty()) {
    execv(argv[first], argv + first);
    fprintf(stderr, "hangar-exec-wrapper: cannot execute %s: %s\n", argv[first],
            strerror(errno));
    return kCannotExec;
  }

  // Signals that ask the job to end go to the job; the wrapper stays to
  // record how it ended. Handlers (not SIG_IGN) so that the job, after
  // exec, starts with the default dispositions.
  struct sigaction forward {};
  forward.sa_handler = Forward;
  sigemptyset(&forward.sa_mask);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGQUIT}) {
    sigaction(s, &forward, nullptr);
  }
  const pid_t wrapper = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "hangar-exec-wrapper: fork: %s\n", strerror(errno));
    WriteExitFile(exit_file, "exited 127\n");
    return kCannotExec;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != wrapper) _exit(kCannotExec);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGQUIT}) signal(s, SIG_DFL);
    execv(argv[first], argv + first);
    fprintf(stderr, "hangar-exec-wrapper: cannot execute %s: %s\n", argv[first],
            strerror(errno));
    _exit(kCannotExec);
  }
  child_pid = pid;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      status = kCannotExec << 8;
      break;
    }
  }
  if (WIFSIGNALED(status)) {
    const int signal_number = WTERMSIG(status);
    WriteExitFile(exit_file, "killed " + std::to_string(signal_number) + "\n");
    signal(signal_number, SIG_DFL);
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, signal_number);
    sigprocmask(SIG_UNBLOCK, &unblock, nullptr);
    raise(signal_number);
    return 128 + signal_number;  // a signal whose default is not to end
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : kCannotExec;
  WriteExitFile(exit_file, "exited " + std::to_string(code) + "\n");
  return code;
}
