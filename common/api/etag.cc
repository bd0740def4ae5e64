#include "common/api/etag.h"

#include "absl/strings/str_cat.h"
#include "common/status/status_util.h"

namespace hangar {

std::string MakeEtag(int64_t version) { return absl::StrCat(version); }

absl::Status CheckEtag(absl::string_view given, absl::string_view current,
                       bool required, absl::string_view field) {
  if (given.empty()) {
    return required ? InvalidField(field, "required") : absl::OkStatus();
  }
  if (given != current) {
    return absl::AbortedError(absl::StrCat(
        field,
        ": stale (the resource changed since it was read); read it "
        "again"));
  }
  return absl::OkStatus();
}

}  // namespace hangar
