#include "services/runner/runner_metrics.h"

#include "common/metrics/metrics.h"

namespace hangar::runner {
namespace {

// Throughput is averaged over this much recent time.
constexpr absl::Duration kWindow = absl::Seconds(5);

std::vector<double> BatchBuckets() {
  return {1, 2, 4, 8, 16, 32, 64, 128, 256};
}

}  // namespace

RunnerMetrics::RunnerMetrics(prometheus::Registry& registry)
    : prompt_tokens_(prometheus::BuildCounter()
                         .Name("hangar_runner_prompt_tokens_total")
                         .Help("Prompt tokens admitted.")
                         .Register(registry)
                         .Add({})),
      generated_tokens_(prometheus::BuildCounter()
                            .Name("hangar_runner_generated_tokens_total")
                            .Help("Tokens generated.")
                            .Register(registry)
                            .Add({})),
      sequences_(prometheus::BuildCounter()
                     .Name("hangar_runner_sequences_total")
                     .Help("Sequences finished, by finish reason.")
                     .Register(registry)),
      time_to_first_token_(
          prometheus::BuildHistogram()
              .Name("hangar_runner_time_to_first_token_seconds")
              .Help("From submission to the first generated token.")
              .Register(registry)
              .Add({}, LatencyBucketsSeconds())),
      step_seconds_(prometheus::BuildHistogram()
                        .Name("hangar_runner_step_seconds")
                        .Help("Duration of one batched forward pass.")
                        .Register(registry)
                        .Add({}, LatencyBucketsSeconds())),
      batch_size_(prometheus::BuildHistogram()
                      .Name("hangar_runner_batch_size")
                      .Help("Sequences decoded together per step.")
                      .Register(registry)
                      .Add({}, BatchBuckets())),
      occupancy_(prometheus::BuildGauge()
                     .Name("hangar_runner_batch_occupancy_ratio")
                     .Help("Active sequences divided by batch capacity.")
                     .Register(registry)
                     .Add({})),
      queue_depth_(prometheus::BuildGauge()
                       .Name("hangar_runner_queue_depth")
                       .Help("Sequences waiting for a batch slot.")
                       .Register(registry)
                       .Add({})),
      tokens_per_second_(prometheus::BuildGauge()
                             .Name("hangar_runner_tokens_per_second")
                             .Help("Generated tokens per second, recent.")
                             .Register(registry)
                             .Add({})) {}

void RunnerMetrics::RecordStep(absl::Time now, absl::Duration step,
                               int batch_size, int generated_tokens) {
  step_seconds_.Observe(absl::ToDoubleSeconds(step));
  batch_size_.Observe(batch_size);
  generated_tokens_.Increment(generated_tokens);
  absl::MutexLock lock(&mu_);
  window_.emplace_back(now, generated_tokens);
  while (!window_.empty() && window_.front().first < now - kWindow) {
    window_.pop_front();
  }
  int tokens = 0;
  for (const auto& [time, count] : window_) tokens += count;
  tokens_per_second_.Set(tokens / absl::ToDoubleSeconds(kWindow));
}

void RunnerMetrics::RecordFirstToken(absl::Duration since_submit) {
  time_to_first_token_.Observe(absl::ToDoubleSeconds(since_submit));
}

void RunnerMetrics::RecordPrompt(int tokens) {
  prompt_tokens_.Increment(tokens);
}

void RunnerMetrics::RecordFinish(const char* reason) {
  sequences_.Add({{"reason", reason}}).Increment();
}

void RunnerMetrics::SetOccupancy(int active, int capacity, int queued) {
  occupancy_.Set(capacity > 0 ? static_cast<double>(active) / capacity : 0);
  queue_depth_.Set(queued);
}

double RunnerMetrics::tokens_per_second() const {
  return tokens_per_second_.Value();
}

}  // namespace hangar::runner
