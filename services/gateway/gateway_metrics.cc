#include "services/gateway/gateway_metrics.h"

#include <string>
#include <vector>

#include "common/metrics/metrics.h"

namespace hangar::gateway {
namespace {

const std::vector<double>& BatchBuckets() {
  static const auto* buckets =
      new std::vector<double>{1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256};
  return *buckets;
}

}  // namespace

GatewayMetrics::GatewayMetrics(prometheus::Registry& registry)
    : requests_(prometheus::BuildCounter()
                    .Name("hangar_gateway_requests_total")
                    .Help("Inference calls answered, by deployment and code.")
                    .Register(registry)),
      latency_(prometheus::BuildHistogram()
                   .Name("hangar_gateway_request_duration_seconds")
                   .Help("End-to-end latency of inference calls.")
                   .Register(registry)),
      first_token_(prometheus::BuildHistogram()
                       .Name("hangar_gateway_time_to_first_token_seconds")
                       .Help("From the call's arrival to its first text.")
                       .Register(registry)),
      queue_wait_(prometheus::BuildHistogram()
                      .Name("hangar_gateway_queue_wait_seconds")
                      .Help("Time a request waited in its batcher's queue.")
                      .Register(registry)),
      batch_size_(prometheus::BuildHistogram()
                      .Name("hangar_gateway_batch_size")
                      .Help("Requests per dispatch (batches actually formed).")
                      .Register(registry)),
      prompt_tokens_(prometheus::BuildCounter()
                         .Name("hangar_gateway_prompt_tokens_total")
                         .Help("Prompt tokens of finished requests.")
                         .Register(registry)),
      completion_tokens_(prometheus::BuildCounter()
                             .Name("hangar_gateway_completion_tokens_total")
                             .Help("Generated tokens of finished requests.")
                             .Register(registry)),
      queue_depth_(prometheus::BuildGauge()
                       .Name("hangar_gateway_queue_depth")
                       .Help("Requests queued per deployment revision.")
                       .Register(registry)),
      retries_(prometheus::BuildCounter()
                   .Name("hangar_gateway_retries_total")
                   .Help("Requests re-dispatched after a replica failed.")
                   .Register(registry)),
      auth_failures_(prometheus::BuildCounter()
                         .Name("hangar_gateway_auth_failures_total")
                         .Help("Calls refused by API-key checks, by reason.")
                         .Register(registry)) {}

void GatewayMetrics::RequestDone(absl::string_view deployment,
                                 absl::string_view code,
                                 absl::Duration latency) {
  requests_
      .Add({{"deployment", std::string(deployment)},
            {"code", std::string(code)}})
      .Increment();
  latency_
      .Add({{"deployment", std::string(deployment)}}, LatencyBucketsSeconds())
      .Observe(absl::ToDoubleSeconds(latency));
}

void GatewayMetrics::FirstToken(absl::string_view deployment,
                                absl::Duration latency) {
  first_token_
      .Add({{"deployment", std::string(deployment)}}, LatencyBucketsSeconds())
      .Observe(absl::ToDoubleSeconds(latency));
}

void GatewayMetrics::QueueWait(absl::string_view deployment,
                               absl::Duration wait) {
  queue_wait_
      .Add({{"deployment", std::string(deployment)}}, LatencyBucketsSeconds())
      .Observe(absl::ToDoubleSeconds(wait));
}

void GatewayMetrics::BatchFormed(absl::string_view deployment, int size) {
  batch_size_.Add({{"deployment", std::string(deployment)}}, BatchBuckets())
      .Observe(size);
}

void GatewayMetrics::Tokens(absl::string_view deployment, int64_t prompt,
                            int64_t completion) {
  prompt_tokens_.Add({{"deployment", std::string(deployment)}})
      .Increment(static_cast<double>(prompt));
  completion_tokens_.Add({{"deployment", std::string(deployment)}})
      .Increment(static_cast<double>(completion));
}

void GatewayMetrics::QueueDepth(absl::string_view deployment, int64_t revision,
                                int64_t depth) {
  queue_depth_
      .Add({{"deployment", std::string(deployment)},
            {"revision", std::to_string(revision)}})
      .Set(static_cast<double>(depth));
}

void GatewayMetrics::Retry(absl::string_view deployment) {
  retries_.Add({{"deployment", std::string(deployment)}}).Increment();
}

void GatewayMetrics::AuthFailure(absl::string_view reason) {
  auth_failures_.Add({{"reason", std::string(reason)}}).Increment();
}

}  // namespace hangar::gateway
