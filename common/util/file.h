// Whole-file reads and writes with errors that name the path, for every
// component (the engine included: no gRPC here).
//
//   ASSIGN_OR_RETURN(std::string config, ReadFileToString(dir +
//   "/config.json")); ASSIGN_OR_RETURN(std::string token,
//   ReadFileToString(path, /*max_bytes=*/4096));
//
// Errors (the message always starts with the path):
//   NOT_FOUND          "<path>: no such file"
//   PERMISSION_DENIED  "<path>: permission denied"
//   INVALID_ARGUMENT   "<path>: is a directory" / "<path>: larger than N bytes"
//   DATA_LOSS          "<path>: read error: ..." (an I/O error mid-file)
//   INTERNAL           anything else the OS reports, with its strerror text
#ifndef HANGAR_COMMON_UTIL_FILE_H_
#define HANGAR_COMMON_UTIL_FILE_H_

#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hangar {

struct FileCloser {
  void operator()(std::FILE* file) const {
    if (file != nullptr) std::fclose(file);
  }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

// Opens a regular file for binary reading, with the errors above.
absl::StatusOr<FilePtr> OpenFile(const std::string& path);

// The whole file; INVALID_ARGUMENT when it holds more than `max_bytes`.
absl::StatusOr<std::string> ReadFileToString(
    const std::string& path,
    int64_t max_bytes = std::numeric_limits<int64_t>::max());

// Creates or truncates `path` and writes `data`. INTERNAL naming the path.
absl::Status WriteStringToFile(const std::string& path, absl::string_view data);

}  // namespace hangar

#endif  // HANGAR_COMMON_UTIL_FILE_H_
