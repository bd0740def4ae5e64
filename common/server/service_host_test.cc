// ServiceHost over a real PostgreSQL and real gRPC on loopback: health
// follows SetServing and the database (stopped and started under it), the
// drain closes the notifiers, teardown leaves them closed, and bad options
// are refused by name.
#include "common/server/service_host.h"

#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/db/pool.h"
#include "common/testing/postgres_server.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "hangar/v1/runner.grpc.pb.h"

namespace hangar {
namespace {

using ::hangar::testing::IsOk;
using ::hangar::testing::PostgresServer;
using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;
using HealthResponse = grpc::health::v1::HealthCheckResponse;

// Any service will do: the host only registers it.
class UnimplementedRunner final : public v1::RunnerService::Service {};

class ServiceHostTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<PostgresServer>> pg =
        PostgresServer::Start();
    ASSERT_THAT(pg.status(), IsOk());
    pg_ = pg->release();
  }
  static void TearDownTestSuite() {
    delete pg_;
    pg_ = nullptr;
  }

  void SetUp() override {
    ASSERT_THAT(pg_->Resume(), IsOk());
    absl::StatusOr<std::unique_ptr<db::Pool>> pool =
        db::Pool::Create({.conninfo = pg_->ConnInfo(), .size = 2});
    ASSERT_THAT(pool.status(), IsOk());
    pool_ = *std::move(pool);
  }

  ServiceHostOptions Options() {
    return {.server = {.name = "test", .port = 0},
            .services = {&service_},
            .notifiers = {&notifier_},
            .database = pool_.get(),
            .metrics = &metrics_};
  }

  // Follows health.Watch("") until it reports `want` or `timeout` passes.
  static bool WaitForHealth(const Server& server,
                            HealthResponse::ServingStatus want,
                            absl::Duration timeout) {
    auto stub = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
        server.address(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    grpc::health::v1::HealthCheckRequest request;
    auto reader = stub->Watch(&context, request);
    HealthResponse response;
    while (reader->Read(&response)) {
      if (response.status() == want) {
        context.TryCancel();
        reader->Finish();
        return true;
      }
    }
    reader->Finish();
    return false;
  }

  static HealthResponse::ServingStatus Check(const Server& server) {
    auto stub = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
        server.address(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    grpc::health::v1::HealthCheckRequest request;
    HealthResponse response;
    if (!stub->Check(&context, request, &response).ok()) {
      return HealthResponse::UNKNOWN;
    }
    return response.status();
  }

  static PostgresServer* pg_;
  MetricsRegistry metrics_;
  UnimplementedRunner service_;
  ChangeNotifier notifier_;
  std::unique_ptr<db::Pool> pool_;
};

PostgresServer* ServiceHostTest::pg_ = nullptr;

TEST_F(ServiceHostTest, ServesOnlyAfterSetServingAndDrainClosesNotifiers) {
  absl::Notification closed;
  auto subscription =
      notifier_.Subscribe("key", nullptr, [&closed] { closed.Notify(); });
  absl::StatusOr<std::unique_ptr<ServiceHost>> host =
      ServiceHost::Start(Options());
  ASSERT_THAT(host.status(), IsOk());
  Server& server = (*host)->server();
  EXPECT_GT(server.port(), 0);
  EXPECT_EQ(Check(server), HealthResponse::NOT_SERVING);
  server.SetServing(true);
  EXPECT_EQ(Check(server), HealthResponse::SERVING);

  // The drain (as on SIGTERM) closes the notifier: its Watch streams end.
  EXPECT_FALSE(notifier_.closed());
  server.Shutdown();
  EXPECT_TRUE(closed.HasBeenNotified());
  EXPECT_TRUE(notifier_.closed());
}

TEST_F(ServiceHostTest, HealthFollowsTheDatabase) {
  absl::StatusOr<std::unique_ptr<ServiceHost>> host =
      ServiceHost::Start(Options());
  ASSERT_THAT(host.status(), IsOk());
  Server& server = (*host)->server();
  server.SetServing(true);
  ASSERT_EQ(Check(server), HealthResponse::SERVING);

  ASSERT_THAT(pg_->Stop(), IsOk());
  // The probe checks every second; its next check finds the database gone.
  EXPECT_TRUE(
      WaitForHealth(server, HealthResponse::NOT_SERVING, absl::Seconds(10)));
  EXPECT_THAT(pool_->Outage(), StatusIs(absl::StatusCode::kUnavailable,
                                        HasSubstr("unreachable since")));

  ASSERT_THAT(pg_->Resume(), IsOk());
  EXPECT_TRUE(
      WaitForHealth(server, HealthResponse::SERVING, absl::Seconds(10)));
}

TEST_F(ServiceHostTest, StopDrainsAndTheDestructorClosesNotifiers) {
  absl::StatusOr<std::unique_ptr<ServiceHost>> host =
      ServiceHost::Start(Options());
  ASSERT_THAT(host.status(), IsOk());
  (*host)->server().SetServing(true);
  (*host)->Stop();
  // Drained: health says so, the notifier is closed, the server object
  // (its address) is still there for whatever the owner stops next.
  EXPECT_TRUE(notifier_.closed());
  EXPECT_EQ(Check((*host)->server()), HealthResponse::UNKNOWN);
  (*host)->Stop();  // Idempotent.
  host->reset();
  EXPECT_TRUE(notifier_.closed());
}

TEST_F(ServiceHostTest, WithoutADatabaseThereIsNoProbe) {
  ServiceHostOptions options = Options();
  options.database = nullptr;
  absl::StatusOr<std::unique_ptr<ServiceHost>> host =
      ServiceHost::Start(std::move(options));
  ASSERT_THAT(host.status(), IsOk());
  (*host)->server().SetServing(true);
  EXPECT_EQ(Check((*host)->server()), HealthResponse::SERVING);
}

TEST_F(ServiceHostTest, RefusesBadOptionsByName) {
  {
    ServiceHostOptions options = Options();
    options.services.clear();
    EXPECT_THAT(
        ServiceHost::Start(std::move(options)).status(),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("services")));
  }
  {
    ServiceHostOptions options = Options();
    options.notifiers.push_back(nullptr);
    EXPECT_THAT(
        ServiceHost::Start(std::move(options)).status(),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("notifiers")));
  }
  {
    ServiceHostOptions options = Options();
    options.metrics = nullptr;
    EXPECT_THAT(
        ServiceHost::Start(std::move(options)).status(),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("metrics")));
  }
  // The notifier was never closed by a host that did not start.
  EXPECT_FALSE(notifier_.closed());
}

}  // namespace
}  // namespace hangar
