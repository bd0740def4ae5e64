#include "tests/integration/catalog/catalog_test_base.h"

#include <stdlib.h>

#include <chrono>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/testing/temp_dir.h"
#include "tests/integration/catalog/test_models.h"

namespace hangar::testing {

void CatalogTest::SetUp() {
  PostgresTest::SetUp();
  if (HasFatalFailure()) return;
  dir_ = hangar::testing::MakeTempDir("catalog_test");
  local_root_ = dir_ + "/local";
  model_store_ = dir_ + "/store";
  std::filesystem::create_directories(local_root_);
  absl::StatusOr<std::unique_ptr<FakeHub>> hub = FakeHub::Start();
  ASSERT_TRUE(hub.ok()) << hub.status();
  hub_ = *std::move(hub);
  StartServer();
}

void CatalogTest::TearDown() {
  StopServer();
  hub_.reset();
  if (!dir_.empty()) std::filesystem::remove_all(dir_);
}

void CatalogTest::StartServer(
    const std::function<void(catalog::CatalogServer::Options&)>& adjust) {
  StopServer();
  catalog::CatalogServer::Options options{
      .server = {.name = "catalog",
                 .port = 0,
                 // The metrics test turns it on (stopping civetweb takes ~2 s).
                 .metrics_port = -1,
                 .drain_timeout = absl::Milliseconds(300)},
      .db = conninfo(),
      .db_pool_size = 4,
      .model_store = model_store_,
      .local_model_root = local_root_,
      .curated_models = HANGAR_CURATED_MODELS_PATH,
      .secret_key_file = dir_ + "/secret.key",
      .hf_endpoint = hub_->endpoint(),
      .hf_stall_timeout = absl::Seconds(5),
      .progress_interval = absl::Milliseconds(20),
      .download = {.max_stalled_attempts = 3,
                   .initial_backoff = absl::Milliseconds(10),
                   .max_backoff = absl::Milliseconds(100)},
      .deployment_usage = &usage_,
  };
  if (adjust) adjust(options);
  absl::StatusOr<std::unique_ptr<catalog::CatalogServer>> server =
      catalog::CatalogServer::Create(options);
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = *std::move(server);
  channel_ = grpc::CreateChannel(server_->address(),
                                 grpc::InsecureChannelCredentials());
  stub_ = v1::CatalogService::NewStub(channel_);
}

void CatalogTest::StopServer() {
  stub_.reset();
  channel_.reset();
  server_.reset();
}

namespace {
std::unique_ptr<grpc::ClientContext> Context(
    absl::Duration timeout = absl::Seconds(30)) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(timeout));
  return context;
}
}  // namespace

grpc::Status CatalogTest::Import(const v1::ImportModelRequest& request,
                                 v1::Model* model) {
  return stub_->ImportModel(Context().get(), request, model);
}

grpc::Status CatalogTest::Get(const std::string& name, v1::Model* model) {
  v1::GetModelRequest request;
  request.set_name(name);
  return stub_->GetModel(Context().get(), request, model);
}

grpc::Status CatalogTest::List(const v1::ListModelsRequest& request,
                               v1::ListModelsResponse* response) {
  return stub_->ListModels(Context().get(), request, response);
}

grpc::Status CatalogTest::Prepare(const std::string& name,
                                  v1::Preparation* preparation) {
  v1::PrepareModelRequest request;
  request.set_name(name);
  return stub_->PrepareModel(Context().get(), request, preparation);
}

grpc::Status CatalogTest::Delete(const std::string& name,
                                 const std::string& etag) {
  v1::DeleteModelRequest request;
  request.set_name(name);
  request.set_etag(etag);
  v1::DeleteModelResponse response;
  return stub_->DeleteModel(Context().get(), request, &response);
}

grpc::Status CatalogTest::CreateConnection(const std::string& name,
                                           const std::string& token,
                                           v1::Connection* connection) {
  v1::CreateConnectionRequest request;
  request.mutable_connection()->set_name(name);
  request.mutable_connection()->set_token(token);
  return stub_->CreateConnection(Context().get(), request, connection);
}

v1::Model CatalogTest::WaitFor(
    const std::string& name,
    const std::function<bool(const v1::Model&)>& done) {
  auto context = Context(absl::Seconds(30));
  v1::WatchModelRequest request;
  request.set_name(name);
  auto reader = stub_->WatchModel(context.get(), request);
  v1::Model model;
  v1::Model last;
  while (reader->Read(&model)) {
    last = model;
    if (done(model)) {
      context->TryCancel();
      reader->Finish().IgnoreError();
      return last;
    }
  }
  grpc::Status status = reader->Finish();
  ADD_FAILURE() << "WatchModel(" << name
                << ") ended before the condition held: " << status.error_code()
                << " " << status.error_message()
                << "\nlast: " << last.ShortDebugString();
  return last;
}

v1::Model CatalogTest::WaitForState(const std::string& name,
                                    v1::ModelState state) {
  return WaitFor(name, [&](const v1::Model& m) {
    return m.state() == state ||
           (m.state() != v1::MODEL_STATE_IMPORTING && m.state() != state);
  });
}

v1::Model CatalogTest::WaitForPreparation(const std::string& name,
                                          v1::PreparationState state) {
  return WaitFor(name, [&](const v1::Model& m) {
    return m.preparation().state() == state ||
           m.preparation().state() == v1::PREPARATION_STATE_FAILED;
  });
}

int CatalogTest::TotalModels() {
  v1::ListModelsRequest request;
  request.set_page_size(1);
  v1::ListModelsResponse response;
  grpc::Status status = List(request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.total_size();
}

FakeHub::Repo CatalogTest::TinyRepo(const std::string& id,
                                    const std::string& token,
                                    const std::string& architecture) {
  FakeHub::Repo repo;
  repo.id = id;
  repo.sha = "0123456789abcdef0123456789abcdef01234567";
  repo.token = token;
  repo.files = TinyModelFiles(architecture);
  return repo;
}

}  // namespace hangar::testing
