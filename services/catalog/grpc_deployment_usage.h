// DeploymentUsage over gRPC: DeploymentService.ListDeployments(model=...),
// first page only (one deployment is enough to refuse a delete; up to 10
// names are reported).
//
//   GrpcDeploymentUsage usage(grpc::CreateChannel(address, credentials),
//                             {.timeout = absl::Seconds(5),
//                              .admin_token = admin_token});
#ifndef HANGAR_SERVICES_CATALOG_GRPC_DEPLOYMENT_USAGE_H_
#define HANGAR_SERVICES_CATALOG_GRPC_DEPLOYMENT_USAGE_H_

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "common/auth/bearer.h"
#include "grpcpp/grpcpp.h"
#include "hangar/v1/deployment.grpc.pb.h"
#include "services/catalog/deployment_usage.h"

namespace hangar::catalog {

class GrpcDeploymentUsage final : public DeploymentUsage {
 public:
  struct Options {
    // Deadline of each ListDeployments call.
    absl::Duration timeout = absl::Seconds(5);
    // Sent with every call when not null (internal calls carry the admin
    // token). Not owned; must outlive this object.
    const auth::AdminToken* admin_token = nullptr;
  };

  GrpcDeploymentUsage(std::shared_ptr<grpc::Channel> channel, Options options);

  absl::StatusOr<std::vector<std::string>> DeploymentsUsing(
      const std::string& model) override;

 private:
  std::unique_ptr<v1::DeploymentService::Stub> stub_;
  std::string target_;
  Options options_;
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_GRPC_DEPLOYMENT_USAGE_H_
