// A stand-in scheduler for local_executor_test: it creates a LocalExecutor,
// starts replicas and jobs, writes their pids to <pid file> once every
// replica is READY, then waits to be killed. The test kills it with SIGKILL.
//
//   local_executor_test_helper <runner> <wrapper> <model dir> <pid file>
//       [<state dir>]
//
// Without a state dir (children die with it): one replica and one job
// ("sleeper"); the file holds "<runner pid> <job pid>". With a state dir
// (detach_children): replicas "keep-r1-0" and "orphan-r1-0" and jobs
// "job-wait" and "job-quick", which wait for the files <state dir>/go-wait
// and <state dir>/go-quick and then exit 7 and 3; the file holds
// "<keep pid> <orphan pid> <job-wait pid> <job-quick pid>".
#include <stdio.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/util/file.h"
#include "services/scheduler/local_executor.h"

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    fprintf(stderr,
            "usage: %s <runner> <wrapper> <model dir> <pid file> "
            "[<state dir>]\n",
            argv[0]);
    return 2;
  }
  using hangar::scheduler::LocalExecutor;
  using hangar::scheduler::ReplicaState;
  using hangar::scheduler::ReplicaStatus;
  const bool detached = argc == 6;
  const std::vector<std::string> replicas =
      detached ? std::vector<std::string>{"keep-r1-0", "orphan-r1-0"}
               : std::vector<std::string>{"orphan-r1-0"};
  absl::Mutex mu;
  std::map<std::string, pid_t> ready;
  LocalExecutor::Options options{
      .runner_path = argv[1],
      .runner_args = {"--metrics_port=-1"},
      .wrapper_path = argv[2],
      .observer = {.on_replica = [&](const ReplicaStatus& status) {
        absl::MutexLock lock(&mu);
        if (status.state == ReplicaState::kReady) {
          ready[status.spec.name] = status.pid;
        }
      }}};
  if (detached) {
    options.run_dir = argv[5];
    options.detach_children = true;
  }
  auto executor = LocalExecutor::Create(options);
  if (!executor.ok()) {
    fprintf(stderr, "%s\n", std::string(executor.status().message()).c_str());
    return 1;
  }
  std::vector<std::string> jobs;
  absl::Status started = absl::OkStatus();
  if (detached) {
    const std::string dir = argv[5];
    jobs = {"job-wait", "job-quick"};
    for (const auto& [job, code] : std::vector<std::pair<std::string, int>>{
             {"job-wait", 7}, {"job-quick", 3}}) {
      const std::string go = dir + "/go-" + job.substr(4);
      if (!started.ok()) break;
      started = (*executor)->StartJob(
          {.name = job,
           .argv = {"/bin/sh", "-c",
                    absl::StrCat("echo started; while [ ! -e ", go,
                                 " ]; do sleep 0.02; done; echo finished; "
                                 "exit ",
                                 code)}});
    }
  } else {
    jobs = {"sleeper"};
    started = (*executor)->StartJob(
        {.name = "sleeper", .argv = {"/bin/sleep", "600"}});
  }
  for (const std::string& name : replicas) {
    if (!started.ok()) break;
    started =
        (*executor)->StartReplica({.name = name,
                                   .deployment = name.substr(0, name.find('-')),
                                   .revision = 1,
                                   .artifact_path = argv[3]});
  }
  if (!started.ok()) {
    fprintf(stderr, "%s\n", std::string(started.message()).c_str());
    return 1;
  }
  std::vector<pid_t> pids;
  {
    absl::MutexLock lock(&mu);
    auto all_ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return ready.size() == replicas.size();
    };
    mu.Await(absl::Condition(&all_ready));
    for (const std::string& name : replicas) pids.push_back(ready[name]);
  }
  for (const std::string& job : jobs)
    pids.push_back((*executor)->GetJob(job)->pid);
  std::string temporary = absl::StrCat(argv[4], ".tmp");
  if (!hangar::WriteStringToFile(temporary, absl::StrJoin(pids, " ")).ok() ||
      rename(temporary.c_str(), argv[4]) != 0) {
    return 1;
  }
  while (true) pause();
}
