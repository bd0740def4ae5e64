// The deployment service's RPCs end to end: a DeploymentServer on loopback
// port 0 over a private PostgreSQL database, the catalog's and the
// scheduler's facts and the reconciler's clients from in-memory fakes,
// called through generated stubs (deployment_fixture.h). The reconciler's loop
// is off: the tests that need a pass (a delete's DELETING -> DELETED) make it
// themselves, so no background write moves an etag under a test.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/api/time.h"
#include "common/auth/api_key.h"
#include "common/testing/postgres_server.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hangar/v1/deployment.grpc.pb.h"
#include "services/deployment/deployment_server.h"
#include "services/deployment/grpc_facts.h"
#include "services/deployment/pg_deployment_store.h"
#include "services/deployment/reconciler.h"
#include "services/deployment/testing/fake_clients.h"
#include "services/deployment/testing/fake_facts.h"
#include "tests/integration/deployment/deployment_fixture.h"

namespace hangar::deployment {
namespace {

using testing::Context;
using ::testing::HasSubstr;
using testing::kGiB;
using testing::kModel;
using testing::kOffering;

class DeploymentApiTest : public testing::DeploymentServerTest {
 protected:
  // The reconciler's loop is off (tests make their own passes); usage is
  // priced at 0.5 and 1.5 USD per 1k prompt and completion tokens.
  void SetUp() override {
    DeploymentServerTest::SetUp();
    if (HasFatalFailure()) return;
    v1::OptimizationRecipe int8;
    int8.set_engine(v1::ENGINE_CTRANSLATE2);
    int8.set_quantization(v1::QUANTIZATION_INT8);
    ModelFacts model = TinyModel();
    model.recipes[RecipeKey(int8)] = {.weight_bytes = kGiB,
                                      .kv_bytes_per_sequence = 64 << 20};
    models_.Set(kModel, model);
    DeploymentServer::Options options = BaseOptions();
    options.reconciler_owner = "server";
    options.prompt_price_per_1k = 0.5;
    options.completion_price_per_1k = 1.5;
    options.start_reconciler = false;
    StartServer(std::move(options));
  }

  v1::ListDeploymentsResponse List(v1::ListDeploymentsRequest request) {
    v1::ListDeploymentsResponse response;
    grpc::Status status =
        stub_->ListDeployments(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  // One reconciler pass over `name` (an id).
  void Reconcile(const std::string& name) {
    absl::Status status = server_->reconciler()->ReconcileOne(name);
    EXPECT_TRUE(status.ok()) << status;
  }

  // CreateApiKey for `deployment` named "k" under `request_id`.
  grpc::Status CreateKey(const std::string& deployment,
                         const std::string& request_id,
                         v1::CreateApiKeyResponse* key) {
    v1::CreateApiKeyRequest request;
    request.set_deployment(deployment);
    request.set_display_name("k");
    request.set_request_id(request_id);
    return stub_->CreateApiKey(Context().get(), request, key);
  }

  // DeleteDeployment of `name` with force.
  grpc::Status ForceDelete(const std::string& name, v1::Deployment* deleted) {
    v1::DeleteDeploymentRequest request;
    request.set_name(name);
    request.set_force(true);
    return stub_->DeleteDeployment(Context().get(), request, deleted);
  }
};

TEST_F(DeploymentApiTest, ValidateReportsEveryViolationAtOnce) {
  v1::ValidateDeploymentRequest request;
  v1::DeploymentSpec& spec = *request.mutable_spec();
  spec.set_model("nobody/unknown-model");
  spec.set_hardware("no-such-gpu");
  spec.mutable_sampling()->set_temperature(
      std::numeric_limits<float>::quiet_NaN());
  spec.mutable_sampling()->set_top_p(std::numeric_limits<float>::infinity());
  spec.set_inference_batch_size(0);
  spec.set_min_replicas(-1);
  spec.set_max_replicas(65);
  spec.set_scale_up_delay_seconds(-5);
  spec.set_scale_down_delay_seconds(86'401);
  v1::ValidateDeploymentResponse response;
  grpc::Status status =
      stub_->ValidateDeployment(Context().get(), request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(response.valid());
  std::set<std::string> fields;
  for (const v1::FieldViolation& violation : response.violations()) {
    fields.insert(violation.field());
  }
  for (const char* field :
       {"spec.model", "spec.hardware", "spec.sampling.temperature",
        "spec.sampling.top_p", "spec.inference_batch_size", "spec.min_replicas",
        "spec.max_replicas", "spec.scale_up_delay_seconds",
        "spec.scale_down_delay_seconds"}) {
    EXPECT_TRUE(fields.contains(field))
        << field << " missing from " << response.DebugString();
  }

  // The same spec refused by CreateDeployment lists them all, and nothing
  // is written.
  v1::CreateDeploymentRequest create;
  *create.mutable_spec() = spec;
  create.set_request_id("bad-spec");
  v1::Deployment deployment;
  status = Create(create, &deployment);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("spec.model"));
  EXPECT_THAT(status.error_message(), HasSubstr("spec.hardware"));
  EXPECT_THAT(status.error_message(), HasSubstr("spec.max_replicas"));
  EXPECT_EQ(List({}).deployments_size(), 0);
}

TEST_F(DeploymentApiTest, ValidateReturnsNormalizedSpecCostAndTerms) {
  v1::ValidateDeploymentRequest request;
  request.mutable_spec()->set_model(kModel);
  request.mutable_spec()->set_hardware(kOffering);
  request.mutable_spec()->set_max_replicas(3);
  v1::ValidateDeploymentResponse response;
  ASSERT_TRUE(
      stub_->ValidateDeployment(Context().get(), request, &response).ok());
  EXPECT_TRUE(response.valid()) << response.DebugString();
  EXPECT_EQ(response.normalized_spec().inference_batch_size(), 8);
  EXPECT_EQ(response.normalized_spec().min_replicas(), 1);
  EXPECT_EQ(response.min_hourly_cost().micros(), 1'818'000);
  EXPECT_EQ(response.max_hourly_cost().micros(), 3 * 1'818'000);
  EXPECT_THAT(response.terms(), HasSubstr("apache-2.0"));
  EXPECT_EQ(response.terms_sha256().size(), 64u);
}

TEST_F(DeploymentApiTest, CreateIsIdempotentByRequestId) {
  v1::CreateDeploymentRequest request = CreateRequest("req-1");
  request.set_description("first");
  v1::Deployment first;
  grpc::Status status = Create(request, &first);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(first.name(), ::testing::MatchesRegex("dep-[a-z2-7]{12}"));
  EXPECT_EQ(first.display_name(), "tiny-chat-v2");
  EXPECT_EQ(first.state(), v1::DEPLOYMENT_STATE_PENDING);
  EXPECT_EQ(first.state_reason(), "accepted");
  EXPECT_EQ(first.latest_revision(), 1);
  EXPECT_EQ(first.endpoint(), "gateway.test:443");
  EXPECT_EQ(first.spec().inference_batch_size(), 8);
  EXPECT_FALSE(first.etag().empty());

  v1::Deployment again;
  ASSERT_TRUE(Create(request, &again).ok());
  EXPECT_EQ(again.name(), first.name());
  EXPECT_EQ(again.etag(), first.etag());

  v1::CreateDeploymentRequest other = request;
  other.mutable_spec()->set_max_replicas(4);
  status = Create(other, &again);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("request_id"));
  EXPECT_EQ(List({}).deployments_size(), 1);

  // A second deployment of the model gets a unique derived display name;
  // an explicit name that is taken is refused.
  v1::Deployment second;
  ASSERT_TRUE(Create(CreateRequest("req-2"), &second).ok());
  EXPECT_EQ(second.display_name(), "tiny-chat-v2-2");
  v1::CreateDeploymentRequest taken = CreateRequest("req-3");
  taken.set_display_name("tiny-chat-v2");
  EXPECT_EQ(Create(taken, &again).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);

  // Get by id and by display name.
  v1::GetDeploymentRequest get;
  get.set_name(first.name());
  v1::Deployment got;
  ASSERT_TRUE(stub_->GetDeployment(Context().get(), get, &got).ok());
  EXPECT_EQ(got.description(), "first");
  get.set_name("tiny-chat-v2-2");
  ASSERT_TRUE(stub_->GetDeployment(Context().get(), get, &got).ok());
  EXPECT_EQ(got.name(), second.name());
  get.set_name("dep-aaaaaaaaaaaa");
  EXPECT_EQ(stub_->GetDeployment(Context().get(), get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(DeploymentApiTest, HundredConcurrentIdenticalCreatesMakeOne) {
  const v1::CreateDeploymentRequest request = CreateRequest("same-request");
  constexpr int kCalls = 100;
  std::vector<std::string> names(kCalls);
  std::vector<grpc::Status> statuses(kCalls);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCalls; ++i) {
    threads.emplace_back([&, i] {
      // A well-behaved client retries RESOURCE_EXHAUSTED (the server's
      // threads are bounded) with the same request id.
      absl::Duration backoff = absl::Milliseconds(10);
      for (int attempt = 0; attempt < 20; ++attempt) {
        v1::Deployment deployment;
        statuses[i] = Create(request, &deployment);
        names[i] = deployment.name();
        if (statuses[i].error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) {
          break;
        }
        absl::SleepFor(backoff);  // Client backoff, not synchronisation.
        backoff = std::min(backoff * 2, absl::Milliseconds(500));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::set<std::string> distinct;
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << i << ": " << statuses[i].error_message();
    distinct.insert(names[i]);
  }
  EXPECT_EQ(distinct.size(), 1u);
  EXPECT_EQ(List({}).deployments_size(), 1);
}

TEST_F(DeploymentApiTest, TermsMustBeAcceptedWithTheShownHash) {
  v1::CreateDeploymentRequest request = CreateRequest("terms");
  request.mutable_spec()->set_accepted_terms_sha256(std::string(64, '0'));
  v1::Deployment deployment;
  grpc::Status status = Create(request, &deployment);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("accepted_terms_sha256"));
  request.mutable_spec()->set_accept_terms(false);
  request.set_request_id("terms-2");
  EXPECT_EQ(Create(request, &deployment).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(List({}).deployments_size(), 0);
}

TEST_F(DeploymentApiTest, BadMetadataIsRefusedAndTextIsStoredVerbatim) {
  v1::Deployment deployment;
  v1::CreateDeploymentRequest many_tags = CreateRequest("tags");
  for (int i = 0; i < 10'000; ++i) many_tags.add_tags(absl::StrCat("t", i));
  grpc::Status status = Create(many_tags, &deployment);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("at most 16 tags"));

  v1::CreateDeploymentRequest big = CreateRequest("description");
  big.set_description(std::string(1 << 20, 'x'));
  status = Create(big, &deployment);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("description"));

  const std::string sql = "'; DROP TABLE deployment.deployments; --";
  v1::CreateDeploymentRequest sql_tag = CreateRequest("sql-tag");
  sql_tag.add_tags(sql);
  status = Create(sql_tag, &deployment);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("tags[0]"));
  EXPECT_EQ(List({}).deployments_size(), 0);

  // In the description (free text) it is stored verbatim.
  v1::CreateDeploymentRequest sql_text = CreateRequest("sql-text");
  sql_text.set_description(sql);
  sql_text.add_tags("a.b:c_d-1");
  ASSERT_TRUE(Create(sql_text, &deployment).ok());
  v1::Deployment got = Get(deployment.name());
  EXPECT_EQ(got.description(), sql);
  EXPECT_EQ(List({}).deployments_size(), 1);

  // Unknown model / hardware.
  v1::CreateDeploymentRequest unknown = CreateRequest("unknown");
  unknown.mutable_spec()->set_model("nobody/nothing");
  unknown.mutable_spec()->set_hardware("h1000-9x");
  status = Create(unknown, &deployment);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("spec.model"));
  EXPECT_THAT(status.error_message(), HasSubstr("spec.hardware"));

  // Missing or oversized request ids.
  v1::CreateDeploymentRequest no_id = CreateRequest("");
  EXPECT_EQ(Create(no_id, &deployment).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::CreateDeploymentRequest long_id = CreateRequest(std::string(65, 'r'));
  EXPECT_EQ(Create(long_id, &deployment).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(DeploymentApiTest, ListFiltersAndPages) {
  v1::Deployment deployment;
  for (int i = 0; i < 5; ++i) {
    v1::CreateDeploymentRequest request =
        CreateRequest(absl::StrCat("list-", i));
    request.add_tags(i % 2 == 0 ? "even" : "odd");
    ASSERT_TRUE(Create(request, &deployment).ok());
  }
  v1::ListDeploymentsRequest by_tag;
  by_tag.set_tag("even");
  EXPECT_EQ(List(by_tag).deployments_size(), 3);
  v1::ListDeploymentsRequest by_model;
  by_model.set_model("other/model");
  EXPECT_EQ(List(by_model).deployments_size(), 0);
  by_model.set_model(kModel);
  EXPECT_EQ(List(by_model).deployments_size(), 5);
  v1::ListDeploymentsRequest by_state;
  by_state.set_state(v1::DEPLOYMENT_STATE_DEPLOYED);
  EXPECT_EQ(List(by_state).deployments_size(), 0);

  v1::ListDeploymentsRequest page;
  page.set_page_size(2);
  std::set<std::string> seen;
  int pages = 0;
  do {
    v1::ListDeploymentsResponse response = List(page);
    for (const v1::Deployment& d : response.deployments())
      seen.insert(d.name());
    page.set_page_token(response.next_page_token());
    ++pages;
  } while (!page.page_token().empty() && pages < 10);
  EXPECT_EQ(seen.size(), 5u);
  EXPECT_EQ(pages, 3);

  // A token replayed with other filters is refused.
  page.set_page_size(2);
  page.clear_page_token();
  v1::ListDeploymentsResponse first = List(page);
  v1::ListDeploymentsRequest replay;
  replay.set_tag("odd");
  replay.set_page_token(first.next_page_token());
  v1::ListDeploymentsResponse ignored;
  EXPECT_EQ(
      stub_->ListDeployments(Context().get(), replay, &ignored).error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(DeploymentApiTest, DependencyDownIsUnavailableNamingIt) {
  models_.SetDown(true);
  v1::ValidateDeploymentRequest request;
  request.mutable_spec()->set_model(kModel);
  v1::ValidateDeploymentResponse response;
  grpc::Status status =
      stub_->ValidateDeployment(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("catalog"));

  // The gRPC clients name the dependency and its address.
  GrpcCatalogFacts catalog(
      grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials()),
      {.address = "127.0.0.1:1", .timeout = absl::Seconds(2)});
  absl::StatusOr<ModelFacts> model = catalog.GetModelFacts(kModel);
  EXPECT_EQ(model.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(model.status().message(), HasSubstr("catalog (127.0.0.1:1)"));
  GrpcSchedulerFacts scheduler(
      grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials()),
      {.address = "127.0.0.1:1", .timeout = absl::Seconds(2)});
  absl::StatusOr<OfferingFacts> offering =
      scheduler.GetOfferingFacts(kOffering);
  EXPECT_EQ(offering.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(offering.status().message(),
              HasSubstr("scheduler (127.0.0.1:1)"));
}

// Reads WatchApiKeys events on a thread of its own.
class KeyWatcher {
 public:
  explicit KeyWatcher(v1::DeploymentService::Stub* stub) {
    context_.set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(60));
    reader_ = stub->WatchApiKeys(&context_, v1::WatchApiKeysRequest());
    thread_ = std::thread([this] {
      v1::ApiKeyEvent event;
      while (reader_->Read(&event)) {
        absl::MutexLock lock(&mu_);
        events_.push_back(event);
      }
    });
  }
  ~KeyWatcher() {
    context_.TryCancel();
    thread_.join();
    (void)reader_->Finish();
  }
  // Waits up to `timeout` for event number `index` (0-based).
  std::optional<v1::ApiKeyEvent> WaitForEvent(size_t index,
                                              absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto ready = [&] { return events_.size() > index; };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    if (events_.size() <= index) return std::nullopt;
    return events_[index];
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::ApiKeyEvent>> reader_;
  absl::Mutex mu_;
  std::vector<v1::ApiKeyEvent> events_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

TEST_F(DeploymentApiTest, ApiKeysCreateListRevokeAndWatch) {
  v1::Deployment deployment;
  ASSERT_TRUE(Create(CreateRequest("for-keys"), &deployment).ok());

  v1::CreateApiKeyRequest create;
  create.set_deployment(deployment.display_name());
  create.set_display_name("first key");
  create.set_request_id("key-req-1");
  v1::CreateApiKeyResponse first;
  ASSERT_TRUE(stub_->CreateApiKey(Context().get(), create, &first).ok());
  EXPECT_TRUE(auth::ValidateApiKeyFormat(first.plaintext()).ok());
  EXPECT_EQ(first.api_key().deployment(), deployment.name());
  EXPECT_EQ(first.api_key().prefix(),
            auth::ApiKeyDisplayPrefix(first.plaintext()));

  // A retry returns the same key without the plaintext.
  v1::CreateApiKeyResponse retry;
  ASSERT_TRUE(stub_->CreateApiKey(Context().get(), create, &retry).ok());
  EXPECT_EQ(retry.api_key().name(), first.api_key().name());
  EXPECT_TRUE(retry.plaintext().empty());
  create.set_display_name("another name");
  EXPECT_EQ(stub_->CreateApiKey(Context().get(), create, &retry).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // The watch starts with a snapshot holding the key's hash.
  KeyWatcher watcher(stub_.get());
  std::optional<v1::ApiKeyEvent> snapshot =
      watcher.WaitForEvent(0, absl::Seconds(10));
  ASSERT_TRUE(snapshot.has_value());
  EXPECT_EQ(snapshot->kind(), v1::ApiKeyEvent::KIND_SNAPSHOT);
  ASSERT_EQ(snapshot->entries_size(), 1);
  EXPECT_EQ(snapshot->entries(0).sha256(), auth::HashApiKey(first.plaintext()));

  create.set_display_name("second key");
  create.set_request_id("key-req-2");
  v1::CreateApiKeyResponse second;
  ASSERT_TRUE(stub_->CreateApiKey(Context().get(), create, &second).ok());
  std::optional<v1::ApiKeyEvent> added =
      watcher.WaitForEvent(1, absl::Seconds(2));
  ASSERT_TRUE(added.has_value()) << "no ADDED within 2 s";
  EXPECT_EQ(added->kind(), v1::ApiKeyEvent::KIND_ADDED);
  ASSERT_EQ(added->entries_size(), 1);
  EXPECT_EQ(added->entries(0).key_name(), second.api_key().name());
  EXPECT_EQ(added->entries(0).sha256(), auth::HashApiKey(second.plaintext()));

  v1::ListApiKeysRequest list;
  list.set_deployment(deployment.name());
  v1::ListApiKeysResponse keys;
  ASSERT_TRUE(stub_->ListApiKeys(Context().get(), list, &keys).ok());
  EXPECT_EQ(keys.api_keys_size(), 2);

  v1::RevokeApiKeyRequest revoke;
  revoke.set_name(first.api_key().name());
  v1::ApiKey revoked;
  const absl::Time revoke_start = absl::Now();
  ASSERT_TRUE(stub_->RevokeApiKey(Context().get(), revoke, &revoked).ok());
  EXPECT_TRUE(revoked.revoked());
  std::optional<v1::ApiKeyEvent> gone =
      watcher.WaitForEvent(2, absl::Seconds(2));
  ASSERT_TRUE(gone.has_value()) << "no REVOKED within 2 s";
  EXPECT_LT(absl::Now() - revoke_start, absl::Seconds(2));
  EXPECT_EQ(gone->kind(), v1::ApiKeyEvent::KIND_REVOKED);
  ASSERT_EQ(gone->entries_size(), 1);
  EXPECT_EQ(gone->entries(0).key_name(), first.api_key().name());

  // Revoking again is OK and keeps the key revoked; unknown keys are
  // NOT_FOUND.
  ASSERT_TRUE(stub_->RevokeApiKey(Context().get(), revoke, &revoked).ok());
  EXPECT_TRUE(revoked.revoked());
  revoke.set_name("key-nothing");
  EXPECT_EQ(stub_->RevokeApiKey(Context().get(), revoke, &revoked).error_code(),
            grpc::StatusCode::NOT_FOUND);

  ASSERT_TRUE(stub_->ListApiKeys(Context().get(), list, &keys).ok());
  ASSERT_EQ(keys.api_keys_size(), 1);
  EXPECT_EQ(keys.api_keys(0).name(), second.api_key().name());
  list.set_show_revoked(true);
  ASSERT_TRUE(stub_->ListApiKeys(Context().get(), list, &keys).ok());
  EXPECT_EQ(keys.api_keys_size(), 2);

  // A key for an unknown deployment is NOT_FOUND.
  create.set_deployment("dep-aaaaaaaaaaaa");
  create.set_request_id("key-req-3");
  EXPECT_EQ(stub_->CreateApiKey(Context().get(), create, &retry).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(DeploymentApiTest, UpdateTakesMaskedFieldsAndRefusesStaleEtag) {
  v1::Deployment created;
  ASSERT_TRUE(Create(CreateRequest("to-update"), &created).ok());

  v1::UpdateDeploymentRequest update;
  update.mutable_deployment()->set_name(created.name());
  update.mutable_deployment()->set_etag(created.etag());
  update.mutable_deployment()->set_description("new words");
  update.mutable_deployment()->add_tags("prod");
  update.mutable_deployment()->set_display_name("ignored-not-in-mask");
  update.mutable_update_mask()->add_paths("description");
  update.mutable_update_mask()->add_paths("tags");
  v1::Deployment updated;
  grpc::Status status =
      stub_->UpdateDeployment(Context().get(), update, &updated);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(updated.description(), "new words");
  ASSERT_EQ(updated.tags_size(), 1);
  EXPECT_EQ(updated.display_name(), created.display_name());
  EXPECT_NE(updated.etag(), created.etag());
  EXPECT_EQ(updated.latest_revision(), 1);  // No revision.

  // The old etag is stale now.
  status = stub_->UpdateDeployment(Context().get(), update, &updated);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED);

  // A path outside the allowed ones, and bad values, are refused.
  v1::UpdateDeploymentRequest bad;
  bad.mutable_deployment()->set_name(created.name());
  bad.mutable_update_mask()->add_paths("spec");
  EXPECT_EQ(
      stub_->UpdateDeployment(Context().get(), bad, &updated).error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  bad.mutable_update_mask()->clear_paths();
  bad.mutable_update_mask()->add_paths("display_name");
  bad.mutable_deployment()->set_display_name("Bad Name!");
  EXPECT_EQ(
      stub_->UpdateDeployment(Context().get(), bad, &updated).error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);

  // Renaming frees the old display name.
  bad.mutable_deployment()->set_display_name("renamed");
  ASSERT_TRUE(stub_->UpdateDeployment(Context().get(), bad, &updated).ok());
  v1::Deployment got = Get("renamed");
  EXPECT_EQ(got.name(), created.name());
}

TEST_F(DeploymentApiTest, RedeployMakesRevisionsAndRollsBack) {
  v1::Deployment created;
  ASSERT_TRUE(Create(CreateRequest("to-redeploy"), &created).ok());

  v1::RedeployRequest redeploy;
  redeploy.set_name(created.name());
  redeploy.set_etag(created.etag());
  redeploy.set_request_id("redeploy-1");
  *redeploy.mutable_spec() = ValidSpec();
  redeploy.mutable_spec()->mutable_sampling()->set_temperature(0.2f);
  redeploy.mutable_spec()->set_max_replicas(3);
  v1::Deployment second;
  grpc::Status status = stub_->Redeploy(Context().get(), redeploy, &second);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(second.latest_revision(), 2);
  EXPECT_EQ(second.spec().max_replicas(), 3);
  EXPECT_EQ(second.state(), v1::DEPLOYMENT_STATE_PENDING);

  // A retry (with the now stale etag) returns the same result.
  v1::Deployment retry;
  ASSERT_TRUE(stub_->Redeploy(Context().get(), redeploy, &retry).ok());
  EXPECT_EQ(retry.latest_revision(), 2);
  // A new request with the stale etag is ABORTED; without one, refused.
  redeploy.set_request_id("redeploy-2");
  EXPECT_EQ(stub_->Redeploy(Context().get(), redeploy, &retry).error_code(),
            grpc::StatusCode::ABORTED);
  redeploy.clear_etag();
  EXPECT_EQ(stub_->Redeploy(Context().get(), redeploy, &retry).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // Rollback to revision 1.
  v1::RedeployRequest rollback;
  rollback.set_name(created.display_name());
  rollback.set_etag(second.etag());
  rollback.set_request_id("rollback-1");
  rollback.set_from_revision(1);
  v1::Deployment third;
  status = stub_->Redeploy(Context().get(), rollback, &third);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(third.latest_revision(), 3);
  EXPECT_EQ(third.spec().max_replicas(), created.spec().max_replicas());
  rollback.set_from_revision(9);
  rollback.set_etag(third.etag());
  rollback.set_request_id("rollback-2");
  EXPECT_EQ(stub_->Redeploy(Context().get(), rollback, &retry).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  v1::ListRevisionsRequest list;
  list.set_deployment(created.name());
  v1::ListRevisionsResponse revisions;
  ASSERT_TRUE(stub_->ListRevisions(Context().get(), list, &revisions).ok());
  ASSERT_EQ(revisions.revisions_size(), 3);
  const v1::Revision& r3 = revisions.revisions(0);
  const v1::Revision& r2 = revisions.revisions(1);
  const v1::Revision& r1 = revisions.revisions(2);
  EXPECT_EQ(r3.number(), 3);
  EXPECT_EQ(r3.rolled_back_from(), 1);
  EXPECT_THAT(r3.changed_fields(), ::testing::UnorderedElementsAre(
                                       "max_replicas", "sampling.temperature"));
  EXPECT_EQ(r2.number(), 2);
  EXPECT_EQ(r2.rolled_back_from(), 0);
  EXPECT_EQ(r2.author(), "admin");
  EXPECT_THAT(r2.changed_fields(), ::testing::UnorderedElementsAre(
                                       "max_replicas", "sampling.temperature"));
  EXPECT_EQ(r1.number(), 1);
  EXPECT_TRUE(r1.changed_fields().empty());

  // Pages, newest first.
  list.set_page_size(2);
  ASSERT_TRUE(stub_->ListRevisions(Context().get(), list, &revisions).ok());
  ASSERT_EQ(revisions.revisions_size(), 2);
  ASSERT_FALSE(revisions.next_page_token().empty());
  list.set_page_token(revisions.next_page_token());
  ASSERT_TRUE(stub_->ListRevisions(Context().get(), list, &revisions).ok());
  ASSERT_EQ(revisions.revisions_size(), 1);
  EXPECT_EQ(revisions.revisions(0).number(), 1);
  EXPECT_TRUE(revisions.next_page_token().empty());
}

TEST_F(DeploymentApiTest, DeleteRevokesKeysAndIsIdempotent) {
  v1::Deployment created;
  ASSERT_TRUE(Create(CreateRequest("to-delete"), &created).ok());
  v1::CreateApiKeyResponse key;
  ASSERT_TRUE(CreateKey(created.name(), "delete-key", &key).ok());

  KeyWatcher watcher(stub_.get());
  ASSERT_TRUE(watcher.WaitForEvent(0, absl::Seconds(10)).has_value());

  v1::DeleteDeploymentRequest stale;
  stale.set_name(created.name());
  stale.set_etag("12345");
  v1::Deployment deleted;
  EXPECT_EQ(
      stub_->DeleteDeployment(Context().get(), stale, &deleted).error_code(),
      grpc::StatusCode::ABORTED);

  // Being deployed (PENDING): refused without force.
  v1::DeleteDeploymentRequest request;
  request.set_name(created.name());
  request.set_etag(created.etag());
  EXPECT_EQ(
      stub_->DeleteDeployment(Context().get(), request, &deleted).error_code(),
      grpc::StatusCode::FAILED_PRECONDITION);
  request.set_force(true);
  ASSERT_TRUE(stub_->DeleteDeployment(Context().get(), request, &deleted).ok());
  EXPECT_EQ(deleted.state(), v1::DEPLOYMENT_STATE_DELETING);
  // The keys are revoked at once.
  std::optional<v1::ApiKeyEvent> gone =
      watcher.WaitForEvent(1, absl::Seconds(2));
  ASSERT_TRUE(gone.has_value());
  EXPECT_EQ(gone->kind(), v1::ApiKeyEvent::KIND_REVOKED);
  // A delete while DELETING answers the same.
  v1::Deployment again;
  ASSERT_TRUE(stub_->DeleteDeployment(Context().get(), request, &again).ok());
  EXPECT_EQ(again.etag(), deleted.etag());
  Reconcile(created.name());
  deleted = Get(created.name());
  EXPECT_EQ(deleted.state(), v1::DEPLOYMENT_STATE_DELETED);

  // Twice: the same answer, nothing written.
  ASSERT_TRUE(stub_->DeleteDeployment(Context().get(), request, &again).ok());
  EXPECT_EQ(again.state(), v1::DEPLOYMENT_STATE_DELETED);
  EXPECT_EQ(again.etag(), deleted.etag());

  // Hidden from List unless asked; the display name is free again; no new
  // keys, no redeploy.
  EXPECT_EQ(List({}).deployments_size(), 0);
  v1::ListDeploymentsRequest with_deleted;
  with_deleted.set_show_deleted(true);
  EXPECT_EQ(List(with_deleted).deployments_size(), 1);
  v1::Deployment reused;
  v1::CreateDeploymentRequest same_name = CreateRequest("same-name");
  same_name.set_display_name(created.display_name());
  ASSERT_TRUE(Create(same_name, &reused).ok());
  EXPECT_EQ(CreateKey(created.name(), "delete-key-2", &key).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  v1::RedeployRequest redeploy;
  redeploy.set_name(created.name());
  redeploy.set_etag(deleted.etag());
  redeploy.set_request_id("redeploy-deleted");
  redeploy.set_from_revision(1);
  EXPECT_EQ(stub_->Redeploy(Context().get(), redeploy, &again).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

// Through PostgreSQL: the reconciler's lease, revision updates and replica
// time; UndeployDeployment; a delete of an undeployed deployment needs no
// force; GetUsage prices replica time at the offering's price.
TEST_F(DeploymentApiTest, ReconcileUndeployDeleteAndReplicaUsage) {
  v1::Deployment created;
  ASSERT_TRUE(Create(CreateRequest("reconciled"), &created).ok());
  const std::string name = created.name();
  Reconcile(name);
  v1::Deployment d = Get(name);
  EXPECT_EQ(d.state(), v1::DEPLOYMENT_STATE_DEPLOYING);
  scheduler_.MakeReady(name, 1);
  scheduler_.AddSeconds(name, 1, 7200);
  Reconcile(name);
  Reconcile(name);  // The same sample again: counted once.
  d = Get(name);
  EXPECT_EQ(d.state(), v1::DEPLOYMENT_STATE_DEPLOYED);
  EXPECT_EQ(d.serving_revision(), 1);
  EXPECT_EQ(d.ready_replicas(), 1);
  EXPECT_EQ(d.hourly_cost().micros(), 1'818'000);
  v1::ListRevisionsRequest list;
  list.set_deployment(name);
  v1::ListRevisionsResponse revisions;
  ASSERT_TRUE(stub_->ListRevisions(Context().get(), list, &revisions).ok());
  ASSERT_EQ(revisions.revisions_size(), 1);
  EXPECT_TRUE(revisions.revisions(0).serving());
  EXPECT_TRUE(revisions.revisions(0).has_ready_time());
  EXPECT_EQ(revisions.revisions(0).state(), v1::DEPLOYMENT_STATE_DEPLOYED);

  // Deleting what serves needs force.
  v1::DeleteDeploymentRequest remove;
  remove.set_name(name);
  v1::Deployment deleted;
  grpc::Status status =
      stub_->DeleteDeployment(Context().get(), remove, &deleted);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("undeploy it first"));

  v1::UndeployDeploymentRequest undeploy;
  undeploy.set_name(name);
  undeploy.set_etag("12345");
  v1::Deployment undeployed;
  EXPECT_EQ(stub_->UndeployDeployment(Context().get(), undeploy, &undeployed)
                .error_code(),
            grpc::StatusCode::ABORTED);
  undeploy.set_etag(d.etag());
  ASSERT_TRUE(
      stub_->UndeployDeployment(Context().get(), undeploy, &undeployed).ok());
  EXPECT_EQ(undeployed.state(), v1::DEPLOYMENT_STATE_UNDEPLOYED);
  EXPECT_EQ(undeployed.serving_revision(), 0);
  scheduler_.AddSeconds(name, 1, 1800);
  Reconcile(name);
  EXPECT_EQ(scheduler_.set_count(name), 0);

  v1::GetUsageRequest usage_request;
  usage_request.set_deployment(name);
  v1::GetUsageResponse usage;
  ASSERT_TRUE(stub_->GetUsage(Context().get(), usage_request, &usage).ok());
  ASSERT_EQ(usage.replica_usage_size(), 1);
  EXPECT_EQ(usage.replica_usage(0).hardware(), kOffering);
  EXPECT_DOUBLE_EQ(usage.replica_usage(0).replica_seconds(), 9000);
  EXPECT_EQ(usage.replica_cost().micros(), 1'818'000 * 5 / 2);
  EXPECT_EQ(usage.prices().hourly().at(kOffering).micros(), 1'818'000);

  ASSERT_TRUE(stub_->DeleteDeployment(Context().get(), remove, &deleted).ok());
  EXPECT_EQ(deleted.state(), v1::DEPLOYMENT_STATE_DELETING);
  Reconcile(name);
  d = Get(name);
  EXPECT_EQ(d.state(), v1::DEPLOYMENT_STATE_DELETED);
  // Usage stays after the delete.
  ASSERT_TRUE(stub_->GetUsage(Context().get(), usage_request, &usage).ok());
  EXPECT_EQ(usage.replica_usage_size(), 1);
}

// Two reconcilers over one database (as two processes would be): the row
// lease keeps the second off a deployment the first drives, until the first
// gives it up.
TEST_F(DeploymentApiTest, RowLeasesKeepASecondReconcilerOff) {
  absl::StatusOr<std::unique_ptr<db::Pool>> pool =
      db::Pool::Create({.conninfo = conninfo(), .size = 2});
  ASSERT_TRUE(pool.ok()) << pool.status();
  PgDeploymentStore store(pool->get());
  ChangeNotifier notifier;
  absl::StatusOr<std::unique_ptr<Reconciler>> other =
      Reconciler::Create({.owner = "other",
                          .store = &store,
                          .catalog = &catalog_,
                          .optimizer = &optimizer_,
                          .scheduler = &scheduler_,
                          .models = &models_,
                          .offerings = &offerings_,
                          .notifier = &notifier});
  ASSERT_TRUE(other.ok()) << other.status();
  auto lease_owner = [&](const std::string& name) {
    return (*pool)
        ->Transact<std::string>(
            [&](pqxx::work& tx) -> absl::StatusOr<std::string> {
              pqxx::result rows = tx.exec_params(
                  "SELECT COALESCE(lease_owner, '') FROM "
                  "deployment.deployments WHERE name = $1",
                  name);
              return rows[0][0].as<std::string>();
            })
        .value_or("?");
  };

  v1::Deployment created;
  ASSERT_TRUE(Create(CreateRequest("leased"), &created).ok());
  ASSERT_TRUE((*other)->ReconcileOne(created.name()).ok());
  EXPECT_EQ(lease_owner(created.name()), "other");
  EXPECT_EQ(scheduler_.creations(created.name(), 1), 1);
  const v1::Deployment before = Get(created.name());
  EXPECT_EQ(before.state(), v1::DEPLOYMENT_STATE_DEPLOYING);

  // The server's reconciler finds the lease taken: it writes nothing, even
  // with replicas ready to report.
  scheduler_.MakeReady(created.name(), 1);
  Reconcile(created.name());
  v1::Deployment after = Get(created.name());
  EXPECT_EQ(after.etag(), before.etag());
  EXPECT_EQ(lease_owner(created.name()), "other");

  // Given up (a clean stop): the server's reconciler takes it over.
  (*other)->Stop();
  EXPECT_EQ(lease_owner(created.name()), "");
  Reconcile(created.name());
  EXPECT_EQ(lease_owner(created.name()), "server");
  after = Get(created.name());
  EXPECT_EQ(after.state(), v1::DEPLOYMENT_STATE_DEPLOYED);
  EXPECT_EQ(scheduler_.creations(created.name(), 1), 1);
}

TEST_F(DeploymentApiTest, GetEndpointShowsHowToCall) {
  v1::Deployment created;
  ASSERT_TRUE(Create(CreateRequest("endpoint"), &created).ok());
  v1::CreateApiKeyResponse key;
  ASSERT_TRUE(CreateKey(created.name(), "endpoint-key", &key).ok());

  v1::GetEndpointRequest request;
  request.set_deployment(created.display_name());
  v1::Endpoint endpoint;
  ASSERT_TRUE(stub_->GetEndpoint(Context().get(), request, &endpoint).ok());
  EXPECT_EQ(endpoint.deployment(), created.name());
  EXPECT_EQ(endpoint.address(), "gateway.test:443");
  EXPECT_EQ(endpoint.method(), "hangar.v1.InferenceService/Generate");
  EXPECT_THAT(endpoint.example(), HasSubstr("<YOUR_API_KEY>"));
  EXPECT_THAT(endpoint.example(), HasSubstr("grpcurl"));
  EXPECT_THAT(endpoint.example(), HasSubstr("hangarctl"));
  EXPECT_THAT(endpoint.example(), HasSubstr(created.name()));
  EXPECT_THAT(endpoint.grpcurl_example(),
              HasSubstr("grpcurl -plaintext -H 'authorization: Bearer "
                        "<YOUR_API_KEY>'"));
  EXPECT_THAT(
      endpoint.hangarctl_example(),
      HasSubstr("hangarctl call --api_key=<YOUR_API_KEY> "
                "gateway.test:443 hangar.v1.InferenceService/Generate"));
  EXPECT_THAT(endpoint.python_example(),
              HasSubstr("grpc.insecure_channel(\"gateway.test:443\")"));
  EXPECT_THAT(endpoint.python_example(), HasSubstr("Bearer <YOUR_API_KEY>"));
  EXPECT_FALSE(endpoint.ready());
  EXPECT_EQ(endpoint.api_keys(), 1);
  EXPECT_EQ(endpoint.context_length(), 2048);
  EXPECT_TRUE(endpoint.sampling().has_temperature());
}

TEST_F(DeploymentApiTest, RetriedUsageIsCountedOnceAndPriced) {
  v1::Deployment created;
  ASSERT_TRUE(Create(CreateRequest("usage"), &created).ok());
  v1::CreateApiKeyResponse key;
  ASSERT_TRUE(CreateKey(created.name(), "usage-key", &key).ok());

  grpc::Status status;
  const absl::Time day =
      absl::FromCivil(absl::CivilDay(2026, 3, 14), absl::UTCTimeZone());
  v1::RecordUsageRequest record;
  record.set_report_id("gateway-1:7");
  for (int i = 0; i < 2; ++i) {
    v1::TokenUsageReport* report = record.add_reports();
    report->set_api_key(key.api_key().name());
    report->set_deployment(created.name());
    report->set_revision(1);
    *report->mutable_start_time() = ToProtoTimestamp(day + absl::Hours(10 + i));
    *report->mutable_end_time() =
        ToProtoTimestamp(day + absl::Hours(10 + i) + absl::Seconds(10));
    report->set_requests(3);
    report->mutable_tokens()->set_prompt_tokens(1000);
    report->mutable_tokens()->set_completion_tokens(500);
  }
  v1::RecordUsageResponse recorded;
  status = stub_->RecordUsage(Context().get(), record, &recorded);
  ASSERT_TRUE(status.ok()) << status.error_message();
  // The gateway retries the same batch (it never saw the answer).
  ASSERT_TRUE(stub_->RecordUsage(Context().get(), record, &recorded).ok());

  v1::GetUsageRequest get;
  get.set_deployment(created.display_name());
  v1::GetUsageResponse usage;
  status = stub_->GetUsage(Context().get(), get, &usage);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(usage.token_usage_size(), 1);
  const v1::KeyTokenUsage& row = usage.token_usage(0);
  EXPECT_EQ(row.date(), "2026-03-14");
  EXPECT_EQ(row.api_key(), key.api_key().name());
  EXPECT_EQ(row.requests(), 6);
  EXPECT_EQ(row.tokens().prompt_tokens(), 2000);
  EXPECT_EQ(row.tokens().completion_tokens(), 1000);
  // 2000 x 0.5/1k + 1000 x 1.5/1k = 2.5 USD.
  EXPECT_EQ(row.cost().micros(), 2'500'000);
  EXPECT_EQ(usage.token_cost().micros(), 2'500'000);
  EXPECT_EQ(usage.total_cost().micros(), 2'500'000);
  EXPECT_EQ(usage.replica_usage_size(), 0);
  EXPECT_EQ(usage.prices().prompt_per_1k_tokens().micros(), 500'000);
  EXPECT_EQ(usage.prices().completion_per_1k_tokens().micros(), 1'500'000);

  // A range without the day is empty; a malformed date is refused.
  get.mutable_range()->set_start_date("2026-03-15");
  ASSERT_TRUE(stub_->GetUsage(Context().get(), get, &usage).ok());
  EXPECT_EQ(usage.token_usage_size(), 0);
  EXPECT_EQ(usage.token_cost().micros(), 0);
  get.mutable_range()->set_start_date("14/03/2026");
  EXPECT_EQ(stub_->GetUsage(Context().get(), get, &usage).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // The key's last use moved to the end of its last window.
  v1::ListApiKeysRequest list;
  list.set_deployment(created.name());
  v1::ListApiKeysResponse keys;
  ASSERT_TRUE(stub_->ListApiKeys(Context().get(), list, &keys).ok());
  ASSERT_EQ(keys.api_keys_size(), 1);
  EXPECT_EQ(FromProtoTimestamp(keys.api_keys(0).last_used_time()),
            day + absl::Hours(11) + absl::Seconds(10));

  // Negative counts and missing windows are refused, nothing written.
  v1::RecordUsageRequest bad = record;
  bad.set_report_id("gateway-1:8");
  bad.mutable_reports(0)->mutable_tokens()->set_prompt_tokens(-1);
  bad.mutable_reports(1)->clear_end_time();
  status = stub_->RecordUsage(Context().get(), bad, &recorded);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("reports[0].tokens.prompt"));
  EXPECT_THAT(status.error_message(), HasSubstr("reports[1].end_time"));
  bad.clear_report_id();
  EXPECT_EQ(stub_->RecordUsage(Context().get(), bad, &recorded).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  get.clear_range();
  ASSERT_TRUE(stub_->GetUsage(Context().get(), get, &usage).ok());
  EXPECT_EQ(usage.token_usage(0).requests(), 6);
}

TEST_F(DeploymentApiTest, WatchDeploymentFollowsChangesUntilDeleted) {
  v1::Deployment created;
  ASSERT_TRUE(Create(CreateRequest("watched"), &created).ok());
  std::unique_ptr<grpc::ClientContext> context = Context();
  v1::WatchDeploymentsRequest request;
  request.set_name(created.display_name());
  auto reader = stub_->WatchDeployments(context.get(), request);
  v1::Deployment seen;
  ASSERT_TRUE(reader->Read(&seen));
  EXPECT_EQ(seen.name(), created.name());
  EXPECT_EQ(seen.etag(), created.etag());

  v1::UpdateDeploymentRequest update;
  update.mutable_deployment()->set_name(created.name());
  update.mutable_deployment()->set_description("changed");
  update.mutable_update_mask()->add_paths("description");
  v1::Deployment updated;
  ASSERT_TRUE(stub_->UpdateDeployment(Context().get(), update, &updated).ok());
  ASSERT_TRUE(reader->Read(&seen));
  EXPECT_EQ(seen.description(), "changed");

  ASSERT_TRUE(ForceDelete(created.name(), &updated).ok());
  ASSERT_TRUE(reader->Read(&seen));
  EXPECT_EQ(seen.state(), v1::DEPLOYMENT_STATE_DELETING);
  Reconcile(created.name());
  ASSERT_TRUE(reader->Read(&seen));
  EXPECT_EQ(seen.state(), v1::DEPLOYMENT_STATE_DELETED);
  EXPECT_FALSE(reader->Read(&seen));
  EXPECT_TRUE(reader->Finish().ok());

  // An unknown name is NOT_FOUND.
  grpc::ClientContext refused;
  request.set_name("dep-aaaaaaaaaaaa");
  auto stream = stub_->WatchDeployments(&refused, request);
  EXPECT_FALSE(stream->Read(&seen));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(DeploymentApiTest, WatchEveryDeploymentSendsEachChange) {
  v1::Deployment first;
  ASSERT_TRUE(Create(CreateRequest("all-1"), &first).ok());
  std::unique_ptr<grpc::ClientContext> context = Context();
  auto reader =
      stub_->WatchDeployments(context.get(), v1::WatchDeploymentsRequest());
  v1::Deployment seen;
  ASSERT_TRUE(reader->Read(&seen));
  EXPECT_EQ(seen.name(), first.name());

  v1::Deployment second;
  ASSERT_TRUE(Create(CreateRequest("all-2"), &second).ok());
  ASSERT_TRUE(reader->Read(&seen));
  EXPECT_EQ(seen.name(), second.name());
  EXPECT_EQ(seen.state(), v1::DEPLOYMENT_STATE_PENDING);

  v1::Deployment deleted;
  ASSERT_TRUE(ForceDelete(first.name(), &deleted).ok());
  ASSERT_TRUE(reader->Read(&seen));
  EXPECT_EQ(seen.name(), first.name());
  EXPECT_EQ(seen.state(), v1::DEPLOYMENT_STATE_DELETING);
  Reconcile(first.name());
  ASSERT_TRUE(reader->Read(&seen));
  EXPECT_EQ(seen.name(), first.name());
  EXPECT_EQ(seen.state(), v1::DEPLOYMENT_STATE_DELETED);
  context->TryCancel();
  while (reader->Read(&seen)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(DeploymentApiTest, WatchApiKeysEndsWhenTheServerDrains) {
  std::unique_ptr<grpc::ClientContext> context = Context();
  auto reader = stub_->WatchApiKeys(context.get(), v1::WatchApiKeysRequest());
  v1::ApiKeyEvent event;
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.kind(), v1::ApiKeyEvent::KIND_SNAPSHOT);
  EXPECT_EQ(event.entries_size(), 0);
  server_->Shutdown();
  EXPECT_FALSE(reader->Read(&event));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace hangar::deployment
