// The set-up the deployment service's integration tests share: a
// DeploymentServer on loopback port 0 over this test's own PostgreSQL
// database (common/testing/postgres_server.h), the catalog's and the
// scheduler's facts and the reconciler's clients from the in-memory fakes of
// services/deployment/testing, and a generated stub.
//
// A test suite derives from DeploymentServerTest, adds what its tests need
// to the facts or the options, and starts the server:
//
//   class DeploymentApiTest : public testing::DeploymentServerTest {
//    protected:
//     void SetUp() override {
//       DeploymentServerTest::SetUp();
//       if (HasFatalFailure()) return;
//       DeploymentServer::Options options = BaseOptions();
//       options.start_reconciler = false;
//       StartServer(std::move(options));
//     }
//   };
//
// The facts know one model, kModel (ready, 2048 tokens of context,
// apache-2.0, 2 GiB of unquantized weights), and one offering, kOffering
// (one 24 GiB A10G at 1.818 USD an hour).
#ifndef HANGAR_TESTS_INTEGRATION_DEPLOYMENT_DEPLOYMENT_FIXTURE_H_
#define HANGAR_TESTS_INTEGRATION_DEPLOYMENT_DEPLOYMENT_FIXTURE_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/testing/postgres_server.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hangar/v1/deployment.grpc.pb.h"
#include "services/deployment/deployment_server.h"
#include "services/deployment/testing/fake_clients.h"
#include "services/deployment/testing/fake_facts.h"

namespace hangar::deployment::testing {

inline constexpr char kModel[] = "TestOrg/Tiny-Chat_v2";
inline constexpr char kOffering[] = "a10g-1x";
inline constexpr int64_t kGiB = int64_t{1} << 30;

// A client context whose deadline is `timeout` away.
inline std::unique_ptr<grpc::ClientContext> Context(
    absl::Duration timeout = absl::Seconds(30)) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(timeout));
  return context;
}

class DeploymentServerTest : public ::hangar::testing::PostgresTest {
 protected:
  // Gives this test its database and fills the facts; the server starts in
  // StartServer().
  void SetUp() override {
    PostgresTest::SetUp();
    if (HasFatalFailure()) return;
    models_.Set(kModel, TinyModel());
    OfferingFacts offering;
    offering.gpu_model = "NVIDIA A10G";
    offering.gpu_count = 1;
    offering.gpu_memory_bytes = 24 * kGiB;
    offering.hourly_price_micros = 1'818'000;
    offerings_.Set(kOffering, offering);
  }

  // kModel's facts: ready, 2048 tokens of context, apache-2.0, one
  // unquantized recipe (2 GiB of weights, 64 MiB of KV cache a sequence).
  static ModelFacts TinyModel() {
    ModelFacts model;
    model.ready = true;
    model.context_length = 2048;
    model.license = "apache-2.0";
    model.recipes["ENGINE_NONE"] = {.weight_bytes = 2 * kGiB,
                                    .kv_bytes_per_sequence = 64 << 20};
    return model;
  }

  void TearDown() override {
    stub_.reset();
    channel_.reset();
    server_.reset();
  }

  // Port 0, no metrics endpoint, a short drain, this test's database, the
  // gateway at "gateway.test:443" and every fake injected.
  DeploymentServer::Options BaseOptions() {
    return {.server = {.name = "deployment",
                       .port = 0,
                       .metrics_port = -1,
                       .drain_timeout = absl::Milliseconds(300)},
            .db = conninfo(),
            .db_pool_size = 8,
            .gateway_endpoint = "gateway.test:443",
            .model_facts = &models_,
            .offering_facts = &offerings_,
            .catalog_client = &catalog_,
            .optimizer_client = &optimizer_,
            .scheduler_client = &scheduler_};
  }

  // Starts server_ and connects stub_ to it (a fatal failure if it does not
  // start).
  void StartServer(DeploymentServer::Options options) {
    absl::StatusOr<std::unique_ptr<DeploymentServer>> server =
        DeploymentServer::Create(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_->address(),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::DeploymentService::NewStub(channel_);
  }

  // A spec of kModel on kOffering that passes every rule, with the terms
  // ValidateDeployment showed accepted.
  v1::DeploymentSpec ValidSpec() {
    v1::DeploymentSpec spec;
    spec.set_model(kModel);
    spec.set_hardware(kOffering);
    v1::ValidateDeploymentRequest request;
    *request.mutable_spec() = spec;
    v1::ValidateDeploymentResponse response;
    grpc::Status status =
        stub_->ValidateDeployment(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(response.valid()) << response.DebugString();
    spec.set_accept_terms(true);
    spec.set_accepted_terms_sha256(response.terms_sha256());
    return spec;
  }

  // A create of ValidSpec() under `request_id`.
  v1::CreateDeploymentRequest CreateRequest(const std::string& request_id) {
    v1::CreateDeploymentRequest request;
    *request.mutable_spec() = ValidSpec();
    request.set_request_id(request_id);
    return request;
  }

  grpc::Status Create(const v1::CreateDeploymentRequest& request,
                      v1::Deployment* deployment) {
    return stub_->CreateDeployment(Context().get(), request, deployment);
  }

  // GetDeployment by id or display name; a failure fails the test.
  v1::Deployment Get(const std::string& name) {
    v1::GetDeploymentRequest request;
    request.set_name(name);
    v1::Deployment deployment;
    grpc::Status status =
        stub_->GetDeployment(Context().get(), request, &deployment);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return deployment;
  }

  FakeModelFacts models_;
  FakeOfferingFacts offerings_;
  FakeCatalogClient catalog_;
  FakeOptimizerClient optimizer_;
  FakeSchedulerClient scheduler_;
  std::unique_ptr<DeploymentServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::DeploymentService::Stub> stub_;
};

}  // namespace hangar::deployment::testing

#endif  // HANGAR_TESTS_INTEGRATION_DEPLOYMENT_DEPLOYMENT_FIXTURE_H_
