// Unit tests of PreparationManager with the in-memory fakes and the fake
// clock: the Hub outage longer than the downloader's short retry is waited
// out with capped exponential backoff, shown in the preparation, and the
// download resumes from its byte; the budget ends it; delete cancels it.
#include "services/catalog/preparation_manager.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/auth/crypto.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "services/catalog/testing/catalog_fixture.h"

namespace hangar::catalog {
namespace {

using ::google::protobuf::util::TimeUtil;
using ::hangar::testing::IsOk;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class PreparationManagerTest : public testing::CatalogFixture {
 protected:
  void SetUp() override {
    CatalogFixture::SetUp();
    store_dir_ = hangar::testing::MakeTempDir("preparation_test");
    for (int i = 0; i < 1000; ++i) content_.push_back(static_cast<char>(i * 7));
    hub_.SetFile("model.safetensors", content_);
    v1::Model model;
    model.set_name("acme/m");
    model.set_source(v1::MODEL_SOURCE_HUGGING_FACE);
    model.set_state(v1::MODEL_STATE_READY);
    model.set_hf_repo("acme/m");
    model.set_resolved_revision(std::string(40, 'a'));
    ASSERT_THAT(models_.CreateModel(model).status(), IsOk());
  }
  void TearDown() override {
    if (preparations_ != nullptr) preparations_->Shutdown();
    tasks_->Shutdown();
    std::filesystem::remove_all(store_dir_);
  }

  void Start(absl::Duration budget) {
    auto preparations = PreparationManager::Create(
        {.model_store = store_dir_,
         .progress_interval = absl::Milliseconds(1),
         // Give up on a file after one attempt without progress, at once.
         .download = {.max_stalled_attempts = 1,
                      .initial_backoff = absl::ZeroDuration()},
         .hub_retry = {.initial_backoff = absl::Seconds(1),
                       .max_backoff = absl::Seconds(2),
                       .budget = budget},
         .context = Context()});
    ASSERT_THAT(preparations.status(), IsOk());
    preparations_ = *std::move(preparations);
  }

  // The model with its live preparation, as GetModel shows it.
  absl::StatusOr<v1::Model> Read() {
    absl::StatusOr<v1::Model> model = models_.GetModel("acme/m");
    if (model.ok()) {
      if (auto live = preparations_->Live("acme/m")) {
        *model->mutable_preparation() = *live;
      }
    }
    return model;
  }
  v1::Model AwaitAttempt(int attempt) {
    return AwaitModel(
        "acme/m",
        [&](const v1::Model& m) {
          return m.preparation().retry_attempt() == attempt ||
                 m.preparation().state() == v1::PREPARATION_STATE_FAILED;
        },
        [&] { return Read(); });
  }
  v1::Model AwaitDone() {
    return AwaitModel(
        "acme/m",
        [](const v1::Model& m) {
          return m.preparation().state() == v1::PREPARATION_STATE_PREPARED ||
                 m.preparation().state() == v1::PREPARATION_STATE_FAILED;
        },
        [&] { return Read(); });
  }

  std::string store_dir_;
  std::string content_;
  std::unique_ptr<PreparationManager> preparations_;
};

TEST_F(PreparationManagerTest, WaitsOutAHubOutageAndResumesFromItsByte) {
  Start(absl::Minutes(10));
  // 300 bytes, then the Hub goes away for two more attempts.
  hub_.BreakNextDownloads({300, 0, 0});
  ASSERT_THAT(preparations_->Prepare("acme/m").status(), IsOk());

  v1::Model model = AwaitAttempt(1);
  const v1::Preparation& waiting = model.preparation();
  ASSERT_EQ(waiting.state(), v1::PREPARATION_STATE_DOWNLOADING)
      << waiting.ShortDebugString();
  EXPECT_THAT(waiting.progress().message(),
              StartsWith("waiting for the Hub (attempt 1, next in 1 s): "));
  EXPECT_THAT(waiting.last_error(), HasSubstr("connection dropped"));
  EXPECT_EQ(TimeUtil::TimestampToMicroseconds(waiting.next_retry_time()),
            absl::ToUnixMicros(clock_.Now() + absl::Seconds(1)));
  EXPECT_EQ(waiting.progress().done(), 300);
  // Stored too, for GetModel after a restart.
  EXPECT_EQ(models_.GetModel("acme/m")->preparation().retry_attempt(), 1);

  // The backoff doubles while the outage lasts...
  ASSERT_TRUE(clock_.BlockUntilWaiters(1));
  clock_.Advance(absl::Seconds(1));
  model = AwaitAttempt(2);
  EXPECT_THAT(model.preparation().progress().message(),
              StartsWith("waiting for the Hub (attempt 2, next in 2 s)"));
  EXPECT_EQ(model.preparation().progress().done(), 300);  // Never falls back.
  // ...and the Hub is back: the download resumes at byte 300.
  ASSERT_TRUE(clock_.BlockUntilWaiters(1));
  clock_.Advance(absl::Seconds(2));
  model = AwaitDone();
  ASSERT_EQ(model.preparation().state(), v1::PREPARATION_STATE_PREPARED)
      << model.preparation().failure_reason();
  EXPECT_EQ(model.preparation().retry_attempt(), 0);
  EXPECT_FALSE(model.preparation().has_next_retry_time());
  EXPECT_EQ(model.preparation().progress().done(), 1000);
  EXPECT_THAT(hub_.download_offsets(), ElementsAre(0, 300, 300, 300));
  std::ifstream file(model.preparation().local_path() + "/model.safetensors",
                     std::ios::binary);
  std::stringstream bytes;
  bytes << file.rdbuf();
  EXPECT_EQ(bytes.str(), content_);
  EXPECT_THAT(log_lines(), Contains(AllOf(HasSubstr("preparation_waiting"),
                                          HasSubstr("attempt=\"2\""))));
  EXPECT_THAT(log_lines(), Contains(HasSubstr("preparation_retry")));
  // The short retry after the first drop, inside the downloader.
  EXPECT_THAT(log_lines(), Contains(AllOf(HasSubstr("event=download_retry"),
                                          HasSubstr("offset=\"300\""))));
}

TEST_F(PreparationManagerTest, FailsOnlyWhenTheBudgetIsSpent) {
  Start(absl::Seconds(3));
  hub_.BreakNextDownloads({0, 0, 0, 0, 0, 0});
  ASSERT_THAT(preparations_->Prepare("acme/m").status(), IsOk());
  ASSERT_EQ(AwaitAttempt(1).preparation().retry_attempt(), 1);
  ASSERT_TRUE(clock_.BlockUntilWaiters(1));
  clock_.Advance(absl::Seconds(1));  // 1 s of 3 spent; the next wait is 2 s.
  ASSERT_EQ(AwaitAttempt(2).preparation().retry_attempt(), 2);
  ASSERT_TRUE(clock_.BlockUntilWaiters(1));
  clock_.Advance(absl::Seconds(2));  // 3 s spent: no room for another wait.
  v1::Model model = AwaitDone();
  EXPECT_EQ(model.preparation().state(), v1::PREPARATION_STATE_FAILED);
  EXPECT_THAT(model.preparation().failure_reason(),
              HasSubstr("gave up waiting for the Hub"));
  EXPECT_THAT(log_lines(), Contains(HasSubstr("event=download_failed")));
}

TEST_F(PreparationManagerTest, CancelStopsAWaitingPreparationAtOnce) {
  Start(absl::Minutes(10));
  hub_.BreakNextDownloads({0, 0, 0});
  ASSERT_THAT(preparations_->Prepare("acme/m").status(), IsOk());
  ASSERT_EQ(AwaitAttempt(1).preparation().retry_attempt(), 1);
  // No clock advance: the cancel itself must wake the backoff.
  preparations_->CancelAndWait("acme/m", absl::Seconds(30));
  EXPECT_FALSE(preparations_->Live("acme/m").has_value());
}

TEST_F(PreparationManagerTest, SharesOneDownloadBetweenCalls) {
  Start(absl::Minutes(10));
  hub_.BreakNextDownloads({0, 0});
  ASSERT_THAT(preparations_->Prepare("acme/m").status(), IsOk());
  ASSERT_EQ(AwaitAttempt(1).preparation().retry_attempt(), 1);
  absl::StatusOr<v1::Preparation> again = preparations_->Prepare("acme/m");
  ASSERT_THAT(again.status(), IsOk());
  EXPECT_EQ(again->retry_attempt(), 1);  // The live one, not a new one.
  EXPECT_EQ(hub_.download_offsets().size(), 1u);
}

}  // namespace
}  // namespace hangar::catalog
