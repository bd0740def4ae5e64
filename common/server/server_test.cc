// Proves the bootstrap end to end over loopback: a server built from
// common/server with a real Hangar service, reached by a client that knows
// only the address (reflection), health, /metrics, and a graceful drain on
// SIGTERM while a call is in flight.
#include "common/server/server.h"

#include <curl/curl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/server/admin_auth.h"
#include "common/server/reflection_client.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "hangar/v1/runner.grpc.pb.h"

namespace hangar {
namespace {

using ::hangar::testing::IsOk;
using ::hangar::testing::StatusIs;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;
using HealthResponse = grpc::health::v1::HealthCheckResponse;

// A RunnerService whose Generate streams one delta, then holds the call open
// until the test releases it: an in-flight call to drain.
class HeldRunner final : public v1::RunnerService::Service {
 public:
  // Info is admin-only when `admin_token` is set.
  const auth::AdminToken* admin_token = nullptr;

  grpc::Status Info(grpc::ServerContext* context, const v1::RunnerInfoRequest*,
                    v1::RunnerInfo* info) override {
    if (grpc::Status denied = AuthorizeAdmin(admin_token, *context);
        !denied.ok()) {
      return denied;
    }
    info->set_architecture("TestForCausalLM");
    info->set_batch_capacity(4);
    return grpc::Status::OK;
  }

  grpc::Status Generate(
      grpc::ServerContext*, const v1::RunnerGenerateRequest* request,
      grpc::ServerWriter<v1::RunnerGenerateResponse>* writer) override {
    v1::RunnerGenerateResponse first;
    first.set_delta("hello");
    writer->Write(first);
    started_.Notify();
    release_.WaitForNotification();
    v1::RunnerGenerateResponse last;
    last.set_delta(" world");
    last.set_finish_reason(v1::FINISH_REASON_LENGTH);
    writer->Write(last);
    return grpc::Status::OK;
  }

  absl::Notification started_;
  absl::Notification release_;
};

std::unique_ptr<Server> StartServer(HeldRunner* runner,
                                    MetricsRegistry* metrics,
                                    absl::Duration drain = absl::Seconds(30)) {
  auto server = Server::Create({.name = "test",
                                .port = 0,
                                .metrics_port = 0,
                                .drain_timeout = drain},
                               {runner}, metrics);
  EXPECT_THAT(server, IsOk());
  return server.ok() ? std::move(server).value() : nullptr;
}

std::shared_ptr<grpc::Channel> Dial(const Server& server) {
  return grpc::CreateChannel(server.address(),
                             grpc::InsecureChannelCredentials());
}

absl::StatusOr<std::string> HttpGet(const std::string& url) {
  CURL* curl = curl_easy_init();
  std::string body;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION,
      +[](char* data, size_t size, size_t count, void* out) -> size_t {
        static_cast<std::string*>(out)->append(data, size * count);
        return size * count;
      });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  CURLcode code = curl_easy_perform(curl);
  curl_easy_cleanup(curl);
  if (code != CURLE_OK) return absl::UnavailableError(curl_easy_strerror(code));
  return body;
}

TEST(ServerTest, ReflectionListsDescribesAndCallsEveryService) {
  HeldRunner runner;
  MetricsRegistry metrics;
  auto server = StartServer(&runner, &metrics);
  ASSERT_NE(server, nullptr);
  server->SetServing(true);

  ReflectionClient client(Dial(*server));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> services,
                       client.ListServices());
  EXPECT_THAT(services, Contains("hangar.v1.RunnerService"));
  EXPECT_THAT(services, Contains("grpc.health.v1.Health"));
  EXPECT_THAT(services, Contains("grpc.reflection.v1alpha.ServerReflection"));

  // Every listed service can be described (the built-in health service of
  // gRPC C++ could not: "Symbol not found").
  for (const std::string& service : services) {
    auto descriptor = client.DescribeService(service);
    ASSERT_THAT(descriptor, IsOk()) << service;
    EXPECT_GT((*descriptor)->method_count(), 0) << service;
  }

  // And called, with JSON built from the fetched descriptors.
  ASSERT_OK_AND_ASSIGN(std::string health,
                       client.CallUnary("grpc.health.v1.Health/Check", "{}"));
  EXPECT_THAT(health, HasSubstr("\"SERVING\""));
  ASSERT_OK_AND_ASSIGN(std::string info,
                       client.CallUnary("hangar.v1.RunnerService/Info", "{}"));
  EXPECT_THAT(info, HasSubstr("TestForCausalLM"));
  EXPECT_THAT(client.CallUnary("hangar.v1.RunnerService/Nope", "{}"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("Nope")));
  EXPECT_THAT(client.CallUnary("hangar.v1.RunnerService/Info", "{\"x\": 1}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("JSON")));
}

TEST(ServerTest, HealthStartsNotServingAndFollowsSetServing) {
  HeldRunner runner;
  MetricsRegistry metrics;
  auto server = StartServer(&runner, &metrics);
  ASSERT_NE(server, nullptr);
  auto health = grpc::health::v1::Health::NewStub(Dial(*server));

  grpc::health::v1::HealthCheckRequest request;
  HealthResponse response;
  grpc::ClientContext before;
  ASSERT_TRUE(health->Check(&before, request, &response).ok());
  EXPECT_EQ(response.status(), HealthResponse::NOT_SERVING);

  server->SetServing(true);
  grpc::ClientContext after;
  ASSERT_TRUE(health->Check(&after, request, &response).ok());
  EXPECT_EQ(response.status(), HealthResponse::SERVING);

  request.set_service("no.such.Service");
  grpc::ClientContext unknown;
  EXPECT_EQ(health->Check(&unknown, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST(ServerTest, MetricsEndpointCountsRequestsByMethodAndCode) {
  HeldRunner runner;
  MetricsRegistry metrics;
  auto server = StartServer(&runner, &metrics);
  ASSERT_NE(server, nullptr);
  ASSERT_GT(server->metrics_port(), 0);
  auto stub = v1::RunnerService::NewStub(Dial(*server));
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext context;
    v1::RunnerInfo info;
    ASSERT_TRUE(stub->Info(&context, {}, &info).ok());
  }
  ASSERT_OK_AND_ASSIGN(
      std::string body,
      HttpGet(absl::StrCat("http://127.0.0.1:", server->metrics_port(),
                           "/metrics")));
  EXPECT_THAT(body, HasSubstr("grpc_server_handled_total{grpc_code=\"OK\","
                              "grpc_method=\"Info\",grpc_service=\"hangar.v1."
                              "RunnerService\"} 3"));
  EXPECT_THAT(body, HasSubstr("grpc_server_handling_seconds_count{grpc_method="
                              "\"Info\",grpc_service=\"hangar.v1."
                              "RunnerService\"} 3"));
  EXPECT_THAT(body, HasSubstr("grpc_server_in_flight"));
}

TEST(ServerTest, BadOptionsAreRefusedWithTheFieldNamed) {
  MetricsRegistry metrics;
  HeldRunner runner;
  EXPECT_THAT(Server::Create({.port = 70000}, {&runner}, &metrics),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("port")));
  EXPECT_THAT(
      Server::Create({.tls_cert_file = "/nonexistent.pem"}, {&runner},
                     &metrics),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls_key_file")));
  EXPECT_THAT(Server::Create({.host = "203.0.113.77"}, {&runner}, &metrics),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("cannot listen on 203.0.113.77")));
}

TEST(ServerTest, PortInUseIsUnavailable) {
  HeldRunner runner;
  MetricsRegistry metrics;
  auto first = StartServer(&runner, &metrics);
  ASSERT_NE(first, nullptr);
  HeldRunner other;
  MetricsRegistry other_metrics;
  EXPECT_THAT(Server::Create({.port = first->port()}, {&other},
                             &other_metrics),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(absl::StrCat(first->port()))));
}

TEST(AdminAuthTest, AdminOnlyCallsNeedTheTokenButHealthAndReflectionDoNot) {
  auto token = auth::AdminToken::FromString("s3cret-admin-token-0123456789");
  ASSERT_THAT(token, IsOk());
  HeldRunner runner;
  runner.admin_token = token->get();
  MetricsRegistry metrics;
  auto server = StartServer(&runner, &metrics);
  ASSERT_NE(server, nullptr);
  server->SetServing(true);

  ReflectionClient client(Dial(*server));
  EXPECT_THAT(client.ListServices(), IsOk());
  EXPECT_THAT(client.CallUnary("grpc.health.v1.Health/Check", "{}"), IsOk());
  auto denied = client.CallUnary("hangar.v1.RunnerService/Info", "{}");
  EXPECT_THAT(denied, StatusIs(absl::StatusCode::kUnauthenticated,
                               HasSubstr("admin token")));
  EXPECT_THAT(client.CallUnary("hangar.v1.RunnerService/Info", "{}",
                               {{"authorization", "Bearer wrong-token-000000"}}),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       Not(HasSubstr("wrong-token"))));
  EXPECT_THAT(client.CallUnary("hangar.v1.RunnerService/Info", "{}",
                               {{"authorization",
                                 (*token)->AuthorizationHeader()}}),
              IsOk());

  grpc::ClientContext context;
  AttachAdminToken(token->get(), &context);
  v1::RunnerInfo info;
  EXPECT_TRUE(
      v1::RunnerService::NewStub(Dial(*server))->Info(&context, {}, &info).ok());
}

// Waits (in real time, up to a deadline) for `condition` to hold.
template <typename Condition>
bool WaitFor(Condition condition, absl::Duration timeout = absl::Seconds(30)) {
  absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

TEST(ServerTest, SigtermDrainsInFlightCallsAndTurnsHealthNotServing) {
  HeldRunner runner;
  MetricsRegistry metrics;
  auto server = StartServer(&runner, &metrics);
  ASSERT_NE(server, nullptr);
  server->SetServing(true);
  auto channel = Dial(*server);

  // A health watcher, to see NOT_SERVING when shutdown begins.
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext watch_context;
  auto watch = health->Watch(&watch_context, {});
  HealthResponse seen;
  ASSERT_TRUE(watch->Read(&seen));
  ASSERT_EQ(seen.status(), HealthResponse::SERVING);

  // An in-flight streaming call, held open by the service.
  auto stub = v1::RunnerService::NewStub(channel);
  grpc::ClientContext call_context;
  v1::RunnerGenerateRequest request;
  request.add_sequences()->set_prompt("hi");
  auto call = stub->Generate(&call_context, request);
  v1::RunnerGenerateResponse chunk;
  ASSERT_TRUE(call->Read(&chunk));
  EXPECT_EQ(chunk.delta(), "hello");
  ASSERT_TRUE(runner.started_.WaitForNotificationWithTimeout(absl::Seconds(30)));

  std::atomic<bool> hook_ran{false};
  server->OnShutdown([&] { hook_ran = true; });
  // With the handlers installed, a real SIGTERM starts the drain.
  server->HandleSignals();
  absl::Notification terminated;
  std::thread waiter([&] {
    server->WaitForTermination();
    terminated.Notify();
  });
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);

  ASSERT_TRUE(watch->Read(&seen));
  EXPECT_EQ(seen.status(), HealthResponse::NOT_SERVING);
  // Draining: the server waits for the in-flight call instead of ending.
  EXPECT_FALSE(terminated.HasBeenNotified());
  // New calls are refused while draining.
  ASSERT_TRUE(WaitFor([&] {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(2));
    v1::RunnerInfo info;
    return !stub->Info(&context, {}, &info).ok();
  }));

  runner.release_.Notify();
  ASSERT_TRUE(call->Read(&chunk));
  EXPECT_EQ(chunk.delta(), " world");
  EXPECT_EQ(chunk.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_TRUE(call->Finish().ok());
  ASSERT_TRUE(terminated.WaitForNotificationWithTimeout(absl::Seconds(30)));
  waiter.join();
  EXPECT_TRUE(hook_ran);
}

}  // namespace
}  // namespace hangar
