// A stand-in scheduler for local_executor_test: it creates a LocalExecutor,
// starts one replica and one job, writes "<runner pid> <job pid>" to
// <pid file> once the replica is READY, then waits to be killed. The test
// kills it with SIGKILL and checks that its runner and job died with it.
//
//   local_executor_test_helper <runner path> <model dir> <pid file>
#include <stdio.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/util/file.h"
#include "services/scheduler/local_executor.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s <runner path> <model dir> <pid file>\n",
            argv[0]);
    return 2;
  }
  using hangar::scheduler::LocalExecutor;
  using hangar::scheduler::ReplicaState;
  using hangar::scheduler::ReplicaStatus;
  absl::Notification ready;
  pid_t runner_pid = 0;
  auto executor = LocalExecutor::Create(
      {.runner_path = argv[1],
       .runner_args = {"--metrics_port=-1"},
       .observer = {.on_replica = [&](const ReplicaStatus& status) {
         if (status.state == ReplicaState::kReady && !ready.HasBeenNotified()) {
           runner_pid = status.pid;
           ready.Notify();
         }
       }}});
  if (!executor.ok()) {
    fprintf(stderr, "%s\n", std::string(executor.status().message()).c_str());
    return 1;
  }
  absl::Status started =
      (*executor)->StartJob({.name = "sleeper", .argv = {"/bin/sleep", "600"}});
  if (started.ok()) {
    started = (*executor)->StartReplica({.name = "orphan-r1-0",
                                         .deployment = "orphan",
                                         .revision = 1,
                                         .artifact_path = argv[2]});
  }
  if (!started.ok()) {
    fprintf(stderr, "%s\n", std::string(started.message()).c_str());
    return 1;
  }
  ready.WaitForNotification();
  pid_t job_pid = (*executor)->GetJob("sleeper")->pid;
  std::string temporary = absl::StrCat(argv[3], ".tmp");
  if (!hangar::WriteStringToFile(temporary,
                                 absl::StrCat(runner_pid, " ", job_pid))
           .ok() ||
      rename(temporary.c_str(), argv[3]) != 0) {
    return 1;
  }
  while (true) pause();
}
