// PgJobStore against a real PostgreSQL: the JobStore contract, migrations
// applied twice, concurrent creates with one request id.
#include "services/optimizer/pg_job_store.h"

#include <thread>
#include <vector>

#include "common/testing/postgres_server.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::optimizer {
namespace {

using ::hangar::testing::StatusIs;

constexpr char kSha[] =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

class PgJobStoreTest : public ::hangar::testing::PostgresTest {
 protected:
  void SetUp() override {
    PostgresTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_OK_AND_ASSIGN(pool_,
                         db::Pool::Create({.conninfo = conninfo(), .size = 4}));
    ASSERT_OK(MigrateOptimizerSchema(*pool_));
    ASSERT_OK(MigrateOptimizerSchema(*pool_));  // Idempotent.
    store_ = std::make_unique<PgJobStore>(pool_.get());
  }
  static StoredJob Job(const std::string& name,
                       const std::string& model = "models/tiny",
                       v1::JobState state = v1::JOB_STATE_PENDING,
                       const std::string& slug = "ctranslate2-int8") {
    StoredJob j;
    j.job.set_name(name);
    j.job.set_model(model);
    j.job.set_state(state);
    j.job.set_source_sha256(kSha);
    j.job.mutable_recipe()->set_engine(v1::ENGINE_CTRANSLATE2);
    j.job.mutable_recipe()->set_quantization(v1::QUANTIZATION_INT8);
    j.source_path = "/models/tiny";
    j.output_path = std::string("/store/artifacts/") + kSha + "-" + slug;
    return j;
  }
  std::unique_ptr<db::Pool> pool_;
  std::unique_ptr<PgJobStore> store_;
};

TEST_F(PgJobStoreTest, CreateBindsTheRequestIdOnce) {
  ASSERT_OK_AND_ASSIGN(JobStore::Claimed c,
                       store_->CreateJob(Job("opt-1"), "r1", "fp1"));
  EXPECT_TRUE(c.created);
  ASSERT_OK_AND_ASSIGN(JobStore::Claimed again,
                       store_->CreateJob(Job("opt-2"), "r1", "fp2"));
  EXPECT_FALSE(again.created);
  EXPECT_EQ(again.job.job.name(), "opt-1");
  EXPECT_EQ(again.fingerprint, "fp1");
  EXPECT_THAT(store_->GetJob("opt-2"), StatusIs(absl::StatusCode::kNotFound,
                                                ::testing::HasSubstr("opt-2")));
  ASSERT_OK_AND_ASSIGN(auto found, store_->FindRequest("r1"));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->job.job.name(), "opt-1");
  ASSERT_OK_AND_ASSIGN(auto missing, store_->FindRequest("r9"));
  EXPECT_FALSE(missing.has_value());
  // A second id bound to the same job.
  ASSERT_OK_AND_ASSIGN(JobStore::Claimed bound,
                       store_->BindRequest("r2", "fp1", "opt-1"));
  EXPECT_TRUE(bound.created);
  ASSERT_OK_AND_ASSIGN(bound, store_->BindRequest("r2", "fpX", "opt-1"));
  EXPECT_FALSE(bound.created);
  EXPECT_EQ(bound.fingerprint, "fp1");
  EXPECT_THAT(store_->BindRequest("r3", "fp", "opt-missing"),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST_F(PgJobStoreTest, ConcurrentCreatesWithOneIdMakeOneJob) {
  std::vector<std::thread> threads;
  std::vector<absl::StatusOr<JobStore::Claimed>> results(
      4, absl::UnknownError("unset"));
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      results[size_t(i)] =
          store_->CreateJob(Job("opt-" + std::to_string(i)), "r", "fp");
    });
  }
  for (auto& t : threads) t.join();
  int created = 0;
  std::string name;
  for (const auto& r : results) {
    if (!r.ok()) continue;  // An aborted racer; the caller retries.
    created += r->created;
    if (name.empty()) name = r->job.job.name();
    EXPECT_EQ(r->job.job.name(), name);
  }
  EXPECT_EQ(created, 1);
  ASSERT_OK_AND_ASSIGN(JobPage page, store_->ListJobs({}, "", 10));
  EXPECT_EQ(page.jobs.size(), 1u);
}

TEST_F(PgJobStoreTest, UpdateListAndUnfinished) {
  ASSERT_OK(store_->CreateJob(Job("opt-1"), "r1", "f").status());
  ASSERT_OK(store_
                ->CreateJob(Job("opt-2", "models/other", v1::JOB_STATE_PENDING,
                                "vllm-fp8"),
                            "r2", "f")
                .status());
  ASSERT_OK(store_->CreateJob(Job("opt-3"), "r3", "f").status());
  StoredJob j = Job("opt-1", "models/tiny", v1::JOB_STATE_SUCCEEDED);
  j.job.set_scheduler_job("job-7");
  j.job.mutable_quality()->set_max_abs_logit_error(0.5);
  ASSERT_OK(store_->UpdateJob(j));
  ASSERT_OK_AND_ASSIGN(StoredJob got, store_->GetJob("opt-1"));
  EXPECT_EQ(got.job.scheduler_job(), "job-7");
  EXPECT_EQ(got.job.quality().max_abs_logit_error(), 0.5);
  EXPECT_EQ(got.source_path, "/models/tiny");
  EXPECT_THAT(store_->UpdateJob(Job("opt-9")),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));

  ASSERT_OK_AND_ASSIGN(JobPage tiny,
                       store_->ListJobs({.model = "models/tiny"}, "", 1));
  ASSERT_EQ(tiny.jobs.size(), 1u);
  EXPECT_EQ(tiny.jobs[0].job.name(), "opt-1");
  EXPECT_TRUE(tiny.more);
  ASSERT_OK_AND_ASSIGN(tiny,
                       store_->ListJobs({.model = "models/tiny"}, "opt-1", 1));
  ASSERT_EQ(tiny.jobs.size(), 1u);
  EXPECT_EQ(tiny.jobs[0].job.name(), "opt-3");
  EXPECT_FALSE(tiny.more);
  ASSERT_OK_AND_ASSIGN(
      JobPage done,
      store_->ListJobs({.state = v1::JOB_STATE_SUCCEEDED}, "", 10));
  ASSERT_EQ(done.jobs.size(), 1u);

  ASSERT_OK_AND_ASSIGN(auto unfinished, store_->ListUnfinishedJobs());
  ASSERT_EQ(unfinished.size(), 2u);
  EXPECT_EQ(unfinished[0].job.name(), "opt-2");
  ASSERT_OK_AND_ASSIGN(auto same,
                       store_->FindUnfinishedJob(kSha, "ctranslate2-int8"));
  ASSERT_TRUE(same.has_value());
  EXPECT_EQ(same->job.name(), "opt-3");
  ASSERT_OK_AND_ASSIGN(auto none,
                       store_->FindUnfinishedJob(kSha, "vllm-float16"));
  EXPECT_FALSE(none.has_value());
}

TEST_F(PgJobStoreTest, ArtifactsByKeyAndNewestFirst) {
  for (int i = 1; i <= 3; ++i) {
    v1::Artifact a;
    a.set_name("art-" + std::to_string(i));
    a.set_model(i == 2 ? "models/other" : "models/tiny");
    a.set_source_sha256(kSha);
    a.set_path("/store/a" + std::to_string(i));
    a.set_size_bytes(100 * i);
    ASSERT_OK(store_->PutArtifact(a, "recipe-" + std::to_string(i)));
  }
  ASSERT_OK_AND_ASSIGN(auto found, store_->FindArtifact(kSha, "recipe-2"));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->path(), "/store/a2");
  ASSERT_OK_AND_ASSIGN(auto missing, store_->FindArtifact(kSha, "recipe-9"));
  EXPECT_FALSE(missing.has_value());
  ASSERT_OK_AND_ASSIGN(ArtifactPage page, store_->ListArtifacts("", "", 2));
  ASSERT_EQ(page.artifacts.size(), 2u);
  EXPECT_EQ(page.artifacts[0].name(), "art-3");
  EXPECT_EQ(page.artifacts[1].name(), "art-2");
  EXPECT_TRUE(page.more);
  ASSERT_OK_AND_ASSIGN(page, store_->ListArtifacts("", "art-2", 2));
  ASSERT_EQ(page.artifacts.size(), 1u);
  EXPECT_EQ(page.artifacts[0].name(), "art-1");
  ASSERT_OK_AND_ASSIGN(page, store_->ListArtifacts("models/other", "", 10));
  ASSERT_EQ(page.artifacts.size(), 1u);
}

}  // namespace
}  // namespace hangar::optimizer
