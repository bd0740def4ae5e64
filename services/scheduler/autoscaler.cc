#include "services/scheduler/autoscaler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace hangar::scheduler {
namespace {

bool SamePolicy(const ScalingPolicy& a, const ScalingPolicy& b) {
  return a.min_replicas == b.min_replicas && a.max_replicas == b.max_replicas &&
         a.inference_batch_size == b.inference_batch_size &&
         a.scale_up_delay == b.scale_up_delay &&
         a.scale_down_delay == b.scale_down_delay;
}

absl::Status CheckDelay(absl::string_view field, absl::Duration delay) {
  if (delay < absl::ZeroDuration() || delay > kMaxScaleDelay) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": must be in [0s, 24h]; was ", absl::FormatDuration(delay)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateScalingPolicy(const ScalingPolicy& policy) {
  if (policy.min_replicas < 0 || policy.min_replicas > kMaxReplicas) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_replicas: must be in [0, ", kMaxReplicas, "]; was ",
                     policy.min_replicas));
  }
  const int lowest_max = std::max(1, policy.min_replicas);
  if (policy.max_replicas < lowest_max || policy.max_replicas > kMaxReplicas) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_replicas: must be in [max(1, min_replicas) = ", lowest_max, ", ",
        kMaxReplicas, "]; was ", policy.max_replicas));
  }
  if (policy.inference_batch_size < 1 ||
      policy.inference_batch_size > kMaxInferenceBatchSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "inference_batch_size: must be in [1, ", kMaxInferenceBatchSize,
        "]; was ", policy.inference_batch_size));
  }
  if (absl::Status s = CheckDelay("scale_up_delay", policy.scale_up_delay);
      !s.ok()) {
    return s;
  }
  return CheckDelay("scale_down_delay", policy.scale_down_delay);
}

absl::StatusOr<std::unique_ptr<Autoscaler>> Autoscaler::Create(
    const Options& options) {
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("clock: required; was null");
  }
  if (options.default_report_ttl <= absl::ZeroDuration() ||
      options.default_report_ttl > kMaxReportTtl) {
    return absl::InvalidArgumentError(
        absl::StrCat("default_report_ttl: must be in (0s, 1h]; was ",
                     absl::FormatDuration(options.default_report_ttl)));
  }
  return std::unique_ptr<Autoscaler>(new Autoscaler(options));
}

absl::Status Autoscaler::SetPolicy(absl::string_view set,
                                   const ScalingPolicy& policy) {
  if (set.empty()) return absl::InvalidArgumentError("set: required; was \"\"");
  if (absl::Status status = ValidateScalingPolicy(policy); !status.ok()) {
    return status;
  }
  absl::MutexLock lock(&mu_);
  SetState& state = sets_[set];
  if (state.policy.has_value() && SamePolicy(*state.policy, policy)) {
    return absl::OkStatus();
  }
  state.policy = policy;
  state.up_since.reset();
  state.down_since.reset();
  return absl::OkStatus();
}

void Autoscaler::RemoveSet(absl::string_view set) {
  absl::MutexLock lock(&mu_);
  sets_.erase(set);
}

absl::Status Autoscaler::ReportLoad(absl::string_view set,
                                    absl::string_view reporter, int64_t queued,
                                    int64_t in_flight, absl::Duration ttl) {
  if (set.empty()) return absl::InvalidArgumentError("set: required; was \"\"");
  if (reporter.empty()) {
    return absl::InvalidArgumentError("reporter: required; was \"\"");
  }
  if (queued < 0 || in_flight < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "queued, in_flight: must be >= 0; were ", queued, ", ", in_flight));
  }
  if (ttl == absl::ZeroDuration()) ttl = options_.default_report_ttl;
  if (ttl < absl::ZeroDuration() || ttl > kMaxReportTtl) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ttl: must be in (0s, 1h]; was ", absl::FormatDuration(ttl)));
  }
  const absl::Time now = options_.clock->Now();
  absl::MutexLock lock(&mu_);
  sets_[set].reports[reporter] =
      Report{.load = queued + in_flight, .expires = now + ttl};
  return absl::OkStatus();
}

std::pair<int64_t, int> Autoscaler::PruneAndSum(SetState& state,
                                                absl::Time now) {
  int64_t load = 0;
  int reporters = 0;
  for (auto it = state.reports.begin(); it != state.reports.end();) {
    if (it->second.expires <= now) {
      state.reports.erase(it++);
      continue;
    }
    load += it->second.load;
    ++reporters;
    ++it;
  }
  return {load, reporters};
}

int64_t Autoscaler::Load(absl::string_view set) {
  const absl::Time now = options_.clock->Now();
  absl::MutexLock lock(&mu_);
  auto it = sets_.find(set);
  if (it == sets_.end()) return 0;
  return PruneAndSum(it->second, now).first;
}

absl::StatusOr<ScalingDecision> Autoscaler::Evaluate(absl::string_view set,
                                                     int current_replicas) {
  if (current_replicas < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("current_replicas: must be >= 0; was ", current_replicas));
  }
  const absl::Time now = options_.clock->Now();
  absl::MutexLock lock(&mu_);
  auto it = sets_.find(set);
  if (it == sets_.end() || !it->second.policy.has_value()) {
    return absl::NotFoundError(
        absl::StrCat("set \"", set, "\" has no scaling policy"));
  }
  SetState& state = it->second;
  const ScalingPolicy& policy = *state.policy;
  ScalingDecision decision;
  decision.set = std::string(set);
  decision.time = now;
  std::tie(decision.load, decision.reporters) = PruneAndSum(state, now);
  decision.current = current_replicas;
  const int64_t needed = (decision.load + policy.inference_batch_size - 1) /
                         policy.inference_batch_size;
  decision.desired = static_cast<int>(
      std::clamp<int64_t>(needed, policy.min_replicas, policy.max_replicas));
  const std::string need = absl::StrCat(
      "load ", decision.load, " needs ", needed, " at batch ",
      policy.inference_batch_size, ", clamped to [", policy.min_replicas, ", ",
      policy.max_replicas, "] = ", decision.desired);
  decision.target = current_replicas;

  if (current_replicas < policy.min_replicas ||
      current_replicas > policy.max_replicas) {
    decision.target =
        std::clamp(current_replicas, policy.min_replicas, policy.max_replicas);
    decision.reason = absl::StrCat(current_replicas < policy.min_replicas
                                       ? "raise to min_replicas "
                                       : "lower to max_replicas ",
                                   decision.target, " at once; ", need);
    state.up_since.reset();
    state.down_since.reset();
    return decision;
  }
  if (decision.desired > current_replicas) {
    state.down_since.reset();
    if (!state.up_since.has_value()) {
      state.up_since = now;
      state.up_floor = decision.desired;
    } else {
      state.up_floor = std::min(state.up_floor, decision.desired);
    }
    const absl::Duration held = now - *state.up_since;
    if (held >= policy.scale_up_delay) {
      decision.target = state.up_floor;
      decision.reason =
          absl::StrCat("scale up to ", decision.target, ": ", need, "; held ",
                       absl::FormatDuration(held));
      state.up_since.reset();
    } else {
      decision.reason = absl::StrCat(
          "waiting to scale up: ", need, "; held ", absl::FormatDuration(held),
          " of ", absl::FormatDuration(policy.scale_up_delay));
    }
    return decision;
  }
  if (decision.desired < current_replicas) {
    state.up_since.reset();
    if (!state.down_since.has_value()) {
      state.down_since = now;
      state.down_ceiling = decision.desired;
    } else {
      state.down_ceiling = std::max(state.down_ceiling, decision.desired);
    }
    const absl::Duration held = now - *state.down_since;
    if (held >= policy.scale_down_delay) {
      decision.target = state.down_ceiling;
      decision.reason =
          absl::StrCat("scale down to ", decision.target, ": ", need, "; held ",
                       absl::FormatDuration(held));
      state.down_since.reset();
    } else {
      decision.reason =
          absl::StrCat("waiting to scale down: ", need, "; held ",
                       absl::FormatDuration(held), " of ",
                       absl::FormatDuration(policy.scale_down_delay));
    }
    return decision;
  }
  state.up_since.reset();
  state.down_since.reset();
  decision.reason = absl::StrCat("steady: ", need);
  return decision;
}

}  // namespace hangar::scheduler
