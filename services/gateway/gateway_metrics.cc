#include "services/gateway/gateway_metrics.h"

#include <string>
#include <utility>
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

GatewayMetrics::Deployment::Deployment(GatewayMetrics& owner, std::string name)
    : owner_(owner),
      name_(std::move(name)),
      latency_(
          owner.latency_.Add({{"deployment", name_}}, LatencyBucketsSeconds())),
      first_token_(owner.first_token_.Add({{"deployment", name_}},
                                          LatencyBucketsSeconds())),
      queue_wait_(owner.queue_wait_.Add({{"deployment", name_}},
                                        LatencyBucketsSeconds())),
      batch_size_(
          owner.batch_size_.Add({{"deployment", name_}}, BatchBuckets())),
      prompt_tokens_(owner.prompt_tokens_.Add({{"deployment", name_}})),
      completion_tokens_(owner.completion_tokens_.Add({{"deployment", name_}})),
      retries_(owner.retries_.Add({{"deployment", name_}})) {}

void GatewayMetrics::Deployment::RequestDone(absl::StatusCode code,
                                             absl::Duration latency) {
  const size_t index = static_cast<size_t>(code);
  prometheus::Counter* counter = nullptr;
  if (index < requests_.size()) {
    counter = requests_[index].load(std::memory_order_acquire);
  }
  if (counter == nullptr) {
    // Family::Add returns the same child for the same labels, so two
    // threads racing here store the same pointer.
    counter = &owner_.requests_.Add(
        {{"deployment", name_}, {"code", absl::StatusCodeToString(code)}});
    if (index < requests_.size()) {
      requests_[index].store(counter, std::memory_order_release);
    }
  }
  counter->Increment();
  latency_.Observe(absl::ToDoubleSeconds(latency));
}

void GatewayMetrics::Deployment::FirstToken(absl::Duration latency) {
  first_token_.Observe(absl::ToDoubleSeconds(latency));
}

void GatewayMetrics::Deployment::QueueWait(absl::Duration wait) {
  queue_wait_.Observe(absl::ToDoubleSeconds(wait));
}

void GatewayMetrics::Deployment::BatchFormed(int size) {
  batch_size_.Observe(size);
}

void GatewayMetrics::Deployment::Tokens(int64_t prompt, int64_t completion) {
  prompt_tokens_.Increment(static_cast<double>(prompt));
  completion_tokens_.Increment(static_cast<double>(completion));
}

void GatewayMetrics::Deployment::Retry() { retries_.Increment(); }

GatewayMetrics::Deployment& GatewayMetrics::ForDeployment(
    absl::string_view deployment) {
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Deployment>& handle = deployments_[deployment];
  if (handle == nullptr) {
    handle.reset(new Deployment(*this, std::string(deployment)));
  }
  return *handle;
}

prometheus::Gauge& GatewayMetrics::QueueDepth(absl::string_view deployment,
                                              int64_t revision) {
  return queue_depth_.Add({{"deployment", std::string(deployment)},
                           {"revision", std::to_string(revision)}});
}

void GatewayMetrics::RequestDone(absl::string_view deployment,
                                 absl::StatusCode code,
                                 absl::Duration latency) {
  ForDeployment(deployment).RequestDone(code, latency);
}

void GatewayMetrics::AuthFailure(absl::string_view reason) {
  auth_failures_.Add({{"reason", std::string(reason)}}).Increment();
}

}  // namespace hangar::gateway
