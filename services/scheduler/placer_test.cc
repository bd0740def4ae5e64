#include "services/scheduler/placer.h"

#include <algorithm>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/scheduler/hardware_config.h"

namespace hangar::scheduler {
namespace {

using ::hangar::testing::IsOk;
using ::hangar::testing::StatusIs;
using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int64_t kGiB = int64_t{1} << 30;
const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

std::vector<NodeSpec> Pool(absl::string_view pool, int nodes, int gpus,
                           int64_t memory = 16 * kGiB) {
  std::vector<NodeSpec> specs;
  for (int i = 0; i < nodes; ++i) {
    specs.push_back(NodeSpec{.name = absl::StrCat(pool, "-", i),
                             .pool = std::string(pool),
                             .gpu_model = "G",
                             .gpu_count = gpus,
                             .gpu_memory_bytes = memory});
  }
  return specs;
}

Request Whole(std::string name, int gpus,
              Priority priority = Priority::kServing, absl::Time at = kT0,
              absl::string_view pool = "p") {
  return Request{.workload = std::move(name),
                 .pool = std::string(pool),
                 .gpus = gpus,
                 .priority = priority,
                 .enqueue_time = at};
}

Request Share(std::string name, int milli, absl::string_view pool = "p") {
  return Request{.workload = std::move(name),
                 .pool = std::string(pool),
                 .milli = milli,
                 .enqueue_time = kT0};
}

std::unique_ptr<Placer> MakePlacer(const std::vector<NodeSpec>& nodes,
                                   const std::string& policy = "best-fit") {
  auto placer = Placer::Create({.policy = policy}, nodes);
  EXPECT_TRUE(placer.ok()) << placer.status();
  return std::move(placer).value();
}

std::vector<std::string> PendingNames(const Placer& placer,
                                      absl::string_view pool = "") {
  std::vector<std::string> names;
  for (const auto& item : placer.Pending(pool)) {
    names.push_back(item.request.workload);
  }
  return names;
}

TEST(PlacerTest, CreateValidates) {
  EXPECT_THAT(
      Placer::Create({.policy = "worst-fit"}, Pool("p", 1, 1)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("policy")));
  EXPECT_THAT(Placer::Create({}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nodes")));
  std::vector<NodeSpec> twice = Pool("p", 1, 1);
  twice.push_back(twice[0]);
  EXPECT_THAT(Placer::Create({}, twice),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("already exists")));
  Placer::Options bad_mix;
  bad_mix.mix.window = 0;
  EXPECT_THAT(Placer::Create(bad_mix, Pool("p", 1, 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("mix")));
}

TEST(PlacerTest, NodesFromTheHardwareFile) {
  ASSERT_OK_AND_ASSIGN(config::HardwareConfig config,
                       LoadHardwareConfig(HANGAR_HARDWARE_CONFIG_PATH));
  std::vector<NodeSpec> nodes = NodesFromConfig(config);
  int expected = 0;
  for (const auto& pool : config.pools()) expected += pool.node_count();
  ASSERT_EQ(static_cast<int>(nodes.size()), expected);
  EXPECT_EQ(nodes[0].name, absl::StrCat(config.pools(0).name(), "-0"));
  EXPECT_EQ(nodes[0].gpu_memory_bytes, config.pools(0).gpu_memory_bytes());
  auto placer = MakePlacer(nodes);
  ASSERT_OK_AND_ASSIGN(Placer::Availability a10g,
                       placer->GetAvailability("a10g", 4, 0, 0));
  const config::PoolConfig* pool = FindPool(config, "a10g");
  EXPECT_EQ(a10g.total, pool->node_count() * (pool->gpus_per_node() / 4));
  EXPECT_EQ(a10g.available, a10g.total);
}

TEST(PlacerTest, PlacesAndQueuesWithAReason) {
  auto placer = MakePlacer(Pool("a10g", 2, 4));
  ASSERT_OK_AND_ASSIGN(
      Placer::Decision a,
      placer->Submit(Whole("a", 3, Priority::kServing, kT0, "a10g")));
  EXPECT_TRUE(a.placed);
  EXPECT_EQ(a.placement.node, 0);
  ASSERT_OK_AND_ASSIGN(
      Placer::Decision b,
      placer->Submit(Whole("b", 2, Priority::kServing, kT0, "a10g")));
  EXPECT_TRUE(b.placed);
  EXPECT_EQ(b.placement.node, 1);
  ASSERT_OK_AND_ASSIGN(
      Placer::Decision c,
      placer->Submit(Whole("c", 4, Priority::kServing, kT0, "a10g")));
  EXPECT_FALSE(c.placed);
  EXPECT_EQ(c.reason,
            "no node in pool a10g has 4 free GPUs; largest free block is 2");
  ASSERT_EQ(placer->Pending().size(), 1u);
  EXPECT_EQ(placer->Pending()[0].reason, c.reason);
  EXPECT_FALSE(placer->Find("c").has_value());
  ASSERT_TRUE(placer->Find("a").has_value());
  EXPECT_EQ(placer->Find("a")->gpus, (std::vector<int>{0, 1, 2}));
}

TEST(PlacerTest, BadRequestsAreErrors) {
  auto placer = MakePlacer(Pool("p", 1, 2));
  EXPECT_THAT(placer->Submit(Whole("a", 1, Priority::kServing, kT0, "q")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("\"q\"")));
  EXPECT_THAT(placer->Submit(Whole("", 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  ASSERT_OK(placer->Submit(Whole("a", 2)).status());
  EXPECT_THAT(placer->Submit(Whole("a", 1)),
              StatusIs(absl::StatusCode::kAlreadyExists, ::testing::_));
  ASSERT_OK(placer->Submit(Whole("b", 1)).status());  // pending
  EXPECT_THAT(placer->Submit(Whole("b", 1)),
              StatusIs(absl::StatusCode::kAlreadyExists, ::testing::_));
  EXPECT_THAT(placer->Release("zzz"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("zzz")));
}

TEST(PlacerTest, PermanentReasonsAndCheckFeasible) {
  auto placer = MakePlacer(Pool("t4", 2, 8, 16 * kGiB));
  Request big = Whole("big", 1, Priority::kServing, kT0, "t4");
  big.memory_bytes = 40 * kGiB;
  ASSERT_OK_AND_ASSIGN(Placer::Decision d, placer->Submit(big));
  EXPECT_FALSE(d.placed);
  EXPECT_EQ(d.reason, "needs 40 GiB per GPU; pool t4 has 16 GiB GPUs");
  EXPECT_THAT(placer->CheckFeasible(big),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "needs 40 GiB per GPU; pool t4 has 16 GiB GPUs"));
  // Spread over 4 GPUs it is 10 GiB each: feasible, and placed.
  Request spread = big;
  spread.workload = "spread";
  spread.gpus = 4;
  EXPECT_THAT(placer->CheckFeasible(spread), IsOk());
  ASSERT_OK_AND_ASSIGN(d, placer->Submit(spread));
  EXPECT_TRUE(d.placed);
  Request wide = Whole("wide", 16, Priority::kServing, kT0, "t4");
  EXPECT_THAT(placer->CheckFeasible(wide),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "needs 16 GPUs on one node; nodes in pool t4 have at "
                       "most 8"));
  EXPECT_THAT(
      placer->CheckFeasible(Whole("x", 1, Priority::kServing, kT0, "nope")),
      StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  Request odd = Whole("odd", 1, Priority::kServing, kT0, "t4");
  odd.memory_bytes = 17 * kGiB + 512 * (int64_t{1} << 20);
  ASSERT_OK_AND_ASSIGN(d, placer->Submit(odd));
  EXPECT_EQ(d.reason, "needs 17.5 GiB per GPU; pool t4 has 16 GiB GPUs");
}

TEST(PlacerTest, HostMemoryAndCpuReasons) {
  std::vector<NodeSpec> nodes = Pool("p", 2, 2);
  for (NodeSpec& spec : nodes) {
    spec.cpu_milli = 8000;
    spec.host_memory_bytes = 64 * kGiB;
  }
  auto placer = MakePlacer(nodes);
  Request fat = Whole("fat", 1);
  fat.host_memory_bytes = 48 * kGiB;
  fat.cpu_milli = 1000;
  ASSERT_OK(placer->Submit(fat).status());
  fat.workload = "fat2";
  ASSERT_OK(placer->Submit(fat).status());
  fat.workload = "fat3";
  ASSERT_OK_AND_ASSIGN(Placer::Decision d, placer->Submit(fat));
  EXPECT_FALSE(d.placed);
  // Each node still has a free GPU, but not the memory.
  EXPECT_EQ(d.reason,
            "no node in pool p has 1 free GPU with 1000 free CPU milli and "
            "48 GiB free host memory");
  Request huge = Whole("huge", 1);
  huge.host_memory_bytes = 65 * kGiB;
  EXPECT_THAT(placer->CheckFeasible(huge),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "needs 65 GiB of host memory on one node; nodes in "
                       "pool p have at most 64 GiB"));
  Request busy = Whole("busy", 1);
  busy.cpu_milli = 9000;
  EXPECT_THAT(placer->CheckFeasible(busy),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "needs 9000 CPU milli on one node; nodes in pool p "
                       "have at most 8000"));
  // Freeing one workload's memory lets the waiting one start.
  ASSERT_OK_AND_ASSIGN(auto started, placer->Release("fat"));
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].workload, "fat3");
  EXPECT_EQ(started[0].placement.host_memory_bytes, 48 * kGiB);
}

TEST(PlacerTest, ShareReasonNamesTheLargestFreeShare) {
  auto placer = MakePlacer(Pool("p", 1, 2));
  ASSERT_OK(placer->Submit(Share("a", 700)).status());
  ASSERT_OK(placer->Submit(Share("b", 800)).status());
  ASSERT_OK_AND_ASSIGN(Placer::Decision d, placer->Submit(Share("c", 400)));
  EXPECT_FALSE(d.placed);
  EXPECT_EQ(d.reason,
            "no GPU in pool p has 400 free milli-GPU; largest free share is "
            "300");
  ASSERT_OK_AND_ASSIGN(d, placer->Submit(Whole("w", 1)));
  EXPECT_EQ(d.reason,
            "no node in pool p has 1 free GPU; largest free block is 0");
}

TEST(PlacerTest, ReleasePlacesPendingInPriorityThenFifoOrder) {
  auto placer = MakePlacer(Pool("p", 1, 2));
  ASSERT_OK(placer->Submit(Whole("full", 2)).status());
  // Submitted in an order unlike their rank.
  ASSERT_OK(placer
                ->Submit(Whole("scale", 1, Priority::kScaleOut,
                               kT0 + absl::Seconds(1)))
                .status());
  ASSERT_OK(placer
                ->Submit(Whole("opt", 1, Priority::kOptimization,
                               kT0 + absl::Seconds(2)))
                .status());
  ASSERT_OK(placer
                ->Submit(Whole("serve-late", 1, Priority::kServing,
                               kT0 + absl::Seconds(4)))
                .status());
  ASSERT_OK(placer
                ->Submit(Whole("serve-early", 1, Priority::kServing,
                               kT0 + absl::Seconds(3)))
                .status());
  EXPECT_THAT(PendingNames(*placer),
              ElementsAre("serve-early", "serve-late", "opt", "scale"));
  ASSERT_OK_AND_ASSIGN(std::vector<Placer::Started> started,
                       placer->Release("full"));
  ASSERT_EQ(started.size(), 2u);
  EXPECT_EQ(started[0].workload, "serve-early");
  EXPECT_EQ(started[1].workload, "serve-late");
  EXPECT_THAT(PendingNames(*placer), ElementsAre("opt", "scale"));
  ASSERT_OK_AND_ASSIGN(started, placer->Release("serve-late"));
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].workload, "opt");
  EXPECT_EQ(started[0].placement.gpus, placer->Find("opt")->gpus);
  ASSERT_OK_AND_ASSIGN(started, placer->Release("serve-early"));
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].workload, "scale");
  EXPECT_THAT(placer->Pending(), IsEmpty());
}

TEST(PlacerTest, EqualTimesKeepSubmissionOrder) {
  auto placer = MakePlacer(Pool("p", 1, 1));
  ASSERT_OK(placer->Submit(Whole("full", 1)).status());
  for (const char* name : {"c", "a", "b"}) {
    ASSERT_OK(placer->Submit(Whole(name, 1)).status());
  }
  EXPECT_THAT(PendingNames(*placer), ElementsAre("c", "a", "b"));
  ASSERT_OK_AND_ASSIGN(auto started, placer->Release("full"));
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].workload, "c");
}

TEST(PlacerTest, SmallerLaterRequestsBackfill) {
  auto placer = MakePlacer(Pool("p", 1, 4));
  ASSERT_OK(placer->Submit(Whole("a", 2)).status());
  ASSERT_OK_AND_ASSIGN(Placer::Decision big, placer->Submit(Whole("big", 4)));
  EXPECT_FALSE(big.placed);
  ASSERT_OK_AND_ASSIGN(Placer::Decision small,
                       placer->Submit(Whole("small", 1)));
  EXPECT_TRUE(small.placed);
  ASSERT_OK_AND_ASSIGN(auto started, placer->Release("a"));
  EXPECT_THAT(started, IsEmpty());  // 3 free, big needs 4
  EXPECT_EQ(placer->Pending()[0].reason,
            "no node in pool p has 4 free GPUs; largest free block is 3");
  ASSERT_OK_AND_ASSIGN(started, placer->Release("small"));
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].workload, "big");
}

TEST(PlacerTest, ReleasingAPendingItemDropsIt) {
  auto placer = MakePlacer(Pool("p", 1, 1));
  ASSERT_OK(placer->Submit(Whole("a", 1)).status());
  ASSERT_OK(placer->Submit(Whole("b", 1)).status());
  ASSERT_OK_AND_ASSIGN(auto started, placer->Release("b"));
  EXPECT_THAT(started, IsEmpty());
  EXPECT_THAT(placer->Pending(), IsEmpty());
  ASSERT_OK_AND_ASSIGN(started, placer->Release("a"));
  EXPECT_THAT(started, IsEmpty());
  EXPECT_THAT(placer->Release("b"),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST(PlacerTest, PendingAndReleaseArePerPool) {
  std::vector<NodeSpec> nodes = Pool("p", 1, 1);
  for (NodeSpec& spec : Pool("q", 1, 1)) nodes.push_back(spec);
  auto placer = MakePlacer(nodes);
  ASSERT_OK(placer->Submit(Whole("p1", 1)).status());
  ASSERT_OK(placer->Submit(Whole("p2", 1)).status());
  ASSERT_OK(
      placer->Submit(Whole("q1", 1, Priority::kServing, kT0, "q")).status());
  ASSERT_OK(
      placer->Submit(Whole("q2", 1, Priority::kServing, kT0, "q")).status());
  EXPECT_THAT(PendingNames(*placer, "p"), ElementsAre("p2"));
  EXPECT_THAT(PendingNames(*placer, "q"), ElementsAre("q2"));
  ASSERT_OK_AND_ASSIGN(auto started, placer->Release("q1"));
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].workload, "q2");
  EXPECT_THAT(PendingNames(*placer), ElementsAre("p2"));
}

TEST(PlacerTest, TryPlaceDoesNotQueue) {
  auto placer = MakePlacer(Pool("p", 1, 1));
  ASSERT_OK(placer->TryPlace(Whole("a", 1)).status());
  ASSERT_OK_AND_ASSIGN(Placer::Decision d, placer->TryPlace(Whole("b", 1)));
  EXPECT_FALSE(d.placed);
  EXPECT_THAT(d.reason, HasSubstr("largest free block is 0"));
  EXPECT_THAT(placer->Pending(), IsEmpty());
}

TEST(PlacerTest, PoolStatusAndAvailability) {
  auto placer = MakePlacer(Pool("p", 2, 4));
  ASSERT_OK(placer->Submit(Whole("a", 3)).status());
  ASSERT_OK(placer->Submit(Share("s", 250)).status());
  ASSERT_OK(placer->Submit(Whole("big", 4)).status());   // n1
  ASSERT_OK(placer->Submit(Whole("late", 2)).status());  // pending
  ASSERT_OK_AND_ASSIGN(Placer::PoolStatus status, placer->GetPoolStatus("p"));
  EXPECT_EQ(status.policy, "best-fit");
  EXPECT_EQ(status.total_gpus, 8);
  EXPECT_EQ(status.free_gpus, 0);
  ASSERT_EQ(status.nodes.size(), 2u);
  EXPECT_EQ(status.nodes[0].name, "p-0");
  EXPECT_THAT(status.nodes[0].gpu_milli_allocated,
              ElementsAre(1000, 1000, 1000, 250));
  EXPECT_THAT(status.nodes[0].workloads, ElementsAre("a", "s"));
  EXPECT_THAT(status.nodes[1].workloads, ElementsAre("big"));
  ASSERT_EQ(status.pending.size(), 1u);
  EXPECT_EQ(status.pending[0].request.workload, "late");
  // Free: 750 on one slot. The mix has 1-slot-or-more whole requests (3, 4,
  // 2 GPUs: 3 of 4 observations) that cannot use it and one 250 share that
  // can: 3/4 of the free capacity is fragmented.
  EXPECT_THAT(status.fragmentation, DoubleNear(0.75, 1e-9));
  EXPECT_THAT(placer->GetPoolStatus("q"),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));

  ASSERT_OK(placer->Release("big").status());  // "late" starts on p-1
  ASSERT_OK_AND_ASSIGN(Placer::Availability two,
                       placer->GetAvailability("p", 2, 0, 0));
  EXPECT_EQ(two.available, 1);  // p-1 has 2 free
  EXPECT_EQ(two.total, 4);
  ASSERT_OK_AND_ASSIGN(Placer::Availability quarter,
                       placer->GetAvailability("p", 0, 250, 0));
  EXPECT_EQ(quarter.available, 3 + 8);  // 750 on p-0, 2 slots on p-1
  EXPECT_EQ(quarter.total, 32);
  ASSERT_OK_AND_ASSIGN(Placer::Availability too_big,
                       placer->GetAvailability("p", 1, 0, 17 * kGiB));
  EXPECT_EQ(too_big.total, 0);
  EXPECT_THAT(placer->GetAvailability("p", 0, 0, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(PlacerTest, FormatBytes) {
  EXPECT_EQ(FormatBytes(16 * kGiB), "16 GiB");
  EXPECT_EQ(FormatBytes(3 * kGiB / 2), "1.5 GiB");
  EXPECT_EQ(FormatBytes(512 << 20), "512 MiB");
  EXPECT_EQ(FormatBytes(1), "1 byte");
  EXPECT_EQ(FormatBytes(100), "100 bytes");
}

TEST(PlacerTest, ConcurrentCallersKeepTheBooksStraight) {
  auto placer = MakePlacer(Pool("p", 8, 4));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&placer, t] {
      std::mt19937 rng(t);
      std::vector<std::string> mine;
      for (int i = 0; i < 500; ++i) {
        if (mine.empty() || rng() % 2 == 0) {
          Request request = rng() % 2 == 0
                                ? Whole(absl::StrCat("t", t, "-", i),
                                        1 + static_cast<int>(rng() % 3))
                                : Share(absl::StrCat("t", t, "-", i),
                                        100 + static_cast<int>(rng() % 800));
          ASSERT_OK(placer->Submit(request).status());
          mine.push_back(request.workload);
        } else {
          const size_t pick = rng() % mine.size();
          ASSERT_OK(placer->Release(mine[pick]).status());
          mine.erase(mine.begin() + pick);
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_OK_AND_ASSIGN(Placer::PoolStatus status, placer->GetPoolStatus("p"));
  for (const Placer::NodeStatus& node : status.nodes) {
    for (int milli : node.gpu_milli_allocated) {
      EXPECT_GE(milli, 0);
      EXPECT_LE(milli, kMilliPerGpu);
    }
    for (const std::string& workload : node.workloads) {
      ASSERT_TRUE(placer->Find(workload).has_value()) << workload;
    }
  }
}

// Random submits and releases of whole GPUs and shares; after every step the
// allocation each node reports equals the sum of what the placed workloads
// hold, no slot exceeds 1000 milli, whole GPUs are never shared, and no
// pending item fits anywhere.
class PlacerInvariantTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PlacerInvariantTest, NeverOverbooksAGpu) {
  std::vector<NodeSpec> nodes;
  for (int i = 0; i < 12; ++i) {
    nodes.push_back(
        NodeSpec{.name = absl::StrCat("n", i),
                 .pool = "p",
                 .gpu_model = "G",
                 .gpu_count = (i % 3 == 0) ? 8 : (i % 3 == 1 ? 4 : 2),
                 .gpu_memory_bytes = 16 * kGiB,
                 .cpu_milli = 32'000});
  }
  auto placer = MakePlacer(nodes, GetParam());
  std::mt19937 rng(20231);
  std::vector<std::string> live;  // placed or pending
  absl::flat_hash_map<std::string, Request> requests;
  const int kSizes[] = {1, 1, 1, 2, 4, 8};
  for (int step = 0; step < 3000; ++step) {
    if (live.empty() || rng() % 100 < 60) {
      Request request;
      request.workload = absl::StrCat("w", step);
      request.pool = "p";
      request.priority = static_cast<Priority>(rng() % 3);
      request.enqueue_time = kT0 + absl::Seconds(rng() % 50);
      request.cpu_milli = (rng() % 8) * 1000;
      if (rng() % 2 == 0) {
        request.milli = 50 + static_cast<int>(rng() % 900);
      } else {
        request.gpus = kSizes[rng() % 6];
      }
      ASSERT_OK(placer->Submit(request).status());
      live.push_back(request.workload);
      requests[request.workload] = request;
    } else {
      const size_t pick = rng() % live.size();
      ASSERT_OK(placer->Release(live[pick]).status());
      live.erase(live.begin() + pick);
    }
    // Recompute every slot from the placements.
    std::vector<std::vector<int>> used(nodes.size());
    std::vector<int64_t> cpu(nodes.size(), 0);
    for (size_t i = 0; i < nodes.size(); ++i) {
      used[i].assign(nodes[i].gpu_count, 0);
    }
    std::vector<std::vector<bool>> whole(nodes.size());
    for (size_t i = 0; i < nodes.size(); ++i) {
      whole[i].assign(nodes[i].gpu_count, false);
    }
    for (const std::string& name : live) {
      std::optional<Placement> p = placer->Find(name);
      if (!p.has_value()) continue;
      const Request& request = requests[name];
      ASSERT_EQ(p->gpus.size(),
                static_cast<size_t>(request.gpus > 0 ? request.gpus : 1));
      cpu[p->node] += p->cpu_milli;
      for (int gpu : p->gpus) {
        ASSERT_FALSE(whole[p->node][gpu]) << "whole GPU shared at " << step;
        if (p->milli_per_gpu == kMilliPerGpu) {
          ASSERT_EQ(used[p->node][gpu], 0) << "whole GPU over a share";
          whole[p->node][gpu] = true;
        }
        used[p->node][gpu] += p->milli_per_gpu;
        ASSERT_LE(used[p->node][gpu], kMilliPerGpu) << "overbooked at " << step;
      }
    }
    ASSERT_OK_AND_ASSIGN(Placer::PoolStatus status, placer->GetPoolStatus("p"));
    for (size_t i = 0; i < nodes.size(); ++i) {
      ASSERT_EQ(status.nodes[i].gpu_milli_allocated, used[i])
          << "node " << i << " step " << step;
      ASSERT_LE(cpu[i], nodes[i].cpu_milli);
    }
    ASSERT_GE(status.fragmentation, 0);
    ASSERT_LE(status.fragmentation, 1);
    // Every pending item has a reason and really does not fit now: the
    // queue is retried whenever capacity frees.
    for (const auto& item : status.pending) {
      ASSERT_FALSE(item.reason.empty());
      const Request& r = item.request;
      for (size_t i = 0; i < nodes.size(); ++i) {
        if (cpu[i] + r.cpu_milli > nodes[i].cpu_milli) continue;
        int free_whole = 0;
        int max_free = 0;
        for (int u : used[i]) {
          if (u == 0) ++free_whole;
          max_free = std::max(max_free, kMilliPerGpu - u);
        }
        if (r.gpus > 0) {
          ASSERT_LT(free_whole, r.gpus) << r.workload << " fits on " << i;
        } else {
          ASSERT_LT(max_free, r.milli) << r.workload << " fits on " << i;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllPolicies, PlacerInvariantTest,
                         ::testing::Values("first-fit", "best-fit", "fgd"));

}  // namespace
}  // namespace hangar::scheduler
