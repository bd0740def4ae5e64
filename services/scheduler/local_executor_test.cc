// LocalExecutor with real processes: hangar-runner replicas on a generated
// tiny model (READY only with the right identity, kill -9 restarts, a runner
// that exits at once backs off and is FAILED with its log tail, stop drains,
// nothing survives the executor, adoption without duplicates) and jobs
// (exit codes, log tails, timeouts, cancel, missing binaries).
#include "services/scheduler/local_executor.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/testing/child_process.h"
#include "common/testing/fake_clock.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "engine/tiny_model.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hangar/v1/runner.grpc.pb.h"

namespace hangar::scheduler {
namespace {

using ::hangar::testing::FakeClock;
using ::hangar::testing::IsOk;
using ::hangar::testing::MakeTempDir;
using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Processes (zombies included) whose parent is this test.
std::vector<pid_t> Children() {
  std::vector<pid_t> children;
  DIR* dir = opendir("/proc");
  while (dirent* entry = readdir(dir)) {
    int pid;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
    std::string line;
    if (!std::getline(stat, line)) continue;
    size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::vector<std::string> fields =
        absl::StrSplit(line.substr(close + 2), ' ');
    int ppid;
    if (fields.size() > 1 && absl::SimpleAtoi(fields[1], &ppid) &&
        ppid == getpid()) {
      children.push_back(pid);
    }
  }
  closedir(dir);
  return children;
}

bool Alive(pid_t pid) { return pid > 0 && kill(pid, 0) == 0; }

// Everything the executor reported, in order.
class Recorder {
 public:
  ExecutorObserver Observer() {
    return {.on_replica =
                [this](const ReplicaStatus& status) {
                  absl::MutexLock lock(&mu_);
                  replicas_.push_back(status);
                },
            .on_job =
                [this](const JobStatus& status) {
                  absl::MutexLock lock(&mu_);
                  jobs_.push_back(status);
                }};
  }

  // Waits until a reported status of replica `name` satisfies `predicate`
  // (looking at reports from index `from` on); returns it.
  std::optional<ReplicaStatus> WaitReplica(
      const std::string& name,
      const std::function<bool(const ReplicaStatus&)>& predicate,
      absl::Duration timeout = absl::Seconds(60)) {
    std::optional<ReplicaStatus> found;
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const ReplicaStatus& status : replicas_) {
        if (status.spec.name == name && predicate(status)) {
          found = status;
          return true;
        }
      }
      return false;
    };
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
    return found;
  }

  std::optional<JobStatus> WaitJobEnded(
      const std::string& name, absl::Duration timeout = absl::Seconds(30)) {
    std::optional<JobStatus> found;
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const JobStatus& status : jobs_) {
        if (status.spec.name == name && status.state != JobState::kRunning) {
          found = status;
          return true;
        }
      }
      return false;
    };
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
    return found;
  }

  // The states reported for `name`, in order.
  std::vector<ReplicaState> States(const std::string& name) {
    absl::MutexLock lock(&mu_);
    std::vector<ReplicaState> states;
    for (const ReplicaStatus& status : replicas_) {
      if (status.spec.name == name &&
          (states.empty() || states.back() != status.state)) {
        states.push_back(status.state);
      }
    }
    return states;
  }

  // Distinct runner pids reported for `name`.
  std::vector<pid_t> Pids(const std::string& name) {
    absl::MutexLock lock(&mu_);
    std::vector<pid_t> pids;
    for (const ReplicaStatus& status : replicas_) {
      if (status.spec.name == name && status.pid > 0 &&
          std::find(pids.begin(), pids.end(), status.pid) == pids.end()) {
        pids.push_back(status.pid);
      }
    }
    return pids;
  }

 private:
  absl::Mutex mu_;
  std::vector<ReplicaStatus> replicas_ ABSL_GUARDED_BY(mu_);
  std::vector<JobStatus> jobs_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<v1::RunnerInfo> Info(const std::string& address) {
  auto stub = v1::RunnerService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  v1::RunnerInfo info;
  grpc::Status status = stub->Info(&context, {}, &info);
  if (!status.ok()) return absl::UnavailableError(status.error_message());
  return info;
}

bool IsReady(const ReplicaStatus& s) { return s.state == ReplicaState::kReady; }

class LocalExecutorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_dir_ = new std::string(MakeTempDir("executor-model"));
    ASSERT_THAT(engine::WriteTinyModel({}, *model_dir_), IsOk());
  }
  static void TearDownTestSuite() { delete model_dir_; }

  LocalExecutor::Options BaseOptions() {
    return {.runner_path = HANGAR_RUNNER_PATH,
            .runner_args = {"--metrics_port=-1"},
            .wrapper_path = HANGAR_EXEC_WRAPPER_PATH,
            .start_timeout = absl::Seconds(60),
            .restart_backoff_initial = absl::Milliseconds(50),
            .restart_backoff_max = absl::Milliseconds(400),
            .kill_grace = absl::Seconds(2),
            .observer = recorder_.Observer()};
  }

  static ReplicaSpec Spec(const std::string& name) {
    return {
        .name = name,
        .deployment = "chat",
        .revision = 3,
        .artifact_path = *model_dir_,
        .threads = 1,
        .max_batch = 2,
        .sampling = {.temperature = 0.5f, .stop_sequences = {"a,b", "\n\n"}},
        .assignment = {.node = "local-0", .gpus = {0}}};
  }

  static std::string* model_dir_;
  Recorder recorder_;
};

std::string* LocalExecutorTest::model_dir_ = nullptr;

TEST_F(LocalExecutorTest, ReplicaIsReadyWithItsIdentityAndStopsByDraining) {
  auto executor = LocalExecutor::Create(BaseOptions());
  ASSERT_THAT(executor, IsOk());
  ASSERT_THAT((*executor)->StartReplica(Spec("chat-r3-0")), IsOk());
  EXPECT_THAT(
      (*executor)->StartReplica(Spec("chat-r3-0")),
      StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("chat-r3-0")));

  std::optional<ReplicaStatus> ready =
      recorder_.WaitReplica("chat-r3-0", IsReady);
  ASSERT_TRUE(ready.has_value())
      << (*executor)->GetReplica("chat-r3-0")->last_error;
  EXPECT_THAT(ready->address, StartsWith("127.0.0.1:"));
  EXPECT_EQ(ready->restarts, 0);
  EXPECT_TRUE(ready->ready_time.has_value());
  auto info = Info(ready->address);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->replica(), "chat-r3-0");
  EXPECT_EQ(info->deployment(), "chat");
  EXPECT_EQ(info->revision(), 3);
  EXPECT_EQ(info->batch_capacity(), 2);
  EXPECT_EQ(info->threads(), 1);
  EXPECT_FLOAT_EQ(info->sampling().temperature(), 0.5f);
  EXPECT_THAT(info->sampling().stop_sequences(),
              ::testing::ElementsAre("a,b", "\n\n"));

  const pid_t pid = ready->pid;
  ASSERT_TRUE(Alive(pid));
  // While it runs, its output so far (the runner prints its line just
  // after it turned SERVING).
  EXPECT_TRUE(::hangar::testing::WaitUntil(
      [&] {
        return absl::StrContains((*executor)->GetReplica("chat-r3-0")->log_tail,
                                 "runner: serving");
      },
      absl::Seconds(10)));
  EXPECT_EQ(getpgid(pid), pid);  // its own process group
  ASSERT_THAT((*executor)->StopReplica("chat-r3-0", absl::Seconds(5)), IsOk());
  auto stopped = recorder_.WaitReplica("chat-r3-0", [](const ReplicaStatus& s) {
    return s.state == ReplicaState::kStopped;
  });
  ASSERT_TRUE(stopped.has_value());
  EXPECT_EQ(stopped->last_exit_code, 0);  // the runner drained and exited
  EXPECT_FALSE(Alive(pid));
  EXPECT_THAT(
      recorder_.States("chat-r3-0"),
      ::testing::ElementsAre(ReplicaState::kStarting, ReplicaState::kReady,
                             ReplicaState::kDraining, ReplicaState::kStopped));
  EXPECT_TRUE(Children().empty());
  EXPECT_THAT((*executor)->ForgetReplica("chat-r3-0"), IsOk());
  EXPECT_THAT((*executor)->GetReplica("chat-r3-0"),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST_F(LocalExecutorTest, KilledRunnerIsReportedAndRestarted) {
  auto executor = LocalExecutor::Create(BaseOptions());
  ASSERT_THAT(executor, IsOk());
  ASSERT_THAT((*executor)->StartReplica(Spec("chat-r3-1")), IsOk());
  auto first = recorder_.WaitReplica("chat-r3-1", IsReady);
  ASSERT_TRUE(first.has_value());
  // Its start-up line is in the tail before it is killed.
  ASSERT_TRUE(::hangar::testing::WaitUntil(
      [&] {
        return absl::StrContains((*executor)->GetReplica("chat-r3-1")->log_tail,
                                 "runner: serving");
      },
      absl::Seconds(10)));
  ASSERT_EQ(kill(first->pid, SIGKILL), 0);

  auto failed = recorder_.WaitReplica("chat-r3-1", [](const ReplicaStatus& s) {
    return s.state == ReplicaState::kFailed;
  });
  ASSERT_TRUE(failed.has_value());
  EXPECT_EQ(failed->last_exit_code, 128 + SIGKILL);
  EXPECT_THAT(failed->last_error, HasSubstr("killed by signal 9"));
  EXPECT_THAT(failed->log_tail, HasSubstr("runner: serving"));
  auto again = recorder_.WaitReplica("chat-r3-1", [](const ReplicaStatus& s) {
    return s.state == ReplicaState::kReady && s.restarts == 1;
  });
  ASSERT_TRUE(again.has_value());
  EXPECT_NE(again->pid, first->pid);
  auto info = Info(again->address);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->replica(), "chat-r3-1");
  EXPECT_EQ(Children(), std::vector<pid_t>{again->pid});
}

TEST_F(LocalExecutorTest, RunnerThatExitsAtOnceBacksOffAndIsFailed) {
  FakeClock clock;
  LocalExecutor::Options options = BaseOptions();
  options.clock = &clock;
  options.restart_backoff_initial = absl::Seconds(1);
  options.restart_backoff_max = absl::Seconds(3);
  auto executor = LocalExecutor::Create(options);
  ASSERT_THAT(executor, IsOk());
  ReplicaSpec spec = Spec("chat-r3-2");
  spec.artifact_path = "/no/such/model";
  ASSERT_THAT((*executor)->StartReplica(spec), IsOk());

  // Each failure waits twice as long as the one before (up to the cap), and
  // only the fake clock moves it on.
  const absl::Duration expected_delays[] = {absl::Seconds(1), absl::Seconds(2),
                                            absl::Seconds(3), absl::Seconds(3)};
  for (int restarts = 0; restarts < 4; ++restarts) {
    auto failed =
        recorder_.WaitReplica("chat-r3-2", [&](const ReplicaStatus& s) {
          return s.state == ReplicaState::kFailed && s.restarts == restarts;
        });
    ASSERT_TRUE(failed.has_value()) << "restart " << restarts;
    EXPECT_EQ(failed->last_exit_code, 1);
    EXPECT_THAT(failed->log_tail, HasSubstr("runner: "));
    EXPECT_THAT(failed->log_tail, HasSubstr("/no/such/model"));
    EXPECT_THAT(failed->last_error, HasSubstr("exited with code 1"));
    EXPECT_THAT(failed->last_error,
                HasSubstr(absl::StrCat(
                    "restarting in ",
                    absl::FormatDuration(expected_delays[restarts]))));
    ASSERT_TRUE(failed->next_restart_time.has_value());
    EXPECT_EQ(*failed->next_restart_time,
              clock.Now() + expected_delays[restarts]);
    EXPECT_EQ((*executor)->GetReplica("chat-r3-2")->restarts, restarts);
    clock.Advance(expected_delays[restarts]);
  }
  // A stop while it waits to restart ends it at once.
  auto failed = recorder_.WaitReplica("chat-r3-2", [](const ReplicaStatus& s) {
    return s.state == ReplicaState::kFailed && s.restarts == 4;
  });
  ASSERT_TRUE(failed.has_value());
  ASSERT_THAT((*executor)->StopReplica("chat-r3-2", absl::Seconds(1)), IsOk());
  EXPECT_EQ((*executor)->GetReplica("chat-r3-2")->state,
            ReplicaState::kStopped);
  EXPECT_TRUE(Children().empty());
}

TEST_F(LocalExecutorTest, DestroyingTheExecutorLeavesNoProcess) {
  std::vector<pid_t> pids;
  {
    auto executor = LocalExecutor::Create(BaseOptions());
    ASSERT_THAT(executor, IsOk());
    ASSERT_THAT((*executor)->StartReplica(Spec("chat-r3-3")), IsOk());
    ASSERT_THAT((*executor)->StartJob({.name = "job-sleep",
                                       .argv = {"/bin/sh", "-c", "sleep 60"}}),
                IsOk());
    auto ready = recorder_.WaitReplica("chat-r3-3", IsReady);
    ASSERT_TRUE(ready.has_value());
    pids = Children();
    EXPECT_EQ(pids.size(), 2u);
  }
  EXPECT_TRUE(Children().empty());
  for (pid_t pid : pids) EXPECT_FALSE(Alive(pid)) << pid;
}

TEST_F(LocalExecutorTest, AdoptsALiveReplicaAndRestartsAWrongOne) {
  RecordedReplica live;
  const std::string state_dir = MakeTempDir("executor-state");
  {
    LocalExecutor::Options options = BaseOptions();
    options.run_dir = state_dir;
    options.detach_children = true;
    options.leave_children_on_destroy = true;
    auto first = LocalExecutor::Create(options);
    ASSERT_THAT(first, IsOk());
    ASSERT_THAT((*first)->StartReplica(Spec("chat-r3-4")), IsOk());
    auto ready = recorder_.WaitReplica("chat-r3-4", IsReady);
    ASSERT_TRUE(ready.has_value());
    live = {.spec = ready->spec,
            .pid = ready->pid,
            .address = ready->address,
            .restarts = 2};
  }
  // The first executor is gone; its runner is not.
  ASSERT_TRUE(Alive(live.pid));
  ASSERT_EQ(Children(), std::vector<pid_t>{live.pid});

  // A record whose address answers as another replica (and whose pid is
  // not a runner of it) must get a runner of its own.
  RecordedReplica wrong = {
      .spec = Spec("chat-r3-5"), .pid = live.pid, .address = live.address};
  Recorder second_recorder;
  LocalExecutor::Options options = BaseOptions();
  options.run_dir = state_dir;
  options.detach_children = true;
  options.observer = second_recorder.Observer();
  auto second = LocalExecutor::Create(options);
  ASSERT_THAT(second, IsOk());
  ASSERT_THAT((*second)->Adopt({live, wrong}, {}), IsOk());
  EXPECT_THAT(
      (*second)->Adopt({live}, {}),
      StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("chat-r3-4")));

  auto adopted = second_recorder.WaitReplica("chat-r3-4", IsReady);
  ASSERT_TRUE(adopted.has_value());
  EXPECT_EQ(adopted->pid, live.pid);
  EXPECT_EQ(adopted->address, live.address);
  EXPECT_EQ(adopted->restarts, 2);
  EXPECT_EQ(second_recorder.Pids("chat-r3-4"), std::vector<pid_t>{live.pid});

  auto restarted = second_recorder.WaitReplica("chat-r3-5", IsReady);
  ASSERT_TRUE(restarted.has_value());
  EXPECT_NE(restarted->pid, live.pid);
  EXPECT_NE(restarted->address, live.address);
  EXPECT_EQ(restarted->restarts, 1);
  auto info = Info(restarted->address);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->replica(), "chat-r3-5");
  EXPECT_EQ(Children().size(), 2u);  // no duplicate of chat-r3-4

  // The adopted runner is watched: its death is noticed and it is replaced.
  ASSERT_EQ(kill(live.pid, SIGKILL), 0);
  auto replaced =
      second_recorder.WaitReplica("chat-r3-4", [](const ReplicaStatus& s) {
        return s.state == ReplicaState::kReady && s.restarts == 3;
      });
  ASSERT_TRUE(replaced.has_value());
  EXPECT_NE(replaced->pid, live.pid);

  second->reset();
  EXPECT_TRUE(Children().empty());
}

TEST_F(LocalExecutorTest, StopWhileStartingEndsStoppedWithNoProcess) {
  auto executor = LocalExecutor::Create(BaseOptions());
  ASSERT_THAT(executor, IsOk());
  for (int i = 0; i < 3; ++i) {
    const std::string name = absl::StrCat("chat-r3-1", i);
    ASSERT_THAT((*executor)->StartReplica(Spec(name)), IsOk());
    ASSERT_THAT((*executor)->StopReplica(name, absl::Seconds(1)), IsOk());
    auto stopped = recorder_.WaitReplica(name, [](const ReplicaStatus& s) {
      return s.state == ReplicaState::kStopped;
    });
    ASSERT_TRUE(stopped.has_value()) << name;
    EXPECT_EQ(stopped->pid, 0);
    // Stopping again changes nothing; starting again replaces it.
    EXPECT_THAT((*executor)->StopReplica(name, absl::Seconds(1)), IsOk());
  }
  EXPECT_TRUE(Children().empty());
  ASSERT_THAT((*executor)->StartReplica(Spec("chat-r3-10")), IsOk());
  auto ready = recorder_.WaitReplica("chat-r3-10", IsReady);
  ASSERT_TRUE(ready.has_value());
  EXPECT_EQ(ready->restarts, 0);
}

TEST_F(LocalExecutorTest, HungRunnerIsKilledAndRestarted) {
  LocalExecutor::Options options = BaseOptions();
  options.health_interval = absl::Milliseconds(100);
  options.probe_rpc_timeout = absl::Milliseconds(200);
  options.health_failure_threshold = 3;
  auto executor = LocalExecutor::Create(options);
  ASSERT_THAT(executor, IsOk());
  ASSERT_THAT((*executor)->StartReplica(Spec("chat-r3-6")), IsOk());
  auto first = recorder_.WaitReplica("chat-r3-6", IsReady);
  ASSERT_TRUE(first.has_value());
  // Stopped, it holds its port but answers nothing.
  ASSERT_EQ(kill(first->pid, SIGSTOP), 0);
  auto failed = recorder_.WaitReplica("chat-r3-6", [](const ReplicaStatus& s) {
    return s.state == ReplicaState::kFailed;
  });
  ASSERT_TRUE(failed.has_value());
  EXPECT_THAT(failed->last_error,
              HasSubstr("hung: health check failed 3 times in a row"));
  EXPECT_EQ(failed->last_exit_code, 128 + SIGKILL);
  auto again = recorder_.WaitReplica("chat-r3-6", [](const ReplicaStatus& s) {
    return s.state == ReplicaState::kReady && s.restarts == 1;
  });
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(Alive(first->pid));
  EXPECT_EQ(Children(), std::vector<pid_t>{again->pid});
}

// Whether `pid` is gone (or a zombie nobody reaped yet: it no longer runs).
bool Gone(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return true;
  size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() &&
         line[close + 2] == 'Z';
}

TEST_F(LocalExecutorTest, KillNineOfTheSchedulerTakesItsChildrenWithIt) {
  const std::string pid_file = MakeTempDir("executor-helper") + "/pids";
  auto helper = ::hangar::testing::ChildProcess::Start(
      {HANGAR_EXECUTOR_HELPER_PATH, HANGAR_RUNNER_PATH,
       HANGAR_EXEC_WRAPPER_PATH, *model_dir_, pid_file});
  ASSERT_THAT(helper, IsOk());
  // Another process: nothing to wait on but its file.
  ASSERT_TRUE(::hangar::testing::WaitUntil(
      [&] { return access(pid_file.c_str(), R_OK) == 0; }, absl::Seconds(60)))
      << (*helper)->Output();
  std::ifstream in(pid_file);
  pid_t runner_pid = 0, job_pid = 0;
  in >> runner_pid >> job_pid;
  ASSERT_GT(runner_pid, 0);
  ASSERT_GT(job_pid, 0);
  ASSERT_FALSE(Gone(runner_pid));
  ASSERT_FALSE(Gone(job_pid));

  ASSERT_TRUE((*helper)->Signal(SIGKILL));
  EXPECT_THAT((*helper)->Wait(absl::Seconds(30)),
              ::hangar::testing::IsOkAndHolds(128 + SIGKILL));
  // The parent-death signal killed both; nothing is left running.
  EXPECT_TRUE(::hangar::testing::WaitUntil([&] { return Gone(runner_pid); },
                                           absl::Seconds(10)));
  EXPECT_TRUE(::hangar::testing::WaitUntil([&] { return Gone(job_pid); },
                                           absl::Seconds(10)));
}

// Processes (not zombies) whose command line names `dir`: what an executor
// on that state directory started and has not ended.
std::vector<pid_t> ProcessesOf(const std::string& dir) {
  std::vector<pid_t> pids;
  DIR* proc = opendir("/proc");
  while (dirent* entry = readdir(proc)) {
    int pid;
    if (!absl::SimpleAtoi(entry->d_name, &pid) || pid == getpid()) continue;
    std::ifstream in(absl::StrCat("/proc/", pid, "/cmdline"));
    std::string text((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    if (absl::StrContains(text, dir + "/run/") && !Gone(pid)) {
      pids.push_back(pid);
    }
  }
  closedir(proc);
  std::sort(pids.begin(), pids.end());
  return pids;
}

// detach_children: a scheduler killed with SIGKILL leaves its runners and
// jobs running; the next executor on the same state directory re-adopts the
// recorded ones (same pids, READY again, nothing started twice), follows an
// adopted job to its end (exit status from the wrapper's file), reports a
// job that ended meanwhile, kills the process no record claims, and stops
// everything when destroyed.
TEST_F(LocalExecutorTest, DetachedChildrenSurviveKillNineAndAreAdopted) {
  const std::string state_dir =
      std::filesystem::path(MakeTempDir("executor-detached"))
          .lexically_normal()
          .string();
  const std::string pid_file = state_dir + "/pids";
  auto helper = ::hangar::testing::ChildProcess::Start(
      {HANGAR_EXECUTOR_HELPER_PATH, HANGAR_RUNNER_PATH,
       HANGAR_EXEC_WRAPPER_PATH, *model_dir_, pid_file, state_dir});
  ASSERT_THAT(helper, IsOk());
  ASSERT_TRUE(::hangar::testing::WaitUntil(
      [&] { return access(pid_file.c_str(), R_OK) == 0; }, absl::Seconds(60)))
      << (*helper)->Output();
  pid_t keep = 0, orphan = 0, job_wait = 0, job_quick = 0;
  {
    std::ifstream in(pid_file);
    in >> keep >> orphan >> job_wait >> job_quick;
  }
  ASSERT_GT(job_quick, 0);
  ASSERT_TRUE((*helper)->Signal(SIGKILL));
  EXPECT_THAT((*helper)->Wait(absl::Seconds(30)),
              ::hangar::testing::IsOkAndHolds(128 + SIGKILL));
  // Nothing died with it.
  for (pid_t pid : {keep, orphan, job_wait, job_quick}) {
    EXPECT_FALSE(Gone(pid)) << pid;
  }
  // job-quick ends while no scheduler watches.
  { std::ofstream(state_dir + "/go-quick") << "go"; }
  ASSERT_TRUE(::hangar::testing::WaitUntil([&] { return Gone(job_quick); },
                                           absl::Seconds(10)));

  Recorder second;
  LocalExecutor::Options options = BaseOptions();
  options.run_dir = state_dir;
  options.detach_children = true;
  options.observer = second.Observer();
  auto executor = LocalExecutor::Create(options);
  ASSERT_THAT(executor, IsOk());
  ReplicaSpec keep_spec = {.name = "keep-r1-0",
                           .deployment = "keep",
                           .revision = 1,
                           .artifact_path = *model_dir_};
  // The record predates the start (pid 0): the process is found by its
  // command line all the same.
  ASSERT_THAT(
      (*executor)->Adopt(
          {{.spec = keep_spec, .pid = 0}},
          {{.spec = {.name = "job-wait", .argv = {"/bin/sh"}}, .pid = job_wait},
           {.spec = {.name = "job-quick", .argv = {"/bin/sh"}},
            .pid = job_quick}}),
      IsOk());
  auto adopted = second.WaitReplica("keep-r1-0", IsReady);
  ASSERT_TRUE(adopted.has_value());
  EXPECT_EQ(adopted->pid, keep);
  EXPECT_GT(adopted->start_ticks, 0u);
  EXPECT_EQ(adopted->log_path, state_dir + "/logs/keep-r1-0.log");
  EXPECT_EQ(second.Pids("keep-r1-0"), std::vector<pid_t>{keep});
  auto info = Info(adopted->address);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->replica(), "keep-r1-0");
  // The orphan is killed.
  EXPECT_TRUE(::hangar::testing::WaitUntil([&] { return Gone(orphan); },
                                           absl::Seconds(10)));

  auto quick = second.WaitJobEnded("job-quick");
  ASSERT_TRUE(quick.has_value());
  EXPECT_EQ(quick->state, JobState::kFailed);
  EXPECT_EQ(quick->exit_code, 3);
  EXPECT_THAT(quick->failure_reason, HasSubstr("exited with code 3"));
  EXPECT_EQ(quick->log_tail, "started\nfinished\n");

  ASSERT_EQ((*executor)->GetJob("job-wait")->state, JobState::kRunning);
  EXPECT_EQ((*executor)->GetJob("job-wait")->pid, job_wait);
  { std::ofstream(state_dir + "/go-wait") << "go"; }
  auto wait = second.WaitJobEnded("job-wait");
  ASSERT_TRUE(wait.has_value());
  EXPECT_EQ(wait->state, JobState::kFailed);
  EXPECT_EQ(wait->exit_code, 7);  // not our child: from the exit file
  EXPECT_EQ(wait->log_tail, "started\nfinished\n");
  EXPECT_EQ(ProcessesOf(state_dir), std::vector<pid_t>{keep});
  // Exit files stay until the jobs are forgotten (the scheduler forgets a
  // job once it stored how it ended).
  auto exit_files = [&] {
    int count = 0;
    for (const auto& entry :
         std::filesystem::directory_iterator(state_dir + "/run")) {
      if (entry.path().extension() == ".exit") ++count;
    }
    return count;
  };
  EXPECT_EQ(exit_files(), 2);
  ASSERT_THAT((*executor)->ForgetJob("job-wait"), IsOk());
  ASSERT_THAT((*executor)->ForgetJob("job-quick"), IsOk());
  EXPECT_EQ(exit_files(), 0);

  executor->reset();  // stops the adopted runner too
  EXPECT_TRUE(::hangar::testing::WaitUntil([&] { return Gone(keep); },
                                           absl::Seconds(10)));
  EXPECT_TRUE(ProcessesOf(state_dir).empty());
}

// Logs go to <run_dir>/logs/<name>.log, capped by rotation to .log.1.
TEST_F(LocalExecutorTest, LogsAreFilesCappedByRotation) {
  const std::string state_dir =
      std::filesystem::path(MakeTempDir("executor-logs"))
          .lexically_normal()
          .string();
  LocalExecutor::Options options = BaseOptions();
  options.run_dir = state_dir;
  options.log_max_bytes = 4096;
  options.log_check_interval = absl::Milliseconds(20);
  auto executor = LocalExecutor::Create(options);
  ASSERT_THAT(executor, IsOk());
  // Writes 100 KiB, then waits until its log was rotated.
  const std::string log = state_dir + "/logs/chatty.log";
  ASSERT_THAT((*executor)->StartJob(
                  {.name = "chatty",
                   .argv = {"/bin/sh", "-c",
                            absl::StrCat(
                                "head -c 102400 /dev/zero | tr '\\0' x; "
                                "while [ ! -e ",
                                log, ".1 ]; do sleep 0.02; done; echo done")}}),
              IsOk());
  EXPECT_EQ((*executor)->GetJob("chatty")->log_path, log);
  auto ended = recorder_.WaitJobEnded("chatty");
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->state, JobState::kSucceeded);
  struct stat info;
  ASSERT_EQ(stat(log.c_str(), &info), 0);
  EXPECT_LT(info.st_size, 4096);  // truncated; "done" came after
  ASSERT_EQ(stat((log + ".1").c_str(), &info), 0);
  EXPECT_GE(info.st_size, 102400);
  EXPECT_THAT(ended->log_tail, HasSubstr("done\n"));
}

// ---------------------------------------------------------------------------
// Jobs

class LocalExecutorJobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto executor =
        LocalExecutor::Create({.runner_path = HANGAR_RUNNER_PATH,
                               .binary_dirs = {"/no/such/dir", "/bin"},
                               .wrapper_path = HANGAR_EXEC_WRAPPER_PATH,
                               .kill_grace = absl::Seconds(2),
                               .observer = recorder_.Observer()});
    ASSERT_THAT(executor, IsOk());
    executor_ = std::move(executor).value();
  }

  Recorder recorder_;
  std::unique_ptr<LocalExecutor> executor_;
};

TEST_F(LocalExecutorJobTest, NonZeroExitIsFailedWithTheLogTail) {
  ASSERT_THAT(executor_->StartJob(
                  {.name = "j1", .argv = {"/bin/sh", "-c", "echo hi; exit 3"}}),
              IsOk());
  auto ended = recorder_.WaitJobEnded("j1");
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->state, JobState::kFailed);
  EXPECT_EQ(ended->exit_code, 3);
  EXPECT_EQ(ended->log_tail, "hi\n");
  EXPECT_EQ(ended->failure_reason, "exited with code 3");
  EXPECT_TRUE(ended->end_time.has_value());
  EXPECT_EQ(executor_->GetJob("j1")->state, JobState::kFailed);
}

TEST_F(LocalExecutorJobTest, SuccessWithEnvironmentAndARelativeBinary) {
  ASSERT_THAT(executor_->StartJob({.name = "j2",
                                   .argv = {"sh", "-c", "echo $GREETING"},
                                   .env = {"GREETING=hello"},
                                   .assignment = {.gpus = {1, 2}}}),
              IsOk());
  auto ended = recorder_.WaitJobEnded("j2");
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->state, JobState::kSucceeded);
  EXPECT_EQ(ended->exit_code, 0);
  EXPECT_EQ(ended->log_tail, "hello\n");
  EXPECT_EQ(ended->failure_reason, "");

  ASSERT_THAT(
      executor_->StartJob({.name = "j2-gpus",
                           .argv = {"sh", "-c", "echo $CUDA_VISIBLE_DEVICES"},
                           .assignment = {.gpus = {1, 2}}}),
      IsOk());
  auto gpus = recorder_.WaitJobEnded("j2-gpus");
  ASSERT_TRUE(gpus.has_value());
  EXPECT_EQ(gpus->log_tail, "1,2\n");
}

TEST_F(LocalExecutorJobTest, TimeoutIsFailedNamingIt) {
  ASSERT_THAT(executor_->StartJob({.name = "j3",
                                   .argv = {"/bin/sleep", "60"},
                                   .timeout = absl::Milliseconds(200)}),
              IsOk());
  auto ended = recorder_.WaitJobEnded("j3");
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->state, JobState::kFailed);
  EXPECT_THAT(ended->failure_reason, StartsWith("timed out after 200ms"));
  EXPECT_EQ(ended->exit_code, 128 + SIGTERM);
  EXPECT_TRUE(Children().empty());
}

TEST_F(LocalExecutorJobTest, CancelIsCancelled) {
  ASSERT_THAT(executor_->StartJob({.name = "j4", .argv = {"/bin/sleep", "60"}}),
              IsOk());
  EXPECT_EQ(executor_->GetJob("j4")->state, JobState::kRunning);
  EXPECT_GT(executor_->GetJob("j4")->pid, 0);
  EXPECT_THAT(executor_->ForgetJob("j4"),
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  ASSERT_THAT(executor_->CancelJob("j4"), IsOk());
  auto ended = recorder_.WaitJobEnded("j4");
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->state, JobState::kCancelled);
  EXPECT_THAT(ended->failure_reason, HasSubstr("cancelled"));
  EXPECT_TRUE(Children().empty());
  EXPECT_THAT(executor_->ForgetJob("j4"), IsOk());
  EXPECT_THAT(executor_->CancelJob("j4"),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST_F(LocalExecutorJobTest, MissingBinaryIsAFailedJobNamingIt) {
  ASSERT_THAT(executor_->StartJob({.name = "j5", .argv = {"/no/such/tool"}}),
              IsOk());
  auto ended = recorder_.WaitJobEnded("j5");
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->state, JobState::kFailed);
  EXPECT_EQ(ended->failure_reason, "argv[0]: no such file: /no/such/tool");
  EXPECT_FALSE(ended->exit_code.has_value());

  ASSERT_THAT(executor_->StartJob({.name = "j6", .argv = {"no-such-tool"}}),
              IsOk());
  ended = recorder_.WaitJobEnded("j6");
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->state, JobState::kFailed);
  EXPECT_EQ(ended->failure_reason,
            "argv[0]: no such file: no-such-tool (looked in /no/such/dir, "
            "/bin)");
}

TEST_F(LocalExecutorJobTest, BadSpecsAreRefused) {
  EXPECT_THAT(executor_->StartJob({.name = "j7", .argv = {}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("argv")));
  EXPECT_THAT(executor_->StartJob({.name = "bad name", .argv = {"/bin/true"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")));
  EXPECT_THAT(
      executor_->StartJob({.name = "j8",
                           .argv = {"/bin/true"},
                           .timeout = absl::ZeroDuration()}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("timeout")));
  EXPECT_THAT(executor_->StartJob(
                  {.name = "j9", .argv = {"/bin/true"}, .env = {"NOEQUALS"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("env")));
  ASSERT_THAT(executor_->StartJob({.name = "j10", .argv = {"/bin/true"}}),
              IsOk());
  EXPECT_THAT(executor_->StartJob({.name = "j10", .argv = {"/bin/true"}}),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("j10")));
  EXPECT_THAT(
      executor_->StartReplica({.name = "r", .deployment = "d"}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("artifact_path")));
  EXPECT_THAT(executor_->StopReplica("nope", absl::Seconds(1)),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST(LocalExecutorOptionsTest, CreateValidatesOptions) {
  EXPECT_THAT(
      LocalExecutor::Create({.runner_path = "/no/such/runner"}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("runner_path")));
  EXPECT_THAT(
      LocalExecutor::Create({.runner_path = HANGAR_RUNNER_PATH,
                             .restart_backoff_initial = absl::Seconds(10),
                             .restart_backoff_max = absl::Seconds(1)}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("restart_backoff_max")));
  EXPECT_THAT(
      LocalExecutor::Create({.runner_path = HANGAR_RUNNER_PATH,
                             .start_timeout = absl::ZeroDuration()}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("start_timeout")));
  EXPECT_THAT(LocalExecutor::Create(
                  {.runner_path = HANGAR_RUNNER_PATH, .clock = nullptr}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("clock")));
  EXPECT_THAT(
      LocalExecutor::Create({.runner_path = HANGAR_RUNNER_PATH,
                             .wrapper_path = "/no/such/wrapper"}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("wrapper_path")));
  EXPECT_THAT(LocalExecutor::Create({.runner_path = HANGAR_RUNNER_PATH,
                                     .wrapper_path = HANGAR_EXEC_WRAPPER_PATH,
                                     .detach_children = true}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("detach_children")));
  EXPECT_THAT(LocalExecutor::Create({.runner_path = HANGAR_RUNNER_PATH,
                                     .wrapper_path = HANGAR_EXEC_WRAPPER_PATH,
                                     .run_dir = MakeTempDir("executor-options"),
                                     .leave_children_on_destroy = true}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("leave_children_on_destroy")));
  EXPECT_THAT(
      LocalExecutor::Create({.runner_path = HANGAR_RUNNER_PATH,
                             .wrapper_path = HANGAR_EXEC_WRAPPER_PATH,
                             .log_max_bytes = 10}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("log_max_bytes")));
}

}  // namespace
}  // namespace hangar::scheduler
