// Whether deployments use a model: the seam DeleteModel asks before it
// deletes. The catalog does not track deployments itself; the deployment
// service owns them.
//
// Implementations: GrpcDeploymentUsage (grpc_deployment_usage.h) asks
// DeploymentService.ListDeployments(model=...) at --deployment_address;
// NoDeploymentUsage (below) answers "none" when no address is configured;
// tests use a fake.
#ifndef HANGAR_SERVICES_CATALOG_DEPLOYMENT_USAGE_H_
#define HANGAR_SERVICES_CATALOG_DEPLOYMENT_USAGE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace hangar::catalog {

class DeploymentUsage {
 public:
  virtual ~DeploymentUsage() = default;

  // Names of (not deleted) deployments that use `model`; empty when none.
  // UNAVAILABLE when the answer cannot be had (the caller then refuses to
  // delete, rather than guess).
  virtual absl::StatusOr<std::vector<std::string>> DeploymentsUsing(
      const std::string& model) = 0;
};

// No deployment service configured: nothing is in use.
class NoDeploymentUsage final : public DeploymentUsage {
 public:
  absl::StatusOr<std::vector<std::string>> DeploymentsUsing(
      const std::string&) override {
    return std::vector<std::string>{};
  }
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_DEPLOYMENT_USAGE_H_
