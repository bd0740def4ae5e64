// The gRPC face of the deployment service: a thin adapter from
// hangar.v1.DeploymentService to the Deployments domain class. Each unary
// method checks the admin token (AuthorizeAdmin), unpacks the request,
// calls the domain and converts the status at the edge (ToGrpcStatus).
// The Watch methods run on the callback API.
//
// WatchDeployments follows one deployment (by id or display name) with the
// kit's WatchReactor: its state now, then after every change, ending OK
// once it is DELETED. With an empty name it streams every live deployment,
// then every deployment that changed (event_watch_reactor.h +
// watch_feeds.h). WatchApiKeys uses the same event reactor.
#ifndef HANGAR_SERVICES_DEPLOYMENT_DEPLOYMENT_SERVICE_H_
#define HANGAR_SERVICES_DEPLOYMENT_DEPLOYMENT_SERVICE_H_

#include "common/auth/bearer.h"
#include "common/watch/change_notifier.h"
#include "hangar/v1/deployment.grpc.pb.h"
#include "services/deployment/deployments.h"
#include "services/deployment/webhooks/deployment_webhooks.h"

namespace hangar::deployment {

class DeploymentServiceImpl final
    : public v1::DeploymentService::WithCallbackMethod_WatchDeployments<
          v1::DeploymentService::WithCallbackMethod_WatchApiKeys<
              v1::DeploymentService::Service>> {
 public:
  // Not owned; must outlive the service. A null `admin_token` turns the
  // check off. `webhooks` fronts the calls that carry webhook fields
  // (Create, Get, List, Update, ListWebhookDeliveries).
  DeploymentServiceImpl(Deployments* deployments, ChangeNotifier* notifier,
                        const auth::AdminToken* admin_token,
                        webhooks::DeploymentWebhooks* webhooks)
      : deployments_(deployments),
        notifier_(notifier),
        admin_token_(admin_token),
        webhooks_(webhooks) {}

  grpc::Status ValidateDeployment(
      grpc::ServerContext* context,
      const v1::ValidateDeploymentRequest* request,
      v1::ValidateDeploymentResponse* response) override;
  grpc::Status CreateDeployment(grpc::ServerContext* context,
                                const v1::CreateDeploymentRequest* request,
                                v1::Deployment* response) override;
  grpc::Status GetDeployment(grpc::ServerContext* context,
                             const v1::GetDeploymentRequest* request,
                             v1::Deployment* response) override;
  grpc::Status ListDeployments(grpc::ServerContext* context,
                               const v1::ListDeploymentsRequest* request,
                               v1::ListDeploymentsResponse* response) override;
  grpc::Status UpdateDeployment(grpc::ServerContext* context,
                                const v1::UpdateDeploymentRequest* request,
                                v1::Deployment* response) override;
  grpc::Status Redeploy(grpc::ServerContext* context,
                        const v1::RedeployRequest* request,
                        v1::Deployment* response) override;
  grpc::Status UndeployDeployment(grpc::ServerContext* context,
                                  const v1::UndeployDeploymentRequest* request,
                                  v1::Deployment* response) override;
  grpc::Status DeleteDeployment(grpc::ServerContext* context,
                                const v1::DeleteDeploymentRequest* request,
                                v1::Deployment* response) override;
  grpc::Status ListRevisions(grpc::ServerContext* context,
                             const v1::ListRevisionsRequest* request,
                             v1::ListRevisionsResponse* response) override;
  grpc::Status GetEndpoint(grpc::ServerContext* context,
                           const v1::GetEndpointRequest* request,
                           v1::Endpoint* response) override;
  grpc::ServerWriteReactor<v1::Deployment>* WatchDeployments(
      grpc::CallbackServerContext* context,
      const v1::WatchDeploymentsRequest* request) override;
  grpc::Status RecordUsage(grpc::ServerContext* context,
                           const v1::RecordUsageRequest* request,
                           v1::RecordUsageResponse* response) override;
  grpc::Status GetUsage(grpc::ServerContext* context,
                        const v1::GetUsageRequest* request,
                        v1::GetUsageResponse* response) override;
  grpc::Status CreateApiKey(grpc::ServerContext* context,
                            const v1::CreateApiKeyRequest* request,
                            v1::CreateApiKeyResponse* response) override;
  grpc::Status ListApiKeys(grpc::ServerContext* context,
                           const v1::ListApiKeysRequest* request,
                           v1::ListApiKeysResponse* response) override;
  grpc::Status RevokeApiKey(grpc::ServerContext* context,
                            const v1::RevokeApiKeyRequest* request,
                            v1::ApiKey* response) override;
  grpc::ServerWriteReactor<v1::ApiKeyEvent>* WatchApiKeys(
      grpc::CallbackServerContext* context,
      const v1::WatchApiKeysRequest* request) override;

  grpc::Status ListWebhookDeliveries(
      grpc::ServerContext* context,
      const v1::ListWebhookDeliveriesRequest* request,
      v1::ListWebhookDeliveriesResponse* response) override;

 private:
  Deployments* const deployments_;
  ChangeNotifier* const notifier_;
  const auth::AdminToken* const admin_token_;
  webhooks::DeploymentWebhooks* const webhooks_;
};

}  // namespace hangar::deployment

#endif  // HANGAR_SERVICES_DEPLOYMENT_DEPLOYMENT_SERVICE_H_
