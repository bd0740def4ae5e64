// Partial updates through a FieldMask (AIP-134): which paths a method lets a
// client change, and copying exactly those fields.
//
//   RETURN_IF_ERROR(ValidateFieldMask(request.update_mask(),
//                                     {"description", "tags", "labels"}));
//   v1::Model updated = current;
//   ApplyFieldMask(request.model(), request.update_mask(), &updated);
//
// A path names a field of the resource ("description") or of a nested
// message ("spec.min_replicas"); a path is allowed when it is in the list or
// lies below one that is ("spec" allows "spec.min_replicas"). Applying a
// mask replaces each named field as a whole: a repeated or map field is
// replaced, not appended to, and a named message field is replaced, not
// merged, so a client can clear a list or a sub-message by sending it empty.
#ifndef HANGAR_COMMON_API_FIELD_MASK_H_
#define HANGAR_COMMON_API_FIELD_MASK_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/field_mask.pb.h"
#include "google/protobuf/message.h"

namespace hangar {

// INVALID_ARGUMENT "update_mask: required" for an empty mask, and
// "update_mask: path \"x\" cannot be updated; allowed: a, b" for a path that
// is not allowed (`field` replaces "update_mask" in both).
absl::Status ValidateFieldMask(const google::protobuf::FieldMask& mask,
                               const std::vector<std::string>& allowed_paths,
                               absl::string_view field = "update_mask");

// As above, and each path must also name a field of `resource` (a path
// below an allowed one, such as "spec.min_replicas", is checked against the
// message type): "update_mask: path \"spec.nope\" names no field of
// hangar.v1.Deployment".
absl::Status ValidateFieldMask(const google::protobuf::FieldMask& mask,
                               const std::vector<std::string>& allowed_paths,
                               const google::protobuf::Descriptor* resource,
                               absl::string_view field = "update_mask");

// Copies the fields `mask` names from `from` to `to` (same message type),
// through protobuf's util::FieldMaskUtil::MergeMessageTo with repeated and
// message fields replaced. Validate the mask first: paths that name no field
// of the type are ignored.
void ApplyFieldMask(const google::protobuf::Message& from,
                    const google::protobuf::FieldMask& mask,
                    google::protobuf::Message* to);

}  // namespace hangar

#endif  // HANGAR_COMMON_API_FIELD_MASK_H_
