// The Deployments domain with the in-memory store, fake facts, a real
// ChangeNotifier and the fake clock (no database, no gRPC).
#include "services/deployment/deployments.h"

#include <memory>
#include <string>

#include "common/api/time.h"
#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/deployment/testing/fake_facts.h"
#include "services/deployment/testing/in_memory_deployment_store.h"

namespace hangar::deployment {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kModel[] = "Org/Tiny-Chat_v2";
constexpr char kOffering[] = "t4-1x";

class DeploymentsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ModelFacts model;
    model.ready = true;
    model.context_length = 1024;
    model.license = "mit";
    model.recipes["ENGINE_NONE"] = {.weight_bytes = 1 << 20,
                                    .kv_bytes_per_sequence = 1 << 10};
    models_.Set(kModel, model);
    OfferingFacts offering;
    offering.gpu_count = 1;
    offering.gpu_memory_bytes = int64_t{16} << 30;
    offering.hourly_price_micros = 1'128'000;
    offerings_.Set(kOffering, offering);
    auto deployments =
        Deployments::Create({.gateway_endpoint = "gw:1",
                             .prompt_price_per_1k_micros = 333,
                             .completion_price_per_1k_micros = 1'000'000,
                             .store = &store_,
                             .models = &models_,
                             .offerings = &offerings_,
                             .notifier = &notifier_,
                             .clock = &clock_});
    ASSERT_TRUE(deployments.ok()) << deployments.status();
    deployments_ = *std::move(deployments);
  }

  v1::CreateDeploymentRequest Request(const std::string& id) {
    v1::CreateDeploymentRequest request;
    request.set_request_id(id);
    request.mutable_spec()->set_model(kModel);
    request.mutable_spec()->set_hardware(kOffering);
    absl::StatusOr<v1::ValidateDeploymentResponse> review =
        deployments_->Validate(request.spec());
    EXPECT_TRUE(review.ok() && review->valid());
    request.mutable_spec()->set_accept_terms(true);
    request.mutable_spec()->set_accepted_terms_sha256(review->terms_sha256());
    return request;
  }

  testing::InMemoryDeploymentStore store_;
  testing::FakeModelFacts models_;
  testing::FakeOfferingFacts offerings_;
  ChangeNotifier notifier_;
  hangar::testing::FakeClock clock_;
  std::unique_ptr<Deployments> deployments_;
};

TEST(DeploymentsOptionsTest, CreateValidatesOptions) {
  testing::InMemoryDeploymentStore store;
  testing::FakeModelFacts models;
  testing::FakeOfferingFacts offerings;
  ChangeNotifier notifier;
  EXPECT_EQ(Deployments::Create({.store = &store,
                                 .models = &models,
                                 .offerings = &offerings,
                                 .notifier = &notifier})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Deployments::Create({.gateway_endpoint = "gw:1",
                                 .prompt_price_per_1k_micros = -1,
                                 .store = &store,
                                 .models = &models,
                                 .offerings = &offerings,
                                 .notifier = &notifier})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Deployments::Create({.gateway_endpoint = "gw:1"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DisplayNameTest, DerivedFromTheModel) {
  EXPECT_EQ(DisplayNameFromModel("HuggingFaceTB/SmolLM2-135M-Instruct"),
            "smollm2-135m-instruct");
  EXPECT_EQ(DisplayNameFromModel("a/B__C..d"), "b-c-d");
  EXPECT_EQ(DisplayNameFromModel("x/___"), "deployment");
  EXPECT_EQ(DisplayNameFromModel(std::string(100, 'a')).size(), 56u);
}

TEST(MetadataTest, EveryRule) {
  google::protobuf::RepeatedPtrField<std::string> tags;
  EXPECT_THAT(MetadataViolations("ok-name", "", tags, false), IsEmpty());
  EXPECT_THAT(MetadataViolations("", "", tags, true), IsEmpty());
  EXPECT_EQ(MetadataViolations("", "", tags, false).size(), 1u);
  EXPECT_EQ(MetadataViolations("Upper", "", tags, false).size(), 1u);
  EXPECT_EQ(MetadataViolations(std::string(64, 'a'), "", tags, false).size(),
            1u);
  // 1000 characters (not bytes) are allowed: "é" is two bytes.
  std::string accents;
  for (int i = 0; i < 1000; ++i) accents += "\xC3\xA9";
  EXPECT_THAT(MetadataViolations("a", accents, tags, false), IsEmpty());
  EXPECT_EQ(MetadataViolations("a", accents + "x", tags, false).size(), 1u);
  *tags.Add() = "a.b:c_d-9";
  *tags.Add() = "Bad";
  *tags.Add() = "";
  auto violations = MetadataViolations("a", "", tags, false);
  ASSERT_EQ(violations.size(), 2u);
  EXPECT_EQ(violations[0].field, "tags[1]");
  EXPECT_EQ(violations[1].field, "tags[2]");
  for (int i = 0; i < 20; ++i) *tags.Add() = "t";
  violations = MetadataViolations("a", "", tags, false);
  ASSERT_EQ(violations.size(), 1u);
  EXPECT_THAT(violations[0].rule, HasSubstr("at most 16 tags"));
}

TEST(ChangedFieldsTest, InnermostPathsWithoutTerms) {
  v1::DeploymentSpec before;
  before.set_model("m");
  before.set_hardware("t4-1x");
  before.mutable_sampling()->set_temperature(0.7f);
  v1::DeploymentSpec after = before;
  EXPECT_THAT(ChangedFields(before, after), IsEmpty());
  after.set_accept_terms(true);
  after.set_accepted_terms_sha256("abc");
  EXPECT_THAT(ChangedFields(before, after), IsEmpty());
  after.set_hardware("a10g-1x");
  after.mutable_sampling()->set_temperature(0.1f);
  after.set_min_replicas(2);
  EXPECT_THAT(ChangedFields(before, after),
              ElementsAre("hardware", "min_replicas", "sampling.temperature"));
}

TEST_F(DeploymentsTest, CreateUsesTheClockAndAnswersRetriesFromTheStore) {
  absl::StatusOr<v1::Deployment> created =
      deployments_->CreateDeployment(Request("r1"));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(FromProtoTimestamp(created->create_time()), clock_.Now());
  EXPECT_EQ(created->display_name(), "tiny-chat-v2");
  EXPECT_EQ(created->endpoint(), "gw:1");
  EXPECT_EQ(created->state(), v1::DEPLOYMENT_STATE_PENDING);

  // With the catalog down, a retry still succeeds (answered from the
  // store); a new request is UNAVAILABLE naming the catalog.
  v1::CreateDeploymentRequest first = Request("r1");
  models_.SetDown(true);
  absl::StatusOr<v1::Deployment> retry = deployments_->CreateDeployment(first);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->name(), created->name());
  first.set_request_id("r2");
  absl::StatusOr<v1::Deployment> fresh = deployments_->CreateDeployment(first);
  EXPECT_EQ(fresh.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(fresh.status().message(), HasSubstr("catalog"));
}

TEST_F(DeploymentsTest, RedeployStampsItsRevisionAndChecksTheEtag) {
  absl::StatusOr<v1::Deployment> created =
      deployments_->CreateDeployment(Request("r1"));
  ASSERT_TRUE(created.ok());
  clock_.Advance(absl::Minutes(5));
  v1::RedeployRequest redeploy;
  redeploy.set_name(created->name());
  redeploy.set_etag(created->etag());
  redeploy.set_request_id("d1");
  *redeploy.mutable_spec() = Request("unused").spec();
  redeploy.mutable_spec()->set_min_replicas(2);
  absl::StatusOr<v1::Deployment> second = deployments_->Redeploy(redeploy);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(FromProtoTimestamp(second->update_time()), clock_.Now());
  absl::StatusOr<v1::Revision> revision =
      store_.GetRevision(created->name(), 2);
  ASSERT_TRUE(revision.ok());
  EXPECT_EQ(FromProtoTimestamp(revision->create_time()), clock_.Now());
  // max_replicas follows min_replicas by default (max(1, min)).
  EXPECT_THAT(revision->changed_fields(),
              ElementsAre("max_replicas", "min_replicas"));
  EXPECT_EQ(second->desired_replicas(), 2);

  redeploy.set_request_id("d2");
  EXPECT_EQ(deployments_->Redeploy(redeploy).status().code(),
            absl::StatusCode::kAborted);
}

TEST_F(DeploymentsTest, UsageCostIsRoundedToTheMicro) {
  absl::StatusOr<v1::Deployment> created =
      deployments_->CreateDeployment(Request("r1"));
  ASSERT_TRUE(created.ok());
  v1::RecordUsageRequest record;
  record.set_report_id("g:1");
  v1::TokenUsageReport* report = record.add_reports();
  report->set_api_key("key-a");
  report->set_deployment(created->name());
  *report->mutable_start_time() = ToProtoTimestamp(clock_.Now());
  *report->mutable_end_time() = ToProtoTimestamp(clock_.Now());
  report->mutable_tokens()->set_prompt_tokens(2);      // 0.666 micro -> 1
  report->mutable_tokens()->set_completion_tokens(3);  // 3000 micros
  ASSERT_TRUE(deployments_->RecordUsage(record).ok());
  ASSERT_TRUE(deployments_->RecordUsage(record).ok());  // Counted once.
  absl::StatusOr<v1::GetUsageResponse> usage =
      deployments_->GetUsage(v1::GetUsageRequest());
  ASSERT_TRUE(usage.ok()) << usage.status();
  ASSERT_EQ(usage->token_usage_size(), 1);
  EXPECT_EQ(usage->token_usage(0).cost().micros(), 3001);
  EXPECT_EQ(usage->token_cost().micros(), 3001);
  EXPECT_EQ(usage->prices().prompt_per_1k_tokens().micros(), 333);
}

TEST_F(DeploymentsTest, StoreDownIsUnavailable) {
  store_.SetDown(true);
  EXPECT_EQ(deployments_->Get("dep-x").status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(deployments_->List(v1::ListDeploymentsRequest()).status().code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace hangar::deployment
