// Small file helpers shared by the loaders and writers: a read-only memory
// map, and (from common/util, re-exported here) whole-file reads and writes
// and SHA-256 over files.
//
// `MappedFile` maps a file read-only with MAP_PRIVATE; the weights of a loaded
// model point into these maps, so a model's `MappedFile`s live as long as the
// model. Pages are faulted in on first use (the OS page cache shares them
// between processes that load the same file).
#ifndef HANGAR_ENGINE_FILE_UTIL_H_
#define HANGAR_ENGINE_FILE_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/util/file.h"
#include "common/util/sha256.h"

namespace hangar::engine {

class MappedFile {
 public:
  // Maps `path`. NOT_FOUND if it does not exist, INVALID_ARGUMENT if it is
  // not a regular file.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(
      const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

using ::hangar::ReadFileToString;
using ::hangar::WriteStringToFile;
bool FileExists(const std::string& path);
bool IsDirectory(const std::string& path);
absl::StatusOr<int64_t> FileSize(const std::string& path);

// Hex SHA-256 over the concatenation of the files' bytes, in the given order.
using ::hangar::Sha256OfFiles;

}  // namespace hangar::engine

#endif  // HANGAR_ENGINE_FILE_UTIL_H_
