// The autoscaler: how many replicas each replica set should run, from the
// load the gateways report.
//
// Signal. Every gateway reports, per deployment revision (a "set" here), its
// queued + in-flight requests. A report replaces that reporter's previous
// one and counts until it expires (report time + ttl), so a gateway that
// vanishes stops counting after its ttl instead of pinning the load. The
// set's load is the sum of its unexpired reports.
//
// Rule (DESIGN.md §4). desired = ceil(load / inference_batch_size) clamped to
// [min_replicas, max_replicas]. Against the current replica count:
//   - outside [min, max] (a new set, a changed policy): the bound, at once;
//   - desired > current: scale up only once desired > current has held for
//     scale_up_delay, to the smallest desired seen while it held;
//   - desired < current: scale down only once desired < current has held for
//     scale_down_delay, to the largest desired seen while it held;
//   - anything else, or a need that flips direction, resets both timers, so
//     a spike shorter than the delay or a sawtooth faster than it changes
//     nothing (no flapping).
// "Held" is observed at Evaluate calls: the service evaluates every set on a
// period and on every report. Every timer reads the injected Clock.
//
// Each Evaluate returns a ScalingDecision with the load, reporters and
// reason that drove it, for logs and metrics. Thread-safe.
//
//   ASSIGN_OR_RETURN(auto autoscaler, Autoscaler::Create({.clock = clock}));
//   RETURN_IF_ERROR(autoscaler->SetPolicy("dep-1/r2", policy));
//   RETURN_IF_ERROR(autoscaler->ReportLoad("dep-1/r2", "gw-a", 12, 4));
//   ASSIGN_OR_RETURN(ScalingDecision d, autoscaler->Evaluate("dep-1/r2", 1));
//   if (d.changed()) ResizeTo(d.target);
#ifndef HANGAR_SERVICES_SCHEDULER_AUTOSCALER_H_
#define HANGAR_SERVICES_SCHEDULER_AUTOSCALER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"

namespace hangar::scheduler {

inline constexpr int kMaxReplicas = 64;
inline constexpr int kMaxInferenceBatchSize = 256;
inline constexpr absl::Duration kMaxScaleDelay = absl::Hours(24);
inline constexpr absl::Duration kMaxReportTtl = absl::Hours(1);

struct ScalingPolicy {
  // In [0, 64].
  int min_replicas = 1;
  // In [max(1, min_replicas), 64].
  int max_replicas = 1;
  // Requests one replica serves at once, in [1, 256].
  int inference_batch_size = 1;
  // Each in [0, 24 h].
  absl::Duration scale_up_delay = absl::ZeroDuration();
  absl::Duration scale_down_delay = absl::ZeroDuration();
};

// INVALID_ARGUMENT "<field>: <rule>; was <value>" unless within the bounds.
absl::Status ValidateScalingPolicy(const ScalingPolicy& policy);

struct ScalingDecision {
  std::string set;
  absl::Time time;
  // Sum of the unexpired reports and how many reporters they came from.
  int64_t load = 0;
  int reporters = 0;
  // Replicas running when evaluated.
  int current = 0;
  // ceil(load / batch) clamped to [min, max]: what the load needs now.
  int desired = 0;
  // Replicas to run now, after the delays.
  int target = 0;
  // "scale up: load 20 needs 3 at batch 8, held 30s", "waiting ...", ...
  std::string reason;

  bool changed() const { return target != current; }
};

class Autoscaler {
 public:
  struct Options {
    // How long a report counts when ReportLoad gets no ttl; in (0, 1 h].
    absl::Duration default_report_ttl = absl::Seconds(5);

    // Injected for tests.
    Clock* clock = Clock::Real();
  };

  static absl::StatusOr<std::unique_ptr<Autoscaler>> Create(
      const Options& options);

  // Declares or updates a set's policy. A changed policy restarts the set's
  // timers; the same policy again changes nothing.
  absl::Status SetPolicy(absl::string_view set, const ScalingPolicy& policy);
  // Forgets the set, its reports and timers.
  void RemoveSet(absl::string_view set);

  // Records `reporter`'s load for `set` now, replacing its previous report.
  // Counts and ttl: queued, in_flight >= 0; ttl in (0, 1 h], or zero for the
  // default. Reports for a set without a policy are kept (a gateway may
  // report before the set is declared).
  absl::Status ReportLoad(absl::string_view set, absl::string_view reporter,
                          int64_t queued, int64_t in_flight,
                          absl::Duration ttl = absl::ZeroDuration());

  // The set's load now (unexpired reports summed).
  int64_t Load(absl::string_view set);

  // Decides for `set` given the replicas running now. NOT_FOUND without a
  // policy, INVALID_ARGUMENT for a negative count.
  absl::StatusOr<ScalingDecision> Evaluate(absl::string_view set,
                                           int current_replicas);

 private:
  struct Report {
    int64_t load = 0;
    absl::Time expires;
  };
  struct SetState {
    std::optional<ScalingPolicy> policy;
    absl::flat_hash_map<std::string, Report> reports;
    // Since when desired > current (resp. <) has held, and the smallest
    // (resp. largest) desired seen meanwhile.
    std::optional<absl::Time> up_since;
    int up_floor = 0;
    std::optional<absl::Time> down_since;
    int down_ceiling = 0;
  };

  explicit Autoscaler(const Options& options) : options_(options) {}

  // Drops expired reports; returns (load, reporters).
  static std::pair<int64_t, int> PruneAndSum(SetState& state, absl::Time now);

  const Options options_;
  absl::Mutex mu_;  // Guards sets_.
  absl::flat_hash_map<std::string, SetState> sets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hangar::scheduler

#endif  // HANGAR_SERVICES_SCHEDULER_AUTOSCALER_H_
