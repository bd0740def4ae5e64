// Hugging Face import and preparation against a fake Hub served over HTTP
// by the test: public and private repositories, connections, a 404, a gated
// repository, an unsupported architecture, an unknown revision, a server
// that drops the connection mid-download, a wrong checksum, no network.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <pqxx/pqxx>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/auth/crypto.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/catalog/catalog_test_base.h"
#include "tests/integration/catalog/test_models.h"

namespace hangar::testing {
namespace {

using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSha[] = "0123456789abcdef0123456789abcdef01234567";
constexpr char kToken[] = "hf_SecretTokenValue0123456789";

v1::ImportModelRequest HubImport(const std::string& repo,
                                 const std::string& connection = "",
                                 const std::string& revision = "") {
  v1::ImportModelRequest request;
  request.mutable_hugging_face()->set_repo(repo);
  request.mutable_hugging_face()->set_connection(connection);
  request.mutable_hugging_face()->set_revision(revision);
  return request;
}

std::string ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

TEST_F(CatalogTest, ImportsAPublicRepositoryReadingOnlyHeaders) {
  hub_->AddRepo(TinyRepo("acme/tiny-llama"));
  v1::Model model;
  ASSERT_TRUE(Import(HubImport("acme/tiny-llama"), &model).ok());
  EXPECT_EQ(model.state(), v1::MODEL_STATE_IMPORTING);
  EXPECT_EQ(model.resolved_revision(), kSha);
  model = WaitForState("acme/tiny-llama", v1::MODEL_STATE_READY);
  ASSERT_EQ(model.state(), v1::MODEL_STATE_READY) << model.failure_reason();
  int64_t parameters = 0;
  TinySafetensors("LlamaForCausalLM", 1, &parameters);
  EXPECT_EQ(model.parameter_count(), parameters);
  EXPECT_EQ(model.source(), v1::MODEL_SOURCE_HUGGING_FACE);
  EXPECT_EQ(model.license(), "apache-2.0");
  EXPECT_EQ(model.family(), "llama");
  EXPECT_EQ(model.preparation().state(), v1::PREPARATION_STATE_NOT_PREPARED);
  // Two small range requests for the header; no weights were fetched.
  EXPECT_EQ(
      hub_->RequestsFor("/resolve/" + std::string(kSha) + "/model.safetensors"),
      2);
}

TEST_F(CatalogTest, PrepareDownloadsOncePerRevisionWithChecksums) {
  FakeHub::Repo repo = TinyRepo("acme/tiny-llama");
  hub_->AddRepo(repo);
  v1::Model model;
  ASSERT_TRUE(Import(HubImport("acme/tiny-llama"), &model).ok());
  ASSERT_EQ(WaitForState("acme/tiny-llama", v1::MODEL_STATE_READY).state(),
            v1::MODEL_STATE_READY);
  v1::Preparation preparation;
  ASSERT_TRUE(Prepare("acme/tiny-llama", &preparation).ok());
  EXPECT_EQ(preparation.state(), v1::PREPARATION_STATE_DOWNLOADING);
  EXPECT_GT(preparation.progress().total(), 0);
  model = WaitForPreparation("acme/tiny-llama", v1::PREPARATION_STATE_PREPARED);
  ASSERT_EQ(model.preparation().state(), v1::PREPARATION_STATE_PREPARED)
      << model.preparation().failure_reason();
  EXPECT_EQ(model.preparation().progress().done(),
            model.preparation().progress().total());
  EXPECT_EQ(model.preparation().sha256().size(), 64u);
  const std::string directory = model_store_ + "/acme/tiny-llama/" + kSha;
  EXPECT_EQ(model.preparation().local_path(), directory);
  EXPECT_EQ(ReadFile(directory + "/model.safetensors"),
            repo.files["model.safetensors"]);
  EXPECT_EQ(ReadFile(directory + "/config.json"), repo.files["config.json"]);
  EXPECT_FALSE(std::filesystem::exists(directory + "/README.md"));
  EXPECT_FALSE(
      std::filesystem::exists(directory + "/model.safetensors.partial"));

  const int downloads = hub_->RequestsFor("/model.safetensors");
  ASSERT_TRUE(Prepare("acme/tiny-llama", &preparation).ok());
  EXPECT_EQ(preparation.state(), v1::PREPARATION_STATE_PREPARED);
  EXPECT_EQ(hub_->RequestsFor("/model.safetensors"), downloads);
}

TEST_F(CatalogTest, DownloadResumesAfterTheServerDropsTheConnection) {
  FakeHub::Repo repo = TinyRepo("acme/flaky");
  const int64_t size =
      static_cast<int64_t>(repo.files["model.safetensors"].size());
  hub_->AddRepo(repo);
  v1::Model model;
  ASSERT_TRUE(Import(HubImport("acme/flaky"), &model).ok());
  ASSERT_EQ(WaitForState("acme/flaky", v1::MODEL_STATE_READY).state(),
            v1::MODEL_STATE_READY);
  hub_->DropAfter("model.safetensors", size / 3, 2);
  v1::Preparation preparation;
  ASSERT_TRUE(Prepare("acme/flaky", &preparation).ok());
  model = WaitForPreparation("acme/flaky", v1::PREPARATION_STATE_PREPARED);
  ASSERT_EQ(model.preparation().state(), v1::PREPARATION_STATE_PREPARED)
      << model.preparation().failure_reason();
  EXPECT_GE(hub_->ResumedRequestsFor("/model.safetensors"), 2);
  const std::string file =
      model_store_ + "/acme/flaky/" + kSha + "/model.safetensors";
  EXPECT_EQ(auth::Sha256Hex(ReadFile(file)),
            auth::Sha256Hex(repo.files["model.safetensors"]));
}

TEST_F(CatalogTest, ChecksumMismatchFailsThePreparation) {
  FakeHub::Repo repo = TinyRepo("acme/corrupt");
  repo.sha256_overrides["model.safetensors"] = std::string(64, 'a');
  hub_->AddRepo(repo);
  v1::Model model;
  ASSERT_TRUE(Import(HubImport("acme/corrupt"), &model).ok());
  ASSERT_EQ(WaitForState("acme/corrupt", v1::MODEL_STATE_READY).state(),
            v1::MODEL_STATE_READY);
  v1::Preparation preparation;
  ASSERT_TRUE(Prepare("acme/corrupt", &preparation).ok());
  model = WaitForPreparation("acme/corrupt", v1::PREPARATION_STATE_PREPARED);
  EXPECT_EQ(model.preparation().state(), v1::PREPARATION_STATE_FAILED);
  EXPECT_THAT(model.preparation().failure_reason(),
              HasSubstr("checksum mismatch"));
  EXPECT_FALSE(std::filesystem::exists(model_store_ + "/acme/corrupt/" + kSha +
                                       "/model.safetensors"));
}

TEST_F(CatalogTest, PrivateRepositoryNeedsAConnectionAndTheTokenStaysSecret) {
  hub_->AddRepo(TinyRepo("acme/private", kToken));
  const int total = TotalModels();
  v1::Model model;
  grpc::Status status = Import(HubImport("acme/private"), &model);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(),
              AllOf(HasSubstr("hugging_face.repo"), HasSubstr("connection"),
                    HasSubstr("401")));
  status = Import(HubImport("acme/private", "missing"), &model);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("hugging_face.connection"));
  EXPECT_EQ(TotalModels(), total);

  v1::Connection connection;
  status = CreateConnection("hf-main", "", &connection);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("connection.token"));
  ASSERT_TRUE(CreateConnection("hf-main", kToken, &connection).ok());
  EXPECT_EQ(connection.token(), "");
  EXPECT_EQ(connection.token_prefix(), "hf_Se...");
  EXPECT_EQ(CreateConnection("hf-main", kToken, &connection).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  ASSERT_TRUE(
      CreateConnection("hf-wrong", "hf_not_the_right_one", &connection).ok());

  // The database holds only the sealed token.
  {
    pqxx::connection db(conninfo());
    pqxx::work tx(db);
    for (const pqxx::row& row :
         tx.exec("SELECT sealed_token FROM catalog.connections")) {
      EXPECT_THAT(row[0].as<std::string>(), Not(HasSubstr(kToken)));
      EXPECT_THAT(row[0].as<std::string>(),
                  Not(HasSubstr("hf_not_the_right_one")));
    }
  }

  status = Import(HubImport("acme/private", "hf-wrong"), &model);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), Not(HasSubstr("hf_not_the_right_one")));

  ASSERT_TRUE(Import(HubImport("acme/private", "hf-main"), &model).ok());
  EXPECT_EQ(model.connection(), "hf-main");
  ASSERT_EQ(WaitForState("acme/private", v1::MODEL_STATE_READY).state(),
            v1::MODEL_STATE_READY);
  v1::Preparation preparation;
  ASSERT_TRUE(Prepare("acme/private", &preparation).ok());
  model = WaitForPreparation("acme/private", v1::PREPARATION_STATE_PREPARED);
  EXPECT_EQ(model.preparation().state(), v1::PREPARATION_STATE_PREPARED)
      << model.preparation().failure_reason();
  EXPECT_THAT(hub_->AuthorizationsSeen(),
              Contains(absl::StrCat("Bearer ", kToken)));
  // The connection cannot go while a model needs it.
  grpc::ClientContext delete_context;
  v1::DeleteConnectionRequest del;
  del.set_name("hf-main");
  v1::DeleteConnectionResponse deleted;
  status = stub().DeleteConnection(&delete_context, del, &deleted);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("acme/private"));
  // No response ever carried the token.
  EXPECT_THAT(model.ShortDebugString(), Not(HasSubstr(kToken)));
}

TEST_F(CatalogTest, NotFoundGatedAndUnknownRevisionAreErrorsOfTheCall) {
  hub_->AddRepo(TinyRepo("acme/tiny-llama"));
  FakeHub::Repo gated = TinyRepo("acme/gated");
  gated.gated = true;
  hub_->AddRepo(gated);
  const int total = TotalModels();
  v1::Model model;
  grpc::Status status = Import(HubImport("acme/nope"), &model);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("hugging_face.repo"));
  status = Import(HubImport("acme/gated"), &model);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("gated"));
  status = Import(HubImport("acme/tiny-llama", "", "no-such-branch"), &model);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("hugging_face.revision"));
  EXPECT_EQ(TotalModels(), total);
  // Importing at the commit works; importing it twice does not.
  ASSERT_TRUE(Import(HubImport("acme/tiny-llama", "", kSha), &model).ok());
  EXPECT_EQ(Import(HubImport("acme/tiny-llama"), &model).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(CatalogTest, UnsupportedArchitectureFailsWithTheReason) {
  FakeHub::Repo repo = TinyRepo("acme/gpt2");
  repo.files["config.json"] =
      R"({"architectures": ["GPT2LMHeadModel"], "n_layer": 2})";
  hub_->AddRepo(repo);
  v1::Model model;
  ASSERT_TRUE(Import(HubImport("acme/gpt2"), &model).ok());
  model = WaitForState("acme/gpt2", v1::MODEL_STATE_READY);
  EXPECT_EQ(model.state(), v1::MODEL_STATE_FAILED);
  EXPECT_THAT(model.failure_reason(), AllOf(HasSubstr("GPT2LMHeadModel"),
                                            HasSubstr("LlamaForCausalLM")));
}

TEST_F(CatalogTest, QwenRepositoryCountsItsBiases) {
  hub_->AddRepo(TinyRepo("acme/tiny-qwen", "", "Qwen2ForCausalLM"));
  v1::Model model;
  ASSERT_TRUE(Import(HubImport("acme/tiny-qwen"), &model).ok());
  model = WaitForState("acme/tiny-qwen", v1::MODEL_STATE_READY);
  ASSERT_EQ(model.state(), v1::MODEL_STATE_READY) << model.failure_reason();
  int64_t parameters = 0;
  TinySafetensors("Qwen2ForCausalLM", 1, &parameters);
  EXPECT_EQ(model.parameter_count(), parameters);
  EXPECT_EQ(model.family(), "qwen2");
}

TEST_F(CatalogTest, CuratedGatedModelsArePreparedThroughTheCuratedConnection) {
  // The Hub holds the curated repository, behind a token.
  hub_->AddRepo(TinyRepo("HuggingFaceTB/SmolLM2-135M-Instruct", kToken));
  v1::Preparation preparation;
  grpc::Status status =
      Prepare("HuggingFaceTB/SmolLM2-135M-Instruct", &preparation);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  StartServer([](catalog::CatalogServer::Options& options) {
    options.curated_connection = "hf-curated";
  });
  status = Prepare("HuggingFaceTB/SmolLM2-135M-Instruct", &preparation);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("hf-curated"));
  v1::Connection connection;
  ASSERT_TRUE(CreateConnection("hf-curated", kToken, &connection).ok());
  ASSERT_TRUE(
      Prepare("HuggingFaceTB/SmolLM2-135M-Instruct", &preparation).ok());
  v1::Model model = WaitForPreparation("HuggingFaceTB/SmolLM2-135M-Instruct",
                                       v1::PREPARATION_STATE_PREPARED);
  EXPECT_EQ(model.preparation().state(), v1::PREPARATION_STATE_PREPARED)
      << model.preparation().failure_reason();
  EXPECT_TRUE(std::filesystem::exists(model_store_ +
                                      "/HuggingFaceTB/SmolLM2-135M-Instruct/" +
                                      kSha + "/model.safetensors"));
}

TEST_F(CatalogTest, NoNetworkIsUnavailableNamingTheEndpoint) {
  StartServer([](catalog::CatalogServer::Options& options) {
    options.hf_endpoint = "http://127.0.0.1:1";
  });
  v1::Preparation preparation;
  grpc::Status status =
      Prepare("HuggingFaceTB/SmolLM2-135M-Instruct", &preparation);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("http://127.0.0.1:1"));
  v1::Model model;
  status = Import(HubImport("acme/anything"), &model);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("http://127.0.0.1:1"));
}

TEST_F(CatalogTest, ConnectionsCanBeListedPagedAndDeleted) {
  v1::Connection connection;
  for (const char* name : {"c-one", "c-three", "c-two"}) {
    ASSERT_TRUE(CreateConnection(name, kToken, &connection).ok());
  }
  EXPECT_EQ(CreateConnection("Bad_Name", kToken, &connection).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  std::vector<std::string> names;
  v1::ListConnectionsRequest request;
  request.set_page_size(2);
  do {
    grpc::ClientContext context;
    v1::ListConnectionsResponse response;
    ASSERT_TRUE(stub().ListConnections(&context, request, &response).ok());
    for (const v1::Connection& c : response.connections()) {
      names.push_back(c.name());
      EXPECT_EQ(c.token(), "");
    }
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  EXPECT_EQ(names, (std::vector<std::string>{"c-one", "c-three", "c-two"}));

  grpc::ClientContext get_context;
  v1::GetConnectionRequest get;
  get.set_name("c-two");
  ASSERT_TRUE(stub().GetConnection(&get_context, get, &connection).ok());
  EXPECT_EQ(connection.token(), "");
  EXPECT_EQ(connection.token_prefix(), "hf_Se...");

  grpc::ClientContext delete_context;
  v1::DeleteConnectionRequest del;
  del.set_name("c-two");
  v1::DeleteConnectionResponse deleted;
  ASSERT_TRUE(stub().DeleteConnection(&delete_context, del, &deleted).ok());
  grpc::ClientContext again;
  EXPECT_EQ(stub().GetConnection(&again, get, &connection).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(CatalogTest, RestartResumesInterruptedImportsAndDownloads) {
  FakeHub::Repo a = TinyRepo("acme/a");
  FakeHub::Repo b = TinyRepo("acme/b");
  hub_->AddRepo(a);
  hub_->AddRepo(b);
  v1::Model model;
  for (const char* repo : {"acme/a", "acme/b"}) {
    ASSERT_TRUE(Import(HubImport(repo), &model).ok());
    ASSERT_EQ(WaitForState(repo, v1::MODEL_STATE_READY).state(),
              v1::MODEL_STATE_READY);
  }
  StopServer();
  // As a crash would leave them: "acme/a" mid-import, "acme/b" with a third
  // of its weights downloaded.
  {
    pqxx::connection db(conninfo());
    pqxx::work tx(db);
    tx.exec(
        "UPDATE catalog.models SET state = 1, parameter_count = 0 "
        "WHERE name = 'acme/a'");
    tx.exec(
        "UPDATE catalog.models SET preparation_state = 2 WHERE name = "
        "'acme/b'");
    tx.commit();
  }
  const std::string directory = model_store_ + "/acme/b/" + kSha;
  std::filesystem::create_directories(directory);
  const std::string& weights = b.files["model.safetensors"];
  std::ofstream(directory + "/model.safetensors.partial", std::ios::binary)
      << weights.substr(0, weights.size() / 3);

  const std::string weights_path =
      "acme/b/resolve/" + std::string(kSha) + "/model.safetensors";
  const int resumed_before =
      hub_->ResumedRequestsFor(weights_path);  // Header reads.
  StartServer();
  model = WaitForState("acme/a", v1::MODEL_STATE_READY);
  EXPECT_EQ(model.state(), v1::MODEL_STATE_READY);
  EXPECT_GT(model.parameter_count(), 0);
  model = WaitForPreparation("acme/b", v1::PREPARATION_STATE_PREPARED);
  ASSERT_EQ(model.preparation().state(), v1::PREPARATION_STATE_PREPARED)
      << model.preparation().failure_reason();
  EXPECT_EQ(hub_->ResumedRequestsFor(weights_path), resumed_before + 1);
  EXPECT_EQ(ReadFile(directory + "/model.safetensors"), weights);
}

TEST_F(CatalogTest, WatchModelStreamsTheDownloadUntilPrepared) {
  hub_->AddRepo(TinyRepo("acme/watched"));
  v1::Model model;
  ASSERT_TRUE(Import(HubImport("acme/watched"), &model).ok());
  ASSERT_EQ(WaitForState("acme/watched", v1::MODEL_STATE_READY).state(),
            v1::MODEL_STATE_READY);
  hub_->Hold("model.safetensors");
  v1::Preparation preparation;
  ASSERT_TRUE(Prepare("acme/watched", &preparation).ok());
  ASSERT_TRUE(hub_->AwaitHeldDownload()) << [&] {
    v1::Model now;
    Get("acme/watched", &now);
    return now.preparation().ShortDebugString();
  }();
  // The download is parked: the model shows it in progress, and a second
  // PrepareModel shares it.
  model = WaitFor("acme/watched", [](const v1::Model& m) {
    return m.preparation().state() == v1::PREPARATION_STATE_DOWNLOADING &&
           absl::StrContains(m.preparation().progress().message(),
                             "model.safetensors");
  });
  EXPECT_GT(model.preparation().progress().total(), 0);
  EXPECT_LT(model.preparation().progress().done(),
            model.preparation().progress().total());
  ASSERT_TRUE(Prepare("acme/watched", &preparation).ok());
  EXPECT_EQ(preparation.state(), v1::PREPARATION_STATE_DOWNLOADING);
  hub_->Release();
  model = WaitForPreparation("acme/watched", v1::PREPARATION_STATE_PREPARED);
  EXPECT_EQ(model.preparation().state(), v1::PREPARATION_STATE_PREPARED);
  EXPECT_EQ(model.preparation().progress().done(),
            model.preparation().progress().total());
  EXPECT_EQ(hub_->RequestsFor("/" + std::string(kSha) + "/model.safetensors"),
            3);
}

// Issue 8, item 2: a Hub outage longer than the downloader's short retry is
// waited out (shown in the preparation), and the download resumes from the
// byte it had when the Hub returns.
TEST_F(CatalogTest, PreparationWaitsForTheHubAndResumesWhenItReturns) {
  StartServer([](catalog::CatalogServer::Options& options) {
    options.hub_retry.initial_backoff = absl::Milliseconds(20);
    options.hub_retry.max_backoff = absl::Milliseconds(80);
    options.hub_retry.budget = absl::Minutes(5);
  });
  FakeHub::Repo repo = TinyRepo("acme/outage");
  hub_->AddRepo(repo);
  v1::Model model;
  ASSERT_TRUE(Import(HubImport("acme/outage"), &model).ok());
  ASSERT_EQ(WaitForState("acme/outage", v1::MODEL_STATE_READY).state(),
            v1::MODEL_STATE_READY);
  const std::string& weights = repo.files["model.safetensors"];
  const std::string weights_path =
      "acme/outage/resolve/" + std::string(kSha) + "/model.safetensors";
  const int resumed_before = hub_->ResumedRequestsFor(weights_path);
  // A third of the weights, then the Hub goes away.
  hub_->DropAfter("model.safetensors", static_cast<int64_t>(weights.size() / 3),
                  1);
  hub_->GoDownAfterNextDrop();
  v1::Preparation preparation;
  ASSERT_TRUE(Prepare("acme/outage", &preparation).ok());

  model = WaitFor("acme/outage", [](const v1::Model& m) {
    return m.preparation().retry_attempt() >= 2 ||
           m.preparation().state() != v1::PREPARATION_STATE_DOWNLOADING;
  });
  ASSERT_EQ(model.preparation().state(), v1::PREPARATION_STATE_DOWNLOADING)
      << model.preparation().ShortDebugString();
  EXPECT_THAT(model.preparation().progress().message(),
              HasSubstr("waiting for the Hub (attempt "));
  EXPECT_THAT(model.preparation().last_error(), HasSubstr("is unavailable"));
  EXPECT_TRUE(model.preparation().has_next_retry_time());
  EXPECT_GE(model.preparation().progress().done(),
            static_cast<int64_t>(weights.size() / 3));
  // GetModel shows the same.
  ASSERT_TRUE(Get("acme/outage", &model).ok());
  EXPECT_GE(model.preparation().retry_attempt(), 1);
  EXPECT_GT(hub_->RefusedWhileDown(), 0);

  hub_->SetDown(false);
  model = WaitForPreparation("acme/outage", v1::PREPARATION_STATE_PREPARED);
  ASSERT_EQ(model.preparation().state(), v1::PREPARATION_STATE_PREPARED)
      << model.preparation().failure_reason();
  EXPECT_EQ(model.preparation().retry_attempt(), 0);
  EXPECT_GT(hub_->ResumedRequestsFor(weights_path), resumed_before);
  EXPECT_EQ(ReadFile(model.preparation().local_path() + "/model.safetensors"),
            weights);
}

TEST_F(CatalogTest, PreparationFailsWhenTheHubStaysDownPastTheBudget) {
  StartServer([](catalog::CatalogServer::Options& options) {
    options.hub_retry.initial_backoff = absl::Milliseconds(20);
    options.hub_retry.max_backoff = absl::Milliseconds(40);
    options.hub_retry.budget = absl::Milliseconds(300);
  });
  hub_->AddRepo(TinyRepo("acme/gone"));
  v1::Model model;
  ASSERT_TRUE(Import(HubImport("acme/gone"), &model).ok());
  ASSERT_EQ(WaitForState("acme/gone", v1::MODEL_STATE_READY).state(),
            v1::MODEL_STATE_READY);
  hub_->DropAfter("model.safetensors", 100, 1);
  hub_->GoDownAfterNextDrop();
  v1::Preparation preparation;
  ASSERT_TRUE(Prepare("acme/gone", &preparation).ok());
  model = WaitForPreparation("acme/gone", v1::PREPARATION_STATE_PREPARED);
  EXPECT_EQ(model.preparation().state(), v1::PREPARATION_STATE_FAILED);
  EXPECT_THAT(model.preparation().failure_reason(),
              HasSubstr("gave up waiting for the Hub"));
}

}  // namespace
}  // namespace hangar::testing
