#include "services/scheduler/autoscaler.h"

#include <memory>

#include "common/testing/fake_clock.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::scheduler {
namespace {

using ::hangar::testing::FakeClock;
using ::hangar::testing::IsOk;
using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kSet[] = "dep-1/r1";

class AutoscalerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto autoscaler = Autoscaler::Create(
        {.default_report_ttl = absl::Seconds(5), .clock = &clock_});
    ASSERT_TRUE(autoscaler.ok()) << autoscaler.status();
    autoscaler_ = std::move(autoscaler).value();
  }

  void SetPolicy(int min, int max, int batch, int up_s, int down_s) {
    ASSERT_OK(autoscaler_->SetPolicy(
        kSet, ScalingPolicy{.min_replicas = min,
                            .max_replicas = max,
                            .inference_batch_size = batch,
                            .scale_up_delay = absl::Seconds(up_s),
                            .scale_down_delay = absl::Seconds(down_s)}));
  }

  void Report(int64_t queued, int64_t in_flight = 0,
              absl::string_view reporter = "gw-a",
              absl::Duration ttl = absl::Hours(1)) {
    ASSERT_OK(autoscaler_->ReportLoad(kSet, reporter, queued, in_flight, ttl));
  }

  // Evaluates with `current` replicas and returns the target.
  int Target(int current) {
    auto decision = autoscaler_->Evaluate(kSet, current);
    EXPECT_TRUE(decision.ok()) << decision.status();
    return decision.ok() ? decision->target : -1;
  }

  FakeClock clock_;
  std::unique_ptr<Autoscaler> autoscaler_;
};

TEST(ScalingPolicyTest, Validation) {
  EXPECT_THAT(ValidateScalingPolicy({}), IsOk());
  struct Case {
    ScalingPolicy policy;
    const char* message;
  };
  const Case kCases[] = {
      {{.min_replicas = 3, .max_replicas = 2},
       "max_replicas: must be in [max(1, min_replicas) = 3, 64]; was 2"},
      {{.min_replicas = 0, .max_replicas = 0},
       "max_replicas: must be in [max(1, min_replicas) = 1, 64]; was 0"},
      {{.min_replicas = -1}, "min_replicas: must be in [0, 64]; was -1"},
      {{.min_replicas = 1, .max_replicas = 65}, "max_replicas"},
      {{.inference_batch_size = 0},
       "inference_batch_size: must be in [1, 256]; was 0"},
      {{.inference_batch_size = 257}, "inference_batch_size"},
      {{.scale_up_delay = absl::Seconds(-1)},
       "scale_up_delay: must be in [0s, 24h]; was -1s"},
      {{.scale_down_delay = absl::Hours(24) + absl::Seconds(1)},
       "scale_down_delay: must be in [0s, 24h]"},
  };
  for (const Case& c : kCases) {
    EXPECT_THAT(
        ValidateScalingPolicy(c.policy),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.message;
  }
  EXPECT_THAT(ValidateScalingPolicy({.min_replicas = 0, .max_replicas = 1}),
              IsOk());
}

TEST(AutoscalerCreateTest, Validates) {
  EXPECT_THAT(Autoscaler::Create({.clock = nullptr}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("clock")));
  FakeClock clock;
  EXPECT_THAT(Autoscaler::Create({.default_report_ttl = absl::ZeroDuration(),
                                  .clock = &clock}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("default_report_ttl")));
}

TEST_F(AutoscalerTest, BadInputs) {
  EXPECT_THAT(autoscaler_->Evaluate(kSet, 1),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(kSet)));
  SetPolicy(1, 4, 8, 0, 0);
  EXPECT_THAT(autoscaler_->Evaluate(kSet, -1),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(autoscaler_->ReportLoad(kSet, "gw", -1, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(autoscaler_->ReportLoad(kSet, "", 1, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(autoscaler_->ReportLoad(kSet, "gw", 1, 0, absl::Hours(2)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ttl")));
  EXPECT_THAT(autoscaler_->SetPolicy(kSet, {.max_replicas = 0}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(autoscaler_->SetPolicy("", {}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST_F(AutoscalerTest, StepScalesUpAfterTheDelay) {
  SetPolicy(1, 10, 4, /*up=*/30, /*down=*/60);
  EXPECT_EQ(Target(1), 1);
  Report(/*queued=*/12, /*in_flight=*/8);  // 20 -> 5 replicas
  ASSERT_OK_AND_ASSIGN(ScalingDecision d, autoscaler_->Evaluate(kSet, 1));
  EXPECT_EQ(d.load, 20);
  EXPECT_EQ(d.reporters, 1);
  EXPECT_EQ(d.desired, 5);
  EXPECT_EQ(d.target, 1);
  EXPECT_FALSE(d.changed());
  EXPECT_THAT(d.reason, StartsWith("waiting to scale up"));
  clock_.Advance(absl::Seconds(29));
  EXPECT_EQ(Target(1), 1);
  clock_.Advance(absl::Seconds(1));
  ASSERT_OK_AND_ASSIGN(d, autoscaler_->Evaluate(kSet, 1));
  EXPECT_EQ(d.target, 5);
  EXPECT_TRUE(d.changed());
  EXPECT_EQ(d.load, 20);
  EXPECT_EQ(d.time, clock_.Now());
  EXPECT_THAT(d.reason, HasSubstr("scale up to 5: load 20 needs 5 at batch 4"));
  // Now steady.
  clock_.Advance(absl::Seconds(100));
  ASSERT_OK_AND_ASSIGN(d, autoscaler_->Evaluate(kSet, 5));
  EXPECT_EQ(d.target, 5);
  EXPECT_THAT(d.reason, StartsWith("steady"));
}

TEST_F(AutoscalerTest, DesiredIsClampedToMax) {
  SetPolicy(1, 3, 4, 0, 0);
  Report(1000);
  ASSERT_OK_AND_ASSIGN(ScalingDecision d, autoscaler_->Evaluate(kSet, 1));
  EXPECT_EQ(d.desired, 3);
  EXPECT_EQ(d.target, 3);
}

TEST_F(AutoscalerTest, SpikeShorterThanTheDelayChangesNothing) {
  SetPolicy(1, 10, 4, /*up=*/30, /*down=*/30);
  Report(40);
  EXPECT_EQ(Target(1), 1);
  clock_.Advance(absl::Seconds(20));
  Report(2);  // the spike is over
  EXPECT_EQ(Target(1), 1);
  clock_.Advance(absl::Seconds(20));  // 40 s after the spike began
  EXPECT_EQ(Target(1), 1);
  // A new spike needs the whole delay again.
  Report(40);
  EXPECT_EQ(Target(1), 1);
  clock_.Advance(absl::Seconds(29));
  EXPECT_EQ(Target(1), 1);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(Target(1), 10);
}

TEST_F(AutoscalerTest, ScalesUpToTheSmallestNeedThatHeld) {
  SetPolicy(1, 20, 4, /*up=*/30, /*down=*/30);
  Report(40);  // 10
  EXPECT_EQ(Target(2), 2);
  clock_.Advance(absl::Seconds(10));
  Report(24);  // 6
  EXPECT_EQ(Target(2), 2);
  clock_.Advance(absl::Seconds(10));
  Report(60);  // 15
  EXPECT_EQ(Target(2), 2);
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(Target(2), 6);
}

TEST_F(AutoscalerTest, ScalesDownToTheLargestNeedThatHeld) {
  SetPolicy(1, 20, 4, /*up=*/30, /*down=*/60);
  Report(0);
  EXPECT_EQ(Target(10), 10);
  clock_.Advance(absl::Seconds(30));
  Report(16);  // 4, still below 10
  EXPECT_EQ(Target(10), 10);
  clock_.Advance(absl::Seconds(30));
  EXPECT_EQ(Target(10), 4);
}

TEST_F(AutoscalerTest, SawtoothFasterThanTheDelaysNeverFlaps) {
  SetPolicy(1, 10, 8, /*up=*/30, /*down=*/30);
  int current = 4;
  for (int i = 0; i < 60; ++i) {
    Report(i % 2 == 0 ? 80 : 0);  // 10 replicas, then 1
    const int target = Target(current);
    EXPECT_EQ(target, current) << "at step " << i;
    current = target;
    clock_.Advance(absl::Seconds(20));
  }
  EXPECT_EQ(current, 4);
  // A sawtooth slower than the delay does scale, once per half period.
  for (int i = 0; i < 2; ++i) {
    Report(80);
    Target(current);
    clock_.Advance(absl::Seconds(30));
    current = Target(current);
    EXPECT_EQ(current, 10);
    Report(0);
    Target(current);
    clock_.Advance(absl::Seconds(30));
    current = Target(current);
    EXPECT_EQ(current, 1);
  }
}

TEST_F(AutoscalerTest, VanishedGatewayStopsCountingAfterItsTtl) {
  SetPolicy(1, 10, 8, /*up=*/0, /*down=*/0);
  Report(16, 0, "gw-a", absl::Seconds(5));
  Report(10, 6, "gw-b", absl::Seconds(5));
  ASSERT_OK_AND_ASSIGN(ScalingDecision d, autoscaler_->Evaluate(kSet, 4));
  EXPECT_EQ(d.load, 32);
  EXPECT_EQ(d.reporters, 2);
  EXPECT_EQ(d.target, 4);
  // gw-b goes away; gw-a keeps reporting every 2 s.
  for (int i = 0; i < 2; ++i) {
    clock_.Advance(absl::Seconds(2));
    Report(16, 0, "gw-a", absl::Seconds(5));
    EXPECT_EQ(Target(4), 4);
  }
  clock_.Advance(absl::Seconds(1));  // 5 s after gw-b's report
  Report(16, 0, "gw-a", absl::Seconds(5));
  ASSERT_OK_AND_ASSIGN(d, autoscaler_->Evaluate(kSet, 4));
  EXPECT_EQ(d.load, 16);
  EXPECT_EQ(d.reporters, 1);
  EXPECT_EQ(d.target, 2);
  EXPECT_EQ(autoscaler_->Load(kSet), 16);
  // And when every gateway is gone, the load is 0.
  clock_.Advance(absl::Seconds(5));
  EXPECT_EQ(autoscaler_->Load(kSet), 0);
  EXPECT_EQ(Target(2), 1);
}

TEST_F(AutoscalerTest, ANewerReportReplacesTheOlderOne) {
  SetPolicy(1, 10, 1, 0, 0);
  Report(5);
  Report(3);
  EXPECT_EQ(autoscaler_->Load(kSet), 3);
  EXPECT_EQ(Target(1), 3);
}

TEST_F(AutoscalerTest, DefaultTtlApplies) {
  SetPolicy(1, 10, 1, 0, 0);
  ASSERT_OK(autoscaler_->ReportLoad(kSet, "gw", 3, 0));
  clock_.Advance(absl::Seconds(4));
  EXPECT_EQ(autoscaler_->Load(kSet), 3);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(autoscaler_->Load(kSet), 0);
}

TEST_F(AutoscalerTest, MinZeroScalesToZeroAndBack) {
  SetPolicy(0, 4, 8, /*up=*/0, /*down=*/10);
  EXPECT_EQ(Target(1), 1);  // no load: desired 0, waiting
  clock_.Advance(absl::Seconds(10));
  ASSERT_OK_AND_ASSIGN(ScalingDecision d, autoscaler_->Evaluate(kSet, 1));
  EXPECT_EQ(d.desired, 0);
  EXPECT_EQ(d.target, 0);
  Report(1);
  EXPECT_EQ(Target(0), 1);  // up delay 0: at once
}

TEST_F(AutoscalerTest, ZeroDelaysFollowTheLoadAtOnce) {
  SetPolicy(1, 10, 4, 0, 0);
  Report(17);
  EXPECT_EQ(Target(1), 5);
  Report(4);
  EXPECT_EQ(Target(5), 1);
  Report(0);
  EXPECT_EQ(Target(1), 1);  // min 1
}

TEST_F(AutoscalerTest, OutOfBoundsCountsMoveAtOnce) {
  SetPolicy(2, 4, 4, /*up=*/600, /*down=*/600);
  ASSERT_OK_AND_ASSIGN(ScalingDecision d, autoscaler_->Evaluate(kSet, 0));
  EXPECT_EQ(d.target, 2);
  EXPECT_THAT(d.reason, StartsWith("raise to min_replicas 2"));
  ASSERT_OK_AND_ASSIGN(d, autoscaler_->Evaluate(kSet, 9));
  EXPECT_EQ(d.target, 4);
  EXPECT_THAT(d.reason, StartsWith("lower to max_replicas 4"));
}

TEST_F(AutoscalerTest, SamePolicyKeepsTimersAChangedOneRestartsThem) {
  SetPolicy(1, 10, 4, /*up=*/30, /*down=*/30);
  Report(40);
  EXPECT_EQ(Target(1), 1);
  clock_.Advance(absl::Seconds(20));
  SetPolicy(1, 10, 4, 30, 30);  // same: no effect
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(Target(1), 10);
  Report(0);
  EXPECT_EQ(Target(10), 10);
  clock_.Advance(absl::Seconds(20));
  SetPolicy(1, 10, 4, 30, 40);  // changed: the down timer restarts
  EXPECT_EQ(Target(10), 10);
  clock_.Advance(absl::Seconds(39));
  EXPECT_EQ(Target(10), 10);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(Target(10), 1);
}

TEST_F(AutoscalerTest, ReportsBeforeThePolicyCountAndRemoveForgets) {
  Report(8);
  SetPolicy(1, 10, 4, 0, 0);
  EXPECT_EQ(Target(1), 2);
  autoscaler_->RemoveSet(kSet);
  EXPECT_EQ(autoscaler_->Load(kSet), 0);
  EXPECT_THAT(autoscaler_->Evaluate(kSet, 1),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

}  // namespace
}  // namespace hangar::scheduler
