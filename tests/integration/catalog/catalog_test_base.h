// The fixture every catalog integration test shares: a real PostgreSQL
// database (PostgresTest), a fake Hub, a temporary model store and local
// model root, a fake DeploymentUsage, and a CatalogServer on loopback port 0
// reached through generated stubs.
#ifndef HANGAR_TESTS_INTEGRATION_CATALOG_CATALOG_TEST_BASE_H_
#define HANGAR_TESTS_INTEGRATION_CATALOG_CATALOG_TEST_BASE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/testing/postgres_server.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hangar/v1/catalog.grpc.pb.h"
#include "services/catalog/catalog_server.h"
#include "services/catalog/deployment_usage.h"
#include "tests/integration/catalog/fake_hub.h"

namespace hangar::testing {

// A DeploymentUsage the test scripts.
class FakeDeploymentUsage final : public catalog::DeploymentUsage {
 public:
  absl::StatusOr<std::vector<std::string>> DeploymentsUsing(
      const std::string& model) override {
    absl::MutexLock lock(&mu_);
    asked_.push_back(model);
    if (!status_.ok()) return status_;
    return users_;
  }
  void SetUsers(std::vector<std::string> users) {
    absl::MutexLock lock(&mu_);
    users_ = std::move(users);
  }
  void SetStatus(absl::Status status) {
    absl::MutexLock lock(&mu_);
    status_ = std::move(status);
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> users_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> asked_ ABSL_GUARDED_BY(mu_);
};

class CatalogTest : public PostgresTest {
 protected:
  void SetUp() override;
  void TearDown() override;

  // (Re)starts the server over the same database and directories;
  // `adjust` may change the options first.
  void StartServer(
      const std::function<void(catalog::CatalogServer::Options&)>& adjust = {});
  void StopServer();

  v1::CatalogService::Stub& stub() { return *stub_; }

  // Unary call helpers returning the gRPC status.
  grpc::Status Import(const v1::ImportModelRequest& request, v1::Model* model);
  grpc::Status Get(const std::string& name, v1::Model* model);
  grpc::Status List(const v1::ListModelsRequest& request,
                    v1::ListModelsResponse* response);
  grpc::Status Prepare(const std::string& name, v1::Preparation* preparation);
  grpc::Status Delete(const std::string& name, const std::string& etag = "");
  grpc::Status CreateConnection(const std::string& name,
                                const std::string& token,
                                v1::Connection* connection);

  // Watches `name` until `done` holds (deadline 30 s); returns the last
  // model seen. Fails the test on timeout.
  v1::Model WaitFor(const std::string& name,
                    const std::function<bool(const v1::Model&)>& done);
  v1::Model WaitForState(const std::string& name, v1::ModelState state);
  v1::Model WaitForPreparation(const std::string& name,
                               v1::PreparationState state);

  // Count of all models (to prove nothing was written).
  int TotalModels();

  // A Hub repo with the tiny model; `token` makes it private.
  FakeHub::Repo TinyRepo(const std::string& id, const std::string& token = "",
                         const std::string& architecture = "LlamaForCausalLM");

  std::string dir_;
  std::string local_root_;
  std::string model_store_;
  std::unique_ptr<FakeHub> hub_;
  FakeDeploymentUsage usage_;
  std::unique_ptr<catalog::CatalogServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::CatalogService::Stub> stub_;
};

}  // namespace hangar::testing

#endif  // HANGAR_TESTS_INTEGRATION_CATALOG_CATALOG_TEST_BASE_H_
