// Webhooks through the deployment service's gRPC API: a DeploymentServer on
// loopback port 0 over a private PostgreSQL, the reconciler driven by the
// in-memory catalog/optimizer/scheduler fakes, and a real HTTP receiver on
// loopback that checks every delivery's signature with the secret the
// create returned. The server's set-up is deployment_fixture.h's.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/testing/postgres_server.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hangar/v1/deployment.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "services/deployment/deployment_server.h"
#include "services/deployment/testing/fake_clients.h"
#include "services/deployment/testing/fake_facts.h"
#include "services/deployment/webhooks/signing.h"
#include "services/deployment/webhooks/testing/loopback_http_server.h"
#include "tests/integration/deployment/deployment_fixture.h"

namespace hangar::deployment {
namespace {

using ::testing::HasSubstr;
using webhooks::testing::LoopbackHttpServer;

using testing::Context;
using testing::kModel;
constexpr absl::Duration kWait = absl::Seconds(30);

class DeploymentWebhooksTest : public testing::DeploymentServerTest {
 protected:
  // The reconciler runs (every 100 ms while active) against a scheduler
  // whose replicas turn ready at once; deliveries get 3 attempts of 3 s.
  void SetUp() override {
    DeploymentServerTest::SetUp();
    if (HasFatalFailure()) return;
    scheduler_.SetAutoReady(true);

    auto receiver = LoopbackHttpServer::Start();
    ASSERT_TRUE(receiver.ok()) << receiver.status();
    receiver_ = *std::move(receiver);

    DeploymentServer::Options options = BaseOptions();
    options.active_interval = absl::Milliseconds(100);
    options.drain_seconds = 0;
    options.webhook_max_attempts = 3;
    options.webhook_timeout = absl::Seconds(3);
    StartServer(std::move(options));
  }

  v1::CreateDeploymentRequest CreateRequest(const std::string& request_id,
                                            const std::string& webhook_url) {
    v1::CreateDeploymentRequest request =
        DeploymentServerTest::CreateRequest(request_id);
    request.set_webhook_url(webhook_url);
    return request;
  }

  grpc::Status Update(const v1::Deployment& deployment,
                      const std::vector<std::string>& paths,
                      v1::Deployment* updated) {
    v1::UpdateDeploymentRequest request;
    *request.mutable_deployment() = deployment;
    for (const std::string& path : paths) {
      request.mutable_update_mask()->add_paths(path);
    }
    return stub_->UpdateDeployment(Context().get(), request, updated);
  }

  v1::ListWebhookDeliveriesResponse Deliveries(const std::string& deployment) {
    v1::ListWebhookDeliveriesRequest request;
    request.set_deployment(deployment);
    v1::ListWebhookDeliveriesResponse response;
    grpc::Status status =
        stub_->ListWebhookDeliveries(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  // Waits until the deployment's newest delivery of `event` is DELIVERED.
  bool AwaitDelivered(const std::string& deployment, const std::string& event) {
    const absl::Time deadline = absl::Now() + kWait;
    while (absl::Now() < deadline) {
      const v1::ListWebhookDeliveriesResponse page = Deliveries(deployment);
      for (const auto& delivery : page.deliveries()) {
        if (delivery.event() == event &&
            delivery.status() == v1::WebhookDelivery::STATUS_DELIVERED) {
          return true;
        }
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  std::unique_ptr<LoopbackHttpServer> receiver_;
};

TEST_F(DeploymentWebhooksTest, CreateReturnsTheSecretOnceAndEventsAreSigned) {
  const v1::CreateDeploymentRequest request =
      CreateRequest("create-1", receiver_->url("/hangar"));
  v1::Deployment created;
  grpc::Status status =
      stub_->CreateDeployment(Context().get(), request, &created);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(created.webhook_url(), receiver_->url("/hangar"));
  const std::string secret = created.webhook_secret();
  ASSERT_EQ(secret.size(), webhooks::kSecretLength);
  EXPECT_TRUE(absl::StartsWith(secret, "whsec_"));

  // A retry: the same deployment, no second secret.
  v1::Deployment retried;
  status = stub_->CreateDeployment(Context().get(), request, &retried);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(retried.name(), created.name());
  EXPECT_EQ(retried.webhook_url(), receiver_->url("/hangar"));
  EXPECT_EQ(retried.webhook_secret(), "");
  // The same request id with another URL is another request.
  v1::CreateDeploymentRequest other = request;
  other.set_webhook_url(receiver_->url("/other"));
  status = stub_->CreateDeployment(Context().get(), other, &retried);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // Get and List show the URL, never the secret.
  v1::Deployment got = Get(created.display_name());
  EXPECT_EQ(got.webhook_url(), receiver_->url("/hangar"));
  EXPECT_EQ(got.webhook_secret(), "");
  v1::ListDeploymentsResponse listed;
  ASSERT_TRUE(stub_
                  ->ListDeployments(Context().get(),
                                    v1::ListDeploymentsRequest(), &listed)
                  .ok());
  ASSERT_EQ(listed.deployments_size(), 1);
  EXPECT_EQ(listed.deployments(0).webhook_url(), receiver_->url("/hangar"));
  EXPECT_EQ(listed.deployments(0).webhook_secret(), "");

  // The reconciler deploys it (fakes); the receiver gets one signed event.
  ASSERT_TRUE(AwaitDelivered(created.name(), "deployment.deployed"))
      << "state " << v1::DeploymentState_Name(Get(created.name()).state());
  ASSERT_GE(receiver_->requests().size(), 1u);
  const LoopbackHttpServer::Request deployed = receiver_->requests()[0];
  EXPECT_EQ(deployed.target, "/hangar");
  EXPECT_TRUE(webhooks::VerifyWebhookSignature(
      secret, deployed.headers.at("x-hangar-timestamp"), deployed.body,
      deployed.headers.at("x-hangar-signature")));
  nlohmann::json body = nlohmann::json::parse(deployed.body);
  EXPECT_EQ(body["event"], "deployment.deployed");
  EXPECT_EQ(body["deployment"], created.name());
  EXPECT_EQ(body["display_name"], created.display_name());
  EXPECT_EQ(body["revision"], 1);
  EXPECT_EQ(body["state"], "DEPLOYMENT_STATE_DEPLOYED");
  EXPECT_EQ(body["id"], deployed.headers.at("x-hangar-delivery"));

  // Undeploying it is the second event.
  v1::UndeployDeploymentRequest undeploy;
  undeploy.set_name(created.name());
  v1::Deployment undeployed;
  status = stub_->UndeployDeployment(Context().get(), undeploy, &undeployed);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_TRUE(AwaitDelivered(created.name(), "deployment.undeployed"));
  const v1::ListWebhookDeliveriesResponse deliveries =
      Deliveries(created.display_name());
  ASSERT_EQ(deliveries.deliveries_size(), 2);
  // Newest first.
  EXPECT_EQ(deliveries.deliveries(0).event(), "deployment.undeployed");
  EXPECT_EQ(deliveries.deliveries(1).event(), "deployment.deployed");
  for (const auto& delivery : deliveries.deliveries()) {
    EXPECT_EQ(delivery.deployment(), created.name());
    EXPECT_EQ(delivery.attempts(), 1);
    EXPECT_EQ(delivery.last_http_status(), 200);
    EXPECT_EQ(delivery.url(), receiver_->url("/hangar"));
  }
  EXPECT_EQ(receiver_->requests().size(), 2u);
  EXPECT_EQ(undeployed.webhook_url(), receiver_->url("/hangar"));

  // Delete answers with the URL too (never the secret); no event.
  v1::DeleteDeploymentRequest remove;
  remove.set_name(created.name());
  v1::Deployment deleted;
  status = stub_->DeleteDeployment(Context().get(), remove, &deleted);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(deleted.webhook_url(), receiver_->url("/hangar"));
  EXPECT_EQ(deleted.webhook_secret(), "");
}

TEST_F(DeploymentWebhooksTest, FailedDeploymentIsReportedAfterARetry) {
  v1::Preparation failed;
  failed.set_state(v1::PREPARATION_STATE_FAILED);
  failed.set_failure_reason("disk full");
  catalog_.SetPreparation(kModel, failed);
  // The receiver is unwell at first: the first attempt gets a 503.
  receiver_->SetStatuses({503}, 200);
  v1::Deployment created;
  grpc::Status status = stub_->CreateDeployment(
      Context().get(), CreateRequest("fails", receiver_->url()), &created);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const std::string secret = created.webhook_secret();
  // The retry after about a second (real clock) delivers it.
  ASSERT_TRUE(AwaitDelivered(created.name(), "deployment.failed"))
      << "state " << v1::DeploymentState_Name(Get(created.name()).state());
  const v1::ListWebhookDeliveriesResponse deliveries =
      Deliveries(created.name());
  ASSERT_EQ(deliveries.deliveries_size(), 1);
  const v1::WebhookDelivery& delivery = deliveries.deliveries(0);
  EXPECT_EQ(delivery.attempts(), 2);
  EXPECT_EQ(delivery.last_http_status(), 200);
  ASSERT_EQ(receiver_->requests().size(), 2u);
  for (const LoopbackHttpServer::Request& request : receiver_->requests()) {
    EXPECT_EQ(request.headers.at("x-hangar-delivery"), delivery.name());
    EXPECT_TRUE(webhooks::VerifyWebhookSignature(
        secret, request.headers.at("x-hangar-timestamp"), request.body,
        request.headers.at("x-hangar-signature")));
    nlohmann::json body = nlohmann::json::parse(request.body);
    EXPECT_EQ(body["event"], "deployment.failed");
    EXPECT_EQ(body["state"], "DEPLOYMENT_STATE_FAILED");
    EXPECT_THAT(body["reason"].get<std::string>(), HasSubstr("disk full"));
  }
}

TEST_F(DeploymentWebhooksTest, BadUrlIsRefusedAndNothingIsCreated) {
  for (const std::string& url :
       {std::string("ftp://example.com/x"), std::string("http://"),
        "https://example.com/" + std::string(3000, 'a')}) {
    v1::Deployment created;
    grpc::Status status = stub_->CreateDeployment(
        Context().get(), CreateRequest("bad-" + url.substr(0, 8), url),
        &created);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << url;
    EXPECT_TRUE(absl::StartsWith(status.error_message(), "webhook_url: "))
        << status.error_message();
  }
  v1::ListDeploymentsResponse listed;
  ASSERT_TRUE(stub_
                  ->ListDeployments(Context().get(),
                                    v1::ListDeploymentsRequest(), &listed)
                  .ok());
  EXPECT_EQ(listed.deployments_size(), 0);
}

TEST_F(DeploymentWebhooksTest, UpdateSetsRotatesAndRemovesTheWebhook) {
  v1::Deployment created;
  ASSERT_TRUE(stub_
                  ->CreateDeployment(Context().get(),
                                     CreateRequest("plain", ""), &created)
                  .ok());
  EXPECT_EQ(created.webhook_url(), "");
  EXPECT_EQ(created.webhook_secret(), "");
  // Let the reconciler settle first: its writes move the etag too.
  const absl::Time deadline = absl::Now() + kWait;
  while (Get(created.name()).state() != v1::DEPLOYMENT_STATE_DEPLOYED &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const v1::Deployment before = Get(created.name());
  ASSERT_EQ(before.state(), v1::DEPLOYMENT_STATE_DEPLOYED);

  // A stale etag changes nothing.
  v1::Deployment change;
  change.set_name(created.name());
  change.set_webhook_url(receiver_->url("/a"));
  change.set_etag("999");
  v1::Deployment updated;
  grpc::Status status = Update(change, {"webhook_url"}, &updated);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED)
      << status.error_message();
  EXPECT_EQ(Get(created.name()).webhook_url(), "");
  // A bad URL: INVALID_ARGUMENT naming the field.
  change.set_etag(before.etag());
  change.set_webhook_url("gopher://x");
  status = Update(change, {"webhook_url"}, &updated);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("deployment.webhook_url: "));

  // Set with the current etag: a secret once, the etag moves.
  change.set_webhook_url(receiver_->url("/a"));
  status = Update(change, {"webhook_url"}, &updated);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(updated.webhook_url(), receiver_->url("/a"));
  const std::string first_secret = updated.webhook_secret();
  EXPECT_EQ(first_secret.size(), webhooks::kSecretLength);
  EXPECT_NE(updated.etag(), before.etag());
  EXPECT_EQ(Get(created.name()).webhook_secret(), "");
  // The old etag is stale now.
  change.set_webhook_url(receiver_->url("/b"));
  EXPECT_EQ(Update(change, {"webhook_url"}, &updated).error_code(),
            grpc::StatusCode::ABORTED);

  // With another path: both change, a new secret.
  change.set_etag(Get(created.name()).etag());
  change.set_description("now with hooks");
  status = Update(change, {"description", "webhook_url"}, &updated);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(updated.description(), "now with hooks");
  EXPECT_EQ(updated.webhook_url(), receiver_->url("/b"));
  EXPECT_EQ(updated.webhook_secret().size(), webhooks::kSecretLength);
  EXPECT_NE(updated.webhook_secret(), first_secret);

  // Empty removes it.
  v1::Deployment removal;
  removal.set_name(created.name());
  status = Update(removal, {"webhook_url"}, &updated);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(updated.webhook_url(), "");
  EXPECT_EQ(updated.webhook_secret(), "");
  EXPECT_EQ(Get(created.name()).webhook_url(), "");
  // Other paths still work as before, without touching the webhook.
  removal.set_description("plain again");
  status = Update(removal, {"description"}, &updated);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(updated.description(), "plain again");
}

TEST_F(DeploymentWebhooksTest, ListDeliveriesNeedsAKnownDeployment) {
  v1::ListWebhookDeliveriesRequest request;
  v1::ListWebhookDeliveriesResponse response;
  EXPECT_EQ(stub_->ListWebhookDeliveries(Context().get(), request, &response)
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  request.set_deployment("dep-unknown00000");
  EXPECT_EQ(stub_->ListWebhookDeliveries(Context().get(), request, &response)
                .error_code(),
            grpc::StatusCode::NOT_FOUND);
  request.set_deployment("x");
  request.set_page_token("not a token");
  EXPECT_NE(stub_->ListWebhookDeliveries(Context().get(), request, &response)
                .error_code(),
            grpc::StatusCode::OK);
}

}  // namespace
}  // namespace hangar::deployment
