// The webhook outbox against a real PostgreSQL and a real HTTP receiver on
// loopback (testing/loopback_http_server.h), POSTed to with libcurl: signed
// deliveries, deduplication, retries on the fake clock, FAILED after the
// last attempt, a restart, claims shared by two senders, listing.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/api/time.h"
#include "common/db/pool.h"
#include "common/testing/fake_clock.h"
#include "common/testing/postgres_server.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "services/deployment/pg_deployment_store.h"
#include "services/deployment/webhooks/pg_webhook_store.h"
#include "services/deployment/webhooks/signing.h"
#include "services/deployment/webhooks/testing/loopback_http_server.h"
#include "services/deployment/webhooks/webhooks.h"

namespace hangar::deployment::webhooks {
namespace {

using ::hangar::testing::FakeClock;
using ::hangar::testing::IsOk;
using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;
using testing::LoopbackHttpServer;

constexpr absl::Duration kWait = absl::Seconds(20);

// Polls `condition` (real time) until it holds or `timeout` passes.
template <typename F>
bool WaitFor(F condition, absl::Duration timeout = kWait) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

v1::Deployment Event(const std::string& name, v1::DeploymentState state,
                     int64_t revision) {
  v1::Deployment deployment;
  deployment.set_name(name);
  deployment.set_display_name(absl::StrCat("name-", name));
  deployment.set_state(state);
  deployment.set_state_reason(absl::StrCat("reason of ", name));
  deployment.set_latest_revision(revision);
  *deployment.mutable_update_time() =
      ToProtoTimestamp(absl::FromUnixSeconds(1'650'000'000));
  return deployment;
}

class WebhooksOutboxTest : public ::hangar::testing::PostgresTest {
 protected:
  void SetUp() override {
    PostgresTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_OK_AND_ASSIGN(pool_,
                         db::Pool::Create({.conninfo = conninfo(), .size = 4}));
    ASSERT_THAT(MigrateDeploymentSchema(*pool_), IsOk());
    store_ = std::make_unique<PgWebhookStore>(pool_.get());
    ASSERT_OK_AND_ASSIGN(receiver_, LoopbackHttpServer::Start());
  }

  Webhooks::Options DefaultOptions() {
    return {.retry = {.max_attempts = 3,
                      .initial_backoff = absl::Seconds(1),
                      .max_backoff = absl::Seconds(10),
                      .jitter = 0.2},
            .senders = 1,
            .store = store_.get(),
            .clock = &clock_,
            .random = [] { return 0.5; }};
  }

  std::unique_ptr<Webhooks> Make(Webhooks::Options options) {
    absl::StatusOr<std::unique_ptr<Webhooks>> webhooks =
        Webhooks::Create(std::move(options));
    EXPECT_THAT(webhooks.status(), IsOk());
    return webhooks.ok() ? *std::move(webhooks) : nullptr;
  }

  std::vector<v1::WebhookDelivery> Deliveries(const std::string& deployment) {
    absl::StatusOr<std::vector<v1::WebhookDelivery>> rows =
        store_->ListDeliveries(deployment, 0, 1000);
    EXPECT_THAT(rows.status(), IsOk());
    return rows.ok() ? *rows : std::vector<v1::WebhookDelivery>{};
  }

  // Waits until the newest delivery of `deployment` has `attempts` attempts
  // recorded, and returns it.
  v1::WebhookDelivery AwaitAttempts(const std::string& deployment,
                                    int attempts) {
    v1::WebhookDelivery found;
    EXPECT_TRUE(WaitFor([&] {
      std::vector<v1::WebhookDelivery> rows = Deliveries(deployment);
      if (rows.empty() || rows[0].attempts() < attempts) return false;
      found = rows[0];
      return true;
    })) << "no attempt "
        << attempts << " of " << deployment;
    return found;
  }

  FakeClock clock_{absl::FromUnixSeconds(1'700'000'000)};
  std::unique_ptr<db::Pool> pool_;
  std::unique_ptr<PgWebhookStore> store_;
  std::unique_ptr<LoopbackHttpServer> receiver_;
};

TEST_F(WebhooksOutboxTest, DeliversOneSignedEventPerRevisionAndState) {
  std::unique_ptr<Webhooks> webhooks = Make(DefaultOptions());
  ASSERT_NE(webhooks, nullptr);
  ASSERT_OK_AND_ASSIGN(
      std::string secret,
      webhooks->SetTarget("dep-a", receiver_->url("/in"), "webhook_url"));
  ASSERT_EQ(secret.size(), kSecretLength);
  // The reconciler reports at least once: the same state three times.
  for (int i = 0; i < 3; ++i) {
    webhooks->OnDeploymentStateChanged(
        Event("dep-a", v1::DEPLOYMENT_STATE_DEPLOYED, 1));
  }
  // Not an event; and a deployment without a webhook gets nothing.
  webhooks->OnDeploymentStateChanged(
      Event("dep-a", v1::DEPLOYMENT_STATE_DEPLOYING, 1));
  webhooks->OnDeploymentStateChanged(
      Event("dep-none", v1::DEPLOYMENT_STATE_DEPLOYED, 1));
  EXPECT_EQ(Deliveries("dep-a").size(), 1u);
  EXPECT_TRUE(Deliveries("dep-none").empty());

  ASSERT_THAT(webhooks->Start(), IsOk());
  ASSERT_TRUE(receiver_->WaitForRequests(1, kWait));
  const v1::WebhookDelivery delivered = AwaitAttempts("dep-a", 1);
  EXPECT_EQ(delivered.status(), v1::WebhookDelivery::STATUS_DELIVERED);
  EXPECT_EQ(delivered.last_http_status(), 200);
  EXPECT_EQ(delivered.last_error(), "");
  EXPECT_EQ(delivered.url(), receiver_->url("/in"));
  EXPECT_EQ(delivered.event(), "deployment.deployed");
  EXPECT_EQ(delivered.revision(), 1);
  EXPECT_FALSE(delivered.has_next_attempt_time());
  EXPECT_EQ(FromProtoTimestamp(delivered.last_attempt_time()), clock_.Now());

  const LoopbackHttpServer::Request request = receiver_->requests()[0];
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.target, "/in");
  EXPECT_EQ(request.headers.at("content-type"), "application/json");
  EXPECT_EQ(request.headers.at("x-hangar-delivery"), delivered.name());
  EXPECT_EQ(request.headers.at("x-hangar-event"), "deployment.deployed");
  const std::string& timestamp = request.headers.at("x-hangar-timestamp");
  EXPECT_EQ(timestamp, absl::StrCat(absl::ToUnixSeconds(clock_.Now())));
  EXPECT_TRUE(VerifyWebhookSignature(secret, timestamp, request.body,
                                     request.headers.at("x-hangar-signature")))
      << request.headers.at("x-hangar-signature");
  EXPECT_FALSE(
      VerifyWebhookSignature("whsec_wrong", timestamp, request.body,
                             request.headers.at("x-hangar-signature")));
  nlohmann::json body = nlohmann::json::parse(request.body);
  EXPECT_EQ(body["id"], delivered.name());
  EXPECT_EQ(body["event"], "deployment.deployed");
  EXPECT_EQ(body["deployment"], "dep-a");
  EXPECT_EQ(body["display_name"], "name-dep-a");
  EXPECT_EQ(body["revision"], 1);
  EXPECT_EQ(body["state"], "DEPLOYMENT_STATE_DEPLOYED");
  EXPECT_EQ(body["reason"], "reason of dep-a");
  EXPECT_EQ(body["time"], "2022-04-15T05:20:00+00:00");

  // A later event of the running sender is sent at once (it was woken).
  webhooks->OnDeploymentStateChanged(
      Event("dep-a", v1::DEPLOYMENT_STATE_UNDEPLOYED, 1));
  ASSERT_TRUE(receiver_->WaitForRequests(2, kWait));
  EXPECT_EQ(receiver_->requests()[1].headers.at("x-hangar-event"),
            "deployment.undeployed");
  webhooks->Stop();
  EXPECT_EQ(receiver_->requests().size(), 2u);
  EXPECT_EQ(Deliveries("dep-a").size(), 2u);
}

TEST_F(WebhooksOutboxTest, RetriesWithBackoffOnTheClockThenDelivers) {
  receiver_->SetStatuses({500, 503}, 204);
  std::unique_ptr<Webhooks> webhooks = Make(DefaultOptions());
  ASSERT_NE(webhooks, nullptr);
  ASSERT_THAT(
      webhooks->SetTarget("dep-r", receiver_->url(), "webhook_url").status(),
      IsOk());
  ASSERT_THAT(webhooks->Start(), IsOk());
  const absl::Time t0 = clock_.Now();
  webhooks->OnDeploymentStateChanged(
      Event("dep-r", v1::DEPLOYMENT_STATE_FAILED, 2));

  v1::WebhookDelivery first = AwaitAttempts("dep-r", 1);
  EXPECT_EQ(first.status(), v1::WebhookDelivery::STATUS_PENDING);
  EXPECT_EQ(first.last_http_status(), 500);
  EXPECT_EQ(first.last_error(), "the receiver answered HTTP 500");
  // 1 s less 20% x 0.5 of jitter.
  EXPECT_EQ(FromProtoTimestamp(first.next_attempt_time()),
            t0 + absl::Milliseconds(900));
  // Nothing more until the clock reaches the due time.
  ASSERT_TRUE(clock_.BlockUntilWaiters(1));
  clock_.Advance(absl::Milliseconds(899));
  EXPECT_EQ(Deliveries("dep-r")[0].attempts(), 1);
  clock_.Advance(absl::Milliseconds(1));

  v1::WebhookDelivery second = AwaitAttempts("dep-r", 2);
  EXPECT_EQ(second.status(), v1::WebhookDelivery::STATUS_PENDING);
  EXPECT_EQ(second.last_http_status(), 503);
  EXPECT_EQ(FromProtoTimestamp(second.next_attempt_time()),
            clock_.Now() + absl::Milliseconds(1800));
  clock_.Advance(absl::Milliseconds(1800));

  v1::WebhookDelivery third = AwaitAttempts("dep-r", 3);
  EXPECT_EQ(third.status(), v1::WebhookDelivery::STATUS_DELIVERED);
  EXPECT_EQ(third.last_http_status(), 204);
  EXPECT_EQ(third.last_error(), "");
  EXPECT_EQ(receiver_->requests().size(), 3u);
  // Every attempt carries the same delivery id (receivers deduplicate).
  for (const auto& request : receiver_->requests()) {
    EXPECT_EQ(request.headers.at("x-hangar-delivery"), third.name());
  }
}

TEST_F(WebhooksOutboxTest, FailedAfterMaxAttempts) {
  receiver_->SetStatuses({}, 500);
  std::unique_ptr<Webhooks> webhooks = Make(DefaultOptions());
  ASSERT_NE(webhooks, nullptr);
  ASSERT_THAT(
      webhooks->SetTarget("dep-f", receiver_->url(), "webhook_url").status(),
      IsOk());
  ASSERT_THAT(webhooks->Start(), IsOk());
  webhooks->OnDeploymentStateChanged(
      Event("dep-f", v1::DEPLOYMENT_STATE_DEPLOYED, 1));
  AwaitAttempts("dep-f", 1);
  ASSERT_TRUE(clock_.BlockUntilWaiters(1));
  clock_.Advance(absl::Milliseconds(900));
  AwaitAttempts("dep-f", 2);
  clock_.Advance(absl::Milliseconds(1800));
  v1::WebhookDelivery last = AwaitAttempts("dep-f", 3);
  EXPECT_EQ(last.status(), v1::WebhookDelivery::STATUS_FAILED);
  EXPECT_EQ(last.last_http_status(), 500);
  EXPECT_FALSE(last.has_next_attempt_time());
  // No fourth attempt, however long we wait.
  clock_.Advance(absl::Hours(1));
  ASSERT_TRUE(clock_.BlockUntilWaiters(1));
  EXPECT_EQ(Deliveries("dep-f")[0].attempts(), 3);
  EXPECT_EQ(receiver_->requests().size(), 3u);
}

TEST_F(WebhooksOutboxTest, UnreachableReceiverRecordsTheTransportError) {
  // A port nobody listens on.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)),
            0);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  const int port = ntohs(address.sin_port);
  close(fd);

  Webhooks::Options options = DefaultOptions();
  options.retry.max_attempts = 1;
  std::unique_ptr<Webhooks> webhooks = Make(std::move(options));
  ASSERT_NE(webhooks, nullptr);
  ASSERT_THAT(webhooks
                  ->SetTarget("dep-u", absl::StrCat("http://127.0.0.1:", port),
                              "webhook_url")
                  .status(),
              IsOk());
  ASSERT_THAT(webhooks->Start(), IsOk());
  webhooks->OnDeploymentStateChanged(
      Event("dep-u", v1::DEPLOYMENT_STATE_DEPLOYED, 1));
  v1::WebhookDelivery failed = AwaitAttempts("dep-u", 1);
  EXPECT_EQ(failed.status(), v1::WebhookDelivery::STATUS_FAILED);
  EXPECT_EQ(failed.last_http_status(), 0);
  EXPECT_THAT(failed.last_error(), HasSubstr("onnect"));
}

TEST_F(WebhooksOutboxTest, SlowReceiverTimesOut) {
  receiver_->SetDelay(absl::Seconds(20));
  Webhooks::Options options = DefaultOptions();
  options.retry.max_attempts = 1;
  options.connect_timeout = absl::Milliseconds(500);
  options.timeout = absl::Milliseconds(500);
  options.claim_lease = absl::Seconds(5);
  std::unique_ptr<Webhooks> webhooks = Make(std::move(options));
  ASSERT_NE(webhooks, nullptr);
  ASSERT_THAT(
      webhooks->SetTarget("dep-slow", receiver_->url(), "webhook_url").status(),
      IsOk());
  ASSERT_THAT(webhooks->Start(), IsOk());
  const absl::Time start = absl::Now();
  webhooks->OnDeploymentStateChanged(
      Event("dep-slow", v1::DEPLOYMENT_STATE_DEPLOYED, 1));
  v1::WebhookDelivery failed = AwaitAttempts("dep-slow", 1);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(failed.status(), v1::WebhookDelivery::STATUS_FAILED);
  EXPECT_EQ(failed.last_http_status(), 0);
  EXPECT_THAT(failed.last_error(), HasSubstr("timed out"));
  EXPECT_EQ(receiver_->received(), 1);
}

TEST_F(WebhooksOutboxTest, StopAbortsAnAttemptInFlightAndKeepsTheRow) {
  receiver_->SetDelay(absl::Seconds(60));
  Webhooks::Options options = DefaultOptions();
  options.timeout = absl::Seconds(30);
  options.claim_lease = absl::Seconds(45);
  std::unique_ptr<Webhooks> webhooks = Make(std::move(options));
  ASSERT_NE(webhooks, nullptr);
  ASSERT_THAT(
      webhooks->SetTarget("dep-hung", receiver_->url(), "webhook_url").status(),
      IsOk());
  ASSERT_THAT(webhooks->Start(), IsOk());
  webhooks->OnDeploymentStateChanged(
      Event("dep-hung", v1::DEPLOYMENT_STATE_DEPLOYED, 1));
  ASSERT_TRUE(WaitFor([&] { return receiver_->received() == 1; }));
  const absl::Time start = absl::Now();
  webhooks->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  // Not counted as an attempt: the row waits for its lease to lapse.
  const v1::WebhookDelivery row = Deliveries("dep-hung")[0];
  EXPECT_EQ(row.status(), v1::WebhookDelivery::STATUS_PENDING);
  EXPECT_EQ(row.attempts(), 0);
  EXPECT_EQ(FromProtoTimestamp(row.next_attempt_time()),
            clock_.Now() + absl::Seconds(45));
}

// With PostgreSQL stopped the sink returns at once (the reconciler must not
// wait); the reconciler's at-start call records the event afterwards.
TEST_F(WebhooksOutboxTest, DatabaseDownNeverBlocksTheSink) {
  std::unique_ptr<Webhooks> webhooks = Make(DefaultOptions());
  ASSERT_NE(webhooks, nullptr);
  ASSERT_THAT(
      webhooks->SetTarget("dep-db", receiver_->url(), "webhook_url").status(),
      IsOk());
  ASSERT_THAT(server().Stop(), IsOk());
  const absl::Time start = absl::Now();
  webhooks->OnDeploymentStateChanged(
      Event("dep-db", v1::DEPLOYMENT_STATE_DEPLOYED, 1));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  ASSERT_THAT(server().Resume(), IsOk());
  EXPECT_TRUE(WaitFor([&] {
    absl::StatusOr<std::vector<v1::WebhookDelivery>> rows =
        store_->ListDeliveries("dep-db", 0, 10);
    return rows.ok() && rows->empty();
  }));
  // The at-start catch-up reports the state again: recorded and sent.
  ASSERT_THAT(webhooks->Start(), IsOk());
  webhooks->OnDeploymentStateChanged(
      Event("dep-db", v1::DEPLOYMENT_STATE_DEPLOYED, 1));
  ASSERT_TRUE(receiver_->WaitForRequests(1, kWait));
  EXPECT_EQ(AwaitAttempts("dep-db", 1).status(),
            v1::WebhookDelivery::STATUS_DELIVERED);
}

TEST_F(WebhooksOutboxTest, PendingDeliverySurvivesARestart) {
  std::string secret;
  {
    // The first process records two events and dies: one before sending it,
    // one while its attempt was in flight (claimed, never recorded).
    std::unique_ptr<Webhooks> first = Make(DefaultOptions());
    ASSERT_NE(first, nullptr);
    ASSERT_THAT(
        first->SetTarget("dep-l", receiver_->url(), "webhook_url").status(),
        IsOk());
    first->OnDeploymentStateChanged(
        Event("dep-l", v1::DEPLOYMENT_STATE_DEPLOYED, 1));
    ASSERT_OK_AND_ASSIGN(
        std::optional<ClaimedDelivery> claimed,
        store_->ClaimDue(clock_.Now(), clock_.Now() + absl::Seconds(60),
                         "dead-sender"));
    ASSERT_TRUE(claimed.has_value());
    EXPECT_EQ(claimed->deployment, "dep-l");
    ASSERT_OK_AND_ASSIGN(
        secret, first->SetTarget("dep-s", receiver_->url(), "webhook_url"));
    first->OnDeploymentStateChanged(
        Event("dep-s", v1::DEPLOYMENT_STATE_DEPLOYED, 1));
  }
  EXPECT_EQ(receiver_->requests().size(), 0u);

  std::unique_ptr<Webhooks> second = Make(DefaultOptions());
  ASSERT_NE(second, nullptr);
  ASSERT_THAT(second->Start(), IsOk());
  ASSERT_TRUE(receiver_->WaitForRequests(1, kWait));
  const auto request = receiver_->requests()[0];
  EXPECT_EQ(nlohmann::json::parse(request.body)["deployment"], "dep-s");
  EXPECT_TRUE(VerifyWebhookSignature(
      secret, request.headers.at("x-hangar-timestamp"), request.body,
      request.headers.at("x-hangar-signature")));
  EXPECT_EQ(AwaitAttempts("dep-s", 1).status(),
            v1::WebhookDelivery::STATUS_DELIVERED);

  // The claimed row waits out the dead sender's lease, then is sent.
  ASSERT_TRUE(clock_.BlockUntilWaiters(1));
  EXPECT_EQ(Deliveries("dep-l")[0].attempts(), 0);
  EXPECT_EQ(receiver_->requests().size(), 1u);
  clock_.Advance(absl::Seconds(60));
  ASSERT_TRUE(receiver_->WaitForRequests(2, kWait));
  EXPECT_EQ(AwaitAttempts("dep-l", 1).status(),
            v1::WebhookDelivery::STATUS_DELIVERED);
  EXPECT_EQ(receiver_->requests()[1].headers.at("x-hangar-delivery"),
            Deliveries("dep-l")[0].name());
}

// Two service processes (two pools, two notifiers) share the outbox: every
// delivery is sent exactly once.
TEST_F(WebhooksOutboxTest, TwoProcessesClaimEachDeliveryOnce) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<db::Pool> other_pool,
                       db::Pool::Create({.conninfo = conninfo(), .size = 4}));
  PgWebhookStore other_store(other_pool.get());
  Webhooks::Options a = DefaultOptions();
  a.senders = 3;
  Webhooks::Options b = DefaultOptions();
  b.senders = 3;
  b.store = &other_store;
  std::unique_ptr<Webhooks> one = Make(std::move(a));
  std::unique_ptr<Webhooks> two = Make(std::move(b));
  ASSERT_NE(one, nullptr);
  ASSERT_NE(two, nullptr);
  constexpr int kDeployments = 24;
  for (int i = 0; i < kDeployments; ++i) {
    ASSERT_THAT(
        one->SetTarget(absl::StrCat("dep-", i), receiver_->url(), "webhook_url")
            .status(),
        IsOk());
  }
  ASSERT_THAT(one->Start(), IsOk());
  ASSERT_THAT(two->Start(), IsOk());
  for (int i = 0; i < kDeployments; ++i) {
    // Each process hears of every change (as with a reconciler in each).
    (i % 2 == 0 ? one : two)
        ->OnDeploymentStateChanged(
            Event(absl::StrCat("dep-", i), v1::DEPLOYMENT_STATE_DEPLOYED, 1));
    (i % 2 == 0 ? two : one)
        ->OnDeploymentStateChanged(
            Event(absl::StrCat("dep-", i), v1::DEPLOYMENT_STATE_DEPLOYED, 1));
  }
  ASSERT_TRUE(receiver_->WaitForRequests(kDeployments, kWait));
  for (int i = 0; i < kDeployments; ++i) {
    EXPECT_EQ(AwaitAttempts(absl::StrCat("dep-", i), 1).status(),
              v1::WebhookDelivery::STATUS_DELIVERED);
  }
  one->Stop();
  two->Stop();
  std::set<std::string> ids;
  for (const auto& request : receiver_->requests()) {
    ids.insert(request.headers.at("x-hangar-delivery"));
  }
  EXPECT_EQ(receiver_->requests().size(), static_cast<size_t>(kDeployments));
  EXPECT_EQ(ids.size(), static_cast<size_t>(kDeployments));
}

TEST_F(WebhooksOutboxTest, TargetsSecretsAndRemoval) {
  std::unique_ptr<Webhooks> webhooks = Make(DefaultOptions());
  ASSERT_NE(webhooks, nullptr);
  // A create attaches once: its retry gets no second secret.
  ASSERT_OK_AND_ASSIGN(std::string secret,
                       webhooks->AttachOnCreate("dep-t", receiver_->url()));
  EXPECT_EQ(secret.size(), kSecretLength);
  ASSERT_OK_AND_ASSIGN(std::string again,
                       webhooks->AttachOnCreate("dep-t", receiver_->url()));
  EXPECT_EQ(again, "");
  EXPECT_THAT(webhooks->AttachOnCreate("dep-t2", "mailto:x@y"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("webhook_url: must start with")));
  ASSERT_OK_AND_ASSIGN(auto urls, webhooks->Urls({"dep-t", "dep-t2", "x"}));
  EXPECT_EQ(urls.size(), 1u);
  EXPECT_EQ(urls["dep-t"], receiver_->url());

  // A new URL, a new secret.
  ASSERT_OK_AND_ASSIGN(std::string rotated,
                       webhooks->SetTarget("dep-t", receiver_->url("/v2"),
                                           "deployment.webhook_url"));
  EXPECT_NE(rotated, secret);
  // An event recorded, then the webhook removed before it is sent: FAILED,
  // saying why, never sent.
  webhooks->OnDeploymentStateChanged(
      Event("dep-t", v1::DEPLOYMENT_STATE_DEPLOYED, 1));
  ASSERT_OK_AND_ASSIGN(std::string none, webhooks->SetTarget("dep-t", "", "x"));
  EXPECT_EQ(none, "");
  ASSERT_OK_AND_ASSIGN(urls, webhooks->Urls({"dep-t"}));
  EXPECT_TRUE(urls.empty());
  // A retried create does not bring the removed webhook back.
  ASSERT_OK_AND_ASSIGN(again,
                       webhooks->AttachOnCreate("dep-t", receiver_->url()));
  EXPECT_EQ(again, "");
  ASSERT_OK_AND_ASSIGN(urls, webhooks->Urls({"dep-t"}));
  EXPECT_TRUE(urls.empty());
  ASSERT_THAT(webhooks->Start(), IsOk());
  ASSERT_TRUE(WaitFor([&] {
    std::vector<v1::WebhookDelivery> rows = Deliveries("dep-t");
    return !rows.empty() &&
           rows[0].status() == v1::WebhookDelivery::STATUS_FAILED;
  }));
  EXPECT_THAT(Deliveries("dep-t")[0].last_error(), HasSubstr("removed"));
  EXPECT_EQ(receiver_->requests().size(), 0u);
  // Events after the removal are not recorded.
  webhooks->OnDeploymentStateChanged(
      Event("dep-t", v1::DEPLOYMENT_STATE_UNDEPLOYED, 1));
  EXPECT_EQ(Deliveries("dep-t").size(), 1u);
}

TEST_F(WebhooksOutboxTest, ListsNewestFirstInPages) {
  std::unique_ptr<Webhooks> webhooks = Make(DefaultOptions());
  ASSERT_NE(webhooks, nullptr);
  ASSERT_THAT(
      webhooks->SetTarget("dep-p", receiver_->url(), "webhook_url").status(),
      IsOk());
  for (int revision = 1; revision <= 5; ++revision) {
    webhooks->OnDeploymentStateChanged(
        Event("dep-p", v1::DEPLOYMENT_STATE_DEPLOYED, revision));
  }
  std::vector<int64_t> revisions;
  std::string token;
  int pages = 0;
  do {
    ASSERT_OK_AND_ASSIGN(v1::ListWebhookDeliveriesResponse page,
                         webhooks->ListDeliveries("dep-p", 2, token, "f"));
    EXPECT_LE(page.deliveries_size(), 2);
    for (const auto& delivery : page.deliveries()) {
      revisions.push_back(delivery.revision());
      EXPECT_EQ(delivery.status(), v1::WebhookDelivery::STATUS_PENDING);
      EXPECT_EQ(delivery.attempts(), 0);
      EXPECT_EQ(delivery.deployment(), "dep-p");
    }
    token = page.next_page_token();
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(revisions, ::testing::ElementsAre(5, 4, 3, 2, 1));
  ASSERT_OK_AND_ASSIGN(v1::ListWebhookDeliveriesResponse first,
                       webhooks->ListDeliveries("dep-p", 2, "", "f"));
  EXPECT_THAT(
      webhooks->ListDeliveries("dep-p", 2, first.next_page_token(),
                               "other filters"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
  EXPECT_THAT(
      webhooks->ListDeliveries("dep-p", -1, "", "f"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")));
}

}  // namespace
}  // namespace hangar::deployment::webhooks
