// Downloads one file of a Hugging Face repository into the model store,
// resumably and checksummed.
//
// Bytes go to "<destination>.partial". When a transfer breaks (the server
// drops the connection, a stall, a 5xx), the next attempt asks for the rest
// with a Range request from the partial file's size, after an exponential
// backoff read from the injected clock. Attempts that make no progress are
// counted; after `max_stalled_attempts` in a row the download fails with the
// last error (UNAVAILABLE naming the URL). A partial file survives failures
// and restarts of the process, so a later Download() resumes it.
//
// When complete, the file's SHA-256 is checked against the Hub's LFS
// checksum (when the Hub gave one): a mismatch deletes the partial file and
// returns DATA_LOSS. Then the file is renamed to `destination`.
//
//   FileDownloader downloader(&hub, {.clock = clock});
//   ASSIGN_OR_RETURN(std::string sha256, downloader.Download(
//       {.repo = "Qwen/Qwen2.5-0.5B", .revision = sha, .file = file,
//        .destination = dir + "/model.safetensors"},
//       [&](int64_t delta) { progress += delta; }, &cancel));
#ifndef HANGAR_SERVICES_CATALOG_DOWNLOADER_H_
#define HANGAR_SERVICES_CATALOG_DOWNLOADER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "services/catalog/cancellation.h"
#include "services/catalog/event_log.h"
#include "services/catalog/hub_client.h"

namespace hangar::catalog {

class FileDownloader {
 public:
  struct Options {
    // Failed attempts in a row without a single new byte before giving up.
    int max_stalled_attempts = 5;
    // Backoff before the second attempt; doubles up to max_backoff.
    absl::Duration initial_backoff = absl::Milliseconds(200);
    absl::Duration max_backoff = absl::Seconds(10);

    // --- Injected dependencies ---
    // Read for backoff sleeps. Not owned; never null.
    Clock* clock = Clock::Real();
    // Optional: one "download_retry" line per retry (file, offset, error).
    EventLog* log = nullptr;
  };

  struct Target {
    std::string repo;
    // Preferably the resolved commit, so every attempt reads the same bytes.
    std::string revision;
    std::string token;
    HubFile file;
    // Absolute path of the finished file; its directory must exist.
    std::string destination;
  };

  // `hub` is not owned and must outlive the downloader.
  FileDownloader(const HubClient* hub, Options options)
      : hub_(hub), options_(std::move(options)) {}

  // Downloads `target` as described above and returns its SHA-256.
  // `progress` receives the bytes added to the file (negative when a partial
  // file is discarded), starting with what an earlier attempt left.
  // `cancel` (optional) stops the transfer and wakes a backoff at once:
  // CANCELLED.
  absl::StatusOr<std::string> Download(
      const Target& target, const std::function<void(int64_t)>& progress,
      Cancellation* cancel = nullptr) const;

 private:
  const HubClient* const hub_;
  const Options options_;
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_DOWNLOADER_H_
