// hangarctl against a real gRPC server built from common/server, knowing only
// its address. The server carries a small RunnerService (a unary Info and a
// server-streaming Generate that sends three messages) so the test does not
// depend on the runner.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/metrics/metrics.h"
#include "common/server/server.h"
#include "common/testing/child_process.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hangar/v1/runner.grpc.pb.h"

namespace hangar {
namespace {

using ::hangar::testing::ChildProcess;
using ::hangar::testing::IsOk;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

class FakeRunner final : public v1::RunnerService::Service {
 public:
  grpc::Status Info(grpc::ServerContext*, const v1::RunnerInfoRequest*,
                    v1::RunnerInfo* info) override {
    info->set_architecture("TestForCausalLM");
    info->set_batch_capacity(8);
    return grpc::Status::OK;
  }

  // One message per word of the first sequence's prompt.
  grpc::Status Generate(
      grpc::ServerContext*, const v1::RunnerGenerateRequest* request,
      grpc::ServerWriter<v1::RunnerGenerateResponse>* writer) override {
    if (request->sequences_size() == 0) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "sequences: must not be empty");
    }
    int index = 0;
    for (absl::string_view word :
         absl::StrSplit(request->sequences(0).prompt(), ' ')) {
      v1::RunnerGenerateResponse response;
      response.set_sequence_id(request->sequences(0).id());
      response.set_index(index++);
      response.set_delta(std::string(word));
      writer->Write(response);
    }
    return grpc::Status::OK;
  }
};

class HangarctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server =
        Server::Create({.name = "test", .port = 0}, {&runner_}, &metrics_);
    ASSERT_THAT(server, IsOk());
    server_ = std::move(server).value();
    server_->SetServing(true);
    address_ = server_->address();
  }

  // Runs hangarctl; returns (exit code, output).
  std::pair<int, std::string> Run(std::vector<std::string> args) {
    args.insert(args.begin(), HANGARCTL_PATH);
    auto child = ChildProcess::Start(args);
    EXPECT_THAT(child, IsOk());
    if (!child.ok()) return {-1, ""};
    auto code = (*child)->Wait(absl::Seconds(60));
    EXPECT_THAT(code, IsOk());
    return {code.ok() ? *code : -1, (*child)->Output()};
  }

  FakeRunner runner_;
  MetricsRegistry metrics_;
  std::unique_ptr<Server> server_;
  std::string address_;
};

TEST_F(HangarctlTest, ListsDescribesAndCallsKnowingOnlyTheAddress) {
  auto [list_code, services] = Run({"list", address_});
  EXPECT_EQ(list_code, 0);
  EXPECT_THAT(services, HasSubstr("hangar.v1.RunnerService"));
  EXPECT_THAT(services, HasSubstr("grpc.health.v1.Health"));

  auto [describe_code, description] =
      Run({"describe", address_, "hangar.v1.RunnerService"});
  EXPECT_EQ(describe_code, 0);
  EXPECT_THAT(description, HasSubstr("rpc Generate"));

  auto [info_code, info] =
      Run({"call", address_, "hangar.v1.RunnerService/Info"});
  EXPECT_EQ(info_code, 0) << info;
  EXPECT_THAT(info, HasSubstr("\"batchCapacity\": 8"));
}

TEST_F(HangarctlTest, DescribesMessagesEnumsAndMethods) {
  auto [message_code, message] =
      Run({"describe", address_, "hangar.v1.RunnerGenerateRequest"});
  EXPECT_EQ(message_code, 0) << message;
  EXPECT_THAT(message, HasSubstr("message RunnerGenerateRequest {"));
  EXPECT_THAT(message, HasSubstr("sequences = 1;"));

  auto [enum_code, enumeration] =
      Run({"describe", address_, "hangar.v1.FinishReason"});
  EXPECT_EQ(enum_code, 0) << enumeration;
  EXPECT_THAT(enumeration, HasSubstr("enum FinishReason {"));

  auto [method_code, method] =
      Run({"describe", address_, "hangar.v1.RunnerService.Generate"});
  EXPECT_EQ(method_code, 0) << method;
  EXPECT_THAT(method, HasSubstr("rpc Generate"));

  auto [missing_code, missing] =
      Run({"describe", address_, "hangar.v1.NoSuchThing"});
  EXPECT_EQ(missing_code, 1);
  EXPECT_THAT(missing, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(missing, HasSubstr("hangar.v1.NoSuchThing"));
}

TEST_F(HangarctlTest, ServerStreamingCallsPrintEachMessageAsJson) {
  auto [code, output] =
      Run({"call", address_, "hangar.v1.RunnerService/Generate",
           R"({"sequences": [{"id": "s1", "prompt": "one two three"}]})"});
  EXPECT_EQ(code, 0) << output;
  EXPECT_THAT(output, Not(HasSubstr("only unary")));
  const size_t one = output.find("\"delta\": \"one\"");
  const size_t two = output.find("\"delta\": \"two\"");
  const size_t three = output.find("\"delta\": \"three\"");
  ASSERT_NE(one, std::string::npos) << output;
  ASSERT_NE(two, std::string::npos) << output;
  ASSERT_NE(three, std::string::npos) << output;
  EXPECT_LT(one, two);
  EXPECT_LT(two, three);
  EXPECT_THAT(output, HasSubstr("\"sequenceId\": \"s1\""));

  // A stream that fails reports the status like a unary call.
  auto [fail_code, failure] =
      Run({"call", address_, "hangar.v1.RunnerService/Generate", "{}"});
  EXPECT_EQ(fail_code, 1);
  EXPECT_THAT(failure, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(failure, HasSubstr("sequences: must not be empty"));
}

TEST_F(HangarctlTest, HealthOfTheServerAndOfOneService) {
  auto [code, health] = Run({"health", address_});
  EXPECT_EQ(code, 0);
  EXPECT_THAT(health, HasSubstr("\"SERVING\""));
  auto [service_code, service] =
      Run({"health", address_, "hangar.v1.RunnerService"});
  EXPECT_EQ(service_code, 0) << service;
  EXPECT_THAT(service, HasSubstr("\"SERVING\""));

  // NOT_SERVING is printed and fails the command: scripts and container
  // health checks read the exit code alone.
  server_->SetServing(false);
  auto [down_code, down] = Run({"health", address_});
  EXPECT_EQ(down_code, 1) << down;
  EXPECT_THAT(down, HasSubstr("\"NOT_SERVING\""));
  EXPECT_THAT(down, HasSubstr("is not SERVING"));
}

TEST_F(HangarctlTest, FailuresExitNonZeroWithTheStatusOnce) {
  auto [code, output] =
      Run({"call", address_, "hangar.v1.RunnerService/Missing"});
  EXPECT_EQ(code, 1);
  EXPECT_THAT(output, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(output, StartsWith("hangarctl: NOT_FOUND"));
  EXPECT_THAT(output, Not(HasSubstr("hangarctl: hangarctl")));

  auto [usage_code, usage] = Run({"frobnicate", address_});
  EXPECT_EQ(usage_code, 2);
  EXPECT_THAT(usage, HasSubstr("usage"));

  auto [bad_flag_code, bad_flag] = Run({"--timeout_seconds=soon", "list"});
  EXPECT_NE(bad_flag_code, 0);
  EXPECT_THAT(bad_flag, Not(HasSubstr("hangarctl: hangarctl")));
}

TEST_F(HangarctlTest, ExtraArgumentsAreAOneLineUsageError) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"list", address_, "extra"},
           {"health", address_, "hangar.v1.RunnerService", "extra"},
           {"describe", address_, "hangar.v1.RunnerService", "extra"},
           {"call", address_, "hangar.v1.RunnerService/Info", "{}", "extra"}}) {
    auto [code, output] = Run(args);
    EXPECT_EQ(code, 2) << args[0];
    EXPECT_THAT(output, HasSubstr("unexpected argument \"extra\"")) << args[0];
    EXPECT_EQ(std::count(output.begin(), output.end(), '\n'), 1) << output;
  }
  auto [missing_code, missing] = Run({"describe", address_});
  EXPECT_EQ(missing_code, 2);
  EXPECT_THAT(missing, HasSubstr("usage: hangarctl describe ADDRESS SYMBOL"));
}

}  // namespace
}  // namespace hangar
