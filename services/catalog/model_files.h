// The model store's files on disk: removing one model's directory, and the
// start-up sweep that removes what no model row names.
//
// The store is laid out <root>/<owner>/<repo>/<commit>/ (preparations);
// hidden entries at the top (the secret key file) belong to the catalog and
// are never touched. Both functions stay inside `root`: a path that is not
// under it, or that reaches it through a symbolic link, is refused, and a
// symbolic link found inside is removed as a link, never followed.
//
//   RETURN_IF_ERROR(RemoveStoreDirectory(root,
//   model.preparation().local_path())); ASSIGN_OR_RETURN(SweepReport report,
//   SweepOrphans(root, paths_in_use));
#ifndef HANGAR_SERVICES_CATALOG_MODEL_FILES_H_
#define HANGAR_SERVICES_CATALOG_MODEL_FILES_H_

#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hangar::catalog {

// Whether `path` lies strictly below `root`, lexically, and no directory
// between them is a symbolic link.
bool IsInsideStore(const std::string& root, const std::string& path);

// Removes `path` (a directory, file or link below `root`) and then its
// parents that became empty, up to `root` (exclusive). A missing path is OK.
// INVALID_ARGUMENT when `path` is not inside the store.
absl::Status RemoveStoreDirectory(const std::string& root,
                                  const std::string& path);

// The file that marks a directory as a catalog's model store. The sweep
// runs only in a marked store: MarkStoreIfFresh() marks a directory that
// holds nothing but hidden files (a new store), so that a --model_store
// pointed by mistake at a directory with other content is never swept.
inline constexpr char kStoreMarker[] = ".hangar-model-store";

// Creates the marker in `root` when `root` holds only hidden entries.
// Returns whether `root` is (now) marked.
absl::StatusOr<bool> MarkStoreIfFresh(const std::string& root);

struct SweepReport {
  // Entries removed, relative to the root.
  std::vector<std::string> removed;
};

// Removes every entry of the store that is neither a path in `in_use` nor
// on the way to one (owner and repository directories of a used path),
// looking at most three levels deep (<owner>/<repo>/<commit>); hidden
// top-level entries are kept. Paths in `in_use` outside the store are
// ignored.
absl::StatusOr<SweepReport> SweepOrphans(const std::string& root,
                                         const std::set<std::string>& in_use);

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_MODEL_FILES_H_
