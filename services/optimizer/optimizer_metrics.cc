#include "services/optimizer/optimizer_metrics.h"

namespace hangar::optimizer {

OptimizerMetrics::OptimizerMetrics(prometheus::Registry& registry)
    : jobs_(
          prometheus::BuildCounter()
              .Name("hangar_optimizer_jobs_total")
              .Help(
                  "Optimization jobs that reached a state, by state and recipe")
              .Register(registry)),
      bytes_(prometheus::BuildCounter()
                 .Name("hangar_optimizer_bytes_converted_total")
                 .Help("Artifact bytes written by finished conversions")
                 .Register(registry)),
      duration_(prometheus::BuildHistogram()
                    .Name("hangar_optimizer_job_duration_seconds")
                    .Help("Optimization job duration, create to end")
                    .Register(registry)),
      quality_(prometheus::BuildGauge()
                   .Name("hangar_optimizer_quality")
                   .Help("The last quality report per recipe "
                         "(max_abs_logit_error, mean_kl, greedy_agreement, "
                         "size_ratio)")
                   .Register(registry)) {}

void OptimizerMetrics::JobState(const std::string& recipe, v1::JobState state) {
  jobs_.Add({{"state", v1::JobState_Name(state)}, {"recipe", recipe}})
      .Increment();
}

void OptimizerMetrics::JobEnded(const std::string& recipe, double seconds,
                                int64_t bytes,
                                const v1::QualityReport* quality) {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      1, 5, 15, 60, 300, 900, 3600, 14400};
  duration_.Add({{"recipe", recipe}}, kBuckets).Observe(seconds);
  if (bytes > 0) bytes_.Add({{"recipe", recipe}}).Increment(double(bytes));
  if (quality == nullptr) return;
  quality_.Add({{"recipe", recipe}, {"figure", "max_abs_logit_error"}})
      .Set(quality->max_abs_logit_error());
  quality_.Add({{"recipe", recipe}, {"figure", "mean_kl"}})
      .Set(quality->mean_kl());
  quality_.Add({{"recipe", recipe}, {"figure", "greedy_agreement"}})
      .Set(quality->greedy_agreement());
  quality_.Add({{"recipe", recipe}, {"figure", "size_ratio"}})
      .Set(quality->size_ratio());
}

}  // namespace hangar::optimizer
