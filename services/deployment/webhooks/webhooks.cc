#include "services/deployment/webhooks/webhooks.h"

#include <algorithm>
#include <iostream>
#include <optional>
#include <string>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/api/page_token.h"
#include "common/api/time.h"
#include "common/auth/crypto.h"
#include "nlohmann/json.hpp"
#include "services/deployment/webhooks/signing.h"
#include "services/deployment/webhooks/webhook_url.h"

namespace hangar::deployment::webhooks {
namespace {

absl::Status CheckDuration(const char* name, absl::Duration value,
                           absl::Duration max) {
  if (value <= absl::ZeroDuration() || value > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": must be in (0, ", absl::FormatDuration(max),
                     "]; was ", absl::FormatDuration(value)));
  }
  return absl::OkStatus();
}

std::string DeliveryName(int64_t id) { return absl::StrCat("whd-", id); }

}  // namespace

std::string EventForState(v1::DeploymentState state) {
  switch (state) {
    case v1::DEPLOYMENT_STATE_DEPLOYED:
      return "deployment.deployed";
    case v1::DEPLOYMENT_STATE_FAILED:
      return "deployment.failed";
    case v1::DEPLOYMENT_STATE_UNDEPLOYED:
      return "deployment.undeployed";
    default:
      return "";
  }
}

std::string EventBody(const ClaimedDelivery& delivery) {
  nlohmann::ordered_json body;
  body["id"] = DeliveryName(delivery.id);
  body["event"] = delivery.event;
  body["deployment"] = delivery.deployment;
  body["display_name"] = delivery.display_name;
  body["revision"] = delivery.revision;
  body["state"] = delivery.state;
  body["reason"] = delivery.reason;
  body["time"] = absl::FormatTime(absl::RFC3339_full, delivery.event_time,
                                  absl::UTCTimeZone());
  // Text from users (display names, reasons) is escaped, never trusted.
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

absl::StatusOr<std::unique_ptr<Webhooks>> Webhooks::Create(Options options) {
  if (options.store == nullptr) {
    return absl::InvalidArgumentError("store: required");
  }
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("clock: required");
  }
  absl::Status retry = options.retry.Validate();
  if (!retry.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("retry.", retry.message()));
  }
  if (absl::Status s =
          CheckDuration("timeout", options.timeout, absl::Seconds(60));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckDuration("connect_timeout", options.connect_timeout,
                                     options.timeout);
      !s.ok()) {
    return s;
  }
  if (options.claim_lease <= options.timeout ||
      options.claim_lease > absl::Hours(1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "claim_lease: must be more than timeout (",
        absl::FormatDuration(options.timeout), ") and at most 1h; was ",
        absl::FormatDuration(options.claim_lease)));
  }
  if (options.senders < 1 || options.senders > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("senders: must be in [1, 16]; was ", options.senders));
  }
  if (absl::Status s = CheckDuration("resync_interval", options.resync_interval,
                                     absl::Hours(1));
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckDuration("error_backoff", options.error_backoff, absl::Hours(1));
      !s.ok()) {
    return s;
  }
  std::unique_ptr<Webhooks> webhooks(new Webhooks(std::move(options)));
  if (webhooks->options_.transport == nullptr) {
    webhooks->owned_transport_ =
        std::make_unique<CurlTransport>(webhooks->options_.user_agent);
    webhooks->transport_ = webhooks->owned_transport_.get();
  } else {
    webhooks->transport_ = webhooks->options_.transport;
  }
  absl::StatusOr<std::unique_ptr<TaskGroup>> tasks =
      TaskGroup::Create({.name = "webhooks",
                         .max_threads = webhooks->options_.senders,
                         .max_queued = 0,
                         .clock = webhooks->options_.clock});
  if (!tasks.ok()) return tasks.status();
  webhooks->tasks_ = *std::move(tasks);
  return webhooks;
}

Webhooks::Webhooks(Options options) : options_(std::move(options)) {
  if (options_.random) {
    random_ = options_.random;
  } else {
    random_ = [gen = std::make_shared<absl::BitGen>()] {
      return absl::Uniform(*gen, 0.0, 1.0);
    };
  }
}

Webhooks::~Webhooks() { Stop(); }

absl::Status Webhooks::Start() {
  {
    absl::MutexLock lock(&mu_);
    if (started_ || stopping_) {
      return absl::FailedPreconditionError(
          "webhooks: already started or stopped");
    }
    started_ = true;
  }
  for (int i = 0; i < options_.senders; ++i) {
    // A claim token per loop and process: who holds a delivery in flight.
    absl::StatusOr<std::string> random = auth::RandomBytes(8);
    if (!random.ok()) return random.status();
    std::string claim =
        absl::StrCat("sender-", i, "-", auth::HexEncode(*random));
    absl::Status submitted =
        tasks_->Submit([this, claim](const StopToken&) { SenderLoop(claim); });
    if (!submitted.ok()) return submitted;
  }
  return absl::OkStatus();
}

void Webhooks::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  tasks_->Shutdown();
}

void Webhooks::Wake() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

double Webhooks::Draw() {
  absl::MutexLock lock(&mu_);
  return random_();
}

absl::StatusOr<std::string> Webhooks::SetTarget(const std::string& deployment,
                                                const std::string& url,
                                                const std::string& field) {
  std::string secret;
  if (!url.empty()) {
    if (absl::Status valid = ValidateWebhookUrl(field, url); !valid.ok()) {
      return valid;
    }
    absl::StatusOr<std::string> generated = GenerateWebhookSecret();
    if (!generated.ok()) return generated.status();
    secret = *std::move(generated);
  }
  absl::StatusOr<bool> written =
      options_.store->PutTarget(deployment, url, secret, options_.clock->Now(),
                                /*only_if_new=*/false);
  if (!written.ok()) return written.status();
  return secret;
}

absl::StatusOr<std::string> Webhooks::SetTargetChecked(
    const std::string& deployment, const std::string& etag,
    const std::string& url, const std::string& field) {
  std::string secret;
  if (!url.empty()) {
    if (absl::Status valid = ValidateWebhookUrl(field, url); !valid.ok()) {
      return valid;
    }
    absl::StatusOr<std::string> generated = GenerateWebhookSecret();
    if (!generated.ok()) return generated.status();
    secret = *std::move(generated);
  }
  absl::Status written = options_.store->PutTargetChecked(
      deployment, etag, url, secret, options_.clock->Now());
  if (!written.ok()) return written;
  return secret;
}

absl::StatusOr<std::string> Webhooks::AttachOnCreate(
    const std::string& deployment, const std::string& url) {
  if (absl::Status valid = ValidateWebhookUrl("webhook_url", url);
      !valid.ok()) {
    return valid;
  }
  absl::StatusOr<std::string> secret = GenerateWebhookSecret();
  if (!secret.ok()) return secret.status();
  absl::StatusOr<bool> written = options_.store->PutTarget(
      deployment, url, *secret, options_.clock->Now(), /*only_if_new=*/true);
  if (!written.ok()) return written.status();
  if (!*written) return std::string();
  return secret;
}

absl::StatusOr<std::map<std::string, std::string>> Webhooks::Urls(
    const std::vector<std::string>& deployments) {
  return options_.store->Urls(deployments);
}

void Webhooks::OnDeploymentStateChanged(const v1::Deployment& deployment) {
  const std::string event = EventForState(deployment.state());
  if (event.empty()) return;
  const absl::Time now = options_.clock->Now();
  NewDelivery delivery{
      .deployment = deployment.name(),
      .revision = deployment.latest_revision(),
      .event = event,
      .display_name = deployment.display_name(),
      .state = v1::DeploymentState_Name(deployment.state()),
      .reason = deployment.state_reason(),
      .event_time = deployment.has_update_time()
                        ? FromProtoTimestamp(deployment.update_time())
                        : now,
      .now = now};
  absl::StatusOr<bool> added = options_.store->Enqueue(delivery);
  if (!added.ok()) {
    // The reconciler reports every deployment again at start, so the event
    // is not lost; the loop must not wait on the database.
    std::cerr << "webhooks: could not record " << event << " of "
              << deployment.name() << " (revision "
              << deployment.latest_revision() << "): " << added.status()
              << std::endl;
    return;
  }
  if (*added) Wake();
}

void Webhooks::SenderLoop(const std::string& claim) {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      wake_ = false;
    }
    // Attempt every due delivery, one at a time.
    bool database_ok = true;
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
      }
      const absl::Time now = options_.clock->Now();
      absl::StatusOr<std::optional<ClaimedDelivery>> claimed =
          options_.store->ClaimDue(now, now + options_.claim_lease, claim);
      if (!claimed.ok()) {
        std::cerr << "webhooks: could not claim a delivery: "
                  << claimed.status() << std::endl;
        database_ok = false;
        break;
      }
      if (!claimed->has_value()) break;
      Attempt(**claimed);
    }
    const absl::Time now = options_.clock->Now();
    absl::Time deadline = now + options_.resync_interval;
    if (database_ok) {
      absl::StatusOr<std::optional<absl::Time>> next =
          options_.store->NextDue();
      if (!next.ok()) {
        deadline = now + options_.error_backoff;
      } else if (next->has_value()) {
        deadline = std::min(deadline, **next);
      }
    } else {
      deadline = now + options_.error_backoff;
    }
    absl::MutexLock lock(&mu_);
    options_.clock->AwaitWithDeadline(
        &mu_,
        absl::Condition(
            +[](Webhooks* self) ABSL_NO_THREAD_SAFETY_ANALYSIS {
              return self->wake_ || self->stopping_;
            },
            this),
        deadline);
  }
}

void Webhooks::Attempt(const ClaimedDelivery& delivery) {
  const std::string body = EventBody(delivery);
  const int64_t timestamp = absl::ToUnixSeconds(options_.clock->Now());
  HttpPost post{
      .url = delivery.url,
      .headers = {"Content-Type: application/json",
                  absl::StrCat(kDeliveryHeader, ": ",
                               DeliveryName(delivery.id)),
                  absl::StrCat(kEventHeader, ": ", delivery.event),
                  absl::StrCat(kTimestampHeader, ": ", timestamp),
                  absl::StrCat(kSignatureHeader, ": ",
                               SignWebhook(delivery.secret, timestamp, body))},
      .body = body,
      .connect_timeout = options_.connect_timeout,
      .timeout = options_.timeout,
      .cancelled = [this] {
        absl::MutexLock lock(&mu_);
        return stopping_;
      }};
  const HttpOutcome outcome = transport_->Post(post);
  const absl::Time done = options_.clock->Now();
  const int attempts = delivery.attempts + 1;
  AttemptRecord record{.id = delivery.id,
                       .claim = delivery.claim,
                       .url = delivery.url,
                       .http_status = outcome.http_status,
                       .error = outcome.error,
                       .attempt_time = done};
  const bool delivered = outcome.error.empty() && outcome.http_status >= 200 &&
                         outcome.http_status < 300;
  if (outcome.error == "cancelled") {
    // Stopping: leave the row claimed; the lease brings it back.
    return;
  }
  if (delivered) {
    record.status = v1::WebhookDelivery::STATUS_DELIVERED;
  } else {
    if (record.error.empty()) {
      record.error =
          absl::StrCat("the receiver answered HTTP ", outcome.http_status);
    }
    if (options_.retry.MayRetry(attempts)) {
      record.status = v1::WebhookDelivery::STATUS_PENDING;
      record.next_attempt = done + options_.retry.Delay(attempts, Draw());
    } else {
      record.status = v1::WebhookDelivery::STATUS_FAILED;
    }
  }
  absl::StatusOr<bool> recorded = options_.store->RecordAttempt(record);
  if (!recorded.ok()) {
    std::cerr << "webhooks: could not record attempt " << attempts << " of "
              << DeliveryName(delivery.id) << ": " << recorded.status()
              << std::endl;
  }
}

absl::StatusOr<v1::ListWebhookDeliveriesResponse> Webhooks::ListDeliveries(
    const std::string& deployment, int page_size, const std::string& page_token,
    const std::string& filters) {
  absl::StatusOr<int> limit = ResolvePageSize(page_size);
  if (!limit.ok()) return limit.status();
  absl::StatusOr<std::string> after = DecodePageToken(page_token, filters);
  if (!after.ok()) return after.status();
  int64_t before_id = 0;
  if (!after->empty() &&
      (!absl::SimpleAtoi(*after, &before_id) || before_id <= 0)) {
    return absl::InvalidArgumentError("page_token: malformed");
  }
  absl::StatusOr<std::vector<v1::WebhookDelivery>> rows =
      options_.store->ListDeliveries(deployment, before_id, *limit + 1);
  if (!rows.ok()) return rows.status();
  v1::ListWebhookDeliveriesResponse response;
  const bool more = static_cast<int>(rows->size()) > *limit;
  if (more) rows->resize(*limit);
  if (more && !rows->empty()) {
    response.set_next_page_token(
        EncodePageToken(rows->back().name().substr(4), filters));
  }
  for (v1::WebhookDelivery& row : *rows) {
    *response.add_deliveries() = std::move(row);
  }
  return response;
}

}  // namespace hangar::deployment::webhooks
