// An in-memory HubClient for unit tests: files per path, and a script of
// broken transfers, so resume and retry logic runs without sockets.
//
//   FakeHubClient hub;
//   hub.SetFile("model.safetensors", bytes);
//   hub.BreakNextDownloads({300, 0});  // 300 bytes then a drop; then no byte
//   ... downloader.Download(...) ...
//   EXPECT_THAT(hub.download_offsets(), ElementsAre(0, 300, 300));
#ifndef HANGAR_SERVICES_CATALOG_TESTING_FAKE_HUB_CLIENT_H_
#define HANGAR_SERVICES_CATALOG_TESTING_FAKE_HUB_CLIENT_H_

#include <algorithm>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/catalog/hub_client.h"

namespace hangar::catalog::testing {

class FakeHubClient final : public HubClient {
 public:
  void SetFile(const std::string& path, std::string content) {
    absl::MutexLock lock(&mu_);
    files_[path] = std::move(content);
  }
  // Each entry makes one Download() send that many bytes, then fail with
  // UNAVAILABLE.
  void BreakNextDownloads(std::vector<int64_t> bytes) {
    absl::MutexLock lock(&mu_);
    breaks_.assign(bytes.begin(), bytes.end());
  }
  // Blocks until Download() has been called `count` times in all (up to
  // 30 s of real time); false on timeout.
  bool AwaitDownloads(size_t count) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return offsets_.size() >= count;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(30));
  }
  std::vector<int64_t> download_offsets() {
    absl::MutexLock lock(&mu_);
    return offsets_;
  }

  const std::string& endpoint() const override { return endpoint_; }

  absl::StatusOr<RepoInfo> GetRepoInfo(const std::string& repo,
                                       const std::string&,
                                       const std::string&) const override {
    absl::MutexLock lock(&mu_);
    RepoInfo info;
    info.id = repo;
    info.sha = std::string(40, 'a');
    for (const auto& [path, content] : files_) {
      info.files.push_back(
          {.path = path, .size = static_cast<int64_t>(content.size())});
    }
    return info;
  }

  absl::StatusOr<std::string> GetFile(const std::string&, const std::string&,
                                      const std::string& path,
                                      const std::string&,
                                      int64_t) const override {
    absl::MutexLock lock(&mu_);
    auto it = files_.find(path);
    if (it == files_.end()) return absl::NotFoundError(path);
    return it->second;
  }

  absl::StatusOr<std::string> GetRange(const std::string&, const std::string&,
                                       const std::string& path,
                                       const std::string&, int64_t offset,
                                       int64_t length) const override {
    absl::MutexLock lock(&mu_);
    auto it = files_.find(path);
    if (it == files_.end()) return absl::NotFoundError(path);
    return it->second.substr(offset, length);
  }

  absl::Status Download(const std::string&, const std::string&,
                        const std::string& path, const std::string&,
                        int64_t offset,
                        const std::function<bool(absl::string_view)>& sink,
                        const std::atomic<bool>*) const override {
    std::string rest;
    int64_t limit = -1;
    {
      absl::MutexLock lock(&mu_);
      offsets_.push_back(offset);
      auto it = files_.find(path);
      if (it == files_.end()) return absl::NotFoundError(path);
      rest = it->second.substr(std::min<size_t>(offset, it->second.size()));
      if (!breaks_.empty()) {
        limit = breaks_.front();
        breaks_.pop_front();
      }
    }
    if (limit >= 0 && limit < static_cast<int64_t>(rest.size())) {
      if (limit > 0 && !sink(absl::string_view(rest).substr(0, limit))) {
        return absl::CancelledError("stopped");
      }
      return absl::UnavailableError(
          absl::StrCat("connection dropped at ", offset + limit));
    }
    if (!rest.empty() && !sink(rest)) return absl::CancelledError("stopped");
    return absl::OkStatus();
  }

  std::string FileUrl(const std::string& repo, const std::string& revision,
                      const std::string& path) const override {
    return absl::StrCat(endpoint_, "/", repo, "/resolve/", revision, "/", path);
  }

 private:
  const std::string endpoint_ = "fake://hub";
  mutable absl::Mutex mu_;  // Protects everything below.
  std::map<std::string, std::string> files_ ABSL_GUARDED_BY(mu_);
  mutable std::deque<int64_t> breaks_ ABSL_GUARDED_BY(mu_);
  mutable std::vector<int64_t> offsets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hangar::catalog::testing

#endif  // HANGAR_SERVICES_CATALOG_TESTING_FAKE_HUB_CLIENT_H_
