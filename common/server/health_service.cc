#include "common/server/health_service.h"

#include "absl/time/time.h"

namespace hangar {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

void HealthService::AddService(const std::string& service) {
  absl::MutexLock lock(&mu_);
  if (services_.insert(service).second) ++version_;
}

void HealthService::SetServing(bool serving) {
  absl::MutexLock lock(&mu_);
  if (serving_ == serving) return;
  serving_ = serving;
  ++version_;
}

void HealthService::SetDependency(const std::string& dependency, bool healthy) {
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = dependencies_.try_emplace(dependency, healthy);
  if (!inserted && it->second == healthy) return;
  it->second = healthy;
  ++version_;
}

HealthService::ServingStatus HealthService::StatusOf(
    const std::string& service) {
  absl::MutexLock lock(&mu_);
  return StatusOfLocked(service);
}

HealthService::ServingStatus HealthService::StatusOfLocked(
    const std::string& service) {
  if (!services_.contains(service)) {
    return HealthCheckResponse::SERVICE_UNKNOWN;
  }
  if (shut_down_ || !serving_) return HealthCheckResponse::NOT_SERVING;
  for (const auto& [name, healthy] : dependencies_) {
    if (!healthy) return HealthCheckResponse::NOT_SERVING;
  }
  return HealthCheckResponse::SERVING;
}

void HealthService::Shutdown() {
  absl::MutexLock lock(&mu_);
  shut_down_ = true;
  ++version_;
}

grpc::Status HealthService::Check(grpc::ServerContext* /*context*/,
                                  const HealthCheckRequest* request,
                                  HealthCheckResponse* response) {
  absl::MutexLock lock(&mu_);
  const ServingStatus status = StatusOfLocked(request->service());
  if (status == HealthCheckResponse::SERVICE_UNKNOWN) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "unknown service: " + request->service());
  }
  response->set_status(status);
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
      auto changed = [this, seen_version]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return version_ != seen_version;
      };
      // Wake at least every 100 ms to notice a cancelled client; the
      // synchronous API has no cancellation callback.
      if (!mu_.AwaitWithTimeout(absl::Condition(&changed),
                                absl::Milliseconds(100))) {
        continue;
      }
      seen_version = version_;
      current = StatusOfLocked(request->service());
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
