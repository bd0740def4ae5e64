// The facts sources over gRPC: the catalog's GetModel and the scheduler's
// ListHardware, each call carrying the admin token (when one is set) and a
// deadline. NOT_FOUND from the catalog and an offering the scheduler does
// not list are facts (found = false); any other failure is UNAVAILABLE
// naming the dependency and its address, so a client of the deployment
// service sees which dependency is down.
#ifndef HANGAR_SERVICES_DEPLOYMENT_GRPC_FACTS_H_
#define HANGAR_SERVICES_DEPLOYMENT_GRPC_FACTS_H_

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "common/auth/bearer.h"
#include "grpcpp/grpcpp.h"
#include "hangar/v1/catalog.grpc.pb.h"
#include "hangar/v1/scheduler.grpc.pb.h"
#include "services/deployment/facts.h"

namespace hangar::deployment {

struct GrpcFactsOptions {
  // host:port, for messages. Required.
  std::string address;
  // Attached to every call; null: none.
  const auth::AdminToken* admin_token = nullptr;
  // Deadline of one call.
  absl::Duration timeout = absl::Seconds(5);
};

// Attaches `options`' admin token and deadline to one call.
void PrepareCall(const GrpcFactsOptions& options, grpc::ClientContext* context);

// UNAVAILABLE "<dependency> (<address>): <message of status>": what a
// client of the deployment service sees when a dependency cannot answer.
absl::Status DependencyUnavailable(const char* dependency,
                                   const std::string& address,
                                   const grpc::Status& status);

class GrpcCatalogFacts final : public ModelFactsSource {
 public:
  GrpcCatalogFacts(std::shared_ptr<grpc::Channel> channel,
                   GrpcFactsOptions options);
  absl::StatusOr<ModelFacts> GetModelFacts(const std::string& model) override;

 private:
  std::unique_ptr<v1::CatalogService::Stub> stub_;
  const GrpcFactsOptions options_;
};

class GrpcSchedulerFacts final : public OfferingFactsSource {
 public:
  GrpcSchedulerFacts(std::shared_ptr<grpc::Channel> channel,
                     GrpcFactsOptions options);
  absl::StatusOr<OfferingFacts> GetOfferingFacts(
      const std::string& offering) override;

 private:
  std::unique_ptr<v1::SchedulerService::Stub> stub_;
  const GrpcFactsOptions options_;
};

}  // namespace hangar::deployment

#endif  // HANGAR_SERVICES_DEPLOYMENT_GRPC_FACTS_H_
