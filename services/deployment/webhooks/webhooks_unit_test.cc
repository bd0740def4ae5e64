// Unit tests of the webhook pieces that need no database: signatures (RFC
// 4231 vectors), secrets, URL rules, the retry schedule on the fake clock,
// event mapping and body, and the options' validation.
#include <set>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "common/auth/crypto.h"
#include "common/testing/fake_clock.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "services/deployment/webhooks/retry_policy.h"
#include "services/deployment/webhooks/signing.h"
#include "services/deployment/webhooks/webhook_url.h"
#include "services/deployment/webhooks/webhooks.h"

namespace hangar::deployment::webhooks {
namespace {

using ::hangar::testing::FakeClock;
using ::hangar::testing::IsOk;
using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;

// RFC 4231, test cases 1 and 2 (HMAC-SHA-256).
TEST(HmacSha256Test, Rfc4231Vectors) {
  EXPECT_EQ(auth::HexEncode(HmacSha256(std::string(20, '\x0b'), "Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(auth::HexEncode(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

// RFC 4231, test case 6: a key longer than the block size is hashed first.
TEST(HmacSha256Test, Rfc4231LongKey) {
  EXPECT_EQ(auth::HexEncode(HmacSha256(
                std::string(131, '\xaa'),
                "Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(SigningTest, SignsTimestampDotBody) {
  const std::string body = R"({"event":"deployment.deployed"})";
  const std::string signature = SignWebhook("whsec_test", 1700000000, body);
  EXPECT_EQ(signature, "sha256=" + auth::HexEncode(HmacSha256(
                                       "whsec_test", "1700000000." + body)));
  EXPECT_TRUE(
      VerifyWebhookSignature("whsec_test", "1700000000", body, signature));
  // Another secret, timestamp or body, or a mangled header: refused.
  EXPECT_FALSE(
      VerifyWebhookSignature("whsec_other", "1700000000", body, signature));
  EXPECT_FALSE(
      VerifyWebhookSignature("whsec_test", "1700000001", body, signature));
  EXPECT_FALSE(VerifyWebhookSignature("whsec_test", "1700000000", body + " ",
                                      signature));
  EXPECT_FALSE(VerifyWebhookSignature("whsec_test", "1700000000", body,
                                      signature.substr(7)));
}

TEST(SigningTest, SecretsHaveTheShapeAndDiffer) {
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) {
    absl::StatusOr<std::string> secret = GenerateWebhookSecret();
    ASSERT_THAT(secret.status(), IsOk());
    EXPECT_EQ(secret->size(), kSecretLength);
    EXPECT_TRUE(absl::StartsWith(*secret, "whsec_"));
    for (char c : secret->substr(6)) {
      EXPECT_TRUE(absl::ascii_isalnum(c)) << *secret;
    }
    seen.insert(*secret);
  }
  EXPECT_EQ(seen.size(), 50u);
}

TEST(WebhookUrlTest, Accepted) {
  for (const char* url :
       {"http://example.com", "https://example.com/hooks/hangar?x=1#f",
        "HTTPS://Example.COM:8443/a", "http://127.0.0.1:9/x",
        "http://[::1]:8080/hook", "http://[2001:db8::1]/",
        "https://hooks.internal_zone.example/a/b"}) {
    EXPECT_THAT(ValidateWebhookUrl("webhook_url", url), IsOk()) << url;
  }
  EXPECT_THAT(
      ValidateWebhookUrl(
          "webhook_url",
          "https://e.com/" + std::string(kMaxWebhookUrlChars - 14, 'a')),
      IsOk());
}

TEST(WebhookUrlTest, Refused) {
  struct Case {
    std::string url;
    std::string rule;
  };
  const Case cases[] = {
      {"", "must start with http:// or https://"},
      {"ftp://example.com/", "must start with http:// or https://"},
      {"example.com/hook", "must start with http:// or https://"},
      {"file:///etc/passwd", "must start with http:// or https://"},
      {"http://", "must name a host"},
      {"https:///path", "must name a host"},
      {"http://:80/", "must name a host"},
      {"http://user:pw@example.com/", "must not carry a user or password"},
      {"http://exa mple.com/", "must not contain spaces"},
      {"http://example.com/\n", "must not contain spaces"},
      {"http://example.com:0/", "port in [1, 65535]"},
      {"http://example.com:65536/", "port in [1, 65535]"},
      {"http://example.com:+80/", "port in [1, 65535]"},
      {"http://example.com:/", "must have a port after ':'"},
      {"http://exa$mple.com/", "must name a host of letters"},
      {"http://[zz::1]/", "valid IPv6"},
      {"https://e.com/" + std::string(kMaxWebhookUrlChars, 'a'),
       "at most 2048 characters"},
  };
  for (const Case& c : cases) {
    absl::Status status = ValidateWebhookUrl("webhook_url", c.url);
    EXPECT_THAT(status,
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.rule)))
        << c.url;
    EXPECT_TRUE(absl::StartsWith(status.message(), "webhook_url: ")) << status;
  }
  // A long value is cut in the message.
  absl::Status status =
      ValidateWebhookUrl("webhook_url", "ftp://" + std::string(5000, 'a'));
  EXPECT_LT(status.message().size(), 300u);
}

TEST(RetryPolicyTest, DefaultsDoubleFromOneSecondAndCap) {
  RetryPolicy policy;
  ASSERT_THAT(policy.Validate(), IsOk());
  EXPECT_EQ(policy.max_attempts, 8);
  // Without jitter (u = 0): 1, 2, 4, ... seconds.
  EXPECT_EQ(policy.Delay(1, 0.0), absl::Seconds(1));
  EXPECT_EQ(policy.Delay(2, 0.0), absl::Seconds(2));
  EXPECT_EQ(policy.Delay(3, 0.0), absl::Seconds(4));
  EXPECT_EQ(policy.Delay(7, 0.0), absl::Seconds(64));
  // Capped at max_backoff, also for absurd attempt counts.
  EXPECT_EQ(policy.Delay(30, 0.0), absl::Minutes(10));
  EXPECT_EQ(policy.Delay(1000, 0.0), absl::Minutes(10));
  // Jitter takes up to 20% off, never adds.
  EXPECT_EQ(policy.Delay(2, 0.5), absl::Seconds(1.8));
  EXPECT_GT(policy.Delay(2, 0.999999), absl::Seconds(1.6));
  EXPECT_EQ(policy.Delay(2, 7.0), absl::Seconds(1.6));  // Clamped.
  EXPECT_EQ(policy.Delay(2, -1.0), absl::Seconds(2));   // Clamped.
  EXPECT_TRUE(policy.MayRetry(7));
  EXPECT_FALSE(policy.MayRetry(8));
}

// The schedule of attempt times a failing delivery follows, read off a fake
// clock that jumps to each due time.
TEST(RetryPolicyTest, ScheduleOnTheFakeClock) {
  FakeClock clock(absl::FromUnixSeconds(1'700'000'000));
  const absl::Time start = clock.Now();
  RetryPolicy policy{.max_attempts = 5,
                     .initial_backoff = absl::Seconds(1),
                     .max_backoff = absl::Seconds(5),
                     .jitter = 0.0};
  ASSERT_THAT(policy.Validate(), IsOk());
  std::vector<absl::Duration> offsets;
  int attempts = 0;
  for (;;) {
    ++attempts;  // An attempt at clock.Now(); it fails.
    offsets.push_back(clock.Now() - start);
    if (!policy.MayRetry(attempts)) break;
    clock.SetTime(clock.Now() + policy.Delay(attempts, 0.0));
  }
  EXPECT_THAT(offsets, ::testing::ElementsAre(
                           absl::Seconds(0), absl::Seconds(1), absl::Seconds(3),
                           absl::Seconds(7), absl::Seconds(12)));
}

TEST(RetryPolicyTest, Validation) {
  EXPECT_THAT((RetryPolicy{.max_attempts = 0}).Validate(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("max_attempts: must be in [1, 100]")));
  EXPECT_THAT(
      (RetryPolicy{.max_attempts = 101}).Validate(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("was 101")));
  EXPECT_THAT((RetryPolicy{.initial_backoff = absl::ZeroDuration()}).Validate(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("initial_backoff")));
  EXPECT_THAT((RetryPolicy{.initial_backoff = absl::Hours(1)}).Validate(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("initial_backoff")));
  EXPECT_THAT(
      (RetryPolicy{.max_backoff = absl::Hours(25)}).Validate(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_backoff")));
  EXPECT_THAT(
      (RetryPolicy{.jitter = 1.0}).Validate(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("jitter")));
  EXPECT_THAT(
      (RetryPolicy{.jitter = std::nan("")}).Validate(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("jitter")));
}

TEST(EventsTest, OnlyDeployedFailedAndUndeployedAreEvents) {
  EXPECT_EQ(EventForState(v1::DEPLOYMENT_STATE_DEPLOYED),
            "deployment.deployed");
  EXPECT_EQ(EventForState(v1::DEPLOYMENT_STATE_FAILED), "deployment.failed");
  EXPECT_EQ(EventForState(v1::DEPLOYMENT_STATE_UNDEPLOYED),
            "deployment.undeployed");
  for (v1::DeploymentState state :
       {v1::DEPLOYMENT_STATE_PENDING, v1::DEPLOYMENT_STATE_OPTIMIZING,
        v1::DEPLOYMENT_STATE_DEPLOYING, v1::DEPLOYMENT_STATE_DELETED}) {
    EXPECT_EQ(EventForState(state), "") << state;
  }
}

TEST(EventsTest, BodyCarriesEveryFieldEscaped) {
  ClaimedDelivery delivery;
  delivery.id = 42;
  delivery.deployment = "dep-abc";
  delivery.revision = 3;
  delivery.event = "deployment.failed";
  delivery.display_name = "chat";
  delivery.state = "DEPLOYMENT_STATE_FAILED";
  delivery.reason = "optimizer: \"out of memory\"\n'; DROP TABLE";
  delivery.event_time = absl::FromUnixSeconds(1'700'000'000);
  const std::string body = EventBody(delivery);
  nlohmann::json parsed = nlohmann::json::parse(body);
  EXPECT_EQ(parsed["id"], "whd-42");
  EXPECT_EQ(parsed["event"], "deployment.failed");
  EXPECT_EQ(parsed["deployment"], "dep-abc");
  EXPECT_EQ(parsed["display_name"], "chat");
  EXPECT_EQ(parsed["revision"], 3);
  EXPECT_EQ(parsed["state"], "DEPLOYMENT_STATE_FAILED");
  EXPECT_EQ(parsed["reason"], delivery.reason);
  EXPECT_EQ(parsed["time"], "2023-11-14T22:13:20+00:00");
  EXPECT_TRUE(absl::StartsWith(body, R"({"id":"whd-42","event":)")) << body;
}

// A store that is never reached: Create() must refuse bad options first.
class UnreachableStore final : public WebhookStore {
 public:
  absl::StatusOr<bool> PutTarget(const std::string&, const std::string&,
                                 const std::string&, absl::Time,
                                 bool) override {
    return absl::UnavailableError("down");
  }
  absl::Status PutTargetChecked(const std::string&, const std::string&,
                                const std::string&, const std::string&,
                                absl::Time) override {
    return absl::UnavailableError("down");
  }
  absl::StatusOr<std::map<std::string, std::string>> Urls(
      const std::vector<std::string>&) override {
    return absl::UnavailableError("down");
  }
  absl::StatusOr<bool> Enqueue(const NewDelivery&) override {
    ++enqueues;
    return absl::UnavailableError("down");
  }
  absl::StatusOr<std::optional<ClaimedDelivery>> ClaimDue(
      absl::Time, absl::Time, const std::string&) override {
    return absl::UnavailableError("down");
  }
  absl::StatusOr<bool> RecordAttempt(const AttemptRecord&) override {
    return absl::UnavailableError("down");
  }
  absl::StatusOr<std::optional<absl::Time>> NextDue() override {
    return absl::UnavailableError("down");
  }
  absl::StatusOr<std::vector<v1::WebhookDelivery>> ListDeliveries(
      const std::string&, int64_t, int) override {
    return absl::UnavailableError("down");
  }
  int enqueues = 0;
};

TEST(WebhooksOptionsTest, CreateValidatesEveryOption) {
  UnreachableStore store;
  FakeClock clock;
  auto create = [&](auto edit) {
    Webhooks::Options options{.store = &store, .clock = &clock};
    edit(options);
    return Webhooks::Create(std::move(options)).status();
  };
  EXPECT_THAT(create([](Webhooks::Options&) {}), IsOk());
  EXPECT_THAT(create([](Webhooks::Options& o) { o.store = nullptr; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("store")));
  EXPECT_THAT(create([](Webhooks::Options& o) { o.clock = nullptr; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("clock")));
  EXPECT_THAT(create([](Webhooks::Options& o) { o.retry.max_attempts = 0; }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("retry.max_attempts")));
  EXPECT_THAT(
      create([](Webhooks::Options& o) { o.timeout = absl::ZeroDuration(); }),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("timeout")));
  EXPECT_THAT(
      create([](Webhooks::Options& o) { o.timeout = absl::Minutes(2); }),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("timeout")));
  EXPECT_THAT(create([](Webhooks::Options& o) {
                o.connect_timeout = absl::Seconds(10);
              }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("connect_timeout")));
  EXPECT_THAT(
      create([](Webhooks::Options& o) { o.claim_lease = absl::Seconds(5); }),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("claim_lease")));
  EXPECT_THAT(create([](Webhooks::Options& o) { o.senders = 0; }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("senders: must be in [1, 16]; was 0")));
  EXPECT_THAT(create([](Webhooks::Options& o) {
                o.resync_interval = absl::ZeroDuration();
              }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("resync_interval")));
  EXPECT_THAT(
      create(
          [](Webhooks::Options& o) { o.error_backoff = absl::ZeroDuration(); }),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("error_backoff")));
}

// With the database down the sink logs and returns at once (the reconciler
// must not wait), and states that are not events never reach the store.
TEST(WebhooksSinkTest, NeverBlocksAndIgnoresOtherStates) {
  UnreachableStore store;
  FakeClock clock;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Webhooks> webhooks,
                       Webhooks::Create({.store = &store, .clock = &clock}));
  v1::Deployment deployment;
  deployment.set_name("dep-x");
  deployment.set_latest_revision(1);
  deployment.set_state(v1::DEPLOYMENT_STATE_OPTIMIZING);
  webhooks->OnDeploymentStateChanged(deployment);
  EXPECT_EQ(store.enqueues, 0);
  deployment.set_state(v1::DEPLOYMENT_STATE_DEPLOYED);
  webhooks->OnDeploymentStateChanged(deployment);
  EXPECT_EQ(store.enqueues, 1);
  // Setting a target with a bad URL fails before the store is asked.
  EXPECT_THAT(webhooks->SetTarget("dep-x", "gopher://x", "webhook_url"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("webhook_url: must start with")));
}

}  // namespace
}  // namespace hangar::deployment::webhooks
