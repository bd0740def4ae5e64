// The scheduler end to end on this host: a real PostgreSQL
// (common/testing/postgres_server.h), real gRPC on loopback, and real
// hangar-runner children on a tiny model. Most cases build SchedulerServer
// in process on port 0; the restart case runs the hangar-scheduler binary,
// kills it with SIGKILL and starts it again, counting runner processes (they
// survive it and are re-adopted).
// Waiting is on a condition with a deadline (stream reads, or polling another
// process's state), never a fixed sleep.
#include <dirent.h>
#include <signal.h>
#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/api/time.h"
#include "common/testing/child_process.h"
#include "common/testing/postgres_server.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "engine/tiny_model.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hangar/v1/scheduler.grpc.pb.h"
#include "services/scheduler/scheduler_server.h"

namespace hangar::scheduler {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

// The runners of `deployment` alive now: pid -> replica name, from
// /proc/*/cmdline ("--replica=<name>" with "--deployment=<deployment>").
std::map<pid_t, std::string> RunnerProcesses(const std::string& deployment) {
  std::map<pid_t, std::string> runners;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return runners;
  while (dirent* entry = readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    std::ifstream file(absl::StrCat("/proc/", pid, "/cmdline"));
    std::string cmdline((std::istreambuf_iterator<char>(file)),
                        std::istreambuf_iterator<char>());
    std::string replica;
    bool ours = false;
    size_t start = 0;
    while (start < cmdline.size()) {
      size_t end = cmdline.find('\0', start);
      if (end == std::string::npos) end = cmdline.size();
      absl::string_view arg(cmdline.data() + start, end - start);
      if (arg == "--deployment=" + deployment) ours = true;
      if (absl::StartsWith(arg, "--replica=")) {
        replica = std::string(arg.substr(10));
      }
      start = end + 1;
    }
    // A zombie has an empty cmdline: only live processes count.
    if (ours) runners[pid] = replica;
  }
  closedir(proc);
  return runners;
}

class RouteWatch {
 public:
  explicit RouteWatch(v1::SchedulerService::Stub* stub) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(5)));
    reader_ = stub->WatchRoutes(&context_, {});
  }
  ~RouteWatch() {
    context_.TryCancel();
    v1::RouteEvent ignored;
    while (reader_->Read(&ignored)) {
    }
    (void)reader_->Finish();
  }

  // Reads events until `predicate(routes)` holds; false at the deadline or
  // when the stream ends.
  bool WaitFor(
      const std::function<bool(const std::map<std::string, v1::Route>&)>&
          predicate) {
    if (predicate(routes_)) return true;
    v1::RouteEvent event;
    while (reader_->Read(&event)) {
      ++events_;
      if (event.kind() == v1::RouteEvent::KIND_SNAPSHOT) {
        routes_.clear();
        ++snapshots_;
      }
      for (const v1::Route& route : event.routes()) {
        const std::string key =
            absl::StrCat(route.deployment(), "/", route.revision());
        if (event.kind() == v1::RouteEvent::KIND_DELETE) {
          routes_.erase(key);
        } else {
          routes_[key] = route;
        }
      }
      if (predicate(routes_)) return true;
    }
    return false;
  }
  int snapshots() const { return snapshots_; }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::RouteEvent>> reader_;
  std::map<std::string, v1::Route> routes_;
  int events_ = 0;
  int snapshots_ = 0;
};

// READY replicas of route `key`.
int ReadyReplicas(const std::map<std::string, v1::Route>& routes,
                  const std::string& key) {
  auto it = routes.find(key);
  if (it == routes.end()) return -1;
  int ready = 0;
  for (const v1::RouteReplica& replica : it->second.replicas()) {
    if (replica.state() == v1::REPLICA_STATE_READY) ++ready;
  }
  return ready;
}

class SchedulerIntegrationTest : public hangar::testing::PostgresTest {
 protected:
  static void SetUpTestSuite() {
    model_dir_ = new std::string(hangar::testing::MakeTempDir("sched-model"));
    ASSERT_OK(engine::WriteTinyModel({}, *model_dir_));
  }
  static void TearDownTestSuite() { delete model_dir_; }

  void SetUp() override {
    PostgresTest::SetUp();
    LocalExecutor::Options executor;
    executor.runner_path = HANGAR_RUNNER_PATH;
    executor.wrapper_path = HANGAR_EXEC_WRAPPER_PATH;
    executor.runner_args = {"--metrics_port=-1"};
    executor.start_timeout = absl::Seconds(60);
    executor.restart_backoff_initial = absl::Milliseconds(100);
    executor.restart_backoff_max = absl::Milliseconds(500);
    executor.kill_grace = absl::Seconds(2);
    executor.runner_drain_timeout = absl::Seconds(1);
    absl::StatusOr<std::unique_ptr<SchedulerServer>> server =
        SchedulerServer::Create(
            {.server = {.name = "scheduler", .port = 0, .metrics_port = -1},
             .db = conninfo(),
             .hardware_config = HANGAR_HARDWARE_CONFIG_PATH,
             .autoscale_period = absl::Milliseconds(200),
             .default_drain = absl::Seconds(1),
             .executor = executor});
    ASSERT_OK(server.status());
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_->address(),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::SchedulerService::NewStub(channel_);
  }
  void TearDown() override { server_.reset(); }

  static v1::ReplicaSetSpec Spec(const std::string& deployment, int min,
                                 int max) {
    v1::ReplicaSetSpec spec;
    spec.set_deployment(deployment);
    spec.set_revision(1);
    spec.set_display_name(deployment);
    spec.set_artifact_path(*model_dir_);
    spec.set_hardware("t4-1x");
    spec.set_min_replicas(min);
    spec.set_max_replicas(max);
    spec.set_inference_batch_size(2);
    spec.set_context_length(64);
    spec.set_threads_per_replica(1);
    spec.set_serving(true);
    return spec;
  }

  grpc::Status Apply(const v1::ReplicaSetSpec& spec, v1::ReplicaSet* out) {
    grpc::ClientContext context;
    v1::ApplyReplicaSetRequest request;
    *request.mutable_spec() = spec;
    return stub_->ApplyReplicaSet(&context, request, out);
  }

  grpc::Status Load(const std::string& deployment, int64_t queued) {
    grpc::ClientContext context;
    v1::ReportLoadRequest request;
    request.set_reporter("gw-test");
    *request.mutable_report_time() = ToProtoTimestamp(absl::Now());
    *request.mutable_ttl() = ToProtoDuration(absl::Seconds(60));
    v1::RevisionLoad* load = request.add_loads();
    load->set_deployment(deployment);
    load->set_revision(1);
    load->set_queued(queued);
    v1::ReportLoadResponse response;
    return stub_->ReportLoad(&context, request, &response);
  }

  int FreeGpus() {
    grpc::ClientContext context;
    v1::GetPoolStatusRequest request;
    request.set_pool("t4");
    v1::PoolStatus status;
    EXPECT_TRUE(stub_->GetPoolStatus(&context, request, &status).ok());
    return status.pool().free_gpus();
  }

  static std::string* model_dir_;
  std::unique_ptr<SchedulerServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::SchedulerService::Stub> stub_;
};

std::string* SchedulerIntegrationTest::model_dir_ = nullptr;

TEST_F(SchedulerIntegrationTest, ReplicaLifecycleThroughRoutes) {
  const int free_before = FreeGpus();
  v1::ReplicaSetSpec spec = Spec("dep-life", 1, 2);
  spec.set_scale_up_delay_seconds(0);
  spec.set_scale_down_delay_seconds(1);
  v1::ReplicaSet set;
  ASSERT_TRUE(Apply(spec, &set).ok());
  ASSERT_THAT(set.replicas(), SizeIs(1));
  EXPECT_EQ(FreeGpus(), free_before - 1);

  // READY with an address, seen through WatchRoutes.
  RouteWatch watch(stub_.get());
  ASSERT_TRUE(watch.WaitFor([](const auto& routes) {
    return ReadyReplicas(routes, "dep-life/1") == 1;
  }));
  EXPECT_EQ(watch.snapshots(), 1);
  ASSERT_THAT(RunnerProcesses("dep-life"), SizeIs(1));

  // The same spec again changes nothing.
  v1::ReplicaSet again;
  ASSERT_TRUE(Apply(spec, &again).ok());
  EXPECT_EQ(again.replicas(0).name(), set.replicas(0).name());
  EXPECT_THAT(RunnerProcesses("dep-life"), SizeIs(1));

  // Load for 2 replicas: scale up (no delay), then back down after 1 s.
  ASSERT_TRUE(Load("dep-life", 4).ok());
  ASSERT_TRUE(watch.WaitFor([](const auto& routes) {
    return ReadyReplicas(routes, "dep-life/1") == 2;
  }));
  EXPECT_THAT(RunnerProcesses("dep-life"), SizeIs(2));
  ASSERT_TRUE(Load("dep-life", 0).ok());
  ASSERT_TRUE(watch.WaitFor([](const auto& routes) {
    auto it = routes.find("dep-life/1");
    return it != routes.end() && it->second.replicas_size() == 1 &&
           it->second.replicas(0).state() == v1::REPLICA_STATE_READY;
  }));
  EXPECT_TRUE(hangar::testing::WaitUntil(
      [] { return RunnerProcesses("dep-life").size() == 1; }));

  // kill -9 of the runner: replaced, the restart counted.
  std::map<pid_t, std::string> runners = RunnerProcesses("dep-life");
  ASSERT_THAT(runners, SizeIs(1));
  const pid_t victim = runners.begin()->first;
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  EXPECT_TRUE(hangar::testing::WaitUntil([&] {
    grpc::ClientContext context;
    v1::GetReplicaSetRequest request;
    request.set_deployment("dep-life");
    request.set_revision(1);
    v1::ReplicaSet now;
    return stub_->GetReplicaSet(&context, request, &now).ok() &&
           now.replicas_size() == 1 && now.replicas(0).restarts() >= 1 &&
           now.replicas(0).state() == v1::REPLICA_STATE_READY;
  }));
  runners = RunnerProcesses("dep-life");
  ASSERT_THAT(runners, SizeIs(1));
  EXPECT_NE(runners.begin()->first, victim);

  // Delete: drained, stopped, processes gone, GPUs free, route deleted.
  {
    grpc::ClientContext context;
    v1::DeleteReplicaSetRequest request;
    request.set_deployment("dep-life");
    request.set_revision(1);
    request.set_drain_seconds(0);
    v1::ReplicaSet deleted;
    ASSERT_TRUE(stub_->DeleteReplicaSet(&context, request, &deleted).ok());
  }
  ASSERT_TRUE(watch.WaitFor(
      [](const auto& routes) { return !routes.contains("dep-life/1"); }));
  EXPECT_TRUE(hangar::testing::WaitUntil(
      [] { return RunnerProcesses("dep-life").empty(); }));
  EXPECT_EQ(FreeGpus(), free_before);
  grpc::ClientContext context;
  v1::GetReplicaSetRequest get;
  get.set_deployment("dep-life");
  get.set_revision(1);
  v1::ReplicaSet gone;
  EXPECT_EQ(stub_->GetReplicaSet(&context, get, &gone).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(SchedulerIntegrationTest, JobFailsWithExitCodeAndLogTail) {
  v1::SubmitJobRequest request;
  request.set_request_id("job-exit-3");
  request.mutable_spec()->add_argv("/bin/sh");
  request.mutable_spec()->add_argv("-c");
  request.mutable_spec()->add_argv("echo hi; exit 3");
  request.mutable_spec()->set_hardware("t4-1x");
  v1::Job job;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->SubmitJob(&context, request, &job).ok());
  }
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  v1::WatchJobRequest watch;
  watch.set_name(job.name());
  auto reader = stub_->WatchJob(&context, watch);
  v1::Job last;
  while (reader->Read(&last)) {
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(last.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(last.exit_code(), 3);
  EXPECT_THAT(last.log_tail(), HasSubstr("hi"));

  // A retry with the same request_id returns the same job.
  grpc::ClientContext retry_context;
  v1::Job retried;
  ASSERT_TRUE(stub_->SubmitJob(&retry_context, request, &retried).ok());
  EXPECT_EQ(retried.name(), job.name());
  EXPECT_EQ(retried.state(), v1::JOB_STATE_FAILED);

  // A missing binary: FAILED with the reason, nothing crashes.
  request.set_request_id("job-missing");
  request.mutable_spec()->clear_argv();
  request.mutable_spec()->add_argv("/no/such/binary");
  grpc::ClientContext missing_context;
  v1::Job missing;
  ASSERT_TRUE(stub_->SubmitJob(&missing_context, request, &missing).ok());
  EXPECT_TRUE(hangar::testing::WaitUntil([&] {
    grpc::ClientContext get_context;
    v1::GetJobRequest get;
    get.set_name(missing.name());
    v1::Job now;
    return stub_->GetJob(&get_context, get, &now).ok() &&
           now.state() == v1::JOB_STATE_FAILED &&
           absl::StrContains(now.failure_reason() + now.log_tail(),
                             "/no/such/binary");
  }));
}

TEST_F(SchedulerIntegrationTest, BadInputsAreClearStatuses) {
  struct Case {
    std::function<void(v1::ReplicaSetSpec&)> mutate;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](auto& s) { s.set_hardware("h100-99x"); }, "spec.hardware"},
      {[](auto& s) { s.set_min_replicas(3); }, "spec.max_replicas"},
      {[](auto& s) {
         s.set_min_replicas(0);
         s.set_max_replicas(0);
       },
       "spec.max_replicas"},
      {[](auto& s) { s.set_scale_up_delay_seconds(-5); },
       "spec.scale_up_delay_seconds"},
      {[](auto& s) { s.set_scale_down_delay_seconds(100000); },
       "spec.scale_down_delay_seconds"},
      {[](auto& s) { s.set_memory_bytes(int64_t{1} << 40); },
       "spec.memory_bytes"},
  };
  for (const Case& c : cases) {
    v1::ReplicaSetSpec spec = Spec("dep-bad", 1, 2);
    c.mutate(spec);
    v1::ReplicaSet ignored;
    grpc::Status status = Apply(spec, &ignored);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.field;
    EXPECT_THAT(status.error_message(), HasSubstr(c.field));
  }
  grpc::ClientContext context;
  v1::ListReplicaSetsResponse list;
  ASSERT_TRUE(stub_->ListReplicaSets(&context, {}, &list).ok());
  EXPECT_THAT(list.replica_sets(), SizeIs(0));
  EXPECT_TRUE(RunnerProcesses("dep-bad").empty());

  grpc::ClientContext hardware_context;
  v1::ListHardwareResponse hardware;
  ASSERT_TRUE(stub_->ListHardware(&hardware_context, {}, &hardware).ok());
  ASSERT_GT(hardware.offerings_size(), 0);
  EXPECT_THAT(hardware.offerings(0).availability(),
              ::testing::MatchesRegex("[0-9]+ of [0-9]+ replicas? fits? now"));
}

TEST_F(SchedulerIntegrationTest, WatchReplicaSetsSnapshotThenChanges) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(90)));
  auto reader = stub_->WatchReplicaSets(&context, {});
  v1::ReplicaSetEvent event;
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.kind(), v1::ReplicaSetEvent::KIND_SNAPSHOT);
  EXPECT_THAT(event.replica_sets(), SizeIs(0));

  v1::ReplicaSet set;
  ASSERT_TRUE(Apply(Spec("dep-watch", 1, 1), &set).ok());
  // Upserts until the replica is READY, then its replica-seconds grow.
  double seconds = 0;
  bool ready = false;
  while (reader->Read(&event)) {
    ASSERT_EQ(event.kind(), v1::ReplicaSetEvent::KIND_UPSERT);
    ASSERT_THAT(event.replica_sets(), SizeIs(1));
    const v1::ReplicaSet& now = event.replica_sets(0);
    ASSERT_THAT(now.replicas(), SizeIs(1));
    if (now.replicas(0).state() == v1::REPLICA_STATE_READY) ready = true;
    if (ready && now.replicas(0).replica_seconds() > 0.5) {
      seconds = now.replicas(0).replica_seconds();
      break;
    }
  }
  EXPECT_TRUE(ready);
  EXPECT_GT(seconds, 0.5);

  grpc::ClientContext delete_context;
  v1::DeleteReplicaSetRequest request;
  request.set_deployment("dep-watch");
  request.set_revision(1);
  request.set_drain_seconds(0);
  v1::ReplicaSet deleted;
  ASSERT_TRUE(stub_->DeleteReplicaSet(&delete_context, request, &deleted).ok());
  bool gone = false;
  while (!gone && reader->Read(&event)) {
    gone = event.kind() == v1::ReplicaSetEvent::KIND_DELETE;
  }
  EXPECT_TRUE(gone);
  EXPECT_EQ(event.replica_sets(0).spec().deployment(), "dep-watch");
  context.TryCancel();
  while (reader->Read(&event)) {
  }
  (void)reader->Finish();
}

TEST_F(SchedulerIntegrationTest, RunnerThatExitsAtOnceIsAFailedReplica) {
  server_.reset();
  LocalExecutor::Options executor;
  executor.runner_path = "/bin/false";
  executor.wrapper_path = HANGAR_EXEC_WRAPPER_PATH;
  executor.restart_backoff_initial = absl::Milliseconds(100);
  executor.restart_backoff_max = absl::Milliseconds(200);
  absl::StatusOr<std::unique_ptr<SchedulerServer>> server =
      SchedulerServer::Create(
          {.server = {.name = "scheduler", .port = 0, .metrics_port = -1},
           .db = conninfo(),
           .hardware_config = HANGAR_HARDWARE_CONFIG_PATH,
           .executor = executor});
  ASSERT_OK(server.status());
  server_ = *std::move(server);
  stub_ = v1::SchedulerService::NewStub(grpc::CreateChannel(
      server_->address(), grpc::InsecureChannelCredentials()));
  v1::ReplicaSet set;
  ASSERT_TRUE(Apply(Spec("dep-false", 1, 1), &set).ok());
  EXPECT_TRUE(hangar::testing::WaitUntil([&] {
    grpc::ClientContext context;
    v1::GetReplicaSetRequest request;
    request.set_deployment("dep-false");
    request.set_revision(1);
    v1::ReplicaSet now;
    return stub_->GetReplicaSet(&context, request, &now).ok() &&
           now.replicas(0).restarts() >= 2 &&
           !now.replicas(0).last_error().empty();
  }));

  // A second server on the port in use fails cleanly.
  absl::StatusOr<std::unique_ptr<SchedulerServer>> clash =
      SchedulerServer::Create({.server = {.name = "scheduler",
                                          .port = server_->port(),
                                          .metrics_port = -1},
                               .db = conninfo(),
                               .hardware_config = HANGAR_HARDWARE_CONFIG_PATH,
                               .executor = executor});
  EXPECT_FALSE(clash.ok());
}

TEST_F(SchedulerIntegrationTest, MalformedHardwareFileExitsTwoNamingTheLine) {
  const std::string dir = hangar::testing::MakeTempDir("sched-hw");
  const std::string path = dir + "/hardware.textproto";
  {
    std::ofstream file(path);
    file << "pools {\n  name: \"t4\"\n  gpus_per_node: 0\n}\n";
  }
  absl::StatusOr<std::unique_ptr<hangar::testing::ChildProcess>> child =
      hangar::testing::ChildProcess::Start(
          {HANGAR_SCHEDULER_PATH, "--port=0", "--metrics_port=-1",
           "--db=" + conninfo(), "--hardware_config=" + path});
  ASSERT_OK(child.status());
  EXPECT_THAT((*child)->Wait(absl::Seconds(30)),
              hangar::testing::IsOkAndHolds(2));
  EXPECT_THAT((*child)->Output(), HasSubstr("hardware.textproto:"));
}

// Processes (zombies excluded) whose command line names `state_dir`'s run/
// folder: every runner and job wrapper a scheduler on it started.
std::vector<pid_t> ChildrenOf(const std::string& state_dir) {
  std::vector<pid_t> pids;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return pids;
  while (dirent* entry = readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    std::ifstream file(absl::StrCat("/proc/", pid, "/cmdline"));
    std::string cmdline((std::istreambuf_iterator<char>(file)),
                        std::istreambuf_iterator<char>());
    if (absl::StrContains(cmdline, state_dir + "/run/")) pids.push_back(pid);
  }
  closedir(proc);
  return pids;
}

// The binary with --state_dir: kill -9 of the scheduler leaves its runners
// and its job running; the restarted scheduler re-adopts them (same pids,
// READY again, no new process, no duplicate) and the job completes
// SUCCEEDED; a runner killed while the scheduler is down is replaced by
// the next start; SIGTERM of the scheduler stops every child.
TEST_F(SchedulerIntegrationTest, KilledSchedulerReadoptsItsChildren) {
  server_.reset();  // Only the binary below serves this database.
  const std::string state_dir =
      std::filesystem::path(hangar::testing::MakeTempDir("sched-state"))
          .lexically_normal()
          .string();
  const std::vector<std::string> argv = {
      HANGAR_SCHEDULER_PATH,
      "--port=0",
      "--metrics_port=-1",
      "--db=" + conninfo(),
      "--hardware_config=" HANGAR_HARDWARE_CONFIG_PATH,
      "--runner_binary=" HANGAR_RUNNER_PATH,
      "--state_dir=" + state_dir,
      "--restart_backoff_initial=100ms",
      "--default_drain=1s"};
  auto start =
      [&]() -> std::pair<std::unique_ptr<hangar::testing::ChildProcess>,
                         std::unique_ptr<v1::SchedulerService::Stub>> {
    absl::StatusOr<std::unique_ptr<hangar::testing::ChildProcess>> child =
        hangar::testing::ChildProcess::Start(argv);
    EXPECT_OK(child.status());
    if (!child.ok()) return {};
    std::string address;
    EXPECT_TRUE(hangar::testing::WaitUntil([&] {
      const std::string output = (*child)->Output();
      const size_t at = output.find("serving on ");
      if (at == std::string::npos) return false;
      const size_t end = output.find(',', at);
      if (end == std::string::npos) return false;
      address = output.substr(at + 11, end - at - 11);
      return true;
    })) << (*child)->Output();
    return {*std::move(child),
            v1::SchedulerService::NewStub(grpc::CreateChannel(
                address, grpc::InsecureChannelCredentials()))};
  };
  auto ready = [](v1::SchedulerService::Stub* stub) {
    grpc::ClientContext context;
    v1::GetReplicaSetRequest request;
    request.set_deployment("dep-restart");
    request.set_revision(1);
    v1::ReplicaSet set;
    if (!stub->GetReplicaSet(&context, request, &set).ok()) return -1;
    return set.ready_replicas();
  };
  auto get_job = [](v1::SchedulerService::Stub* stub, const std::string& name) {
    grpc::ClientContext context;
    v1::GetJobRequest request;
    request.set_name(name);
    v1::Job job;
    if (!stub->GetJob(&context, request, &job).ok()) job.Clear();
    return job;
  };
  auto names = [](const std::map<pid_t, std::string>& runners) {
    std::multiset<std::string> names;
    for (const auto& [pid, name] : runners) names.insert(name);
    return names;
  };
  const std::multiset<std::string> both = {"dep-restart-r1-0",
                                           "dep-restart-r1-1"};

  auto [first, first_stub] = start();
  ASSERT_NE(first, nullptr);
  {
    grpc::ClientContext context;
    v1::ApplyReplicaSetRequest request;
    *request.mutable_spec() = Spec("dep-restart", 2, 2);
    v1::ReplicaSet set;
    ASSERT_TRUE(first_stub->ApplyReplicaSet(&context, request, &set).ok());
  }
  // A job that runs until the test lets it finish.
  const std::string go = state_dir + "/go";
  std::string job_name;
  {
    grpc::ClientContext context;
    v1::SubmitJobRequest request;
    request.set_request_id("restart-job");
    request.mutable_spec()->add_argv("/bin/sh");
    request.mutable_spec()->add_argv("-c");
    request.mutable_spec()->add_argv(
        absl::StrCat("echo started; while [ ! -e ", go,
                     " ]; do sleep 0.02; done; echo finished"));
    request.mutable_spec()->set_hardware("t4-1x");
    v1::Job job;
    ASSERT_TRUE(first_stub->SubmitJob(&context, request, &job).ok());
    ASSERT_EQ(job.state(), v1::JOB_STATE_RUNNING);
    job_name = job.name();
  }
  ASSERT_TRUE(hangar::testing::WaitUntil([&] {
    return ready(first_stub.get()) == 2;
  })) << first->Output();
  const std::map<pid_t, std::string> runners = RunnerProcesses("dep-restart");
  ASSERT_EQ(names(runners), both);
  // Two runners and one job wrapper.
  ASSERT_THAT(ChildrenOf(state_dir), SizeIs(3));
  // The runner's output is in its log file.
  EXPECT_TRUE(hangar::testing::WaitUntil([&] {
    std::ifstream log(state_dir + "/logs/dep-restart-r1-0.log");
    std::string text((std::istreambuf_iterator<char>(log)),
                     std::istreambuf_iterator<char>());
    return absl::StrContains(text, "runner: serving");
  }));

  // 1. kill -9: nothing dies with it; the next start adopts the same
  //    processes, READY again, and the job completes.
  ASSERT_TRUE(first->Signal(SIGKILL));
  ASSERT_OK(first->Wait(absl::Seconds(30)).status());
  EXPECT_EQ(RunnerProcesses("dep-restart"), runners);
  auto [second, second_stub] = start();
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(hangar::testing::WaitUntil([&] {
    return ready(second_stub.get()) == 2;
  })) << second->Output();
  EXPECT_EQ(RunnerProcesses("dep-restart"), runners);  // no new process
  EXPECT_THAT(ChildrenOf(state_dir), SizeIs(3));
  EXPECT_EQ(get_job(second_stub.get(), job_name).state(),
            v1::JOB_STATE_RUNNING);
  {
    v1::PoolStatus pool;
    grpc::ClientContext context;
    v1::GetPoolStatusRequest request;
    request.set_pool("t4");
    ASSERT_TRUE(second_stub->GetPoolStatus(&context, request, &pool).ok());
    // Two replicas and the job hold their GPUs again.
    EXPECT_EQ(pool.pool().free_gpus(),
              pool.pool().gpus_per_node() * pool.pool().node_count() - 3);
  }
  { std::ofstream(go) << "go"; }
  v1::Job done;
  EXPECT_TRUE(hangar::testing::WaitUntil([&] {
    done = get_job(second_stub.get(), job_name);
    return done.state() == v1::JOB_STATE_SUCCEEDED;
  })) << done.DebugString()
      << second->Output();
  EXPECT_EQ(done.exit_code(), 0);
  EXPECT_EQ(done.log_tail(), "started\nfinished\n");

  // 2. kill -9, then one runner dies while no scheduler runs: the next
  //    start adopts the other and replaces the dead one.
  ASSERT_TRUE(second->Signal(SIGKILL));
  ASSERT_OK(second->Wait(absl::Seconds(30)).status());
  const pid_t victim = runners.begin()->first;
  const pid_t survivor = std::next(runners.begin())->first;
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  ASSERT_TRUE(hangar::testing::WaitUntil(
      [&] { return RunnerProcesses("dep-restart").size() == 1; }));
  auto [third, third_stub] = start();
  ASSERT_NE(third, nullptr);
  ASSERT_TRUE(hangar::testing::WaitUntil([&] {
    return ready(third_stub.get()) == 2;
  })) << third->Output();
  const std::map<pid_t, std::string> now = RunnerProcesses("dep-restart");
  EXPECT_EQ(names(now), both);  // one each: no duplicate
  EXPECT_TRUE(now.contains(survivor));
  EXPECT_FALSE(now.contains(victim));
  EXPECT_EQ(now.at(survivor), runners.at(survivor));
  EXPECT_THAT(ChildrenOf(state_dir), SizeIs(2));

  // 3. SIGTERM stops every child.
  ASSERT_TRUE(third->Signal(SIGTERM));
  EXPECT_OK(third->Wait(absl::Seconds(60)).status());
  EXPECT_TRUE(hangar::testing::WaitUntil([&] {
    return ChildrenOf(state_dir).empty();
  })) << ChildrenOf(state_dir).size();
}

}  // namespace
}  // namespace hangar::scheduler
