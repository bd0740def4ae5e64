// The reconciler's state machine with the in-memory store, fakes of the
// catalog, optimizer and scheduler clients that count calls, the Deployments
// domain for the API side, and the fake clock (no database, no gRPC).
#include "services/deployment/reconciler.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/api/time.h"
#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/deployment/deployments.h"
#include "services/deployment/testing/fake_clients.h"
#include "services/deployment/testing/fake_facts.h"
#include "services/deployment/testing/in_memory_deployment_store.h"

namespace hangar::deployment {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kModel[] = "Org/Tiny";
constexpr char kOffering[] = "t4-1x";
constexpr int64_t kPrice = 1'128'000;

class RecordingSink final : public DeploymentEventSink {
 public:
  void OnDeploymentStateChanged(const v1::Deployment& deployment) override {
    absl::MutexLock lock(&mu_);
    events_.push_back(absl::StrCat(deployment.name(), " ",
                                   v1::DeploymentState_Name(deployment.state()),
                                   " ", deployment.serving_revision()));
  }
  std::vector<std::string> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> events_ ABSL_GUARDED_BY(mu_);
};

class ReconcilerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ModelFacts model;
    model.ready = true;
    model.context_length = 512;
    model.license = "mit";
    model.recipes["ENGINE_NONE"] = {.weight_bytes = 1 << 20,
                                    .kv_bytes_per_sequence = 1 << 10};
    model.recipes["ENGINE_CTRANSLATE2/QUANTIZATION_INT8"] = {
        .weight_bytes = 1 << 18, .kv_bytes_per_sequence = 1 << 10};
    models_.Set(kModel, model);
    OfferingFacts offering;
    offering.gpu_count = 1;
    offering.gpu_memory_bytes = int64_t{16} << 30;
    offering.hourly_price_micros = kPrice;
    offerings_.Set(kOffering, offering);
    auto deployments = Deployments::Create(
        {.gateway_endpoint = "gw:1",
         .on_change =
             [this](const std::string& name) { woken_.push_back(name); },
         .store = &store_,
         .models = &models_,
         .offerings = &offerings_,
         .notifier = &notifier_,
         .clock = &clock_});
    ASSERT_TRUE(deployments.ok()) << deployments.status();
    deployments_ = *std::move(deployments);
    reconciler_ = NewReconciler("r1");
  }

  std::unique_ptr<Reconciler> NewReconciler(const std::string& owner,
                                            int max_context_length = 8192) {
    auto reconciler =
        Reconciler::Create({.owner = owner,
                            .drain_seconds = 0,
                            .max_context_length = max_context_length,
                            .store = &store_,
                            .catalog = &catalog_,
                            .optimizer = &optimizer_,
                            .scheduler = &scheduler_,
                            .models = &models_,
                            .offerings = &offerings_,
                            .notifier = &notifier_,
                            .events = &sink_,
                            .clock = &clock_});
    EXPECT_TRUE(reconciler.ok()) << reconciler.status();
    return reconciler.ok() ? *std::move(reconciler) : nullptr;
  }

  v1::DeploymentSpec Spec(bool int8, int min_replicas = 1) {
    v1::DeploymentSpec spec;
    spec.set_model(kModel);
    spec.set_hardware(kOffering);
    spec.set_min_replicas(min_replicas);
    spec.set_max_replicas(std::max(1, min_replicas) + 1);
    spec.set_inference_batch_size(4);
    spec.set_scale_up_delay_seconds(7);
    spec.set_scale_down_delay_seconds(70);
    if (int8) {
      spec.mutable_optimization()->set_engine(v1::ENGINE_CTRANSLATE2);
      spec.mutable_optimization()->set_quantization(v1::QUANTIZATION_INT8);
    } else {
      spec.mutable_optimization()->set_engine(v1::ENGINE_NONE);
    }
    absl::StatusOr<v1::ValidateDeploymentResponse> review =
        deployments_->Validate(spec);
    EXPECT_TRUE(review.ok() && review->valid())
        << (review.ok() ? review->DebugString() : review.status().ToString());
    spec.set_accept_terms(true);
    spec.set_accepted_terms_sha256(review->terms_sha256());
    return spec;
  }

  v1::Deployment Create(bool int8, const std::string& id = "c1",
                        int min_replicas = 1) {
    v1::CreateDeploymentRequest request;
    request.set_request_id(id);
    *request.mutable_spec() = Spec(int8, min_replicas);
    absl::StatusOr<v1::Deployment> created =
        deployments_->CreateDeployment(request);
    EXPECT_TRUE(created.ok()) << created.status();
    return *created;
  }

  v1::Deployment Redeploy(const std::string& name, bool int8,
                          const std::string& id) {
    v1::RedeployRequest request;
    request.set_name(name);
    request.set_etag(Get(name).etag());
    request.set_request_id(id);
    *request.mutable_spec() = Spec(int8);
    // A change, so the revision differs from the last.
    request.mutable_spec()->mutable_sampling()->set_temperature(
        0.1f * static_cast<float>(id.size()));
    absl::StatusOr<v1::Deployment> redeployed = deployments_->Redeploy(request);
    EXPECT_TRUE(redeployed.ok()) << redeployed.status();
    return *redeployed;
  }

  v1::Deployment Get(const std::string& name) {
    absl::StatusOr<v1::Deployment> deployment = store_.Get(name);
    EXPECT_TRUE(deployment.ok()) << deployment.status();
    return *deployment;
  }
  v1::Revision Revision(const std::string& name, int64_t number) {
    absl::StatusOr<v1::Revision> revision = store_.GetRevision(name, number);
    EXPECT_TRUE(revision.ok()) << revision.status();
    return *revision;
  }

  // Passes until the state stops changing (at most 10).
  v1::Deployment Settle(Reconciler* reconciler = nullptr) {
    if (reconciler == nullptr) reconciler = reconciler_.get();
    for (int i = 0; i < 10; ++i) {
      std::vector<v1::Deployment> before = All();
      EXPECT_TRUE(reconciler->ReconcileAll().ok());
      if (SameStates(before, All())) break;
    }
    return All().empty() ? v1::Deployment() : All().front();
  }
  std::vector<v1::Deployment> All() {
    return *store_.List({.show_deleted = true}, "", 1000);
  }
  static bool SameStates(const std::vector<v1::Deployment>& a,
                         const std::vector<v1::Deployment>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i].etag() != b[i].etag()) return false;
    }
    return true;
  }

  std::string JobOf(const std::string& name, int64_t revision) {
    auto job = optimizer_.JobFor(OptimizationRequestId(name, revision));
    return job.has_value() ? job->name() : "";
  }

  // Create (int8) and drive to DEPLOYED with revision 1 serving.
  v1::Deployment Deployed(bool int8 = false, const std::string& id = "c1") {
    v1::Deployment d = Create(int8, id);
    Settle();
    if (int8) {
      optimizer_.Succeed(JobOf(d.name(), 1), "/artifacts/" + id);
      Settle();
    }
    scheduler_.MakeReady(d.name(), 1);
    Settle();
    EXPECT_EQ(Get(d.name()).state(), v1::DEPLOYMENT_STATE_DEPLOYED);
    return Get(d.name());
  }

  absl::Status Delete(const std::string& name, bool force) {
    v1::DeleteDeploymentRequest request;
    request.set_name(name);
    request.set_force(force);
    return deployments_->Delete(request).status();
  }
  absl::Status Undeploy(const std::string& name) {
    v1::UndeployDeploymentRequest request;
    request.set_name(name);
    return deployments_->Undeploy(request).status();
  }

  testing::InMemoryDeploymentStore store_;
  testing::FakeModelFacts models_;
  testing::FakeOfferingFacts offerings_;
  testing::FakeCatalogClient catalog_;
  testing::FakeOptimizerClient optimizer_;
  testing::FakeSchedulerClient scheduler_;
  RecordingSink sink_;
  ChangeNotifier notifier_;
  hangar::testing::FakeClock clock_;
  std::vector<std::string> woken_;
  std::unique_ptr<Deployments> deployments_;
  std::unique_ptr<Reconciler> reconciler_;
};

TEST(ReconcilerOptionsTest, CreateValidatesOptions) {
  testing::InMemoryDeploymentStore store;
  testing::FakeCatalogClient catalog;
  testing::FakeOptimizerClient optimizer;
  testing::FakeSchedulerClient scheduler;
  testing::FakeModelFacts models;
  testing::FakeOfferingFacts offerings;
  ChangeNotifier notifier;
  Reconciler::Options good{.owner = "r",
                           .store = &store,
                           .catalog = &catalog,
                           .optimizer = &optimizer,
                           .scheduler = &scheduler,
                           .models = &models,
                           .offerings = &offerings,
                           .notifier = &notifier};
  EXPECT_TRUE(Reconciler::Create(good).ok());
  auto bad = [&](auto change) {
    Reconciler::Options options = good;
    change(options);
    return Reconciler::Create(options).status().code();
  };
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(bad([](auto& o) { o.owner = ""; }), kInvalid);
  EXPECT_EQ(bad([](auto& o) { o.lease_duration = absl::ZeroDuration(); }),
            kInvalid);
  EXPECT_EQ(bad([](auto& o) { o.resync_interval = absl::ZeroDuration(); }),
            kInvalid);
  EXPECT_EQ(bad([](auto& o) { o.active_interval = -absl::Seconds(1); }),
            kInvalid);
  EXPECT_EQ(bad([](auto& o) { o.active_interval = absl::Minutes(1); }),
            kInvalid);
  EXPECT_EQ(bad([](auto& o) { o.drain_seconds = 3601; }), kInvalid);
  EXPECT_EQ(bad([](auto& o) { o.threads_per_replica = 0; }), kInvalid);
  EXPECT_EQ(bad([](auto& o) { o.max_context_length = 0; }), kInvalid);
  EXPECT_EQ(bad([](auto& o) { o.scheduler = nullptr; }), kInvalid);
  EXPECT_EQ(bad([](auto& o) { o.clock = nullptr; }), kInvalid);
}

TEST_F(ReconcilerTest, Int8DeploymentGoesThroughEveryState) {
  v1::Preparation downloading;
  downloading.set_state(v1::PREPARATION_STATE_DOWNLOADING);
  downloading.mutable_progress()->set_done(10);
  downloading.mutable_progress()->set_total(100);
  downloading.mutable_progress()->set_message("downloading model.safetensors");
  catalog_.SetPreparation(kModel, downloading);
  const v1::Deployment created = Create(/*int8=*/true);
  EXPECT_THAT(woken_, ElementsAre(created.name()));
  const std::string name = created.name();

  ASSERT_TRUE(reconciler_->ReconcileOne(name).ok());
  v1::Deployment d = Get(name);
  EXPECT_EQ(d.state(), v1::DEPLOYMENT_STATE_FETCHING);
  EXPECT_EQ(d.progress().done(), 10);
  EXPECT_EQ(d.progress().total(), 100);
  EXPECT_EQ(d.state_reason(), "downloading model.safetensors");
  EXPECT_EQ(optimizer_.jobs_created(), 0);

  catalog_.SetPreparation(kModel, [] {
    v1::Preparation p;
    p.set_state(v1::PREPARATION_STATE_PREPARED);
    p.set_local_path("/store/tiny");
    p.set_sha256("abc");
    return p;
  }());
  ASSERT_TRUE(reconciler_->ReconcileOne(name).ok());
  d = Get(name);
  EXPECT_EQ(d.state(), v1::DEPLOYMENT_STATE_OPTIMIZING);
  const std::string job = JobOf(name, 1);
  ASSERT_FALSE(job.empty());
  EXPECT_EQ(optimizer_.last_source_path(), "/store/tiny");
  EXPECT_EQ(Revision(name, 1).optimization_job(), job);
  EXPECT_EQ(Revision(name, 1).source_sha256(), "abc");
  EXPECT_THAT(d.state_reason(), HasSubstr("waiting"));

  optimizer_.Progress(job, 3, 12);
  ASSERT_TRUE(reconciler_->ReconcileOne(name).ok());
  d = Get(name);
  EXPECT_EQ(d.state(), v1::DEPLOYMENT_STATE_OPTIMIZING);
  EXPECT_EQ(d.progress().done(), 3);
  EXPECT_EQ(d.progress().total(), 12);

  optimizer_.Succeed(job, "/artifacts/a1");
  ASSERT_TRUE(reconciler_->ReconcileOne(name).ok());
  d = Get(name);
  EXPECT_EQ(d.state(), v1::DEPLOYMENT_STATE_DEPLOYING);
  EXPECT_EQ(d.serving_revision(), 0);
  EXPECT_EQ(Revision(name, 1).artifact(), "/artifacts/a1");
  auto set = scheduler_.Set(name, 1);
  ASSERT_TRUE(set.has_value());
  const v1::ReplicaSetSpec& spec = set->spec();
  EXPECT_EQ(spec.artifact_path(), "/artifacts/a1");
  EXPECT_EQ(spec.hardware(), kOffering);
  EXPECT_EQ(spec.min_replicas(), 1);
  EXPECT_EQ(spec.max_replicas(), 2);
  EXPECT_EQ(spec.scale_up_delay_seconds(), 7);
  EXPECT_EQ(spec.scale_down_delay_seconds(), 70);
  EXPECT_EQ(spec.inference_batch_size(), 4);
  EXPECT_EQ(spec.context_length(), 512);
  EXPECT_EQ(spec.recipe().quantization(), v1::QUANTIZATION_INT8);
  EXPECT_TRUE(spec.serving());
  EXPECT_EQ(d.hourly_cost().micros(), kPrice);  // One replica starting.

  scheduler_.MakeReady(name, 1);
  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(reconciler_->ReconcileOne(name).ok());
  d = Get(name);
  EXPECT_EQ(d.state(), v1::DEPLOYMENT_STATE_DEPLOYED);
  EXPECT_EQ(d.serving_revision(), 1);
  EXPECT_EQ(d.ready_replicas(), 1);
  EXPECT_FALSE(d.has_progress());
  EXPECT_EQ(FromProtoTimestamp(Revision(name, 1).ready_time()), clock_.Now());
  EXPECT_EQ(Revision(name, 1).state(), v1::DEPLOYMENT_STATE_DEPLOYED);

  // Settled: more passes change nothing and make no calls.
  const std::string etag = Get(name).etag();
  ASSERT_TRUE(reconciler_->ReconcileOne(name).ok());
  EXPECT_EQ(Get(name).etag(), etag);
  EXPECT_EQ(scheduler_.creations(name, 1), 1);
  EXPECT_EQ(optimizer_.creates(OptimizationRequestId(name, 1)), 1);
  EXPECT_THAT(sink_.events(),
              ElementsAre(name + " DEPLOYMENT_STATE_FETCHING 0",
                          name + " DEPLOYMENT_STATE_OPTIMIZING 0",
                          name + " DEPLOYMENT_STATE_DEPLOYING 0",
                          name + " DEPLOYMENT_STATE_DEPLOYED 1"));
}

TEST_F(ReconcilerTest, EngineNoneSkipsTheOptimizer) {
  const v1::Deployment d = Deployed(/*int8=*/false);
  EXPECT_EQ(optimizer_.jobs_created(), 0);
  EXPECT_EQ(Revision(d.name(), 1).artifact(), "/store/Org/Tiny");
  EXPECT_EQ(d.serving_revision(), 1);
}

TEST_F(ReconcilerTest, TheContextIsCappedByTheOption) {
  reconciler_ = NewReconciler("capped", /*max_context_length=*/256);
  const v1::Deployment d = Create(false);
  ASSERT_TRUE(reconciler_->ReconcileOne(d.name()).ok());
  ASSERT_TRUE(scheduler_.Set(d.name(), 1).has_value());
  EXPECT_EQ(scheduler_.Set(d.name(), 1)->spec().context_length(), 256);
}

TEST_F(ReconcilerTest, NoCapacityIsSchedulingWithTheReason) {
  scheduler_.SetNoCapacity(true);
  const v1::Deployment created = Create(false);
  const v1::Deployment d = Settle();
  EXPECT_EQ(d.state(), v1::DEPLOYMENT_STATE_SCHEDULING);
  EXPECT_THAT(d.state_reason(), HasSubstr("no node has a free GPU"));
  EXPECT_EQ(d.hourly_cost().micros(), 0);  // Nothing placed.
  EXPECT_EQ(created.name(), d.name());
}

TEST_F(ReconcilerTest, EveryFailureHasItsReason) {
  {
    v1::Preparation failed;
    failed.set_state(v1::PREPARATION_STATE_FAILED);
    failed.set_failure_reason("checksum mismatch");
    catalog_.SetPreparation(kModel, failed);
    const v1::Deployment d = Create(true, "fetch-fails");
    ASSERT_TRUE(reconciler_->ReconcileOne(d.name()).ok());
    EXPECT_EQ(Get(d.name()).state(), v1::DEPLOYMENT_STATE_FAILED);
    EXPECT_EQ(Get(d.name()).state_reason(),
              "catalog: preparing Org/Tiny failed: checksum mismatch");
    catalog_.SetPreparation(kModel, [] {
      v1::Preparation p;
      p.set_state(v1::PREPARATION_STATE_PREPARED);
      p.set_local_path("/store/tiny");
      return p;
    }());
  }
  {
    const v1::Deployment d = Create(true, "gate-fails");
    ASSERT_TRUE(reconciler_->ReconcileOne(d.name()).ok());
    const std::string job = JobOf(d.name(), 1);
    optimizer_.Fail(job, "quality gate failed: greedy agreement 0.2 < 0.9");
    ASSERT_TRUE(reconciler_->ReconcileOne(d.name()).ok());
    EXPECT_EQ(Get(d.name()).state(), v1::DEPLOYMENT_STATE_FAILED);
    EXPECT_EQ(Get(d.name()).state_reason(),
              absl::StrCat("optimizer job ", job,
                           ": quality gate failed: greedy agreement 0.2 < "
                           "0.9"));
    EXPECT_EQ(scheduler_.creations(d.name(), 1), 0);
  }
  {
    optimizer_.RefuseCreates(
        absl::InvalidArgumentError("job.recipe: not supported"));
    const v1::Deployment d = Create(true, "optimizer-refuses");
    ASSERT_TRUE(reconciler_->ReconcileOne(d.name()).ok());
    EXPECT_EQ(Get(d.name()).state(), v1::DEPLOYMENT_STATE_FAILED);
    EXPECT_EQ(Get(d.name()).state_reason(),
              "optimizer: job.recipe: not supported");
    optimizer_.RefuseCreates(absl::OkStatus());
  }
  {
    scheduler_.RefuseApplies(
        absl::InvalidArgumentError("spec.memory_bytes: does not fit"));
    const v1::Deployment d = Create(false, "scheduler-refuses");
    ASSERT_TRUE(reconciler_->ReconcileOne(d.name()).ok());
    EXPECT_EQ(Get(d.name()).state(), v1::DEPLOYMENT_STATE_FAILED);
    EXPECT_EQ(Get(d.name()).state_reason(),
              "scheduler: spec.memory_bytes: does not fit");
    scheduler_.RefuseApplies(absl::OkStatus());
  }
  {
    // A job cancelled behind the reconciler's back.
    const v1::Deployment d = Create(true, "cancelled");
    ASSERT_TRUE(reconciler_->ReconcileOne(d.name()).ok());
    ASSERT_TRUE(optimizer_.CancelOptimizationJob(JobOf(d.name(), 1)).ok());
    ASSERT_TRUE(reconciler_->ReconcileOne(d.name()).ok());
    EXPECT_THAT(Get(d.name()).state_reason(), HasSubstr("was cancelled"));
  }
}

TEST_F(ReconcilerTest, AnUnreachableDependencyIsRetriedNotFailed) {
  catalog_.SetDown(true);
  const v1::Deployment d = Create(true);
  ASSERT_TRUE(reconciler_->ReconcileOne(d.name()).ok());
  EXPECT_EQ(Get(d.name()).state(), v1::DEPLOYMENT_STATE_PENDING);
  EXPECT_THAT(Get(d.name()).state_reason(),
              HasSubstr("retrying: UNAVAILABLE: catalog (fake): down"));
  catalog_.SetDown(false);
  optimizer_.SetDown(true);
  ASSERT_TRUE(reconciler_->ReconcileOne(d.name()).ok());
  EXPECT_EQ(Get(d.name()).state(), v1::DEPLOYMENT_STATE_OPTIMIZING);
  EXPECT_THAT(Get(d.name()).state_reason(), HasSubstr("optimizer (fake)"));
  optimizer_.SetDown(false);
  ASSERT_TRUE(reconciler_->ReconcileOne(d.name()).ok());
  optimizer_.Succeed(JobOf(d.name(), 1), "/a");
  scheduler_.SetDown(true);
  EXPECT_FALSE(reconciler_->ReconcileOne(d.name()).ok());  // Can't list.
  scheduler_.SetDown(false);
  scheduler_.SetAutoReady(true);
  EXPECT_EQ(Settle().state(), v1::DEPLOYMENT_STATE_DEPLOYED);
  EXPECT_EQ(optimizer_.jobs_created(), 1);
}

// Kill the reconciler at every step: right after each call and before it
// records the outcome (the store refuses the write), then a new reconciler
// over the same store converges with one job and one replica set.
TEST_F(ReconcilerTest, CrashAfterEachCallConvergesWithoutDuplicates) {
  const v1::Deployment d = Create(true);
  const std::string name = d.name();
  // Crash 1: the job is made, its name never recorded.
  optimizer_.OnCreate([this] { store_.SetDown(true); });
  EXPECT_FALSE(reconciler_->ReconcileOne(name).ok());
  store_.SetDown(false);
  optimizer_.OnCreate(nullptr);
  reconciler_.reset();
  EXPECT_EQ(Get(name).state(), v1::DEPLOYMENT_STATE_PENDING);
  EXPECT_EQ(optimizer_.jobs_created(), 1);

  auto second = NewReconciler("r2");
  clock_.Advance(absl::Minutes(1));  // r1's lease has expired.
  ASSERT_TRUE(second->ReconcileOne(name).ok());
  EXPECT_EQ(Get(name).state(), v1::DEPLOYMENT_STATE_OPTIMIZING);
  EXPECT_EQ(Revision(name, 1).optimization_job(), JobOf(name, 1));
  EXPECT_EQ(optimizer_.jobs_created(), 1);
  EXPECT_EQ(optimizer_.creates(OptimizationRequestId(name, 1)), 2);

  // Crash 2: the set is applied, the state never recorded.
  optimizer_.Succeed(JobOf(name, 1), "/a");
  scheduler_.OnApply([this] { store_.SetDown(true); });
  EXPECT_FALSE(second->ReconcileOne(name).ok());
  store_.SetDown(false);
  scheduler_.OnApply(nullptr);
  second.reset();
  EXPECT_EQ(Get(name).state(), v1::DEPLOYMENT_STATE_OPTIMIZING);

  // Crash 3: a process dies while DEPLOYING (between passes).
  auto third = NewReconciler("r3");
  clock_.Advance(absl::Minutes(1));
  ASSERT_TRUE(third->ReconcileOne(name).ok());
  EXPECT_EQ(Get(name).state(), v1::DEPLOYMENT_STATE_DEPLOYING);
  third.reset();

  scheduler_.MakeReady(name, 1);
  auto fourth = NewReconciler("r4");
  clock_.Advance(absl::Minutes(1));
  Settle(fourth.get());
  EXPECT_EQ(Get(name).state(), v1::DEPLOYMENT_STATE_DEPLOYED);
  EXPECT_EQ(scheduler_.creations(name, 1), 1);
  EXPECT_EQ(optimizer_.jobs_created(), 1);
  // Crash 4: after DEPLOYED, a new one changes nothing.
  fourth.reset();
  const std::string etag = Get(name).etag();
  auto fifth = NewReconciler("r5");
  clock_.Advance(absl::Minutes(1));
  Settle(fifth.get());
  EXPECT_EQ(Get(name).etag(), etag);
  EXPECT_EQ(scheduler_.creations(name, 1), 1);
}

TEST_F(ReconcilerTest, RedeployComesUpBesideTheOldAndTakesOver) {
  const v1::Deployment first = Deployed(true);
  const std::string name = first.name();
  Redeploy(name, true, "r2");
  Settle();
  EXPECT_EQ(Get(name).state(), v1::DEPLOYMENT_STATE_OPTIMIZING);
  EXPECT_EQ(Get(name).serving_revision(), 1);
  optimizer_.Succeed(JobOf(name, 2), "/artifacts/r2");
  Settle();
  v1::Deployment d = Get(name);
  EXPECT_EQ(d.state(), v1::DEPLOYMENT_STATE_DEPLOYING);
  EXPECT_EQ(d.serving_revision(), 1);
  ASSERT_TRUE(scheduler_.Set(name, 2).has_value());
  EXPECT_FALSE(scheduler_.Set(name, 2)->spec().serving());
  EXPECT_TRUE(scheduler_.Set(name, 1)->spec().serving());
  EXPECT_EQ(d.hourly_cost().micros(), 2 * kPrice);  // Both hold GPUs.

  scheduler_.MakeReady(name, 2);
  clock_.Advance(absl::Seconds(3));
  Settle();
  d = Get(name);
  EXPECT_EQ(d.state(), v1::DEPLOYMENT_STATE_DEPLOYED);
  EXPECT_EQ(d.serving_revision(), 2);
  EXPECT_TRUE(scheduler_.Set(name, 2)->spec().serving());
  EXPECT_FALSE(scheduler_.Set(name, 1).has_value());
  EXPECT_EQ(scheduler_.deletions(name, 1), 1);
  EXPECT_EQ(FromProtoTimestamp(Revision(name, 1).retire_time()), clock_.Now());
  EXPECT_EQ(FromProtoTimestamp(Revision(name, 2).ready_time()), clock_.Now());
  EXPECT_THAT(Revision(name, 1).state_reason(),
              HasSubstr("replaced by revision 2"));
  EXPECT_EQ(d.hourly_cost().micros(), kPrice);
  // The retired revision gives up its artifact; the serving one keeps its.
  EXPECT_THAT(optimizer_.released(), ElementsAre(name + "-r1-opt"));
}

TEST_F(ReconcilerTest, AFailedRedeployLeavesTheOldRevisionServing) {
  const std::string name = Deployed(true).name();
  Redeploy(name, true, "r2");
  Settle();
  optimizer_.Fail(JobOf(name, 2), "quality gate failed: kl 3.0 > 0.1");
  Settle();
  const v1::Deployment d = Get(name);
  EXPECT_EQ(d.state(), v1::DEPLOYMENT_STATE_FAILED);
  EXPECT_EQ(d.serving_revision(), 1);
  EXPECT_THAT(d.state_reason(), HasSubstr("revision 2 failed: optimizer job"));
  EXPECT_THAT(d.state_reason(), HasSubstr("revision 1 still serves"));
  ASSERT_TRUE(scheduler_.Set(name, 1).has_value());
  EXPECT_TRUE(scheduler_.Set(name, 1)->spec().serving());
  EXPECT_FALSE(scheduler_.Set(name, 2).has_value());
  // A failed revision that got as far as its replicas releases them.
  Redeploy(name, false, "r3");
  scheduler_.RefuseApplies(absl::OkStatus());
  Settle();
  ASSERT_TRUE(scheduler_.Set(name, 3).has_value());
  // Deleting without force refuses: revision 1 serves.
  EXPECT_EQ(Delete(name, false).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(ReconcilerTest, ReplicasNeverReadyFailTheRevisionAtTheDeployTimeout) {
  // Revision 1, nothing serving: two replicas that never become READY.
  const std::string name = Create(false, "c1", 2).name();
  Settle();
  ASSERT_EQ(Get(name).state(), v1::DEPLOYMENT_STATE_DEPLOYING);
  clock_.Advance(absl::Minutes(10) - absl::Seconds(1));
  Settle();
  EXPECT_EQ(Get(name).state(), v1::DEPLOYMENT_STATE_DEPLOYING);
  clock_.Advance(absl::Seconds(1));
  Settle();
  v1::Deployment d = Get(name);
  EXPECT_EQ(d.state(), v1::DEPLOYMENT_STATE_FAILED);
  EXPECT_EQ(d.state_reason(),
            "deploy_timeout: 0 of 2 replicas READY after 10m (replicas: 2 "
            "REPLICA_STATE_STARTING)");
  EXPECT_EQ(Revision(name, 1).state(), v1::DEPLOYMENT_STATE_FAILED);
  EXPECT_FALSE(scheduler_.Set(name, 1).has_value());  // Released.
  EXPECT_EQ(scheduler_.deletions(name, 1), 1);

  // A redeploy that never gets READY fails the same way; the serving
  // revision keeps serving. Time waiting for GPUs does not count.
  const std::string other = Deployed(false, "c2").name();
  scheduler_.SetNoCapacity(true);
  Redeploy(other, false, "r2");
  Settle();
  ASSERT_EQ(Get(other).state(), v1::DEPLOYMENT_STATE_SCHEDULING);
  clock_.Advance(absl::Minutes(30));
  Settle();
  ASSERT_EQ(Get(other).state(), v1::DEPLOYMENT_STATE_SCHEDULING);
  ASSERT_TRUE(scheduler_.DeleteReplicaSet(other, 2, 0).ok());
  scheduler_.SetNoCapacity(false);
  Settle();
  ASSERT_EQ(Get(other).state(), v1::DEPLOYMENT_STATE_DEPLOYING);
  clock_.Advance(absl::Minutes(10));
  Settle();
  d = Get(other);
  EXPECT_EQ(d.state(), v1::DEPLOYMENT_STATE_FAILED);
  EXPECT_EQ(d.serving_revision(), 1);
  EXPECT_THAT(
      d.state_reason(),
      HasSubstr("revision 2 failed: deploy_timeout: 0 of 1 replicas "
                "READY after 10m (replicas: 1 REPLICA_STATE_STARTING)"));
  EXPECT_THAT(d.state_reason(), HasSubstr("revision 1 still serves"));
  ASSERT_TRUE(scheduler_.Set(other, 1).has_value());
  EXPECT_TRUE(scheduler_.Set(other, 1)->spec().serving());
  EXPECT_FALSE(scheduler_.Set(other, 2).has_value());
}

TEST_F(ReconcilerTest, DeployTimeoutMustBePositive) {
  auto reconciler = Reconciler::Create({.owner = "r",
                                        .deploy_timeout = absl::ZeroDuration(),
                                        .store = &store_,
                                        .catalog = &catalog_,
                                        .optimizer = &optimizer_,
                                        .scheduler = &scheduler_,
                                        .models = &models_,
                                        .offerings = &offerings_,
                                        .notifier = &notifier_,
                                        .clock = &clock_});
  EXPECT_EQ(reconciler.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reconciler.status().message(), HasSubstr("deploy_timeout"));
}

TEST_F(ReconcilerTest, ARedeployInFlightIsSuperseded) {
  const std::string name = Deployed(false).name();
  Redeploy(name, true, "r2");
  Settle();
  const std::string job2 = JobOf(name, 2);
  ASSERT_FALSE(job2.empty());
  Redeploy(name, false, "r3x");  // Supersedes revision 2 mid-optimization.
  Settle();
  EXPECT_THAT(optimizer_.cancelled(), ElementsAre(job2));
  EXPECT_THAT(optimizer_.released(), ElementsAre(name + "-r2-opt"));
  EXPECT_EQ(Revision(name, 2).state(), v1::DEPLOYMENT_STATE_FAILED);
  EXPECT_EQ(Revision(name, 2).state_reason(), "superseded by revision 3");
  EXPECT_EQ(Get(name).state(), v1::DEPLOYMENT_STATE_DEPLOYING);
  // Revision 3 reaches its replicas; a fourth supersedes it there.
  ASSERT_TRUE(scheduler_.Set(name, 3).has_value());
  Redeploy(name, false, "r4xx");
  Settle();
  EXPECT_FALSE(scheduler_.Set(name, 3).has_value());
  EXPECT_EQ(Revision(name, 3).state_reason(), "superseded by revision 4");
  scheduler_.MakeReady(name, 4);
  Settle();
  EXPECT_EQ(Get(name).serving_revision(), 4);
  EXPECT_EQ(scheduler_.set_count(name), 1);
}

TEST_F(ReconcilerTest, UndeployReleasesEverythingAndRedeployServesAgain) {
  const std::string name = Deployed(false).name();
  ASSERT_TRUE(Undeploy(name).ok());
  v1::Deployment d = Get(name);
  EXPECT_EQ(d.state(), v1::DEPLOYMENT_STATE_UNDEPLOYED);
  EXPECT_EQ(d.serving_revision(), 0);
  ASSERT_TRUE(Undeploy(name).ok());  // Twice: the same answer.
  Settle();
  EXPECT_EQ(scheduler_.set_count(name), 0);
  EXPECT_TRUE(Revision(name, 1).has_retire_time());
  EXPECT_EQ(Get(name).state(), v1::DEPLOYMENT_STATE_UNDEPLOYED);
  EXPECT_EQ(Get(name).hourly_cost().micros(), 0);

  Redeploy(name, false, "again");
  scheduler_.SetAutoReady(true);
  Settle();
  d = Get(name);
  EXPECT_EQ(d.state(), v1::DEPLOYMENT_STATE_DEPLOYED);
  EXPECT_EQ(d.serving_revision(), 2);
  EXPECT_TRUE(scheduler_.Set(name, 2)->spec().serving());
  EXPECT_THAT(sink_.events(),
              ::testing::Contains(name + " DEPLOYMENT_STATE_DEPLOYED 2"));
}

TEST_F(ReconcilerTest, DeleteConvergesFromEveryState) {
  struct Case {
    const char* label;
    std::function<std::string()> reach;
    bool needs_force;
  };
  std::vector<Case> cases = {
      {"pending", [&] { return Create(true, "d-pending").name(); }, true},
      {"fetching",
       [&] {
         v1::Preparation downloading;
         downloading.set_state(v1::PREPARATION_STATE_DOWNLOADING);
         catalog_.SetPreparation(kModel, downloading);
         std::string n = Create(true, "d-fetching").name();
         EXPECT_TRUE(reconciler_->ReconcileOne(n).ok());
         catalog_.SetPreparation(kModel, [] {
           v1::Preparation p;
           p.set_state(v1::PREPARATION_STATE_PREPARED);
           p.set_local_path("/store/tiny");
           return p;
         }());
         return n;
       },
       true},
      {"optimizing",
       [&] {
         std::string n = Create(true, "d-optimizing").name();
         EXPECT_TRUE(reconciler_->ReconcileOne(n).ok());
         return n;
       },
       true},
      {"deploying",
       [&] {
         std::string n = Create(false, "d-deploying").name();
         EXPECT_TRUE(reconciler_->ReconcileOne(n).ok());
         return n;
       },
       true},
      {"deployed", [&] { return Deployed(false, "d-deployed").name(); }, true},
      {"failed",
       [&] {
         scheduler_.RefuseApplies(absl::InvalidArgumentError("no"));
         std::string n = Create(false, "d-failed").name();
         EXPECT_TRUE(reconciler_->ReconcileOne(n).ok());
         scheduler_.RefuseApplies(absl::OkStatus());
         return n;
       },
       false},
      {"undeployed",
       [&] {
         std::string n = Deployed(false, "d-undeployed").name();
         EXPECT_TRUE(Undeploy(n).ok());
         return n;
       },
       false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    const std::string name = c.reach();
    v1::CreateApiKeyRequest key;
    key.set_deployment(name);
    key.set_display_name("k");
    key.set_request_id(absl::StrCat("key-", c.label));
    ASSERT_TRUE(deployments_->CreateApiKey(key).ok());
    const std::string job = JobOf(name, 1);
    if (c.needs_force) {
      EXPECT_EQ(Delete(name, false).code(),
                absl::StatusCode::kFailedPrecondition);
    }
    ASSERT_TRUE(Delete(name, c.needs_force).ok());
    EXPECT_EQ(Get(name).state(), v1::DEPLOYMENT_STATE_DELETING);
    EXPECT_EQ(*store_.CountActiveApiKeys(name), 0);
    ASSERT_TRUE(Delete(name, false).ok());  // Again: the same answer.
    for (int i = 0; i < 3; ++i)
      ASSERT_TRUE(reconciler_->ReconcileOne(name).ok());
    EXPECT_EQ(Get(name).state(), v1::DEPLOYMENT_STATE_DELETED);
    EXPECT_EQ(scheduler_.set_count(name), 0);
    if (std::string(c.label) == "optimizing") {
      EXPECT_THAT(optimizer_.cancelled(), ::testing::Contains(job));
      EXPECT_EQ(Revision(name, 1).state(), v1::DEPLOYMENT_STATE_FAILED);
    }
    EXPECT_EQ(store_.LeaseOwner(name), "");  // Let go once DELETED.
  }
}

TEST_F(ReconcilerTest, TwoReconcilersNeverDriveOneDeploymentAtOnce) {
  auto other = NewReconciler("r2");
  const std::string name = Create(true).name();
  ASSERT_TRUE(reconciler_->ReconcileOne(name).ok());
  EXPECT_EQ(store_.LeaseOwner(name), "r1");
  const int catalog_calls = catalog_.calls();
  const std::string etag = Get(name).etag();
  // r2 finds the lease taken: no call, no write.
  ASSERT_TRUE(other->ReconcileOne(name).ok());
  EXPECT_EQ(catalog_.calls(), catalog_calls);
  EXPECT_EQ(Get(name).etag(), etag);
  // r1 keeps it while it renews ...
  clock_.Advance(absl::Seconds(20));
  ASSERT_TRUE(reconciler_->ReconcileOne(name).ok());
  clock_.Advance(absl::Seconds(20));
  ASSERT_TRUE(other->ReconcileOne(name).ok());
  EXPECT_EQ(store_.LeaseOwner(name), "r1");
  // ... and loses it when it stops renewing: r2 takes over, and r1's next
  // pass does nothing.
  clock_.Advance(absl::Seconds(31));
  ASSERT_TRUE(other->ReconcileOne(name).ok());
  EXPECT_EQ(store_.LeaseOwner(name), "r2");
  const int after_takeover = catalog_.calls();
  ASSERT_TRUE(reconciler_->ReconcileOne(name).ok());
  EXPECT_EQ(catalog_.calls(), after_takeover);
  // Stop gives the leases up at once.
  other->Stop();
  EXPECT_EQ(store_.LeaseOwner(name), "");
  ASSERT_TRUE(reconciler_->ReconcileOne(name).ok());
  EXPECT_EQ(store_.LeaseOwner(name), "r1");
  EXPECT_EQ(optimizer_.jobs_created(), 1);
}

TEST_F(ReconcilerTest, AWriteAfterTheLeaseWasLostIsRefused) {
  const std::string name = Create(false).name();
  // r1 takes the lease, then stalls inside its pass (the apply) past the
  // lease; r2 takes over meanwhile, so r1's write is fenced off.
  auto other = NewReconciler("r2");
  scheduler_.OnApply([&] {
    clock_.Advance(absl::Minutes(1));
    ASSERT_TRUE(store_
                    .AcquireLease(name, "r2", clock_.Now(),
                                  clock_.Now() + absl::Seconds(30))
                    .value());
  });
  ASSERT_TRUE(reconciler_->ReconcileOne(name).ok());
  scheduler_.OnApply(nullptr);
  EXPECT_EQ(Get(name).state(), v1::DEPLOYMENT_STATE_PENDING);
  ASSERT_TRUE(other->ReconcileOne(name).ok());
  EXPECT_EQ(Get(name).state(), v1::DEPLOYMENT_STATE_DEPLOYING);
  EXPECT_EQ(scheduler_.creations(name, 1), 1);
}

TEST_F(ReconcilerTest, ReplicaSecondsAreRecordedOnceAndPriced) {
  const std::string name = Deployed(false).name();
  scheduler_.AddSeconds(name, 1, 3600);
  ASSERT_TRUE(reconciler_->ReconcileOne(name).ok());
  ASSERT_TRUE(reconciler_->ReconcileOne(name).ok());  // Same sample again.
  auto fresh = NewReconciler("r9");
  reconciler_.reset();  // Releases the lease.
  ASSERT_TRUE(fresh->ReconcileOne(name).ok());
  scheduler_.AddSeconds(name, 1, 1800);
  ASSERT_TRUE(fresh->ReconcileOne(name).ok());
  v1::GetUsageRequest request;
  request.set_deployment(name);
  absl::StatusOr<v1::GetUsageResponse> usage = deployments_->GetUsage(request);
  ASSERT_TRUE(usage.ok()) << usage.status();
  ASSERT_EQ(usage->replica_usage_size(), 1);
  EXPECT_EQ(usage->replica_usage(0).hardware(), kOffering);
  EXPECT_DOUBLE_EQ(usage->replica_usage(0).replica_seconds(), 5400);
  EXPECT_EQ(usage->replica_usage(0).cost().micros(), kPrice * 3 / 2);
  EXPECT_EQ(usage->replica_cost().micros(), kPrice * 3 / 2);
  EXPECT_EQ(usage->total_cost().micros(), kPrice * 3 / 2);
  EXPECT_EQ(usage->prices().hourly().at(kOffering).micros(), kPrice);
  // Released sets have their last figures recorded.
  scheduler_.AddSeconds(name, 1, 360);
  ASSERT_TRUE(Undeploy(name).ok());
  ASSERT_TRUE(fresh->ReconcileOne(name).ok());
  usage = deployments_->GetUsage(request);
  EXPECT_DOUBLE_EQ(usage->replica_usage(0).replica_seconds(), 5760);
}

TEST_F(ReconcilerTest, EndpointHasThreeReadyToPasteExamples) {
  const std::string name = Deployed(false).name();
  absl::StatusOr<v1::Endpoint> endpoint = deployments_->GetEndpoint(name);
  ASSERT_TRUE(endpoint.ok());
  EXPECT_TRUE(endpoint->ready());
  EXPECT_EQ(endpoint->serving_revision(), 1);
  EXPECT_THAT(endpoint->hangarctl_example(),
              HasSubstr("hangarctl call --api_key=<YOUR_API_KEY> gw:1 "
                        "hangar.v1.InferenceService/Generate"));
  EXPECT_THAT(endpoint->grpcurl_example(),
              HasSubstr("authorization: Bearer <YOUR_API_KEY>"));
  EXPECT_THAT(endpoint->python_example(), HasSubstr("import grpc"));
  EXPECT_THAT(endpoint->python_example(), HasSubstr("<YOUR_API_KEY>"));
  EXPECT_THAT(endpoint->python_example(), HasSubstr(name));
}

TEST_F(ReconcilerTest, TheLoopWakesOnChangesAndResyncs) {
  scheduler_.SetAutoReady(true);
  const std::string existing = Create(false, "before-start").name();
  reconciler_->Start();
  // The start tells the sink every live deployment's state.
  EXPECT_THAT(sink_.events(),
              ::testing::Contains(existing + " DEPLOYMENT_STATE_PENDING 0"));
  // The first resync runs at once and drives it.
  auto wait_for = [&](const std::string& name, v1::DeploymentState state) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline && Get(name).state() != state) {
      absl::SleepFor(absl::Milliseconds(2));  // Polling the store.
    }
    return Get(name).state() == state;
  };
  EXPECT_TRUE(wait_for(existing, v1::DEPLOYMENT_STATE_DEPLOYED));
  // A change made through the API wakes it (the fake clock never moves).
  v1::CreateDeploymentRequest request;
  request.set_request_id("after-start");
  *request.mutable_spec() = Spec(false);
  absl::StatusOr<v1::Deployment> created =
      deployments_->CreateDeployment(request);
  ASSERT_TRUE(created.ok());
  reconciler_->Wake(created->name());
  EXPECT_TRUE(wait_for(created->name(), v1::DEPLOYMENT_STATE_DEPLOYED));
  // The loop sleeps on the clock when nothing is due: no busy passes.
  ASSERT_TRUE(clock_.BlockUntilWaiters(1));
  const int64_t passes = reconciler_->passes();
  ASSERT_TRUE(clock_.BlockUntilWaiters(1));
  EXPECT_EQ(reconciler_->passes(), passes);
  // A deleted set is put back by the resync.
  ASSERT_TRUE(scheduler_.DeleteReplicaSet(existing, 1, 0).ok());
  clock_.Advance(absl::Seconds(11));
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline && !scheduler_.Set(existing, 1).has_value()) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  EXPECT_TRUE(scheduler_.Set(existing, 1).has_value());
  EXPECT_EQ(scheduler_.creations(existing, 1), 2);
  reconciler_->Stop();
}

}  // namespace
}  // namespace hangar::deployment
