// hangarctl against a real runner server, knowing only its address.
#include "absl/strings/str_cat.h"
#include "common/testing/child_process.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "engine/tiny_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/runner/runner_server.h"

namespace hangar {
namespace {

using ::hangar::testing::ChildProcess;
using ::hangar::testing::IsOk;
using ::hangar::testing::IsOkAndHolds;
using ::testing::HasSubstr;

class HangarctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string dir = hangar::testing::MakeTempDir("ctl-model");
    ASSERT_THAT(engine::WriteTinyModel({}, dir), IsOk());
    auto runner = runner::RunnerServer::Start(
        {.server = {.name = "runner", .port = 0}, .model_path = dir, .threads = 1});
    ASSERT_THAT(runner, IsOk());
    runner_ = std::move(runner).value();
  }

  // Runs hangarctl; returns (exit code, output).
  std::pair<int, std::string> Run(std::vector<std::string> args) {
    args.insert(args.begin(), HANGARCTL_PATH);
    auto child = ChildProcess::Start(args);
    EXPECT_THAT(child, IsOk());
    auto code = (*child)->Wait(absl::Seconds(60));
    EXPECT_THAT(code, IsOk());
    return {code.ok() ? *code : -1, (*child)->Output()};
  }

  std::unique_ptr<runner::RunnerServer> runner_;
};

TEST_F(HangarctlTest, ListsDescribesAndCallsKnowingOnlyTheAddress) {
  std::string address = runner_->server().address();
  auto [list_code, services] = Run({"list", address});
  EXPECT_EQ(list_code, 0);
  EXPECT_THAT(services, HasSubstr("hangar.v1.RunnerService"));
  EXPECT_THAT(services, HasSubstr("grpc.health.v1.Health"));

  auto [describe_code, description] =
      Run({"describe", address, "hangar.v1.RunnerService"});
  EXPECT_EQ(describe_code, 0);
  EXPECT_THAT(description, HasSubstr("rpc Generate"));

  auto [health_code, health] = Run({"health", address});
  EXPECT_EQ(health_code, 0);
  EXPECT_THAT(health, HasSubstr("SERVING"));

  auto [info_code, info] = Run({"call", address, "hangar.v1.RunnerService/Info"});
  EXPECT_EQ(info_code, 0);
  EXPECT_THAT(info, HasSubstr("\"batchCapacity\": 8"));
}

TEST_F(HangarctlTest, FailuresExitNonZeroWithTheStatus) {
  std::string address = runner_->server().address();
  auto [code, output] =
      Run({"call", address, "hangar.v1.RunnerService/Missing"});
  EXPECT_EQ(code, 1);
  EXPECT_THAT(output, HasSubstr("NOT_FOUND"));
  auto [usage_code, usage] = Run({"frobnicate", address});
  EXPECT_EQ(usage_code, 2);
  EXPECT_THAT(usage, HasSubstr("usage"));
}

}  // namespace
}  // namespace hangar
