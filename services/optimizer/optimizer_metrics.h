// The optimizer's Prometheus figures:
//   hangar_optimizer_jobs_total{state,recipe}        jobs that reached a state
//   hangar_optimizer_bytes_converted_total{recipe}   artifact bytes written
//   hangar_optimizer_job_duration_seconds{recipe}    create -> end, per job
//   hangar_optimizer_quality{recipe,figure}          the last report's
//       max_abs_logit_error, mean_kl, greedy_agreement, size_ratio
#ifndef HANGAR_SERVICES_OPTIMIZER_OPTIMIZER_METRICS_H_
#define HANGAR_SERVICES_OPTIMIZER_OPTIMIZER_METRICS_H_

#include <string>

#include "hangar/v1/optimizer.pb.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace hangar::optimizer {

class OptimizerMetrics {
 public:
  explicit OptimizerMetrics(prometheus::Registry& registry);

  // A job entered `state` (counted once per state).
  void JobState(const std::string& recipe, v1::JobState state);
  // A job ended: its duration, bytes and quality.
  void JobEnded(const std::string& recipe, double seconds, int64_t bytes,
                const v1::QualityReport* quality);

 private:
  prometheus::Family<prometheus::Counter>& jobs_;
  prometheus::Family<prometheus::Counter>& bytes_;
  prometheus::Family<prometheus::Histogram>& duration_;
  prometheus::Family<prometheus::Gauge>& quality_;
};

}  // namespace hangar::optimizer

#endif  // HANGAR_SERVICES_OPTIMIZER_OPTIMIZER_METRICS_H_
