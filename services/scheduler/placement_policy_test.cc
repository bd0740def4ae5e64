#include "services/scheduler/placement_policy.h"

#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::scheduler {
namespace {

using ::hangar::testing::StatusIs;
using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

Request Whole(std::string name, int gpus, int64_t cpu = 0) {
  return Request{
      .workload = std::move(name), .pool = "p", .gpus = gpus, .cpu_milli = cpu};
}

Request Share(std::string name, int milli, int64_t cpu = 0) {
  return Request{.workload = std::move(name),
                 .pool = "p",
                 .milli = milli,
                 .cpu_milli = cpu};
}

// A pool "p" of nodes with `gpus[i]` slots each, and a way to preload them.
class PolicyTest : public ::testing::Test {
 protected:
  void AddNodes(const std::vector<int>& gpus, int64_t cpu = 0) {
    for (int count : gpus) {
      const int index = static_cast<int>(cluster_.nodes().size());
      ASSERT_OK(cluster_
                    .AddNode(NodeSpec{.name = absl::StrCat("n", index),
                                      .pool = "p",
                                      .gpu_model = "G",
                                      .gpu_count = count,
                                      .cpu_milli = cpu})
                    .status());
    }
  }
  // Books `milli` on slot `gpu` of `node` directly.
  void Load(int node, int gpu, int milli) {
    Request request = milli == kMilliPerGpu
                          ? Whole(absl::StrCat("pre", next_++), 1)
                          : Share(absl::StrCat("pre", next_++), milli);
    ASSERT_OK(cluster_.Allocate(
        request,
        Placement{.node = node, .gpus = {gpu}, .milli_per_gpu = milli}));
  }
  std::optional<Placement> Choose(absl::string_view policy_name,
                                  const Request& request,
                                  const std::vector<Shape>& mix = {}) {
    PolicyOptions options;
    auto policy = MakePlacementPolicy(policy_name, options);
    EXPECT_TRUE(policy.ok());
    for (const Shape& shape : mix) {
      Request seen{.workload = "x",
                   .pool = "p",
                   .gpus = shape.gpus,
                   .milli = shape.milli,
                   .cpu_milli = shape.cpu_milli};
      (*policy)->Observe(seen);
    }
    return (*policy)->Choose(cluster_, request, cluster_.NodesOfPool("p"));
  }

  Cluster cluster_;
  int next_ = 0;
};

TEST_F(PolicyTest, UnknownPolicyIsInvalid) {
  EXPECT_THAT(MakePlacementPolicy("random"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("first-fit, best-fit, fgd")));
  for (const std::string& name : PlacementPolicyNames()) {
    auto policy = MakePlacementPolicy(name);
    ASSERT_TRUE(policy.ok());
    EXPECT_EQ((*policy)->name(), name);
  }
}

TEST_F(PolicyTest, FirstFitTakesTheFirstNodeThatFits) {
  AddNodes({4, 4, 4});
  Load(0, 0, 1000);
  Load(0, 1, 1000);
  Load(0, 2, 1000);  // n0: 1 free
  Load(1, 0, 1000);  // n1: 3 free
  auto chosen = Choose("first-fit", Whole("w", 2));
  ASSERT_TRUE(chosen.has_value());
  EXPECT_EQ(chosen->node, 1);
  EXPECT_THAT(chosen->gpus, ElementsAre(1, 2));
  EXPECT_EQ(chosen->milli_per_gpu, 1000);
  chosen = Choose("first-fit", Whole("w", 1));
  EXPECT_EQ(chosen->node, 0);
  EXPECT_THAT(chosen->gpus, ElementsAre(3));
}

TEST_F(PolicyTest, BestFitTakesTheNodeWithFewestFreeGpusLeft) {
  AddNodes({8, 8, 8});
  for (int g = 0; g < 5; ++g) Load(1, g, 1000);  // n1: 3 free
  for (int g = 0; g < 2; ++g) Load(2, g, 1000);  // n2: 6 free
  auto chosen = Choose("best-fit", Whole("w", 2));
  ASSERT_TRUE(chosen.has_value());
  EXPECT_EQ(chosen->node, 1);
  EXPECT_THAT(chosen->gpus, ElementsAre(5, 6));
  // 4 GPUs do not fit on n1: n2 (6 free) beats n0 (8 free).
  chosen = Choose("best-fit", Whole("w", 4));
  EXPECT_EQ(chosen->node, 2);
  chosen = Choose("best-fit", Whole("w", 7));
  EXPECT_EQ(chosen->node, 0);
  EXPECT_FALSE(Choose("best-fit", Whole("w", 9)).has_value());
}

TEST_F(PolicyTest, BestFitBreaksTiesOnCpuThenNodeOrder) {
  AddNodes({2, 2, 2}, /*cpu=*/8000);
  Request cpu_hog = Whole("c", 0, 0);
  cpu_hog.cpu_milli = 4000;
  ASSERT_OK(
      cluster_.Allocate(cpu_hog, Placement{.node = 2, .cpu_milli = 4000}));
  EXPECT_EQ(Choose("best-fit", Whole("w", 1, 1000))->node, 2);
  EXPECT_EQ(Choose("first-fit", Whole("w", 1, 1000))->node, 0);
  // CPU that does not fit excludes the node.
  EXPECT_EQ(Choose("best-fit", Whole("w", 1, 5000))->node, 0);
}

TEST_F(PolicyTest, BestFitPutsGpusBeforeCpu) {
  // n0: 1 of 2 GPUs free, all 16 cores free. n1: 2 GPUs free, 2 cores free.
  // Fewest free GPUs left wins: n0, though n1 would keep less CPU.
  AddNodes({2, 2}, /*cpu=*/16000);
  Load(0, 0, 1000);
  Request cpu_hog{.workload = "c", .pool = "p", .cpu_milli = 14000};
  ASSERT_OK(
      cluster_.Allocate(cpu_hog, Placement{.node = 1, .cpu_milli = 14000}));
  EXPECT_EQ(Choose("best-fit", Whole("w", 1, 1000))->node, 0);
  // CPU that does not fit still excludes a node.
  EXPECT_EQ(Choose("best-fit", Whole("w", 1, 3000))->node, 0);
  EXPECT_EQ(Choose("best-fit", Whole("w", 2, 1000))->node, 1);
}

TEST_F(PolicyTest, SharesPickTheirSlotPerPolicy) {
  AddNodes({4});
  Load(0, 0, 300);  // 700 free
  Load(0, 1, 800);  // 200 free
  Load(0, 2, 500);  // 500 free; slot 3 is whole
  // First-fit: the first slot with room for 400 is slot 0.
  auto chosen = Choose("first-fit", Share("s", 400));
  ASSERT_TRUE(chosen.has_value());
  EXPECT_THAT(chosen->gpus, ElementsAre(0));
  EXPECT_EQ(chosen->milli_per_gpu, 400);
  // Best-fit: the fullest slot with room is slot 2 (500 free).
  chosen = Choose("best-fit", Share("s", 400));
  EXPECT_THAT(chosen->gpus, ElementsAre(2));
  chosen = Choose("best-fit", Share("s", 150));
  EXPECT_THAT(chosen->gpus, ElementsAre(1));
  EXPECT_THAT(Choose("best-fit", Share("s", 999))->gpus, ElementsAre(3));
}

// Best-fit fits a share per GPU: the tightest slot anywhere in the pool,
// and a fresh GPU where shares already are, not on the fullest node (whose
// last free GPU whole requests still need).
TEST_F(PolicyTest, BestFitFitsSharesPerGpuAndKeepsThemTogether) {
  AddNodes({2, 4, 4});
  Load(0, 0, 1000);  // n0: one free GPU left
  Load(1, 0, 700);   // n1: 300 free on slot 0, 3 whole
  Load(2, 0, 500);   // n2: 500 free on slot 0, 3 whole
  // 300 fits exactly on n1's slot 0 (the node with the most free GPUs).
  auto chosen = Choose("best-fit", Share("s", 300));
  ASSERT_TRUE(chosen.has_value());
  EXPECT_EQ(chosen->node, 1);
  EXPECT_THAT(chosen->gpus, ElementsAre(0));
  // 400: n2's slot 0 (100 left) beats any fresh GPU (600 left).
  EXPECT_EQ(Choose("best-fit", Share("s", 400))->node, 2);
  // 600 needs a fresh GPU: not n0's last one, but one beside other shares
  // (n1, the first node holding a partly used slot).
  chosen = Choose("best-fit", Share("s", 600));
  EXPECT_EQ(chosen->node, 1);
  EXPECT_THAT(chosen->gpus, ElementsAre(1));
  // Whole GPUs still go to the fullest node.
  EXPECT_EQ(Choose("best-fit", Whole("w", 1))->node, 0);
}

TEST_F(PolicyTest, WholeGpuRequestsNeverTakePartlyUsedSlots) {
  AddNodes({2});
  Load(0, 0, 1);
  EXPECT_FALSE(Choose("first-fit", Whole("w", 2)).has_value());
  EXPECT_FALSE(Choose("best-fit", Whole("w", 2)).has_value());
  EXPECT_FALSE(Choose("fgd", Whole("w", 2), {{.gpus = 1}}).has_value());
  EXPECT_THAT(Choose("fgd", Whole("w", 1), {{.gpus = 1}})->gpus,
              ElementsAre(1));
}

TEST(FragmentationTest, FollowsThePaperDefinition) {
  // Slots with 1000, 1000, 600 and 100 milli free.
  const std::vector<int> free = {1000, 1000, 600, 100};
  const int64_t cpu = 10'000;
  auto one = [](Shape s) {
    return std::vector<WeightedShape>{{.shape = s, .probability = 1}};
  };
  // A whole GPU fits: the partly used slots are fragments.
  EXPECT_DOUBLE_EQ(NodeFragmentation(free, cpu, one({.gpus = 1})), 700);
  EXPECT_DOUBLE_EQ(NodeFragmentation(free, cpu, one({.gpus = 2})), 700);
  // Three whole GPUs do not fit: everything free is a fragment.
  EXPECT_DOUBLE_EQ(NodeFragmentation(free, cpu, one({.gpus = 3})), 2700);
  // A 500 share fits: slots with less than 500 free are fragments.
  EXPECT_DOUBLE_EQ(NodeFragmentation(free, cpu, one({.milli = 500})), 100);
  EXPECT_DOUBLE_EQ(NodeFragmentation(free, cpu, one({.milli = 50})), 0);
  // Too little CPU: all of it.
  EXPECT_DOUBLE_EQ(
      NodeFragmentation(free, cpu, one({.gpus = 1, .cpu_milli = 20'000})),
      2700);
  // A mix weighs the fragments by frequency.
  std::vector<WeightedShape> mix = {
      {.shape = {.gpus = 1}, .probability = 0.5},
      {.shape = {.milli = 500}, .probability = 0.25},
      {.shape = {.gpus = 3}, .probability = 0.25}};
  EXPECT_DOUBLE_EQ(NodeFragmentation(free, cpu, mix),
                   0.5 * 700 + 0.25 * 100 + 0.25 * 2700);
  // Nothing free, nothing fragmented; an empty mix measures nothing.
  EXPECT_DOUBLE_EQ(NodeFragmentation(std::vector<int>{0, 0}, cpu, mix), 0);
  EXPECT_DOUBLE_EQ(NodeFragmentation(free, cpu, {}), 0);
}

TEST(RequestMixTest, KeepsTheMostFrequentShapesOfTheWindow) {
  RequestMix mix({.window = 4, .max_shapes = 2, .refresh = 1});
  EXPECT_TRUE(mix.shapes().empty());
  mix.Observe({.gpus = 0, .milli = 0, .cpu_milli = 100});  // CPU-only: ignored
  EXPECT_TRUE(mix.shapes().empty());
  mix.Observe({.gpus = 1});
  ASSERT_EQ(mix.shapes().size(), 1u);
  EXPECT_DOUBLE_EQ(mix.shapes()[0].probability, 1);
  mix.Observe({.milli = 500});
  mix.Observe({.milli = 500});
  mix.Observe({.gpus = 8});
  // Window {1, 500, 500, 8}: the two most frequent, renormalized.
  ASSERT_EQ(mix.shapes().size(), 2u);
  EXPECT_EQ(mix.shapes()[0].shape, (Shape{.milli = 500}));
  EXPECT_THAT(mix.shapes()[0].probability, DoubleNear(2.0 / 3, 1e-12));
  EXPECT_EQ(mix.shapes()[1].shape, (Shape{.gpus = 1}));
  const uint64_t version = mix.version();
  mix.Observe({.gpus = 8});  // window {500, 500, 8, 8}
  EXPECT_NE(mix.version(), version);
  EXPECT_DOUBLE_EQ(mix.shapes()[0].probability, 0.5);
}

TEST(RequestMixTest, RefreshesEveryNObservations) {
  RequestMix mix({.window = 100, .max_shapes = 8, .refresh = 3});
  // While the window holds at most 3, every observation counts at once.
  mix.Observe({.gpus = 1});
  mix.Observe({.gpus = 2});
  mix.Observe({.gpus = 4});
  EXPECT_EQ(mix.shapes().size(), 3u);
  const uint64_t version = mix.version();
  mix.Observe({.gpus = 8});
  mix.Observe({.gpus = 8});
  EXPECT_EQ(mix.shapes().size(), 3u);
  EXPECT_EQ(mix.version(), version);
  mix.Observe({.milli = 10});  // the third since the last recompute
  EXPECT_EQ(mix.shapes().size(), 5u);
  EXPECT_EQ(mix.shapes()[0].shape, (Shape{.gpus = 8}));
  mix.Reset(std::vector<Shape>{{.milli = 100}});
  ASSERT_EQ(mix.shapes().size(), 1u);
  EXPECT_EQ(mix.shapes()[0].shape.milli, 100);
}

TEST_F(PolicyTest, FgdKeepsWholeGpusForAWholeGpuMix) {
  // n0: slot 0 half used; n1: empty. Best-fit puts a 500 share... both fit;
  // with whole-GPU work expected, FGD must fill the half-used slot instead of
  // breaking a whole GPU.
  AddNodes({2, 2});
  Load(0, 0, 500);
  const std::vector<Shape> mix(10, Shape{.gpus = 1});
  auto chosen = Choose("fgd", Share("s", 500), mix);
  ASSERT_TRUE(chosen.has_value());
  EXPECT_EQ(chosen->node, 0);
  EXPECT_THAT(chosen->gpus, ElementsAre(0));
}

TEST_F(PolicyTest, FgdAvoidsLeavingUnusableRemainders) {
  // Two nodes with one slot each: n0 has 600 free, n1 has 1000 free. The mix
  // is all 600 shares. A 400 share on n0 leaves 200 there, which no 600 can
  // use (fragmentation +200); on n1 it leaves 600, still usable (+0).
  // Best-fit (fewest free left) picks n0; FGD picks n1.
  AddNodes({1, 1});
  Load(0, 0, 400);
  const std::vector<Shape> mix(10, Shape{.milli = 600});
  EXPECT_EQ(Choose("best-fit", Share("s", 400))->node, 0);
  EXPECT_EQ(Choose("fgd", Share("s", 400), mix)->node, 1);
}

TEST_F(PolicyTest, FgdPicksTheSlotThatFragmentsLeast) {
  // One node: slot 0 has 700 free, slot 1 has 300 free. Mix: 300 shares.
  // A 300 share on slot 0 leaves 400 + 300 (both usable): 0. On slot 1 it
  // leaves 700 + 0: 0 too; tie -> the fuller slot (slot 1). Mix of 700s: on
  // slot 0 the 700 would be lost (fragmentation rises), on slot 1 not.
  AddNodes({2});
  Load(0, 0, 300);
  Load(0, 1, 700);
  EXPECT_THAT(
      Choose("fgd", Share("s", 300), std::vector<Shape>(5, Shape{.milli = 300}))
          ->gpus,
      ElementsAre(1));
  EXPECT_THAT(
      Choose("fgd", Share("s", 300), std::vector<Shape>(5, Shape{.milli = 700}))
          ->gpus,
      ElementsAre(1));
  // With a mix of 400s, taking 300 from slot 1 (300 free) leaves 0 there and
  // slot 0's 700 still holds a 400; taking it from slot 0 leaves 400 + 300,
  // the 300 useless: FGD keeps slot 1.
  EXPECT_THAT(
      Choose("fgd", Share("s", 300), std::vector<Shape>(5, Shape{.milli = 400}))
          ->gpus,
      ElementsAre(1));
}

TEST_F(PolicyTest, FgdWithoutAMixBehavesLikeBestFit) {
  AddNodes({4, 4, 4});
  Load(1, 0, 1000);
  Load(1, 1, 1000);
  EXPECT_EQ(Choose("fgd", Whole("w", 1))->node, 1);
  EXPECT_EQ(Choose("fgd", Whole("w", 3))->node, 0);
}

TEST_F(PolicyTest, FgdPrefersKeepingWholeNodesForLargeRequests) {
  // n0: 8 slots, empty; n1: 8 slots, 6 used. Mix: 8-GPU requests. A 1-GPU
  // request on n0 would make n0 unable to host an 8 (all 8000 fragmented);
  // on n1 the remaining 1000 is already fragmented. FGD picks n1, as
  // best-fit does here.
  AddNodes({8, 8});
  for (int g = 0; g < 6; ++g) Load(1, g, 1000);
  EXPECT_EQ(
      Choose("fgd", Whole("w", 1), std::vector<Shape>(5, Shape{.gpus = 8}))
          ->node,
      1);
}

}  // namespace
}  // namespace hangar::scheduler

namespace hangar::scheduler {
namespace {

// FGD, written the slow and obvious way: every fitting node, every slot with
// room, F after - F before straight from NodeFragmentation.
std::optional<Placement> ReferenceFgd(const Cluster& cluster,
                                      const Request& request,
                                      const std::vector<WeightedShape>& mix) {
  std::optional<Placement> best;
  double best_delta = 0;
  std::pair<int64_t, int64_t> best_left;
  for (int index : cluster.NodesOfPool(request.pool)) {
    const NodeState& node = cluster.nodes()[index];
    if (!FitsNow(node, request)) continue;
    std::vector<int> free;
    for (int used : node.used_milli) free.push_back(kMilliPerGpu - used);
    const int64_t cpu_after = node.tracks_cpu()
                                  ? node.free_cpu_milli() - request.cpu_milli
                                  : std::numeric_limits<int64_t>::max();
    const double before = NodeFragmentation(node, mix);
    Placement placement{.node = index, .cpu_milli = request.cpu_milli};
    double delta = 0;
    if (request.gpus > 0) {
      std::vector<int> after = free;
      for (int g = 0; g < static_cast<int>(after.size()) &&
                      static_cast<int>(placement.gpus.size()) < request.gpus;
           ++g) {
        if (after[g] == kMilliPerGpu) {
          after[g] = 0;
          placement.gpus.push_back(g);
        }
      }
      placement.milli_per_gpu = kMilliPerGpu;
      delta = NodeFragmentation(after, cpu_after, mix) - before;
    } else {
      int slot = -1;
      for (int g = 0; g < static_cast<int>(free.size()); ++g) {
        if (free[g] < request.milli) continue;
        std::vector<int> after = free;
        after[g] -= request.milli;
        const double d = NodeFragmentation(after, cpu_after, mix) - before;
        if (slot < 0 || d < delta - 1e-9 ||
            (d < delta + 1e-9 && free[g] < free[slot])) {
          slot = g;
          delta = d;
        }
      }
      placement.gpus = {slot};
      placement.milli_per_gpu = request.milli;
    }
    const std::pair<int64_t, int64_t> left = {
        node.free_milli -
            (request.gpus > 0 ? request.gpus * 1000 : request.milli),
        cpu_after};
    if (!best.has_value() || delta < best_delta - 1e-9 ||
        (delta < best_delta + 1e-9 && left < best_left)) {
      best = placement;
      best_delta = delta;
      best_left = left;
    }
  }
  return best;
}

TEST(FgdReferenceTest, MatchesTheObviousImplementation) {
  for (int64_t cpu : {int64_t{0}, int64_t{32'000}}) {
    Cluster cluster;
    std::mt19937 rng(cpu == 0 ? 5 : 6);
    const int kSizes[] = {1, 2, 4, 8};
    for (int i = 0; i < 24; ++i) {
      ASSERT_OK(cluster
                    .AddNode(NodeSpec{.name = absl::StrCat("n", i),
                                      .pool = "p",
                                      .gpu_model = "G",
                                      .gpu_count = kSizes[rng() % 4],
                                      .cpu_milli = cpu})
                    .status());
    }
    PolicyOptions options;
    options.mix = {.window = 200, .max_shapes = 12, .refresh = 16};
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<PlacementPolicy> fgd,
                         MakePlacementPolicy("fgd", options));
    RequestMix mix(options.mix);
    int placed = 0;
    std::vector<std::string> live;
    for (int i = 0; i < 400; ++i) {
      Request request{.workload = absl::StrCat("w", i), .pool = "p"};
      if (rng() % 2 == 0) {
        request.milli = 100 * (1 + static_cast<int>(rng() % 9));
      } else {
        request.gpus = kSizes[rng() % 4];
      }
      request.cpu_milli = cpu == 0 ? 0 : (rng() % 6) * 1000;
      fgd->Observe(request);
      mix.Observe(ShapeOf(request));
      std::optional<Placement> expected =
          ReferenceFgd(cluster, request, mix.shapes());
      std::optional<Placement> chosen =
          fgd->Choose(cluster, request, cluster.NodesOfPool("p"));
      ASSERT_EQ(chosen.has_value(), expected.has_value()) << i;
      if (!chosen.has_value()) continue;
      ASSERT_EQ(*chosen, *expected) << "request " << i << " node "
                                    << chosen->node << " vs " << expected->node;
      ASSERT_OK(cluster.Allocate(request, *chosen));
      ++placed;
      live.push_back(request.workload);
      // Free something half the time so states keep changing.
      if (rng() % 2 == 0) {
        const size_t pick = rng() % live.size();
        ASSERT_OK(cluster.Release(live[pick]).status());
        live.erase(live.begin() + pick);
      }
    }
    EXPECT_GT(placed, 100);
  }
}

}  // namespace
}  // namespace hangar::scheduler
