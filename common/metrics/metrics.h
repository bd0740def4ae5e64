// One Prometheus registry per process, and the HTTP endpoint that serves it.
//
// `MetricsRegistry` owns the prometheus::Registry every component adds its
// families to, and (once `Serve()` is called) a civetweb-based exposer that
// answers `GET /metrics` in the text format. Components keep named accessors
// to their families and build per-entity reporters with fixed labels (the
// Triton habit), for example:
//
//   auto& requests = prometheus::BuildCounter()
//                        .Name("hangar_gateway_requests_total")
//                        .Help("Inference requests by deployment and code.")
//                        .Register(metrics.registry());
//   requests.Add({{"deployment", "dep-1"}, {"code", "OK"}}).Increment();
//
// Names follow Prometheus conventions: base units, `_total` for counters,
// `_seconds` and `_bytes` suffixes.
#ifndef HANGAR_COMMON_METRICS_METRICS_H_
#define HANGAR_COMMON_METRICS_METRICS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"

namespace hangar {

class MetricsRegistry {
 public:
  MetricsRegistry();
  ~MetricsRegistry();

  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> shared_registry() { return registry_; }

  // Starts serving /metrics on host:port (port 0 picks a free one). Fails
  // with UNAVAILABLE naming the address when it cannot bind.
  absl::Status Serve(const std::string& host, int port);

  // The bound port once serving, else 0.
  int port() const { return port_; }

  // Stops the HTTP endpoint (the registry stays usable).
  void StopServing();

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

// Exponential histogram buckets for latencies from 100 us to about 100 s.
const std::vector<double>& LatencyBucketsSeconds();

}  // namespace hangar

#endif  // HANGAR_COMMON_METRICS_METRICS_H_
