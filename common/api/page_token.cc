#include "common/api/page_token.h"

#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_util.h"
#include "common/util/sha256.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace hangar {
namespace {

constexpr char kVersion = 1;
constexpr size_t kHashBytes = 8;
// Keeps page-token checksums apart from any other SHA-256 use.
constexpr absl::string_view kChecksumDomain = "hangar page token v1\n";

std::string FingerprintHash(absl::string_view filter_fingerprint) {
  return Sha256Digest(filter_fingerprint).substr(0, kHashBytes);
}

std::string Checksum(absl::string_view body) {
  Sha256 hash;
  hash.Update(kChecksumDomain);
  hash.Update(body);
  return hash.Finish().substr(0, kHashBytes);
}

}  // namespace

absl::StatusOr<int> ResolvePageSize(int page_size, int default_size,
                                    int max_size) {
  if (page_size < 0 || page_size > max_size) {
    return InvalidField("page_size", absl::StrCat("must be in [0, ", max_size,
                                                  "]; was ", page_size));
  }
  return page_size == 0 ? default_size : page_size;
}

std::string EncodePageToken(absl::string_view last_key,
                            absl::string_view filter_fingerprint) {
  std::string body =
      absl::StrCat(absl::string_view(&kVersion, 1),
                   FingerprintHash(filter_fingerprint), last_key);
  return absl::WebSafeBase64Escape(absl::StrCat(body, Checksum(body)));
}

absl::StatusOr<std::string> DecodePageToken(
    absl::string_view token, absl::string_view filter_fingerprint) {
  if (token.empty()) return std::string();
  const absl::Status malformed = InvalidField("page_token", "malformed");
  std::string bytes;
  if (!absl::WebSafeBase64Unescape(token, &bytes)) return malformed;
  if (bytes.size() < 1 + 2 * kHashBytes || bytes[0] != kVersion) {
    return malformed;
  }
  absl::string_view view(bytes);
  absl::string_view body = view.substr(0, view.size() - kHashBytes);
  if (Checksum(body) != view.substr(body.size())) return malformed;
  if (body.substr(1, kHashBytes) != FingerprintHash(filter_fingerprint)) {
    return InvalidField("page_token", "was issued for different filters");
  }
  return std::string(body.substr(1 + kHashBytes));
}

std::string FilterFingerprint(const google::protobuf::Message& request) {
  std::unique_ptr<google::protobuf::Message> copy(request.New());
  copy->CopyFrom(request);
  const google::protobuf::Descriptor* descriptor = copy->GetDescriptor();
  for (const char* name : {"page_size", "page_token"}) {
    if (const auto* field = descriptor->FindFieldByName(name)) {
      copy->GetReflection()->ClearField(copy.get(), field);
    }
  }
  std::string serialized;
  {
    google::protobuf::io::StringOutputStream stream(&serialized);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    copy->SerializeToCodedStream(&coded);
  }
  return Sha256Hex(absl::StrCat(descriptor->full_name(), "\n", serialized))
      .substr(0, 16);
}

}  // namespace hangar
