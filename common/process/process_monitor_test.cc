// ProcessMonitor with real children (/bin/sh): exit codes and signals, the
// log tail, exec failures as errors, process groups, Watch() of a process it
// did not start, and no child left after destruction.
#include "common/process/process_monitor.h"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/testing/child_process.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar {
namespace {

using ::hangar::testing::IsOk;
using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;

// Processes (zombies included) whose parent is this test.
int CountChildren() {
  int count = 0;
  DIR* dir = opendir("/proc");
  while (dirent* entry = readdir(dir)) {
    int pid;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    std::ifstream stat(std::string("/proc/") + entry->d_name + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // pid (comm) state ppid ...: comm may hold spaces; split after ')'.
    size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::vector<std::string> fields =
        absl::StrSplit(line.substr(close + 2), ' ');
    int ppid;
    if (fields.size() > 1 && absl::SimpleAtoi(fields[1], &ppid) &&
        ppid == getpid()) {
      ++count;
    }
  }
  closedir(dir);
  return count;
}

bool Alive(pid_t pid) { return kill(pid, 0) == 0; }

// Collects one exit.
struct ExitRecorder {
  absl::Mutex mu;
  std::optional<ExitStatus> status ABSL_GUARDED_BY(mu);
  std::string tail ABSL_GUARDED_BY(mu);

  ProcessMonitor::ExitCallback Callback() {
    return [this](pid_t, const ExitStatus& s, std::string t) {
      absl::MutexLock lock(&mu);
      status = s;
      tail = std::move(t);
    };
  }
  bool Wait(absl::Duration timeout = absl::Seconds(30)) {
    absl::MutexLock lock(&mu);
    return mu.AwaitWithTimeout(
        absl::Condition(
            +[](std::optional<ExitStatus>* s) { return s->has_value(); },
            &status),
        timeout);
  }
};

TEST(ProcessMonitorTest, ReportsExitCodeAndLogTail) {
  auto monitor = ProcessMonitor::Create({});
  ASSERT_THAT(monitor, IsOk());
  ExitRecorder recorder;
  auto pid = (*monitor)->Spawn(
      {.argv = {"/bin/sh", "-c", "echo hi; echo oops >&2; exit 3"}},
      recorder.Callback());
  ASSERT_THAT(pid, IsOk());
  ASSERT_TRUE(recorder.Wait());
  absl::MutexLock lock(&recorder.mu);
  EXPECT_EQ(recorder.status->exit_code, 3);
  EXPECT_EQ(recorder.status->code(), 3);
  EXPECT_FALSE(recorder.status->success());
  EXPECT_EQ(recorder.status->ToString(), "exited with code 3");
  EXPECT_EQ(recorder.tail, "hi\noops\n");
}

TEST(ProcessMonitorTest, EnvironmentIsAdded) {
  auto monitor = ProcessMonitor::Create({});
  ASSERT_THAT(monitor, IsOk());
  ExitRecorder recorder;
  ASSERT_THAT((*monitor)->Spawn({.argv = {"/bin/sh", "-c", "echo $GREETING"},
                                 .env = {"GREETING=hello there"}},
                                recorder.Callback()),
              IsOk());
  ASSERT_TRUE(recorder.Wait());
  absl::MutexLock lock(&recorder.mu);
  EXPECT_TRUE(recorder.status->success());
  EXPECT_EQ(recorder.tail, "hello there\n");
}

TEST(ProcessMonitorTest, LogTailKeepsTheLastBytes) {
  auto monitor = ProcessMonitor::Create({.log_tail_bytes = 16});
  ASSERT_THAT(monitor, IsOk());
  ExitRecorder recorder;
  ASSERT_THAT(
      (*monitor)->Spawn({.argv = {"/bin/sh", "-c",
                                  "i=0; while [ $i -lt 2000 ]; do echo "
                                  "line$i; i=$((i+1)); done; echo END"}},
                        recorder.Callback()),
      IsOk());
  ASSERT_TRUE(recorder.Wait());
  absl::MutexLock lock(&recorder.mu);
  EXPECT_EQ(recorder.tail, "98\nline1999\nEND\n");
}

TEST(ProcessMonitorTest, MissingBinaryIsAnErrorNamingIt) {
  auto monitor = ProcessMonitor::Create({});
  ASSERT_THAT(monitor, IsOk());
  EXPECT_THAT((*monitor)->Spawn({.argv = {"/no/such/binary"}}, nullptr),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("/no/such/binary: No such file")));
  EXPECT_THAT((*monitor)->Spawn({.argv = {}}, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_EQ(CountChildren(), 0);
}

// Whether `pid` no longer runs (gone, or a zombie nobody reaped yet).
bool Gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() &&
         line[close + 2] == 'Z';
}

TEST(ProcessMonitorTest, SignalReachesTheWholeProcessGroup) {
  auto monitor = ProcessMonitor::Create({});
  ASSERT_THAT(monitor, IsOk());
  ExitRecorder recorder;
  // The shell starts a grandchild (sleep), prints its pid and waits for it.
  auto pid =
      (*monitor)->Spawn({.argv = {"/bin/sh", "-c", "sleep 60 & echo $!; wait"}},
                        recorder.Callback());
  ASSERT_THAT(pid, IsOk());
  EXPECT_EQ(getpgid(*pid), *pid);
  int grandchild = 0;
  ASSERT_TRUE(hangar::testing::WaitUntil(
      [&] {
        std::string tail = (*monitor)->LogTail(*pid);
        return absl::EndsWith(tail, "\n") &&
               absl::SimpleAtoi(absl::StripAsciiWhitespace(tail), &grandchild);
      },
      absl::Seconds(10)));
  EXPECT_EQ(getpgid(grandchild), *pid);
  EXPECT_TRUE((*monitor)->Signal(*pid, SIGTERM));
  ASSERT_TRUE(recorder.Wait());
  {
    absl::MutexLock lock(&recorder.mu);
    EXPECT_EQ(recorder.status->signal, SIGTERM);
    EXPECT_EQ(recorder.status->code(), 128 + SIGTERM);
    EXPECT_THAT(recorder.status->ToString(), HasSubstr("killed by signal 15"));
  }
  // The grandchild got it too (it would otherwise sleep for a minute).
  EXPECT_TRUE(hangar::testing::WaitUntil([&] { return Gone(grandchild); },
                                         absl::Seconds(10)));
  EXPECT_FALSE((*monitor)->Signal(*pid, SIGTERM));
}

TEST(ProcessMonitorTest, DestructionKillsAndReapsEveryChild) {
  pid_t first, second;
  {
    auto monitor = ProcessMonitor::Create({});
    ASSERT_THAT(monitor, IsOk());
    auto a = (*monitor)->Spawn({.argv = {"/bin/sleep", "60"}}, nullptr);
    auto b = (*monitor)->Spawn({.argv = {"/bin/sleep", "60"}}, nullptr);
    ASSERT_THAT(a, IsOk());
    ASSERT_THAT(b, IsOk());
    first = *a;
    second = *b;
    EXPECT_EQ((*monitor)->running(), 2);
    EXPECT_EQ(CountChildren(), 2);
  }
  EXPECT_FALSE(Alive(first));
  EXPECT_FALSE(Alive(second));
  EXPECT_EQ(CountChildren(), 0);
}

TEST(ProcessMonitorTest, OutliveMonitorLeavesTheChildAndWatchFollowsIt) {
  pid_t pid;
  {
    auto monitor = ProcessMonitor::Create({});
    ASSERT_THAT(monitor, IsOk());
    auto spawned = (*monitor)->Spawn(
        {.argv = {"/bin/sleep", "60"}, .outlive_monitor = true}, nullptr);
    ASSERT_THAT(spawned, IsOk());
    pid = *spawned;
  }
  ASSERT_TRUE(Alive(pid));
  auto monitor = ProcessMonitor::Create({});
  ASSERT_THAT(monitor, IsOk());
  ExitRecorder recorder;
  ASSERT_THAT(
      (*monitor)->Watch(pid, /*kill_on_destroy=*/true, recorder.Callback()),
      IsOk());
  EXPECT_THAT((*monitor)->Watch(pid, true, nullptr),
              StatusIs(absl::StatusCode::kAlreadyExists, ::testing::_));
  EXPECT_TRUE((*monitor)->Signal(pid, SIGKILL));
  ASSERT_TRUE(recorder.Wait());
  absl::MutexLock lock(&recorder.mu);
  // It was a child of this process, so its status could still be read.
  EXPECT_EQ(recorder.status->signal, SIGKILL);
  EXPECT_EQ(CountChildren(), 0);
}

TEST(ProcessMonitorTest, WatchOfNoProcessIsNotFound) {
  auto monitor = ProcessMonitor::Create({});
  ASSERT_THAT(monitor, IsOk());
  EXPECT_THAT((*monitor)->Watch(999999999, true, nullptr),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST(ProcessMonitorTest, ExitCallbackMaySpawn) {
  auto monitor = ProcessMonitor::Create({});
  ASSERT_THAT(monitor, IsOk());
  ExitRecorder second;
  ProcessMonitor* m = monitor->get();
  ASSERT_THAT(m->Spawn({.argv = {"/bin/true"}},
                       [&](pid_t, const ExitStatus&, std::string) {
                         EXPECT_THAT(m->Spawn({.argv = {"/bin/false"}},
                                              second.Callback()),
                                     IsOk());
                       }),
              IsOk());
  ASSERT_TRUE(second.Wait());
  absl::MutexLock lock(&second.mu);
  EXPECT_EQ(second.status->exit_code, 1);
}

TEST(ProcessMonitorTest, RejectsAHugeLogTail) {
  EXPECT_THAT(ProcessMonitor::Create({.log_tail_bytes = size_t{1} << 30}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("log_tail_bytes")));
}

}  // namespace
}  // namespace hangar
