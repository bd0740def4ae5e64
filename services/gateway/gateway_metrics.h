// The gateway's Prometheus families, with the names and labels its Grafana
// dashboard reads. One instance per process, registered in the server's
// MetricsRegistry; every method is thread-safe (prometheus-cpp's are).
//
//   hangar_gateway_requests_total{deployment,code}        calls answered
//   hangar_gateway_request_duration_seconds{deployment}   end to end
//   hangar_gateway_time_to_first_token_seconds{deployment}
//   hangar_gateway_queue_wait_seconds{deployment}         enqueue -> dispatch
//   hangar_gateway_batch_size{deployment}                 batches formed
//   hangar_gateway_prompt_tokens_total{deployment}        tokens in
//   hangar_gateway_completion_tokens_total{deployment}    tokens out
//   hangar_gateway_queue_depth{deployment,revision}       queued now
//   hangar_gateway_retries_total{deployment}              re-dispatches
//   hangar_gateway_auth_failures_total{reason}            refused keys
//
// `deployment` is the resolved deployment id ("dep-..."), or "unknown" for
// calls refused before one was resolved; `code` is the gRPC code's name.
//
// The request path uses handles: ForDeployment() resolves a deployment's
// children of every family once (prometheus-cpp's Family::Add builds a
// label map and hashes it under the family's lock on every call), and the
// dispatcher keeps the handle with the revision, so a call's metrics cost a
// few atomic adds and histogram observations, no string or map work.
#ifndef HANGAR_SERVICES_GATEWAY_GATEWAY_METRICS_H_
#define HANGAR_SERVICES_GATEWAY_GATEWAY_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace hangar::gateway {

class GatewayMetrics {
 public:
  // One deployment's children of the per-deployment families. Thread-safe;
  // lives as long as its GatewayMetrics.
  class Deployment {
   public:
    void RequestDone(absl::StatusCode code, absl::Duration latency);
    void FirstToken(absl::Duration latency);
    void QueueWait(absl::Duration wait);
    void BatchFormed(int size);
    void Tokens(int64_t prompt, int64_t completion);
    void Retry();

   private:
    friend class GatewayMetrics;
    Deployment(GatewayMetrics& owner, std::string name);

    GatewayMetrics& owner_;
    const std::string name_;
    prometheus::Histogram& latency_;
    prometheus::Histogram& first_token_;
    prometheus::Histogram& queue_wait_;
    prometheus::Histogram& batch_size_;
    prometheus::Counter& prompt_tokens_;
    prometheus::Counter& completion_tokens_;
    prometheus::Counter& retries_;
    // hangar_gateway_requests_total by code, added on first use.
    std::array<std::atomic<prometheus::Counter*>, 17> requests_{};
  };

  explicit GatewayMetrics(prometheus::Registry& registry);

  // The handle of `deployment`, made on first use; later calls look it up
  // under a lock, so callers on the request path keep the pointer.
  Deployment& ForDeployment(absl::string_view deployment);
  // hangar_gateway_queue_depth{deployment,revision}; keep the reference.
  prometheus::Gauge& QueueDepth(absl::string_view deployment, int64_t revision);

  // The same through a lookup, for calls refused before a handle is at hand.
  void RequestDone(absl::string_view deployment, absl::StatusCode code,
                   absl::Duration latency);
  // reason: "missing", "invalid", "not_loaded", "wrong_deployment".
  void AuthFailure(absl::string_view reason);

 private:
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Family<prometheus::Histogram>& first_token_;
  prometheus::Family<prometheus::Histogram>& queue_wait_;
  prometheus::Family<prometheus::Histogram>& batch_size_;
  prometheus::Family<prometheus::Counter>& prompt_tokens_;
  prometheus::Family<prometheus::Counter>& completion_tokens_;
  prometheus::Family<prometheus::Gauge>& queue_depth_;
  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Family<prometheus::Counter>& auth_failures_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Deployment>> deployments_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace hangar::gateway

#endif  // HANGAR_SERVICES_GATEWAY_GATEWAY_METRICS_H_
