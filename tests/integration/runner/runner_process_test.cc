// hangar-runner as a real child process: it loads a generated tiny model,
// reports its port, turns SERVING, streams batched generations over gRPC with
// the per-sequence contract (ids, Cancel by id, per-sequence errors and
// timeouts while the other sequences continue), names its replica, recipe,
// threads and sampling values in Info, refuses every out-of-contract sampling
// value with the field named, and drains on SIGTERM.
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/testing/child_process.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "engine/quantize.h"
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
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr int kInvalidArgument = 3;
constexpr int kDeadlineExceeded = 4;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  return text;
}

// What one sequence of a call streamed.
struct SequenceResult {
  int messages = 0;
  int tokens = 0;
  std::string text;
  // Its last message (finish_reason set).
  v1::RunnerGenerateResponse last;
};

struct CallResult {
  grpc::Status status;
  std::map<std::string, SequenceResult> sequences;
};

v1::RunnerSequence* AddSequence(v1::RunnerGenerateRequest& request,
                                const std::string& id, int max_tokens,
                                const std::string& prompt = "Once upon") {
  v1::RunnerSequence* sequence = request.add_sequences();
  sequence->set_id(id);
  sequence->set_prompt(prompt);
  sequence->mutable_sampling()->set_temperature(0);
  sequence->mutable_sampling()->set_max_tokens(max_tokens);
  return sequence;
}

class RunnerProcessTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_dir_ = new std::string(MakeTempDir("runner-model"));
    // A long context, so that a long generation outlasts short timeouts.
    ASSERT_THAT(
        engine::WriteTinyModel({.max_position_embeddings = 4096}, *model_dir_),
        IsOk());
  }
  static void TearDownTestSuite() { delete model_dir_; }

  // Starts a runner on `model` (the tiny model by default) and waits until
  // it is SERVING.
  void StartRunner(std::vector<std::string> extra = {},
                   std::string model = "") {
    port_file_ = MakeTempDir("runner-port") + "/port";
    std::vector<std::string> argv = {
        HANGAR_RUNNER_PATH,
        "--model=" + (model.empty() ? *model_dir_ : model),
        "--port_file=" + port_file_,
        "--metrics_port=-1",
        "--threads=1",
        "--max_batch=4",
        "--max_tokens=3000"};
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

  // Runs one Generate call to its end; `on_message` sees each message as it
  // arrives.
  CallResult Generate(const v1::RunnerGenerateRequest& request,
                      std::function<void(const v1::RunnerGenerateResponse&)>
                          on_message = nullptr,
                      grpc::ClientContext* context = nullptr) {
    grpc::ClientContext own_context;
    if (context == nullptr) context = &own_context;
    auto stream = stub_->Generate(context, request);
    CallResult result;
    v1::RunnerGenerateResponse response;
    while (stream->Read(&response)) {
      if (on_message) on_message(response);
      SequenceResult& sequence = result.sequences[response.sequence_id()];
      EXPECT_EQ(request.sequences(response.index()).id(),
                response.sequence_id());
      EXPECT_EQ(sequence.last.finish_reason(), v1::FINISH_REASON_UNSPECIFIED)
          << "a message after the last one of " << response.sequence_id();
      ++sequence.messages;
      sequence.tokens += response.token_ids_size();
      sequence.text += response.delta();
      sequence.last = response;
    }
    result.status = stream->Finish();
    return result;
  }

  v1::RunnerInfo Info() {
    grpc::ClientContext context;
    v1::RunnerInfo info;
    EXPECT_TRUE(stub_->Info(&context, {}, &info).ok());
    return info;
  }

  v1::RunnerCancelResponse Cancel(std::vector<std::string> ids,
                                  grpc::Status* status = nullptr) {
    grpc::ClientContext context;
    v1::RunnerCancelRequest request;
    for (const std::string& id : ids) request.add_sequence_ids(id);
    v1::RunnerCancelResponse response;
    grpc::Status result = stub_->Cancel(&context, request, &response);
    if (status != nullptr) {
      *status = result;
    } else {
      EXPECT_TRUE(result.ok()) << result.error_message();
    }
    return response;
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
  for (int i = 0; i < 3; ++i) {
    v1::RunnerSequence* sequence =
        AddSequence(request, absl::StrCat("seq-", i), max_tokens[i]);
    sequence->mutable_sampling()->set_temperature(0.8f);
    sequence->mutable_sampling()->set_seed(7);
  }
  CallResult result = Generate(request);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  int messages = 0;
  for (int i = 0; i < 3; ++i) {
    const SequenceResult& sequence = result.sequences[absl::StrCat("seq-", i)];
    messages += sequence.messages;
    // Each ends by length at its own limit, unless it sampled EOS first.
    EXPECT_NE(sequence.last.finish_reason(), v1::FINISH_REASON_UNSPECIFIED);
    EXPECT_EQ(sequence.last.usage().completion_tokens(), sequence.tokens);
    EXPECT_LE(sequence.tokens, max_tokens[i]);
    if (sequence.last.finish_reason() == v1::FINISH_REASON_LENGTH) {
      EXPECT_EQ(sequence.tokens, max_tokens[i]);
    }
    EXPECT_GT(sequence.last.usage().prompt_tokens(), 0);
    EXPECT_EQ(sequence.last.index(), i);
    EXPECT_FALSE(sequence.last.has_error());
  }
  EXPECT_GT(messages, 3);  // streamed, not one message per sequence
}

TEST_F(RunnerProcessTest, OneCancelledAndOneInvalidSequenceLeaveTheOthers) {
  StartRunner();
  v1::RunnerGenerateRequest request;
  AddSequence(request, "keep-a", 12);
  AddSequence(request, "cancel-me", 3000);
  AddSequence(request, "invalid", 12)->mutable_sampling()->set_top_p(1.5f);
  AddSequence(request, "keep-b", 12, "The cat");
  bool cancel_sent = false;
  CallResult result =
      Generate(request, [&](const v1::RunnerGenerateResponse& response) {
        if (cancel_sent || response.sequence_id() != "cancel-me") return;
        cancel_sent = true;
        v1::RunnerCancelResponse cancelled = Cancel({"cancel-me", "unknown"});
        EXPECT_THAT(cancelled.cancelled(), ElementsAre("cancel-me"));
        EXPECT_THAT(cancelled.not_found(), ElementsAre("unknown"));
      });
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  ASSERT_TRUE(cancel_sent);

  const SequenceResult& invalid = result.sequences["invalid"];
  EXPECT_EQ(invalid.messages, 1);
  EXPECT_EQ(invalid.last.finish_reason(), v1::FINISH_REASON_ERROR);
  EXPECT_EQ(invalid.last.index(), 2);
  EXPECT_EQ(invalid.last.error().code(), kInvalidArgument);
  EXPECT_EQ(invalid.last.error().message(),
            "sequences[2].sampling.top_p: must be in (0, 1]; was 1.5");

  const SequenceResult& cancelled = result.sequences["cancel-me"];
  EXPECT_EQ(cancelled.last.finish_reason(), v1::FINISH_REASON_CANCELLED);
  EXPECT_FALSE(cancelled.last.has_error());
  EXPECT_LT(cancelled.tokens, 3000);

  for (const char* id : {"keep-a", "keep-b"}) {
    const SequenceResult& kept = result.sequences[id];
    EXPECT_GT(kept.tokens, 0) << id;
    EXPECT_THAT(
        kept.last.finish_reason(),
        ::testing::AnyOf(v1::FINISH_REASON_LENGTH, v1::FINISH_REASON_EOS))
        << id;
    EXPECT_EQ(kept.last.usage().completion_tokens(), kept.tokens) << id;
    EXPECT_FALSE(kept.last.has_error()) << id;
  }
  // Nothing is held any more.
  EXPECT_THAT(Cancel({"keep-a", "cancel-me"}).not_found(),
              ElementsAre("keep-a", "cancel-me"));
}

TEST_F(RunnerProcessTest, ASequencePastItsTimeoutEndsWhileTheOtherFinishes) {
  StartRunner();
  v1::RunnerGenerateRequest request;
  v1::RunnerSequence* timed = AddSequence(request, "timed", 3000);
  timed->mutable_timeout()->set_nanos(50'000'000);  // 50 ms
  AddSequence(request, "untimed", 20);
  CallResult result = Generate(request);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  const SequenceResult& ended = result.sequences["timed"];
  EXPECT_EQ(ended.last.finish_reason(), v1::FINISH_REASON_CANCELLED);
  EXPECT_EQ(ended.last.error().code(), kDeadlineExceeded);
  EXPECT_THAT(ended.last.error().message(), HasSubstr("timeout"));
  EXPECT_LT(ended.tokens, 3000);
  const SequenceResult& other = result.sequences["untimed"];
  EXPECT_GT(other.tokens, 0);
  EXPECT_NE(other.last.finish_reason(), v1::FINISH_REASON_CANCELLED);
  EXPECT_FALSE(other.last.has_error());
}

TEST_F(RunnerProcessTest, InfoNamesTheReplicaThreadsAndSampling) {
  StartRunner({"--deployment=chat", "--revision=3", "--replica=chat-3-a",
               "--threads=2", "--temperature=0.5", "--top_k=40",
               "--stop_sequences=\\n\\n,END,a\\,b"});
  v1::RunnerInfo info = Info();
  EXPECT_EQ(info.deployment(), "chat");
  EXPECT_EQ(info.revision(), 3);
  EXPECT_EQ(info.replica(), "chat-3-a");
  EXPECT_EQ(info.recipe().engine(), v1::ENGINE_NONE);
  EXPECT_EQ(info.recipe().quantization(), v1::QUANTIZATION_UNSPECIFIED);
  EXPECT_EQ(info.threads(), 2);
  EXPECT_EQ(info.batch_capacity(), 4);
  EXPECT_EQ(info.context_length(), 4096);
  EXPECT_GT(info.parameter_count(), 0);
  EXPECT_GT(info.weight_bytes(), 0);
  EXPECT_GT(info.kv_cache_bytes(), 0);
  EXPECT_EQ(info.weight_dtype(), "float32");
  EXPECT_EQ(info.sampling().temperature(), 0.5f);
  EXPECT_EQ(info.sampling().max_tokens(), 3000);
  EXPECT_EQ(info.sampling().top_p(), 1.0f);
  EXPECT_EQ(info.sampling().top_k(), 40);
  EXPECT_THAT(info.sampling().stop_sequences(),
              ElementsAre("\n\n", "END", "a,b"));
  EXPECT_FALSE(info.sampling().has_seed());

  // The deployment's values bound the overrides: top_k 0 (off) and a higher
  // temperature loosen them.
  v1::RunnerGenerateRequest request;
  AddSequence(request, "loose-k", 4)->mutable_sampling()->set_top_k(0);
  v1::RunnerSequence* hot = AddSequence(request, "hot", 4);
  hot->mutable_sampling()->set_temperature(0.6f);
  AddSequence(request, "fine", 4)->mutable_sampling()->set_top_k(40);
  CallResult result = Generate(request);
  ASSERT_TRUE(result.status.ok());
  EXPECT_EQ(result.sequences["loose-k"].last.error().message(),
            "sequences[0].sampling.top_k: must be in [1, the deployment's "
            "40]; was 0");
  EXPECT_EQ(result.sequences["hot"].last.error().message(),
            "sequences[1].sampling.temperature: must be at most the "
            "deployment's 0.5; was 0.6");
  EXPECT_FALSE(result.sequences["fine"].last.has_error());
  EXPECT_GT(result.sequences["fine"].tokens, 0);
}

TEST_F(RunnerProcessTest, InfoReportsTheArtifactsRecipe) {
  std::string artifact = MakeTempDir("runner-artifact") + "/int8";
  ASSERT_THAT(engine::QuantizeModel({.source_dir = *model_dir_,
                                     .output_dir = artifact,
                                     .engine = "CTRANSLATE2",
                                     .quantization = "int8_float16",
                                     .threads = 1}),
              IsOk());
  StartRunner({}, artifact);
  v1::RunnerInfo info = Info();
  EXPECT_EQ(info.recipe().engine(), v1::ENGINE_CTRANSLATE2);
  EXPECT_EQ(info.recipe().quantization(), v1::QUANTIZATION_INT8_FLOAT16);
  EXPECT_EQ(info.weight_dtype(), "int8");
}

TEST_F(RunnerProcessTest, OutOfContractSamplingIsRefusedNamingTheField) {
  StartRunner({"--max_batch=8"});
  v1::RunnerGenerateRequest request;
  AddSequence(request, "t", 4)->mutable_sampling()->set_temperature(1e30f);
  AddSequence(request, "k", 4)->mutable_sampling()->set_top_k(1001);
  v1::RunnerSequence* many = AddSequence(request, "stops", 4);
  for (int i = 0; i < 17; ++i) {
    many->mutable_sampling()->add_stop_sequences(absl::StrCat("s", i));
  }
  AddSequence(request, "long-stop", 4)
      ->mutable_sampling()
      ->add_stop_sequences(std::string(65, 'x'));
  AddSequence(request, "m", 4)->mutable_sampling()->set_max_tokens(1000000000);
  AddSequence(request, "both", 4)->add_prompt_ids(5);
  AddSequence(request, "huge-prompt", 4, std::string(40000, 'a'));
  AddSequence(request, "fine", 4);
  CallResult result = Generate(request);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  const std::map<std::string, std::string> expected = {
      {"t", "sequences[0].sampling.temperature: must be finite and in [0, 2]"},
      {"k", "sequences[1].sampling.top_k: must be in [0, 1000]; was 1001"},
      {"stops", "sequences[2].sampling.stop_sequences: at most 16; was 17"},
      {"long-stop",
       "sequences[3].sampling.stop_sequences[0]: must be 1 to 64 bytes; was "
       "65"},
      {"m", "sequences[4].sampling.max_tokens: must be in [1, 4096]"},
      {"both", "sequences[5].prompt: give prompt or prompt_ids, not both"},
      {"huge-prompt", "sequences[6].prompt: must be shorter than the context"},
  };
  for (const auto& [id, message] : expected) {
    const SequenceResult& sequence = result.sequences[id];
    EXPECT_EQ(sequence.last.finish_reason(), v1::FINISH_REASON_ERROR) << id;
    EXPECT_EQ(sequence.last.error().code(), kInvalidArgument) << id;
    EXPECT_THAT(sequence.last.error().message(), StartsWith(message)) << id;
    EXPECT_EQ(sequence.tokens, 0) << id;
  }
  EXPECT_GT(result.sequences["fine"].tokens, 0);
  EXPECT_FALSE(result.sequences["fine"].last.has_error());
  EXPECT_TRUE(runner_->Running());
}

TEST_F(RunnerProcessTest, CallLevelProblemsFailTheWholeCall) {
  StartRunner();
  v1::RunnerGenerateRequest duplicate;
  AddSequence(duplicate, "same", 4);
  AddSequence(duplicate, "same", 4);
  CallResult result = Generate(duplicate);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(result.status.error_message(),
              StartsWith("sequences[1].id: duplicates sequences[0].id"));
  EXPECT_TRUE(result.sequences.empty());

  v1::RunnerGenerateRequest too_many;
  for (int i = 0; i < 5; ++i) AddSequence(too_many, absl::StrCat("s", i), 4);
  result = Generate(too_many);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(result.status.error_message(), HasSubstr("batch capacity"));

  result = Generate({});
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  grpc::Status status;
  Cancel({}, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("sequence_ids"));
}

TEST_F(RunnerProcessTest, ClientCancellingTheCallStopsItsSequences) {
  StartRunner();
  v1::RunnerGenerateRequest request;
  AddSequence(request, "long-1", 3000);
  AddSequence(request, "long-2", 3000);
  grpc::ClientContext context;
  bool cancelled = false;
  CallResult result = Generate(
      request,
      [&](const v1::RunnerGenerateResponse&) {
        if (!cancelled) context.TryCancel();
        cancelled = true;
      },
      &context);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitUntil([&] {
    v1::RunnerInfo info = Info();
    return info.active_sequences() == 0 && info.queued_sequences() == 0;
  }));
  EXPECT_THAT(Cancel({"long-1", "long-2"}).not_found(),
              ElementsAre("long-1", "long-2"));
}

TEST_F(RunnerProcessTest, ConcurrentCallsAndCancelsLeaveNothingHeld) {
  StartRunner({"--max_queue=64"});
  // Eight clients, each making calls that end in every way at once: normal
  // finishes, Cancel by id, the client cancelling mid-stream.
  std::vector<std::thread> clients;
  std::atomic<int> finished_calls{0};
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&, c] {
      for (int round = 0; round < 4; ++round) {
        v1::RunnerGenerateRequest request;
        const std::string prefix = absl::StrCat("c", c, "-r", round, "-");
        AddSequence(request, prefix + "short", 5);
        AddSequence(request, prefix + "long", 3000);
        grpc::ClientContext context;
        auto stream = stub_->Generate(&context, request);
        v1::RunnerGenerateResponse response;
        int messages = 0;
        while (stream->Read(&response)) {
          if (++messages != 2) continue;
          if (round % 2 == 0) {
            grpc::ClientContext cancel_context;
            v1::RunnerCancelRequest cancel;
            cancel.add_sequence_ids(prefix + "long");
            v1::RunnerCancelResponse cancelled;
            EXPECT_TRUE(
                stub_->Cancel(&cancel_context, cancel, &cancelled).ok());
          } else {
            context.TryCancel();
          }
        }
        grpc::Status status = stream->Finish();
        if (round % 2 == 0) {
          EXPECT_TRUE(status.ok()) << status.error_message();
        } else {
          EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
        }
        ++finished_calls;
      }
    });
  }
  for (std::thread& client : clients) client.join();
  EXPECT_EQ(finished_calls.load(), 32);
  EXPECT_TRUE(WaitUntil([&] {
    v1::RunnerInfo info = Info();
    return info.active_sequences() == 0 && info.queued_sequences() == 0;
  }));
  EXPECT_TRUE(runner_->Running());
}

TEST_F(RunnerProcessTest, CallDeadlineStopsItsSequences) {
  StartRunner();
  v1::RunnerGenerateRequest request;
  AddSequence(request, "a", 3000);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(30));
  CallResult result = Generate(request, nullptr, &context);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(WaitUntil([&] { return Info().active_sequences() == 0; }));
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

TEST(RunnerStartupTest, OutOfContractSamplingFlagExitsTwoNamingTheFlag) {
  std::string seventeen;
  for (int i = 0; i < 17; ++i)
    absl::StrAppend(&seventeen, i ? "," : "", "s", i);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--temperature=1e30", "--temperature: must be finite and in [0, 2]"},
      {"--top_k=1001", "--top_k: must be in [0, 1000]; was 1001"},
      {"--top_p=1.5", "--top_p: must be in (0, 1]; was 1.5"},
      {"--max_tokens=0", "--max_tokens: must be at least 1; was 0"},
      {"--stop_sequences=" + seventeen, "--stop_sequences: at most 16; was 17"},
      {"--stop_sequences=ok," + std::string(65, 'x'),
       "--stop_sequences[1]: must be 1 to 64 bytes; was 65"},
  };
  for (const auto& [flag, message] : cases) {
    auto child = ChildProcess::Start(
        {HANGAR_RUNNER_PATH, "--model=/unused", "--metrics_port=-1", flag});
    ASSERT_THAT(child, IsOk());
    EXPECT_THAT((*child)->Wait(absl::Seconds(60)), IsOkAndHolds(2)) << flag;
    std::string output = (*child)->Output();
    EXPECT_THAT(output, HasSubstr(message)) << flag;
    EXPECT_EQ(std::count(output.begin(), output.end(), '\n'), 1) << output;
  }
}

TEST_F(RunnerProcessTest, MaxTokensPastTheContextFailsAtStartNamingIt) {
  auto child = ChildProcess::Start(
      {HANGAR_RUNNER_PATH, "--model=" + *model_dir_, "--metrics_port=-1",
       "--threads=1", "--max_tokens=1000000000"});
  ASSERT_THAT(child, IsOk());
  EXPECT_THAT((*child)->Wait(absl::Seconds(60)), IsOkAndHolds(Not(0)));
  std::string output = (*child)->Output();
  EXPECT_THAT(output, HasSubstr("max_tokens: must be in [1, 4096]"));
  EXPECT_EQ(std::count(output.begin(), output.end(), '\n'), 1) << output;
}

}  // namespace
}  // namespace hangar
