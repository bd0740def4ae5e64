// The hangarctl binary, run as a child process, against real servers on
// loopback: a CatalogService (CatalogServer over a private PostgreSQL, the
// curated models, the catalog tests' fake Hugging Face Hub) and a
// DeploymentService (DeploymentServer over the same PostgreSQL, asking that
// catalog and a small in-test SchedulerService for facts), both requiring the
// admin token; the in-test server also carries an InferenceService whose
// GenerateStream streams the prompt's words back, so `generate` is tested
// without a runner.
//
// The reconciler may move deployments on (or fail them: nothing can run
// here), so the tests assert what the CLI prints and its exit codes, not
// that deployments deploy.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "common/metrics/metrics.h"
#include "common/server/server.h"
#include "common/testing/child_process.h"
#include "common/testing/postgres_server.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "hangar/v1/catalog.pb.h"
#include "hangar/v1/deployment.pb.h"
#include "hangar/v1/inference.grpc.pb.h"
#include "hangar/v1/scheduler.grpc.pb.h"
#include "services/catalog/catalog_server.h"
#include "services/deployment/deployment_server.h"
#include "tests/integration/catalog/fake_hub.h"
#include "tests/integration/catalog/test_models.h"

namespace hangar {
namespace {

using ::hangar::testing::ChildProcess;
using ::hangar::testing::FakeHub;
using ::hangar::testing::IsOk;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kModel[] = "hangar/tiny-random-llama";
constexpr char kOffering[] = "cpu-1x";
constexpr char kToken[] = "test-admin-token";
constexpr char kApiKey[] = "hk_testkey";

// The scheduler's hardware offerings (all the deployment service asks for
// its facts); every other method is UNIMPLEMENTED.
class FakeScheduler final : public v1::SchedulerService::Service {
 public:
  grpc::Status ListHardware(grpc::ServerContext*,
                            const v1::ListHardwareRequest*,
                            v1::ListHardwareResponse* response) override {
    v1::HardwareOffering& offering = *response->add_offerings();
    offering.set_id(kOffering);
    offering.set_display_name("CPU, 1 slot");
    offering.set_pool("cpu");
    offering.set_gpu_model("CPU");
    offering.set_gpu_count(1);
    offering.set_gpu_memory_bytes(int64_t{16} << 30);
    offering.mutable_hourly_price()->set_currency_code("USD");
    offering.mutable_hourly_price()->set_micros(500'000);
    offering.set_available_replicas(3);
    offering.set_total_replicas(4);
    offering.set_supports_bf16(true);
    return grpc::Status::OK;
  }
};

// GenerateStream sends one message per word of the prompt, the last with
// the finish reason and usage; the prompt "busy" is RESOURCE_EXHAUSTED with
// a retry-after-ms trailer. For the prompt "gated first second" it sends
// "gated" and then waits for `release` before the rest, so a test can see
// the first token printed while the stream is still open.
class FakeInference final : public v1::InferenceService::Service {
 public:
  grpc::Status GenerateStream(
      grpc::ServerContext* context, const v1::GenerateRequest* request,
      grpc::ServerWriter<v1::GenerateStreamResponse>* writer) override {
    auto auth = context->client_metadata().find("authorization");
    if (auth == context->client_metadata().end() ||
        std::string(auth->second.data(), auth->second.size()) !=
            absl::StrCat("Bearer ", kApiKey)) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "api key: unknown or revoked");
    }
    if (request->prompt() == "busy") {
      context->AddTrailingMetadata("retry-after-ms", "250");
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "deployment queue is full");
    }
    std::vector<std::string> words = absl::StrSplit(request->prompt(), ' ');
    for (size_t i = 0; i < words.size(); ++i) {
      v1::GenerateStreamResponse response;
      response.set_delta(i == 0 ? words[i] : " " + words[i]);
      response.set_deployment(request->deployment());
      response.set_revision(1);
      response.set_request_id("req-1");
      if (i + 1 == words.size()) {
        response.set_finish_reason(v1::FINISH_REASON_EOS);
        response.mutable_usage()->set_prompt_tokens(
            static_cast<int64_t>(words.size()));
        response.mutable_usage()->set_completion_tokens(
            static_cast<int64_t>(words.size()));
      }
      writer->Write(response);
      if (i == 0 && words[0] == "gated") {
        release.WaitForNotificationWithTimeout(absl::Seconds(30));
      }
    }
    return grpc::Status::OK;
  }

  absl::Notification release;
};

struct RunResult {
  int code = -1;
  std::string output;  // stdout and stderr together
};

class HangarctlSuiteTest : public ::hangar::testing::PostgresTest {
 protected:
  void SetUp() override {
    PostgresTest::SetUp();
    if (HasFatalFailure()) return;
    dir_ = ::hangar::testing::MakeTempDir("hangarctl_suite");
    token_file_ = dir_ + "/admin-token";
    std::ofstream(token_file_) << kToken << "\n";
    std::filesystem::create_directories(dir_ + "/local");
    auto hub = FakeHub::Start();
    ASSERT_TRUE(hub.ok()) << hub.status();
    hub_ = *std::move(hub);

    auto fakes = Server::Create({.name = "fakes", .port = 0},
                                {&scheduler_, &inference_}, &metrics_);
    ASSERT_THAT(fakes, IsOk());
    fakes_ = *std::move(fakes);
    fakes_->SetServing(true);

    auto catalog = catalog::CatalogServer::Create(
        {.server = {.name = "catalog",
                    .port = 0,
                    .metrics_port = -1,
                    .drain_timeout = absl::Milliseconds(300)},
         .admin_token_file = token_file_,
         .db = conninfo(),
         .db_pool_size = 4,
         .model_store = dir_ + "/store",
         .local_model_root = dir_ + "/local",
         .curated_models = HANGAR_CURATED_MODELS_PATH,
         .secret_key_file = dir_ + "/secret.key",
         .hf_endpoint = hub_->endpoint(),
         .hf_stall_timeout = absl::Seconds(2),
         .hub_retry = {.initial_backoff = absl::Milliseconds(10),
                       .max_backoff = absl::Milliseconds(10),
                       .budget = absl::ZeroDuration()},
         .deployment_address = "127.0.0.1:1",
         .progress_interval = absl::Milliseconds(20)});
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    catalog_ = *std::move(catalog);

    auto deployment = deployment::DeploymentServer::Create(
        {.server = {.name = "deployment",
                    .port = 0,
                    .metrics_port = -1,
                    .drain_timeout = absl::Milliseconds(300)},
         .admin_token_file = token_file_,
         .db = conninfo(),
         .db_pool_size = 4,
         .catalog_address = catalog_->address(),
         .scheduler_address = fakes_->address(),
         .gateway_endpoint = "gateway.test:7100",
         .prompt_price_per_1k = 0.5,
         .completion_price_per_1k = 1.5});
    ASSERT_TRUE(deployment.ok()) << deployment.status();
    deployment_ = *std::move(deployment);
  }

  void TearDown() override {
    deployment_.reset();
    catalog_.reset();
    fakes_.reset();
    hub_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // The flags every call of the suite's commands carries.
  std::vector<std::string> Addresses() const {
    return {"--catalog_address=" + catalog_->address(),
            "--deployment_address=" + deployment_->address(),
            "--scheduler_address=" + fakes_->address(),
            "--gateway_address=" + fakes_->address(),
            "--admin_token_file=" + token_file_};
  }

  std::unique_ptr<ChildProcess> Start(std::vector<std::string> args,
                                      std::vector<std::string> env = {},
                                      bool with_addresses = true) {
    if (with_addresses) {
      std::vector<std::string> addresses = Addresses();
      args.insert(args.end(), addresses.begin(), addresses.end());
    }
    args.insert(args.begin(), HANGARCTL_PATH);
    auto child = ChildProcess::Start(args, env);
    EXPECT_THAT(child, IsOk());
    return child.ok() ? *std::move(child) : nullptr;
  }

  RunResult Run(std::vector<std::string> args,
                std::vector<std::string> env = {}, bool with_addresses = true) {
    std::unique_ptr<ChildProcess> child =
        Start(std::move(args), std::move(env), with_addresses);
    if (child == nullptr) return {};
    auto code = child->Wait(absl::Seconds(60));
    EXPECT_THAT(code, IsOk());
    return {code.ok() ? *code : -1, child->Output()};
  }

  // Runs a command with -o json and parses its output as `T`.
  template <typename T>
  T RunJson(std::vector<std::string> args) {
    args.push_back("-o");
    args.push_back("json");
    RunResult result = Run(args);
    EXPECT_EQ(result.code, 0) << result.output;
    T message;
    auto status =
        google::protobuf::util::JsonStringToMessage(result.output, &message);
    EXPECT_TRUE(status.ok()) << status << "\n" << result.output;
    return message;
  }

  // Creates a deployment with --accept_terms; returns its dep- name.
  std::string CreateDeployment(const std::string& display_name) {
    v1::Deployment deployment = RunJson<v1::Deployment>(
        {"deploy", "create", display_name, "--model", kModel, "--hardware",
         kOffering, "--accept_terms", "--request_id",
         "create-" + display_name});
    EXPECT_THAT(deployment.name(), StartsWith("dep-"));
    return deployment.name();
  }

  static int Lines(const std::string& text) {
    return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
  }

  std::string dir_;
  std::string token_file_;
  MetricsRegistry metrics_;
  FakeScheduler scheduler_;
  FakeInference inference_;
  std::unique_ptr<Server> fakes_;
  std::unique_ptr<FakeHub> hub_;
  std::unique_ptr<catalog::CatalogServer> catalog_;
  std::unique_ptr<deployment::DeploymentServer> deployment_;
};

TEST_F(HangarctlSuiteTest, ModelsListAsTableAndJson) {
  RunResult table = Run({"models", "list"});
  ASSERT_EQ(table.code, 0) << table.output;
  EXPECT_THAT(table.output, StartsWith("NAME"));
  EXPECT_THAT(table.output, HasSubstr("FAMILY"));
  EXPECT_THAT(table.output, HasSubstr("PREPARED"));
  EXPECT_THAT(table.output, HasSubstr(kModel));
  EXPECT_THAT(table.output, HasSubstr("meta-llama/Llama-3.1-8B-Instruct"));

  auto listed = RunJson<v1::ListModelsResponse>({"models", "list"});
  EXPECT_GT(listed.models_size(), 30);  // Every page merged.
  EXPECT_TRUE(std::any_of(
      listed.models().begin(), listed.models().end(),
      [](const v1::Model& model) { return model.name() == kModel; }));
  EXPECT_EQ(listed.next_page_token(), "");

  auto filtered = RunJson<v1::ListModelsResponse>(
      {"models", "list", "--query", "tiny-random"});
  ASSERT_EQ(filtered.models_size(), 1);
  EXPECT_EQ(filtered.models(0).name(), kModel);

  RunResult get = Run({"models", "get", kModel});
  ASSERT_EQ(get.code, 0) << get.output;
  EXPECT_THAT(get.output, HasSubstr("Name:"));
  EXPECT_THAT(get.output, HasSubstr(kModel));
  EXPECT_THAT(get.output, HasSubstr("Recipes:"));
  EXPECT_THAT(get.output, HasSubstr("Local path:"));

  auto model = RunJson<v1::Model>({"models", "get", kModel});
  EXPECT_EQ(model.name(), kModel);
  EXPECT_EQ(model.state(), v1::MODEL_STATE_READY);
}

TEST_F(HangarctlSuiteTest, FailedCallsExitOneWithTheCodeOnOneLine) {
  RunResult missing = Run({"models", "get", "nobody/no-model"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_THAT(missing.output, StartsWith("hangarctl: NOT_FOUND: "));
  EXPECT_EQ(Lines(missing.output), 1) << missing.output;

  RunResult deployment = Run({"deploy", "get", "dep-aaaaaaaaaaaa"});
  EXPECT_EQ(deployment.code, 1);
  EXPECT_THAT(deployment.output, StartsWith("hangarctl: NOT_FOUND: "));
  EXPECT_EQ(Lines(deployment.output), 1) << deployment.output;

  // Without the admin token.
  RunResult anonymous =
      Run({"deploy", "list", "--deployment_address=" + deployment_->address()},
          {}, /*with_addresses=*/false);
  EXPECT_EQ(anonymous.code, 1);
  EXPECT_THAT(anonymous.output, StartsWith("hangarctl: UNAUTHENTICATED: "));
  EXPECT_EQ(Lines(anonymous.output), 1) << anonymous.output;

  // Nothing listens.
  RunResult down = Run({"hardware", "list", "--scheduler_address=127.0.0.1:1",
                        "--timeout_seconds=5"},
                       {}, /*with_addresses=*/false);
  EXPECT_EQ(down.code, 1);
  EXPECT_THAT(down.output, StartsWith("hangarctl: UNAVAILABLE: "));

  // The Hub is down when the preparation starts.
  hub_->SetDown(true);
  RunResult prepare = Run({"models", "prepare", "Qwen/Qwen2.5-0.5B-Instruct"});
  EXPECT_EQ(prepare.code, 1) << prepare.output;
  EXPECT_THAT(prepare.output, StartsWith("hangarctl: UNAVAILABLE: "));
  EXPECT_EQ(Lines(prepare.output), 1) << prepare.output;
}

constexpr char kSha[] = "0123456789abcdef0123456789abcdef01234567";

FakeHub::Repo TinyRepo(const std::string& id) {
  FakeHub::Repo repo;
  repo.id = id;
  repo.sha = kSha;
  repo.files = ::hangar::testing::TinyModelFiles();
  return repo;
}

TEST_F(HangarctlSuiteTest, ImportAndPrepareFromTheHubWithProgress) {
  hub_->AddRepo(TinyRepo("acme/tiny-chat"));
  RunResult imported = Run({"models", "import", "acme/tiny-chat", "--tag",
                            "demo", "--description", "a tiny chat", "--wait"});
  ASSERT_EQ(imported.code, 0) << imported.output;
  EXPECT_THAT(imported.output, HasSubstr("model acme/tiny-chat READY"));
  auto model = RunJson<v1::Model>({"models", "get", "acme/tiny-chat"});
  EXPECT_EQ(model.source(), v1::MODEL_SOURCE_HUGGING_FACE);
  EXPECT_THAT(model.tags(), ::testing::ElementsAre("demo"));

  // The download is held so the CLI shows it in progress.
  hub_->Hold("model.safetensors");
  std::unique_ptr<ChildProcess> prepare =
      Start({"models", "prepare", "acme/tiny-chat"});
  ASSERT_NE(prepare, nullptr);
  ASSERT_TRUE(hub_->AwaitHeldDownload());
  EXPECT_TRUE(::hangar::testing::WaitUntil(
      [&] { return absl::StrContains(prepare->Output(), "DOWNLOADING"); },
      absl::Seconds(30)))
      << prepare->Output();
  EXPECT_TRUE(prepare->Running());
  hub_->Release();
  auto code = prepare->Wait(absl::Seconds(60));
  ASSERT_THAT(code, IsOk());
  EXPECT_EQ(*code, 0) << prepare->Output();
  EXPECT_THAT(prepare->Output(),
              HasSubstr("model acme/tiny-chat PREPARED at "));
  // Plain lines on a pipe: no carriage returns, and not one per update.
  EXPECT_THAT(prepare->Output(), Not(HasSubstr("\r")));
  EXPECT_LT(Lines(prepare->Output()), 30) << prepare->Output();

  // Prepared already: JSON of the preparation at once.
  auto preparation =
      RunJson<v1::Preparation>({"models", "prepare", "acme/tiny-chat"});
  EXPECT_EQ(preparation.state(), v1::PREPARATION_STATE_PREPARED);
  EXPECT_EQ(preparation.sha256().size(), 64u);
}

TEST_F(HangarctlSuiteTest, ProgressBarOnATerminal) {
  if (!std::filesystem::exists("/usr/bin/script")) {
    GTEST_SKIP() << "util-linux script (a pseudo-terminal) is not installed";
  }
  hub_->AddRepo(TinyRepo("acme/tty"));
  ASSERT_EQ(Run({"models", "import", "acme/tty", "--wait"}).code, 0);
  hub_->Hold("model.safetensors");
  std::string command =
      absl::StrCat(HANGARCTL_PATH, " models prepare acme/tty");
  for (const std::string& flag : Addresses())
    absl::StrAppend(&command, " ", flag);
  // script runs hangarctl with stdout on a pseudo-terminal and copies it.
  auto child =
      ChildProcess::Start({"/usr/bin/script", "-qec", command, "/dev/null"});
  ASSERT_THAT(child, IsOk());
  ASSERT_TRUE(hub_->AwaitHeldDownload());
  EXPECT_TRUE(::hangar::testing::WaitUntil(
      [&] { return absl::StrContains((*child)->Output(), "DOWNLOADING"); },
      absl::Seconds(30)))
      << (*child)->Output();
  hub_->Release();
  auto code = (*child)->Wait(absl::Seconds(60));
  ASSERT_THAT(code, IsOk());
  EXPECT_EQ(*code, 0) << (*child)->Output();
  const std::string output = (*child)->Output();
  // The line is redrawn in place, with a bar and a percentage.
  EXPECT_THAT(output, HasSubstr("\r\033[K"));
  EXPECT_THAT(output, HasSubstr("%"));
  EXPECT_THAT(output, HasSubstr("] "));
  EXPECT_THAT(output, HasSubstr("model acme/tty PREPARED at "));
}

TEST_F(HangarctlSuiteTest, FailedPreparationExitsThree) {
  FakeHub::Repo repo = TinyRepo("acme/corrupt");
  repo.sha256_overrides["model.safetensors"] = std::string(64, 'a');
  hub_->AddRepo(repo);
  RunResult imported = Run({"models", "import", "acme/corrupt", "--wait"});
  ASSERT_EQ(imported.code, 0) << imported.output;
  RunResult prepare = Run({"models", "prepare", "acme/corrupt"});
  EXPECT_EQ(prepare.code, 3) << prepare.output;
  EXPECT_THAT(prepare.output,
              HasSubstr("hangarctl: model acme/corrupt: preparation FAILED: "));
  EXPECT_THAT(prepare.output, HasSubstr("checksum mismatch"));

  // --detach returns as soon as the preparation is started or known.
  RunResult detached = Run({"models", "prepare", "acme/corrupt", "--detach"});
  EXPECT_THAT(detached.output, HasSubstr("model acme/corrupt "));
}

TEST_F(HangarctlSuiteTest, LocalImportAndConnections) {
  ::hangar::testing::WriteTinyModelDir(dir_ + "/local/tiny");
  RunResult imported = Run({"models", "import", "--local", "tiny", "--name",
                            "local/tiny", "--wait", "-o", "json"});
  ASSERT_EQ(imported.code, 0) << imported.output;
  v1::Model model;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(imported.output, &model).ok())
      << imported.output;
  EXPECT_EQ(model.name(), "local/tiny");
  EXPECT_EQ(model.state(), v1::MODEL_STATE_READY);
  EXPECT_EQ(model.source(), v1::MODEL_SOURCE_LOCAL);

  RunResult missing = Run({"models", "import", "--local", "nothing-here"});
  EXPECT_EQ(missing.code, 1) << missing.output;
  EXPECT_EQ(Lines(missing.output), 1) << missing.output;

  RunResult no_token = Run({"connections", "create", "hf"});
  EXPECT_EQ(no_token.code, 2) << no_token.output;
  RunResult created =
      Run({"connections", "create", "hf", "--description", "team token"},
          {"HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyz"});
  ASSERT_EQ(created.code, 0) << created.output;
  EXPECT_THAT(created.output, HasSubstr("connection hf created"));
  RunResult listed = Run({"connections", "list"});
  ASSERT_EQ(listed.code, 0) << listed.output;
  EXPECT_THAT(listed.output, StartsWith("NAME"));
  EXPECT_THAT(listed.output, HasSubstr("team token"));
  EXPECT_THAT(listed.output, Not(HasSubstr("hf_abcdefghijklmnopqrstuvwxyz")));
  RunResult deleted = Run({"connections", "delete", "hf"});
  ASSERT_EQ(deleted.code, 0) << deleted.output;
  auto none = RunJson<v1::ListConnectionsResponse>({"connections", "list"});
  EXPECT_EQ(none.connections_size(), 0);
}

TEST_F(HangarctlSuiteTest, UsageErrorsExitTwo) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"models", "list", "--frobnicate"},
           {"deploy", "create", "--model", kModel, "--batch_size=many"},
           {"deploy", "get"},
           {"deploy", "get", "a", "b"},
           {"deploy", "frobnicate"},
           {"frobnicate"},
           {"deploy", "create", "--hardware", kOffering},
           {"deploy", "create", "--model", kModel, "--hardware", kOffering,
            "--engine", "tensorrt"},
           {"models", "list", "-o", "yaml"},
           {"models", "list", "--timeout_seconds"},
           {"keys", "create", "dep-x"},
           {"deploy", "update", "dep-x"},
           {"models", "import", "a/b", "--local", "dir"},
       }) {
    RunResult result = Run(args);
    EXPECT_EQ(result.code, 2) << absl::StrJoin(args, " ") << "\n"
                              << result.output;
    EXPECT_THAT(result.output, StartsWith("hangarctl: "))
        << absl::StrJoin(args, " ");
  }
  RunResult unknown_flag = Run({"models", "list", "--frobnicate"});
  EXPECT_EQ(unknown_flag.output,
            "hangarctl: unknown flag --frobnicate (usage: hangarctl COMMAND "
            "[SUBCOMMAND] [ARGS] [flags]; hangarctl --help lists the "
            "commands)\n");
  // A flag another command takes.
  RunResult wrong_command = Run({"models", "list", "--accept_terms"});
  EXPECT_EQ(wrong_command.output,
            "hangarctl: models list: unknown flag --accept_terms (usage: "
            "hangarctl models list [flags])\n");
  RunResult bad_int = Run({"deploy", "validate", "--batch_size=many"});
  EXPECT_THAT(bad_int.output,
              HasSubstr("--batch_size: must be an integer; was \"many\""));
  RunResult group = Run({"deploy"});
  EXPECT_EQ(group.code, 2);
  EXPECT_THAT(group.output, HasSubstr("missing subcommand"));
  EXPECT_THAT(group.output, HasSubstr("deploy create"));
  // An unreadable token file.
  RunResult token = Run({"deploy", "list", "--admin_token_file=/nonexistent"},
                        {}, /*with_addresses=*/false);
  EXPECT_EQ(token.code, 2);
  EXPECT_THAT(token.output, StartsWith("hangarctl: --admin_token_file: "));
}

TEST_F(HangarctlSuiteTest, HelpOnEveryCommandAndGroup) {
  RunResult overview = Run({"--help"}, {}, /*with_addresses=*/false);
  EXPECT_EQ(overview.code, 0);
  for (const char* text : {"models list",
                           "models get",
                           "models import",
                           "models prepare",
                           "connections create",
                           "connections list",
                           "connections delete",
                           "hardware list",
                           "deploy validate",
                           "deploy create",
                           "deploy get",
                           "deploy list",
                           "deploy watch",
                           "deploy redeploy",
                           "deploy rollback",
                           "deploy history",
                           "deploy update",
                           "deploy undeploy",
                           "deploy delete",
                           "endpoint",
                           "keys create",
                           "keys list",
                           "keys revoke",
                           "generate",
                           "usage",
                           "describe",
                           "call",
                           "health",
                           "Exit codes:",
                           "--timeout_seconds=N",
                           "HANGAR_DEPLOYMENT_ADDRESS",
                           "HANGAR_ADMIN_TOKEN_FILE",
                           "HANGAR_API_KEY",
                           "127.0.0.1:7104"}) {
    EXPECT_THAT(overview.output, HasSubstr(text));
  }
  std::vector<std::string> paths;
  for (absl::string_view line : absl::StrSplit(overview.output, '\n')) {
    // Command lines read "  <path>  <summary>" between "Commands:" and the
    // global flags.
    if (absl::StartsWith(line, "  --") || absl::StartsWith(line, "  -o") ||
        !absl::StartsWith(line, "  ") || absl::StartsWith(line, "   ")) {
      continue;
    }
    std::vector<std::string> words =
        absl::StrSplit(line.substr(2), absl::ByString("  "));
    if (!words.empty() && !words[0].empty() &&
        !absl::StrContains(words[0], ":") && words[0][0] >= 'a' &&
        words[0][0] <= 'z') {
      paths.push_back(words[0]);
    }
  }
  EXPECT_GE(paths.size(), 28u);
  for (const std::string& path : paths) {
    std::vector<std::string> args = absl::StrSplit(path, ' ');
    args.push_back("--help");
    RunResult help = Run(args, {}, /*with_addresses=*/false);
    EXPECT_EQ(help.code, 0) << path;
    EXPECT_THAT(help.output, StartsWith("Usage: hangarctl " + path)) << path;
    EXPECT_THAT(help.output, HasSubstr("Global flags:")) << path;
  }
  RunResult create = Run({"deploy", "create", "-h"}, {}, false);
  for (const char* flag :
       {"--model=MODEL", "--hardware=ID", "--engine=ENGINE",
        "--quantization=TYPE", "--batch_size=N", "--min_replicas=N",
        "--max_replicas=N", "--temperature=T", "--top_p=P", "--tag=TAG",
        "--description=TEXT", "--accept_terms", "--request_id=ID", "--wait",
        "Example:"}) {
    EXPECT_THAT(create.output, HasSubstr(flag));
  }
  RunResult help_command = Run({"help", "deploy", "watch"}, {}, false);
  EXPECT_EQ(help_command.code, 0);
  EXPECT_THAT(help_command.output, StartsWith("Usage: hangarctl deploy watch"));
  RunResult group = Run({"keys", "--help"}, {}, false);
  EXPECT_EQ(group.code, 0);
  EXPECT_THAT(group.output, HasSubstr("keys revoke"));
  EXPECT_THAT(group.output, Not(HasSubstr("deploy create")));
}

TEST_F(HangarctlSuiteTest, HardwareList) {
  RunResult table = Run({"hardware", "list"});
  ASSERT_EQ(table.code, 0) << table.output;
  EXPECT_THAT(table.output, StartsWith("ID"));
  EXPECT_THAT(table.output, HasSubstr(kOffering));
  EXPECT_THAT(table.output, HasSubstr("0.50 USD"));
  EXPECT_THAT(table.output, HasSubstr("16.0 GiB"));
  EXPECT_THAT(table.output, HasSubstr("3/4"));
  auto listed = RunJson<v1::ListHardwareResponse>({"hardware", "list"});
  ASSERT_EQ(listed.offerings_size(), 1);
  EXPECT_EQ(listed.offerings(0).hourly_price().micros(), 500'000);
}

TEST_F(HangarctlSuiteTest, ValidateShowsTheReview) {
  RunResult review =
      Run({"deploy", "validate", "--model", kModel, "--hardware", kOffering,
           "--min_replicas", "1", "--max_replicas", "3", "--batch_size", "8"});
  ASSERT_EQ(review.code, 0) << review.output;
  EXPECT_THAT(review.output, HasSubstr("Hourly cost:"));
  EXPECT_THAT(review.output,
              HasSubstr("0.50 USD at 1 replica to 1.50 USD at 3 replicas"));
  EXPECT_THAT(review.output, HasSubstr("Replicas:"));
  EXPECT_THAT(review.output, HasSubstr("1 to 3"));
  EXPECT_THAT(review.output, HasSubstr("Terms SHA-256:"));
  EXPECT_THAT(review.output, HasSubstr("Terms:\n"));
  EXPECT_THAT(review.output, HasSubstr("Valid:"));

  auto json = RunJson<v1::ValidateDeploymentResponse>(
      {"deploy", "validate", "--model", kModel, "--hardware", kOffering,
       "--engine", "ctranslate2", "--quantization", "int8", "--temperature",
       "0.5", "--stop", "END", "--stop", "STOP"});
  EXPECT_TRUE(json.valid());
  EXPECT_EQ(json.normalized_spec().optimization().engine(),
            v1::ENGINE_CTRANSLATE2);
  EXPECT_EQ(json.normalized_spec().optimization().quantization(),
            v1::QUANTIZATION_INT8);
  EXPECT_FLOAT_EQ(json.normalized_spec().sampling().temperature(), 0.5f);
  EXPECT_EQ(json.normalized_spec().sampling().stop_sequences_size(), 2);
  EXPECT_EQ(json.terms_sha256().size(), 64u);

  RunResult invalid =
      Run({"deploy", "validate", "--model", kModel, "--hardware", "no-such-gpu",
           "--max_replicas", "100"});
  EXPECT_EQ(invalid.code, 1);
  EXPECT_THAT(invalid.output, HasSubstr("Violations:"));
  EXPECT_THAT(invalid.output, HasSubstr("hangarctl: INVALID_ARGUMENT: "));
  EXPECT_THAT(invalid.output, HasSubstr("spec.hardware"));
  EXPECT_THAT(invalid.output, HasSubstr("spec.max_replicas"));
}

TEST_F(HangarctlSuiteTest, CreateNeedsTheTermsThenCreates) {
  RunResult refused = Run({"deploy", "create", "my-chat", "--model", kModel,
                           "--hardware", kOffering});
  EXPECT_EQ(refused.code, 2);
  EXPECT_THAT(refused.output, HasSubstr("Terms:\n"));
  EXPECT_THAT(refused.output, HasSubstr("add --accept_terms"));
  auto none = RunJson<v1::ListDeploymentsResponse>({"deploy", "list"});
  EXPECT_EQ(none.deployments_size(), 0);

  RunResult created = Run({"deploy",
                           "create",
                           "my-chat",
                           "--model",
                           kModel,
                           "--hardware",
                           kOffering,
                           "--batch_size",
                           "4",
                           "--max_replicas",
                           "2",
                           "--description",
                           "support bot",
                           "--tag",
                           "prod",
                           "--tag",
                           "chat",
                           "--accept_terms",
                           "--request_id",
                           "req-1"});
  ASSERT_EQ(created.code, 0) << created.output;
  EXPECT_THAT(created.output,
              HasSubstr("Hourly cost:    0.50 USD at 1 replica to 1.00 USD "
                        "at 2 replicas"));
  EXPECT_THAT(created.output, HasSubstr("(my-chat) created: PENDING"));

  // The same request id returns the same deployment.
  auto again = RunJson<v1::Deployment>({"deploy",
                                        "create",
                                        "my-chat",
                                        "--model",
                                        kModel,
                                        "--hardware",
                                        kOffering,
                                        "--batch_size",
                                        "4",
                                        "--max_replicas",
                                        "2",
                                        "--description",
                                        "support bot",
                                        "--tag",
                                        "prod",
                                        "--tag",
                                        "chat",
                                        "--accept_terms",
                                        "--request_id",
                                        "req-1"});
  EXPECT_EQ(again.display_name(), "my-chat");
  EXPECT_EQ(again.spec().inference_batch_size(), 4);
  EXPECT_EQ(again.spec().max_replicas(), 2);
  EXPECT_TRUE(again.spec().accept_terms());
  EXPECT_EQ(again.spec().accepted_terms_sha256().size(), 64u);
  EXPECT_THAT(again.tags(), ::testing::ElementsAre("prod", "chat"));

  auto listed = RunJson<v1::ListDeploymentsResponse>({"deploy", "list"});
  ASSERT_EQ(listed.deployments_size(), 1);
  EXPECT_EQ(listed.deployments(0).name(), again.name());

  RunResult table = Run({"deploy", "list"});
  ASSERT_EQ(table.code, 0) << table.output;
  EXPECT_THAT(table.output, StartsWith("NAME"));
  EXPECT_THAT(table.output, HasSubstr(again.name()));
  EXPECT_THAT(table.output, HasSubstr("my-chat"));
  EXPECT_THAT(table.output, HasSubstr(kModel));

  RunResult get = Run({"deploy", "get", "my-chat"});
  ASSERT_EQ(get.code, 0) << get.output;
  EXPECT_THAT(get.output, HasSubstr("Name:"));
  EXPECT_THAT(get.output, HasSubstr(again.name()));
  EXPECT_THAT(get.output, HasSubstr("support bot"));
  EXPECT_THAT(get.output, HasSubstr("prod, chat"));
  EXPECT_THAT(get.output, HasSubstr("State:"));
  EXPECT_THAT(get.output, HasSubstr("gateway.test:7100"));
}

TEST_F(HangarctlSuiteTest, UpdateRedeployRollbackHistoryDelete) {
  const std::string name = CreateDeployment("flow");

  RunResult updated = Run({"deploy", "update", name, "--description",
                           "new words", "--tag", "x", "--tag", "y"});
  ASSERT_EQ(updated.code, 0) << updated.output;
  EXPECT_THAT(updated.output, HasSubstr("updated"));
  auto after_update = RunJson<v1::Deployment>({"deploy", "get", name});
  EXPECT_EQ(after_update.description(), "new words");
  EXPECT_THAT(after_update.tags(), ::testing::ElementsAre("x", "y"));
  EXPECT_EQ(after_update.latest_revision(), 1);

  RunResult cleared = Run({"deploy", "update", name, "--tag="});
  ASSERT_EQ(cleared.code, 0) << cleared.output;
  EXPECT_EQ(RunJson<v1::Deployment>({"deploy", "get", name}).tags_size(), 0);

  // Redeploy needs the terms too, and keeps what the flags do not change.
  RunResult unaccepted =
      Run({"deploy", "redeploy", name, "--temperature", "0.5"});
  EXPECT_EQ(unaccepted.code, 2) << unaccepted.output;
  RunResult redeployed = Run(
      {"deploy", "redeploy", name, "--temperature", "0.5", "--accept_terms"});
  ASSERT_EQ(redeployed.code, 0) << redeployed.output;
  EXPECT_THAT(redeployed.output, HasSubstr("redeployed as revision 2"));
  auto after_redeploy = RunJson<v1::Deployment>({"deploy", "get", name});
  EXPECT_EQ(after_redeploy.latest_revision(), 2);
  EXPECT_FLOAT_EQ(after_redeploy.spec().sampling().temperature(), 0.5f);
  EXPECT_EQ(after_redeploy.spec().model(), kModel);

  RunResult rolled = Run({"deploy", "rollback", name, "--to_revision", "1"});
  ASSERT_EQ(rolled.code, 0) << rolled.output;
  EXPECT_THAT(rolled.output,
              HasSubstr("rolled back to revision 1 as revision 3"));
  RunResult no_target = Run({"deploy", "rollback", name, "--to_revision", "9"});
  EXPECT_EQ(no_target.code, 2);

  auto history =
      RunJson<v1::ListRevisionsResponse>({"deploy", "history", name});
  ASSERT_EQ(history.revisions_size(), 3);
  EXPECT_EQ(history.revisions(0).number(), 3);
  EXPECT_EQ(history.revisions(0).rolled_back_from(), 1);
  EXPECT_THAT(history.revisions(1).changed_fields(),
              ::testing::Contains("sampling.temperature"));
  RunResult table = Run({"deploy", "history", name});
  ASSERT_EQ(table.code, 0) << table.output;
  EXPECT_THAT(table.output, StartsWith("REVISION"));
  EXPECT_THAT(table.output, HasSubstr("sampling.temperature"));
  EXPECT_EQ(Lines(table.output), 4) << table.output;

  RunResult deleted = Run({"deploy", "delete", name, "--force"});
  ASSERT_EQ(deleted.code, 0) << deleted.output;
  EXPECT_THAT(deleted.output, HasSubstr("deleted"));
  auto after_delete = RunJson<v1::Deployment>({"deploy", "get", name});
  EXPECT_THAT(after_delete.state(),
              ::testing::AnyOf(v1::DEPLOYMENT_STATE_DELETING,
                               v1::DEPLOYMENT_STATE_DELETED));
  EXPECT_EQ(
      RunJson<v1::ListDeploymentsResponse>({"deploy", "list", "--show_deleted"})
          .deployments_size(),
      1);
}

TEST_F(HangarctlSuiteTest, WatchEndsWithExitThreeWhenTheDeploymentStops) {
  const std::string name = CreateDeployment("watched");
  std::unique_ptr<ChildProcess> watch = Start({"deploy", "watch", name});
  ASSERT_NE(watch, nullptr);
  // The first state shows before anything changes.
  ASSERT_TRUE(::hangar::testing::WaitUntil(
      [&] { return absl::StrContains(watch->Output(), "revision 1"); },
      absl::Seconds(30)))
      << watch->Output();
  RunResult undeployed = Run({"deploy", "undeploy", name});
  ASSERT_EQ(undeployed.code, 0) << undeployed.output;
  auto code = watch->Wait(absl::Seconds(30));
  ASSERT_THAT(code, IsOk());
  // UNDEPLOYED (or FAILED, should the reconciler fail it first) ends it.
  EXPECT_EQ(*code, 3) << watch->Output();
  EXPECT_THAT(watch->Output(),
              HasSubstr("hangarctl: deployment " + name + " ended "));
  // Plain lines, never a redrawn bar, when stdout is not a terminal.
  EXPECT_THAT(watch->Output(), Not(HasSubstr("\r")));

  // Already stopped: the first state ends the watch.
  RunResult again = Run({"deploy", "watch", name, "-o", "json"});
  EXPECT_EQ(again.code, 3) << again.output;
  EXPECT_THAT(again.output, HasSubstr("\"state\": \"DEPLOYMENT_STATE_"));
  // --wait follows the new deployment; nothing can run here, so it ends at
  // the time limit (exit 1) or when the reconciler fails it (exit 3).
  RunResult waited =
      Run({"deploy", "create", "waited", "--model", kModel, "--hardware",
           kOffering, "--accept_terms", "--wait", "--watch_timeout_seconds=2"});
  EXPECT_THAT(waited.code, ::testing::AnyOf(1, 3)) << waited.output;
  EXPECT_THAT(waited.output, HasSubstr("(waited) created: PENDING"));
  EXPECT_THAT(waited.output, HasSubstr("revision 1, 0/1 ready"));
  if (waited.code == 1) {
    EXPECT_THAT(waited.output, HasSubstr("hangarctl: DEADLINE_EXCEEDED: "));
  }

  RunResult missing =
      Run({"deploy", "watch", "dep-aaaaaaaaaaaa", "--watch_timeout_seconds=5"});
  EXPECT_EQ(missing.code, 1) << missing.output;
  EXPECT_THAT(missing.output, HasSubstr("hangarctl: NOT_FOUND: "));
}

TEST_F(HangarctlSuiteTest, UndeployAndEndpoint) {
  const std::string name = CreateDeployment("served");
  RunResult endpoint = Run({"endpoint", name});
  ASSERT_EQ(endpoint.code, 0) << endpoint.output;
  EXPECT_THAT(endpoint.output, HasSubstr("Address:"));
  EXPECT_THAT(endpoint.output, HasSubstr("gateway.test:7100"));
  EXPECT_THAT(endpoint.output, HasSubstr("InferenceService"));
  EXPECT_THAT(endpoint.output, HasSubstr("Ready:"));
  auto json = RunJson<v1::Endpoint>({"endpoint", name});
  EXPECT_EQ(json.deployment(), name);
  EXPECT_EQ(json.address(), "gateway.test:7100");

  RunResult undeployed = Run({"deploy", "undeploy", name});
  ASSERT_EQ(undeployed.code, 0) << undeployed.output;
  EXPECT_THAT(undeployed.output, HasSubstr("undeployed: UNDEPLOYED"));
}

TEST_F(HangarctlSuiteTest, KeysCreateListRevokeAndUsage) {
  const std::string name = CreateDeployment("keyed");
  RunResult created = Run({"keys", "create", name, "--name", "ci"});
  ASSERT_EQ(created.code, 0) << created.output;
  EXPECT_THAT(created.output, HasSubstr("Key:"));
  EXPECT_THAT(created.output, HasSubstr("hk_"));
  EXPECT_THAT(created.output, HasSubstr("not shown again"));

  auto second = RunJson<v1::CreateApiKeyResponse>(
      {"keys", "create", name, "--name", "batch"});
  EXPECT_THAT(second.plaintext(), StartsWith("hk_"));
  EXPECT_THAT(second.api_key().name(), StartsWith("key-"));

  RunResult listed = Run({"keys", "list", name});
  ASSERT_EQ(listed.code, 0) << listed.output;
  EXPECT_THAT(listed.output, StartsWith("NAME"));
  EXPECT_THAT(listed.output, HasSubstr("ci"));
  EXPECT_THAT(listed.output, HasSubstr("batch"));
  EXPECT_THAT(listed.output, Not(HasSubstr(second.plaintext())));

  RunResult revoked = Run({"keys", "revoke", second.api_key().name()});
  ASSERT_EQ(revoked.code, 0) << revoked.output;
  EXPECT_THAT(revoked.output, HasSubstr("revoked"));
  auto active = RunJson<v1::ListApiKeysResponse>({"keys", "list", name});
  EXPECT_EQ(active.api_keys_size(), 1);
  auto all = RunJson<v1::ListApiKeysResponse>(
      {"keys", "list", name, "--show_revoked"});
  ASSERT_EQ(all.api_keys_size(), 2);

  RunResult usage = Run({"usage", "--deployment", name});
  ASSERT_EQ(usage.code, 0) << usage.output;
  EXPECT_THAT(usage.output, HasSubstr("Total:"));
  EXPECT_THAT(usage.output, HasSubstr("0.50 USD per 1k prompt tokens"));
  auto usage_json = RunJson<v1::GetUsageResponse>({"usage"});
  EXPECT_EQ(usage_json.prices().prompt_per_1k_tokens().micros(), 500'000);
  RunResult bad_date = Run({"usage", "--from", "yesterday"});
  EXPECT_EQ(bad_date.code, 1);
  EXPECT_THAT(bad_date.output, StartsWith("hangarctl: INVALID_ARGUMENT: "));
}

TEST_F(HangarctlSuiteTest, GenerateStreamsTokensAsTheyArrive) {
  std::unique_ptr<ChildProcess> child =
      Start({"generate", "my-chat", "gated first second"},
            {absl::StrCat("HANGAR_API_KEY=", kApiKey)});
  ASSERT_NE(child, nullptr);
  // The first token is printed while the server holds the rest back.
  EXPECT_TRUE(::hangar::testing::WaitUntil(
      [&] { return absl::StrContains(child->Output(), "gated"); },
      absl::Seconds(30)));
  EXPECT_TRUE(child->Running());
  EXPECT_THAT(child->Output(), Not(HasSubstr("first")));
  inference_.release.Notify();
  auto code = child->Wait(absl::Seconds(30));
  ASSERT_THAT(code, IsOk());
  EXPECT_EQ(*code, 0) << child->Output();
  EXPECT_THAT(child->Output(), HasSubstr("gated first second\n"));
  EXPECT_THAT(child->Output(), HasSubstr("[EOS; 3 prompt + 3 completion"));

  RunResult json = Run(
      {"generate", "my-chat", "one two", "-o", "json", "--api_key", kApiKey});
  ASSERT_EQ(json.code, 0) << json.output;
  std::vector<std::string> lines =
      absl::StrSplit(json.output, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << json.output;
  v1::GenerateStreamResponse last;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(lines[1], &last).ok());
  EXPECT_EQ(last.delta(), " two");
  EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_EOS);

  RunResult busy = Run({"generate", "my-chat", "busy", "--api_key", kApiKey});
  EXPECT_EQ(busy.code, 1);
  EXPECT_EQ(busy.output,
            "hangarctl: RESOURCE_EXHAUSTED: deployment queue is full (retry "
            "after 250 ms)\n");

  RunResult no_key = Run({"generate", "my-chat", "hi"});
  EXPECT_EQ(no_key.code, 2);
  EXPECT_THAT(no_key.output, HasSubstr("HANGAR_API_KEY"));
  RunResult bad_key =
      Run({"generate", "my-chat", "hi", "--api_key", "hk_wrong"});
  EXPECT_EQ(bad_key.code, 1);
  EXPECT_THAT(bad_key.output, StartsWith("hangarctl: UNAUTHENTICATED: "));
}

TEST_F(HangarctlSuiteTest, AddressesAndTokenFromTheEnvironment) {
  RunResult result = Run({"deploy", "list", "-o", "json"},
                         {"HANGAR_DEPLOYMENT_ADDRESS=" + deployment_->address(),
                          "HANGAR_ADMIN_TOKEN_FILE=" + token_file_},
                         /*with_addresses=*/false);
  EXPECT_EQ(result.code, 0) << result.output;
  RunResult output_env = Run({"hardware", "list"},
                             {"HANGAR_SCHEDULER_ADDRESS=" + fakes_->address(),
                              "HANGAR_CTL_OUTPUT=json"},
                             /*with_addresses=*/false);
  EXPECT_EQ(output_env.code, 0) << output_env.output;
  EXPECT_THAT(output_env.output, HasSubstr("\"offerings\""));
}

}  // namespace
}  // namespace hangar
