#include "services/deployment/webhooks/deployment_webhooks.h"

#include <string>
#include <utility>
#include <vector>

#include "common/api/page_token.h"
#include "common/status/status_util.h"
#include "services/deployment/webhooks/webhook_url.h"

namespace hangar::deployment::webhooks {

absl::StatusOr<std::unique_ptr<DeploymentWebhooks>> DeploymentWebhooks::Create(
    Options options) {
  if (options.deployments == nullptr) {
    return absl::InvalidArgumentError("deployments: required");
  }
  if (options.webhooks == nullptr) {
    return absl::InvalidArgumentError("webhooks: required");
  }
  if (options.notifier == nullptr) {
    return absl::InvalidArgumentError("notifier: required");
  }
  return std::unique_ptr<DeploymentWebhooks>(new DeploymentWebhooks(options));
}

absl::Status DeploymentWebhooks::FillUrl(v1::Deployment& deployment) {
  absl::StatusOr<std::map<std::string, std::string>> urls =
      options_.webhooks->Urls({deployment.name()});
  if (!urls.ok()) return urls.status();
  auto found = urls->find(deployment.name());
  if (found != urls->end()) deployment.set_webhook_url(found->second);
  return absl::OkStatus();
}

absl::StatusOr<v1::Deployment> DeploymentWebhooks::CreateDeployment(
    const v1::CreateDeploymentRequest& request) {
  const std::string& url = request.webhook_url();
  if (!url.empty()) {
    if (absl::Status valid = ValidateWebhookUrl("webhook_url", url);
        !valid.ok()) {
      return valid;
    }
  }
  absl::StatusOr<v1::Deployment> created =
      options_.deployments->CreateDeployment(request);
  if (!created.ok() || url.empty()) {
    if (created.ok()) {
      if (absl::Status filled = FillUrl(*created); !filled.ok()) return filled;
    }
    return created;
  }
  absl::StatusOr<std::string> secret =
      options_.webhooks->AttachOnCreate(created->name(), url);
  if (!secret.ok()) {
    return PrefixStatus(
        "webhook_url: the deployment was created but its "
        "webhook was not stored (retry the request)",
        secret.status());
  }
  // The reconciler may have moved the deployment on before the target
  // existed, and told the sink when there was nothing to record: tell it the
  // state now (the outbox deduplicates; a change after the attach is told
  // by the reconciler itself).
  absl::StatusOr<v1::Deployment> current =
      options_.deployments->Get(created->name());
  if (current.ok()) options_.webhooks->OnDeploymentStateChanged(*current);
  if (absl::Status filled = FillUrl(*created); !filled.ok()) return filled;
  created->set_webhook_secret(*secret);
  return created;
}

absl::StatusOr<v1::Deployment> DeploymentWebhooks::Get(
    const std::string& name) {
  absl::StatusOr<v1::Deployment> deployment = options_.deployments->Get(name);
  if (!deployment.ok() || options_.store_fills_urls_on_get) return deployment;
  if (absl::Status filled = FillUrl(*deployment); !filled.ok()) return filled;
  return deployment;
}

absl::StatusOr<v1::ListDeploymentsResponse> DeploymentWebhooks::List(
    const v1::ListDeploymentsRequest& request) {
  absl::StatusOr<v1::ListDeploymentsResponse> response =
      options_.deployments->List(request);
  if (!response.ok()) return response;
  std::vector<std::string> names;
  for (const v1::Deployment& deployment : response->deployments()) {
    names.push_back(deployment.name());
  }
  absl::StatusOr<std::map<std::string, std::string>> urls =
      options_.webhooks->Urls(names);
  if (!urls.ok()) return urls.status();
  for (v1::Deployment& deployment : *response->mutable_deployments()) {
    auto found = urls->find(deployment.name());
    if (found != urls->end()) deployment.set_webhook_url(found->second);
  }
  return response;
}

absl::StatusOr<v1::Deployment> DeploymentWebhooks::Update(
    const v1::UpdateDeploymentRequest& request) {
  bool has_webhook = false;
  v1::UpdateDeploymentRequest rest = request;
  rest.mutable_update_mask()->clear_paths();
  for (const std::string& path : request.update_mask().paths()) {
    if (path == kWebhookUrlPath) {
      has_webhook = true;
    } else {
      rest.mutable_update_mask()->add_paths(path);
    }
  }
  if (!has_webhook) {
    absl::StatusOr<v1::Deployment> updated =
        options_.deployments->Update(request);
    if (!updated.ok()) return updated;
    if (absl::Status filled = FillUrl(*updated); !filled.ok()) return filled;
    return updated;
  }
  const std::string& url = request.deployment().webhook_url();
  if (!url.empty()) {
    if (absl::Status valid = ValidateWebhookUrl("deployment.webhook_url", url);
        !valid.ok()) {
      return valid;
    }
  }
  if (request.deployment().name().empty()) {
    return InvalidField("deployment.name", "required");
  }
  std::string secret;
  std::string id;
  if (rest.update_mask().paths().empty()) {
    // The webhook alone: one transaction checks and writes.
    absl::StatusOr<v1::Deployment> current =
        options_.deployments->Get(request.deployment().name());
    if (!current.ok()) return current;
    absl::StatusOr<std::string> set = options_.webhooks->SetTargetChecked(
        current->name(), request.deployment().etag(), url,
        "deployment.webhook_url");
    if (!set.ok()) return set.status();
    secret = *std::move(set);
    id = current->name();
    options_.notifier->Notify(id);
  } else {
    absl::StatusOr<v1::Deployment> updated = options_.deployments->Update(rest);
    if (!updated.ok()) return updated;
    absl::StatusOr<std::string> set = options_.webhooks->SetTarget(
        updated->name(), url, "deployment.webhook_url");
    if (!set.ok()) return set.status();
    secret = *std::move(set);
    id = updated->name();
  }
  absl::StatusOr<v1::Deployment> result = Get(id);
  if (!result.ok()) return result;
  result->set_webhook_secret(secret);
  return result;
}

absl::StatusOr<v1::Deployment> DeploymentWebhooks::Undeploy(
    const v1::UndeployDeploymentRequest& request) {
  absl::StatusOr<v1::Deployment> undeployed =
      options_.deployments->Undeploy(request);
  if (!undeployed.ok()) return undeployed;
  // Deduplicated by (deployment, revision, event): undeploying twice, or a
  // reconciler that reports it too, records one delivery.
  options_.webhooks->OnDeploymentStateChanged(*undeployed);
  if (absl::Status filled = FillUrl(*undeployed); !filled.ok()) return filled;
  return undeployed;
}

absl::StatusOr<v1::Deployment> DeploymentWebhooks::Redeploy(
    const v1::RedeployRequest& request) {
  absl::StatusOr<v1::Deployment> redeployed =
      options_.deployments->Redeploy(request);
  if (!redeployed.ok()) return redeployed;
  if (absl::Status filled = FillUrl(*redeployed); !filled.ok()) return filled;
  return redeployed;
}

absl::StatusOr<v1::Deployment> DeploymentWebhooks::Delete(
    const v1::DeleteDeploymentRequest& request) {
  absl::StatusOr<v1::Deployment> deleted =
      options_.deployments->Delete(request);
  if (!deleted.ok()) return deleted;
  if (absl::Status filled = FillUrl(*deleted); !filled.ok()) return filled;
  return deleted;
}

absl::StatusOr<v1::ListWebhookDeliveriesResponse>
DeploymentWebhooks::ListDeliveries(
    const v1::ListWebhookDeliveriesRequest& request) {
  if (request.deployment().empty()) {
    return InvalidField("deployment", "required");
  }
  absl::StatusOr<v1::Deployment> deployment =
      options_.deployments->Get(request.deployment());
  if (!deployment.ok()) return deployment.status();
  return options_.webhooks->ListDeliveries(
      deployment->name(), request.page_size(), request.page_token(),
      FilterFingerprint(request));
}

}  // namespace hangar::deployment::webhooks
