#include "services/deployment/deployment_service.h"

#include "common/server/admin_auth.h"
#include "common/status/grpc_status.h"
#include "common/watch/watch_reactor.h"
#include "services/deployment/event_watch_reactor.h"
#include "services/deployment/watch_feeds.h"

namespace hangar::deployment {
grpc::Status DeploymentServiceImpl::ValidateDeployment(
    grpc::ServerContext* context, const v1::ValidateDeploymentRequest* request,
    v1::ValidateDeploymentResponse* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(deployments_->Validate(request->spec()), response);
}

grpc::Status DeploymentServiceImpl::CreateDeployment(
    grpc::ServerContext* context, const v1::CreateDeploymentRequest* request,
    v1::Deployment* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(webhooks_->CreateDeployment(*request), response);
}

grpc::Status DeploymentServiceImpl::GetDeployment(
    grpc::ServerContext* context, const v1::GetDeploymentRequest* request,
    v1::Deployment* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(webhooks_->Get(request->name()), response);
}

grpc::Status DeploymentServiceImpl::ListDeployments(
    grpc::ServerContext* context, const v1::ListDeploymentsRequest* request,
    v1::ListDeploymentsResponse* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(webhooks_->List(*request), response);
}

grpc::Status DeploymentServiceImpl::UpdateDeployment(
    grpc::ServerContext* context, const v1::UpdateDeploymentRequest* request,
    v1::Deployment* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(webhooks_->Update(*request), response);
}

grpc::Status DeploymentServiceImpl::Redeploy(grpc::ServerContext* context,
                                             const v1::RedeployRequest* request,
                                             v1::Deployment* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(webhooks_->Redeploy(*request), response);
}

grpc::Status DeploymentServiceImpl::UndeployDeployment(
    grpc::ServerContext* context, const v1::UndeployDeploymentRequest* request,
    v1::Deployment* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(webhooks_->Undeploy(*request), response);
}

grpc::Status DeploymentServiceImpl::DeleteDeployment(
    grpc::ServerContext* context, const v1::DeleteDeploymentRequest* request,
    v1::Deployment* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(webhooks_->Delete(*request), response);
}

grpc::Status DeploymentServiceImpl::ListRevisions(
    grpc::ServerContext* context, const v1::ListRevisionsRequest* request,
    v1::ListRevisionsResponse* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(deployments_->ListRevisions(*request), response);
}

grpc::Status DeploymentServiceImpl::GetEndpoint(
    grpc::ServerContext* context, const v1::GetEndpointRequest* request,
    v1::Endpoint* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(deployments_->GetEndpoint(request->deployment()), response);
}

grpc::ServerWriteReactor<v1::Deployment>*
DeploymentServiceImpl::WatchDeployments(
    grpc::CallbackServerContext* context,
    const v1::WatchDeploymentsRequest* request) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return FinishedWriteReactor<v1::Deployment>(denied);
  }
  if (request->name().empty()) {
    // Every deployment: an event feed over every change ("" subscribes to
    // every key the notifier announces).
    return EventWatchReactor<v1::Deployment>::Start(
        notifier_, "", DeploymentFeed(deployments_));
  }
  // Follow the id, so a rename does not end the stream.
  absl::StatusOr<v1::Deployment> found = deployments_->Get(request->name());
  if (!found.ok()) {
    return FinishedWriteReactor<v1::Deployment>(ToGrpcStatus(found.status()));
  }
  return WatchReactor<v1::Deployment>::Start(
      context,
      {.notifier = notifier_,
       .key = found->name(),
       .read = [deployments = deployments_,
                name = found->name()] { return deployments->Get(name); },
       .is_final =
           [](const v1::Deployment& deployment) {
             return deployment.state() == v1::DEPLOYMENT_STATE_DELETED;
           }});
}

grpc::Status DeploymentServiceImpl::RecordUsage(
    grpc::ServerContext* context, const v1::RecordUsageRequest* request,
    v1::RecordUsageResponse*) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ToGrpcStatus(deployments_->RecordUsage(*request));
}

grpc::Status DeploymentServiceImpl::GetUsage(grpc::ServerContext* context,
                                             const v1::GetUsageRequest* request,
                                             v1::GetUsageResponse* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(deployments_->GetUsage(*request), response);
}

grpc::Status DeploymentServiceImpl::CreateApiKey(
    grpc::ServerContext* context, const v1::CreateApiKeyRequest* request,
    v1::CreateApiKeyResponse* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(deployments_->CreateApiKey(*request), response);
}

grpc::Status DeploymentServiceImpl::ListApiKeys(
    grpc::ServerContext* context, const v1::ListApiKeysRequest* request,
    v1::ListApiKeysResponse* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(deployments_->ListApiKeys(*request), response);
}

grpc::Status DeploymentServiceImpl::RevokeApiKey(
    grpc::ServerContext* context, const v1::RevokeApiKeyRequest* request,
    v1::ApiKey* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(deployments_->RevokeApiKey(request->name()), response);
}

grpc::ServerWriteReactor<v1::ApiKeyEvent>* DeploymentServiceImpl::WatchApiKeys(
    grpc::CallbackServerContext* context, const v1::WatchApiKeysRequest*) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return FinishedWriteReactor<v1::ApiKeyEvent>(denied);
  }
  return EventWatchReactor<v1::ApiKeyEvent>::Start(notifier_, kApiKeysWatchKey,
                                                   ApiKeyFeed(deployments_));
}

grpc::Status DeploymentServiceImpl::ListWebhookDeliveries(
    grpc::ServerContext* context,
    const v1::ListWebhookDeliveriesRequest* request,
    v1::ListWebhookDeliveriesResponse* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(webhooks_->ListDeliveries(*request), response);
}

}  // namespace hangar::deployment
