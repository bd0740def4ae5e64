#include "services/scheduler/placer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace hangar::scheduler {
namespace {

std::string Plural(int64_t count, absl::string_view one,
                   absl::string_view many) {
  return absl::StrCat(count, " ", count == 1 ? one : many);
}

}  // namespace

std::vector<NodeSpec> NodesFromConfig(const config::HardwareConfig& config) {
  std::vector<NodeSpec> nodes;
  for (const config::PoolConfig& pool : config.pools()) {
    for (int i = 0; i < pool.node_count(); ++i) {
      nodes.push_back(NodeSpec{.name = absl::StrCat(pool.name(), "-", i),
                               .pool = pool.name(),
                               .gpu_model = pool.gpu_model(),
                               .gpu_count = pool.gpus_per_node(),
                               .gpu_memory_bytes = pool.gpu_memory_bytes(),
                               .cpu_milli = 0});
    }
  }
  return nodes;
}

std::string FormatBytes(int64_t bytes) {
  constexpr int64_t kMiB = int64_t{1} << 20;
  constexpr int64_t kGiB = int64_t{1} << 30;
  auto format = [](int64_t value, int64_t unit, absl::string_view name) {
    if (value % unit == 0) return absl::StrCat(value / unit, " ", name);
    return absl::StrFormat("%.1f %s", static_cast<double>(value) / unit, name);
  };
  if (bytes >= kGiB) return format(bytes, kGiB, "GiB");
  if (bytes >= kMiB) return format(bytes, kMiB, "MiB");
  return Plural(bytes, "byte", "bytes");
}

absl::StatusOr<std::unique_ptr<Placer>> Placer::Create(
    const Options& options, const std::vector<NodeSpec>& nodes) {
  PolicyOptions policy_options{.mix = options.mix};
  absl::StatusOr<std::unique_ptr<PlacementPolicy>> policy =
      MakePlacementPolicy(options.policy, policy_options);
  if (!policy.ok()) return policy.status();
  if (options.mix.window < 1 || options.mix.max_shapes < 1 ||
      options.mix.refresh < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("mix: window, max_shapes and refresh must be >= 1; were ",
                     options.mix.window, ", ", options.mix.max_shapes, ", ",
                     options.mix.refresh));
  }
  if (nodes.empty()) {
    return absl::InvalidArgumentError("nodes: at least one is required");
  }
  std::unique_ptr<Placer> placer(
      new Placer(std::move(policy).value(), options.mix));
  absl::MutexLock lock(&placer->mu_);
  for (const NodeSpec& node : nodes) {
    absl::StatusOr<int> added = placer->cluster_.AddNode(node);
    if (!added.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "nodes: \"", node.name, "\": ", added.status().message()));
    }
  }
  return placer;
}

absl::StatusOr<Placer::Decision> Placer::Submit(const Request& request) {
  absl::MutexLock lock(&mu_);
  return PlaceLocked(request, /*enqueue=*/true);
}

absl::StatusOr<Placer::Decision> Placer::TryPlace(const Request& request) {
  absl::MutexLock lock(&mu_);
  return PlaceLocked(request, /*enqueue=*/false);
}

absl::StatusOr<Placer::Decision> Placer::PlaceLocked(const Request& request,
                                                     bool enqueue) {
  if (absl::Status status = ValidateRequest(request); !status.ok()) {
    return status;
  }
  if (!cluster_.HasPool(request.pool)) {
    return absl::NotFoundError(
        absl::StrCat("pool \"", request.pool, "\" does not exist"));
  }
  if (cluster_.Find(request.workload) != nullptr ||
      pending_keys_.contains(request.workload)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "workload \"", request.workload, "\" is already placed or pending"));
  }
  mix_.Observe(ShapeOf(request));
  policy_->Observe(request);
  Decision decision;
  std::optional<Placement> placement =
      policy_->Choose(cluster_, request, cluster_.NodesOfPool(request.pool));
  if (placement.has_value()) {
    if (absl::Status status = cluster_.Allocate(request, *placement);
        !status.ok()) {
      return absl::InternalError(
          absl::StrCat("policy ", policy_->name(),
                       " chose a bad placement: ", status.message()));
    }
    decision.placed = true;
    decision.placement = *std::move(placement);
    return decision;
  }
  decision.reason = ReasonLocked(request);
  if (enqueue) {
    QueueKey key{static_cast<int>(request.priority), request.enqueue_time,
                 sequence_++};
    pending_.emplace(key, PendingItem{request, decision.reason});
    pending_keys_.emplace(request.workload, key);
  }
  return decision;
}

std::string Placer::InfeasibleReasonLocked(const Request& request) const {
  const std::vector<int>& nodes = cluster_.NodesOfPool(request.pool);
  int max_gpus = 0;
  int64_t max_memory = 0;
  bool memory_unchecked = false;
  bool cpu_untracked = false;
  int64_t max_cpu = 0;
  for (int index : nodes) {
    const NodeSpec& spec = cluster_.nodes()[index].spec;
    max_gpus = std::max(max_gpus, spec.gpu_count);
    if (spec.gpu_memory_bytes == 0) memory_unchecked = true;
    max_memory = std::max(max_memory, spec.gpu_memory_bytes);
    if (spec.cpu_milli == 0) cpu_untracked = true;
    max_cpu = std::max(max_cpu, spec.cpu_milli);
  }
  const int64_t per_gpu = MemoryPerGpu(request);
  const bool needs_gpu = request.gpus > 0 || request.milli > 0;
  if (needs_gpu && !memory_unchecked && per_gpu > max_memory) {
    return absl::StrCat("needs ", FormatBytes(per_gpu), " per GPU; pool ",
                        request.pool, " has ", FormatBytes(max_memory),
                        " GPUs");
  }
  if (request.gpus > max_gpus) {
    return absl::StrCat("needs ", Plural(request.gpus, "GPU", "GPUs"),
                        " on one node; nodes in pool ", request.pool,
                        " have at most ", max_gpus);
  }
  bool host_memory_untracked = false;
  int64_t max_host_memory = 0;
  for (int index : nodes) {
    const NodeSpec& spec = cluster_.nodes()[index].spec;
    if (spec.host_memory_bytes == 0) host_memory_untracked = true;
    max_host_memory = std::max(max_host_memory, spec.host_memory_bytes);
  }
  if (!host_memory_untracked && request.host_memory_bytes > max_host_memory) {
    return absl::StrCat("needs ", FormatBytes(request.host_memory_bytes),
                        " of host memory on one node; nodes in pool ",
                        request.pool, " have at most ",
                        FormatBytes(max_host_memory));
  }
  if (!cpu_untracked && request.cpu_milli > max_cpu) {
    return absl::StrCat("needs ", request.cpu_milli,
                        " CPU milli on one node; nodes in pool ", request.pool,
                        " have at most ", max_cpu);
  }
  return "";
}

std::string Placer::ReasonLocked(const Request& request) const {
  std::string infeasible = InfeasibleReasonLocked(request);
  if (!infeasible.empty()) return infeasible;
  int largest_block = 0;
  int largest_share = 0;
  for (int index : cluster_.NodesOfPool(request.pool)) {
    const NodeState& node = cluster_.nodes()[index];
    largest_block = std::max(largest_block, node.free_whole_gpus);
    largest_share = std::max(largest_share, node.max_free_share);
  }
  std::string cpu;
  if (request.cpu_milli > 0) {
    cpu = absl::StrCat(" with ", request.cpu_milli, " free CPU milli");
  }
  if (request.host_memory_bytes > 0) {
    absl::StrAppend(&cpu, cpu.empty() ? " with " : " and ",
                    FormatBytes(request.host_memory_bytes),
                    " free host memory");
  }
  if (request.gpus > 0) {
    if (largest_block < request.gpus) {
      return absl::StrCat("no node in pool ", request.pool, " has ",
                          Plural(request.gpus, "free GPU", "free GPUs"),
                          "; largest free block is ", largest_block);
    }
    return absl::StrCat("no node in pool ", request.pool, " has ",
                        Plural(request.gpus, "free GPU", "free GPUs"), cpu);
  }
  if (request.milli > 0) {
    if (largest_share < request.milli) {
      return absl::StrCat("no GPU in pool ", request.pool, " has ",
                          request.milli,
                          " free milli-GPU; largest free "
                          "share is ",
                          largest_share);
    }
    return absl::StrCat("no GPU in pool ", request.pool, " has ", request.milli,
                        " free milli-GPU", cpu);
  }
  return absl::StrCat(
      "no node in pool ", request.pool, " has ", request.cpu_milli,
      " free CPU milli",
      request.host_memory_bytes > 0
          ? absl::StrCat(" and ", FormatBytes(request.host_memory_bytes),
                         " free host memory")
          : "");
}

absl::StatusOr<std::vector<Placer::Started>> Placer::Release(
    absl::string_view workload) {
  absl::MutexLock lock(&mu_);
  if (auto it = pending_keys_.find(workload); it != pending_keys_.end()) {
    pending_.erase(it->second);
    pending_keys_.erase(it);
    // Nothing was freed, so nothing else can start.
    return std::vector<Started>();
  }
  const Placement* placement = cluster_.Find(workload);
  if (placement == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "workload \"", workload, "\" is neither placed nor pending"));
  }
  const std::string pool = cluster_.nodes()[placement->node].spec.pool;
  absl::StatusOr<Placement> released = cluster_.Release(workload);
  if (!released.ok()) return released.status();
  return RetryLocked(pool);
}

absl::Status Placer::Restore(const Request& request, absl::string_view node,
                             const std::vector<int>& gpus) {
  if (absl::Status valid = ValidateRequest(request); !valid.ok()) return valid;
  absl::MutexLock lock(&mu_);
  const std::vector<NodeState>& nodes = cluster_.nodes();
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    if (nodes[i].spec.name != node) continue;
    Placement placement{
        .node = i,
        .gpus = gpus,
        .milli_per_gpu = request.gpus > 0 ? kMilliPerGpu : request.milli,
        .cpu_milli = request.cpu_milli,
        .host_memory_bytes = request.host_memory_bytes};
    absl::Status booked = cluster_.Allocate(request, placement);
    if (!booked.ok() && booked.code() != absl::StatusCode::kAlreadyExists) {
      return absl::InvalidArgumentError(booked.message());
    }
    return booked;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("node: unknown node \"", node, "\""));
}

std::vector<Placer::Started> Placer::RetryLocked(absl::string_view pool) {
  std::vector<Started> started;
  for (auto it = pending_.begin(); it != pending_.end();) {
    PendingItem& item = it->second;
    if (item.request.pool != pool) {
      ++it;
      continue;
    }
    std::optional<Placement> placement =
        policy_->Choose(cluster_, item.request, cluster_.NodesOfPool(pool));
    if (placement.has_value() &&
        cluster_.Allocate(item.request, *placement).ok()) {
      started.push_back(Started{item.request.workload, *std::move(placement)});
      pending_keys_.erase(item.request.workload);
      it = pending_.erase(it);
      continue;
    }
    item.reason = ReasonLocked(item.request);
    ++it;
  }
  return started;
}

absl::Status Placer::CheckFeasible(const Request& request) const {
  if (absl::Status status = ValidateRequest(request); !status.ok()) {
    return status;
  }
  absl::MutexLock lock(&mu_);
  if (!cluster_.HasPool(request.pool)) {
    return absl::NotFoundError(
        absl::StrCat("pool \"", request.pool, "\" does not exist"));
  }
  std::string reason = InfeasibleReasonLocked(request);
  if (!reason.empty()) return absl::FailedPreconditionError(reason);
  return absl::OkStatus();
}

std::optional<Placement> Placer::Find(absl::string_view workload) const {
  absl::MutexLock lock(&mu_);
  const Placement* placement = cluster_.Find(workload);
  if (placement == nullptr) return std::nullopt;
  return *placement;
}

std::vector<Placer::PendingItem> Placer::Pending(absl::string_view pool) const {
  absl::MutexLock lock(&mu_);
  std::vector<PendingItem> items;
  for (const auto& [key, item] : pending_) {
    if (pool.empty() || item.request.pool == pool) items.push_back(item);
  }
  return items;
}

double Placer::FragmentationLocked(absl::string_view pool) const {
  double fragmented = 0;
  int64_t free = 0;
  for (int index : cluster_.NodesOfPool(pool)) {
    const NodeState& node = cluster_.nodes()[index];
    fragmented += NodeFragmentation(node, mix_.shapes());
    free += node.free_milli;
  }
  if (free == 0) return 0;
  return std::clamp(fragmented / static_cast<double>(free), 0.0, 1.0);
}

double Placer::Fragmentation(absl::string_view pool) const {
  absl::MutexLock lock(&mu_);
  return FragmentationLocked(pool);
}

absl::StatusOr<Placer::PoolStatus> Placer::GetPoolStatus(
    absl::string_view pool) const {
  absl::MutexLock lock(&mu_);
  if (!cluster_.HasPool(pool)) {
    return absl::NotFoundError(
        absl::StrCat("pool \"", pool, "\" does not exist"));
  }
  PoolStatus status;
  status.pool = std::string(pool);
  status.policy = std::string(policy_->name());
  for (int index : cluster_.NodesOfPool(pool)) {
    const NodeState& node = cluster_.nodes()[index];
    status.total_gpus += node.spec.gpu_count;
    status.free_gpus += node.free_whole_gpus;
    status.nodes.push_back(NodeStatus{.name = node.spec.name,
                                      .gpu_count = node.spec.gpu_count,
                                      .free_gpus = node.free_whole_gpus,
                                      .gpu_milli_allocated = node.used_milli,
                                      .workloads = node.workloads});
  }
  for (const auto& [key, item] : pending_) {
    if (item.request.pool == pool) status.pending.push_back(item);
  }
  status.fragmentation = FragmentationLocked(pool);
  return status;
}

absl::StatusOr<Placer::Availability> Placer::GetAvailability(
    absl::string_view pool, int gpus, int milli, int64_t memory_bytes) const {
  if (gpus < 0 || (gpus == 0 && (milli <= 0 || milli >= kMilliPerGpu)) ||
      (gpus > 0 && milli != 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gpus, milli: need whole GPUs or a share in (0, 1000); were ", gpus,
        ", ", milli));
  }
  absl::MutexLock lock(&mu_);
  if (!cluster_.HasPool(pool)) {
    return absl::NotFoundError(
        absl::StrCat("pool \"", pool, "\" does not exist"));
  }
  Availability availability;
  for (int index : cluster_.NodesOfPool(pool)) {
    const NodeState& node = cluster_.nodes()[index];
    const int64_t per_gpu =
        gpus > 1 ? (memory_bytes + gpus - 1) / gpus : memory_bytes;
    if (node.spec.gpu_memory_bytes > 0 &&
        per_gpu > node.spec.gpu_memory_bytes) {
      continue;
    }
    if (gpus > 0) {
      availability.available += node.free_whole_gpus / gpus;
      availability.total += node.spec.gpu_count / gpus;
    } else {
      for (int used : node.used_milli) {
        availability.available += (kMilliPerGpu - used) / milli;
      }
      availability.total += node.spec.gpu_count * (kMilliPerGpu / milli);
    }
  }
  return availability;
}

}  // namespace hangar::scheduler
