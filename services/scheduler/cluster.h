// The cluster model placement works on: nodes of GPU slots and what holds
// them.
//
// A node belongs to one pool and has `gpu_count` GPU slots of one model and
// memory size, and optionally CPU and host memory budgets (the trace replay
// tracks them; the hardware file does not). Each slot holds either one
// workload's whole GPU or any number of fractional shares in milli-GPUs (1000 =
// one GPU) that add up to at most 1000. A workload asks for either N whole GPUs
// on one node or a share of one GPU (`gpus == 0`, `milli` in (0, 1000)); a
// CPU-only request
// (`gpus == 0`, `milli == 0`, `cpu_milli > 0`) exists for the trace.
//
// Memory is checked per GPU against the node's GPU memory: a whole-GPU
// request of `memory_bytes` needs ceil(memory_bytes / gpus) on each of its
// GPUs, a share needs all of it on its one GPU.
//
// `Cluster` is plain data with invariant checks: `Allocate` refuses a
// placement that would put more than 1000 milli on a slot, give a whole GPU
// to two workloads, exceed the node's CPU or reuse a workload name, so a bug
// in a policy becomes an error instead of a double booking. Not thread-safe;
// the Placer serializes access.
#ifndef HANGAR_SERVICES_SCHEDULER_CLUSTER_H_
#define HANGAR_SERVICES_SCHEDULER_CLUSTER_H_

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace hangar::scheduler {

inline constexpr int kMilliPerGpu = 1000;

// Placement rank: lower places first. Serving replicas up to min_replicas,
// then optimization jobs, then scale-out replicas.
enum class Priority { kServing = 0, kOptimization = 1, kScaleOut = 2 };

absl::string_view PriorityName(Priority priority);

struct NodeSpec {
  // Unique in the cluster: "<pool>-<index>".
  std::string name;
  std::string pool;
  std::string gpu_model;
  // GPU slots, in [1, 64].
  int gpu_count = 0;
  // Memory of one GPU; 0 = not checked.
  int64_t gpu_memory_bytes = 0;
  // CPU budget in milli-cores; 0 = CPU not tracked on this node.
  int64_t cpu_milli = 0;
  // Host memory; 0 = not tracked on this node.
  int64_t host_memory_bytes = 0;
};

struct Request {
  // Replica or job name; unique among placed and pending workloads.
  std::string workload;
  std::string pool;
  // Whole GPUs on one node; 0 for a share or a CPU-only request.
  int gpus = 0;
  // With gpus == 0: the share of one GPU, in (0, 1000). Else 0.
  int milli = 0;
  // Total GPU memory the workload needs (see the header); 0 = none stated.
  int64_t memory_bytes = 0;
  // CPU milli-cores; only nodes that track CPU check it.
  int64_t cpu_milli = 0;
  // Host memory; only nodes that track it check it.
  int64_t host_memory_bytes = 0;
  Priority priority = Priority::kServing;
  absl::Time enqueue_time = absl::UnixEpoch();
};

// INVALID_ARGUMENT unless the request's fields are within the rules above.
absl::Status ValidateRequest(const Request& request);

// GPU memory needed on each GPU the request occupies.
int64_t MemoryPerGpu(const Request& request);

// Where a workload sits: whole GPUs (milli_per_gpu == 1000, one or more
// slots) or a share (one slot, milli_per_gpu < 1000) or CPU only (no slot).
struct Placement {
  int node = -1;
  std::vector<int> gpus;
  int milli_per_gpu = 0;
  int64_t cpu_milli = 0;
  int64_t host_memory_bytes = 0;

  friend bool operator==(const Placement& a, const Placement& b) {
    return a.node == b.node && a.gpus == b.gpus &&
           a.milli_per_gpu == b.milli_per_gpu && a.cpu_milli == b.cpu_milli &&
           a.host_memory_bytes == b.host_memory_bytes;
  }
};

struct NodeState {
  NodeSpec spec;
  // Per GPU slot: milli-GPUs allocated, in [0, 1000].
  std::vector<int> used_milli;
  int64_t used_cpu_milli = 0;
  int64_t used_host_memory_bytes = 0;
  // Slots with nothing allocated.
  int free_whole_gpus = 0;
  // The largest free amount on one slot, in [0, 1000].
  int max_free_share = 0;
  // Free milli over every slot.
  int64_t free_milli = 0;
  // Bumped on every change (caches key on it).
  uint64_t version = 0;
  // Names of the workloads on the node, in placement order.
  std::vector<std::string> workloads;

  bool tracks_cpu() const { return spec.cpu_milli > 0; }
  bool tracks_host_memory() const { return spec.host_memory_bytes > 0; }
  int64_t free_host_memory_bytes() const {
    return tracks_host_memory()
               ? spec.host_memory_bytes - used_host_memory_bytes
               : std::numeric_limits<int64_t>::max();
  }
  int64_t free_cpu_milli() const {
    return tracks_cpu() ? spec.cpu_milli - used_cpu_milli
                        : std::numeric_limits<int64_t>::max();
  }
};

// Whether `request` fits on `node` now: pool, memory per GPU, CPU, host
// memory and GPU capacity (whole GPUs free, or one slot with `milli` free).
bool FitsNow(const NodeState& node, const Request& request);

class Cluster {
 public:
  Cluster() = default;

  // INVALID_ARGUMENT on a bad spec, ALREADY_EXISTS on a duplicate name.
  // Returns the node's index.
  absl::StatusOr<int> AddNode(const NodeSpec& spec);

  const std::vector<NodeState>& nodes() const { return nodes_; }
  // Node indexes of `pool` in the order added; empty for an unknown pool.
  const std::vector<int>& NodesOfPool(absl::string_view pool) const;
  bool HasPool(absl::string_view pool) const { return pools_.contains(pool); }
  std::vector<std::string> PoolNames() const;

  // Books `placement` for `request` after checking every invariant; on error
  // nothing changes.
  absl::Status Allocate(const Request& request, const Placement& placement);
  // Frees what `workload` holds; NOT_FOUND if it holds nothing.
  absl::StatusOr<Placement> Release(absl::string_view workload);
  // The placement of `workload`, or null.
  const Placement* Find(absl::string_view workload) const;
  int workload_count() const { return static_cast<int>(placed_.size()); }

 private:
  void Refresh(NodeState& node);

  std::vector<NodeState> nodes_;
  absl::flat_hash_map<std::string, int> node_index_;
  absl::flat_hash_map<std::string, std::vector<int>> pools_;
  absl::flat_hash_map<std::string, Placement> placed_;
};

}  // namespace hangar::scheduler

#endif  // HANGAR_SERVICES_SCHEDULER_CLUSTER_H_
