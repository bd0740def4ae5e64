#include "common/api/field_mask.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status/status_util.h"
#include "google/protobuf/util/field_mask_util.h"

namespace hangar {
namespace {

bool IsAllowed(absl::string_view path,
               const std::vector<std::string>& allowed_paths) {
  for (const std::string& allowed : allowed_paths) {
    if (path == allowed) return true;
    if (absl::StartsWith(path, allowed) && path.size() > allowed.size() &&
        path[allowed.size()] == '.') {
      return true;
    }
  }
  return false;
}

}  // namespace

absl::Status ValidateFieldMask(const google::protobuf::FieldMask& mask,
                               const std::vector<std::string>& allowed_paths,
                               absl::string_view field) {
  if (mask.paths_size() == 0) return InvalidField(field, "required");
  for (const std::string& path : mask.paths()) {
    if (!IsAllowed(path, allowed_paths)) {
      return InvalidField(
          field,
          absl::StrCat("path \"", path, "\" cannot be updated; allowed: ",
                       absl::StrJoin(allowed_paths, ", ")));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateFieldMask(const google::protobuf::FieldMask& mask,
                               const std::vector<std::string>& allowed_paths,
                               const google::protobuf::Descriptor* resource,
                               absl::string_view field) {
  absl::Status allowed = ValidateFieldMask(mask, allowed_paths, field);
  if (!allowed.ok()) return allowed;
  for (const std::string& path : mask.paths()) {
    if (!google::protobuf::util::FieldMaskUtil::GetFieldDescriptors(
            resource, path, /*field_descriptors=*/nullptr)) {
      return InvalidField(field,
                          absl::StrCat("path \"", path, "\" names no field of ",
                                       resource->full_name()));
    }
  }
  return absl::OkStatus();
}

void ApplyFieldMask(const google::protobuf::Message& from,
                    const google::protobuf::FieldMask& mask,
                    google::protobuf::Message* to) {
  google::protobuf::util::FieldMaskUtil::MergeOptions options;
  options.set_replace_repeated_fields(true);
  options.set_replace_message_fields(true);
  google::protobuf::util::FieldMaskUtil::MergeMessageTo(from, mask, options,
                                                        to);
}

}  // namespace hangar
