#include "common/server/health_service.h"

#include "absl/time/time.h"

namespace hangar {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

void HealthService::SetStatus(const std::string& service,
                              ServingStatus status) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  statuses_[service] = status;
  ++version_;
}

void HealthService::SetAll(ServingStatus status) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  statuses_[""] = status;
  for (auto& [name, service_status] : statuses_) service_status = status;
  ++version_;
}

void HealthService::Shutdown() {
  absl::MutexLock lock(&mu_);
  for (auto& [name, service_status] : statuses_) {
    service_status = HealthCheckResponse::NOT_SERVING;
  }
  shut_down_ = true;
  ++version_;
}

grpc::Status HealthService::Check(grpc::ServerContext* /*context*/,
                                  const HealthCheckRequest* request,
                                  HealthCheckResponse* response) {
  absl::MutexLock lock(&mu_);
  auto it = statuses_.find(request->service());
  if (it == statuses_.end()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "unknown service: " + request->service());
  }
  response->set_status(it->second);
  return grpc::Status::OK;
}

grpc::Status HealthService::Watch(
    grpc::ServerContext* context, const HealthCheckRequest* request,
    grpc::ServerWriter<HealthCheckResponse>* writer) {
  // Per the health protocol, an unknown service is reported as
  // SERVICE_UNKNOWN (and the stream stays open in case it appears).
  int64_t seen_version = -1;
  ServingStatus last_sent = HealthCheckResponse::UNKNOWN;
  bool sent_any = false;
  while (!context->IsCancelled()) {
    ServingStatus current;
    bool shut_down;
    {
      absl::MutexLock lock(&mu_);
      auto changed = [this, seen_version]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                         mu_) { return version_ != seen_version; };
      // Wake at least every 100 ms to notice a cancelled client; the
      // synchronous API has no cancellation callback.
      if (!mu_.AwaitWithTimeout(absl::Condition(&changed),
                                absl::Milliseconds(100))) {
        continue;
      }
      seen_version = version_;
      auto it = statuses_.find(request->service());
      current = it == statuses_.end() ? HealthCheckResponse::SERVICE_UNKNOWN
                                      : it->second;
      shut_down = shut_down_;
    }
    if (!sent_any || current != last_sent) {
      HealthCheckResponse response;
      response.set_status(current);
      if (!writer->Write(response)) break;
      sent_any = true;
      last_sent = current;
    }
    if (shut_down) break;
  }
  return grpc::Status::OK;
}

}  // namespace hangar
