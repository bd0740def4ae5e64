#include "services/scheduler/scheduler_metrics.h"

#include "absl/strings/match.h"

namespace hangar::scheduler {

std::string PendingReasonClass(absl::string_view reason) {
  if (absl::StrContains(reason, "GiB GPUs") ||
      absl::StrContains(reason, "MiB GPUs")) {
    return "memory";
  }
  if (absl::StrContains(reason, "have at most")) return "too_large";
  if (absl::StartsWith(reason, "no node")) return "capacity";
  return "other";
}

SchedulerMetrics::SchedulerMetrics(prometheus::Registry& registry)
    : pool_gpus_(prometheus::BuildGauge()
                     .Name("hangar_scheduler_pool_gpus")
                     .Help("GPUs of each pool, total and allocated.")
                     .Register(registry)),
      pending_(prometheus::BuildGauge()
                   .Name("hangar_scheduler_pending_items")
                   .Help("Replicas and jobs waiting for GPUs, by reason.")
                   .Register(registry)),
      placements_(prometheus::BuildCounter()
                      .Name("hangar_scheduler_placements_total")
                      .Help("Placement decisions, by result.")
                      .Register(registry)),
      placement_seconds_(prometheus::BuildHistogram()
                             .Name("hangar_scheduler_placement_seconds")
                             .Help("Time of one placement decision.")
                             .Register(registry)
                             .Add({},
                                  prometheus::Histogram::BucketBoundaries{
                                      1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1})),
      replicas_(prometheus::BuildGauge()
                    .Name("hangar_scheduler_replicas")
                    .Help("Replicas, by state.")
                    .Register(registry)),
      restarts_(prometheus::BuildCounter()
                    .Name("hangar_scheduler_replica_restarts_total")
                    .Help("Replica restarts after a runner died.")
                    .Register(registry)
                    .Add({})),
      decisions_(prometheus::BuildCounter()
                     .Name("hangar_scheduler_autoscaler_decisions_total")
                     .Help("Autoscaler resizes, by direction.")
                     .Register(registry)),
      load_(prometheus::BuildGauge()
                .Name("hangar_scheduler_autoscaler_load")
                .Help("Load (queued + in flight) of each replica set at its "
                      "last evaluation.")
                .Register(registry)) {}

void SchedulerMetrics::SetPoolGpus(const std::string& pool, int total,
                                   int allocated) {
  pool_gpus_.Add({{"pool", pool}, {"kind", "total"}}).Set(total);
  pool_gpus_.Add({{"pool", pool}, {"kind", "allocated"}}).Set(allocated);
}

void SchedulerMetrics::SetPending(const std::map<std::string, int>& counts) {
  for (const char* reason : {"capacity", "memory", "too_large", "other"}) {
    auto it = counts.find(reason);
    pending_.Add({{"reason", reason}}).Set(it == counts.end() ? 0 : it->second);
  }
}

void SchedulerMetrics::Placement(bool placed, double seconds) {
  placements_.Add({{"result", placed ? "placed" : "pending"}}).Increment();
  placement_seconds_.Observe(seconds);
}

void SchedulerMetrics::SetReplicas(const std::map<std::string, int>& counts) {
  for (const char* state :
       {"PENDING", "STARTING", "READY", "DRAINING", "STOPPED", "FAILED"}) {
    auto it = counts.find(state);
    replicas_.Add({{"state", state}}).Set(it == counts.end() ? 0 : it->second);
  }
}

void SchedulerMetrics::Restarts(int64_t count) {
  if (count > 0) restarts_.Increment(static_cast<double>(count));
}

void SchedulerMetrics::AutoscalerDecision(const std::string& set, bool up,
                                          int64_t load) {
  decisions_.Add({{"direction", up ? "up" : "down"}}).Increment();
  AutoscalerLoad(set, load);
}

void SchedulerMetrics::AutoscalerLoad(const std::string& set, int64_t load) {
  load_.Add({{"set", set}}).Set(static_cast<double>(load));
}

}  // namespace hangar::scheduler
