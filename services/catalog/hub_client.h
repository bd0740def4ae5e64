// The seam between the catalog and the Hugging Face Hub: repository
// metadata, small files, byte ranges and resumable streaming downloads.
// HuggingFaceClient (libcurl) implements it; unit tests use in-memory fakes.
//
// Errors use canonical codes (see hugging_face_client.h for the HTTP
// mapping): NOT_FOUND, PERMISSION_DENIED (private or gated), UNAVAILABLE
// (the Hub cannot be reached, or a transfer broke: retryable).
#ifndef HANGAR_SERVICES_CATALOG_HUB_CLIENT_H_
#define HANGAR_SERVICES_CATALOG_HUB_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hangar::catalog {

struct HubFile {
  // Path in the repository ("model.safetensors").
  std::string path;
  // Bytes; -1 when the Hub did not say.
  int64_t size = -1;
  // SHA-256 of the content (from the LFS pointer), lower-case hex; empty for
  // files not stored in LFS.
  std::string sha256;
};

struct RepoInfo {
  std::string id;
  // The commit the revision resolved to.
  std::string sha;
  bool is_private = false;
  std::string license;  // cardData.license, when present
  std::vector<HubFile> files;
};

class HubClient {
 public:
  virtual ~HubClient() = default;

  // The Hub or mirror this client talks to, for messages.
  virtual const std::string& endpoint() const = 0;

  // Repository metadata at `revision`, with file sizes and LFS checksums.
  virtual absl::StatusOr<RepoInfo> GetRepoInfo(
      const std::string& repo, const std::string& revision,
      const std::string& token) const = 0;

  // A whole small file (at most `max_bytes`).
  virtual absl::StatusOr<std::string> GetFile(const std::string& repo,
                                              const std::string& revision,
                                              const std::string& path,
                                              const std::string& token,
                                              int64_t max_bytes) const = 0;

  // Bytes [offset, offset + length) of a file.
  virtual absl::StatusOr<std::string> GetRange(const std::string& repo,
                                               const std::string& revision,
                                               const std::string& path,
                                               const std::string& token,
                                               int64_t offset,
                                               int64_t length) const = 0;

  // Streams a file from `offset` to its end into `sink` (which returns false
  // to stop: CANCELLED). UNAVAILABLE when the transfer breaks early.
  virtual absl::Status Download(
      const std::string& repo, const std::string& revision,
      const std::string& path, const std::string& token, int64_t offset,
      const std::function<bool(absl::string_view)>& sink,
      const std::atomic<bool>* cancelled) const = 0;

  // URL of a file, for messages.
  virtual std::string FileUrl(const std::string& repo,
                              const std::string& revision,
                              const std::string& path) const = 0;
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_HUB_CLIENT_H_
