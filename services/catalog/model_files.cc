#include "services/catalog/model_files.h"

#include <filesystem>
#include <fstream>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace hangar::catalog {
namespace {

namespace fs = std::filesystem;

fs::path Normal(const std::string& path) {
  fs::path normal = fs::path(path).lexically_normal();
  if (!normal.empty() && normal.filename().empty()) {
    normal = normal.parent_path();  // "a/b/" -> "a/b"
  }
  return normal;
}

// `path` relative to `root`, or empty when it is not strictly below it.
fs::path RelativeInside(const fs::path& root, const fs::path& path) {
  fs::path relative = path.lexically_relative(root);
  if (relative.empty() || relative == "." ||
      *relative.begin() == fs::path("..")) {
    return {};
  }
  return relative;
}

bool IsSymlink(const fs::path& path) {
  std::error_code error;
  return fs::symlink_status(path, error).type() == fs::file_type::symlink;
}

// Whether `candidate` is `used` or a directory on the way to it.
bool IsOrLeadsTo(const fs::path& candidate, const std::set<fs::path>& used) {
  for (const fs::path& path : used) {
    if (path == candidate) return true;
    fs::path relative = RelativeInside(candidate, path);
    if (!relative.empty()) return true;
  }
  return false;
}

void RemoveEntry(const fs::path& root, const fs::path& entry,
                 SweepReport& report) {
  std::error_code error;
  // remove_all removes a symbolic link itself, never what it points to.
  fs::remove_all(entry, error);
  if (!error) report.removed.push_back(entry.lexically_relative(root).string());
}

}  // namespace

bool IsInsideStore(const std::string& root_text, const std::string& path_text) {
  const fs::path root = Normal(root_text);
  const fs::path relative = RelativeInside(root, Normal(path_text));
  if (relative.empty()) return false;
  // No directory between the root and the path may be a link (the last
  // component may: removing it removes the link).
  fs::path walk = root;
  for (const fs::path& part : relative.parent_path()) {
    walk /= part;
    if (IsSymlink(walk)) return false;
  }
  return true;
}

absl::Status RemoveStoreDirectory(const std::string& root_text,
                                  const std::string& path_text) {
  if (!IsInsideStore(root_text, path_text)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_text, " is not inside the model store ", root_text,
                     " (or reaches it through a link); not removed"));
  }
  const fs::path root = Normal(root_text);
  const fs::path path = Normal(path_text);
  std::error_code error;
  fs::remove_all(path, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot remove ", path.string(), ": ", error.message()));
  }
  for (fs::path parent = path.parent_path();
       !RelativeInside(root, parent).empty(); parent = parent.parent_path()) {
    if (!fs::is_empty(parent, error) || error) break;
    fs::remove(parent, error);
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> MarkStoreIfFresh(const std::string& root_text) {
  const fs::path root = Normal(root_text);
  const fs::path marker = root / kStoreMarker;
  std::error_code error;
  if (fs::exists(marker, error)) return true;
  for (auto it = fs::directory_iterator(root, error);
       !error && it != fs::directory_iterator(); it.increment(error)) {
    if (!absl::StartsWith(it->path().filename().string(), ".")) return false;
  }
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot list ", root.string(), ": ", error.message()));
  }
  std::ofstream(marker.string()) << "This directory is a Hangar catalog's "
                                    "model store; the catalog removes files "
                                    "no model names.\n";
  return fs::exists(marker, error);
}

absl::StatusOr<SweepReport> SweepOrphans(const std::string& root_text,
                                         const std::set<std::string>& in_use) {
  const fs::path root = Normal(root_text);
  std::set<fs::path> used;
  for (const std::string& path : in_use) {
    if (!path.empty() && !RelativeInside(root, Normal(path)).empty()) {
      used.insert(Normal(path));
    }
  }
  SweepReport report;
  std::error_code error;
  if (!fs::is_directory(root, error)) return report;
  // Depth-first over <owner>/<repo>/<commit>; directory_iterator never
  // enters a link, and a link is only descended into when it is a real
  // directory (symlink_status).
  auto sweep = [&](auto&& self, const fs::path& dir, int depth) -> void {
    std::vector<fs::path> entries;
    for (auto it = fs::directory_iterator(dir, error);
         !error && it != fs::directory_iterator(); it.increment(error)) {
      entries.push_back(it->path());
    }
    for (const fs::path& entry : entries) {
      if (depth == 1 && absl::StartsWith(entry.filename().string(), ".")) {
        continue;  // The catalog's own files (the secret key).
      }
      if (!IsOrLeadsTo(entry, used)) {
        RemoveEntry(root, entry, report);
        continue;
      }
      const bool real_dir =
          fs::symlink_status(entry, error).type() == fs::file_type::directory;
      if (depth < 3 && real_dir && used.count(entry) == 0) {
        self(self, entry, depth + 1);
      }
    }
  };
  sweep(sweep, root, 1);
  return report;
}

}  // namespace hangar::catalog
