// absl::Time / absl::Duration <-> google.protobuf.Timestamp / Duration, the
// one conversion every service uses at its proto boundary.
//
//   model.mutable_create_time()->CopyFrom(ToProtoTimestamp(clock_->Now()));
//   absl::Time deadline = FromProtoTimestamp(request.deadline());
//
// Values outside what the proto types can hold (Timestamp: years 0001 to
// 9999; Duration: +-10,000 years; absl's infinities) are clamped to the
// nearest valid one (protobuf's util::TimeUtil bounds), so a conversion
// never produces an invalid message. An unset (default) Timestamp is the
// Unix epoch, as in protobuf.
#ifndef HANGAR_COMMON_API_TIME_H_
#define HANGAR_COMMON_API_TIME_H_

#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace hangar {

google::protobuf::Timestamp ToProtoTimestamp(absl::Time time);
absl::Time FromProtoTimestamp(const google::protobuf::Timestamp& timestamp);

google::protobuf::Duration ToProtoDuration(absl::Duration duration);
absl::Duration FromProtoDuration(const google::protobuf::Duration& duration);

}  // namespace hangar

#endif  // HANGAR_COMMON_API_TIME_H_
