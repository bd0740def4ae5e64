// RunnerServiceImpl over real gRPC on loopback: before the model is loaded
// every method answers UNAVAILABLE "model loading"; once loaded, Info
// reports the loop's values, and the recipe is read from the model's
// manifest.
#include "services/runner/runner_service.h"

#include "common/metrics/metrics.h"
#include "common/server/server.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "engine/tiny_model.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace hangar::runner {
namespace {

using ::hangar::testing::IsOk;

class RunnerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server =
        Server::Create({.name = "runner", .port = 0}, {&service_}, &metrics_);
    ASSERT_THAT(server, IsOk());
    server_ = std::move(server).value();
    stub_ = v1::RunnerService::NewStub(grpc::CreateChannel(
        server_->address(), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override { server_->Shutdown(); }

  MetricsRegistry metrics_;
  RunnerServiceImpl service_{
      {.deployment = "d", .revision = 2, .replica = "d-2-x"}};
  std::unique_ptr<Server> server_;
  std::unique_ptr<v1::RunnerService::Stub> stub_;
};

TEST_F(RunnerServiceTest, EveryMethodIsUnavailableWhileTheModelLoads) {
  {
    grpc::ClientContext context;
    v1::RunnerGenerateRequest request;
    request.add_sequences()->set_id("a");
    auto stream = stub_->Generate(&context, request);
    v1::RunnerGenerateResponse response;
    EXPECT_FALSE(stream->Read(&response));
    grpc::Status status = stream->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(status.error_message(), "model loading");
  }
  {
    grpc::ClientContext context;
    v1::RunnerCancelRequest request;
    request.add_sequence_ids("a");
    v1::RunnerCancelResponse response;
    EXPECT_EQ(stub_->Cancel(&context, request, &response).error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }
  {
    grpc::ClientContext context;
    v1::RunnerInfo response;
    EXPECT_EQ(stub_->Info(&context, {}, &response).error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }
}

TEST_F(RunnerServiceTest, InfoReportsTheLoopAndIdentityOnceLoaded) {
  std::string dir = hangar::testing::MakeTempDir("runner-service");
  ASSERT_THAT(engine::WriteTinyModel({}, dir), IsOk());
  auto model = engine::Model::Load(dir, {.threads = 1});
  ASSERT_THAT(model, IsOk());
  GenerationLoopOptions options{.max_batch = 3, .max_context = 128};
  options.sampling.set_top_p(0.5f);
  auto loop = GenerationLoop::Create(model->get(), options);
  ASSERT_THAT(loop, IsOk());
  service_.SetLoop(model->get(), loop->get());

  grpc::ClientContext context;
  v1::RunnerInfo info;
  ASSERT_TRUE(stub_->Info(&context, {}, &info).ok());
  EXPECT_EQ(info.deployment(), "d");
  EXPECT_EQ(info.revision(), 2);
  EXPECT_EQ(info.replica(), "d-2-x");
  EXPECT_EQ(info.recipe().engine(), v1::ENGINE_NONE);
  EXPECT_EQ(info.threads(), 1);
  EXPECT_EQ(info.batch_capacity(), 3);
  EXPECT_EQ(info.context_length(), 128);
  EXPECT_EQ(info.sampling().top_p(), 0.5f);
  EXPECT_EQ(info.sampling().max_tokens(), 128);
  server_->Shutdown();  // before the loop and model go away
}

TEST(RecipeOfTest, ReadsTheManifestsRecipe) {
  engine::ModelInfo info;
  info.quantization = "CTRANSLATE2:int8_bfloat16";
  v1::OptimizationRecipe recipe = RecipeOf(info);
  EXPECT_EQ(recipe.engine(), v1::ENGINE_CTRANSLATE2);
  EXPECT_EQ(recipe.quantization(), v1::QUANTIZATION_INT8_BFLOAT16);
  info.quantization = "VLLM:fp8";
  recipe = RecipeOf(info);
  EXPECT_EQ(recipe.engine(), v1::ENGINE_VLLM);
  EXPECT_EQ(recipe.quantization(), v1::QUANTIZATION_FP8);
  info.quantization = "q4_0";  // a GGUF file: source weights
  recipe = RecipeOf(info);
  EXPECT_EQ(recipe.engine(), v1::ENGINE_NONE);
  EXPECT_EQ(recipe.quantization(), v1::QUANTIZATION_UNSPECIFIED);
}

}  // namespace
}  // namespace hangar::runner
