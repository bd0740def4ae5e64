#include "common/testing/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/util/file.h"

extern char** environ;

namespace hangar::testing {

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::vector<std::string>& argv,
    const std::vector<std::string>& environment) {
  if (argv.empty()) return absl::InvalidArgumentError("argv: empty");
  std::unique_ptr<ChildProcess> child(new ChildProcess());
  const char* tmp = getenv("TMPDIR");
  std::string pattern =
      absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/hangar-child-XXXXXX");
  int output_fd = mkstemp(pattern.data());
  if (output_fd < 0) return absl::InternalError("mkstemp failed");
  child->output_path_ = pattern;

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, output_fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, output_fd, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                   O_RDONLY, 0);

  std::vector<std::string> env_storage;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    env_storage.emplace_back(*entry);
  }
  env_storage.insert(env_storage.end(), environment.begin(), environment.end());
  std::vector<char*> envp;
  for (std::string& entry : env_storage) envp.push_back(entry.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> argvp;
  for (std::string& arg : args) argvp.push_back(arg.data());
  argvp.push_back(nullptr);

  int error = posix_spawn(&child->pid_, argvp[0], &actions, nullptr,
                          argvp.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(output_fd);
  if (error != 0) {
    return absl::InternalError(
        absl::StrCat("cannot start ", argv[0], ": ", strerror(error)));
  }
  return child;
}

ChildProcess::~ChildProcess() {
  if (Running()) {
    Signal(SIGKILL);
    Wait(absl::Seconds(30)).IgnoreError();
  }
  if (!output_path_.empty()) unlink(output_path_.c_str());
}

bool ChildProcess::Signal(int signal_number) {
  return pid_ > 0 && exit_code_ < 0 && kill(pid_, signal_number) == 0;
}

bool ChildProcess::Running() {
  if (pid_ <= 0 || exit_code_ >= 0) return false;
  int status = 0;
  pid_t result = waitpid(pid_, &status, WNOHANG);
  if (result == 0) return true;
  if (result == pid_) {
    exit_code_ =
        WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  return false;
}

absl::StatusOr<int> ChildProcess::Wait(absl::Duration timeout) {
  if (!WaitUntil([this] { return !Running(); }, timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat("process ", pid_, " still running after ",
                     absl::FormatDuration(timeout)));
  }
  return exit_code_;
}

std::string ChildProcess::Output() const {
  return ReadFileToString(output_path_).value_or("");
}

bool WaitUntil(const std::function<bool()>& condition, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

}  // namespace hangar::testing
