#include "services/optimizer/optimizer.h"

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "common/testing/child_process.h"
#include "common/testing/fake_clock.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "common/util/file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "services/optimizer/conversion.h"
#include "services/optimizer/testing/fake_scheduler_client.h"
#include "services/optimizer/testing/in_memory_job_store.h"

namespace hangar::optimizer {
namespace {

namespace fs = std::filesystem;
using ::hangar::testing::FakeClock;
using ::hangar::testing::StatusIs;
using ::hangar::testing::WaitUntil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kSha[] =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

class OptimizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::hangar::testing::MakeTempDir("optimizer");
    fs::create_directories(root_ + "/src");
    StartOptimizer();
  }
  void StartOptimizer() {
    ASSERT_OK_AND_ASSIGN(
        optimizer_,
        Optimizer::Create({.model_store = root_ + "/store",
                           .optimize_binary = "/bin/hangar-optimize",
                           .max_logit_error_bounds = {{"VLLM/fp8", 0.25}},
                           .watch_slice = absl::Milliseconds(50),
                           .store = &store_,
                           .scheduler = &scheduler_,
                           .notifier = &notifier_,
                           .metrics = &metrics_,
                           .clock = &clock_}));
  }
  v1::CreateOptimizationJobRequest Request(
      const std::string& request_id, v1::Engine engine = v1::ENGINE_CTRANSLATE2,
      v1::Quantization q = v1::QUANTIZATION_INT8) {
    v1::CreateOptimizationJobRequest r;
    r.set_request_id(request_id);
    r.mutable_job()->set_model("models/tiny");
    r.mutable_job()->mutable_recipe()->set_engine(engine);
    r.mutable_job()->mutable_recipe()->set_quantization(q);
    r.mutable_job()->set_hardware("h100-1");
    r.set_source_path(root_ + "/src");
    r.set_source_sha256(kSha);
    return r;
  }
  // Waits until the job satisfies `pred` (the follower runs on its own
  // thread).
  v1::OptimizationJob WaitForJob(
      const std::string& name,
      const std::function<bool(const v1::OptimizationJob&)>& pred) {
    v1::OptimizationJob job;
    EXPECT_TRUE(WaitUntil(
        [&] {
          auto j = optimizer_->GetJob(name);
          if (j.ok()) job = *j;
          return j.ok() && pred(job);
        },
        absl::Seconds(20)))
        << job.DebugString();
    return job;
  }
  v1::Job WaitForSchedulerJob(const std::string& name) {
    auto j = WaitForJob(name, [](const v1::OptimizationJob& j) {
      return !j.scheduler_job().empty();
    });
    return *scheduler_.GetJob(j.scheduler_job());
  }
  static std::string ReportLine(bool passed, double error, double bound,
                                const std::string& artifact) {
    return absl::StrCat("{\"event\":\"report\",\"passed\":",
                        passed ? "true" : "false", ",\"artifact\":\"", artifact,
                        "\",\"size_bytes\":1234,\"prompts\":3,\"positions\":40,"
                        "\"max_abs_logit_error\":",
                        error, ",\"max_abs_logit_error_bound\":", bound,
                        ",\"mean_kl\":0.001,\"greedy_agreement\":0.97,\"greedy_"
                        "tokens\":96,\"size_ratio\":0.27}\n");
  }

  std::string root_;
  FakeClock clock_;
  testing::InMemoryJobStore store_;
  testing::FakeSchedulerClient scheduler_;
  ChangeNotifier notifier_;
  prometheus::Registry registry_;
  OptimizerMetrics metrics_{registry_};
  std::unique_ptr<Optimizer> optimizer_;
  // The value of a metric sample with these labels (-1 when absent).
  double Metric(const std::string& family,
                const std::map<std::string, std::string>& labels) {
    for (const auto& f : registry_.Collect()) {
      if (f.name != family) continue;
      for (const auto& m : f.metric) {
        std::map<std::string, std::string> got;
        for (const auto& l : m.label) got[l.name] = l.value;
        bool match = true;
        for (const auto& [k, v] : labels) match = match && got[k] == v;
        if (!match) continue;
        if (f.type == prometheus::MetricType::Counter) return m.counter.value;
        if (f.type == prometheus::MetricType::Gauge) return m.gauge.value;
        if (f.type == prometheus::MetricType::Histogram)
          return double(m.histogram.sample_count);
      }
    }
    return -1;
  }
};

TEST_F(OptimizerTest, RefusesInvalidRequestsNamingTheField) {
  EXPECT_THAT(optimizer_->CreateJob(
                  Request("r1", v1::ENGINE_CTRANSLATE2, v1::QUANTIZATION_FP8)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("job.recipe.quantization: QUANTIZATION_FP8 is "
                                 "not allowed with ENGINE_CTRANSLATE2")));
  EXPECT_THAT(optimizer_->CreateJob(Request("r1", v1::ENGINE_NONE)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("job.recipe.engine")));
  EXPECT_THAT(
      optimizer_->CreateJob(Request("")),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("request_id")));
  auto r = Request("r1");
  r.set_source_path(root_ + "/missing");
  EXPECT_THAT(
      optimizer_->CreateJob(r),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("source_path")));
  r = Request("r1");
  r.set_source_sha256("abc");
  EXPECT_THAT(
      optimizer_->CreateJob(r),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("source_sha256")));
  r = Request("r1");
  r.mutable_job()->clear_hardware();
  EXPECT_THAT(
      optimizer_->CreateJob(r),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("job.hardware")));
  EXPECT_EQ(scheduler_.submits(), 0);
}

TEST_F(OptimizerTest, JobGoesPendingRunningSucceededAndTheSameInputIsReused) {
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob job,
                       optimizer_->CreateJob(Request("r1")));
  EXPECT_EQ(job.state(), v1::JOB_STATE_PENDING);
  EXPECT_THAT(job.name(), ::testing::StartsWith("opt-"));
  v1::Job sched = WaitForSchedulerJob(job.name());
  const std::string out =
      root_ + "/store/artifacts/" + kSha + "-ctranslate2-int8";
  EXPECT_THAT(sched.spec().argv(),
              ElementsAre("/bin/hangar-optimize", "--source", root_ + "/src",
                          "--recipe", "CTRANSLATE2/int8", "--out", out));
  EXPECT_EQ(sched.spec().hardware(), "h100-1");
  EXPECT_EQ(sched.spec().owner(), "optimizer:" + job.name());
  job = WaitForJob(job.name(), [](const auto& j) {
    return j.pending_reason() == "waiting for a free GPU";
  });
  EXPECT_EQ(job.progress().phase(), v1::OPTIMIZATION_PHASE_PENDING);

  scheduler_.SetJob(sched.name(), v1::JOB_STATE_RUNNING,
                    "{\"event\":\"progress\",\"phase\":\"converting\","
                    "\"tensors_done\":3,\"tensors_total\":10,"
                    "\"bytes_written\":4096,\"bytes_total\":9000,\"message\":"
                    "\"converting a\"}\n");
  job = WaitForJob(job.name(), [](const auto& j) {
    return j.progress().tensors_done() == 3;
  });
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(job.pending_reason(), "");
  EXPECT_EQ(job.progress().phase(), v1::OPTIMIZATION_PHASE_CONVERTING);
  EXPECT_EQ(job.progress().tensors_total(), 10);
  EXPECT_EQ(job.progress().bytes_written(), 4096);
  EXPECT_TRUE(job.has_start_time());

  fs::create_directories(out);
  scheduler_.SetJob(sched.name(), v1::JOB_STATE_SUCCEEDED,
                    ReportLine(true, 0.1, 1.0, out));
  job = WaitForJob(job.name(), [](const auto& j) {
    return j.state() == v1::JOB_STATE_SUCCEEDED;
  });
  EXPECT_FALSE(job.reused());
  EXPECT_EQ(job.artifact().path(), out);
  EXPECT_EQ(job.artifact().size_bytes(), 1234);
  EXPECT_DOUBLE_EQ(job.quality().max_abs_logit_error(), 0.1);
  EXPECT_DOUBLE_EQ(job.quality().greedy_agreement(), 0.97);
  EXPECT_TRUE(job.quality().passed());
  EXPECT_EQ(job.progress().phase(), v1::OPTIMIZATION_PHASE_DONE);
  EXPECT_TRUE(job.has_end_time());

  // The same request id: the same job. A different id, same input: reused.
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob again,
                       optimizer_->CreateJob(Request("r1")));
  EXPECT_EQ(again.name(), job.name());
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob reused,
                       optimizer_->CreateJob(Request("r2")));
  EXPECT_NE(reused.name(), job.name());
  EXPECT_EQ(reused.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_TRUE(reused.reused());
  EXPECT_EQ(reused.artifact().name(), job.artifact().name());
  EXPECT_EQ(scheduler_.submits(), 1);
  // The same id with another input is refused.
  auto other = Request("r1", v1::ENGINE_VLLM, v1::QUANTIZATION_FP8);
  EXPECT_THAT(optimizer_->CreateJob(other),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("request_id: was used before")));

  ASSERT_OK_AND_ASSIGN(auto artifacts, optimizer_->ListArtifacts({}));
  ASSERT_EQ(artifacts.artifacts_size(), 1);
  EXPECT_EQ(artifacts.artifacts(0).path(), out);

  // Metrics: states by recipe (the reused job counts as a success too),
  // bytes, duration, quality.
  const std::string recipe = "CTRANSLATE2/int8";
  EXPECT_EQ(Metric("hangar_optimizer_jobs_total",
                   {{"state", "JOB_STATE_PENDING"}, {"recipe", recipe}}),
            1);
  EXPECT_EQ(Metric("hangar_optimizer_jobs_total",
                   {{"state", "JOB_STATE_RUNNING"}, {"recipe", recipe}}),
            1);
  EXPECT_EQ(Metric("hangar_optimizer_jobs_total",
                   {{"state", "JOB_STATE_SUCCEEDED"}, {"recipe", recipe}}),
            2);
  EXPECT_EQ(
      Metric("hangar_optimizer_bytes_converted_total", {{"recipe", recipe}}),
      1234);
  EXPECT_EQ(
      Metric("hangar_optimizer_job_duration_seconds", {{"recipe", recipe}}), 1);
  EXPECT_DOUBLE_EQ(
      Metric("hangar_optimizer_quality",
             {{"recipe", recipe}, {"figure", "max_abs_logit_error"}}),
      0.1);
  EXPECT_DOUBLE_EQ(Metric("hangar_optimizer_quality",
                          {{"recipe", recipe}, {"figure", "greedy_agreement"}}),
                   0.97);
}

TEST_F(OptimizerTest, AQualityGateFailureKeepsTheReport) {
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob job,
                       optimizer_->CreateJob(Request("r1", v1::ENGINE_VLLM,
                                                     v1::QUANTIZATION_FP8)));
  v1::Job sched = WaitForSchedulerJob(job.name());
  // The bound override travels as a flag.
  EXPECT_THAT(sched.spec().argv(), ::testing::Contains("--max_logit_error"));
  EXPECT_THAT(sched.spec().argv(), ::testing::Contains("0.25"));
  scheduler_.SetJob(sched.name(), v1::JOB_STATE_FAILED,
                    ReportLine(false, 0.9, 0.25, ""), kExitQualityGate);
  job = WaitForJob(job.name(), [](const auto& j) {
    return j.state() == v1::JOB_STATE_FAILED;
  });
  EXPECT_THAT(job.failure_reason(), HasSubstr("quality gate"));
  EXPECT_FALSE(job.quality().passed());
  EXPECT_DOUBLE_EQ(job.quality().max_abs_logit_error(), 0.9);
  EXPECT_DOUBLE_EQ(job.quality().max_abs_logit_error_bound(), 0.25);
  EXPECT_FALSE(job.has_artifact());
  ASSERT_OK_AND_ASSIGN(auto artifacts, optimizer_->ListArtifacts({}));
  EXPECT_EQ(artifacts.artifacts_size(), 0);
}

TEST_F(OptimizerTest, AnErrorLineBecomesTheFailureReason) {
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob job,
                       optimizer_->CreateJob(Request("r1")));
  v1::Job sched = WaitForSchedulerJob(job.name());
  scheduler_.SetJob(sched.name(), v1::JOB_STATE_FAILED,
                    "{\"event\":\"error\",\"exit_code\":2,\"message\":\"tensor "
                    "'x' has dtype I64\"}\n",
                    2);
  job = WaitForJob(job.name(), [](const auto& j) {
    return j.state() == v1::JOB_STATE_FAILED;
  });
  EXPECT_EQ(job.failure_reason(),
            "hangar-optimize exited 2: tensor 'x' has dtype I64");
}

TEST_F(OptimizerTest, CancelStopsTheSchedulerJobAndRecordsCancelled) {
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob job,
                       optimizer_->CreateJob(Request("r1")));
  v1::Job sched = WaitForSchedulerJob(job.name());
  scheduler_.SetJob(sched.name(), v1::JOB_STATE_RUNNING);
  WaitForJob(job.name(),
             [](const auto& j) { return j.state() == v1::JOB_STATE_RUNNING; });
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob cancelled,
                       optimizer_->CancelJob(job.name()));
  EXPECT_EQ(cancelled.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_GE(scheduler_.cancels(), 1);
  EXPECT_EQ(scheduler_.GetJob(sched.name())->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_THAT(optimizer_->CancelJob(job.name()),
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  EXPECT_TRUE(WaitUntil([&] { return optimizer_->followed() == 0; },
                        absl::Seconds(20)));
  EXPECT_EQ(optimizer_->GetJob(job.name())->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_THAT(optimizer_->CancelJob("opt-missing"),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST_F(OptimizerTest, IdenticalInputsWhileConvertingShareOneJob) {
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob a,
                       optimizer_->CreateJob(Request("r1")));
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob b,
                       optimizer_->CreateJob(Request("r2")));
  EXPECT_EQ(a.name(), b.name());
  WaitForSchedulerJob(a.name());
  EXPECT_EQ(scheduler_.submits(), 1);
  ASSERT_OK_AND_ASSIGN(auto list, optimizer_->ListJobs({}));
  EXPECT_EQ(list.jobs_size(), 1);
}

TEST_F(OptimizerTest, RestartResumesARunningJobWithoutSubmittingAgain) {
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob job,
                       optimizer_->CreateJob(Request("r1")));
  v1::Job sched = WaitForSchedulerJob(job.name());
  scheduler_.SetJob(sched.name(), v1::JOB_STATE_RUNNING);
  WaitForJob(job.name(),
             [](const auto& j) { return j.state() == v1::JOB_STATE_RUNNING; });
  optimizer_.reset();  // The process stops; the scheduler job goes on.
  const std::string out =
      root_ + "/store/artifacts/" + kSha + "-ctranslate2-int8";
  fs::create_directories(out);
  scheduler_.SetJob(sched.name(), v1::JOB_STATE_SUCCEEDED,
                    ReportLine(true, 0.1, 1.0, out));
  StartOptimizer();
  ASSERT_OK(optimizer_->Start());
  job = WaitForJob(job.name(), [](const auto& j) {
    return j.state() == v1::JOB_STATE_SUCCEEDED;
  });
  EXPECT_EQ(job.artifact().path(), out);
  EXPECT_EQ(scheduler_.submits(), 1);
}

TEST_F(OptimizerTest, RestartSubmitsAJobStoredBeforeItsSubmitOnce) {
  scheduler_.set_submit_error(absl::UnavailableError("scheduler down"));
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob job,
                       optimizer_->CreateJob(Request("r1")));
  optimizer_.reset();
  EXPECT_EQ(scheduler_.submits(), 0);
  scheduler_.set_submit_error(absl::OkStatus());
  StartOptimizer();
  ASSERT_OK(optimizer_->Start());
  ASSERT_OK(optimizer_->Start());  // Twice: still one follower, one submit.
  WaitForSchedulerJob(job.name());
  EXPECT_EQ(scheduler_.submits(), 1);
  EXPECT_EQ(scheduler_.jobs().size(), 1u);
}

TEST_F(OptimizerTest, AJobTheSchedulerForgotIsSubmittedAgain) {
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob job,
                       optimizer_->CreateJob(Request("r1")));
  v1::Job first = WaitForSchedulerJob(job.name());
  scheduler_.ForgetAll();
  job = WaitForJob(job.name(), [&](const auto& j) {
    return !j.scheduler_job().empty() && j.scheduler_job() != first.name();
  });
  EXPECT_EQ(scheduler_.submits(), 2);
}

TEST_F(OptimizerTest, AnOfferingTheSchedulerRefusesFailsTheJob) {
  scheduler_.set_submit_error(
      absl::InvalidArgumentError("spec.hardware: no offering 'h100-1'"));
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob job,
                       optimizer_->CreateJob(Request("r1")));
  job = WaitForJob(job.name(), [](const auto& j) {
    return j.state() == v1::JOB_STATE_FAILED;
  });
  EXPECT_THAT(job.failure_reason(), HasSubstr("no offering 'h100-1'"));
}

TEST_F(OptimizerTest, ListFiltersAndPages) {
  for (int i = 0; i < 3; ++i) {
    auto r = Request(absl::StrCat("r", i), v1::ENGINE_VLLM,
                     std::vector<v1::Quantization>{
                         v1::QUANTIZATION_FLOAT16, v1::QUANTIZATION_BFLOAT16,
                         v1::QUANTIZATION_FP8}[size_t(i)]);
    if (i == 2) r.mutable_job()->set_model("models/other");
    clock_.Advance(absl::Seconds(1));
    ASSERT_OK(optimizer_->CreateJob(r).status());
  }
  v1::ListOptimizationJobsRequest req;
  req.set_page_size(1);
  req.set_model("models/tiny");
  ASSERT_OK_AND_ASSIGN(auto page1, optimizer_->ListJobs(req));
  ASSERT_EQ(page1.jobs_size(), 1);
  ASSERT_FALSE(page1.next_page_token().empty());
  req.set_page_token(page1.next_page_token());
  ASSERT_OK_AND_ASSIGN(auto page2, optimizer_->ListJobs(req));
  ASSERT_EQ(page2.jobs_size(), 1);
  EXPECT_LT(page1.jobs(0).name(), page2.jobs(0).name());
  EXPECT_TRUE(page2.next_page_token().empty());
  req.set_model("models/other");
  EXPECT_THAT(
      optimizer_->ListJobs(req),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
  v1::ListOptimizationJobsRequest by_state;
  by_state.set_state(v1::JOB_STATE_SUCCEEDED);
  ASSERT_OK_AND_ASSIGN(auto none, optimizer_->ListJobs(by_state));
  EXPECT_EQ(none.jobs_size(), 0);
}

}  // namespace
}  // namespace hangar::optimizer
