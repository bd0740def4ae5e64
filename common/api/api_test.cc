#include <string>

#include "absl/strings/escaping.h"
#include "absl/time/time.h"
#include "common/api/etag.h"
#include "common/api/field_mask.h"
#include "common/api/page_token.h"
#include "common/api/time.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "hangar/v1/catalog.pb.h"

namespace hangar {
namespace {

using ::google::protobuf::util::TimeUtil;
using ::hangar::testing::IsOk;
using ::hangar::testing::IsOkAndHolds;
using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;

// --- page size and tokens -------------------------------------------------

TEST(PageSizeTest, DefaultBoundsAndMessage) {
  EXPECT_THAT(ResolvePageSize(0), IsOkAndHolds(50));
  EXPECT_THAT(ResolvePageSize(7), IsOkAndHolds(7));
  EXPECT_THAT(ResolvePageSize(1000), IsOkAndHolds(1000));
  EXPECT_THAT(ResolvePageSize(-3),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "page_size: must be in [0, 1000]; was -3"));
  EXPECT_THAT(
      ResolvePageSize(1001),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("was 1001")));
  EXPECT_THAT(ResolvePageSize(0, 10, 20), IsOkAndHolds(10));
  EXPECT_THAT(ResolvePageSize(21, 10, 20),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "page_size: must be in [0, 20]; was 21"));
}

TEST(PageTokenTest, RoundTripsTheLastKey) {
  for (const std::string key : {"models/a", "", "x\ny\0z", "ü/ä"}) {
    std::string token = EncodePageToken(key, "fp");
    EXPECT_THAT(DecodePageToken(token, "fp"), IsOkAndHolds(key));
    // Opaque and URL-safe.
    EXPECT_EQ(token.find_first_of("+/=\n"), std::string::npos) << token;
  }
  EXPECT_THAT(DecodePageToken("", "fp"), IsOkAndHolds(""));
}

TEST(PageTokenTest, OtherFiltersAreRefused) {
  std::string token = EncodePageToken("models/a", "family=llama");
  EXPECT_THAT(DecodePageToken(token, "family=qwen2"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "page_token: was issued for different filters"));
}

TEST(PageTokenTest, EveryEditedByteIsMalformed) {
  std::string bytes;
  ASSERT_TRUE(
      absl::WebSafeBase64Unescape(EncodePageToken("models/a", "fp"), &bytes));
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string edited = bytes;
    edited[i] ^= 0x01;
    EXPECT_THAT(
        DecodePageToken(absl::WebSafeBase64Escape(edited), "fp"),
        StatusIs(absl::StatusCode::kInvalidArgument, "page_token: malformed"))
        << i;
  }
  for (const std::string& bad : std::vector<std::string>{
           "not base64!", "AA", absl::WebSafeBase64Escape(bytes.substr(1)),
           absl::WebSafeBase64Escape(bytes.substr(0, bytes.size() - 1))}) {
    EXPECT_THAT(
        DecodePageToken(bad, "fp"),
        StatusIs(absl::StatusCode::kInvalidArgument, "page_token: malformed"))
        << bad;
  }
}

TEST(FilterFingerprintTest, IgnoresPagingFieldsOnly) {
  v1::ListModelsRequest request;
  request.set_family("llama");
  std::string fingerprint = FilterFingerprint(request);
  EXPECT_EQ(fingerprint.size(), 16);

  v1::ListModelsRequest paged = request;
  paged.set_page_size(10);
  paged.set_page_token("abc");
  EXPECT_EQ(FilterFingerprint(paged), fingerprint);

  v1::ListModelsRequest other = request;
  other.set_family("qwen2");
  EXPECT_NE(FilterFingerprint(other), fingerprint);
  EXPECT_NE(FilterFingerprint(v1::ListModelsRequest()), fingerprint);
  // The message type takes part: an empty request of another type differs.
  EXPECT_NE(FilterFingerprint(v1::ListConnectionsRequest()),
            FilterFingerprint(v1::ListModelsRequest()));
}

// --- etags ----------------------------------------------------------------

TEST(EtagTest, MakeAndCheck) {
  EXPECT_EQ(MakeEtag(7), "7");
  EXPECT_NE(MakeEtag(7), MakeEtag(8));
  EXPECT_THAT(CheckEtag("", MakeEtag(7)), IsOk());
  EXPECT_THAT(CheckEtag(MakeEtag(7), MakeEtag(7)), IsOk());
  EXPECT_THAT(CheckEtag(MakeEtag(6), MakeEtag(7)),
              StatusIs(absl::StatusCode::kAborted,
                       "etag: stale (the resource changed since it was read); "
                       "read it again"));
  EXPECT_THAT(CheckEtag("", MakeEtag(7), /*required=*/true),
              StatusIs(absl::StatusCode::kInvalidArgument, "etag: required"));
  EXPECT_THAT(CheckEtag("1", "2", false, "model.etag"),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("model.etag: ")));
}

// --- field masks ----------------------------------------------------------

google::protobuf::FieldMask Mask(std::vector<std::string> paths) {
  google::protobuf::FieldMask mask;
  for (std::string& path : paths) mask.add_paths(std::move(path));
  return mask;
}

TEST(FieldMaskTest, Validate) {
  const std::vector<std::string> allowed = {"description", "tags", "spec"};
  EXPECT_THAT(ValidateFieldMask(Mask({"tags", "description"}), allowed),
              IsOk());
  EXPECT_THAT(ValidateFieldMask(Mask({"spec.min_replicas"}), allowed), IsOk());
  EXPECT_THAT(
      ValidateFieldMask(Mask({}), allowed),
      StatusIs(absl::StatusCode::kInvalidArgument, "update_mask: required"));
  EXPECT_THAT(ValidateFieldMask(Mask({"tags", "name"}), allowed),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "update_mask: path \"name\" cannot be updated; "
                       "allowed: description, tags, spec"));
  EXPECT_THAT(
      ValidateFieldMask(Mask({"specs"}), allowed),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"specs\"")));
  EXPECT_THAT(ValidateFieldMask(Mask({}), allowed, "mask"),
              StatusIs(absl::StatusCode::kInvalidArgument, "mask: required"));
}

TEST(FieldMaskTest, ValidateAgainstTheResourceType) {
  const google::protobuf::Descriptor* model = v1::Model::descriptor();
  EXPECT_THAT(ValidateFieldMask(Mask({"tags", "description"}),
                                {"description", "tags"}, model),
              IsOk());
  // Allowed by the list but not a field of the type.
  EXPECT_THAT(
      ValidateFieldMask(Mask({"description.text"}), {"description"}, model),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "update_mask: path \"description.text\" names no "
               "field of hangar.v1.Model"));
  EXPECT_THAT(ValidateFieldMask(Mask({"name"}), {"description"}, model),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("cannot be updated")));
  EXPECT_THAT(
      ValidateFieldMask(Mask({}), {"description"}, model),
      StatusIs(absl::StatusCode::kInvalidArgument, "update_mask: required"));
}

TEST(FieldMaskTest, ApplyCopiesOnlyMaskedFieldsAndReplacesLists) {
  google::protobuf::Struct to;
  (*to.mutable_fields())["keep"].set_string_value("old");
  (*to.mutable_fields())["list"]
      .mutable_list_value()
      ->add_values()
      ->set_number_value(1);
  google::protobuf::Struct from;
  (*from.mutable_fields())["list"]
      .mutable_list_value()
      ->add_values()
      ->set_number_value(2);

  // A map field is replaced as a whole.
  ApplyFieldMask(from, Mask({"fields"}), &to);
  ASSERT_EQ(to.fields().size(), 1);
  ASSERT_EQ(to.fields().at("list").list_value().values_size(), 1);
  EXPECT_EQ(to.fields().at("list").list_value().values(0).number_value(), 2);
}

TEST(FieldMaskTest, ApplyOnAResource) {
  v1::UpdateModelRequest current;
  current.mutable_model()->set_name("models/a");
  current.mutable_model()->set_description("old");
  current.mutable_model()->add_tags("x");
  current.mutable_model()->add_tags("y");
  v1::UpdateModelRequest changes;
  changes.mutable_model()->set_name("models/evil");
  changes.mutable_model()->set_description("new");
  changes.mutable_model()->add_tags("z");

  v1::Model updated = current.model();
  ApplyFieldMask(changes.model(), Mask({"description", "tags"}), &updated);
  EXPECT_EQ(updated.name(), "models/a");  // Not in the mask.
  EXPECT_EQ(updated.description(), "new");
  ASSERT_EQ(updated.tags_size(), 1);  // Replaced, not appended.
  EXPECT_EQ(updated.tags(0), "z");

  // Clearing a list: send it empty.
  ApplyFieldMask(v1::Model(), Mask({"tags"}), &updated);
  EXPECT_EQ(updated.tags_size(), 0);
  EXPECT_EQ(updated.description(), "new");
}

// --- time -----------------------------------------------------------------

// What google/protobuf/timestamp.proto and duration.proto allow.
bool IsValid(const google::protobuf::Timestamp& t) {
  return t.seconds() >= TimeUtil::kTimestampMinSeconds &&
         t.seconds() <= TimeUtil::kTimestampMaxSeconds && t.nanos() >= 0 &&
         t.nanos() < 1'000'000'000;
}
bool IsValid(const google::protobuf::Duration& d) {
  return d.seconds() >= -TimeUtil::kDurationMaxSeconds &&
         d.seconds() <= TimeUtil::kDurationMaxSeconds &&
         d.nanos() > -1'000'000'000 && d.nanos() < 1'000'000'000 &&
         !(d.seconds() > 0 && d.nanos() < 0) &&
         !(d.seconds() < 0 && d.nanos() > 0);
}

TEST(TimeTest, TimestampRoundTrips) {
  for (absl::Time t :
       {absl::UnixEpoch(), absl::FromUnixNanos(1'700'000'000'123'456'789),
        absl::FromUnixNanos(-1), absl::FromUnixSeconds(-62'135'596'800)}) {
    google::protobuf::Timestamp proto = ToProtoTimestamp(t);
    EXPECT_TRUE(IsValid(proto)) << proto.DebugString();
    EXPECT_EQ(FromProtoTimestamp(proto), t);
  }
  google::protobuf::Timestamp before_epoch =
      ToProtoTimestamp(absl::FromUnixNanos(-1));
  EXPECT_EQ(before_epoch.seconds(), -1);
  EXPECT_EQ(before_epoch.nanos(), 999'999'999);
  EXPECT_EQ(TimeUtil::ToString(ToProtoTimestamp(absl::FromUnixSeconds(0))),
            "1970-01-01T00:00:00Z");
}

TEST(TimeTest, TimestampClampsToTheValidRange) {
  google::protobuf::Timestamp future = ToProtoTimestamp(absl::InfiniteFuture());
  EXPECT_TRUE(IsValid(future));
  EXPECT_EQ(future.seconds(), TimeUtil::kTimestampMaxSeconds);
  google::protobuf::Timestamp past = ToProtoTimestamp(absl::InfinitePast());
  EXPECT_TRUE(IsValid(past));
  EXPECT_EQ(past.seconds(), TimeUtil::kTimestampMinSeconds);
}

TEST(TimeTest, DurationRoundTripsAndClamps) {
  for (absl::Duration d : {absl::ZeroDuration(), absl::Milliseconds(1500),
                           -absl::Milliseconds(1500), absl::Hours(24 * 365)}) {
    google::protobuf::Duration proto = ToProtoDuration(d);
    EXPECT_TRUE(IsValid(proto)) << proto.DebugString();
    EXPECT_EQ(FromProtoDuration(proto), d);
  }
  google::protobuf::Duration negative =
      ToProtoDuration(-absl::Milliseconds(1500));
  EXPECT_EQ(negative.seconds(), -1);
  EXPECT_EQ(negative.nanos(), -500'000'000);
  EXPECT_EQ(TimeUtil::ToString(ToProtoDuration(absl::Milliseconds(1500))),
            "1.500s");
  EXPECT_TRUE(IsValid(ToProtoDuration(absl::InfiniteDuration())));
  EXPECT_TRUE(IsValid(ToProtoDuration(-absl::InfiniteDuration())));
}

}  // namespace
}  // namespace hangar
