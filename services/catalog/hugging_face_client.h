// A small Hugging Face Hub client over libcurl: repository metadata, small
// files, byte ranges, and streaming downloads that resume from an offset.
//
// Works against the public Hub or any mirror that serves the same paths
// (HF_ENDPOINT):
//   GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true
//   GET {endpoint}/{repo}/resolve/{revision}/{file}     (Range supported)
//
// A token, when given, is sent as "Authorization: Bearer ..." to the
// endpoint's host only (libcurl drops it on redirects to other hosts, e.g.
// the CDN). Tokens never appear in statuses or logs.
//
// HTTP outcomes become canonical codes, each message naming the URL tried
// (without the token):
//   401 -> PERMISSION_DENIED ("not found, or private: use a connection")
//   403 -> PERMISSION_DENIED ("gated or forbidden")
//   404 -> NOT_FOUND (repository, revision or file)
//   429, 5xx, connection failures, timeouts -> UNAVAILABLE
//   other 4xx -> FAILED_PRECONDITION
//
// Thread-safe: every call uses its own curl handle.
#ifndef HANGAR_SERVICES_CATALOG_HUGGING_FACE_CLIENT_H_
#define HANGAR_SERVICES_CATALOG_HUGGING_FACE_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "services/catalog/hub_client.h"

namespace hangar::catalog {

class HuggingFaceClient final : public HubClient {
 public:
  struct Options {
    // The Hub or a mirror, without a trailing slash.
    std::string endpoint = "https://huggingface.co";
    // Longest a TCP/TLS connect may take.
    absl::Duration connect_timeout = absl::Seconds(10);
    // Longest a metadata request (API, config, header ranges) may take.
    absl::Duration request_timeout = absl::Seconds(30);
    // A download whose throughput stays under 1 byte/s this long is
    // abandoned (and resumed by the caller).
    absl::Duration stall_timeout = absl::Seconds(30);
    std::string user_agent = "hangar-catalog/1";
  };

  explicit HuggingFaceClient(Options options);

  const std::string& endpoint() const override { return options_.endpoint; }

  // Repository metadata at `revision`, with file sizes and LFS checksums.
  absl::StatusOr<RepoInfo> GetRepoInfo(const std::string& repo,
                                       const std::string& revision,
                                       const std::string& token) const override;

  // A whole small file (at most `max_bytes`).
  absl::StatusOr<std::string> GetFile(const std::string& repo,
                                      const std::string& revision,
                                      const std::string& path,
                                      const std::string& token,
                                      int64_t max_bytes) const override;

  // Bytes [offset, offset + length) of a file, by one range request.
  absl::StatusOr<std::string> GetRange(const std::string& repo,
                                       const std::string& revision,
                                       const std::string& path,
                                       const std::string& token, int64_t offset,
                                       int64_t length) const override;

  // Streams a file from `offset` to its end into `sink`, which returns false
  // to stop (the call then returns CANCELLED). Servers that ignore the Range
  // header are handled: the first `offset` bytes are skipped. Returns
  // UNAVAILABLE when the connection drops early (the caller resumes).
  absl::Status Download(const std::string& repo, const std::string& revision,
                        const std::string& path, const std::string& token,
                        int64_t offset,
                        const std::function<bool(absl::string_view)>& sink,
                        const std::atomic<bool>* cancelled) const override;

  // URL of a file, for messages and tests.
  std::string FileUrl(const std::string& repo, const std::string& revision,
                      const std::string& path) const override;

 private:
  struct Request;
  absl::Status Perform(Request& request) const;

  Options options_;
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_HUGGING_FACE_CLIENT_H_
