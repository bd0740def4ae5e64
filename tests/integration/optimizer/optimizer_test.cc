// The real hangar-optimizer over a private PostgreSQL, with a stand-in
// scheduler job API (fake_scheduler.h) that runs the real hangar-optimize
// on a tiny model from make-tiny-model.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/testing/child_process.h"
#include "common/testing/ports.h"
#include "common/testing/postgres_server.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "common/util/sha256.h"
#include "engine/batch_decoder.h"
#include "engine/model.h"
#include "engine/tiny_model.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hangar/v1/optimizer.grpc.pb.h"
#include "tests/integration/optimizer/fake_scheduler.h"

namespace hangar::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::unique_ptr<grpc::ClientContext> Context(
    absl::Duration timeout = absl::Seconds(30)) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() +
                  absl::ToChronoMilliseconds(timeout));
  return c;
}

bool Ended(const v1::OptimizationJob& j) {
  return j.state() == v1::JOB_STATE_SUCCEEDED ||
         j.state() == v1::JOB_STATE_FAILED ||
         j.state() == v1::JOB_STATE_CANCELLED;
}

class OptimizerIntegrationTest : public PostgresTest {
 protected:
  void SetUp() override {
    PostgresTest::SetUp();
    if (HasFatalFailure()) return;
    dir_ = MakeTempDir("optimizer_it");
    fs::create_directories(dir_ + "/logs");
    source_ = dir_ + "/models/tiny";
    ASSERT_OK_AND_ASSIGN(
        auto make, ChildProcess::Start(
                       {MAKE_TINY_MODEL_BIN, "--out", source_, "--layers=2"}));
    ASSERT_THAT(make->Wait(absl::Seconds(60)), IsOkAndHolds(0))
        << make->Output();
    ASSERT_OK_AND_ASSIGN(sha_, Sha256OfFiles({source_ + "/model.safetensors"}));
    ASSERT_OK_AND_ASSIGN(scheduler_, FakeScheduler::Start(dir_ + "/logs"));
  }
  void TearDown() override {
    StopOptimizer(SIGTERM);
    scheduler_.reset();
  }

  void StartOptimizer(const std::vector<std::string>& extra = {}) {
    ASSERT_OK_AND_ASSIGN(int port, PickFreeLoopbackPort());
    std::vector<std::string> argv = {
        HANGAR_OPTIMIZER_BIN,
        absl::StrCat("--port=", port),
        "--metrics_port=-1",
        "--db=" + conninfo(),
        "--model_store=" + dir_ + "/store",
        "--scheduler_address=" + scheduler_->address(),
        std::string("--optimize_binary=") + HANGAR_OPTIMIZE_BIN,
        "--drain_timeout=1s"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    ASSERT_OK_AND_ASSIGN(optimizer_, ChildProcess::Start(argv));
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::OptimizerService::NewStub(channel_);
    ASSERT_TRUE(WaitUntil([&] {
      v1::ListOptimizationJobsResponse r;
      return stub_
          ->ListOptimizationJobs(Context(absl::Seconds(1)).get(), {}, &r)
          .ok();
    })) << optimizer_->Output();
  }
  void StopOptimizer(int signal_number) {
    if (optimizer_ == nullptr) return;
    optimizer_->Signal(signal_number);
    (void)optimizer_->Wait(absl::Seconds(30));
    optimizer_.reset();
    stub_.reset();
    channel_.reset();
  }

  v1::CreateOptimizationJobRequest Request(const std::string& request_id,
                                           v1::Engine engine,
                                           v1::Quantization quantization) {
    v1::CreateOptimizationJobRequest r;
    r.set_request_id(request_id);
    r.mutable_job()->set_model("models/tiny");
    r.mutable_job()->mutable_recipe()->set_engine(engine);
    r.mutable_job()->mutable_recipe()->set_quantization(quantization);
    r.mutable_job()->set_hardware("cpu-1");
    r.set_source_path(source_);
    r.set_source_sha256(sha_);
    return r;
  }
  absl::StatusOr<v1::OptimizationJob> Create(
      const v1::CreateOptimizationJobRequest& r) {
    v1::OptimizationJob job;
    grpc::Status s = stub_->CreateOptimizationJob(Context().get(), r, &job);
    if (!s.ok())
      return absl::Status(absl::StatusCode(s.error_code()), s.error_message());
    return job;
  }
  v1::OptimizationJob Get(const std::string& name) {
    v1::GetOptimizationJobRequest r;
    r.set_name(name);
    v1::OptimizationJob job;
    EXPECT_TRUE(stub_->GetOptimizationJob(Context().get(), r, &job).ok());
    return job;
  }
  v1::OptimizationJob WaitFor(
      const std::string& name,
      const std::function<bool(const v1::OptimizationJob&)>& pred) {
    v1::OptimizationJob job;
    EXPECT_TRUE(WaitUntil([&] {
      job = Get(name);
      return pred(job);
    })) << job.DebugString();
    return job;
  }
  // Entries of <store>/artifacts (temporary directories included).
  std::vector<std::string> ArtifactDirEntries() {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_ + "/store/artifacts", ec))
      names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  std::string dir_, source_, sha_;
  std::unique_ptr<FakeScheduler> scheduler_;
  std::unique_ptr<ChildProcess> optimizer_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::OptimizerService::Stub> stub_;
};

TEST_F(OptimizerIntegrationTest,
       Int8JobSucceedsTheArtifactGeneratesAndTheSameInputIsReused) {
  StartOptimizer();
  ASSERT_OK_AND_ASSIGN(
      v1::OptimizationJob job,
      Create(Request("r1", v1::ENGINE_CTRANSLATE2, v1::QUANTIZATION_INT8)));
  // Follow it with WatchOptimizationJob until it ends.
  v1::WatchOptimizationJobRequest watch;
  watch.set_name(job.name());
  auto context = Context(absl::Seconds(120));
  auto reader = stub_->WatchOptimizationJob(context.get(), watch);
  v1::OptimizationJob seen;
  std::vector<v1::JobState> states;
  while (reader->Read(&seen)) {
    if (states.empty() || states.back() != seen.state())
      states.push_back(seen.state());
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(states.back(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_EQ(seen.state(), v1::JOB_STATE_SUCCEEDED)
      << seen.DebugString() << optimizer_->Output();
  EXPECT_FALSE(seen.reused());
  EXPECT_TRUE(seen.quality().passed());
  EXPECT_GT(seen.quality().positions(), 10);
  EXPECT_LE(seen.quality().max_abs_logit_error(),
            seen.quality().max_abs_logit_error_bound());
  EXPECT_GT(seen.quality().greedy_agreement(), 0.5);
  EXPECT_GT(seen.quality().size_ratio(), 0.2);
  EXPECT_LT(seen.quality().size_ratio(), 0.6);
  EXPECT_EQ(seen.progress().phase(), v1::OPTIMIZATION_PHASE_DONE);
  EXPECT_GT(seen.progress().tensors_total(), 0);
  EXPECT_EQ(seen.progress().tensors_done(), seen.progress().tensors_total());
  EXPECT_GT(seen.progress().bytes_written(), 0);
  EXPECT_FALSE(seen.scheduler_job().empty());
  const std::string path =
      dir_ + "/store/artifacts/" + sha_ + "-ctranslate2-int8";
  EXPECT_EQ(fs::path(seen.artifact().path()).lexically_normal(),
            fs::path(path).lexically_normal());
  EXPECT_EQ(ArtifactDirEntries(),
            std::vector<std::string>{sha_ + "-ctranslate2-int8"});

  // The engine loads and runs the artifact.
  ASSERT_OK_AND_ASSIGN(
      auto model, engine::Model::Load(seen.artifact().path(), {.threads = 1}));
  EXPECT_EQ(model->info().quantization, "CTRANSLATE2:int8");
  ASSERT_OK_AND_ASSIGN(auto decoder, engine::BatchDecoder::Create(
                                         model.get(), {.max_batch = 1}));
  engine::SamplingParams p;
  p.temperature = 0;
  p.max_new_tokens = 4;
  p.ignore_eos = true;
  ASSERT_OK(
      decoder->Add({*model->tokenizer().Encode("The pilot"), p}).status());
  int tokens = 0;
  while (decoder->HasWork()) {
    ASSERT_OK_AND_ASSIGN(auto events, decoder->Step());
    for (const auto& e : events) tokens += e.token >= 0;
  }
  EXPECT_EQ(tokens, 4);

  // Same input, another request id: reused at once, no second conversion.
  ASSERT_OK_AND_ASSIGN(
      v1::OptimizationJob again,
      Create(Request("r2", v1::ENGINE_CTRANSLATE2, v1::QUANTIZATION_INT8)));
  EXPECT_EQ(again.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_TRUE(again.reused());
  EXPECT_EQ(again.artifact().name(), seen.artifact().name());
  EXPECT_EQ(scheduler_->submitted(), 1);
  // The first request id again: the first job.
  ASSERT_OK_AND_ASSIGN(
      v1::OptimizationJob same,
      Create(Request("r1", v1::ENGINE_CTRANSLATE2, v1::QUANTIZATION_INT8)));
  EXPECT_EQ(same.name(), job.name());
  v1::ListArtifactsResponse artifacts;
  ASSERT_TRUE(stub_->ListArtifacts(Context().get(), {}, &artifacts).ok());
  ASSERT_EQ(artifacts.artifacts_size(), 1);
  EXPECT_EQ(artifacts.artifacts(0).source_sha256(), sha_);
}

TEST_F(OptimizerIntegrationTest,
       GgufSourceConvertsThenReleaseAndCollectRemoveTheArtifact) {
  // A Q8_0 GGUF of the tiny model, converted to int8 through the service.
  const std::string gguf = dir_ + "/models/tiny-q8_0.gguf";
  ASSERT_OK(engine::ConvertToGguf(source_, gguf, "q8_0"));
  ASSERT_OK_AND_ASSIGN(std::string gguf_sha, Sha256OfFile(gguf));
  StartOptimizer({"--gc_grace=0s"});
  v1::CreateOptimizationJobRequest r =
      Request("dep-x-rev-1", v1::ENGINE_CTRANSLATE2, v1::QUANTIZATION_INT8);
  r.set_source_path(gguf);
  r.set_source_sha256(gguf_sha);
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob job, Create(r));
  v1::OptimizationJob done = WaitFor(job.name(), Ended);
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED)
      << done.DebugString() << optimizer_->Output();
  EXPECT_TRUE(done.quality().passed());
  ASSERT_GT(done.quality().notes_size(), 0);
  EXPECT_THAT(done.quality().notes(0),
              HasSubstr("Q8_0 tensors were dequantized"));
  ASSERT_OK_AND_ASSIGN(
      auto model, engine::Model::Load(done.artifact().path(), {.threads = 1}));
  EXPECT_EQ(model->info().format, "huggingface");
  EXPECT_EQ(model->info().quantization, "CTRANSLATE2:int8");

  // Held: a collection keeps it.
  v1::GarbageCollectArtifactsRequest gc;
  v1::GarbageCollectArtifactsResponse collected;
  ASSERT_TRUE(
      stub_->GarbageCollectArtifacts(Context().get(), gc, &collected).ok());
  EXPECT_EQ(collected.removed_size(), 0);
  // Released (as the deployment reconciler does when the revision is
  // retired): a dry run lists it, a collection removes it.
  v1::ReleaseOptimizationJobRequest release;
  release.set_request_id("dep-x-rev-1");
  release.set_name(job.name());
  v1::OptimizationJob released;
  ASSERT_TRUE(
      stub_->ReleaseOptimizationJob(Context().get(), release, &released).ok());
  EXPECT_EQ(released.name(), job.name());
  gc.set_dry_run(true);
  ASSERT_TRUE(
      stub_->GarbageCollectArtifacts(Context().get(), gc, &collected).ok());
  ASSERT_EQ(collected.removed_size(), 1);
  EXPECT_EQ(collected.removed(0).kind(), "artifact");
  EXPECT_GT(collected.bytes_freed(), 0);
  EXPECT_TRUE(fs::exists(done.artifact().path()));
  gc.set_dry_run(false);
  ASSERT_TRUE(
      stub_->GarbageCollectArtifacts(Context().get(), gc, &collected).ok());
  ASSERT_EQ(collected.removed_size(), 1);
  EXPECT_FALSE(fs::exists(done.artifact().path()));
  EXPECT_TRUE(ArtifactDirEntries().empty());
  v1::ListArtifactsResponse artifacts;
  ASSERT_TRUE(stub_->ListArtifacts(Context().get(), {}, &artifacts).ok());
  EXPECT_EQ(artifacts.artifacts_size(), 0);
  // An unknown request id is NOT_FOUND.
  release.set_request_id("dep-x-rev-9");
  release.clear_name();
  EXPECT_EQ(stub_->ReleaseOptimizationJob(Context().get(), release, &released)
                .error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(OptimizerIntegrationTest, TruncatedGgufFailsTheJobWithTheReason) {
  const std::string gguf = dir_ + "/models/tiny-f16.gguf";
  ASSERT_OK(engine::ConvertToGguf(source_, gguf, "f16"));
  fs::resize_file(gguf, fs::file_size(gguf) / 2);
  ASSERT_OK_AND_ASSIGN(std::string gguf_sha, Sha256OfFile(gguf));
  StartOptimizer();
  v1::CreateOptimizationJobRequest r =
      Request("r1", v1::ENGINE_CTRANSLATE2, v1::QUANTIZATION_INT8);
  r.set_source_path(gguf);
  r.set_source_sha256(gguf_sha);
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob job, Create(r));
  v1::OptimizationJob done = WaitFor(job.name(), Ended);
  EXPECT_EQ(done.state(), v1::JOB_STATE_FAILED) << done.DebugString();
  EXPECT_THAT(done.failure_reason(),
              ::testing::AllOf(HasSubstr("exited 2"), HasSubstr(gguf)));
  EXPECT_TRUE(ArtifactDirEntries().empty());
}

TEST_F(OptimizerIntegrationTest,
       CTranslate2WithFp8IsInvalidArgumentNamingTheField) {
  StartOptimizer();
  EXPECT_THAT(
      Create(Request("r1", v1::ENGINE_CTRANSLATE2, v1::QUANTIZATION_FP8)),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("job.recipe.quantization")));
  EXPECT_EQ(scheduler_->submitted(), 0);
}

TEST_F(OptimizerIntegrationTest, ATinyBoundFailsTheJobAndKeepsTheReport) {
  StartOptimizer({"--max_logit_error_bounds=VLLM/bfloat16=1e-12"});
  ASSERT_OK_AND_ASSIGN(
      v1::OptimizationJob job,
      Create(Request("r1", v1::ENGINE_VLLM, v1::QUANTIZATION_BFLOAT16)));
  job = WaitFor(job.name(), Ended);
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED) << job.DebugString();
  EXPECT_THAT(job.failure_reason(), HasSubstr("quality gate"));
  EXPECT_FALSE(job.quality().passed());
  EXPECT_GT(job.quality().max_abs_logit_error(), 1e-12);
  EXPECT_EQ(job.quality().max_abs_logit_error_bound(), 1e-12);
  EXPECT_FALSE(job.has_artifact());
  // Only the report, beside where the artifact would have gone.
  EXPECT_EQ(ArtifactDirEntries(),
            std::vector<std::string>{sha_ + "-vllm-bfloat16.report.json"});
}

TEST_F(OptimizerIntegrationTest, CancelMidConversionLeavesNoPartialArtifact) {
  // A bigger model (~15 M parameters), so the job is stopped early in its
  // conversion.
  const std::string small = dir_ + "/models/small";
  ASSERT_OK_AND_ASSIGN(
      auto make, ChildProcess::Start(
                     {MAKE_TINY_MODEL_BIN, "--out", small, "--preset=small"}));
  ASSERT_THAT(make->Wait(absl::Seconds(60)), IsOkAndHolds(0)) << make->Output();
  StartOptimizer();
  scheduler_->pause_at_progress(true);
  auto request = Request("r1", v1::ENGINE_CTRANSLATE2, v1::QUANTIZATION_INT8);
  request.set_source_path(small);
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob job, Create(request));
  job = WaitFor(job.name(), [&](const auto& j) {
    return j.state() == v1::JOB_STATE_RUNNING &&
           j.progress().tensors_done() > 0 &&
           scheduler_->paused(j.scheduler_job());
  });
  EXPECT_THAT(job.progress().phase(),
              ::testing::AnyOf(v1::OPTIMIZATION_PHASE_CONVERTING,
                               v1::OPTIMIZATION_PHASE_EVALUATING));
  EXPECT_GT(job.progress().bytes_written(), 0);
  // A temporary directory exists while it converts.
  ASSERT_EQ(ArtifactDirEntries().size(), 1u);
  EXPECT_THAT(ArtifactDirEntries()[0], HasSubstr(".tmp-"));
  v1::CancelOptimizationJobRequest cancel;
  cancel.set_name(job.name());
  v1::OptimizationJob cancelled;
  ASSERT_TRUE(
      stub_->CancelOptimizationJob(Context().get(), cancel, &cancelled).ok());
  EXPECT_EQ(cancelled.state(), v1::JOB_STATE_CANCELLED);
  ASSERT_TRUE(WaitUntil([&] {
    return scheduler_->state(job.scheduler_job()) == v1::JOB_STATE_CANCELLED;
  }));
  EXPECT_TRUE(ArtifactDirEntries().empty());
  EXPECT_EQ(Get(job.name()).state(), v1::JOB_STATE_CANCELLED);
  grpc::Status again =
      stub_->CancelOptimizationJob(Context().get(), cancel, &cancelled);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(OptimizerIntegrationTest, KillDashNineMidJobThenRestartCompletesOnce) {
  StartOptimizer();
  scheduler_->hold_pool(true);
  ASSERT_OK_AND_ASSIGN(
      v1::OptimizationJob job,
      Create(Request("r1", v1::ENGINE_VLLM, v1::QUANTIZATION_FP8)));
  job = WaitFor(job.name(),
                [](const auto& j) { return !j.pending_reason().empty(); });
  EXPECT_EQ(job.state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(job.pending_reason(), "pool full: 0 of 1 GPUs free");
  // Running, stopped mid-conversion; then the optimizer dies.
  scheduler_->pause_at_progress(true);
  scheduler_->hold_pool(false);
  job = WaitFor(job.name(), [&](const auto& j) {
    return j.state() == v1::JOB_STATE_RUNNING &&
           scheduler_->paused(j.scheduler_job());
  });
  StopOptimizer(SIGKILL);
  StartOptimizer();
  scheduler_->Resume();
  job = WaitFor(job.name(), Ended);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.DebugString();
  EXPECT_TRUE(job.quality().passed());
  EXPECT_EQ(scheduler_->submitted(), 1);
  EXPECT_EQ(ArtifactDirEntries(), std::vector<std::string>{sha_ + "-vllm-fp8"});
  v1::ListOptimizationJobsResponse list;
  ASSERT_TRUE(stub_->ListOptimizationJobs(Context().get(), {}, &list).ok());
  EXPECT_EQ(list.jobs_size(), 1);
}

}  // namespace
}  // namespace hangar::testing
