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
#ifndef HANGAR_SERVICES_GATEWAY_GATEWAY_METRICS_H_
#define HANGAR_SERVICES_GATEWAY_GATEWAY_METRICS_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace hangar::gateway {

class GatewayMetrics {
 public:
  explicit GatewayMetrics(prometheus::Registry& registry);

  void RequestDone(absl::string_view deployment, absl::string_view code,
                   absl::Duration latency);
  void FirstToken(absl::string_view deployment, absl::Duration latency);
  void QueueWait(absl::string_view deployment, absl::Duration wait);
  void BatchFormed(absl::string_view deployment, int size);
  void Tokens(absl::string_view deployment, int64_t prompt, int64_t completion);
  void QueueDepth(absl::string_view deployment, int64_t revision,
                  int64_t depth);
  void Retry(absl::string_view deployment);
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
};

}  // namespace hangar::gateway

#endif  // HANGAR_SERVICES_GATEWAY_GATEWAY_METRICS_H_
