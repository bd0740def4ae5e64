// grpc.health.v1.Health, served from the real health.proto definitions.
//
// gRPC C++'s built-in health service is not described by the reflection
// service (grpcurl gets "Symbol not found"), so Hangar serves its own
// implementation of the generated service instead: listed, describable and
// callable through reflection like every other service.
//
// The overall status (service name "") and each registered service start
// NOT_SERVING; the server marks them SERVING once it is ready (a runner only
// after its model has loaded) and NOT_SERVING again when shutdown begins.
// Watch streams the current status and then every change.
#ifndef HANGAR_COMMON_SERVER_HEALTH_SERVICE_H_
#define HANGAR_COMMON_SERVER_HEALTH_SERVICE_H_

#include <map>
#include <string>

#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace hangar {

class HealthService final : public grpc::health::v1::Health::Service {
 public:
  using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

  // Sets the status of one service ("" is the server as a whole).
  void SetStatus(const std::string& service, ServingStatus status);
  // Sets every known service and the overall status at once.
  void SetAll(ServingStatus status);
  // Ends every Watch stream (used at shutdown so draining is not held up by
  // streams that would otherwise never finish).
  void Shutdown();

  grpc::Status Check(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::health::v1::HealthCheckResponse* response) override;
  grpc::Status Watch(
      grpc::ServerContext* context,
      const grpc::health::v1::HealthCheckRequest* request,
      grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>* writer)
      override;

 private:
  absl::Mutex mu_;  // Protects statuses_, version_ and shut_down_.
  std::map<std::string, ServingStatus> statuses_ ABSL_GUARDED_BY(mu_);
  // Bumped on every change so watchers wake and compare.
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace hangar

#endif  // HANGAR_COMMON_SERVER_HEALTH_SERVICE_H_
