// Standard server metrics for every RPC of every Hangar server, recorded by a
// gRPC server interceptor so that no service has to remember to:
//
//   grpc_server_started_total{grpc_service, grpc_method}
//   grpc_server_handled_total{grpc_service, grpc_method, grpc_code}
//   grpc_server_handling_seconds{grpc_service, grpc_method}   (histogram)
//   grpc_server_in_flight                                     (gauge)
//   grpc_server_invalid_requests_total{grpc_service, grpc_method, reason}
//       requests that did not parse (see invalid_request_interceptor.h)
//
// The names match go-grpc-prometheus, so existing Grafana dashboards work.
#ifndef HANGAR_COMMON_SERVER_METRICS_INTERCEPTOR_H_
#define HANGAR_COMMON_SERVER_METRICS_INTERCEPTOR_H_

#include <map>
#include <string>

#include "absl/synchronization/mutex.h"
#include "common/metrics/metrics.h"
#include "grpcpp/support/server_interceptor.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"

namespace hangar {

// The metric families and per-method children, shared by all interceptors of
// one server. Thread-safe.
class ServerMetrics {
 public:
  explicit ServerMetrics(prometheus::Registry& registry);

  // `full_method` is "/package.Service/Method".
  void Started(const std::string& full_method);
  void Handled(const std::string& full_method, grpc::StatusCode code,
               double seconds);

  // A request to `full_method` did not parse; `reason` is "invalid_utf8"
  // or "malformed".
  void InvalidRequest(const std::string& full_method,
                      const std::string& reason);

  // Calls in flight right now (started, not yet handled).
  int64_t in_flight() const;

 private:
  struct MethodMetrics {
    prometheus::Counter* started;
    prometheus::Histogram* latency;
    std::map<int, prometheus::Counter*> handled_by_code;
  };
  MethodMetrics& ForMethodLocked(const std::string& full_method)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  prometheus::Family<prometheus::Counter>& started_;
  prometheus::Family<prometheus::Counter>& handled_;
  prometheus::Family<prometheus::Histogram>& handling_seconds_;
  prometheus::Gauge& in_flight_;
  prometheus::Family<prometheus::Counter>& invalid_requests_;

  mutable absl::Mutex mu_;  // Protects methods_ (children are thread-safe).
  std::map<std::string, MethodMetrics> methods_ ABSL_GUARDED_BY(mu_);
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(ServerMetrics* metrics)
      : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  ServerMetrics* metrics_;
};

}  // namespace hangar

#endif  // HANGAR_COMMON_SERVER_METRICS_INTERCEPTOR_H_
