#include "services/catalog/grpc_deployment_usage.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/server/admin_auth.h"
#include "common/status/grpc_status.h"

namespace hangar::catalog {

GrpcDeploymentUsage::GrpcDeploymentUsage(std::shared_ptr<grpc::Channel> channel,
                                         Options options)
    : stub_(v1::DeploymentService::NewStub(channel)),
      options_(std::move(options)) {}

absl::StatusOr<std::vector<std::string>> GrpcDeploymentUsage::DeploymentsUsing(
    const std::string& model) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMilliseconds(options_.timeout));
  AttachAdminToken(options_.admin_token, &context);
  v1::ListDeploymentsRequest request;
  request.set_model(model);
  request.set_page_size(10);
  v1::ListDeploymentsResponse response;
  grpc::Status status = stub_->ListDeployments(&context, request, &response);
  if (!status.ok()) {
    // Whatever went wrong there, the answer is unknown here: retryable.
    return absl::UnavailableError(absl::StrCat(
        "cannot ask the deployment service whether \"", model, "\" is in use: ",
        FromGrpcStatus(status, "DeploymentService.ListDeployments")
            .ToString()));
  }
  std::vector<std::string> names;
  for (const v1::Deployment& deployment : response.deployments()) {
    names.push_back(deployment.name());
  }
  return names;
}

}  // namespace hangar::catalog
