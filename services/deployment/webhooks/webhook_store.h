// The webhook tables behind a small interface: the targets (URL + secret per
// deployment) and the outbox of deliveries. PgWebhookStore
// (pg_webhook_store.h) is the implementation; it shares the deployment
// schema and its migrations (0010_webhooks.sql).
#ifndef HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_WEBHOOK_STORE_H_
#define HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_WEBHOOK_STORE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hangar/v1/deployment.pb.h"

namespace hangar::deployment::webhooks {

// A state change worth an event, as the outbox keeps it.
struct NewDelivery {
  std::string deployment;  // "dep-..."
  int64_t revision = 0;
  std::string event;  // "deployment.deployed", ...
  std::string display_name;
  std::string state;  // "DEPLOYMENT_STATE_DEPLOYED", ...
  std::string reason;
  absl::Time event_time;  // When the change happened (update_time).
  absl::Time now;         // When it enters the outbox (first attempt due).
};

// A delivery a sender holds for one attempt, with its target.
struct ClaimedDelivery {
  int64_t id = 0;
  std::string deployment;
  int64_t revision = 0;
  std::string event;
  std::string display_name;
  std::string state;
  std::string reason;
  absl::Time event_time;
  int attempts = 0;    // Attempts made before this one.
  std::string url;     // The target's current URL and secret.
  std::string secret;  // Never logged.
  std::string claim;   // Who holds it.
};

// What one attempt came to.
struct AttemptRecord {
  int64_t id = 0;
  std::string claim;  // Must still hold the delivery, or nothing is written.
  std::string url;
  v1::WebhookDelivery::Status status = v1::WebhookDelivery::STATUS_PENDING;
  int http_status = 0;
  std::string error;
  absl::Time attempt_time;
  // PENDING only: when the next attempt is due.
  std::optional<absl::Time> next_attempt;
};

class WebhookStore {
 public:
  virtual ~WebhookStore() = default;

  // Sets the deployment's target (`url` not empty) or removes it (`url`
  // empty, `secret` ignored). With `only_if_new`, writes only when the
  // deployment never had a target row (a retried create). Returns whether
  // it wrote.
  virtual absl::StatusOr<bool> PutTarget(const std::string& deployment,
                                         const std::string& url,
                                         const std::string& secret,
                                         absl::Time now, bool only_if_new) = 0;

  // PutTarget for an update that changes nothing else: in one transaction
  // checks `etag` (when not empty) against the deployment's current one
  // (ABORTED), refuses a DELETED deployment (FAILED_PRECONDITION), bumps
  // the deployment's version (its etag moves) and writes the target.
  // NOT_FOUND for an unknown deployment id.
  virtual absl::Status PutTargetChecked(const std::string& deployment,
                                        const std::string& etag,
                                        const std::string& url,
                                        const std::string& secret,
                                        absl::Time now) = 0;

  // The URL of every named deployment that has one.
  virtual absl::StatusOr<std::map<std::string, std::string>> Urls(
      const std::vector<std::string>& deployments) = 0;

  // Adds the delivery when the deployment has a target and no delivery of
  // the same (deployment, revision, event) exists; returns whether it did.
  virtual absl::StatusOr<bool> Enqueue(const NewDelivery& delivery) = 0;

  // Takes the PENDING delivery due soonest (next attempt <= now) that no
  // other sender holds (FOR UPDATE SKIP LOCKED), marks it held by `claim`
  // until `lease_until` (then another sender may take it, should this one
  // have died), and returns it. Deliveries whose target was removed meanwhile
  // become FAILED on the way. nullopt: none is due.
  virtual absl::StatusOr<std::optional<ClaimedDelivery>> ClaimDue(
      absl::Time now, absl::Time lease_until, const std::string& claim) = 0;

  // Records an attempt (attempts + 1) if `record.claim` still holds the
  // delivery; returns whether it did.
  virtual absl::StatusOr<bool> RecordAttempt(const AttemptRecord& record) = 0;

  // When the soonest PENDING delivery is due; nullopt when none is pending.
  virtual absl::StatusOr<std::optional<absl::Time>> NextDue() = 0;

  // A deployment's deliveries, newest first, with ids below `before_id`
  // (0: from the newest), at most `limit`.
  virtual absl::StatusOr<std::vector<v1::WebhookDelivery>> ListDeliveries(
      const std::string& deployment, int64_t before_id, int limit) = 0;
};

}  // namespace hangar::deployment::webhooks

#endif  // HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_WEBHOOK_STORE_H_
