// The reconciler's clients (clients.h) over gRPC. Every call carries the
// admin token (when one is set) and a deadline. A dependency that cannot be
// reached (UNAVAILABLE, DEADLINE_EXCEEDED) is UNAVAILABLE naming it and its
// address ("optimizer (127.0.0.1:7103): ..."), which the reconciler retries;
// any other status keeps its code and message (a refusal: the reconciler
// fails the revision with it). NOT_FOUND from DeleteReplicaSet is "no such
// set" (nullopt).
#ifndef HANGAR_SERVICES_DEPLOYMENT_GRPC_CLIENTS_H_
#define HANGAR_SERVICES_DEPLOYMENT_GRPC_CLIENTS_H_

#include <memory>
#include <string>

#include "grpcpp/grpcpp.h"
#include "hangar/v1/catalog.grpc.pb.h"
#include "hangar/v1/optimizer.grpc.pb.h"
#include "hangar/v1/scheduler.grpc.pb.h"
#include "services/deployment/clients.h"
#include "services/deployment/grpc_facts.h"

namespace hangar::deployment {

class GrpcCatalogClient final : public CatalogClient {
 public:
  GrpcCatalogClient(std::shared_ptr<grpc::Channel> channel,
                    GrpcFactsOptions options);
  absl::StatusOr<v1::Preparation> PrepareModel(
      const std::string& model) override;

 private:
  std::unique_ptr<v1::CatalogService::Stub> stub_;
  const GrpcFactsOptions options_;
};

class GrpcOptimizerClient final : public OptimizerClient {
 public:
  GrpcOptimizerClient(std::shared_ptr<grpc::Channel> channel,
                      GrpcFactsOptions options);
  absl::StatusOr<v1::OptimizationJob> CreateOptimizationJob(
      const v1::CreateOptimizationJobRequest& request) override;
  absl::StatusOr<v1::OptimizationJob> GetOptimizationJob(
      const std::string& name) override;
  absl::Status CancelOptimizationJob(const std::string& name) override;
  absl::Status ReleaseOptimizationJob(const std::string& request_id) override;

 private:
  std::unique_ptr<v1::OptimizerService::Stub> stub_;
  const GrpcFactsOptions options_;
};

class GrpcSchedulerClient final : public SchedulerClient {
 public:
  GrpcSchedulerClient(std::shared_ptr<grpc::Channel> channel,
                      GrpcFactsOptions options);
  absl::StatusOr<v1::ReplicaSet> ApplyReplicaSet(
      const v1::ReplicaSetSpec& spec) override;
  absl::StatusOr<std::vector<v1::ReplicaSet>> ListReplicaSets(
      const std::string& deployment) override;
  absl::StatusOr<std::optional<v1::ReplicaSet>> DeleteReplicaSet(
      const std::string& deployment, int64_t revision,
      int drain_seconds) override;

 private:
  std::unique_ptr<v1::SchedulerService::Stub> stub_;
  const GrpcFactsOptions options_;
};

}  // namespace hangar::deployment

#endif  // HANGAR_SERVICES_DEPLOYMENT_GRPC_CLIENTS_H_
