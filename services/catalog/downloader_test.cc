#include "services/catalog/downloader.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/auth/crypto.h"
#include "common/testing/fake_clock.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/catalog/testing/fake_hub_client.h"

namespace hangar::catalog {
namespace {

namespace fs = std::filesystem;
using ::hangar::testing::FakeClock;
using ::hangar::testing::IsOkAndHolds;
using ::hangar::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class DownloaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("downloader_test_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    for (int i = 0; i < 1000; ++i) content_.push_back(static_cast<char>(i * 7));
    hub_.SetFile("model.safetensors", content_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  FileDownloader::Target Target(std::string sha256 = "") {
    return {
        .repo = "acme/m",
        .revision = std::string(40, 'a'),
        .file = {.path = "model.safetensors",
                 .size = static_cast<int64_t>(content_.size()),
                 .sha256 = sha256.empty() ? auth::Sha256Hex(content_) : sha256},
        .destination = (dir_ / "model.safetensors").string()};
  }
  std::string Read(const fs::path& path) {
    std::ifstream file(path, std::ios::binary);
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
  }

  fs::path dir_;
  std::string content_;
  testing::FakeHubClient hub_;
  FakeClock clock_;
};

TEST_F(DownloaderTest,
       ResumesFromThePartialFileAfterBackoffOnTheInjectedClock) {
  FileDownloader downloader(&hub_, {.max_stalled_attempts = 3,
                                    .initial_backoff = absl::Seconds(1),
                                    .max_backoff = absl::Seconds(10),
                                    .clock = &clock_});
  hub_.BreakNextDownloads({300, 0});  // A drop after 300 bytes, then a stall.
  int64_t progress = 0;
  absl::StatusOr<std::string> result;
  std::thread worker([&] {
    result = downloader.Download(Target(),
                                 [&](int64_t delta) { progress += delta; });
  });
  // Each retry waits on the fake clock: nothing moves until the test says so.
  ASSERT_TRUE(hub_.AwaitDownloads(1));
  ASSERT_TRUE(clock_.BlockUntilWaiters(1));
  EXPECT_EQ(hub_.download_offsets().size(), 1u);
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(hub_.AwaitDownloads(2));
  ASSERT_TRUE(clock_.BlockUntilWaiters(1));
  // The backoff doubled after the second attempt: 1 s is not enough...
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(clock_.BlockUntilWaiters(1));
  EXPECT_EQ(hub_.download_offsets().size(), 2u);
  // ...2 s in all is.
  clock_.Advance(absl::Seconds(1));
  worker.join();
  EXPECT_THAT(result, IsOkAndHolds(auth::Sha256Hex(content_)));
  EXPECT_EQ(progress, 1000);
  EXPECT_THAT(hub_.download_offsets(), ElementsAre(0, 300, 300));
  EXPECT_EQ(Read(dir_ / "model.safetensors"), content_);
  EXPECT_FALSE(fs::exists(dir_ / "model.safetensors.partial"));
}

TEST_F(DownloaderTest, GivesUpAfterStalledAttemptsKeepingThePartialFile) {
  FileDownloader downloader(&hub_, {.max_stalled_attempts = 2,
                                    .initial_backoff = absl::ZeroDuration(),
                                    .clock = &clock_});
  hub_.BreakNextDownloads({100, 0, 0});
  EXPECT_THAT(downloader.Download(Target(), [](int64_t) {}),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("gave up after 2 attempts without progress")));
  EXPECT_EQ(Read(dir_ / "model.safetensors.partial"), content_.substr(0, 100));
  // The next call resumes where it stopped.
  int64_t progress = 0;
  EXPECT_THAT(downloader.Download(Target(), [&](int64_t d) { progress += d; }),
              IsOkAndHolds(auth::Sha256Hex(content_)));
  EXPECT_EQ(progress, 1000);
  EXPECT_EQ(hub_.download_offsets().back(), 100);
}

TEST_F(DownloaderTest, ChecksumMismatchDiscardsTheBytes) {
  FileDownloader downloader(&hub_, {.clock = &clock_});
  int64_t progress = 0;
  EXPECT_THAT(
      downloader.Download(Target(std::string(64, 'f')),
                          [&](int64_t d) { progress += d; }),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("checksum mismatch")));
  EXPECT_EQ(progress, 0);
  EXPECT_FALSE(fs::exists(dir_ / "model.safetensors.partial"));
  EXPECT_FALSE(fs::exists(dir_ / "model.safetensors"));
}

TEST_F(DownloaderTest, AFinishedFileIsNotFetchedAgain) {
  std::ofstream(dir_ / "model.safetensors", std::ios::binary) << content_;
  FileDownloader downloader(&hub_, {.clock = &clock_});
  int64_t progress = 0;
  EXPECT_THAT(downloader.Download(Target(), [&](int64_t d) { progress += d; }),
              IsOkAndHolds(auth::Sha256Hex(content_)));
  EXPECT_EQ(progress, 1000);
  EXPECT_TRUE(hub_.download_offsets().empty());
}

TEST_F(DownloaderTest, CancellationStopsTheDownload) {
  FileDownloader downloader(&hub_, {.clock = &clock_});
  Cancellation cancel;
  cancel.Cancel();
  EXPECT_THAT(downloader.Download(
                  Target(), [](int64_t) {}, &cancel),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("cancelled")));
}

}  // namespace
}  // namespace hangar::catalog
