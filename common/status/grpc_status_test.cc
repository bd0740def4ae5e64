#include "common/status/grpc_status.h"

#include "absl/status/statusor.h"
#include "common/status/status_macros.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace hangar {
namespace {

using ::hangar::testing::IsOk;
using ::hangar::testing::IsOkAndHolds;
using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;

TEST(GrpcStatusTest, KeepsCodeAndMessageBothWays) {
  absl::Status status =
      absl::InvalidArgumentError("spec.min_replicas: must be >= 0");
  grpc::Status edge = ToGrpcStatus(status);
  EXPECT_EQ(edge.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(edge.error_message(), "spec.min_replicas: must be >= 0");
  EXPECT_THAT(FromGrpcStatus(edge),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "spec.min_replicas: must be >= 0"));
}

TEST(GrpcStatusTest, EveryCanonicalCodeRoundTrips) {
  for (int code = 0; code <= 16; ++code) {
    absl::Status status(static_cast<absl::StatusCode>(code), code ? "x" : "");
    EXPECT_EQ(FromGrpcStatus(ToGrpcStatus(status)).code(), status.code())
        << code;
  }
}

TEST(GrpcStatusTest, ContextIsPrefixed) {
  grpc::Status edge(grpc::StatusCode::UNAVAILABLE, "connection refused");
  EXPECT_THAT(FromGrpcStatus(edge, "scheduler.ApplyReplicaSet"),
              StatusIs(absl::StatusCode::kUnavailable,
                       "scheduler.ApplyReplicaSet: connection refused"));
  EXPECT_THAT(FromGrpcStatus(grpc::Status::OK, "ctx"), IsOk());
}

absl::StatusOr<int> Half(int value) {
  if (value % 2 != 0) return absl::InvalidArgumentError("value: must be even");
  return value / 2;
}

absl::StatusOr<int> Quarter(int value) {
  ASSIGN_OR_RETURN(int half, Half(value));
  ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

absl::Status CheckEven(int value) {
  RETURN_IF_ERROR(Half(value).status());
  return absl::OkStatus();
}

TEST(StatusMacrosTest, PropagateErrorsAndUnwrapValues) {
  EXPECT_THAT(Quarter(8), IsOkAndHolds(2));
  EXPECT_THAT(Quarter(6), StatusIs(absl::StatusCode::kInvalidArgument,
                                   HasSubstr("must be even")));
  EXPECT_THAT(CheckEven(3),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("value")));
  EXPECT_THAT(CheckEven(4), IsOk());
}

}  // namespace
}  // namespace hangar
