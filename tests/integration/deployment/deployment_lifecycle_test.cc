// A deployment's whole life against the real services on this host: a
// private PostgreSQL (common/testing/postgres_server.h) shared by the real
// hangar-catalog (serving the curated tiny model from its local root),
// hangar-scheduler (LOCAL executor: real hangar-runner children),
// hangar-optimizer (converting with the real hangar-optimize as a scheduler
// job) and hangar-deployment, each a child process on a loopback port.
//
//  - create with int8 -> DEPLOYED with a runner of revision 1 answering
//    Generate; redeploy -> revision 2 serves, revision 1's set released;
//    undeploy -> no set; force delete -> DELETED, no set left;
//  - kill -9 the deployment service mid-optimization, start it again: the
//    deployment converges with one optimizer job and one replica set.
// Waiting is on a condition with a deadline (polling another process's
// state), never a fixed sleep.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/testing/child_process.h"
#include "common/testing/ports.h"
#include "common/testing/postgres_server.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "engine/tiny_model.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hangar/v1/catalog.grpc.pb.h"
#include "hangar/v1/deployment.grpc.pb.h"
#include "hangar/v1/optimizer.grpc.pb.h"
#include "hangar/v1/runner.grpc.pb.h"
#include "hangar/v1/scheduler.grpc.pb.h"

namespace hangar::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kModel[] = "hangar/tiny-random-llama";
constexpr char kOffering[] = "t4-1x";

std::unique_ptr<grpc::ClientContext> Context(
    absl::Duration timeout = absl::Seconds(20)) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(timeout));
  return context;
}

// One service binary as a child process on a free loopback port.
struct Service {
  std::unique_ptr<ChildProcess> process;
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
};

class DeploymentLifecycleTest : public PostgresTest {
 protected:
  void SetUp() override {
    PostgresTest::SetUp();
    if (HasFatalFailure()) return;
    dir_ = MakeTempDir("deployment-lifecycle");
    fs::create_directories(dir_ + "/local");
    absl::StatusOr<engine::TinyModelOptions> preset =
        engine::TinyModelPreset("tiny");
    ASSERT_OK(preset.status());
    ASSERT_OK(
        engine::WriteTinyModel(*preset, dir_ + "/local/tiny-random-llama"));

    ASSERT_NO_FATAL_FAILURE(Start(
        &catalog_, {HANGAR_CATALOG_PATH,
                    "--curated_models=" + std::string(HANGAR_CURATED_MODELS),
                    "--model_store=" + dir_ + "/catalog-store",
                    "--local_model_root=" + dir_ + "/local"}));
    catalog_stub_ = v1::CatalogService::NewStub(catalog_.channel);
    ASSERT_TRUE(WaitUntil([&] {
      v1::GetModelRequest request;
      request.set_name(kModel);
      v1::Model model;
      return catalog_stub_->GetModel(Context().get(), request, &model).ok();
    })) << catalog_.process->Output();

    ASSERT_NO_FATAL_FAILURE(
        Start(&scheduler_,
              {HANGAR_SCHEDULER_PATH,
               "--hardware_config=" + std::string(HANGAR_HARDWARE_CONFIG),
               "--runner_binary=" + std::string(HANGAR_RUNNER_PATH),
               "--state_dir=" + dir_ + "/scheduler", "--default_drain=1s",
               "--autoscale_period=200ms", "--restart_backoff_initial=200ms"}));
    scheduler_stub_ = v1::SchedulerService::NewStub(scheduler_.channel);
    ASSERT_TRUE(WaitUntil([&] {
      v1::ListHardwareResponse response;
      return scheduler_stub_->ListHardware(Context().get(), {}, &response).ok();
    })) << scheduler_.process->Output();

    ASSERT_NO_FATAL_FAILURE(Start(
        &optimizer_,
        {HANGAR_OPTIMIZER_PATH, "--model_store=" + dir_ + "/optimizer-store",
         "--scheduler_address=" + scheduler_.address,
         "--optimize_binary=" + std::string(HANGAR_OPTIMIZE_PATH)}));
    optimizer_stub_ = v1::OptimizerService::NewStub(optimizer_.channel);
    ASSERT_TRUE(WaitUntil([&] {
      v1::ListOptimizationJobsResponse response;
      return optimizer_stub_
          ->ListOptimizationJobs(Context().get(), {}, &response)
          .ok();
    })) << optimizer_.process->Output();

    ASSERT_NO_FATAL_FAILURE(StartDeployment());
  }

  void TearDown() override {
    // Release whatever still runs before the scheduler goes, so no runner
    // outlives the test.
    if (deployment_stub_ != nullptr && deployment_.process != nullptr) {
      v1::ListDeploymentsResponse list;
      if (deployment_stub_->ListDeployments(Context().get(), {}, &list).ok()) {
        for (const v1::Deployment& d : list.deployments()) {
          v1::DeleteDeploymentRequest remove;
          remove.set_name(d.name());
          remove.set_force(true);
          v1::Deployment ignored;
          (void)deployment_stub_->DeleteDeployment(Context().get(), remove,
                                                   &ignored);
          WaitForState(d.name(), v1::DEPLOYMENT_STATE_DELETED,
                       absl::Seconds(20));
        }
      }
    }
    for (Service* service :
         {&deployment_, &optimizer_, &scheduler_, &catalog_}) {
      if (service->process == nullptr) continue;
      service->process->Signal(SIGTERM);
      (void)service->process->Wait(absl::Seconds(20));
      service->process.reset();
    }
  }

  void Start(Service* service, std::vector<std::string> argv) {
    ASSERT_OK_AND_ASSIGN(int port, PickFreeLoopbackPort());
    argv.push_back(absl::StrCat("--port=", port));
    argv.push_back("--metrics_port=-1");
    argv.push_back("--db=" + conninfo());
    argv.push_back("--drain_timeout=1s");
    ASSERT_OK_AND_ASSIGN(service->process, ChildProcess::Start(argv));
    service->address = absl::StrCat("127.0.0.1:", port);
    service->channel = grpc::CreateChannel(service->address,
                                           grpc::InsecureChannelCredentials());
  }

  void StartDeployment() {
    ASSERT_NO_FATAL_FAILURE(
        Start(&deployment_,
              {HANGAR_DEPLOYMENT_PATH, "--catalog_address=" + catalog_.address,
               "--scheduler_address=" + scheduler_.address,
               "--optimizer_address=" + optimizer_.address,
               "--gateway_endpoint=127.0.0.1:7100", "--resync_interval=2s",
               "--active_interval=200ms", "--lease_duration=3s",
               "--drain_seconds=1"}));
    deployment_stub_ = v1::DeploymentService::NewStub(deployment_.channel);
    ASSERT_TRUE(WaitUntil([&] {
      v1::ListDeploymentsResponse response;
      return deployment_stub_->ListDeployments(Context().get(), {}, &response)
          .ok();
    })) << deployment_.process->Output();
  }

  v1::DeploymentSpec Spec(bool int8, float temperature) {
    v1::DeploymentSpec spec;
    spec.set_model(kModel);
    spec.set_hardware(kOffering);
    spec.set_min_replicas(1);
    spec.set_max_replicas(1);
    spec.set_inference_batch_size(2);
    spec.mutable_sampling()->set_temperature(temperature);
    spec.mutable_sampling()->set_max_tokens(8);
    if (int8) {
      spec.mutable_optimization()->set_engine(v1::ENGINE_CTRANSLATE2);
      spec.mutable_optimization()->set_quantization(v1::QUANTIZATION_INT8);
    } else {
      spec.mutable_optimization()->set_engine(v1::ENGINE_NONE);
    }
    v1::ValidateDeploymentRequest request;
    *request.mutable_spec() = spec;
    v1::ValidateDeploymentResponse review;
    grpc::Status status =
        deployment_stub_->ValidateDeployment(Context().get(), request, &review);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(review.valid()) << review.DebugString();
    spec.set_accept_terms(true);
    spec.set_accepted_terms_sha256(review.terms_sha256());
    return spec;
  }

  v1::Deployment Get(const std::string& name) {
    v1::GetDeploymentRequest request;
    request.set_name(name);
    v1::Deployment deployment;
    grpc::Status status =
        deployment_stub_->GetDeployment(Context().get(), request, &deployment);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return deployment;
  }

  // Polls until the deployment is in `state` (true) or the deadline passes.
  bool WaitForState(const std::string& name, v1::DeploymentState state,
                    absl::Duration timeout = absl::Seconds(45)) {
    v1::Deployment last;
    bool reached = WaitUntil(
        [&] {
          v1::GetDeploymentRequest request;
          request.set_name(name);
          if (!deployment_stub_->GetDeployment(Context().get(), request, &last)
                   .ok()) {
            return false;
          }
          return last.state() == state;
        },
        timeout);
    if (!reached) {
      ADD_FAILURE() << "waiting for " << v1::DeploymentState_Name(state)
                    << "; last: " << last.DebugString();
    }
    return reached;
  }

  std::vector<v1::ReplicaSet> Sets(const std::string& deployment) {
    v1::ListReplicaSetsRequest request;
    request.set_deployment(deployment);
    v1::ListReplicaSetsResponse response;
    EXPECT_TRUE(
        scheduler_stub_->ListReplicaSets(Context().get(), request, &response)
            .ok());
    return {response.replica_sets().begin(), response.replica_sets().end()};
  }

  int OptimizerJobs() {
    v1::ListOptimizationJobsRequest request;
    request.set_model(kModel);
    request.set_page_size(100);
    v1::ListOptimizationJobsResponse response;
    EXPECT_TRUE(optimizer_stub_
                    ->ListOptimizationJobs(Context().get(), request, &response)
                    .ok());
    return response.jobs_size();
  }

  // The runner of revision `revision` answers Info and a Generate call.
  void ExpectRunnerServes(const std::string& deployment, int64_t revision,
                          v1::Quantization quantization) {
    std::vector<v1::ReplicaSet> sets = Sets(deployment);
    const v1::ReplicaSet* set = nullptr;
    for (const v1::ReplicaSet& candidate : sets) {
      if (candidate.spec().revision() == revision) set = &candidate;
    }
    ASSERT_NE(set, nullptr);
    EXPECT_TRUE(set->spec().serving());
    ASSERT_GE(set->replicas_size(), 1);
    const v1::Replica& replica = set->replicas(0);
    ASSERT_EQ(replica.state(), v1::REPLICA_STATE_READY);
    auto runner = v1::RunnerService::NewStub(grpc::CreateChannel(
        replica.address(), grpc::InsecureChannelCredentials()));
    v1::RunnerInfo info;
    ASSERT_TRUE(runner->Info(Context().get(), {}, &info).ok());
    EXPECT_EQ(info.deployment(), deployment);
    EXPECT_EQ(info.revision(), revision);
    EXPECT_EQ(info.recipe().quantization(), quantization);
    v1::RunnerGenerateRequest request;
    v1::RunnerSequence* sequence = request.add_sequences();
    sequence->set_id("s1");
    sequence->set_prompt("Hello");
    auto context = Context();
    auto reader = runner->Generate(context.get(), request);
    v1::RunnerGenerateResponse response;
    bool finished = false;
    while (reader->Read(&response)) {
      EXPECT_FALSE(response.has_error()) << response.DebugString();
      if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
        finished = true;
      }
    }
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_TRUE(finished);
  }

  std::string dir_;
  Service catalog_;
  Service scheduler_;
  Service optimizer_;
  Service deployment_;
  std::unique_ptr<v1::CatalogService::Stub> catalog_stub_;
  std::unique_ptr<v1::SchedulerService::Stub> scheduler_stub_;
  std::unique_ptr<v1::OptimizerService::Stub> optimizer_stub_;
  std::unique_ptr<v1::DeploymentService::Stub> deployment_stub_;
};

TEST_F(DeploymentLifecycleTest, DeployRedeployUndeployDelete) {
  v1::CreateDeploymentRequest create;
  create.set_request_id("life-1");
  *create.mutable_spec() = Spec(/*int8=*/true, 0.5f);
  v1::Deployment created;
  grpc::Status status =
      deployment_stub_->CreateDeployment(Context().get(), create, &created);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const std::string name = created.name();
  ASSERT_TRUE(WaitForState(name, v1::DEPLOYMENT_STATE_DEPLOYED))
      << deployment_.process->Output();
  v1::Deployment d = Get(name);
  EXPECT_EQ(d.serving_revision(), 1);
  EXPECT_EQ(d.ready_replicas(), 1);
  EXPECT_GT(d.hourly_cost().micros(), 0);
  ASSERT_NO_FATAL_FAILURE(ExpectRunnerServes(name, 1, v1::QUANTIZATION_INT8));
  EXPECT_EQ(OptimizerJobs(), 1);

  v1::ListRevisionsRequest list;
  list.set_deployment(name);
  v1::ListRevisionsResponse revisions;
  ASSERT_TRUE(
      deployment_stub_->ListRevisions(Context().get(), list, &revisions).ok());
  ASSERT_EQ(revisions.revisions_size(), 1);
  EXPECT_THAT(revisions.revisions(0).optimization_job(),
              ::testing::StartsWith("opt-"));
  EXPECT_FALSE(revisions.revisions(0).artifact().empty());
  EXPECT_FALSE(revisions.revisions(0).source_sha256().empty());

  // Redeploy (no optimization this time): revision 2 comes up beside 1 and
  // takes over; revision 1's set is released.
  v1::RedeployRequest redeploy;
  redeploy.set_name(name);
  redeploy.set_etag(d.etag());
  redeploy.set_request_id("life-2");
  *redeploy.mutable_spec() = Spec(/*int8=*/false, 0.7f);
  v1::Deployment redeployed;
  status = deployment_stub_->Redeploy(Context().get(), redeploy, &redeployed);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(redeployed.serving_revision(), 1);
  ASSERT_TRUE(WaitUntil(
      [&] {
        v1::Deployment now = Get(name);
        return now.state() == v1::DEPLOYMENT_STATE_DEPLOYED &&
               now.serving_revision() == 2;
      },
      absl::Seconds(45)))
      << Get(name).DebugString();
  ASSERT_NO_FATAL_FAILURE(
      ExpectRunnerServes(name, 2, v1::QUANTIZATION_UNSPECIFIED));
  ASSERT_TRUE(
      WaitUntil([&] { return Sets(name).size() == 1; }, absl::Seconds(20)));
  EXPECT_EQ(Sets(name)[0].spec().revision(), 2);
  ASSERT_TRUE(
      deployment_stub_->ListRevisions(Context().get(), list, &revisions).ok());
  ASSERT_EQ(revisions.revisions_size(), 2);
  EXPECT_TRUE(revisions.revisions(0).serving());
  EXPECT_TRUE(revisions.revisions(1).has_retire_time());
  EXPECT_EQ(OptimizerJobs(), 1);

  // Undeploy: nothing serves, every set goes.
  v1::UndeployDeploymentRequest undeploy;
  undeploy.set_name(name);
  v1::Deployment undeployed;
  ASSERT_TRUE(deployment_stub_
                  ->UndeployDeployment(Context().get(), undeploy, &undeployed)
                  .ok());
  EXPECT_EQ(undeployed.state(), v1::DEPLOYMENT_STATE_UNDEPLOYED);
  ASSERT_TRUE(WaitUntil([&] { return Sets(name).empty(); }, absl::Seconds(20)));

  // Replica time was recorded and priced.
  v1::GetUsageRequest usage_request;
  usage_request.set_deployment(name);
  v1::GetUsageResponse usage;
  ASSERT_TRUE(
      deployment_stub_->GetUsage(Context().get(), usage_request, &usage).ok());
  ASSERT_GE(usage.replica_usage_size(), 1);
  EXPECT_GT(usage.replica_usage(0).replica_seconds(), 0);
  EXPECT_EQ(usage.prices().hourly().at(kOffering).micros(), 1'128'000);

  // Force delete: DELETED, no set left.
  v1::DeleteDeploymentRequest remove;
  remove.set_name(name);
  remove.set_force(true);
  v1::Deployment deleting;
  ASSERT_TRUE(
      deployment_stub_->DeleteDeployment(Context().get(), remove, &deleting)
          .ok());
  ASSERT_TRUE(WaitForState(name, v1::DEPLOYMENT_STATE_DELETED));
  EXPECT_TRUE(Sets(name).empty());
}

TEST_F(DeploymentLifecycleTest, KillNineMidOptimizationConvergesOnce) {
  v1::CreateDeploymentRequest create;
  create.set_request_id("kill-1");
  *create.mutable_spec() = Spec(/*int8=*/true, 0.5f);
  v1::Deployment created;
  grpc::Status status =
      deployment_stub_->CreateDeployment(Context().get(), create, &created);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const std::string name = created.name();
  // The job is created and recorded; the service dies before the job ends
  // or while it converts.
  ASSERT_TRUE(WaitUntil(
      [&] { return Get(name).state() == v1::DEPLOYMENT_STATE_OPTIMIZING; },
      absl::Seconds(30)));
  deployment_.process->Signal(SIGKILL);
  ASSERT_TRUE(deployment_.process->Wait(absl::Seconds(10)).ok());
  deployment_.process.reset();
  deployment_stub_.reset();

  // A new process (another lease owner) takes over once the dead one's
  // lease has expired.
  ASSERT_NO_FATAL_FAILURE(StartDeployment());
  ASSERT_TRUE(WaitForState(name, v1::DEPLOYMENT_STATE_DEPLOYED))
      << deployment_.process->Output();
  EXPECT_EQ(OptimizerJobs(), 1);
  std::vector<v1::ReplicaSet> sets = Sets(name);
  ASSERT_EQ(sets.size(), 1u);
  EXPECT_EQ(sets[0].spec().revision(), 1);
  ASSERT_NO_FATAL_FAILURE(ExpectRunnerServes(name, 1, v1::QUANTIZATION_INT8));
}

}  // namespace
}  // namespace hangar::testing
