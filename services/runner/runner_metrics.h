// The runner's own metrics, beside the standard RPC ones:
//
//   hangar_runner_prompt_tokens_total            counter
//   hangar_runner_generated_tokens_total         counter
//   hangar_runner_sequences_total{reason}        counter, by finish reason:
//                                                length, stop, eos, cancelled,
//                                                deadline_exceeded, error
//   hangar_runner_time_to_first_token_seconds    histogram (submit -> token)
//   hangar_runner_step_seconds                   histogram (one forward pass)
//   hangar_runner_batch_size                     histogram (sequences / step)
//   hangar_runner_batch_occupancy_ratio          gauge (active / capacity)
//   hangar_runner_queue_depth                    gauge (waiting for a slot)
//   hangar_runner_tokens_per_second              gauge (generated tokens over
//                                                the last few seconds)
#ifndef HANGAR_SERVICES_RUNNER_RUNNER_METRICS_H_
#define HANGAR_SERVICES_RUNNER_RUNNER_METRICS_H_

#include <deque>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace hangar::runner {

class RunnerMetrics {
 public:
  explicit RunnerMetrics(prometheus::Registry& registry);

  void RecordStep(absl::Time now, absl::Duration step, int batch_size,
                  int generated_tokens);
  void RecordFirstToken(absl::Duration since_submit);
  void RecordPrompt(int tokens);
  void RecordFinish(const char* reason);
  void SetOccupancy(int active, int capacity, int queued);

  double tokens_per_second() const;

 private:
  prometheus::Counter& prompt_tokens_;
  prometheus::Counter& generated_tokens_;
  prometheus::Family<prometheus::Counter>& sequences_;
  prometheus::Histogram& time_to_first_token_;
  prometheus::Histogram& step_seconds_;
  prometheus::Histogram& batch_size_;
  prometheus::Gauge& occupancy_;
  prometheus::Gauge& queue_depth_;
  prometheus::Gauge& tokens_per_second_;

  mutable absl::Mutex mu_;  // Protects window_.
  // (step end time, tokens generated) over the last kWindow.
  std::deque<std::pair<absl::Time, int>> window_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hangar::runner

#endif  // HANGAR_SERVICES_RUNNER_RUNNER_METRICS_H_
