// Shared set-up of the gateway's integration tests: real hangar-runner
// child processes on a generated tiny model, the fake control plane
// (fake_control_plane.h) and a real GatewayServer on loopback port 0, with
// API keys for two deployments:
//
//   dep-a ("alpha"), revision 1, keys key_a_ (good), served by runner 0
//   dep-b ("beta"),  revision 1, key_b_, served by runner 0
#ifndef HANGAR_TESTS_INTEGRATION_GATEWAY_GATEWAY_TEST_BASE_H_
#define HANGAR_TESTS_INTEGRATION_GATEWAY_GATEWAY_TEST_BASE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/auth/api_key.h"
#include "common/testing/child_process.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hangar/v1/inference.grpc.pb.h"
#include "hangar/v1/runner.grpc.pb.h"
#include "services/gateway/gateway_server.h"
#include "tests/integration/gateway/fake_control_plane.h"

namespace hangar::testing {

// One hangar-runner child on the tiny model.
struct RunnerProcess {
  std::unique_ptr<ChildProcess> process;
  std::string address;
  std::unique_ptr<v1::RunnerService::Stub> stub;

  // Started and SERVING, or a test failure.
  static std::unique_ptr<RunnerProcess> Start(const std::string& model_dir,
                                              int max_batch);
  v1::RunnerInfo Info();
};

// What one GenerateStream call received.
struct StreamResult {
  grpc::Status status;
  std::string text;
  int messages = 0;
  v1::GenerateStreamResponse last;
};

class GatewayTestBase : public ::testing::Test {
 protected:
  static constexpr int kRunnerBatch = 8;
  static constexpr int kContext = 4096;

  static void SetUpTestSuite();
  static void TearDownTestSuite();

  void SetUp() override;
  void TearDown() override;

  // A route of `deployment` on `runners` (READY, max_batch kRunnerBatch
  // unless `max_batch` > 0).
  static v1::Route MakeRoute(const std::string& deployment,
                             const std::string& display_name, int64_t revision,
                             int batch_size,
                             const std::vector<RunnerProcess*>& runners,
                             int max_batch = 0);
  // The default routes (dep-a and dep-b on runner 0).
  std::vector<v1::Route> DefaultRoutes(int batch_size = 4) const;

  // Starts the gateway (any previous one is shut down first) and waits
  // until it has routes and keys.
  // `revisions`: how many revisions the dispatcher must know first.
  void StartGateway(
      std::function<void(gateway::GatewayServer::Options&)> adjust = nullptr,
      size_t revisions = 2);

  // A request for dep-a: greedy, `max_tokens` new tokens.
  static v1::GenerateRequest Request(int max_tokens,
                                     const std::string& deployment = "dep-a");
  // Adds "authorization: Bearer <key>" when `key` is not empty.
  static void Authorize(grpc::ClientContext& context, const std::string& key,
                        absl::Duration timeout = absl::Seconds(60));

  grpc::Status Generate(const v1::GenerateRequest& request,
                        v1::GenerateResponse* response, const std::string& key);
  StreamResult GenerateStream(
      const v1::GenerateRequest& request, const std::string& key,
      grpc::ClientContext* context = nullptr,
      std::function<void(const v1::GenerateStreamResponse&)> on_message =
          nullptr);

  // The sum and count of a histogram (all label sets) in the gateway's
  // registry, and a counter's total.
  std::pair<double, double> Histogram(const std::string& name);
  double Counter(const std::string& name);

  static std::string* model_dir_;
  static std::vector<std::unique_ptr<RunnerProcess>>* runners_;

  std::unique_ptr<FakeControlPlane> control_;
  std::unique_ptr<gateway::GatewayServer> gateway_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::InferenceService::Stub> stub_;
  auth::ApiKey key_a_;
  auth::ApiKey key_b_;
};

}  // namespace hangar::testing

#endif  // HANGAR_TESTS_INTEGRATION_GATEWAY_GATEWAY_TEST_BASE_H_
