#include "common/util/file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace hangar {
namespace {

absl::Status OpenError(const std::string& path, int error) {
  switch (error) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(
          absl::StrCat(path, ": permission denied"));
    case EISDIR:
      return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory"));
    default:
      return absl::InternalError(
          absl::StrCat(path, ": cannot open: ", std::strerror(error)));
  }
}

}  // namespace

absl::StatusOr<FilePtr> OpenFile(const std::string& path) {
  FilePtr file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) return OpenError(path, errno);
  struct stat info;
  if (::fstat(::fileno(file.get()), &info) != 0) {
    return OpenError(path, errno);
  }
  if (S_ISDIR(info.st_mode)) return OpenError(path, EISDIR);
  return file;
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path,
                                             int64_t max_bytes) {
  absl::StatusOr<FilePtr> file = OpenFile(path);
  if (!file.ok()) return file.status();
  std::string contents;
  struct stat info;
  if (::fstat(::fileno(file->get()), &info) == 0 && info.st_size > 0 &&
      info.st_size <= max_bytes) {
    contents.reserve(static_cast<size_t>(info.st_size));
  }
  char buffer[64 * 1024];
  size_t read = 0;
  while ((read = std::fread(buffer, 1, sizeof(buffer), file->get())) > 0) {
    if (static_cast<int64_t>(contents.size() + read) > max_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": larger than ", max_bytes, " bytes"));
    }
    contents.append(buffer, read);
  }
  if (std::ferror(file->get())) {
    return absl::DataLossError(
        absl::StrCat(path, ": read error: ", std::strerror(errno)));
  }
  return contents;
}

absl::Status WriteStringToFile(const std::string& path,
                               absl::string_view data) {
  FilePtr file(std::fopen(path.c_str(), "wb"));
  if (file == nullptr) {
    return absl::InternalError(
        absl::StrCat(path, ": cannot create: ", std::strerror(errno)));
  }
  if (std::fwrite(data.data(), 1, data.size(), file.get()) != data.size() ||
      std::fclose(file.release()) != 0) {
    return absl::InternalError(
        absl::StrCat(path, ": write failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace hangar
