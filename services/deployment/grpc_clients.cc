#include "services/deployment/grpc_clients.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/server/admin_auth.h"

namespace hangar::deployment {
namespace {

// The dependency's own status, but UNAVAILABLE naming it when it could not
// answer (down, or past the deadline).
absl::Status FromGrpc(const char* dependency, const std::string& address,
                      const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
      status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return DependencyUnavailable(dependency, address, status);
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

}  // namespace

GrpcCatalogClient::GrpcCatalogClient(std::shared_ptr<grpc::Channel> channel,
                                     GrpcFactsOptions options)
    : stub_(v1::CatalogService::NewStub(std::move(channel))),
      options_(std::move(options)) {}

absl::StatusOr<v1::Preparation> GrpcCatalogClient::PrepareModel(
    const std::string& model) {
  grpc::ClientContext context;
  PrepareCall(options_, &context);
  v1::PrepareModelRequest request;
  request.set_name(model);
  v1::Preparation response;
  grpc::Status status = stub_->PrepareModel(&context, request, &response);
  if (!status.ok()) return FromGrpc("catalog", options_.address, status);
  return response;
}

GrpcOptimizerClient::GrpcOptimizerClient(std::shared_ptr<grpc::Channel> channel,
                                         GrpcFactsOptions options)
    : stub_(v1::OptimizerService::NewStub(std::move(channel))),
      options_(std::move(options)) {}

absl::StatusOr<v1::OptimizationJob> GrpcOptimizerClient::CreateOptimizationJob(
    const v1::CreateOptimizationJobRequest& request) {
  grpc::ClientContext context;
  PrepareCall(options_, &context);
  v1::OptimizationJob response;
  grpc::Status status =
      stub_->CreateOptimizationJob(&context, request, &response);
  if (!status.ok()) return FromGrpc("optimizer", options_.address, status);
  return response;
}

absl::StatusOr<v1::OptimizationJob> GrpcOptimizerClient::GetOptimizationJob(
    const std::string& name) {
  grpc::ClientContext context;
  PrepareCall(options_, &context);
  v1::GetOptimizationJobRequest request;
  request.set_name(name);
  v1::OptimizationJob response;
  grpc::Status status = stub_->GetOptimizationJob(&context, request, &response);
  if (!status.ok()) return FromGrpc("optimizer", options_.address, status);
  return response;
}

absl::Status GrpcOptimizerClient::CancelOptimizationJob(
    const std::string& name) {
  grpc::ClientContext context;
  PrepareCall(options_, &context);
  v1::CancelOptimizationJobRequest request;
  request.set_name(name);
  v1::OptimizationJob response;
  return FromGrpc("optimizer", options_.address,
                  stub_->CancelOptimizationJob(&context, request, &response));
}

absl::Status GrpcOptimizerClient::ReleaseOptimizationJob(
    const std::string& request_id) {
  grpc::ClientContext context;
  PrepareCall(options_, &context);
  v1::ReleaseOptimizationJobRequest request;
  request.set_request_id(request_id);
  v1::OptimizationJob response;
  return FromGrpc("optimizer", options_.address,
                  stub_->ReleaseOptimizationJob(&context, request, &response));
}

GrpcSchedulerClient::GrpcSchedulerClient(std::shared_ptr<grpc::Channel> channel,
                                         GrpcFactsOptions options)
    : stub_(v1::SchedulerService::NewStub(std::move(channel))),
      options_(std::move(options)) {}

absl::StatusOr<v1::ReplicaSet> GrpcSchedulerClient::ApplyReplicaSet(
    const v1::ReplicaSetSpec& spec) {
  grpc::ClientContext context;
  PrepareCall(options_, &context);
  v1::ApplyReplicaSetRequest request;
  *request.mutable_spec() = spec;
  v1::ReplicaSet response;
  grpc::Status status = stub_->ApplyReplicaSet(&context, request, &response);
  if (!status.ok()) return FromGrpc("scheduler", options_.address, status);
  return response;
}

absl::StatusOr<std::vector<v1::ReplicaSet>>
GrpcSchedulerClient::ListReplicaSets(const std::string& deployment) {
  std::vector<v1::ReplicaSet> sets;
  v1::ListReplicaSetsRequest request;
  request.set_deployment(deployment);
  request.set_page_size(1000);
  // Bounded: a scheduler that keeps returning tokens cannot hold the pass.
  for (int page = 0; page < 100; ++page) {
    grpc::ClientContext context;
    PrepareCall(options_, &context);
    v1::ListReplicaSetsResponse response;
    grpc::Status status = stub_->ListReplicaSets(&context, request, &response);
    if (!status.ok()) return FromGrpc("scheduler", options_.address, status);
    for (v1::ReplicaSet& set : *response.mutable_replica_sets()) {
      sets.push_back(std::move(set));
    }
    if (response.next_page_token().empty()) break;
    request.set_page_token(response.next_page_token());
  }
  return sets;
}

absl::StatusOr<std::optional<v1::ReplicaSet>>
GrpcSchedulerClient::DeleteReplicaSet(const std::string& deployment,
                                      int64_t revision, int drain_seconds) {
  grpc::ClientContext context;
  PrepareCall(options_, &context);
  v1::DeleteReplicaSetRequest request;
  request.set_deployment(deployment);
  request.set_revision(revision);
  request.set_drain_seconds(drain_seconds);
  v1::ReplicaSet response;
  grpc::Status status = stub_->DeleteReplicaSet(&context, request, &response);
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
    return std::optional<v1::ReplicaSet>();
  }
  if (!status.ok()) return FromGrpc("scheduler", options_.address, status);
  return std::optional<v1::ReplicaSet>(std::move(response));
}

}  // namespace hangar::deployment
