// The catalog over real gRPC and a real PostgreSQL: curated models, queries
// and pagination, local import (directory and GGUF), updates, deletes, bad
// input, reflection and metrics.
#include <curl/curl.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <pqxx/pqxx>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/server/reflection_client.h"
#include "common/util/sha256.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "hangar/v1/deployment.grpc.pb.h"
#include "services/catalog/grpc_deployment_usage.h"
#include "services/catalog/memory_estimate.h"
#include "tests/integration/catalog/catalog_test_base.h"
#include "tests/integration/catalog/test_models.h"

namespace hangar::testing {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

v1::ImportModelRequest LocalImport(const std::string& path,
                                   const std::string& name = "") {
  v1::ImportModelRequest request;
  request.mutable_local()->set_path(path);
  request.set_name(name);
  return request;
}

TEST_F(CatalogTest, CuratedModelsAreLoadedWithComputedSizes) {
  v1::Model model;
  ASSERT_TRUE(Get("HuggingFaceTB/SmolLM2-135M-Instruct", &model).ok());
  EXPECT_EQ(model.source(), v1::MODEL_SOURCE_CURATED);
  EXPECT_EQ(model.state(), v1::MODEL_STATE_READY);
  EXPECT_EQ(model.architecture(), "LlamaForCausalLM");
  EXPECT_EQ(model.parameter_count(), 134'515'008);
  EXPECT_EQ(model.context_length(), 8192);
  EXPECT_TRUE(model.runs_on_cpu());
  EXPECT_EQ(model.supported_recipes_size(), 13);
  EXPECT_FALSE(model.etag().empty());
  EXPECT_GT(model.create_time().seconds(), 0);
  ASSERT_TRUE(Get("meta-llama/Llama-3.1-8B-Instruct", &model).ok());
  EXPECT_EQ(model.license(), "llama3.1");
  EXPECT_FALSE(model.runs_on_cpu());
  for (const v1::WeightSize& size : model.weight_sizes()) {
    if (size.dtype() == "bfloat16") EXPECT_EQ(size.bytes(), 2 * 8'030'261'248);
  }
  EXPECT_GE(TotalModels(), 30);
}

TEST_F(CatalogTest, RestartKeepsCuratedModelsAndEtags) {
  v1::Model before;
  ASSERT_TRUE(Get("Qwen/Qwen2.5-0.5B-Instruct", &before).ok());
  const int total = TotalModels();
  StartServer();  // Migrations and the upsert run again.
  v1::Model after;
  ASSERT_TRUE(Get("Qwen/Qwen2.5-0.5B-Instruct", &after).ok());
  EXPECT_EQ(after.etag(), before.etag());
  EXPECT_EQ(TotalModels(), total);
}

TEST_F(CatalogTest, ListModelsFilters) {
  auto names = [&](v1::ListModelsRequest request) {
    request.set_page_size(1000);
    v1::ListModelsResponse response;
    grpc::Status status = List(request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    std::vector<v1::Model> models(response.models().begin(),
                                  response.models().end());
    EXPECT_EQ(response.total_size(), static_cast<int>(models.size()));
    return models;
  };
  v1::ListModelsRequest request;
  request.set_family("qwen2");
  for (const v1::Model& m : names(request)) EXPECT_EQ(m.family(), "qwen2");
  EXPECT_GE(names(request).size(), 8u);

  request = {};
  request.set_tag("cpu");
  auto cpu_tagged = names(request);
  EXPECT_FALSE(cpu_tagged.empty());
  for (const v1::Model& m : cpu_tagged) EXPECT_THAT(m.tags(), Contains("cpu"));

  request = {};
  request.set_query("SMOLLM2");  // Case-insensitive substring.
  auto smol = names(request);
  EXPECT_GE(smol.size(), 4u);
  for (const v1::Model& m : smol) EXPECT_THAT(m.name(), HasSubstr("SmolLM2"));

  request = {};
  request.set_runs_on_cpu(true);
  for (const v1::Model& m : names(request))
    EXPECT_TRUE(m.runs_on_cpu()) << m.name();

  request = {};
  request.set_supports_engine(v1::ENGINE_VLLM);
  request.set_fits_gpu_memory_bytes(int64_t{16} << 30);
  auto fits = names(request);
  EXPECT_FALSE(fits.empty());
  for (const v1::Model& m : fits) {
    bool ok = false;
    for (const v1::RecipeSupport& r : m.supported_recipes()) {
      ok = ok || (r.recipe().engine() == v1::ENGINE_VLLM &&
                  r.min_gpu_memory_bytes() <= (int64_t{16} << 30));
    }
    EXPECT_TRUE(ok) << m.name();
    EXPECT_NE(m.name(), "meta-llama/Llama-3.1-70B-Instruct");
  }

  request = {};
  request.set_source(v1::MODEL_SOURCE_LOCAL);
  EXPECT_TRUE(names(request).empty());
}

TEST_F(CatalogTest, ListModelsPaginatesInNameOrderWithOpaqueTokens) {
  const int total = TotalModels();
  std::vector<std::string> seen;
  v1::ListModelsRequest request;
  request.set_page_size(7);
  int pages = 0;
  do {
    v1::ListModelsResponse response;
    ASSERT_TRUE(List(request, &response).ok());
    EXPECT_EQ(response.total_size(), total);
    for (const v1::Model& m : response.models()) seen.push_back(m.name());
    request.set_page_token(response.next_page_token());
    ++pages;
  } while (!request.page_token().empty() && pages < 100);
  EXPECT_EQ(static_cast<int>(seen.size()), total);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(),
            seen.size());

  v1::ListModelsResponse response;
  request.set_page_token("garbage!");
  EXPECT_EQ(List(request, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // A token from one filter is refused under another.
  request.set_page_token("");
  ASSERT_TRUE(List(request, &response).ok());
  request.set_page_token(response.next_page_token());
  request.set_family("llama");
  grpc::Status status = List(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("page_token"));
  request = {};
  request.set_page_size(1001);
  status = List(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("page_size"));
}

TEST_F(CatalogTest, ImportsALocalDirectory) {
  WriteTinyModelDir(local_root_ + "/tiny");
  v1::Model model;
  v1::ImportModelRequest request = LocalImport("tiny");
  request.set_description("a tiny model");
  request.add_tags("test");
  ASSERT_TRUE(Import(request, &model).ok());
  EXPECT_EQ(model.name(), "local/tiny");
  EXPECT_EQ(model.state(), v1::MODEL_STATE_IMPORTING);
  model = WaitForState("local/tiny", v1::MODEL_STATE_READY);
  ASSERT_EQ(model.state(), v1::MODEL_STATE_READY) << model.failure_reason();
  int64_t parameters = 0;
  TinySafetensors("LlamaForCausalLM", 1, &parameters);
  EXPECT_EQ(model.parameter_count(), parameters);
  EXPECT_EQ(model.architecture(), "LlamaForCausalLM");
  EXPECT_EQ(model.default_dtype(), "float32");
  EXPECT_EQ(model.context_length(), kTinyContext);
  EXPECT_TRUE(model.runs_on_cpu());
  EXPECT_EQ(model.source(), v1::MODEL_SOURCE_LOCAL);
  EXPECT_EQ(model.description(), "a tiny model");
  model = WaitForPreparation("local/tiny", v1::PREPARATION_STATE_PREPARED);
  EXPECT_EQ(model.preparation().state(), v1::PREPARATION_STATE_PREPARED);
  EXPECT_EQ(model.preparation().local_path(),
            std::filesystem::canonical(local_root_ + "/tiny").string());
  v1::Preparation preparation;
  ASSERT_TRUE(Prepare("local/tiny", &preparation).ok());
  EXPECT_EQ(preparation.state(), v1::PREPARATION_STATE_PREPARED);
  // The optimizer keys artifacts by the source checksum: the SHA-256 over
  // the *.safetensors files in name order, as its converter computes it.
  std::vector<std::string> weights;
  for (const auto& entry :
       std::filesystem::directory_iterator(local_root_ + "/tiny")) {
    if (entry.path().extension() == ".safetensors") {
      weights.push_back(entry.path().string());
    }
  }
  std::sort(weights.begin(), weights.end());
  absl::StatusOr<std::string> expected_sha256 = Sha256OfFiles(weights);
  ASSERT_TRUE(expected_sha256.ok());
  EXPECT_EQ(preparation.sha256(), *expected_sha256);
  v1::Model stored;
  ASSERT_TRUE(Get("local/tiny", &stored).ok());
  EXPECT_EQ(stored.preparation().sha256(), *expected_sha256);

  // Weights removed behind the catalog's back are reported, not hidden.
  std::filesystem::rename(local_root_ + "/tiny", local_root_ + "/moved");
  EXPECT_EQ(Prepare("local/tiny", &preparation).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  std::filesystem::rename(local_root_ + "/moved", local_root_ + "/tiny");

  // A duplicate import is refused and writes nothing.
  const int total = TotalModels();
  grpc::Status status = Import(LocalImport("tiny"), &model);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(status.error_message(), HasSubstr("name"));
  EXPECT_EQ(TotalModels(), total);
}

TEST_F(CatalogTest, ImportsALocalGgufFile) {
  WriteTinyGguf(local_root_ + "/tiny-q.gguf");
  v1::Model model;
  ASSERT_TRUE(Import(LocalImport(local_root_ + "/tiny-q.gguf"), &model).ok());
  EXPECT_EQ(model.name(), "local/tiny-q");
  model = WaitForState("local/tiny-q", v1::MODEL_STATE_READY);
  ASSERT_EQ(model.state(), v1::MODEL_STATE_READY) << model.failure_reason();
  EXPECT_EQ(model.architecture(), "LlamaForCausalLM");
  EXPECT_EQ(model.default_dtype(), "float32");
  int64_t parameters = 0;
  TinySafetensors("LlamaForCausalLM", 1, &parameters);
  EXPECT_EQ(model.parameter_count(), parameters);
}

TEST_F(CatalogTest, LocalImportOfAnUnsupportedModelFailsWithTheReason) {
  std::filesystem::create_directories(local_root_ + "/gpt2");
  std::ofstream(local_root_ + "/gpt2/config.json")
      << R"({"architectures": ["GPT2LMHeadModel"]})";
  v1::Model model;
  ASSERT_TRUE(Import(LocalImport("gpt2"), &model).ok());
  model = WaitForState("local/gpt2", v1::MODEL_STATE_READY);
  EXPECT_EQ(model.state(), v1::MODEL_STATE_FAILED);
  EXPECT_THAT(model.failure_reason(), HasSubstr("GPT2LMHeadModel"));
  v1::Preparation preparation;
  EXPECT_EQ(Prepare("local/gpt2", &preparation).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(CatalogTest, LocalImportRefusesPathsOutsideTheRoot) {
  std::filesystem::create_directories(dir_ + "/outside");
  WriteTinyModelDir(dir_ + "/outside/m");
  std::filesystem::create_directory_symlink(dir_ + "/outside",
                                            local_root_ + "/link");
  const int total = TotalModels();
  v1::Model model;
  for (const std::string& path :
       {std::string("../outside/m"), dir_ + "/outside/m",
        std::string("/etc/passwd"), std::string("link/m"),
        std::string("a\0b", 3)}) {
    grpc::Status status = Import(LocalImport(path), &model);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << path;
    EXPECT_THAT(status.error_message(), HasSubstr("local.path")) << path;
  }
  grpc::Status status = Import(LocalImport("missing"), &model);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(TotalModels(), total);
}

TEST_F(CatalogTest, BadInputIsRefusedNamingTheFieldAndWritesNothing) {
  const int total = TotalModels();
  struct Case {
    std::string repo;
    std::string revision;
    std::string name;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"../../etc/passwd", "", "", "hugging_face.repo"},
      {"a/b/c", "", "", "hugging_face.repo"},
      {std::string(300, 'x'), "", "", "hugging_face.repo"},
      {"owner/" + std::string(297, 'n'), "", "", "hugging_face.repo"},
      {std::string("a/b\0c", 5), "", "", "hugging_face.repo"},
      {"", "", "", "hugging_face.repo"},
      {"a/b", "../../x", "", "hugging_face.revision"},
      {"a/b", std::string("ma\0in", 5), "", "hugging_face.revision"},
      {"a/b", "", "x/../y", "name"},
      {"a/b", "", std::string(150, 'a') + "/" + std::string(60, 'b'), "name"},
  };
  for (const Case& c : cases) {
    v1::ImportModelRequest request;
    request.mutable_hugging_face()->set_repo(c.repo);
    request.mutable_hugging_face()->set_revision(c.revision);
    request.set_name(c.name);
    v1::Model model;
    grpc::Status status = Import(request, &model);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.field;
    EXPECT_THAT(status.error_message(), HasSubstr(c.field + ":"));
  }
  v1::ImportModelRequest request;
  request.mutable_hugging_face()->set_repo("a/b");
  request.set_description(std::string("nul\0byte", 8));
  v1::Model model;
  grpc::Status status = Import(request, &model);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("description"));
  request = {};
  status = Import(request, &model);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("source"));
  EXPECT_EQ(Get("../../etc/passwd", &model).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Get("no/such-model", &model).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(TotalModels(), total);
  // Nothing reached the Hub either.
  EXPECT_EQ(hub_->RequestsFor("/"), 0);
}

TEST_F(CatalogTest, SqlMetacharactersAreStoredVerbatim) {
  WriteTinyModelDir(local_root_ + "/tiny");
  v1::Model model;
  const std::string nasty =
      "Robert'); DROP TABLE catalog.models; -- \"x\" \\ % _ $1";
  v1::ImportModelRequest request = LocalImport("tiny", "o'k/it's-fine");
  ASSERT_EQ(Import(request, &model).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  request = LocalImport("tiny", "acme/tiny");
  request.set_description(nasty);
  request.add_tags("it's");
  ASSERT_EQ(Import(request, &model).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  request.clear_tags();
  request.add_tags("a:b+c");
  ASSERT_TRUE(Import(request, &model).ok());
  WaitForState("acme/tiny", v1::MODEL_STATE_READY);
  ASSERT_TRUE(Get("acme/tiny", &model).ok());
  EXPECT_EQ(model.description(), nasty);

  v1::ListModelsRequest list;
  list.set_query("drop table catalog.models; -- \"x\" \\ % _");
  v1::ListModelsResponse response;
  ASSERT_TRUE(List(list, &response).ok());
  ASSERT_EQ(response.models_size(), 1);
  EXPECT_EQ(response.models(0).name(), "acme/tiny");
  list.set_query("%");  // LIKE wildcards are plain characters.
  ASSERT_TRUE(List(list, &response).ok());
  EXPECT_EQ(response.total_size(), 1);
  EXPECT_GE(TotalModels(), 30);
}

TEST_F(CatalogTest, UpdateModelAppliesTheMaskAndChecksTheEtag) {
  v1::Model model;
  ASSERT_TRUE(Get("TinyLlama/TinyLlama-1.1B-Chat-v1.0", &model).ok());
  v1::UpdateModelRequest request;
  request.mutable_model()->set_name(model.name());
  request.mutable_model()->set_description("new words");
  request.mutable_model()->set_display_name("ignored: not in the mask");
  request.mutable_model()->set_etag(model.etag());
  request.mutable_update_mask()->add_paths("description");
  v1::Model updated;
  grpc::ClientContext c1;
  ASSERT_TRUE(stub().UpdateModel(&c1, request, &updated).ok());
  EXPECT_EQ(updated.description(), "new words");
  EXPECT_EQ(updated.display_name(), model.display_name());
  EXPECT_NE(updated.etag(), model.etag());

  grpc::ClientContext c2;  // The old etag is now stale.
  grpc::Status status = stub().UpdateModel(&c2, request, &updated);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED);
  request.mutable_model()->clear_etag();
  request.mutable_update_mask()->add_paths("parameter_count");
  grpc::ClientContext c3;
  status = stub().UpdateModel(&c3, request, &updated);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("update_mask"));
  request.clear_update_mask();
  grpc::ClientContext c4;
  EXPECT_EQ(stub().UpdateModel(&c4, request, &updated).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(CatalogTest, DeleteModelAsksTheDeploymentService) {
  WriteTinyModelDir(local_root_ + "/tiny");
  v1::Model model;
  ASSERT_TRUE(Import(LocalImport("tiny"), &model).ok());
  model = WaitForState("local/tiny", v1::MODEL_STATE_READY);

  grpc::Status status = Delete("HuggingFaceTB/SmolLM2-135M-Instruct");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("curated"));

  usage_.SetUsers({"dep-abc"});
  status = Delete("local/tiny");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("dep-abc"));

  usage_.SetUsers({});
  usage_.SetStatus(absl::UnavailableError("deployment service down"));
  EXPECT_EQ(Delete("local/tiny").error_code(), grpc::StatusCode::UNAVAILABLE);

  usage_.SetStatus(absl::OkStatus());
  EXPECT_EQ(Delete("local/tiny", "stale-etag").error_code(),
            grpc::StatusCode::ABORTED);
  EXPECT_TRUE(Delete("local/tiny", model.etag()).ok());
  EXPECT_EQ(Get("local/tiny", &model).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Delete("local/tiny").error_code(), grpc::StatusCode::NOT_FOUND);
}

// A DeploymentService that answers ListDeployments from a table.
class FakeDeployments final : public v1::DeploymentService::Service {
 public:
  grpc::Status ListDeployments(grpc::ServerContext*,
                               const v1::ListDeploymentsRequest* request,
                               v1::ListDeploymentsResponse* response) override {
    if (request->model() == "local/used")
      response->add_deployments()->set_name("dep-1");
    return grpc::Status::OK;
  }
};

TEST(GrpcDeploymentUsageTest, AsksListDeploymentsByModel) {
  FakeDeployments deployments;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&deployments);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  catalog::GrpcDeploymentUsage usage(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                          grpc::InsecureChannelCredentials()),
      {});
  auto users = usage.DeploymentsUsing("local/used");
  ASSERT_TRUE(users.ok()) << users.status();
  EXPECT_THAT(*users, Contains("dep-1"));
  users = usage.DeploymentsUsing("local/free");
  ASSERT_TRUE(users.ok());
  EXPECT_TRUE(users->empty());
  server->Shutdown();
  // Unreachable: UNAVAILABLE, never "not in use".
  catalog::GrpcDeploymentUsage down(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                          grpc::InsecureChannelCredentials()),
      {.timeout = absl::Seconds(2)});
  EXPECT_EQ(down.DeploymentsUsing("local/used").status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(CatalogTest, PreparingTheCuratedTestModelUsesTheLocalRoot) {
  v1::Preparation preparation;
  grpc::Status status = Prepare("hangar/tiny-random-llama", &preparation);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("tiny-random-llama"));
  WriteTinyModelDir(local_root_ + "/tiny-random-llama");
  ASSERT_TRUE(Prepare("hangar/tiny-random-llama", &preparation).ok());
  EXPECT_EQ(preparation.state(), v1::PREPARATION_STATE_PREPARED);
  EXPECT_THAT(preparation.local_path(), HasSubstr("tiny-random-llama"));
}

TEST_F(CatalogTest, ReflectionHealthAndMetricsWork) {
  StartServer([](catalog::CatalogServer::Options& options) {
    options.server.metrics_port = 0;
  });
  ReflectionClient reflection(channel_);
  auto services = reflection.ListServices();
  ASSERT_TRUE(services.ok()) << services.status();
  EXPECT_THAT(*services, Contains("hangar.v1.CatalogService"));
  EXPECT_THAT(*services, Contains("grpc.health.v1.Health"));
  auto json = reflection.CallUnary("hangar.v1.CatalogService/GetModel",
                                   R"({"name": "Qwen/Qwen2.5-0.5B-Instruct"})");
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_THAT(*json, HasSubstr("Qwen2ForCausalLM"));
  auto health = reflection.CallUnary("grpc.health.v1.Health/Check", "{}");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_THAT(*health, HasSubstr("SERVING"));

  WriteTinyModelDir(local_root_ + "/tiny");
  v1::Model model;
  ASSERT_TRUE(Import(LocalImport("tiny"), &model).ok());
  WaitForState("local/tiny", v1::MODEL_STATE_READY);

  CURL* curl = curl_easy_init();
  std::string body;
  std::string url =
      absl::StrCat("http://127.0.0.1:", server_->metrics_port(), "/metrics");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION,
      +[](char* data, size_t size, size_t count, void* user) {
        static_cast<std::string*>(user)->append(data, size * count);
        return size * count;
      });
  ASSERT_EQ(curl_easy_perform(curl), CURLE_OK);
  curl_easy_cleanup(curl);
  EXPECT_THAT(
      body,
      HasSubstr(
          "hangar_catalog_imports_total{result=\"ok\",source=\"local\"} 1"));
  EXPECT_THAT(body, HasSubstr("hangar_catalog_models{state=\"ready\"}"));
}

TEST_F(CatalogTest, AdminTokenGuardsEveryCallButHealthAndReflection) {
  const std::string token_file = dir_ + "/admin.token";
  std::ofstream(token_file) << "admin-token-0123456789abcdef\n";
  StartServer([&](catalog::CatalogServer::Options& options) {
    options.admin_token_file = token_file;
  });
  v1::GetModelRequest request;
  request.set_name("Qwen/Qwen2.5-0.5B-Instruct");
  v1::Model model;
  grpc::ClientContext anonymous;
  EXPECT_EQ(stub().GetModel(&anonymous, request, &model).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext wrong;
  wrong.AddMetadata("authorization", "Bearer not-the-admin-token-at-all");
  EXPECT_EQ(stub().GetModel(&wrong, request, &model).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext admin;
  admin.AddMetadata("authorization", "Bearer admin-token-0123456789abcdef");
  EXPECT_TRUE(stub().GetModel(&admin, request, &model).ok());
  ReflectionClient reflection(channel_);
  EXPECT_TRUE(reflection.ListServices().ok());
  EXPECT_TRUE(reflection.CallUnary("grpc.health.v1.Health/Check", "{}").ok());
}

}  // namespace
}  // namespace hangar::testing
