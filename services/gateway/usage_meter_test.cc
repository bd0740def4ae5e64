#include "services/gateway/usage_meter.h"

#include "common/api/time.h"
#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::gateway {
namespace {

using ::hangar::testing::FakeClock;

class UsageMeterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<UsageMeter>> meter =
        UsageMeter::Create({.reporter_id = "gw-a", .clock = &clock_});
    ASSERT_TRUE(meter.ok()) << meter.status();
    meter_ = *std::move(meter);
  }

  FakeClock clock_;
  std::unique_ptr<UsageMeter> meter_;
};

TEST_F(UsageMeterTest, AWindowSumsRequestsPerKeyAndRevision) {
  const absl::Time start = clock_.Now();
  meter_->Record({"key-1", "dep-1", 1}, 10, 5);
  meter_->Record({"key-1", "dep-1", 1}, 20, 7);
  meter_->Record({"key-2", "dep-1", 2}, 3, 1);
  clock_.Advance(absl::Seconds(5));
  std::optional<UsageBatch> batch = meter_->NextBatch();
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->request.report_id(), "gw-a-1");
  ASSERT_EQ(batch->request.reports_size(), 2);
  const v1::TokenUsageReport& first = batch->request.reports(0);
  EXPECT_EQ(first.api_key(), "key-1");
  EXPECT_EQ(first.revision(), 1);
  EXPECT_EQ(first.requests(), 2);
  EXPECT_EQ(first.tokens().prompt_tokens(), 30);
  EXPECT_EQ(first.tokens().completion_tokens(), 12);
  EXPECT_EQ(FromProtoTimestamp(first.start_time()), start);
  EXPECT_EQ(FromProtoTimestamp(first.end_time()), start + absl::Seconds(5));
  EXPECT_EQ(batch->request.reports(1).api_key(), "key-2");
}

TEST_F(UsageMeterTest, AnUnacknowledgedBatchIsResentUnderTheSameId) {
  meter_->Record({"key-1", "dep-1", 1}, 10, 5);
  std::optional<UsageBatch> first = meter_->NextBatch();
  ASSERT_TRUE(first.has_value());
  // More traffic while the report is in the air goes to the next window.
  meter_->Record({"key-1", "dep-1", 1}, 1, 1);
  std::optional<UsageBatch> retry = meter_->NextBatch();
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->request.SerializeAsString(),
            first->request.SerializeAsString());
  EXPECT_EQ(meter_->unreported_requests(), 2);

  meter_->Acknowledge("gw-a-1");
  std::optional<UsageBatch> next = meter_->NextBatch();
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->request.report_id(), "gw-a-2");
  ASSERT_EQ(next->request.reports_size(), 1);
  EXPECT_EQ(next->request.reports(0).tokens().prompt_tokens(), 1);
  // Windows are contiguous: the next starts where the last ended.
  EXPECT_EQ(next->request.reports(0).start_time().SerializeAsString(),
            first->request.reports(0).end_time().SerializeAsString());
  meter_->Acknowledge("gw-a-2");
  EXPECT_FALSE(meter_->NextBatch().has_value());
  EXPECT_EQ(meter_->unreported_requests(), 0);
}

TEST_F(UsageMeterTest, AStaleAcknowledgementChangesNothing) {
  meter_->Record({"key-1", "dep-1", 1}, 10, 5);
  ASSERT_TRUE(meter_->NextBatch().has_value());
  meter_->Acknowledge("gw-a-99");
  EXPECT_EQ(meter_->NextBatch()->request.report_id(), "gw-a-1");
}

TEST_F(UsageMeterTest, NothingRecordedNothingSent) {
  EXPECT_FALSE(meter_->NextBatch().has_value());
}

TEST(UsageMeterOptionsTest, ReporterIdIsRequired) {
  FakeClock clock;
  EXPECT_EQ(
      UsageMeter::Create({.reporter_id = "", .clock = &clock}).status().code(),
      absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hangar::gateway
