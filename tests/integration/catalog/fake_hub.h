// A Hugging Face Hub look-alike for tests: a tiny HTTP/1.1 server on a free
// loopback port serving repositories the test describes in memory.
//
//   GET /api/models/{owner}/{name}[/revision/{rev}]   repository info JSON
//       (id, sha, private, cardData.license, siblings with size and, for
//       *.safetensors, lfs.sha256 — as the real Hub with ?blobs=true)
//   GET /{owner}/{name}/resolve/{rev}/{file}          file bytes, honouring
//       "Range: bytes=a-b" / "bytes=a-" with 206 and Content-Range
//
// Access: an unknown repository is 404 (X-Error-Code: RepoNotFound), an
// unknown revision 404 (RevisionNotFound), a missing file 404
// (EntryNotFound); a private repository answers 401 unless the request
// carries "Authorization: Bearer <its token>"; a gated one answers 403.
//
// Faults: DropAfter(file, bytes, times) makes the next `times` downloads of
// `file` send `bytes` of the body and then close the connection.
//
// Outages: SetDown(true) answers every request 503 until SetDown(false);
// GoDownAfterNextDrop() makes the next DropAfter drop also take the Hub
// down, so a download is cut mid-file and then finds no Hub.
//
// Hold(file) parks whole-file downloads of `file` until Release(), so a test
// can observe a download in progress without racing it.
//
// Every response carries "Connection: close". Thread-safe.
#ifndef HANGAR_TESTS_INTEGRATION_CATALOG_FAKE_HUB_H_
#define HANGAR_TESTS_INTEGRATION_CATALOG_FAKE_HUB_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace hangar::testing {

class FakeHub {
 public:
  struct Repo {
    std::string id;   // "owner/name"
    std::string sha;  // 40 hex characters
    std::string license = "apache-2.0";
    std::string token;   // non-empty: private, needs this token
    bool gated = false;  // always 403
    std::map<std::string, std::string> files;  // path -> content
    // LFS checksums to announce instead of the true ones (corruption tests).
    std::map<std::string, std::string> sha256_overrides;
  };

  static absl::StatusOr<std::unique_ptr<FakeHub>> Start();
  ~FakeHub();

  void AddRepo(Repo repo);
  // The next `times` GETs of `file` (any repo) stop after `bytes` bytes.
  void DropAfter(const std::string& file, int64_t bytes, int times);

  void SetDown(bool down);
  void GoDownAfterNextDrop();
  // Requests answered 503 while down.
  int RefusedWhileDown();

  // Whole-file downloads of `file` (no Range, or an open-ended one) wait
  // before sending their body until Release(); header range reads do not.
  void Hold(const std::string& file);
  void Release();
  // Blocks until a download is waiting in Hold (up to 30 s); false on timeout.
  bool AwaitHeldDownload();

  // "http://127.0.0.1:<port>".
  std::string endpoint() const;

  // Requests so far whose path contains `needle`; and those with a Range
  // header starting past byte 0.
  int RequestsFor(const std::string& needle);
  int ResumedRequestsFor(const std::string& needle);
  // Every Authorization header value seen (to check tokens travel only
  // where they should).
  std::vector<std::string> AuthorizationsSeen();

 private:
  FakeHub() = default;
  void AcceptLoop();
  void Serve(int fd);

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;

  absl::Mutex mu_;  // Protects everything below.
  std::map<std::string, Repo> repos_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::pair<int64_t, int>> drops_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> paths_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> resumed_paths_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> authorizations_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> connections_ ABSL_GUARDED_BY(mu_);
  std::string held_file_ ABSL_GUARDED_BY(mu_);
  bool down_ ABSL_GUARDED_BY(mu_) = false;
  bool down_after_drop_ ABSL_GUARDED_BY(mu_) = false;
  int refused_while_down_ ABSL_GUARDED_BY(mu_) = 0;
  int held_waiters_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hangar::testing

#endif  // HANGAR_TESTS_INTEGRATION_CATALOG_FAKE_HUB_H_
