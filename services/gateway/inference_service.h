// The gRPC adapter of the public InferenceService, entirely on the callback
// API: Generate is a unary reactor, GenerateStream a write reactor,
// ListDeployments a unary reactor. No call holds a thread while it waits:
// the reactors are RequestObservers of the Dispatcher, which calls them as
// the runner's tokens arrive.
//
// Admission of a Generate/GenerateStream call, in order (the first failure
// answers the call at once):
//   1. the API key (`authorization: Bearer hk_...` or `x-api-key`):
//      missing, malformed, unknown or revoked -> UNAUTHENTICATED; keys not
//      loaded yet -> UNAVAILABLE;
//   2. the request: deployment required, prompt 1 byte to 1 MiB of UTF-8,
//      request_id at most 64 printable ASCII -> INVALID_ARGUMENT naming the
//      field;
//   3. the deployment (id or display name) through the RouteTable:
//      NOT_FOUND, or UNAVAILABLE while it has no READY replica; a key of
//      another deployment -> PERMISSION_DENIED;
//   4. the overrides against the route's sampling values
//      (CheckSamplingOverrides, prompt tokens unknown here) ->
//      INVALID_ARGUMENT "sampling.<field>: ...";
//   5. the key's concurrency limit -> RESOURCE_EXHAUSTED;
//   6. the revision's queue (Dispatcher::Submit): full -> RESOURCE_EXHAUSTED
//      with trailing metadata `retry-after-ms`.
// Every answer is counted in hangar_gateway_requests_total.
#ifndef HANGAR_SERVICES_GATEWAY_INFERENCE_SERVICE_H_
#define HANGAR_SERVICES_GATEWAY_INFERENCE_SERVICE_H_

#include <string>

#include "absl/time/time.h"
#include "common/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "hangar/v1/inference.grpc.pb.h"
#include "services/gateway/dispatcher.h"
#include "services/gateway/gateway_metrics.h"
#include "services/gateway/key_registry.h"
#include "services/gateway/route_table.h"

namespace hangar::gateway {

class InferenceServiceImpl final
    : public v1::InferenceService::CallbackService {
 public:
  struct Options {
    // The deadline of a call that sets none.
    absl::Duration default_timeout = absl::Minutes(5);

    // --- injected (not owned; must outlive the service) ---
    KeyRegistry* keys = nullptr;
    RouteTable* routes = nullptr;
    ConcurrencyLimiter* limiter = nullptr;
    Dispatcher* dispatcher = nullptr;
    GatewayMetrics* metrics = nullptr;
    Clock* clock = Clock::Real();
  };

  explicit InferenceServiceImpl(Options options) : options_(options) {}

  grpc::ServerUnaryReactor* Generate(grpc::CallbackServerContext* context,
                                     const v1::GenerateRequest* request,
                                     v1::GenerateResponse* response) override;
  grpc::ServerWriteReactor<v1::GenerateStreamResponse>* GenerateStream(
      grpc::CallbackServerContext* context,
      const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* ListDeployments(
      grpc::CallbackServerContext* context,
      const v1::ListInferenceDeploymentsRequest* request,
      v1::ListInferenceDeploymentsResponse* response) override;

  const Options& options() const { return options_; }

 private:
  const Options options_;
};

}  // namespace hangar::gateway

#endif  // HANGAR_SERVICES_GATEWAY_INFERENCE_SERVICE_H_
