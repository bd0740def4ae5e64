#include "services/catalog/downloader.h"

#include <cstdio>
#include <filesystem>
#include <memory>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/util/file.h"
#include "common/util/sha256.h"

namespace hangar::catalog {
namespace {

namespace fs = std::filesystem;

int64_t FileSize(const std::string& path) {
  std::error_code error;
  auto size = fs::file_size(path, error);
  return error ? -1 : static_cast<int64_t>(size);
}

}  // namespace

absl::StatusOr<std::string> FileDownloader::Download(
    const Target& target, const std::function<void(int64_t)>& progress,
    Cancellation* cancel) const {
  const HubFile& file = target.file;
  const std::string partial = target.destination + ".partial";
  auto verify = [&](const std::string& path) -> absl::StatusOr<std::string> {
    ASSIGN_OR_RETURN(std::string sha256, Sha256OfFile(path));
    if (!file.sha256.empty() && sha256 != file.sha256) {
      return absl::DataLossError(
          absl::StrCat(file.path, ": checksum mismatch: the Hub says sha256 ",
                       file.sha256, ", the downloaded bytes hash to ", sha256));
    }
    return sha256;
  };

  // Finished earlier (a previous preparation of the same revision).
  if (int64_t size = FileSize(target.destination);
      size >= 0 && (file.size < 0 || size == file.size)) {
    absl::StatusOr<std::string> sha256 = verify(target.destination);
    if (sha256.ok()) {
      progress(size);
      return sha256;
    }
    std::error_code ignored;
    fs::remove(target.destination, ignored);
  }

  int64_t offset = std::max<int64_t>(FileSize(partial), 0);
  if (file.size >= 0 && offset > file.size) {
    fs::resize_file(partial, 0);
    offset = 0;
  }
  progress(offset);
  int stalled = 0;
  absl::Duration backoff = options_.initial_backoff;
  absl::Status last = absl::OkStatus();
  while (true) {
    if (cancel != nullptr && cancel->cancelled()) {
      return absl::CancelledError(
          absl::StrCat("download of ", file.path, " cancelled"));
    }
    FilePtr out(std::fopen(partial.c_str(), "ab"));
    if (out == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot write ", partial, " in the model store"));
    }
    const int64_t before = offset;
    bool write_failed = false;
    absl::Status status = hub_->Download(
        target.repo, target.revision, file.path, target.token, offset,
        [&](absl::string_view chunk) {
          if (std::fwrite(chunk.data(), 1, chunk.size(), out.get()) !=
              chunk.size()) {
            write_failed = true;
            return false;
          }
          offset += static_cast<int64_t>(chunk.size());
          progress(static_cast<int64_t>(chunk.size()));
          return true;
        },
        cancel == nullptr ? nullptr : cancel->flag());
    const bool flushed = std::fflush(out.get()) == 0;
    out.reset();
    if (write_failed || !flushed) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot write ", partial, " (disk full?)"));
    }
    if (status.ok() && file.size >= 0 && offset < file.size) {
      status = absl::UnavailableError(
          absl::StrCat("transfer of ",
                       hub_->FileUrl(target.repo, target.revision, file.path),
                       " ended at byte ", offset, " of ", file.size));
    }
    if (status.ok()) break;
    if (status.code() != absl::StatusCode::kUnavailable) return status;
    last = status;
    if (offset > before) {
      stalled = 0;
      backoff = options_.initial_backoff;
    } else if (++stalled >= options_.max_stalled_attempts) {
      return absl::UnavailableError(absl::StrCat(
          last.message(), " (gave up after ", stalled,
          " attempts without progress; the partial download is kept)"));
    }
    if (options_.log != nullptr) {
      options_.log->Write(
          "download_retry",
          {{"repo", target.repo},
           {"file", file.path},
           {"offset", absl::StrCat(offset)},
           {"in_s", absl::StrCat(absl::ToDoubleSeconds(backoff))},
           {"error", std::string(status.message())}});
    }
    const absl::Time wake = options_.clock->Now() + backoff;
    if (cancel != nullptr) {
      cancel->WaitUntil(options_.clock, wake);
    } else {
      options_.clock->SleepUntil(wake);
    }
    backoff = std::min(backoff * 2, options_.max_backoff);
  }

  absl::StatusOr<std::string> sha256 = verify(partial);
  if (!sha256.ok()) {
    std::error_code ignored;
    progress(-offset);
    fs::remove(partial, ignored);
    return sha256.status();
  }
  std::error_code error;
  fs::rename(partial, target.destination, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot rename ", partial, ": ", error.message()));
  }
  return sha256;
}

}  // namespace hangar::catalog
