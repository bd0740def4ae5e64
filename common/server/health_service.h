// grpc.health.v1.Health, served from the real health.proto definitions.
//
// gRPC C++'s built-in health service is not described by the reflection
// service (grpcurl gets "Symbol not found"), so Hangar serves its own
// implementation of the generated service instead: listed, describable and
// callable through reflection like every other service.
//
// Entries: "" (the server as a whole) and the full name of every service
// registered on the server ("hangar.v1.CatalogService",
// "grpc.health.v1.Health", ...); Server::Create adds them. Any other name is
// NOT_FOUND for Check and SERVICE_UNKNOWN for Watch, per the protocol.
//
// All entries share one status, computed as
//   SERVING  iff  the server is ready (SetServing(true))
//            and  every dependency is healthy (SetDependency)
//            and  shutdown has not begun;
// otherwise NOT_SERVING. So a runner reports NOT_SERVING until its model has
// loaded, and a service whose database probe fails (db::DatabaseProbe)
// reports NOT_SERVING until the database answers again, on every entry at
// once.
//
// Watch runs on the gRPC callback API: it sends the current status, then
// each change as it happens (a change notifies the open streams directly,
// nothing polls), and ends with UNAVAILABLE "server shutting down" when
// shutdown begins, after sending NOT_SERVING, so it never holds the drain
// open. A client that cancels ends its stream at once.
#ifndef HANGAR_COMMON_SERVER_HEALTH_SERVICE_H_
#define HANGAR_COMMON_SERVER_HEALTH_SERVICE_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace hangar {

class HealthService final
    : public grpc::health::v1::Health::WithCallbackMethod_Watch<
          grpc::health::v1::Health::Service> {
 public:
  using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

  // Adds an entry for `service` (a full service name).
  void AddService(const std::string& service);
  // Whether the server itself is ready to serve.
  void SetServing(bool serving);
  // Records the health of a dependency ("database"); an unhealthy one turns
  // every entry NOT_SERVING. Dependencies never reported count as healthy.
  void SetDependency(const std::string& dependency, bool healthy);
  // The status of `service` ("" for the server), or SERVICE_UNKNOWN.
  ServingStatus StatusOf(const std::string& service);
  // Turns everything NOT_SERVING for good and ends every Watch stream (used
  // at shutdown so draining is not held up by streams that would otherwise
  // never finish).
  void Shutdown();

  grpc::Status Check(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::health::v1::HealthCheckResponse* response) override;
  grpc::ServerWriteReactor<grpc::health::v1::HealthCheckResponse>* Watch(
      grpc::CallbackServerContext* context,
      const grpc::health::v1::HealthCheckRequest* request) override;

  // Open Watch streams (for tests).
  int watchers();

 private:
  class Watcher;

  ServingStatus StatusOfLocked(const std::string& service)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Tells every open Watch stream to compare and send. Call after a change,
  // without holding mu_.
  void NotifyWatchers();

  absl::Mutex mu_;  // Protects every field below.
  std::set<std::string> services_ ABSL_GUARDED_BY(mu_) = {""};
  bool serving_ ABSL_GUARDED_BY(mu_) = false;
  // Dependency name -> healthy.
  std::map<std::string, bool> dependencies_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  // Open Watch streams; each removes itself when done.
  std::set<Watcher*> watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hangar

#endif  // HANGAR_COMMON_SERVER_HEALTH_SERVICE_H_
