#include "services/scheduler/cluster.h"

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::scheduler {
namespace {

using ::hangar::testing::IsOk;
using ::hangar::testing::IsOkAndHolds;
using ::hangar::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kGiB = int64_t{1} << 30;

NodeSpec Node(std::string name, int gpus, int64_t cpu = 0) {
  return NodeSpec{.name = std::move(name),
                  .pool = "p",
                  .gpu_model = "T4",
                  .gpu_count = gpus,
                  .gpu_memory_bytes = 16 * kGiB,
                  .cpu_milli = cpu};
}

Request Whole(std::string name, int gpus, int64_t memory = 0) {
  return Request{.workload = std::move(name),
                 .pool = "p",
                 .gpus = gpus,
                 .memory_bytes = memory};
}

Request Share(std::string name, int milli) {
  return Request{.workload = std::move(name), .pool = "p", .milli = milli};
}

TEST(ClusterTest, AddNodeValidates) {
  Cluster cluster;
  EXPECT_THAT(cluster.AddNode(Node("n0", 4)), IsOkAndHolds(0));
  EXPECT_THAT(cluster.AddNode(Node("n1", 2)), IsOkAndHolds(1));
  EXPECT_THAT(cluster.AddNode(Node("n0", 4)),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("n0")));
  EXPECT_THAT(
      cluster.AddNode(Node("n2", 0)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gpu_count")));
  EXPECT_THAT(cluster.AddNode(Node("n2", 65)),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(cluster.AddNode(Node("", 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(cluster.NodesOfPool("p"), ElementsAre(0, 1));
  EXPECT_TRUE(cluster.NodesOfPool("q").empty());
  EXPECT_EQ(cluster.nodes()[0].free_whole_gpus, 4);
  EXPECT_EQ(cluster.nodes()[0].free_milli, 4000);
}

TEST(ClusterTest, RequestValidation) {
  EXPECT_THAT(ValidateRequest(Whole("a", 2)), IsOk());
  EXPECT_THAT(ValidateRequest(Share("a", 500)), IsOk());
  EXPECT_THAT(ValidateRequest(Share("a", 1000)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("milli: a share must be in (0, 1000); was "
                                 "1000")));
  EXPECT_THAT(
      ValidateRequest(Share("a", 0)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("was nothing")));
  Request both = Whole("a", 1);
  both.milli = 300;
  EXPECT_THAT(ValidateRequest(both),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("milli: must be 0 with whole GPUs")));
  EXPECT_THAT(
      ValidateRequest(Whole("", 1)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("workload")));
  EXPECT_THAT(ValidateRequest(Whole("a", -1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gpus")));
  EXPECT_THAT(
      ValidateRequest(Whole("a", 1, -5)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("memory_bytes")));
  Request cpu_only{.workload = "c", .pool = "p", .cpu_milli = 4000};
  EXPECT_THAT(ValidateRequest(cpu_only), IsOk());
}

TEST(ClusterTest, MemoryIsCheckedPerGpu) {
  Cluster cluster;
  ASSERT_OK(cluster.AddNode(Node("n0", 4)).status());
  const NodeState& node = cluster.nodes()[0];
  EXPECT_TRUE(FitsNow(node, Whole("a", 1, 16 * kGiB)));
  EXPECT_FALSE(FitsNow(node, Whole("a", 1, 16 * kGiB + 1)));
  // 40 GiB over 4 GPUs is 10 GiB each.
  EXPECT_TRUE(FitsNow(node, Whole("a", 4, 40 * kGiB)));
  // 40 GiB over 2 GPUs is 20 GiB each.
  EXPECT_FALSE(FitsNow(node, Whole("a", 2, 40 * kGiB)));
  EXPECT_EQ(MemoryPerGpu(Whole("a", 3, 10)), 4);
  Request share = Share("s", 100);
  share.memory_bytes = 17 * kGiB;
  EXPECT_FALSE(FitsNow(node, share));
  Request other_pool = Whole("a", 1);
  other_pool.pool = "q";
  EXPECT_FALSE(FitsNow(node, other_pool));
}

TEST(ClusterTest, AllocateRefusesDoubleBooking) {
  Cluster cluster;
  ASSERT_OK(cluster.AddNode(Node("n0", 2, 8000)).status());
  Request a = Whole("a", 1);
  a.cpu_milli = 2000;
  ASSERT_OK(cluster.Allocate(
      a,
      Placement{
          .node = 0, .gpus = {0}, .milli_per_gpu = 1000, .cpu_milli = 2000}));
  EXPECT_EQ(cluster.nodes()[0].free_whole_gpus, 1);
  EXPECT_EQ(cluster.nodes()[0].free_cpu_milli(), 6000);
  // The same GPU again.
  EXPECT_THAT(cluster.Allocate(
                  Whole("b", 1),
                  Placement{.node = 0, .gpus = {0}, .milli_per_gpu = 1000}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("GPU 0 of n0 has 0 free milli")));
  // A share on a whole GPU.
  EXPECT_THAT(
      cluster.Allocate(Share("s", 10),
                       Placement{.node = 0, .gpus = {0}, .milli_per_gpu = 10}),
      StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  // The same workload twice.
  EXPECT_THAT(cluster.Allocate(a, Placement{.node = 0,
                                            .gpus = {1},
                                            .milli_per_gpu = 1000,
                                            .cpu_milli = 2000}),
              StatusIs(absl::StatusCode::kAlreadyExists, ::testing::_));
  // Repeated slot, wrong count, bad node, too much CPU.
  EXPECT_THAT(cluster.Allocate(
                  Whole("c", 2),
                  Placement{.node = 0, .gpus = {1, 1}, .milli_per_gpu = 1000}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(cluster.Allocate(
                  Whole("c", 2),
                  Placement{.node = 0, .gpus = {1}, .milli_per_gpu = 1000}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(cluster.Allocate(
                  Whole("c", 1),
                  Placement{.node = 7, .gpus = {1}, .milli_per_gpu = 1000}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  Request hungry = Whole("h", 1);
  hungry.cpu_milli = 7000;
  EXPECT_THAT(
      cluster.Allocate(hungry, Placement{.node = 0,
                                         .gpus = {1},
                                         .milli_per_gpu = 1000,
                                         .cpu_milli = 7000}),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("CPU")));
  // Nothing of the refused attempts stuck.
  EXPECT_EQ(cluster.nodes()[0].used_milli, (std::vector<int>{1000, 0}));
  EXPECT_EQ(cluster.workload_count(), 1);
}

TEST(ClusterTest, SharesAddUpToOneGpu) {
  Cluster cluster;
  ASSERT_OK(cluster.AddNode(Node("n0", 1)).status());
  ASSERT_OK(cluster.Allocate(
      Share("a", 600),
      Placement{.node = 0, .gpus = {0}, .milli_per_gpu = 600}));
  ASSERT_OK(cluster.Allocate(
      Share("b", 400),
      Placement{.node = 0, .gpus = {0}, .milli_per_gpu = 400}));
  EXPECT_THAT(
      cluster.Allocate(Share("c", 1),
                       Placement{.node = 0, .gpus = {0}, .milli_per_gpu = 1}),
      StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  EXPECT_EQ(cluster.nodes()[0].max_free_share, 0);
  EXPECT_EQ(cluster.nodes()[0].free_whole_gpus, 0);
  EXPECT_THAT(cluster.nodes()[0].workloads, ElementsAre("a", "b"));
  ASSERT_OK_AND_ASSIGN(Placement freed, cluster.Release("a"));
  EXPECT_EQ(freed.milli_per_gpu, 600);
  EXPECT_EQ(cluster.nodes()[0].max_free_share, 600);
  EXPECT_THAT(cluster.nodes()[0].workloads, ElementsAre("b"));
  EXPECT_THAT(cluster.Release("a"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("a")));
  EXPECT_EQ(cluster.Find("a"), nullptr);
  ASSERT_NE(cluster.Find("b"), nullptr);
  EXPECT_EQ(cluster.Find("b")->gpus, std::vector<int>{0});
}

TEST(ClusterTest, VersionChangesOnEveryChange) {
  Cluster cluster;
  ASSERT_OK(cluster.AddNode(Node("n0", 1)).status());
  const uint64_t v0 = cluster.nodes()[0].version;
  ASSERT_OK(cluster.Allocate(
      Share("a", 100),
      Placement{.node = 0, .gpus = {0}, .milli_per_gpu = 100}));
  const uint64_t v1 = cluster.nodes()[0].version;
  EXPECT_NE(v0, v1);
  ASSERT_OK(cluster.Release("a").status());
  EXPECT_NE(cluster.nodes()[0].version, v1);
}

}  // namespace
}  // namespace hangar::scheduler

namespace hangar::scheduler {
namespace {

TEST(ClusterHostMemoryTest, IsBookedAndFreed) {
  Cluster cluster;
  NodeSpec spec{.name = "n0",
                .pool = "p",
                .gpu_model = "G",
                .gpu_count = 2,
                .host_memory_bytes = 100};
  ASSERT_OK(cluster.AddNode(spec).status());
  Request a{.workload = "a", .pool = "p", .gpus = 1, .host_memory_bytes = 60};
  Request b{.workload = "b", .pool = "p", .gpus = 1, .host_memory_bytes = 50};
  EXPECT_TRUE(FitsNow(cluster.nodes()[0], a));
  ASSERT_OK(cluster.Allocate(a, Placement{.node = 0,
                                          .gpus = {0},
                                          .milli_per_gpu = 1000,
                                          .host_memory_bytes = 60}));
  EXPECT_EQ(cluster.nodes()[0].free_host_memory_bytes(), 40);
  EXPECT_FALSE(FitsNow(cluster.nodes()[0], b));
  EXPECT_THAT(cluster.Allocate(b, Placement{.node = 0,
                                            .gpus = {1},
                                            .milli_per_gpu = 1000,
                                            .host_memory_bytes = 50}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("host memory")));
  // A placement that books other than the request asks is refused too.
  EXPECT_THAT(cluster.Allocate(b, Placement{.node = 0,
                                            .gpus = {1},
                                            .milli_per_gpu = 1000,
                                            .host_memory_bytes = 0}),
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  ASSERT_OK(cluster.Release("a").status());
  EXPECT_EQ(cluster.nodes()[0].free_host_memory_bytes(), 100);
  EXPECT_TRUE(FitsNow(cluster.nodes()[0], b));
  Request negative = b;
  negative.host_memory_bytes = -1;
  EXPECT_THAT(ValidateRequest(negative),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("host_memory_bytes")));
}

}  // namespace
}  // namespace hangar::scheduler
