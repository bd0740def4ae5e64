#include "services/scheduler/cluster.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace hangar::scheduler {

absl::string_view PriorityName(Priority priority) {
  switch (priority) {
    case Priority::kServing:
      return "serving";
    case Priority::kOptimization:
      return "optimization";
    case Priority::kScaleOut:
      return "scale-out";
  }
  return "unknown";
}

absl::Status ValidateRequest(const Request& request) {
  if (request.workload.empty() || request.workload.size() > 253) {
    return absl::InvalidArgumentError(
        absl::StrCat("workload: must be 1 to 253 characters; was \"",
                     request.workload.substr(0, 80), "\""));
  }
  if (request.pool.empty()) {
    return absl::InvalidArgumentError("pool: required; was \"\"");
  }
  if (request.gpus < 0 || request.gpus > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpus: must be in [0, 64]; was ", request.gpus));
  }
  if (request.gpus > 0 && request.milli != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("milli: must be 0 with whole GPUs; was ", request.milli));
  }
  if (request.gpus == 0 &&
      (request.milli < 0 || request.milli >= kMilliPerGpu)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "milli: a share must be in (0, 1000); was ", request.milli));
  }
  if (request.cpu_milli < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cpu_milli: must be >= 0; was ", request.cpu_milli));
  }
  if (request.gpus == 0 && request.milli == 0 && request.cpu_milli == 0) {
    return absl::InvalidArgumentError(
        "gpus: a request needs whole GPUs, a share (milli) or CPU; was "
        "nothing");
  }
  if (request.host_memory_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "host_memory_bytes: must be >= 0; was ", request.host_memory_bytes));
  }
  if (request.memory_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory_bytes: must be >= 0; was ", request.memory_bytes));
  }
  return absl::OkStatus();
}

int64_t MemoryPerGpu(const Request& request) {
  if (request.gpus <= 1) return request.memory_bytes;
  return (request.memory_bytes + request.gpus - 1) / request.gpus;
}

bool FitsNow(const NodeState& node, const Request& request) {
  if (node.spec.pool != request.pool) return false;
  if (request.cpu_milli > node.free_cpu_milli()) return false;
  if (request.host_memory_bytes > node.free_host_memory_bytes()) return false;
  if (node.spec.gpu_memory_bytes > 0 &&
      MemoryPerGpu(request) > node.spec.gpu_memory_bytes) {
    return false;
  }
  if (request.gpus > 0) return node.free_whole_gpus >= request.gpus;
  if (request.milli > 0) return node.max_free_share >= request.milli;
  return true;
}

absl::StatusOr<int> Cluster::AddNode(const NodeSpec& spec) {
  if (spec.name.empty()) {
    return absl::InvalidArgumentError("name: required; was \"\"");
  }
  if (spec.pool.empty()) {
    return absl::InvalidArgumentError("pool: required; was \"\"");
  }
  if (spec.gpu_count < 1 || spec.gpu_count > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu_count: must be in [1, 64]; was ", spec.gpu_count));
  }
  if (spec.gpu_memory_bytes < 0 || spec.cpu_milli < 0 ||
      spec.host_memory_bytes < 0) {
    return absl::InvalidArgumentError(
        "gpu_memory_bytes, cpu_milli and host_memory_bytes: must be >= 0");
  }
  if (node_index_.contains(spec.name)) {
    return absl::AlreadyExistsError(
        absl::StrCat("node \"", spec.name, "\" already exists"));
  }
  const int index = static_cast<int>(nodes_.size());
  NodeState node;
  node.spec = spec;
  node.used_milli.assign(spec.gpu_count, 0);
  Refresh(node);
  nodes_.push_back(std::move(node));
  node_index_[spec.name] = index;
  pools_[spec.pool].push_back(index);
  return index;
}

const std::vector<int>& Cluster::NodesOfPool(absl::string_view pool) const {
  static const std::vector<int>* const kEmpty = new std::vector<int>();
  auto it = pools_.find(pool);
  return it == pools_.end() ? *kEmpty : it->second;
}

std::vector<std::string> Cluster::PoolNames() const {
  std::vector<std::string> names;
  for (const auto& [name, unused] : pools_) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

void Cluster::Refresh(NodeState& node) {
  node.free_whole_gpus = 0;
  node.max_free_share = 0;
  node.free_milli = 0;
  for (int used : node.used_milli) {
    const int free = kMilliPerGpu - used;
    if (used == 0) ++node.free_whole_gpus;
    node.max_free_share = std::max(node.max_free_share, free);
    node.free_milli += free;
  }
  ++node.version;
}

absl::Status Cluster::Allocate(const Request& request,
                               const Placement& placement) {
  if (placed_.contains(request.workload)) {
    return absl::AlreadyExistsError(
        absl::StrCat("workload \"", request.workload, "\" is already placed"));
  }
  if (placement.node < 0 || placement.node >= static_cast<int>(nodes_.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("placement.node: no node ", placement.node));
  }
  NodeState& node = nodes_[placement.node];
  if (node.spec.pool != request.pool) {
    return absl::InvalidArgumentError(absl::StrCat(
        "placement.node: ", node.spec.name, " is not in pool ", request.pool));
  }
  if (request.cpu_milli != placement.cpu_milli ||
      placement.cpu_milli > node.free_cpu_milli()) {
    return absl::FailedPreconditionError(
        absl::StrCat("node ", node.spec.name, " lacks ", placement.cpu_milli,
                     " free CPU milli"));
  }
  if (request.host_memory_bytes != placement.host_memory_bytes ||
      placement.host_memory_bytes > node.free_host_memory_bytes()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "node ", node.spec.name, " lacks ", placement.host_memory_bytes,
        " bytes of free host memory"));
  }
  const int expected_gpus = request.gpus > 0    ? request.gpus
                            : request.milli > 0 ? 1
                                                : 0;
  const int expected_milli = request.gpus > 0 ? kMilliPerGpu : request.milli;
  if (static_cast<int>(placement.gpus.size()) != expected_gpus ||
      (expected_gpus > 0 && placement.milli_per_gpu != expected_milli)) {
    return absl::InvalidArgumentError(
        "placement: GPUs or milli do not match the request");
  }
  absl::flat_hash_set<int> seen;
  for (int gpu : placement.gpus) {
    if (gpu < 0 || gpu >= node.spec.gpu_count || !seen.insert(gpu).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("placement.gpus: bad or repeated slot ", gpu, " on ",
                       node.spec.name));
    }
    if (node.used_milli[gpu] + placement.milli_per_gpu > kMilliPerGpu) {
      return absl::FailedPreconditionError(
          absl::StrCat("GPU ", gpu, " of ", node.spec.name, " has ",
                       kMilliPerGpu - node.used_milli[gpu],
                       " free milli; needs ", placement.milli_per_gpu));
    }
  }
  if (node.spec.gpu_memory_bytes > 0 &&
      MemoryPerGpu(request) > node.spec.gpu_memory_bytes) {
    return absl::FailedPreconditionError(absl::StrCat(
        "workload needs ", MemoryPerGpu(request), " bytes per GPU; ",
        node.spec.name, " has ", node.spec.gpu_memory_bytes));
  }
  for (int gpu : placement.gpus) {
    node.used_milli[gpu] += placement.milli_per_gpu;
  }
  node.used_cpu_milli += placement.cpu_milli;
  node.used_host_memory_bytes += placement.host_memory_bytes;
  node.workloads.push_back(request.workload);
  Refresh(node);
  placed_.emplace(request.workload, placement);
  return absl::OkStatus();
}

absl::StatusOr<Placement> Cluster::Release(absl::string_view workload) {
  auto it = placed_.find(workload);
  if (it == placed_.end()) {
    return absl::NotFoundError(
        absl::StrCat("workload \"", workload, "\" is not placed"));
  }
  Placement placement = std::move(it->second);
  placed_.erase(it);
  NodeState& node = nodes_[placement.node];
  for (int gpu : placement.gpus) {
    node.used_milli[gpu] -= placement.milli_per_gpu;
  }
  node.used_cpu_milli -= placement.cpu_milli;
  node.used_host_memory_bytes -= placement.host_memory_bytes;
  auto pos = std::find(node.workloads.begin(), node.workloads.end(), workload);
  if (pos != node.workloads.end()) node.workloads.erase(pos);
  Refresh(node);
  return placement;
}

const Placement* Cluster::Find(absl::string_view workload) const {
  auto it = placed_.find(workload);
  return it == placed_.end() ? nullptr : &it->second;
}

}  // namespace hangar::scheduler
