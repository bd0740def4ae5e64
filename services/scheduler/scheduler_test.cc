// Unit tests of the Scheduler orchestrator on its fakes: the in-memory store,
// a scripted executor and a FakeClock (the autoscaler's delays and report
// ttls pass by Advance, never by sleeping).
#include "services/scheduler/scheduler.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/api/time.h"
#include "common/testing/fake_clock.h"
#include "common/testing/status_matchers.h"
#include "common/watch/change_notifier.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "services/scheduler/hardware_config.h"
#include "services/scheduler/testing/fake_executor.h"
#include "services/scheduler/testing/in_memory_scheduler_store.h"

namespace hangar::scheduler {
namespace {

using ::hangar::testing::IsOk;
using ::hangar::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAre;

// One node of 4 GPUs.
constexpr char kHardware[] = R"pb(
  pools {
    name: "p"
    gpu_model: "NVIDIA T4"
    gpu_memory_bytes: 17179869184
    gpus_per_node: 4
    node_count: 1
    executor: LOCAL
  }
  offerings {
    id: "p-1x"
    display_name: "P x1"
    pool: "p"
    gpu_count: 1
    hourly_price_usd_micros: 1128000
  }
  offerings {
    id: "p-2x"
    display_name: "P x2"
    pool: "p"
    gpu_count: 2
    hourly_price_usd_micros: 2000000
  }
)pb";

v1::ReplicaSetSpec Spec(const std::string& deployment, int64_t revision,
                        int min, int max,
                        const std::string& hardware = "p-1x") {
  v1::ReplicaSetSpec spec;
  spec.set_deployment(deployment);
  spec.set_revision(revision);
  spec.set_display_name(deployment);
  spec.set_artifact_path("/models/tiny");
  spec.set_hardware(hardware);
  spec.set_min_replicas(min);
  spec.set_max_replicas(max);
  spec.set_inference_batch_size(2);
  spec.set_context_length(128);
  spec.set_threads_per_replica(1);
  spec.set_serving(true);
  return spec;
}

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(); }
  void TearDown() override { scheduler_.reset(); }

  void Start() {
    absl::StatusOr<config::HardwareConfig> hardware =
        ParseHardwareConfig(kHardware, "test");
    ASSERT_OK(hardware.status());
    absl::StatusOr<std::unique_ptr<Scheduler>> scheduler = Scheduler::Create(
        {.hardware = *hardware,
         .autoscale_period = absl::Seconds(1),
         .default_drain = absl::Seconds(5),
         .make_executor = [this](ExecutorObserver observer)
             -> absl::StatusOr<std::unique_ptr<Executor>> {
           auto executor =
               std::make_unique<testing::FakeExecutor>(std::move(observer));
           executor_ = executor.get();
           return std::unique_ptr<Executor>(std::move(executor));
         },
         .store = &store_,
         .notifier = &notifier_,
         .metrics = &metrics_,
         .clock = &clock_});
    ASSERT_OK(scheduler.status());
    scheduler_ = *std::move(scheduler);
  }

  int FreeGpus() {
    absl::StatusOr<v1::PoolStatus> status = scheduler_->GetPoolStatus("p");
    EXPECT_OK(status.status());
    return status.ok() ? status->pool().free_gpus() : -1;
  }

  void Load(const std::string& deployment, int64_t revision, int64_t queued,
            absl::Duration ttl = absl::Seconds(10)) {
    v1::ReportLoadRequest request;
    request.set_reporter("gw-a");
    *request.mutable_report_time() = ToProtoTimestamp(clock_.Now());
    *request.mutable_ttl() = ToProtoDuration(ttl);
    v1::RevisionLoad* load = request.add_loads();
    load->set_deployment(deployment);
    load->set_revision(revision);
    load->set_queued(queued);
    ASSERT_OK(scheduler_->ReportLoad(request));
  }

  // The value of `family`'s series whose label `key` is `value` (-1: none).
  double Metric(const std::string& family, const std::string& key,
                const std::string& value) {
    for (const prometheus::MetricFamily& f : registry_.Collect()) {
      if (f.name != family) continue;
      for (const prometheus::ClientMetric& m : f.metric) {
        for (const prometheus::ClientMetric::Label& label : m.label) {
          if (label.name == key && label.value == value) {
            return f.type == prometheus::MetricType::Counter ? m.counter.value
                                                             : m.gauge.value;
          }
        }
      }
    }
    return -1;
  }

  // Advances the clock by one autoscaler period and waits (real time,
  // bounded) for the loop to announce the evaluation that it triggers.
  bool AdvanceOnePeriod() {
    absl::Mutex mu;
    int changes = 0;
    auto subscription = notifier_.Subscribe(
        kReplicaSetsKey,
        [&] {
          absl::MutexLock lock(&mu);
          ++changes;
        },
        nullptr);
    clock_.BlockUntilWaiters(1);  // The loop waits for its next period.
    clock_.Advance(absl::Seconds(1));
    absl::MutexLock lock(&mu);
    auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return changes > 0;
    };
    return mu.AwaitWithTimeout(absl::Condition(&changed), absl::Seconds(30));
  }

  prometheus::Registry registry_;
  SchedulerMetrics metrics_{registry_};
  hangar::testing::FakeClock clock_;
  testing::InMemorySchedulerStore store_;
  ChangeNotifier notifier_;
  testing::FakeExecutor* executor_ = nullptr;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerTest, ApplyPlacesAndStartsReplicasThatBecomeRoutes) {
  ASSERT_OK_AND_ASSIGN(v1::ReplicaSet set,
                       scheduler_->ApplyReplicaSet(Spec("dep-a", 1, 2, 2)));
  ASSERT_THAT(set.replicas(), SizeIs(2));
  EXPECT_EQ(set.replicas(0).state(), v1::REPLICA_STATE_STARTING);
  EXPECT_EQ(set.replicas(0).name(), "dep-a-r1-0");
  EXPECT_EQ(set.replicas(0).priority(), v1::PRIORITY_SERVING);
  EXPECT_EQ(set.replicas(0).node(), "p-0");
  EXPECT_THAT(executor_->started(),
              UnorderedElementsAre("dep-a-r1-0", "dep-a-r1-1"));
  EXPECT_EQ(FreeGpus(), 2);

  // No replica is routable before it is READY.
  std::vector<v1::Route> routes = scheduler_->Routes();
  ASSERT_THAT(routes, SizeIs(1));
  EXPECT_THAT(routes[0].replicas(), SizeIs(0));

  executor_->EmitReplica("dep-a-r1-0", ReplicaState::kReady);
  scheduler_->Sync();
  routes = scheduler_->Routes();
  ASSERT_THAT(routes[0].replicas(), SizeIs(1));
  EXPECT_EQ(routes[0].replicas(0).name(), "dep-a-r1-0");
  EXPECT_EQ(routes[0].replicas(0).state(), v1::REPLICA_STATE_READY);
  EXPECT_THAT(routes[0].replicas(0).address(), HasSubstr("127.0.0.1:"));
  EXPECT_EQ(routes[0].replicas(0).max_batch(), 2);
  EXPECT_TRUE(routes[0].serving());
  ASSERT_OK_AND_ASSIGN(set, scheduler_->GetReplicaSet("dep-a", 1));
  EXPECT_EQ(set.ready_replicas(), 1);
}

TEST_F(SchedulerTest, SameSpecTwiceChangesNothingAndNewRevisionIsBeside) {
  ASSERT_OK_AND_ASSIGN(v1::ReplicaSet first,
                       scheduler_->ApplyReplicaSet(Spec("dep-a", 1, 1, 1)));
  const int writes = store_.writes();
  ASSERT_OK_AND_ASSIGN(v1::ReplicaSet again,
                       scheduler_->ApplyReplicaSet(Spec("dep-a", 1, 1, 1)));
  EXPECT_EQ(store_.writes(), writes);
  EXPECT_EQ(again.etag(), first.etag());
  EXPECT_THAT(executor_->started(), SizeIs(1));

  // The serving flag may flip in place; the runner fields may not.
  v1::ReplicaSetSpec off = Spec("dep-a", 1, 1, 1);
  off.set_serving(false);
  ASSERT_OK_AND_ASSIGN(v1::ReplicaSet flipped,
                       scheduler_->ApplyReplicaSet(off));
  EXPECT_FALSE(flipped.spec().serving());
  EXPECT_NE(flipped.etag(), first.etag());
  v1::ReplicaSetSpec moved = off;
  moved.set_artifact_path("/models/other");
  EXPECT_THAT(scheduler_->ApplyReplicaSet(moved),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("spec.artifact_path")));

  ASSERT_OK(scheduler_->ApplyReplicaSet(Spec("dep-a", 2, 1, 1)).status());
  EXPECT_THAT(scheduler_->ReplicaSets("dep-a"), SizeIs(2));
  EXPECT_THAT(executor_->started(), SizeIs(2));
}

TEST_F(SchedulerTest, BadSpecsNameTheirField) {
  struct Case {
    std::function<void(v1::ReplicaSetSpec&)> mutate;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](auto& s) { s.set_hardware("h100-9x"); }, "spec.hardware"},
      {[](auto& s) {
         s.set_min_replicas(3);
         s.set_max_replicas(2);
       },
       "spec.max_replicas"},
      {[](auto& s) {
         s.set_min_replicas(0);
         s.set_max_replicas(0);
       },
       "spec.max_replicas"},
      {[](auto& s) { s.set_scale_up_delay_seconds(-1); },
       "spec.scale_up_delay_seconds"},
      {[](auto& s) { s.set_scale_down_delay_seconds(86401); },
       "spec.scale_down_delay_seconds"},
      {[](auto& s) { s.set_inference_batch_size(0); },
       "spec.inference_batch_size"},
      {[](auto& s) { s.set_inference_batch_size(257); },
       "spec.inference_batch_size"},
      {[](auto& s) { s.set_context_length(0); }, "spec.context_length"},
      {[](auto& s) { s.set_threads_per_replica(0); },
       "spec.threads_per_replica"},
      {[](auto& s) { s.set_deployment(""); }, "spec.deployment"},
      {[](auto& s) { s.set_artifact_path(""); }, "spec.artifact_path"},
      {[](auto& s) { s.set_memory_bytes(int64_t{64} << 30); },
       "spec.memory_bytes"},
  };
  for (const Case& c : cases) {
    v1::ReplicaSetSpec spec = Spec("dep-a", 1, 1, 1);
    c.mutate(spec);
    EXPECT_THAT(
        scheduler_->ApplyReplicaSet(spec),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)))
        << c.field;
  }
  EXPECT_THAT(scheduler_->ReplicaSets(""), SizeIs(0));
  EXPECT_THAT(executor_->started(), SizeIs(0));
}

TEST_F(SchedulerTest, PendingWithReasonUntilDeleteFreesGpus) {
  ASSERT_OK(scheduler_->ApplyReplicaSet(Spec("big", 1, 2, 2, "p-2x")).status());
  EXPECT_EQ(FreeGpus(), 0);
  ASSERT_OK_AND_ASSIGN(v1::ReplicaSet waiting,
                       scheduler_->ApplyReplicaSet(Spec("small", 1, 1, 1)));
  ASSERT_THAT(waiting.replicas(), SizeIs(1));
  EXPECT_EQ(waiting.replicas(0).state(), v1::REPLICA_STATE_PENDING);
  EXPECT_THAT(waiting.replicas(0).pending_reason(), HasSubstr("no node"));
  ASSERT_OK_AND_ASSIGN(v1::PoolStatus pool, scheduler_->GetPoolStatus("p"));
  ASSERT_THAT(pool.pending(), SizeIs(1));
  EXPECT_EQ(pool.pending(0).workload(), "small-r1-0");
  EXPECT_EQ(pool.pending(0).offering(), "p-1x");

  v1::DeleteReplicaSetRequest del;
  del.set_deployment("big");
  del.set_revision(1);
  del.set_drain_seconds(0);
  ASSERT_OK_AND_ASSIGN(v1::ReplicaSet draining,
                       scheduler_->DeleteReplicaSet(del));
  ASSERT_THAT(draining.replicas(), SizeIs(2));
  EXPECT_EQ(draining.replicas(0).state(), v1::REPLICA_STATE_DRAINING);
  EXPECT_THAT(executor_->stopped(),
              UnorderedElementsAre("big-r1-0", "big-r1-1"));
  // Draining replicas are still routes (finishing work), not serving.
  EXPECT_FALSE(scheduler_->Routes()[0].serving());

  executor_->EmitReplica("big-r1-0", ReplicaState::kStopped);
  scheduler_->Sync();
  // Two GPUs came back: the pending replica starts on one.
  EXPECT_THAT(executor_->started(), ::testing::Contains("small-r1-0"));
  executor_->EmitReplica("big-r1-1", ReplicaState::kStopped);
  scheduler_->Sync();
  EXPECT_THAT(scheduler_->GetReplicaSet("big", 1),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("big")));
  EXPECT_EQ(FreeGpus(), 3);
  EXPECT_EQ(executor_->replica_count(),
            1);  // small; the stopped ones are forgotten.
}

TEST_F(SchedulerTest, AutoscalerScalesUpAfterDelayAndBackDown) {
  v1::ReplicaSetSpec spec = Spec("dep-a", 1, 1, 3);
  spec.set_scale_up_delay_seconds(5);
  spec.set_scale_down_delay_seconds(5);
  ASSERT_OK(scheduler_->ApplyReplicaSet(spec).status());
  EXPECT_THAT(executor_->started(), SizeIs(1));

  Load("dep-a", 1, 6, absl::Seconds(60));        // Needs 3 at batch 2.
  EXPECT_THAT(executor_->started(), SizeIs(1));  // Not before the delay.
  clock_.Advance(absl::Seconds(5));
  scheduler_->EvaluateAutoscaler();
  ASSERT_OK_AND_ASSIGN(v1::ReplicaSet set,
                       scheduler_->GetReplicaSet("dep-a", 1));
  EXPECT_EQ(set.desired_replicas(), 3);
  EXPECT_EQ(set.load(), 6);
  ASSERT_THAT(set.replicas(), SizeIs(3));
  EXPECT_EQ(set.replicas(2).priority(), v1::PRIORITY_SCALE_OUT);
  EXPECT_EQ(FreeGpus(), 1);

  Load("dep-a", 1, 0, absl::Seconds(60));
  scheduler_->EvaluateAutoscaler();
  clock_.Advance(absl::Seconds(5));
  scheduler_->EvaluateAutoscaler();
  ASSERT_OK_AND_ASSIGN(set, scheduler_->GetReplicaSet("dep-a", 1));
  EXPECT_EQ(set.desired_replicas(), 1);
  EXPECT_THAT(executor_->stopped(), SizeIs(2));
  for (const std::string& name : executor_->stopped()) {
    executor_->EmitReplica(name, ReplicaState::kStopped);
  }
  scheduler_->Sync();
  ASSERT_OK_AND_ASSIGN(set, scheduler_->GetReplicaSet("dep-a", 1));
  EXPECT_THAT(set.replicas(), SizeIs(1));
  EXPECT_EQ(FreeGpus(), 3);
}

TEST_F(SchedulerTest, TheLoopEvaluatesTheAutoscalerOnTheClock) {
  v1::ReplicaSetSpec spec = Spec("dep-a", 1, 1, 3);
  spec.set_scale_up_delay_seconds(3);
  ASSERT_OK(scheduler_->ApplyReplicaSet(spec).status());
  Load("dep-a", 1, 6, absl::Seconds(60));
  auto desired = [&] {
    absl::StatusOr<v1::ReplicaSet> set = scheduler_->GetReplicaSet("dep-a", 1);
    return set.ok() ? set->desired_replicas() : -1;
  };
  EXPECT_EQ(desired(), 1);
  // No explicit evaluation: only the clock moves, one period at a time.
  ASSERT_TRUE(AdvanceOnePeriod());
  ASSERT_TRUE(AdvanceOnePeriod());
  EXPECT_EQ(desired(), 1);  // Held 2 s of the 3 s delay.
  ASSERT_TRUE(AdvanceOnePeriod());
  EXPECT_EQ(desired(), 3);
  EXPECT_THAT(executor_->started(), SizeIs(3));
  EXPECT_EQ(
      Metric("hangar_scheduler_autoscaler_decisions_total", "direction", "up"),
      1);
  EXPECT_EQ(Metric("hangar_scheduler_autoscaler_load", "set", "dep-a/1"), 6);
}

TEST_F(SchedulerTest, MetricsFollowPoolsPendingAndReplicaStates) {
  ASSERT_OK(scheduler_->ApplyReplicaSet(Spec("big", 1, 2, 2, "p-2x")).status());
  ASSERT_OK(scheduler_->ApplyReplicaSet(Spec("small", 1, 1, 1)).status());
  EXPECT_EQ(Metric("hangar_scheduler_pool_gpus", "kind", "total"), 4);
  EXPECT_EQ(Metric("hangar_scheduler_pool_gpus", "kind", "allocated"), 4);
  EXPECT_EQ(Metric("hangar_scheduler_pending_items", "reason", "capacity"), 1);
  EXPECT_EQ(Metric("hangar_scheduler_replicas", "state", "STARTING"), 2);
  EXPECT_EQ(Metric("hangar_scheduler_replicas", "state", "PENDING"), 1);
  EXPECT_EQ(Metric("hangar_scheduler_placements_total", "result", "pending"),
            1);
  executor_->EmitReplica("big-r1-0", ReplicaState::kReady);
  executor_->EmitReplica("big-r1-1", ReplicaState::kFailed, 1);
  scheduler_->Sync();
  EXPECT_EQ(Metric("hangar_scheduler_replicas", "state", "READY"), 1);
  EXPECT_EQ(Metric("hangar_scheduler_replicas", "state", "FAILED"), 1);
  double restarts = -1;
  for (const prometheus::MetricFamily& f : registry_.Collect()) {
    if (f.name == "hangar_scheduler_replica_restarts_total") {
      restarts = f.metric.at(0).counter.value;
    }
  }
  EXPECT_EQ(restarts, 1);
}

TEST_F(SchedulerTest, DeletingASetWithNothingPlacedEndsItAtOnce) {
  ASSERT_OK(scheduler_->ApplyReplicaSet(Spec("big", 1, 2, 2, "p-2x")).status());
  ASSERT_OK(scheduler_->ApplyReplicaSet(Spec("small", 1, 1, 1)).status());
  v1::DeleteReplicaSetRequest del;
  del.set_deployment("small");
  del.set_revision(1);
  ASSERT_OK_AND_ASSIGN(v1::ReplicaSet final_state,
                       scheduler_->DeleteReplicaSet(del));
  EXPECT_EQ(final_state.spec().deployment(), "small");
  ASSERT_THAT(final_state.replicas(), SizeIs(1));
  EXPECT_EQ(final_state.replicas(0).state(), v1::REPLICA_STATE_STOPPED);
  EXPECT_THAT(scheduler_->GetReplicaSet("small", 1),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("small")));
  ASSERT_OK_AND_ASSIGN(v1::PoolStatus pool, scheduler_->GetPoolStatus("p"));
  EXPECT_THAT(pool.pending(), SizeIs(0));
  EXPECT_THAT(scheduler_->DeleteReplicaSet(del),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("small")));
}

TEST_F(SchedulerTest, ExpiredReportStopsHoldingReplicasUp) {
  v1::ReplicaSetSpec spec = Spec("dep-a", 1, 1, 2);
  ASSERT_OK(scheduler_->ApplyReplicaSet(spec).status());
  Load("dep-a", 1, 4, absl::Seconds(2));
  ASSERT_OK_AND_ASSIGN(v1::ReplicaSet set,
                       scheduler_->GetReplicaSet("dep-a", 1));
  EXPECT_EQ(set.desired_replicas(), 2);
  clock_.Advance(absl::Seconds(3));  // The gateway vanished.
  scheduler_->EvaluateAutoscaler();
  ASSERT_OK_AND_ASSIGN(set, scheduler_->GetReplicaSet("dep-a", 1));
  EXPECT_EQ(set.desired_replicas(), 1);
  EXPECT_EQ(set.load(), 0);
}

TEST_F(SchedulerTest, RestartsAreCounted) {
  ASSERT_OK(scheduler_->ApplyReplicaSet(Spec("dep-a", 1, 1, 1)).status());
  executor_->EmitReplica("dep-a-r1-0", ReplicaState::kReady);
  executor_->EmitReplica("dep-a-r1-0", ReplicaState::kFailed, 1);
  scheduler_->Sync();
  ASSERT_OK_AND_ASSIGN(v1::ReplicaSet set,
                       scheduler_->GetReplicaSet("dep-a", 1));
  EXPECT_EQ(set.replicas(0).state(), v1::REPLICA_STATE_FAILED);
  EXPECT_EQ(set.replicas(0).restarts(), 1);
  EXPECT_THAT(scheduler_->Routes()[0].replicas(), SizeIs(0));
  executor_->EmitReplica("dep-a-r1-0", ReplicaState::kReady);
  scheduler_->Sync();
  EXPECT_THAT(scheduler_->Routes()[0].replicas(), SizeIs(1));
}

TEST_F(SchedulerTest, JobsRunOnGpusAndReportTheirEnd) {
  v1::SubmitJobRequest request;
  request.set_request_id("req-1");
  request.mutable_spec()->add_argv("/bin/sh");
  request.mutable_spec()->set_hardware("p-2x");
  request.mutable_spec()->set_owner("optimizer:opt-1");
  ASSERT_OK_AND_ASSIGN(v1::Job job, scheduler_->SubmitJob(request));
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  EXPECT_THAT(job.gpus(), SizeIs(2));
  EXPECT_TRUE(executor_->has_job(job.name()));
  EXPECT_EQ(FreeGpus(), 2);
  // The same request_id again: the same job, nothing new.
  ASSERT_OK_AND_ASSIGN(v1::Job again, scheduler_->SubmitJob(request));
  EXPECT_EQ(again.name(), job.name());
  request.mutable_spec()->set_owner("someone else");
  EXPECT_THAT(
      scheduler_->SubmitJob(request),
      StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("request_id")));

  executor_->EmitJob(job.name(), JobState::kFailed, 3, "hi\n");
  scheduler_->Sync();
  ASSERT_OK_AND_ASSIGN(job, scheduler_->GetJob(job.name()));
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(job.exit_code(), 3);
  EXPECT_EQ(job.log_tail(), "hi\n");
  EXPECT_TRUE(job.has_end_time());
  EXPECT_EQ(FreeGpus(), 4);
  EXPECT_FALSE(executor_->has_job(job.name()));
}

TEST_F(SchedulerTest, PendingJobWaitsBehindServingAndCancels) {
  ASSERT_OK(scheduler_->ApplyReplicaSet(Spec("big", 1, 2, 2, "p-2x")).status());
  v1::SubmitJobRequest request;
  request.set_request_id("req-2");
  request.mutable_spec()->add_argv("/bin/true");
  request.mutable_spec()->set_hardware("p-1x");
  ASSERT_OK_AND_ASSIGN(v1::Job job, scheduler_->SubmitJob(request));
  EXPECT_EQ(job.state(), v1::JOB_STATE_PENDING);
  EXPECT_THAT(job.pending_reason(), HasSubstr("no node"));
  ASSERT_OK_AND_ASSIGN(job, scheduler_->CancelJob(job.name()));
  EXPECT_EQ(job.state(), v1::JOB_STATE_CANCELLED);
  ASSERT_OK_AND_ASSIGN(v1::PoolStatus pool, scheduler_->GetPoolStatus("p"));
  EXPECT_THAT(pool.pending(), SizeIs(0));

  request.set_request_id("req-3");
  request.mutable_spec()->set_hardware("nope");
  EXPECT_THAT(
      scheduler_->SubmitJob(request),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.hardware")));
  request.mutable_spec()->set_hardware("p-1x");
  request.mutable_spec()->clear_argv();
  EXPECT_THAT(
      scheduler_->SubmitJob(request),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.argv")));
}

TEST_F(SchedulerTest, RestartRebuildsAllocationsAndAdoptsWithoutDuplicates) {
  ASSERT_OK(scheduler_->ApplyReplicaSet(Spec("dep-a", 1, 2, 2)).status());
  ASSERT_OK(scheduler_->ApplyReplicaSet(Spec("big", 1, 2, 2, "p-2x")).status());
  executor_->EmitReplica("dep-a-r1-0", ReplicaState::kReady);
  executor_->EmitReplica("dep-a-r1-1", ReplicaState::kReady);
  scheduler_->Sync();
  ASSERT_OK_AND_ASSIGN(v1::ReplicaSet before,
                       scheduler_->GetReplicaSet("dep-a", 1));

  scheduler_.reset();
  Start();
  // Both placed replicas are handed to the executor for adoption, none
  // started afresh by the scheduler; the pending ones are queued again.
  std::vector<std::string> adopted;
  for (const RecordedReplica& record : executor_->adopted()) {
    adopted.push_back(record.spec.name);
  }
  EXPECT_THAT(adopted,
              UnorderedElementsAre("dep-a-r1-0", "dep-a-r1-1", "big-r1-0"));
  EXPECT_THAT(executor_->started(), SizeIs(0));
  EXPECT_EQ(FreeGpus(), 0);
  ASSERT_OK_AND_ASSIGN(v1::PoolStatus pool, scheduler_->GetPoolStatus("p"));
  ASSERT_THAT(pool.pending(), SizeIs(1));
  EXPECT_EQ(pool.pending(0).workload(), "big-r1-1");
  ASSERT_OK_AND_ASSIGN(v1::ReplicaSet after,
                       scheduler_->GetReplicaSet("dep-a", 1));
  ASSERT_THAT(after.replicas(), SizeIs(2));
  EXPECT_EQ(after.replicas(0).node(), before.replicas(0).node());
  EXPECT_EQ(after.replicas(0).gpus(0), before.replicas(0).gpus(0));
  executor_->EmitReplica("dep-a-r1-0", ReplicaState::kReady);
  scheduler_->Sync();
  ASSERT_OK_AND_ASSIGN(after, scheduler_->GetReplicaSet("dep-a", 1));
  EXPECT_EQ(after.replicas(0).state(), v1::REPLICA_STATE_READY);
}

TEST_F(SchedulerTest, ListsPageAndFilter) {
  ASSERT_OK(scheduler_->ApplyReplicaSet(Spec("dep-a", 1, 0, 1)).status());
  ASSERT_OK(scheduler_->ApplyReplicaSet(Spec("dep-a", 2, 0, 1)).status());
  ASSERT_OK(scheduler_->ApplyReplicaSet(Spec("dep-b", 10, 0, 1)).status());
  v1::ListReplicaSetsRequest request;
  request.set_page_size(2);
  ASSERT_OK_AND_ASSIGN(v1::ListReplicaSetsResponse page,
                       scheduler_->ListReplicaSets(request));
  ASSERT_THAT(page.replica_sets(), SizeIs(2));
  EXPECT_EQ(page.replica_sets(1).spec().revision(), 2);
  ASSERT_FALSE(page.next_page_token().empty());
  request.set_page_token(page.next_page_token());
  ASSERT_OK_AND_ASSIGN(page, scheduler_->ListReplicaSets(request));
  ASSERT_THAT(page.replica_sets(), SizeIs(1));
  EXPECT_EQ(page.replica_sets(0).spec().deployment(), "dep-b");
  EXPECT_TRUE(page.next_page_token().empty());
  // A token is bound to its filter.
  request.set_deployment("dep-a");
  EXPECT_THAT(
      scheduler_->ListReplicaSets(request),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
  request.clear_page_token();
  ASSERT_OK_AND_ASSIGN(page, scheduler_->ListReplicaSets(request));
  EXPECT_THAT(page.replica_sets(), SizeIs(2));

  for (const char* owner : {"o1", "o2", "o1"}) {
    v1::SubmitJobRequest job;
    job.set_request_id(absl::StrCat("req-", owner, "-",
                                    scheduler_->ListJobs({})->jobs_size()));
    job.mutable_spec()->add_argv("/bin/true");
    job.mutable_spec()->set_hardware("p-1x");
    job.mutable_spec()->set_owner(owner);
    ASSERT_OK(scheduler_->SubmitJob(job).status());
  }
  v1::ListJobsRequest jobs;
  jobs.set_owner("o1");
  jobs.set_page_size(1);
  ASSERT_OK_AND_ASSIGN(v1::ListJobsResponse first, scheduler_->ListJobs(jobs));
  ASSERT_THAT(first.jobs(), SizeIs(1));
  jobs.set_page_token(first.next_page_token());
  ASSERT_OK_AND_ASSIGN(v1::ListJobsResponse second, scheduler_->ListJobs(jobs));
  ASSERT_THAT(second.jobs(), SizeIs(1));
  EXPECT_EQ(second.jobs(0).spec().owner(), "o1");
  EXPECT_NE(second.jobs(0).name(), first.jobs(0).name());
  EXPECT_TRUE(second.next_page_token().empty());
}

TEST_F(SchedulerTest, CancellingARunningJobGoesThroughTheExecutor) {
  v1::SubmitJobRequest request;
  request.set_request_id("req-cancel");
  request.mutable_spec()->add_argv("/bin/sleep");
  request.mutable_spec()->add_argv("100");
  request.mutable_spec()->set_hardware("p-1x");
  ASSERT_OK_AND_ASSIGN(v1::Job job, scheduler_->SubmitJob(request));
  ASSERT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  ASSERT_OK_AND_ASSIGN(v1::Job asked, scheduler_->CancelJob(job.name()));
  EXPECT_EQ(asked.state(), v1::JOB_STATE_RUNNING);  // Until it has ended.
  EXPECT_THAT(executor_->cancelled(), ElementsAre(job.name()));
  executor_->EmitJob(job.name(), JobState::kCancelled, 143);
  scheduler_->Sync();
  ASSERT_OK_AND_ASSIGN(job, scheduler_->GetJob(job.name()));
  EXPECT_EQ(job.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(job.exit_code(), 143);
  EXPECT_EQ(FreeGpus(), 4);
  EXPECT_THAT(scheduler_->CancelJob("job-unknown"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-unknown")));
}

// A crash (the store as SIGKILL leaves it: the job RUNNING): the restarted
// scheduler books the job's GPUs again and hands it to the executor to
// follow, and the job ends as the executor reports. A graceful stop puts a
// running job back in the queue instead.
TEST_F(SchedulerTest, RestartFollowsARunningJobAndAStopRequeuesIt) {
  v1::SubmitJobRequest request;
  request.set_request_id("req-follow");
  request.mutable_spec()->add_argv("/bin/sleep");
  request.mutable_spec()->set_hardware("p-2x");
  ASSERT_OK_AND_ASSIGN(v1::Job job, scheduler_->SubmitJob(request));
  ASSERT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  ASSERT_OK_AND_ASSIGN(SchedulerSnapshot crashed, store_.Load());
  ASSERT_THAT(crashed.jobs, SizeIs(1));
  StoredJob record = crashed.jobs[0];
  record.pid = 4242;
  record.start_ticks = 777;

  scheduler_.reset();
  // The graceful stop stored it as PENDING, to run again.
  ASSERT_OK_AND_ASSIGN(SchedulerSnapshot stopped, store_.Load());
  EXPECT_EQ(stopped.jobs[0].job.state(), v1::JOB_STATE_PENDING);
  EXPECT_THAT(stopped.jobs[0].job.pending_reason(), HasSubstr("re-queued"));

  // As a crash leaves it.
  ASSERT_OK(store_.PutJob(record));
  Start();
  ASSERT_THAT(executor_->adopted_jobs(), SizeIs(1));
  EXPECT_EQ(executor_->adopted_jobs()[0].spec.name, job.name());
  EXPECT_EQ(executor_->adopted_jobs()[0].pid, 4242);
  EXPECT_EQ(executor_->adopted_jobs()[0].start_ticks, 777u);
  EXPECT_EQ(executor_->adopted_jobs()[0].spec.assignment.gpus.size(), 2u);
  EXPECT_EQ(FreeGpus(), 2);  // its GPUs are booked again
  ASSERT_OK_AND_ASSIGN(v1::Job after, scheduler_->GetJob(job.name()));
  EXPECT_EQ(after.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(after.node(), job.node());
  executor_->EmitJob(job.name(), JobState::kSucceeded, 0, "done\n");
  scheduler_->Sync();
  ASSERT_OK_AND_ASSIGN(after, scheduler_->GetJob(job.name()));
  EXPECT_EQ(after.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(after.log_tail(), "done\n");
  EXPECT_EQ(FreeGpus(), 4);

  // Restarted after the graceful stop: queued again and started afresh.
  scheduler_.reset();
  ASSERT_OK(store_.PutJob(stopped.jobs[0]));
  Start();
  EXPECT_THAT(executor_->adopted_jobs(), SizeIs(0));
  ASSERT_OK_AND_ASSIGN(after, scheduler_->GetJob(job.name()));
  EXPECT_EQ(after.state(), v1::JOB_STATE_RUNNING);
  EXPECT_TRUE(executor_->has_job(job.name()));
}

TEST_F(SchedulerTest, RestartFinishesADeletionLeftHalfDone) {
  scheduler_.reset();
  StoredSet left{
      .spec = Spec("dep-z", 1, 1, 1), .desired = 1, .deleting = true};
  ASSERT_OK(store_.PutSet(left));
  Start();
  EXPECT_THAT(scheduler_->GetReplicaSet("dep-z", 1),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("dep-z")));
  ASSERT_OK_AND_ASSIGN(SchedulerSnapshot stored, store_.Load());
  EXPECT_THAT(stored.sets, SizeIs(0));
  EXPECT_THAT(executor_->started(), SizeIs(0));
}

TEST_F(SchedulerTest, ListHardwareShowsLiveAvailability) {
  ASSERT_OK_AND_ASSIGN(v1::ListHardwareResponse before,
                       scheduler_->ListHardware({}));
  ASSERT_THAT(before.offerings(), SizeIs(2));
  EXPECT_EQ(before.offerings(1).id(), "p-2x");
  EXPECT_EQ(before.offerings(1).availability(), "2 of 2 replicas fit now");
  ASSERT_OK(scheduler_->ApplyReplicaSet(Spec("dep-a", 1, 1, 1)).status());
  ASSERT_OK_AND_ASSIGN(v1::ListHardwareResponse after,
                       scheduler_->ListHardware({}));
  EXPECT_EQ(after.offerings(0).availability(), "3 of 4 replicas fit now");
  EXPECT_EQ(after.offerings(0).hourly_price().micros(), 1128000);
  v1::ListHardwareRequest paged;
  paged.set_page_size(1);
  ASSERT_OK_AND_ASSIGN(v1::ListHardwareResponse page,
                       scheduler_->ListHardware(paged));
  ASSERT_THAT(page.offerings(), SizeIs(1));
  paged.set_page_token(page.next_page_token());
  ASSERT_OK_AND_ASSIGN(page, scheduler_->ListHardware(paged));
  ASSERT_THAT(page.offerings(), SizeIs(1));
  EXPECT_EQ(page.offerings(0).id(), "p-2x");
  EXPECT_TRUE(page.next_page_token().empty());
}

}  // namespace
}  // namespace hangar::scheduler
