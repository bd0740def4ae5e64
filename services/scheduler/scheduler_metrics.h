// The scheduler's Prometheus series (on the server's /metrics):
//
//   hangar_scheduler_pool_gpus{pool, kind="total"|"allocated"}
//   hangar_scheduler_pending_items{reason="capacity"|"memory"|"too_large"|
//                                  "other"}
//   hangar_scheduler_placements_total{result="placed"|"pending"}
//   hangar_scheduler_placement_seconds            (histogram)
//   hangar_scheduler_replicas{state="READY"|...}
//   hangar_scheduler_replica_restarts_total
//   hangar_scheduler_autoscaler_decisions_total{direction="up"|"down"}
//   hangar_scheduler_autoscaler_load{set}         load at the last evaluation
//
// The Scheduler reports into it; a null SchedulerMetrics* turns reporting
// off. Thread-safe (prometheus-cpp series are).
#ifndef HANGAR_SERVICES_SCHEDULER_SCHEDULER_METRICS_H_
#define HANGAR_SERVICES_SCHEDULER_SCHEDULER_METRICS_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/strings/string_view.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace hangar::scheduler {

// "capacity", "memory", "too_large" or "other" for a Placer reason.
std::string PendingReasonClass(absl::string_view reason);

class SchedulerMetrics {
 public:
  explicit SchedulerMetrics(prometheus::Registry& registry);

  void SetPoolGpus(const std::string& pool, int total, int allocated);
  // Pending items per reason class (classes absent from `counts` read 0).
  void SetPending(const std::map<std::string, int>& counts);
  void Placement(bool placed, double seconds);
  // Replicas per state name (states absent from `counts` read 0).
  void SetReplicas(const std::map<std::string, int>& counts);
  void Restarts(int64_t count);
  void AutoscalerDecision(const std::string& set, bool up, int64_t load);
  void AutoscalerLoad(const std::string& set, int64_t load);

 private:
  prometheus::Family<prometheus::Gauge>& pool_gpus_;
  prometheus::Family<prometheus::Gauge>& pending_;
  prometheus::Family<prometheus::Counter>& placements_;
  prometheus::Histogram& placement_seconds_;
  prometheus::Family<prometheus::Gauge>& replicas_;
  prometheus::Counter& restarts_;
  prometheus::Family<prometheus::Counter>& decisions_;
  prometheus::Family<prometheus::Gauge>& load_;
};

}  // namespace hangar::scheduler

#endif  // HANGAR_SERVICES_SCHEDULER_SCHEDULER_METRICS_H_
