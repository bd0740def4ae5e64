#include "common/api/time.h"

#include <cstdint>

#include "google/protobuf/util/time_util.h"

namespace hangar {

using ::google::protobuf::util::TimeUtil;

google::protobuf::Timestamp ToProtoTimestamp(absl::Time time) {
  const absl::Time min = absl::FromUnixSeconds(TimeUtil::kTimestampMinSeconds);
  const absl::Time max = absl::FromUnixSeconds(TimeUtil::kTimestampMaxSeconds) +
                         absl::Nanoseconds(999'999'999);
  if (time < min) time = min;
  if (time > max) time = max;
  const int64_t seconds = absl::ToUnixSeconds(time);  // Rounds down.
  const int64_t nanos =
      absl::ToInt64Nanoseconds(time - absl::FromUnixSeconds(seconds));
  google::protobuf::Timestamp timestamp;
  timestamp.set_seconds(seconds);
  timestamp.set_nanos(static_cast<int32_t>(nanos));
  return timestamp;
}

absl::Time FromProtoTimestamp(const google::protobuf::Timestamp& timestamp) {
  return absl::FromUnixSeconds(timestamp.seconds()) +
         absl::Nanoseconds(timestamp.nanos());
}

google::protobuf::Duration ToProtoDuration(absl::Duration duration) {
  const absl::Duration max = absl::Seconds(TimeUtil::kDurationMaxSeconds) +
                             absl::Nanoseconds(999'999'999);
  if (duration > max) duration = max;
  if (duration < -max) duration = -max;
  // Truncate toward zero so seconds and nanos share a sign, as the proto
  // requires.
  const int64_t seconds =
      absl::IDivDuration(duration, absl::Seconds(1), &duration);
  google::protobuf::Duration proto;
  proto.set_seconds(seconds);
  proto.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(duration)));
  return proto;
}

absl::Duration FromProtoDuration(const google::protobuf::Duration& duration) {
  return absl::Seconds(duration.seconds()) +
         absl::Nanoseconds(duration.nanos());
}

}  // namespace hangar
