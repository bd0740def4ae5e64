// Artifact holds and garbage collection against a real PostgreSQL: the
// Optimizer domain on PgJobStore, with the in-memory scheduler stand-in
// (services/optimizer/testing) and a fake clock for the grace period.
// "Conversions" are simulated: the test writes the artifact directory and
// tells the scheduler stand-in the job succeeded with a report line.
#include <fcntl.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <pqxx/pqxx>
#include <thread>

#include "common/testing/child_process.h"
#include "common/testing/fake_clock.h"
#include "common/testing/postgres_server.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/optimizer/artifact_collector.h"
#include "services/optimizer/optimizer.h"
#include "services/optimizer/pg_job_store.h"
#include "services/optimizer/testing/fake_scheduler_client.h"

namespace hangar::optimizer {
namespace {

namespace fs = std::filesystem;
using ::hangar::testing::FakeClock;
using ::hangar::testing::StatusIs;
using ::hangar::testing::WaitUntil;
using ::testing::HasSubstr;

constexpr char kSha[] =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
constexpr char kOtherSha[] =
    "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

class ArtifactGcTest : public ::hangar::testing::PostgresTest {
 protected:
  void SetUp() override {
    PostgresTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_OK_AND_ASSIGN(pool_,
                         db::Pool::Create({.conninfo = conninfo(), .size = 6}));
    ASSERT_OK(MigrateOptimizerSchema(*pool_));
    store_ = std::make_unique<PgJobStore>(pool_.get());
    root_ = ::hangar::testing::MakeTempDir("optgc");
    fs::create_directories(root_ + "/src");
    fs::create_directories(root_ + "/store/artifacts");
    clock_.SetTime(absl::Now());
    StartOptimizer(false);
  }
  void StartOptimizer(bool collect_at_start) {
    optimizer_.reset();
    ASSERT_OK_AND_ASSIGN(
        optimizer_, Optimizer::Create({.model_store = root_ + "/store",
                                       .optimize_binary = "/bin/true",
                                       .watch_slice = absl::Milliseconds(50),
                                       .gc_grace = absl::Hours(1),
                                       .collect_at_start = collect_at_start,
                                       .store = store_.get(),
                                       .scheduler = &scheduler_,
                                       .notifier = &notifier_,
                                       .clock = &clock_}));
    ASSERT_OK(optimizer_->Start());
  }
  v1::CreateOptimizationJobRequest Request(const std::string& request_id,
                                           const std::string& sha = kSha) {
    v1::CreateOptimizationJobRequest r;
    r.set_request_id(request_id);
    r.mutable_job()->set_model("models/tiny");
    r.mutable_job()->mutable_recipe()->set_engine(v1::ENGINE_CTRANSLATE2);
    r.mutable_job()->mutable_recipe()->set_quantization(v1::QUANTIZATION_INT8);
    r.mutable_job()->set_hardware("h100-1");
    r.set_source_path(root_ + "/src");
    r.set_source_sha256(sha);
    return r;
  }
  std::string Key(const std::string& sha = kSha) {
    return sha + "-ctranslate2-int8";
  }
  std::string ArtifactDir(const std::string& sha = kSha) {
    return root_ + "/store/artifacts/" + Key(sha);
  }
  v1::OptimizationJob WaitForJob(
      const std::string& name,
      const std::function<bool(const v1::OptimizationJob&)>& pred) {
    v1::OptimizationJob job;
    EXPECT_TRUE(WaitUntil(
        [&] {
          auto j = optimizer_->GetJob(name);
          if (j.ok()) job = *j;
          return j.ok() && pred(job);
        },
        absl::Seconds(20)))
        << job.DebugString();
    return job;
  }
  static void WriteBytes(const std::string& path, int64_t n) {
    std::ofstream(path, std::ios::binary) << std::string(size_t(n), 'x');
  }
  // Sets a path's modification time on the fake clock's time line.
  void SetModified(const std::string& path, absl::Time t) {
    timespec ts[2] = {absl::ToTimespec(t), absl::ToTimespec(t)};
    ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), ts, 0), 0) << path;
  }
  // Creates a job for `request_id` and finishes it as hangar-optimize
  // would: a 1000-byte artifact directory and a passing report.
  v1::OptimizationJob Convert(const std::string& request_id,
                              const std::string& sha = kSha) {
    auto created = optimizer_->CreateJob(Request(request_id, sha));
    EXPECT_OK(created.status());
    if (!created.ok()) return {};
    v1::OptimizationJob j = WaitForJob(created->name(), [](const auto& j) {
      return !j.scheduler_job().empty();
    });
    fs::create_directories(ArtifactDir(sha));
    WriteBytes(ArtifactDir(sha) + "/model.safetensors", 1000);
    scheduler_.SetJob(
        j.scheduler_job(), v1::JOB_STATE_SUCCEEDED,
        absl::StrCat("{\"event\":\"report\",\"passed\":true,\"artifact\":\"",
                     ArtifactDir(sha),
                     "\",\"size_bytes\":1000,\"max_abs_logit_error\":0.1,"
                     "\"max_abs_logit_error_bound\":1}\n"));
    return WaitForJob(created->name(), [](const auto& j) {
      return j.state() == v1::JOB_STATE_SUCCEEDED;
    });
  }
  v1::GarbageCollectArtifactsResponse Collect(bool dry_run) {
    v1::GarbageCollectArtifactsRequest r;
    r.set_dry_run(dry_run);
    auto out = optimizer_->CollectGarbage(r);
    EXPECT_OK(out.status());
    return out.ok() ? *out : v1::GarbageCollectArtifactsResponse();
  }
  absl::StatusOr<v1::OptimizationJob> Release(const std::string& request_id,
                                              const std::string& name = "") {
    v1::ReleaseOptimizationJobRequest r;
    r.set_request_id(request_id);
    r.set_name(name);
    return optimizer_->ReleaseJob(r);
  }
  int Artifacts() {
    auto r = optimizer_->ListArtifacts({});
    return r.ok() ? r->artifacts_size() : -1;
  }

  std::unique_ptr<db::Pool> pool_;
  std::unique_ptr<PgJobStore> store_;
  std::string root_;
  FakeClock clock_;
  testing::FakeSchedulerClient scheduler_;
  ChangeNotifier notifier_;
  std::unique_ptr<Optimizer> optimizer_;
};

TEST_F(ArtifactGcTest, HeldArtifactsStayAndReleasedOnesGoAfterTheGrace) {
  v1::OptimizationJob first = Convert("dep-a-rev-1");
  ASSERT_EQ(first.state(), v1::JOB_STATE_SUCCEEDED);
  // A second deployment reuses the artifact: a second hold.
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob reused,
                       optimizer_->CreateJob(Request("dep-b-rev-1")));
  EXPECT_TRUE(reused.reused());
  EXPECT_EQ(reused.state(), v1::JOB_STATE_SUCCEEDED);

  clock_.Advance(absl::Hours(5));
  EXPECT_EQ(Collect(false).removed_size(), 0);  // Held twice.
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob released, Release("dep-a-rev-1"));
  EXPECT_EQ(released.name(), first.name());
  EXPECT_EQ(Collect(false).removed_size(), 0);  // Still held by dep-b.
  EXPECT_THAT(Release("dep-b-rev-1", first.name()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(reused.name())));
  ASSERT_OK(Release("dep-b-rev-1", reused.name()).status());
  ASSERT_OK(Release("dep-b-rev-1").status());  // Idempotent.
  EXPECT_THAT(Release("dep-c-rev-9"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("dep-c-rev-9")));

  // Unheld, but released just now: inside the grace period.
  EXPECT_EQ(Collect(false).removed_size(), 0);
  clock_.Advance(absl::Minutes(61));
  v1::GarbageCollectArtifactsResponse dry = Collect(true);
  ASSERT_EQ(dry.removed_size(), 1);
  EXPECT_TRUE(dry.dry_run());
  EXPECT_EQ(dry.removed(0).kind(), "artifact");
  EXPECT_EQ(dry.removed(0).path(), ArtifactDir());
  EXPECT_EQ(dry.removed(0).artifact(), first.artifact().name());
  EXPECT_EQ(dry.removed(0).size_bytes(), 1000);
  EXPECT_EQ(dry.bytes_freed(), 1000);
  EXPECT_TRUE(fs::exists(ArtifactDir()));
  EXPECT_EQ(Artifacts(), 1);

  v1::GarbageCollectArtifactsResponse done = Collect(false);
  ASSERT_EQ(done.removed_size(), 1);
  EXPECT_FALSE(done.dry_run());
  EXPECT_EQ(done.bytes_freed(), 1000);
  EXPECT_FALSE(fs::exists(ArtifactDir()));
  EXPECT_EQ(Artifacts(), 0);
  EXPECT_EQ(std::distance(fs::directory_iterator(root_ + "/store/artifacts"),
                          fs::directory_iterator()),
            0);
  EXPECT_EQ(Collect(false).removed_size(), 0);  // Idempotent.

  // The same input again converts anew.
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob again,
                       optimizer_->CreateJob(Request("dep-a-rev-2")));
  EXPECT_FALSE(again.reused());
  EXPECT_EQ(again.state(), v1::JOB_STATE_PENDING);
}

TEST_F(ArtifactGcTest, NeverRemovesWhatARunningJobWritesAndSweepsCrashes) {
  // A running conversion with its temporary directory.
  ASSERT_OK_AND_ASSIGN(v1::OptimizationJob running,
                       optimizer_->CreateJob(Request("dep-a-rev-1")));
  v1::OptimizationJob j = WaitForJob(
      running.name(), [](const auto& j) { return !j.scheduler_job().empty(); });
  scheduler_.SetJob(j.scheduler_job(), v1::JOB_STATE_RUNNING);
  WaitForJob(running.name(),
             [](const auto& j) { return j.state() == v1::JOB_STATE_RUNNING; });
  const std::string dir = root_ + "/store/artifacts/";
  const std::string running_tmp = dir + "." + Key() + ".tmp-4242";
  fs::create_directories(running_tmp);
  WriteBytes(running_tmp + "/model.safetensors", 500);
  // Released while running: the job goes on and its files stay.
  ASSERT_OK(Release("dep-a-rev-1").status());
  // A crashed conversion of another key (its job ended), an orphan
  // directory no job or artifact owns (old), a fresh one, and trash.
  const std::string crashed_tmp = dir + "." + Key(kOtherSha) + ".tmp-77";
  fs::create_directories(crashed_tmp);
  WriteBytes(crashed_tmp + "/model.safetensors", 300);
  const std::string orphan = dir + std::string(64, 'a') + "-ctranslate2-int8";
  fs::create_directories(orphan);
  WriteBytes(orphan + "/x", 200);
  SetModified(orphan, clock_.Now() - absl::Hours(2));
  const std::string fresh = dir + std::string(64, 'b') + "-vllm-fp8";
  fs::create_directories(fresh);
  SetModified(fresh, clock_.Now());
  fs::create_directories(dir + ".gc-left-over");
  WriteBytes(dir + ".gc-left-over/y", 100);
  WriteBytes(dir + "README", 1);  // Not the store's: left alone.
  clock_.Advance(absl::Minutes(1));

  v1::GarbageCollectArtifactsResponse r = Collect(false);
  std::map<std::string, std::string> kinds;
  for (const auto& c : r.removed()) kinds[c.path()] = c.kind();
  EXPECT_EQ(kinds, (std::map<std::string, std::string>{
                       {crashed_tmp, "temporary"},
                       {orphan, "orphan"},
                       {dir + ".gc-left-over", "trash"}}));
  EXPECT_EQ(r.bytes_freed(), 300 + 200 + 100);
  EXPECT_TRUE(fs::exists(running_tmp + "/model.safetensors"));
  EXPECT_TRUE(fs::exists(fresh));
  EXPECT_TRUE(fs::exists(dir + "README"));
  EXPECT_FALSE(fs::exists(crashed_tmp));
  EXPECT_FALSE(fs::exists(orphan));

  // The running job finishes after all: its artifact, unheld, is recorded
  // and kept through the grace period.
  fs::rename(running_tmp, ArtifactDir());
  scheduler_.SetJob(
      j.scheduler_job(), v1::JOB_STATE_SUCCEEDED,
      absl::StrCat("{\"event\":\"report\",\"passed\":true,\"artifact\":\"",
                   ArtifactDir(), "\",\"size_bytes\":500}\n"));
  WaitForJob(running.name(), [](const auto& j) {
    return j.state() == v1::JOB_STATE_SUCCEEDED;
  });
  EXPECT_EQ(Collect(false).removed_size(), 0);
  EXPECT_EQ(Artifacts(), 1);

  // The start-up sweep (after a crash: a temporary of an ended job).
  fs::create_directories(dir + "." + Key(kOtherSha) + ".tmp-99");
  clock_.Advance(absl::Hours(2));
  StartOptimizer(true);
  EXPECT_FALSE(fs::exists(dir + "." + Key(kOtherSha) + ".tmp-99"));
  EXPECT_FALSE(fs::exists(ArtifactDir()));  // Unheld for 2 h.
  EXPECT_EQ(Artifacts(), 0);
}

TEST_F(ArtifactGcTest, AReuseWaitsForTheCollectorsDecisionOnItsKey) {
  v1::OptimizationJob first = Convert("dep-a-rev-1");
  ASSERT_OK(Release("dep-a-rev-1").status());
  clock_.Advance(absl::Hours(2));
  // Hold the key's lock as the collector does; a reuse must wait for it and
  // then see the artifact gone (it converts anew instead of reusing a
  // directory that is being deleted).
  absl::StatusOr<v1::OptimizationJob> reuse;
  std::thread reuser;
  ASSERT_OK_AND_ASSIGN(
      bool removed,
      store_->WithKeyLocked(
          Key(), [&](const JobStore::KeyState& s) -> absl::StatusOr<bool> {
            EXPECT_EQ(s.live_holds, 0);
            EXPECT_TRUE(s.artifact.has_value());
            reuser = std::thread(
                [&] { reuse = optimizer_->CreateJob(Request("dep-b-rev-1")); });
            // Wait until the reuse blocks on the key's advisory lock.
            auto probe = db::Pool::Create({.conninfo = conninfo(), .size = 1});
            EXPECT_OK(probe.status());
            EXPECT_TRUE(WaitUntil(
                [&] {
                  auto n = (*probe)->Transact<int>(
                      [](pqxx::work& tx) -> absl::StatusOr<int> {
                        return tx
                            .exec(
                                "SELECT count(*) FROM pg_stat_activity "
                                "WHERE wait_event_type = 'Lock' AND "
                                "wait_event = 'advisory'")[0][0]
                            .as<int>();
                      });
                  return n.ok() && *n > 0;
                },
                absl::Seconds(20)));
            fs::remove_all(ArtifactDir());
            return true;
          }));
  EXPECT_TRUE(removed);
  reuser.join();
  ASSERT_OK(reuse.status());
  EXPECT_FALSE(reuse->reused());
  EXPECT_EQ(reuse->state(), v1::JOB_STATE_PENDING);
  EXPECT_NE(reuse->name(), first.name());
}

}  // namespace
}  // namespace hangar::optimizer
