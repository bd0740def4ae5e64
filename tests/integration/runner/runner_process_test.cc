// hangar-runner as a real child process: it loads a generated tiny model,
// reports its port, turns SERVING, streams batched generations over gRPC,
// honours deadlines, refuses bad input and bad model paths clearly, and
// drains on SIGTERM.
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/testing/child_process.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "engine/tiny_model.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hangar/v1/runner.grpc.pb.h"

namespace hangar {
namespace {

using ::hangar::testing::ChildProcess;
using ::hangar::testing::IsOk;
using ::hangar::testing::IsOkAndHolds;
using ::hangar::testing::MakeTempDir;
using ::hangar::testing::WaitUntil;
using ::testing::HasSubstr;
using ::testing::Not;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  return text;
}

class RunnerProcessTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_dir_ = new std::string(MakeTempDir("runner-model"));
    ASSERT_THAT(engine::WriteTinyModel({}, *model_dir_), IsOk());
  }
  static void TearDownTestSuite() { delete model_dir_; }

  // Starts a runner and waits until it is SERVING.
  void StartRunner(std::vector<std::string> extra = {}) {
    port_file_ = MakeTempDir("runner-port") + "/port";
    std::vector<std::string> argv = {HANGAR_RUNNER_PATH,
                                     "--model=" + *model_dir_,
                                     "--port_file=" + port_file_,
                                     "--threads=1", "--max_batch=4"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto child = ChildProcess::Start(argv);
    ASSERT_THAT(child, IsOk());
    runner_ = std::move(child).value();
    ASSERT_TRUE(WaitUntil([&] {
      struct stat info;
      return stat(port_file_.c_str(), &info) == 0 || !runner_->Running();
    })) << runner_->Output();
    ASSERT_TRUE(runner_->Running()) << runner_->Output();
    std::string port(absl::StripAsciiWhitespace(ReadFile(port_file_)));
    channel_ = grpc::CreateChannel("127.0.0.1:" + port,
                                   grpc::InsecureChannelCredentials());
    auto health = grpc::health::v1::Health::NewStub(channel_);
    ASSERT_TRUE(WaitUntil([&] {
      grpc::ClientContext context;
      grpc::health::v1::HealthCheckResponse response;
      return health->Check(&context, {}, &response).ok() &&
             response.status() ==
                 grpc::health::v1::HealthCheckResponse::SERVING;
    })) << runner_->Output();
    stub_ = v1::RunnerService::NewStub(channel_);
  }

  static std::string* model_dir_;
  std::string port_file_;
  std::unique_ptr<ChildProcess> runner_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::RunnerService::Stub> stub_;
};

std::string* RunnerProcessTest::model_dir_ = nullptr;

TEST_F(RunnerProcessTest, StreamsABatchWithPerSequenceFinishes) {
  StartRunner();
  v1::RunnerGenerateRequest request;
  const int max_tokens[] = {4, 10, 7};
  for (int limit : max_tokens) {
    v1::RunnerSequence* sequence = request.add_sequences();
    sequence->set_prompt("Once upon a time");
    sequence->mutable_sampling()->set_max_tokens(limit);
    sequence->mutable_sampling()->set_temperature(0.8f);
    sequence->mutable_sampling()->set_seed(7);
  }
  grpc::ClientContext context;
  auto stream = stub_->Generate(&context, request);
  v1::RunnerGenerateResponse response;
  std::vector<int> tokens(3, 0);
  std::vector<v1::RunnerGenerateResponse> last(3);
  int messages = 0;
  while (stream->Read(&response)) {
    ++messages;
    tokens[response.index()] += response.token_ids_size();
    if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      last[response.index()] = response;
    }
  }
  ASSERT_TRUE(stream->Finish().ok());
  EXPECT_GT(messages, 3);  // streamed, not one message per sequence
  for (int i = 0; i < 3; ++i) {
    // Each ends by length at its own limit, unless it sampled EOS first.
    EXPECT_NE(last[i].finish_reason(), v1::FINISH_REASON_UNSPECIFIED) << i;
    EXPECT_EQ(last[i].usage().completion_tokens(), tokens[i]) << i;
    EXPECT_LE(tokens[i], max_tokens[i]) << i;
    if (last[i].finish_reason() == v1::FINISH_REASON_LENGTH) {
      EXPECT_EQ(tokens[i], max_tokens[i]) << i;
    }
    EXPECT_GT(last[i].usage().prompt_tokens(), 0) << i;
  }

  grpc::ClientContext info_context;
  v1::RunnerInfo info;
  ASSERT_TRUE(stub_->Info(&info_context, {}, &info).ok());
  EXPECT_EQ(info.batch_capacity(), 4);
  EXPECT_EQ(info.threads(), 1);
  EXPECT_GT(info.parameter_count(), 0);
  EXPECT_GT(info.weight_bytes(), 0);
  EXPECT_GT(info.kv_cache_bytes(), 0);
  EXPECT_EQ(info.weight_dtype(), "float32");
}

TEST_F(RunnerProcessTest, BadInputIsInvalidArgumentAndTheRunnerLivesOn) {
  StartRunner();
  auto call = [&](auto edit) {
    v1::RunnerGenerateRequest request;
    v1::RunnerSequence* sequence = request.add_sequences();
    sequence->set_prompt("hi");
    edit(*sequence);
    grpc::ClientContext context;
    auto stream = stub_->Generate(&context, request);
    v1::RunnerGenerateResponse response;
    while (stream->Read(&response)) {
    }
    return stream->Finish();
  };
  grpc::Status status = call([](auto& s) { s.mutable_sampling()->set_top_p(1.5); });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("top_p"));
  status = call([](auto& s) { s.mutable_sampling()->set_temperature(-1); });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("temperature"));
  status = call([](auto& s) { s.mutable_sampling()->set_top_k(-3); });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  status = call([](auto& s) { s.set_prompt(std::string(100000, 'a')); });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("context"));
  status = call([](auto& s) {
    s.clear_prompt();
    s.add_prompt_ids(-4);
  });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("prompt_ids"));
  // Still serving.
  EXPECT_TRUE(runner_->Running());
  grpc::ClientContext context;
  v1::RunnerInfo info;
  EXPECT_TRUE(stub_->Info(&context, {}, &info).ok());
}

TEST_F(RunnerProcessTest, DeadlineStopsTheSequence) {
  StartRunner({"--max_context=512"});
  v1::RunnerGenerateRequest request;
  v1::RunnerSequence* sequence = request.add_sequences();
  sequence->set_prompt("a");
  sequence->mutable_sampling()->set_max_tokens(100000);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(30));
  auto stream = stub_->Generate(&context, request);
  v1::RunnerGenerateResponse response;
  while (stream->Read(&response)) {
  }
  grpc::Status status = stream->Finish();
  // Either the deadline cut it, or the tiny model ended it (EOS / context)
  // sooner; in both cases the runner must free the slot.
  if (!status.ok()) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  EXPECT_TRUE(WaitUntil([&] {
    grpc::ClientContext info_context;
    v1::RunnerInfo info;
    return stub_->Info(&info_context, {}, &info).ok() &&
           info.active_sequences() == 0;
  }));
}

TEST_F(RunnerProcessTest, SigtermDrainsAndExitsZero) {
  StartRunner();
  ASSERT_TRUE(runner_->Signal(SIGTERM));
  EXPECT_THAT(runner_->Wait(absl::Seconds(60)), IsOkAndHolds(0));
  EXPECT_THAT(runner_->Output(), HasSubstr("draining"));
}

TEST(RunnerStartupTest, BadModelPathFailsFastWithOneClearLine) {
  auto child = ChildProcess::Start(
      {HANGAR_RUNNER_PATH, "--model=/nonexistent/model", "--metrics_port=-1"});
  ASSERT_THAT(child, IsOk());
  EXPECT_THAT((*child)->Wait(absl::Seconds(60)), IsOkAndHolds(Not(0)));
  std::string output = (*child)->Output();
  EXPECT_THAT(output, HasSubstr("/nonexistent/model"));
  EXPECT_EQ(std::count(output.begin(), output.end(), '\n'), 1) << output;
}

TEST(RunnerStartupTest, MalformedFlagFailsWithOneClearLine) {
  auto child = ChildProcess::Start({HANGAR_RUNNER_PATH, "--max_batch=lots"});
  ASSERT_THAT(child, IsOk());
  EXPECT_THAT((*child)->Wait(absl::Seconds(60)), IsOkAndHolds(Not(0)));
  std::string output = (*child)->Output();
  EXPECT_THAT(output, HasSubstr("max_batch"));
  EXPECT_EQ(std::count(output.begin(), output.end(), '\n'), 1) << output;
}

}  // namespace
}  // namespace hangar
