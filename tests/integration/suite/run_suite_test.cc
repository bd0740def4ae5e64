// scripts/run-suite.sh (`make run`): --help documents the PostgreSQL port and
// the ways to pass flags to services, and those ways reach the services'
// command lines (seen through --dry_run against a build folder holding a
// stand-in catalog binary).
#include <sys/stat.h>

#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/testing/child_process.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar {
namespace {

using ::hangar::testing::ChildProcess;
using ::testing::HasSubstr;
using ::testing::Not;

class RunSuiteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    build_dir_ = hangar::testing::MakeTempDir("run-suite-build");
    const std::string dir = build_dir_ + "/services/catalog";
    ASSERT_EQ(::mkdir((build_dir_ + "/services").c_str(), 0755), 0);
    ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
    const std::string binary = dir + "/hangar-catalog";
    std::ofstream(binary) << "#!/bin/sh\nexit 0\n";
    ASSERT_EQ(::chmod(binary.c_str(), 0755), 0);
  }

  // Runs the script with `args` and extra environment; (exit code, output).
  std::pair<int, std::string> Run(std::vector<std::string> args,
                                  std::vector<std::string> environment = {}) {
    args.insert(args.begin(), {"/bin/bash", HANGAR_RUN_SUITE_PATH});
    environment.push_back("BUILD_DIR=" + build_dir_);
    auto child = ChildProcess::Start(args, environment);
    EXPECT_THAT(child, hangar::testing::IsOk());
    if (!child.ok()) return {-1, ""};
    auto code = (*child)->Wait(absl::Seconds(30));
    EXPECT_THAT(code, hangar::testing::IsOk());
    return {code.ok() ? *code : -1, (*child)->Output()};
  }

  std::string build_dir_;
};

TEST_F(RunSuiteTest, HelpDocumentsThePortAndTheOverrides) {
  auto [code, help] = Run({"--help"});
  EXPECT_EQ(code, 0);
  EXPECT_THAT(help, HasSubstr("--pg_port=N"));
  EXPECT_THAT(help, HasSubstr("default 5432"));
  EXPECT_THAT(help, HasSubstr("HANGAR_PG_PORT"));
  EXPECT_THAT(help, HasSubstr("--<service>_<flag>=V"));
  EXPECT_THAT(help, HasSubstr("<SERVICE>_ARGS"));
  EXPECT_THAT(help, HasSubstr("HANGAR_<SERVICE>_<FLAG>"));
  EXPECT_THAT(help, HasSubstr("make run ARGS="));
}

TEST_F(RunSuiteTest, DefaultsAreTheDocumentedOnes) {
  auto [code, plan] = Run({"--dry_run"}, {"HANGAR_STATE_DIR=/tmp/st"});
  EXPECT_EQ(code, 0) << plan;
  EXPECT_THAT(plan, HasSubstr("PostgreSQL: 127.0.0.1:5432"));
  EXPECT_THAT(plan, HasSubstr(absl::StrCat(
                        "would start: ", build_dir_,
                        "/services/catalog/hangar-catalog "
                        "--db=postgresql://hangar@127.0.0.1:5432/hangar "
                        "--model_store=/tmp/st/models "
                        "--local_model_root=/tmp/st/local-models "
                        "--deployment_address=127.0.0.1:7102\n")));
  EXPECT_THAT(plan, HasSubstr("not yet built: gateway"));
}

TEST_F(RunSuiteTest, PortAndServiceFlagsReachTheCommandLines) {
  auto [code, plan] =
      Run({"--dry_run", "--pg_port=5433", "--catalog_port=7201",
           "--catalog_db_connect_timeout=5s", "--state_dir=/tmp/st"},
          {"CATALOG_ARGS=--hf_endpoint=http://mirror:8080 --metrics_port=-1"});
  EXPECT_EQ(code, 0) << plan;
  EXPECT_THAT(plan, HasSubstr("PostgreSQL: 127.0.0.1:5433"));
  EXPECT_THAT(plan,
              HasSubstr("--db=postgresql://hangar@127.0.0.1:5433/hangar "
                        "--model_store=/tmp/st/models "
                        "--local_model_root=/tmp/st/local-models "
                        "--deployment_address=127.0.0.1:7102 "
                        "--hf_endpoint=http://mirror:8080 --metrics_port=-1 "
                        "--port=7201 --db_connect_timeout=5s\n"));

  // The environment variable still works, and the option wins over it.
  auto [env_code, env_plan] =
      Run({"--dry_run", "--pg_port=6000"}, {"HANGAR_PG_PORT=5999"});
  EXPECT_EQ(env_code, 0);
  EXPECT_THAT(env_plan, HasSubstr("127.0.0.1:6000"));
  auto [only_env_code, only_env] = Run({"--dry_run"}, {"HANGAR_PG_PORT=5999"});
  EXPECT_EQ(only_env_code, 0);
  EXPECT_THAT(only_env, HasSubstr("127.0.0.1:5999"));
}

TEST_F(RunSuiteTest, UnknownOptionsAndBadPortsAreUsageErrors) {
  auto [code, output] = Run({"--dry_run", "--frobnicate=1"});
  EXPECT_EQ(code, 2);
  EXPECT_THAT(output, HasSubstr("unknown option --frobnicate=1"));
  auto [port_code, port] = Run({"--dry_run", "--pg_port=99999"});
  EXPECT_EQ(port_code, 2);
  EXPECT_THAT(port, HasSubstr("--pg_port must be a port number"));
  EXPECT_THAT(port, Not(HasSubstr("would start")));
}

}  // namespace
}  // namespace hangar
