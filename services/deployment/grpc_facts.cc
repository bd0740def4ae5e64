#include "services/deployment/grpc_facts.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/server/admin_auth.h"

namespace hangar::deployment {

void PrepareCall(const GrpcFactsOptions& options,
                 grpc::ClientContext* context) {
  AttachAdminToken(options.admin_token, context);
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(options.timeout));
}

absl::Status DependencyUnavailable(const char* dependency,
                                   const std::string& address,
                                   const grpc::Status& status) {
  return absl::UnavailableError(
      absl::StrCat(dependency, " (", address, "): ", status.error_message()));
}

GrpcCatalogFacts::GrpcCatalogFacts(std::shared_ptr<grpc::Channel> channel,
                                   GrpcFactsOptions options)
    : stub_(v1::CatalogService::NewStub(std::move(channel))),
      options_(std::move(options)) {}

absl::StatusOr<ModelFacts> GrpcCatalogFacts::GetModelFacts(
    const std::string& model) {
  grpc::ClientContext context;
  PrepareCall(options_, &context);
  v1::GetModelRequest request;
  request.set_name(model);
  v1::Model response;
  grpc::Status status = stub_->GetModel(&context, request, &response);
  if (status.error_code() == grpc::StatusCode::NOT_FOUND ||
      status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
    return ModelFacts{};  // Unknown (or not even a model name).
  }
  if (!status.ok())
    return DependencyUnavailable("catalog", options_.address, status);
  return ModelFactsFromProto(response);
}

GrpcSchedulerFacts::GrpcSchedulerFacts(std::shared_ptr<grpc::Channel> channel,
                                       GrpcFactsOptions options)
    : stub_(v1::SchedulerService::NewStub(std::move(channel))),
      options_(std::move(options)) {}

absl::StatusOr<OfferingFacts> GrpcSchedulerFacts::GetOfferingFacts(
    const std::string& offering) {
  v1::ListHardwareRequest request;
  request.set_page_size(1000);
  // A bounded number of pages: a scheduler that keeps returning tokens
  // cannot hold the call forever.
  for (int page = 0; page < 100; ++page) {
    grpc::ClientContext context;
    PrepareCall(options_, &context);
    v1::ListHardwareResponse response;
    grpc::Status status = stub_->ListHardware(&context, request, &response);
    if (!status.ok())
      return DependencyUnavailable("scheduler", options_.address, status);
    for (const v1::HardwareOffering& candidate : response.offerings()) {
      if (candidate.id() == offering) return OfferingFactsFromProto(candidate);
    }
    if (response.next_page_token().empty()) break;
    request.set_page_token(response.next_page_token());
  }
  return OfferingFacts{};
}

}  // namespace hangar::deployment
