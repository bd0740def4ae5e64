// DeploymentWebhooks: the deployment RPCs that carry webhook fields, as the
// adapter calls them. It fronts the Deployments domain (which knows nothing
// of webhooks) and Webhooks (targets, outbox):
//
//  - Create: a webhook_url is checked before anything is written
//    (INVALID_ARGUMENT "webhook_url: ..."), the deployment is created (the
//    request id makes it idempotent, the URL is part of the request), then
//    the target is attached: the first call returns webhook_secret; a retry
//    returns it empty (the target row exists, no second secret is minted).
//    Should the target write fail after the deployment was made, the call
//    fails and its retry attaches it. The deployment's state is then told
//    to the outbox once more, since the reconciler may have reached DEPLOYED
//    or FAILED before the target existed.
//  - Get / List / Redeploy / Delete: webhook_url filled from the targets
//    (never the secret).
//  - Update: mask path "webhook_url" sets the URL (new secret, returned
//    once) or, when empty, removes the webhook. With no other path, the etag
//    check, the DELETED check, the etag move and the target write are one
//    transaction; with other paths, Deployments::Update runs first (its
//    checks), then the target is written.
//  - Undeploy: Deployments::Undeploy, then the UNDEPLOYED state told to
//    the outbox (the domain, not the reconciler, commits it).
//  - ListDeliveries: the deployment (id or display name) resolved, then
//    Webhooks::ListDeliveries.
//
// No gRPC types; statuses are absl.
#ifndef HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_DEPLOYMENT_WEBHOOKS_H_
#define HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_DEPLOYMENT_WEBHOOKS_H_

#include <memory>

#include "absl/status/statusor.h"
#include "common/watch/change_notifier.h"
#include "hangar/v1/deployment.pb.h"
#include "services/deployment/deployments.h"
#include "services/deployment/webhooks/webhooks.h"

namespace hangar::deployment::webhooks {

// The update_mask path of the webhook URL.
inline constexpr char kWebhookUrlPath[] = "webhook_url";

class DeploymentWebhooks {
 public:
  struct Options {
    // --- Injected (not owned; must outlive this); all required ---
    Deployments* deployments = nullptr;
    Webhooks* webhooks = nullptr;
    // Told about a deployment whose etag a webhook-only update moved.
    ChangeNotifier* notifier = nullptr;

    // Whether `deployments`' store already sets webhook_url on Get (the
    // PostgreSQL store joins webhook_targets into its one statement), so
    // Get needs no second lookup. Its webhook targets must be those of
    // `webhooks`.
    bool store_fills_urls_on_get = false;
  };

  static absl::StatusOr<std::unique_ptr<DeploymentWebhooks>> Create(
      Options options);

  absl::StatusOr<v1::Deployment> CreateDeployment(
      const v1::CreateDeploymentRequest& request);
  absl::StatusOr<v1::Deployment> Get(const std::string& name);
  absl::StatusOr<v1::ListDeploymentsResponse> List(
      const v1::ListDeploymentsRequest& request);
  absl::StatusOr<v1::Deployment> Update(
      const v1::UpdateDeploymentRequest& request);
  // Deployments::Undeploy commits UNDEPLOYED itself (the reconciler only
  // releases the replicas afterwards), so the event is told here.
  absl::StatusOr<v1::Deployment> Undeploy(
      const v1::UndeployDeploymentRequest& request);
  // Deployments::Redeploy / Delete with webhook_url filled.
  absl::StatusOr<v1::Deployment> Redeploy(const v1::RedeployRequest& request);
  absl::StatusOr<v1::Deployment> Delete(
      const v1::DeleteDeploymentRequest& request);
  absl::StatusOr<v1::ListWebhookDeliveriesResponse> ListDeliveries(
      const v1::ListWebhookDeliveriesRequest& request);

 private:
  explicit DeploymentWebhooks(Options options) : options_(options) {}

  // Sets `deployment.webhook_url` from the targets.
  absl::Status FillUrl(v1::Deployment& deployment);

  const Options options_;
};

}  // namespace hangar::deployment::webhooks

#endif  // HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_DEPLOYMENT_WEBHOOKS_H_
