#include "common/process/process_monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

extern char** environ;

namespace hangar {
namespace {

constexpr size_t kMaxLogTailBytes = 1 << 20;

// glibc 2.36 declares pidfd_open() without C linkage in C++; the system call
// is used directly.
int PidfdOpen(pid_t pid) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
}

ExitStatus FromWaitStatus(int status) {
  ExitStatus exit;
  if (WIFEXITED(status)) {
    exit.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    exit.signal = WTERMSIG(status);
  }
  return exit;
}

absl::Status ExecError(const std::string& path, int error) {
  std::string message = absl::StrCat(path, ": ", strerror(error));
  if (error == ENOENT) return absl::NotFoundError(message);
  if (error == EACCES || error == EPERM) {
    return absl::PermissionDeniedError(message);
  }
  return absl::InternalError(message);
}

// The environment of this process with `extra` ("K=V") added or replaced.
std::vector<std::string> MergedEnvironment(
    const std::vector<std::string>& extra) {
  std::vector<std::string> merged;
  auto overridden = [&](absl::string_view entry) {
    size_t eq = entry.find('=');
    absl::string_view key = entry.substr(0, eq);
    for (const std::string& e : extra) {
      if (absl::string_view(e).substr(0, e.find('=')) == key) return true;
    }
    return false;
  };
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (!overridden(*entry)) merged.emplace_back(*entry);
  }
  merged.insert(merged.end(), extra.begin(), extra.end());
  return merged;
}

}  // namespace

int ExitStatus::code() const {
  if (!known) return -1;
  return signal != 0 ? 128 + signal : exit_code;
}

std::string ExitStatus::ToString() const {
  if (!known) return "exit status unknown";
  if (signal != 0) {
    return absl::StrCat("killed by signal ", signal, " (", strsignal(signal),
                        ")");
  }
  return absl::StrCat("exited with code ", exit_code);
}

void LogTail::Append(const char* data, size_t size) {
  if (capacity_ == 0) return;
  if (size >= capacity_) {
    text_.assign(data + size - capacity_, capacity_);
    return;
  }
  text_.append(data, size);
  if (text_.size() > capacity_) text_.erase(0, text_.size() - capacity_);
}

absl::StatusOr<std::unique_ptr<ProcessMonitor>> ProcessMonitor::Create(
    Options options) {
  if (options.log_tail_bytes > kMaxLogTailBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("log_tail_bytes: must be in [0, ", kMaxLogTailBytes,
                     "]; was ", options.log_tail_bytes));
  }
  std::unique_ptr<ProcessMonitor> monitor(
      new ProcessMonitor(std::move(options)));
  monitor->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (monitor->wake_fd_ < 0) {
    return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  }
  monitor->thread_ = std::thread([m = monitor.get()] { m->Loop(); });
  return monitor;
}

ProcessMonitor::ProcessMonitor(Options options)
    : options_(std::move(options)) {}

ProcessMonitor::~ProcessMonitor() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  Wake();
  if (thread_.joinable()) thread_.join();
  // The thread has exited; this is the only thread touching processes_.
  absl::MutexLock lock(&mu_);
  for (SpawnRequest* request : spawn_requests_) {
    request->result = absl::FailedPreconditionError("monitor is stopping");
    request->done = true;
  }
  for (auto& [pid, process] : processes_) {
    if (process.kill_on_destroy) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      if (process.child) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
      } else if (process.pidfd >= 0) {
        // Not our child: wait (bounded) until the kernel says it is gone.
        pollfd fd{.fd = process.pidfd, .events = POLLIN, .revents = 0};
        poll(&fd, 1, 5000);
        // Reaps it if it is a child of this process after all.
        int status;
        waitpid(pid, &status, WNOHANG);
      }
    }
    if (process.pidfd >= 0) close(process.pidfd);
    if (process.output_fd >= 0) close(process.output_fd);
  }
  processes_.clear();
  if (wake_fd_ >= 0) close(wake_fd_);
}

void ProcessMonitor::Wake() {
  uint64_t one = 1;
  ssize_t ignored = write(wake_fd_, &one, sizeof(one));
  (void)ignored;
}

absl::StatusOr<pid_t> ProcessMonitor::Spawn(const SpawnOptions& options,
                                            ExitCallback on_exit) {
  if (options.argv.empty() || options.argv[0].empty()) {
    return absl::InvalidArgumentError("argv: must name a binary; was empty");
  }
  if (std::this_thread::get_id() == thread_.get_id()) {
    return SpawnOnThread(options, std::move(on_exit));
  }
  SpawnRequest request{.options = &options, .on_exit = std::move(on_exit)};
  absl::MutexLock lock(&mu_);
  if (stopping_) {
    return absl::FailedPreconditionError("monitor is stopping");
  }
  spawn_requests_.push_back(&request);
  Wake();
  mu_.Await(absl::Condition(&request.done));
  return request.result;
}

absl::StatusOr<pid_t> ProcessMonitor::SpawnOnThread(const SpawnOptions& options,
                                                    ExitCallback on_exit) {
  // Everything the child needs is prepared before fork(): after it, in a
  // multithreaded process, the child may only make async-signal-safe calls.
  std::vector<std::string> args = options.argv;
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::vector<std::string> env = MergedEnvironment(options.env);
  std::vector<char*> envp;
  for (std::string& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);

  int output[2];
  if (pipe2(output, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", strerror(errno)));
  }
  int exec_error[2];
  if (pipe2(exec_error, O_CLOEXEC) != 0) {
    close(output[0]);
    close(output[1]);
    return absl::InternalError(absl::StrCat("pipe2: ", strerror(errno)));
  }
  int dev_null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = getpid();
  const bool die_with_parent = !options.outlive_monitor;

  pid_t pid = fork();
  if (pid == 0) {
    // Child.
    setpgid(0, 0);
    if (die_with_parent) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // the parent already died
    }
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    for (int s = 1; s < NSIG; ++s) signal(s, SIG_DFL);
    if (dev_null >= 0) dup2(dev_null, STDIN_FILENO);
    dup2(output[1], STDOUT_FILENO);
    dup2(output[1], STDERR_FILENO);
    // Nothing else this process holds leaks into the child.
    close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    execve(argv[0], argv.data(), envp.data());
    int error = errno;
    ssize_t ignored = write(exec_error[1], &error, sizeof(error));
    (void)ignored;
    _exit(127);
  }
  int fork_errno = errno;
  close(output[1]);
  close(exec_error[1]);
  if (dev_null >= 0) close(dev_null);
  if (pid < 0) {
    close(output[0]);
    close(exec_error[0]);
    return absl::InternalError(absl::StrCat("fork: ", strerror(fork_errno)));
  }
  setpgid(pid, pid);  // also here, so that it holds before Signal() runs

  int error = 0;
  ssize_t got;
  do {
    got = read(exec_error[0], &error, sizeof(error));
  } while (got < 0 && errno == EINTR);
  close(exec_error[0]);
  if (got == sizeof(error)) {
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    close(output[0]);
    return ExecError(options.argv[0], error);
  }

  int pidfd = PidfdOpen(pid);
  if (pidfd < 0) {
    int open_errno = errno;
    kill(-pid, SIGKILL);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    close(output[0]);
    return absl::InternalError(
        absl::StrCat("pidfd_open: ", strerror(open_errno)));
  }
  fcntl(output[0], F_SETFL, fcntl(output[0], F_GETFL) | O_NONBLOCK);

  absl::MutexLock lock(&mu_);
  Process& process = processes_[pid];
  process.pid = pid;
  process.pidfd = pidfd;
  process.output_fd = output[0];
  process.child = true;
  process.kill_on_destroy = !options.outlive_monitor;
  process.on_exit = std::move(on_exit);
  process.tail = std::make_unique<hangar::LogTail>(options_.log_tail_bytes);
  return pid;
}

absl::Status ProcessMonitor::Watch(pid_t pid, bool kill_on_destroy,
                                   ExitCallback on_exit) {
  int pidfd = PidfdOpen(pid);
  if (pidfd < 0) {
    return absl::NotFoundError(
        absl::StrCat("process ", pid, ": ", strerror(errno)));
  }
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      close(pidfd);
      return absl::FailedPreconditionError("monitor is stopping");
    }
    if (processes_.contains(pid)) {
      close(pidfd);
      return absl::AlreadyExistsError(
          absl::StrCat("process ", pid, ": already followed"));
    }
    Process& process = processes_[pid];
    process.pid = pid;
    process.pidfd = pidfd;
    process.child = false;
    process.kill_on_destroy = kill_on_destroy;
    process.on_exit = std::move(on_exit);
    process.tail = std::make_unique<hangar::LogTail>(0);
  }
  Wake();
  return absl::OkStatus();
}

bool ProcessMonitor::Signal(pid_t pid, int signal_number) {
  absl::MutexLock lock(&mu_);
  if (!processes_.contains(pid)) return false;
  // The group first; a watched process may not lead its own group.
  if (kill(-pid, signal_number) == 0) return true;
  return kill(pid, signal_number) == 0;
}

std::string ProcessMonitor::LogTail(pid_t pid) const {
  absl::MutexLock lock(&mu_);
  auto it = processes_.find(pid);
  if (it == processes_.end()) return "";
  return it->second.tail->text();
}

int ProcessMonitor::running() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(processes_.size());
}

void ProcessMonitor::DrainOutputLocked(Process& process) {
  if (process.output_fd < 0) return;
  char buffer[4096];
  while (true) {
    ssize_t got = read(process.output_fd, buffer, sizeof(buffer));
    if (got > 0) {
      process.tail->Append(buffer, static_cast<size_t>(got));
      continue;
    }
    if (got < 0 && errno == EINTR) continue;
    if (got == 0) {  // EOF: every writer closed it
      close(process.output_fd);
      process.output_fd = -1;
    }
    return;  // EAGAIN or an error
  }
}

void ProcessMonitor::Reap(pid_t pid) {
  ExitStatus status;
  ExitCallback on_exit;
  std::string tail;
  {
    absl::MutexLock lock(&mu_);
    auto it = processes_.find(pid);
    if (it == processes_.end()) return;
    Process& process = it->second;
    if (process.child) {
      int raw = 0;
      pid_t got;
      do {
        got = waitpid(pid, &raw, 0);
      } while (got < 0 && errno == EINTR);
      status = got == pid ? FromWaitStatus(raw) : ExitStatus{.known = false};
    } else {
      // Not ours to reap, unless it happens to be a child of this process
      // (a runner a previous executor in this process left running).
      int raw = 0;
      pid_t got = waitpid(pid, &raw, WNOHANG);
      status = got == pid ? FromWaitStatus(raw) : ExitStatus{.known = false};
    }
    DrainOutputLocked(process);
    if (process.output_fd >= 0) close(process.output_fd);
    close(process.pidfd);
    on_exit = std::move(process.on_exit);
    tail = process.tail->text();
    processes_.erase(it);
  }
  if (on_exit) on_exit(pid, status, std::move(tail));
}

void ProcessMonitor::Loop() {
  std::vector<pollfd> fds;
  // What each pollfd after the first is: a pid and whether it is the pidfd.
  std::vector<std::pair<pid_t, bool>> owners;
  while (true) {
    std::deque<SpawnRequest*> requests;
    fds.clear();
    owners.clear();
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      requests.swap(spawn_requests_);
    }
    for (SpawnRequest* request : requests) {
      absl::StatusOr<pid_t> result =
          SpawnOnThread(*request->options, std::move(request->on_exit));
      absl::MutexLock lock(&mu_);
      request->result = std::move(result);
      request->done = true;
    }
    {
      absl::MutexLock lock(&mu_);
      if (!spawn_requests_.empty()) continue;
      fds.push_back({.fd = wake_fd_, .events = POLLIN, .revents = 0});
      for (auto& [pid, process] : processes_) {
        fds.push_back({.fd = process.pidfd, .events = POLLIN, .revents = 0});
        owners.push_back({pid, true});
        if (process.output_fd >= 0) {
          fds.push_back(
              {.fd = process.output_fd, .events = POLLIN, .revents = 0});
          owners.push_back({pid, false});
        }
      }
    }
    int ready = poll(fds.data(), fds.size(), -1);
    if (ready < 0) continue;  // EINTR
    if (fds[0].revents != 0) {
      uint64_t count;
      ssize_t ignored = read(wake_fd_, &count, sizeof(count));
      (void)ignored;
    }
    std::vector<pid_t> ended;
    {
      absl::MutexLock lock(&mu_);
      for (size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        auto [pid, is_pidfd] = owners[i - 1];
        auto it = processes_.find(pid);
        if (it == processes_.end()) continue;
        if (is_pidfd) {
          ended.push_back(pid);
        } else {
          DrainOutputLocked(it->second);
        }
      }
    }
    for (pid_t pid : ended) Reap(pid);
  }
}

}  // namespace hangar
