// Webhooks: the deployment service's notifications. A deployment may name a
// URL; when it becomes DEPLOYED, FAILED or UNDEPLOYED the service POSTs a
// signed JSON event there, retried with backoff, and lists the deliveries
// with their last outcome.
//
// The pieces:
//  - Targets. SetTarget / AttachOnCreate keep one URL and one secret
//    ("whsec_...", signing.h) per deployment in the store; a new URL gets a
//    new secret, returned once to the caller and never again.
//  - The outbox. Webhooks is the reconciler's DeploymentEventSink: for each
//    committed DEPLOYED / FAILED / UNDEPLOYED state of a deployment with a
//    target, OnDeploymentStateChanged inserts one delivery row keyed by
//    (deployment, revision, event) with ON CONFLICT DO NOTHING (the
//    reconciler reports at least once, and once more for every deployment at
//    start), then wakes a sender. It never blocks on the network; should the
//    database be down, it logs and returns: the at-start call brings the
//    event back.
//  - The senders (`senders` loops on a TaskGroup, started by Start()). Each
//    claims the delivery due soonest (FOR UPDATE SKIP LOCKED, so several
//    service processes share the outbox), POSTs
//      {"id", "event", "deployment", "display_name", "revision", "state",
//       "reason", "time"}
//    with X-Hangar-Delivery (the id, for receivers to deduplicate),
//    X-Hangar-Event, X-Hangar-Timestamp and X-Hangar-Signature, and records
//    the attempt: DELIVERED on 2xx; otherwise PENDING again after the
//    RetryPolicy's delay, or FAILED after max_attempts. Between rounds a
//    sender sleeps on the injected clock until the soonest due attempt (or
//    `resync_interval`, which catches rows other processes added), and is
//    woken at once by a new delivery or Stop(). No busy poll.
//  - ListDeliveries: a deployment's deliveries, newest first, with the kit's
//    page tokens.
//
// A delivery is at least once: a sender that dies after the POST and before
// recording it leaves the row claimed until `claim_lease` passes; then it is
// sent again (same X-Hangar-Delivery id).
//
//   ASSIGN_OR_RETURN(auto webhooks, Webhooks::Create({.store = &store}));
//   RETURN_IF_ERROR(webhooks->Start());
//   reconciler_options.events = webhooks.get();
//   ...
//   webhooks->Stop();   // also run by the destructor
//
// Thread-safe.
#ifndef HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_WEBHOOKS_H_
#define HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_WEBHOOKS_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/concurrency/task_group.h"
#include "common/time/clock.h"
#include "hangar/v1/deployment.pb.h"
#include "services/deployment/deployment_events.h"
#include "services/deployment/webhooks/http_transport.h"
#include "services/deployment/webhooks/retry_policy.h"
#include "services/deployment/webhooks/webhook_store.h"

namespace hangar::deployment::webhooks {

// The event a state is worth, or "" for none.
std::string EventForState(v1::DeploymentState state);

// The JSON body of a delivery (keys in the order documented above).
std::string EventBody(const ClaimedDelivery& delivery);

class Webhooks final : public DeploymentEventSink {
 public:
  struct Options {
    // When failed attempts are retried, and how often in all.
    RetryPolicy retry;
    // Longest wait to connect, and for a whole attempt; (0, 60s], connect
    // at most timeout.
    absl::Duration connect_timeout = absl::Seconds(2);
    absl::Duration timeout = absl::Seconds(5);
    // How long a sender holds a delivery it attempts before another may
    // take it (a sender that died); more than `timeout`, at most an hour.
    absl::Duration claim_lease = absl::Seconds(60);
    // Sender loops, in [1, 16]: deliveries attempted at once.
    int senders = 2;
    // Longest sleep of an idle sender, so deliveries other processes add
    // (or whose claim lapsed) are seen; in (0, 1h].
    absl::Duration resync_interval = absl::Seconds(30);
    // After a database error, the wait before the next round; positive.
    absl::Duration error_backoff = absl::Seconds(2);
    // Sent as User-Agent.
    std::string user_agent = "hangar-webhooks/1";

    // --- Injected (not owned; must outlive this) ---
    WebhookStore* store = nullptr;  // Required.
    // Null: a CurlTransport owned by this object.
    WebhookTransport* transport = nullptr;
    Clock* clock = Clock::Real();
    // Draws the jitter's u in [0, 1); null: a random generator.
    std::function<double()> random;
  };

  static absl::StatusOr<std::unique_ptr<Webhooks>> Create(Options options);

  ~Webhooks() override;  // Stop()
  Webhooks(const Webhooks&) = delete;
  Webhooks& operator=(const Webhooks&) = delete;

  // Starts the senders. FAILED_PRECONDITION when already started or stopped.
  absl::Status Start();
  // Stops the senders and waits for them (an attempt in flight is aborted).
  // Idempotent. OnDeploymentStateChanged still records after Stop().
  void Stop();

  // --- Targets ---
  // Sets `deployment`'s webhook to `url` (validated: INVALID_ARGUMENT
  // "<field>: ...") with a new secret, which it returns; an empty `url`
  // removes the webhook and returns "". Unconditional (the caller checked
  // the deployment).
  absl::StatusOr<std::string> SetTarget(const std::string& deployment,
                                        const std::string& url,
                                        const std::string& field);
  // SetTarget for a change of the webhook alone: checks `etag` (when not
  // empty; ABORTED when stale) and that the deployment is not DELETED, and
  // moves its etag, in the same transaction.
  absl::StatusOr<std::string> SetTargetChecked(const std::string& deployment,
                                               const std::string& etag,
                                               const std::string& url,
                                               const std::string& field);
  // For CreateDeployment: sets the target only if the deployment never had
  // one, returning the new secret, or "" when it had (a retried create: the
  // secret is not minted twice).
  absl::StatusOr<std::string> AttachOnCreate(const std::string& deployment,
                                             const std::string& url);
  // The webhook URL of each named deployment that has one.
  absl::StatusOr<std::map<std::string, std::string>> Urls(
      const std::vector<std::string>& deployments);

  // --- Outbox ---
  void OnDeploymentStateChanged(const v1::Deployment& deployment) override;

  // `deployment` is an id ("dep-..."). `filters` is the request's
  // FilterFingerprint, binding page tokens.
  absl::StatusOr<v1::ListWebhookDeliveriesResponse> ListDeliveries(
      const std::string& deployment, int page_size,
      const std::string& page_token, const std::string& filters);

  // ---------------------------------------------------------------------
  // Implementation details.
 private:
  explicit Webhooks(Options options);

  void SenderLoop(const std::string& claim);
  // Attempts one claimed delivery and records the outcome.
  void Attempt(const ClaimedDelivery& delivery);
  void Wake();
  double Draw();

  const Options options_;
  std::unique_ptr<WebhookTransport> owned_transport_;
  WebhookTransport* transport_ = nullptr;
  std::unique_ptr<TaskGroup> tasks_;

  mutable absl::Mutex mu_;  // Protects the fields below.
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // A delivery was added since a sender last looked.
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  std::function<double()> random_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hangar::deployment::webhooks

#endif  // HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_WEBHOOKS_H_
