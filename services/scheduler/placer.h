// The placement queue: places requests on the cluster with one policy, keeps
// what does not fit in a pending queue with a reason, and retries it when
// capacity frees.
//
// Order. Pending requests are tried by priority (serving < optimization <
// scale-out in rank), then enqueue time, then arrival: FIFO within a class.
// The queue does not block at its head: whenever capacity frees, every
// pending request of the pool is tried in that order, so an earlier request
// always has first claim on the freed capacity, and a later, smaller request
// may still start while an earlier, larger one waits. There is no
// preemption: a placed workload keeps its GPUs until Release.
//
// Reasons. Every pending item carries why it is not placed, refreshed on every
// retry, e.g.
//   no node in pool a10g has 4 free GPUs; largest free block is 2
//   needs 40 GiB per GPU; pool t4 has 16 GiB GPUs
//   needs 16 GPUs on one node; nodes in pool t4 have at most 8
//   no node in pool p has 1 free GPU with 1000 free CPU milli and 48 GiB
//   free host memory   (GPUs free, but not beside enough CPU or memory)
// The second and third never resolve; CheckFeasible reports them up front so
// that a service can refuse such a request instead of queueing it.
//
// Figures. PoolStatus gives per-node allocation, the pending queue and the
// pool's fragmentation: the expected share of its free GPU capacity that a
// request from the recent mix could not use (placement_policy.h), in [0, 1].
// Availability answers "3 of 4 replicas fit now" for an offering.
//
// Thread-safe: one mutex guards the cluster, the queue and the policy.
//
//   ASSIGN_OR_RETURN(auto placer, Placer::Create({.policy = "best-fit"},
//                                                NodesFromConfig(hardware)));
//   ASSIGN_OR_RETURN(Placer::Decision d, placer->Submit(request));
//   if (!d.placed) LOG(INFO) << "pending: " << d.reason;
//   ASSIGN_OR_RETURN(auto started, placer->Release("dep-1-r1-0"));
#ifndef HANGAR_SERVICES_SCHEDULER_PLACER_H_
#define HANGAR_SERVICES_SCHEDULER_PLACER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "services/scheduler/cluster.h"
#include "services/scheduler/hardware_config.pb.h"
#include "services/scheduler/placement_policy.h"

namespace hangar::scheduler {

// One NodeSpec per node of every pool: "<pool>-<index>", GPU count and
// memory from the pool, CPU untracked.
std::vector<NodeSpec> NodesFromConfig(const config::HardwareConfig& config);

// "16 GiB", "1.5 GiB", "512 MiB".
std::string FormatBytes(int64_t bytes);

class Placer {
 public:
  struct Options {
    // "first-fit", "best-fit" or "fgd".
    std::string policy = "best-fit";
    // The request mix behind fgd and the fragmentation figure.
    RequestMix::Options mix;
  };

  struct Decision {
    bool placed = false;
    // Set when placed.
    Placement placement;
    // Why not, when not placed.
    std::string reason;
  };

  struct PendingItem {
    Request request;
    std::string reason;
  };

  struct Started {
    std::string workload;
    Placement placement;
  };

  struct NodeStatus {
    std::string name;
    int gpu_count = 0;
    // Slots with nothing allocated.
    int free_gpus = 0;
    std::vector<int> gpu_milli_allocated;
    std::vector<std::string> workloads;
  };

  struct PoolStatus {
    std::string pool;
    std::string policy;
    int total_gpus = 0;
    int free_gpus = 0;
    std::vector<NodeStatus> nodes;
    // In placement order.
    std::vector<PendingItem> pending;
    // In [0, 1]; 0 when nothing is free.
    double fragmentation = 0;
  };

  struct Availability {
    // Replicas that fit now / on an empty pool.
    int available = 0;
    int total = 0;
  };

  // INVALID_ARGUMENT for an unknown policy, no nodes or a bad node.
  static absl::StatusOr<std::unique_ptr<Placer>> Create(
      const Options& options, const std::vector<NodeSpec>& nodes);

  // Places `request` now or queues it with a reason. INVALID_ARGUMENT for a
  // bad request, NOT_FOUND for an unknown pool, ALREADY_EXISTS when the
  // workload is already placed or pending.
  absl::StatusOr<Decision> Submit(const Request& request);

  // Like Submit, but a request that does not fit now is not queued; the
  // decision says why (the trace replay uses it).
  absl::StatusOr<Decision> TryPlace(const Request& request);

  // Frees a placed workload's GPUs, or drops a pending one, then retries the
  // pool's pending queue. Returns the workloads that started. NOT_FOUND when
  // the workload is neither placed nor pending.
  absl::StatusOr<std::vector<Started>> Release(absl::string_view workload);

  // Books `request` at exactly `placement` (the node named `node`, its GPU
  // slots), bypassing the policy: a restarted scheduler rebuilding the
  // allocations it had recorded. INVALID_ARGUMENT when the node is unknown
  // or the placement breaks a cluster invariant (nothing changes then).
  absl::Status Restore(const Request& request, absl::string_view node,
                       const std::vector<int>& gpus);

  // OK when `request` could be placed on its pool if it were empty;
  // NOT_FOUND for an unknown pool; FAILED_PRECONDITION with the reason when
  // no node could ever hold it.
  absl::Status CheckFeasible(const Request& request) const;

  std::optional<Placement> Find(absl::string_view workload) const;
  // Pending items in placement order; of every pool when `pool` is empty.
  std::vector<PendingItem> Pending(absl::string_view pool = "") const;
  absl::StatusOr<PoolStatus> GetPoolStatus(absl::string_view pool) const;
  // How many replicas of `gpus` whole GPUs (or a `milli` share when gpus is
  // 0) needing `memory_bytes` each fit now and on the empty pool.
  absl::StatusOr<Availability> GetAvailability(absl::string_view pool, int gpus,
                                               int milli,
                                               int64_t memory_bytes) const;
  // Fragmentation of one pool, in [0, 1].
  double Fragmentation(absl::string_view pool) const;

  absl::string_view policy_name() const { return policy_->name(); }

 private:
  // (priority, enqueue time, sequence): placement order.
  using QueueKey = std::tuple<int, absl::Time, uint64_t>;

  Placer(std::unique_ptr<PlacementPolicy> policy,
         const RequestMix::Options& mix)
      : policy_(std::move(policy)), mix_(mix) {}

  absl::StatusOr<Decision> PlaceLocked(const Request& request, bool enqueue)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Why `request` does not fit now (it does not).
  std::string ReasonLocked(const Request& request) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The permanent reason, or "" when the request fits an empty pool.
  std::string InfeasibleReasonLocked(const Request& request) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<Started> RetryLocked(absl::string_view pool)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  double FragmentationLocked(absl::string_view pool) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;  // Guards everything below.
  Cluster cluster_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<PlacementPolicy> policy_ ABSL_GUARDED_BY(mu_);
  RequestMix mix_ ABSL_GUARDED_BY(mu_);
  std::map<QueueKey, PendingItem> pending_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, QueueKey> pending_keys_ ABSL_GUARDED_BY(mu_);
  uint64_t sequence_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hangar::scheduler

#endif  // HANGAR_SERVICES_SCHEDULER_PLACER_H_
