// AuthorizeAdmin checks sync methods (grpc::ServerContext) and callback
// methods (grpc::CallbackServerContext) the same way: a real in-process
// server on a loopback port serves grpc.health.v1.Health with Check on the
// sync API and Watch on the callback API, each behind the admin check.
#include "common/server/admin_auth.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/auth/bearer.h"
#include "common/testing/status_matchers.h"
#include "common/watch/watch_reactor.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace hangar {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;

constexpr char kToken[] = "admin-auth-test-token-0123456789";

class GuardedHealth final
    : public Health::WithCallbackMethod_Watch<Health::Service> {
 public:
  explicit GuardedHealth(const auth::AdminToken* token) : token_(token) {}

  grpc::Status Check(grpc::ServerContext* context, const HealthCheckRequest*,
                     HealthCheckResponse* response) override {
    if (grpc::Status denied = AuthorizeAdmin(token_, *context); !denied.ok()) {
      return denied;
    }
    response->set_status(HealthCheckResponse::SERVING);
    return grpc::Status::OK;
  }

  grpc::ServerWriteReactor<HealthCheckResponse>* Watch(
      grpc::CallbackServerContext* context,
      const HealthCheckRequest*) override {
    if (grpc::Status denied = AuthorizeAdmin(token_, *context); !denied.ok()) {
      return FinishedWriteReactor<HealthCheckResponse>(denied);
    }
    return FinishedWriteReactor<HealthCheckResponse>(grpc::Status::OK);
  }

 private:
  const auth::AdminToken* token_;
};

class AdminAuthTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam()) {
      ASSERT_OK_AND_ASSIGN(token_, auth::AdminToken::FromString(kToken));
    }
    service_ = std::make_unique<GuardedHealth>(token_.get());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = Health::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override { server_->Shutdown(); }

  // The status of Check and of Watch, sending `authorization` if not empty.
  std::pair<grpc::Status, grpc::Status> Call(const std::string& authorization) {
    HealthCheckRequest request;
    HealthCheckResponse response;
    grpc::ClientContext check;
    if (!authorization.empty())
      check.AddMetadata("authorization", authorization);
    grpc::Status check_status = stub_->Check(&check, request, &response);
    grpc::ClientContext watch;
    watch.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    if (!authorization.empty())
      watch.AddMetadata("authorization", authorization);
    auto reader = stub_->Watch(&watch, request);
    while (reader->Read(&response)) {
    }
    return {check_status, reader->Finish()};
  }

  std::unique_ptr<auth::AdminToken> token_;
  std::unique_ptr<GuardedHealth> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Health::Stub> stub_;
};

TEST_P(AdminAuthTest, SyncAndCallbackMethodsCheckTheSameWay) {
  const bool checked = GetParam();
  const grpc::StatusCode refused =
      checked ? grpc::StatusCode::UNAUTHENTICATED : grpc::StatusCode::OK;
  for (const std::string authorization :
       {std::string(), std::string("Bearer wrong-token-0123456789abcdef"),
        std::string("Basic ") + kToken, std::string(kToken)}) {
    SCOPED_TRACE(authorization);
    auto [check, watch] = Call(authorization);
    EXPECT_EQ(check.error_code(), refused) << check.error_message();
    EXPECT_EQ(watch.error_code(), refused) << watch.error_message();
    EXPECT_EQ(check.error_message(), watch.error_message());
    EXPECT_EQ(check.error_message().find("wrong-token"), std::string::npos);
  }
  auto [check, watch] = Call(absl::StrCat("Bearer ", kToken));
  EXPECT_TRUE(check.ok()) << check.error_message();
  EXPECT_TRUE(watch.ok()) << watch.error_message();
}

INSTANTIATE_TEST_SUITE_P(TokenOnAndOff, AdminAuthTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Checked" : "Off";
                         });

}  // namespace
}  // namespace hangar
