#include "services/scheduler/placement_policy.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace hangar::scheduler {
namespace {

constexpr int kMaxSlots = 64;
constexpr int64_t kUntrackedCpu = std::numeric_limits<int64_t>::max();

// The first `count` slots of `node` with nothing allocated.
std::vector<int> FreeWholeSlots(const NodeState& node, int count) {
  std::vector<int> slots;
  slots.reserve(count);
  for (int g = 0;
       g < node.spec.gpu_count && static_cast<int>(slots.size()) < count; ++g) {
    if (node.used_milli[g] == 0) slots.push_back(g);
  }
  return slots;
}

int64_t CpuAfter(const NodeState& node, const Request& request) {
  return node.tracks_cpu() ? node.free_cpu_milli() - request.cpu_milli
                           : kUntrackedCpu;
}

Placement MakePlacement(int node, std::vector<int> gpus,
                        const Request& request) {
  Placement placement;
  placement.node = node;
  placement.gpus = std::move(gpus);
  placement.milli_per_gpu = request.gpus > 0 ? kMilliPerGpu : request.milli;
  if (placement.gpus.empty()) placement.milli_per_gpu = 0;
  placement.cpu_milli = request.cpu_milli;
  placement.host_memory_bytes = request.host_memory_bytes;
  return placement;
}

// Whole GPUs, a share on slot `share_slot`, or CPU only.
Placement PlaceOn(const NodeState& node, int index, const Request& request,
                  int share_slot) {
  if (request.gpus > 0) {
    return MakePlacement(index, FreeWholeSlots(node, request.gpus), request);
  }
  if (request.milli > 0) return MakePlacement(index, {share_slot}, request);
  return MakePlacement(index, {}, request);
}

class FirstFitPolicy final : public PlacementPolicy {
 public:
  absl::string_view name() const override { return "first-fit"; }

  std::optional<Placement> Choose(const Cluster& cluster,
                                  const Request& request,
                                  absl::Span<const int> nodes) override {
    for (int index : nodes) {
      const NodeState& node = cluster.nodes()[index];
      if (!FitsNow(node, request)) continue;
      int slot = -1;
      if (request.gpus == 0 && request.milli > 0) {
        for (int g = 0; g < node.spec.gpu_count; ++g) {
          if (kMilliPerGpu - node.used_milli[g] >= request.milli) {
            slot = g;
            break;
          }
        }
      }
      return PlaceOn(node, index, request, slot);
    }
    return std::nullopt;
  }
};

// The fullest slot of `node` that still has `milli` free.
int TightestSlot(const NodeState& node, int milli) {
  int slot = -1;
  int slot_free = kMilliPerGpu + 1;
  for (int g = 0; g < node.spec.gpu_count; ++g) {
    const int free = kMilliPerGpu - node.used_milli[g];
    if (free >= milli && free < slot_free) {
      slot = g;
      slot_free = free;
    }
  }
  return slot;
}

// What best-fit minimizes, in order: the free GPU milli `node` keeps after
// `request`, then its free CPU (untracked CPU counts as unlimited).
std::pair<int64_t, int64_t> LeftAfter(const NodeState& node,
                                      const Request& request) {
  const int64_t demand =
      request.gpus > 0 ? int64_t{request.gpus} * kMilliPerGpu : request.milli;
  return {node.free_milli - demand, CpuAfter(node, request)};
}

constexpr double kEpsilon = 1e-9;

class BestFitPolicy final : public PlacementPolicy {
 public:
  absl::string_view name() const override { return "best-fit"; }

  std::optional<Placement> Choose(const Cluster& cluster,
                                  const Request& request,
                                  absl::Span<const int> nodes) override {
    if (request.gpus == 0 && request.milli > 0) {
      return ChooseShare(cluster, request, nodes);
    }
    int best = -1;
    std::pair<int64_t, int64_t> best_left;
    for (int index : nodes) {
      const NodeState& node = cluster.nodes()[index];
      if (!FitsNow(node, request)) continue;
      const std::pair<int64_t, int64_t> left = LeftAfter(node, request);
      if (best < 0 || left < best_left) {
        best = index;
        best_left = left;
      }
    }
    if (best < 0) return std::nullopt;
    return PlaceOn(cluster.nodes()[best], best, request, -1);
  }

 private:
  // A share is fitted per GPU, not per node: the slot in the pool with the
  // least room left after it; when only untouched GPUs have room, one on a
  // node that already holds shares (the most partly used slots), so shares
  // stay together instead of breaking the last free GPU of nearly full
  // nodes; then node order.
  static std::optional<Placement> ChooseShare(const Cluster& cluster,
                                              const Request& request,
                                              absl::Span<const int> nodes) {
    int best = -1;
    int best_slot = -1;
    std::pair<int, int> best_key;  // (room left on the slot, -partly used)
    for (int index : nodes) {
      const NodeState& node = cluster.nodes()[index];
      if (!FitsNow(node, request)) continue;
      const int slot = TightestSlot(node, request.milli);
      if (slot < 0) continue;
      int partly_used = 0;
      for (int g = 0; g < node.spec.gpu_count; ++g) {
        if (node.used_milli[g] > 0 && node.used_milli[g] < kMilliPerGpu) {
          ++partly_used;
        }
      }
      const std::pair<int, int> key = {
          kMilliPerGpu - node.used_milli[slot] - request.milli, -partly_used};
      if (best < 0 || key < best_key) {
        best = index;
        best_slot = slot;
        best_key = key;
      }
    }
    if (best < 0) return std::nullopt;
    return PlaceOn(cluster.nodes()[best], best, request, best_slot);
  }
};

class FgdPolicy final : public PlacementPolicy {
 public:
  explicit FgdPolicy(const PolicyOptions& options) : mix_(options.mix) {}

  absl::string_view name() const override { return "fgd"; }

  void Observe(const Request& request) override {
    mix_.Observe(ShapeOf(request));
  }

  std::optional<Placement> Choose(const Cluster& cluster,
                                  const Request& request,
                                  absl::Span<const int> nodes) override {
    const std::vector<WeightedShape>& mix = mix_.shapes();
    if (cache_.size() < cluster.nodes().size()) {
      cache_.resize(cluster.nodes().size());
    }
    int best = -1;
    int best_slot = -1;
    double best_delta = 0;
    std::pair<int64_t, int64_t> best_left;
    std::array<int, kMaxSlots> free{};
    for (int index : nodes) {
      const NodeState& node = cluster.nodes()[index];
      if (!FitsNow(node, request)) continue;
      const double before = Cached(node, index, mix);
      const int count = node.spec.gpu_count;
      for (int g = 0; g < count; ++g)
        free[g] = kMilliPerGpu - node.used_milli[g];
      const int64_t cpu_after = CpuAfter(node, request);
      double delta = 0;
      int slot = -1;
      if (request.gpus > 0) {
        int taken = 0;
        for (int g = 0; g < count && taken < request.gpus; ++g) {
          if (free[g] == kMilliPerGpu) {
            free[g] = 0;
            ++taken;
          }
        }
        delta = Fragment(absl::MakeConstSpan(free.data(), count), cpu_after) -
                before;
      } else if (request.milli > 0) {
        // Slots with equal free room are interchangeable: try each distinct
        // amount once, the first slot holding it.
        std::array<int, kMaxSlots> tried{};
        int tried_count = 0;
        double slot_delta = 0;
        for (int g = 0; g < count; ++g) {
          const int room = free[g];
          if (room < request.milli) continue;
          if (std::find(tried.begin(), tried.begin() + tried_count, room) !=
              tried.begin() + tried_count) {
            continue;
          }
          tried[tried_count++] = room;
          free[g] = room - request.milli;
          const double d =
              Fragment(absl::MakeConstSpan(free.data(), count), cpu_after) -
              before;
          free[g] = room;
          // Ties go to the fuller slot (best-fit within the node).
          if (slot < 0 || d < slot_delta - kEpsilon ||
              (d < slot_delta + kEpsilon && room < free[slot])) {
            slot = g;
            slot_delta = d;
          }
        }
        delta = slot_delta;
      } else {
        delta = Fragment(absl::MakeConstSpan(free.data(), count), cpu_after) -
                before;
      }
      const std::pair<int64_t, int64_t> left = LeftAfter(node, request);
      bool better = best < 0 || delta < best_delta - kEpsilon;
      if (!better && delta < best_delta + kEpsilon) better = left < best_left;
      if (better) {
        best = index;
        best_slot = slot;
        best_delta = delta;
        best_left = left;
      }
    }
    if (best < 0) return std::nullopt;
    return PlaceOn(cluster.nodes()[best], best, request, best_slot);
  }

 private:
  // A node state exactly, for nodes of up to 8 slots: the free milli of each
  // slot (sorted, 11 bits each), the slot count and the free CPU.
  struct StateKey {
    uint64_t low = 0;
    uint64_t high = 0;
    int64_t cpu = 0;

    friend bool operator==(const StateKey& a, const StateKey& b) {
      return a.low == b.low && a.high == b.high && a.cpu == b.cpu;
    }
    template <typename H>
    friend H AbslHashValue(H h, const StateKey& k) {
      return H::combine(std::move(h), k.low, k.high, k.cpu);
    }
  };
  static constexpr int kMaxMemoSlots = 8;
  static constexpr size_t kMaxMemoEntries = 1 << 18;

  // F(n) of a hypothetical state, memoized per mix version: many nodes share
  // a state (every empty node of a size, for a start).
  double Fragment(absl::Span<const int> free, int64_t free_cpu) {
    const std::vector<WeightedShape>& mix = mix_.shapes();
    if (free.size() > kMaxMemoSlots) {
      return NodeFragmentation(free, free_cpu, mix);
    }
    if (memo_version_ != mix_.version() || memo_.size() > kMaxMemoEntries) {
      memo_.clear();
      memo_version_ = mix_.version();
    }
    std::array<int, kMaxMemoSlots> sorted{};
    const int count = static_cast<int>(free.size());
    for (int i = 0; i < count; ++i) {
      int j = i;
      for (; j > 0 && sorted[j - 1] > free[i]; --j) sorted[j] = sorted[j - 1];
      sorted[j] = free[i];
    }
    StateKey key;
    for (int i = 0; i < count; ++i) {
      const uint64_t bits = static_cast<uint64_t>(sorted[i]) & 0x7ff;
      if (i < 5) {
        key.low |= bits << (11 * i);
      } else {
        key.high |= bits << (11 * (i - 5));
      }
    }
    key.high |= static_cast<uint64_t>(count) << 33;
    key.cpu = free_cpu;
    auto [it, inserted] = memo_.try_emplace(key, 0.0);
    if (inserted) it->second = NodeFragmentation(free, free_cpu, mix);
    return it->second;
  }

  struct CacheEntry {
    uint64_t node_version = 0;
    uint64_t mix_version = 0;
    double fragmentation = 0;
  };

  double Cached(const NodeState& node, int index,
                const std::vector<WeightedShape>& mix) {
    CacheEntry& entry = cache_[index];
    if (entry.node_version != node.version ||
        entry.mix_version != mix_.version()) {
      entry.node_version = node.version;
      entry.mix_version = mix_.version();
      entry.fragmentation = NodeFragmentation(node, mix);
    }
    return entry.fragmentation;
  }

  RequestMix mix_;
  std::vector<CacheEntry> cache_;
  absl::flat_hash_map<StateKey, double> memo_;
  uint64_t memo_version_ = 0;
};

}  // namespace

Shape ShapeOf(const Request& request) {
  return Shape{.gpus = request.gpus,
               .milli = request.gpus > 0 ? 0 : request.milli,
               .cpu_milli = request.cpu_milli};
}

RequestMix::RequestMix(const Options& options) : options_(options) {
  options_.window = std::max(1, options_.window);
  options_.max_shapes = std::max(1, options_.max_shapes);
  options_.refresh = std::max(1, options_.refresh);
}

void RequestMix::Observe(const Shape& shape) {
  if (shape.gpus == 0 && shape.milli == 0) return;
  window_.push_back(shape);
  if (static_cast<int>(window_.size()) > options_.window) window_.pop_front();
  // Until the window holds `refresh` requests every observation counts at
  // once, so a young mix is never stale.
  if (++since_refresh_ >= options_.refresh ||
      static_cast<int>(window_.size()) <= options_.refresh) {
    Recompute();
  }
}

void RequestMix::Reset(absl::Span<const Shape> shapes) {
  window_.clear();
  for (const Shape& shape : shapes) {
    if (shape.gpus == 0 && shape.milli == 0) continue;
    window_.push_back(shape);
  }
  while (static_cast<int>(window_.size()) > options_.window) {
    window_.pop_front();
  }
  Recompute();
}

void RequestMix::Recompute() {
  since_refresh_ = 0;
  absl::flat_hash_map<Shape, int> counts;
  for (const Shape& shape : window_) ++counts[shape];
  std::vector<std::pair<Shape, int>> sorted(counts.begin(), counts.end());
  // Most frequent first; ties in a fixed order so results are reproducible.
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    if (a.second != b.second) return a.second > b.second;
    if (a.first.gpus != b.first.gpus) return a.first.gpus < b.first.gpus;
    if (a.first.milli != b.first.milli) return a.first.milli < b.first.milli;
    return a.first.cpu_milli < b.first.cpu_milli;
  });
  if (static_cast<int>(sorted.size()) > options_.max_shapes) {
    sorted.resize(options_.max_shapes);
  }
  int total = 0;
  for (const auto& [shape, count] : sorted) total += count;
  shapes_.clear();
  for (const auto& [shape, count] : sorted) {
    shapes_.push_back(
        {.shape = shape, .probability = static_cast<double>(count) / total});
  }
  ++version_;
}

double NodeFragmentation(absl::Span<const int> free_milli,
                         int64_t free_cpu_milli,
                         absl::Span<const WeightedShape> mix) {
  int64_t total = 0;
  int full = 0;
  int max_free = 0;
  for (int free : free_milli) {
    total += free;
    if (free == kMilliPerGpu) ++full;
    max_free = std::max(max_free, free);
  }
  if (total == 0) return 0;
  const int64_t partial = total - int64_t{full} * kMilliPerGpu;
  double fragmentation = 0;
  for (const WeightedShape& weighted : mix) {
    const Shape& shape = weighted.shape;
    const bool cpu_fits = shape.cpu_milli <= free_cpu_milli;
    int64_t fragment = total;
    if (shape.gpus > 0) {
      if (cpu_fits && full >= shape.gpus) fragment = partial;
    } else if (cpu_fits && max_free >= shape.milli) {
      fragment = 0;
      for (int free : free_milli) {
        if (free < shape.milli) fragment += free;
      }
    }
    fragmentation += weighted.probability * static_cast<double>(fragment);
  }
  return fragmentation;
}

double NodeFragmentation(const NodeState& node,
                         absl::Span<const WeightedShape> mix) {
  std::array<int, kMaxSlots> free{};
  const int count = node.spec.gpu_count;
  for (int g = 0; g < count; ++g) free[g] = kMilliPerGpu - node.used_milli[g];
  return NodeFragmentation(absl::MakeConstSpan(free.data(), count),
                           node.free_cpu_milli(), mix);
}

std::vector<std::string> PlacementPolicyNames() {
  return {"first-fit", "best-fit", "fgd"};
}

absl::StatusOr<std::unique_ptr<PlacementPolicy>> MakePlacementPolicy(
    absl::string_view name, const PolicyOptions& options) {
  if (name == "first-fit") return std::make_unique<FirstFitPolicy>();
  if (name == "best-fit") return std::make_unique<BestFitPolicy>();
  if (name == "fgd") return std::make_unique<FgdPolicy>(options);
  return absl::InvalidArgumentError(absl::StrCat(
      "policy: must be one of ", absl::StrJoin(PlacementPolicyNames(), ", "),
      "; was \"", name, "\""));
}

}  // namespace hangar::scheduler
