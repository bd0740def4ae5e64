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
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/server/admin_auth.h"
#include "common/server/call_context.h"
#include "common/server/reflection_client.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "hangar/v1/catalog.grpc.pb.h"
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
    std::shared_ptr<CallContext> call = CallContext::Current();
    absl::MutexLock lock(&mu_);
    info_deadline_ = call == nullptr ? absl::InfinitePast() : call->deadline();
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
  absl::Time InfoDeadline() {
    absl::MutexLock lock(&mu_);
    return info_deadline_;
  }

  absl::Mutex mu_;
  // The CallContext deadline Info saw (InfinitePast: none).
  absl::Time info_deadline_ ABSL_GUARDED_BY(mu_);
};

std::unique_ptr<Server> StartServer(HeldRunner* runner,
                                    MetricsRegistry* metrics,
                                    absl::Duration drain = absl::Seconds(30)) {
  auto server = Server::Create(
      {.name = "test", .port = 0, .metrics_port = 0, .drain_timeout = drain},
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

// Asks Check for `service`; returns the status, or UNKNOWN when the call
// failed (`code` says how).
HealthResponse::ServingStatus CheckHealth(
    grpc::health::v1::Health::Stub& health, const std::string& service,
    grpc::StatusCode* code = nullptr) {
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  HealthResponse response;
  grpc::ClientContext context;
  grpc::Status status = health.Check(&context, request, &response);
  if (code != nullptr) *code = status.error_code();
  return status.ok() ? response.status() : HealthResponse::UNKNOWN;
}

TEST(ServerTest, EveryRegisteredServiceHasAHealthEntryThatFlipsTogether) {
  HeldRunner runner;
  MetricsRegistry metrics;
  auto server = StartServer(&runner, &metrics);
  ASSERT_NE(server, nullptr);
  auto health = grpc::health::v1::Health::NewStub(Dial(*server));
  const std::vector<std::string> entries = {
      "", "hangar.v1.RunnerService", "grpc.health.v1.Health",
      "grpc.reflection.v1alpha.ServerReflection"};
  for (const std::string& entry : entries) {
    grpc::StatusCode code;
    EXPECT_EQ(CheckHealth(*health, entry, &code), HealthResponse::NOT_SERVING)
        << entry << " code " << code;
  }
  server->SetServing(true);
  for (const std::string& entry : entries) {
    EXPECT_EQ(CheckHealth(*health, entry), HealthResponse::SERVING) << entry;
  }

  // A dependency going down turns every entry NOT_SERVING, a Watch sees it,
  // and its recovery turns them back.
  grpc::ClientContext watch_context;
  grpc::health::v1::HealthCheckRequest watch_request;
  watch_request.set_service("hangar.v1.RunnerService");
  auto watch = health->Watch(&watch_context, watch_request);
  HealthResponse seen;
  ASSERT_TRUE(watch->Read(&seen));
  EXPECT_EQ(seen.status(), HealthResponse::SERVING);
  std::function<void(bool)> report = server->HealthReporter("database");
  report(false);
  ASSERT_TRUE(watch->Read(&seen));
  EXPECT_EQ(seen.status(), HealthResponse::NOT_SERVING);
  for (const std::string& entry : entries) {
    EXPECT_EQ(CheckHealth(*health, entry), HealthResponse::NOT_SERVING)
        << entry;
  }
  report(true);
  ASSERT_TRUE(watch->Read(&seen));
  EXPECT_EQ(seen.status(), HealthResponse::SERVING);
  for (const std::string& entry : entries) {
    EXPECT_EQ(CheckHealth(*health, entry), HealthResponse::SERVING) << entry;
  }
  // The server not ready wins over healthy dependencies, and vice versa.
  server->SetServing(false);
  EXPECT_EQ(CheckHealth(*health, "hangar.v1.RunnerService"),
            HealthResponse::NOT_SERVING);
  ASSERT_TRUE(watch->Read(&seen));
  EXPECT_EQ(seen.status(), HealthResponse::NOT_SERVING);
  // A client that cancels ends its stream on the server at once.
  EXPECT_EQ(server->health().watchers(), 1);
  watch_context.TryCancel();
  EXPECT_FALSE(watch->Read(&seen));
  EXPECT_EQ(watch->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitFor([&] { return server->health().watchers() == 0; }));
}

// A RunnerService whose Info waits until released, counting the calls that
// are inside it.
class BlockingRunner final : public v1::RunnerService::Service {
 public:
  grpc::Status Info(grpc::ServerContext*, const v1::RunnerInfoRequest*,
                    v1::RunnerInfo*) override {
    {
      absl::MutexLock lock(&mu_);
      ++inside_;
    }
    release_.WaitForNotification();
    return grpc::Status::OK;
  }
  int inside() {
    absl::MutexLock lock(&mu_);
    return inside_;
  }
  absl::Notification release_;

 private:
  absl::Mutex mu_;
  int inside_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST(ServerTest, MaxThreadsBoundsTheThreadsServingCalls) {
  BlockingRunner runner;
  MetricsRegistry metrics;
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<Server> server,
      Server::Create({.name = "test", .port = 0, .max_threads = 4}, {&runner},
                     &metrics));
  auto stub = v1::RunnerService::NewStub(Dial(*server));
  constexpr int kCalls = 12;
  absl::Mutex mu;
  int exhausted = 0;
  int ok = 0;
  std::vector<std::string> others;
  std::vector<std::thread> callers;
  for (int i = 0; i < kCalls; ++i) {
    callers.emplace_back([&] {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::seconds(30));
      v1::RunnerInfo info;
      grpc::Status status = stub->Info(&context, {}, &info);
      absl::MutexLock lock(&mu);
      if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
        ++exhausted;
      } else if (status.ok()) {
        ++ok;
      } else {
        others.push_back(
            absl::StrCat(status.error_code(), " ", status.error_message()));
      }
    });
  }
  // Calls beyond the quota are refused at once with RESOURCE_EXHAUSTED
  // instead of each getting a thread (the other calls hold theirs).
  ASSERT_TRUE(WaitFor([&] {
    absl::MutexLock lock(&mu);
    return runner.inside() + exhausted == kCalls;
  })) << "inside "
      << runner.inside() << "; " << [&] {
           absl::MutexLock lock(&mu);
           return absl::StrCat(
               exhausted, " refused; others: ", absl::StrJoin(others, "; "));
         }();
  EXPECT_LE(runner.inside(), 4);
  EXPECT_GE(runner.inside(), 1);
  // Released, the calls that ran finish; nothing else happened to any call.
  runner.release_.Notify();
  for (std::thread& caller : callers) caller.join();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(ok, runner.inside());
  EXPECT_EQ(ok + exhausted, kCalls) << absl::StrJoin(others, "; ");
}

TEST(ServerTest, HandlersSeeTheirCallsDeadlineThroughCallContext) {
  HeldRunner runner;
  MetricsRegistry metrics;
  auto server = StartServer(&runner, &metrics);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(CallContext::Current(), nullptr);
  EXPECT_EQ(CallContext::CurrentDeadline(), absl::InfiniteFuture());
  auto stub = v1::RunnerService::NewStub(Dial(*server));
  grpc::ClientContext context;
  const absl::Time deadline = absl::Now() + absl::Seconds(7);
  context.set_deadline(absl::ToChronoTime(deadline));
  v1::RunnerInfo info;
  ASSERT_TRUE(stub->Info(&context, {}, &info).ok());
  EXPECT_LT(absl::AbsDuration(runner.InfoDeadline() - deadline),
            absl::Milliseconds(100));

  // Without a deadline the context says so.
  grpc::ClientContext unbounded;
  ASSERT_TRUE(stub->Info(&unbounded, {}, &info).ok());
  EXPECT_EQ(runner.InfoDeadline(), absl::InfiniteFuture());
}

// A catalog service with a real GetModel, served synchronously or through
// the callback API, for requests that do not parse.
class SyncCatalog final : public v1::CatalogService::Service {
 public:
  grpc::Status GetModel(grpc::ServerContext*,
                        const v1::GetModelRequest* request,
                        v1::Model* model) override {
    model->set_name(request->name());
    return grpc::Status::OK;
  }
};

class CallbackCatalog final : public v1::CatalogService::CallbackService {
 public:
  grpc::ServerUnaryReactor* GetModel(grpc::CallbackServerContext* context,
                                     const v1::GetModelRequest* request,
                                     v1::Model* model) override {
    model->set_name(request->name());
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

// Sends `bytes` as the request of `method` without any client-side parsing.
grpc::Status RawCall(const std::shared_ptr<grpc::Channel>& channel,
                     const std::string& method, const std::string& bytes) {
  grpc::GenericStub stub(channel);
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  absl::Notification done;
  grpc::Status result;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                 [&](grpc::Status status) {
                   result = std::move(status);
                   done.Notify();
                 });
  done.WaitForNotification();
  return result;
}

template <typename Service>
void ExpectInvalidUtf8IsInvalidArgument() {
  Service service;
  MetricsRegistry metrics;
  auto server = Server::Create({.name = "test", .port = 0, .metrics_port = 0},
                               {&service}, &metrics);
  ASSERT_THAT(server, IsOk());
  (*server)->SetServing(true);
  auto channel = Dial(**server);
  // GetModelRequest.name (field 1, length-delimited) = "\xff\xfe".
  const std::string invalid_utf8("\x0a\x02\xff\xfe", 4);
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 3; ++i) {
    grpc::Status status =
        RawCall(channel, "/hangar.v1.CatalogService/GetModel", invalid_utf8);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(status.error_message(),
              "hangar.v1.GetModelRequest.name: invalid UTF-8 in a string "
              "field");
  }
  // Bytes that are no message at all (a truncated field).
  grpc::Status malformed =
      RawCall(channel, "/hangar.v1.CatalogService/GetModel",
              std::string("\x0a\x09"
                          "ab"));
  const std::string logged = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(malformed.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(malformed.error_message(),
              HasSubstr("/hangar.v1.CatalogService/GetModel"));
  EXPECT_THAT(logged, Not(HasSubstr("UTF-8"))) << logged;

  // A method the server does not have stays UNIMPLEMENTED.
  grpc::Status unknown =
      RawCall(channel, "/hangar.v1.CatalogService/NoSuchMethod",
              std::string("\x0a\x02"
                          "ok"));
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::UNIMPLEMENTED)
      << unknown.error_message();
  grpc::Status unknown_service = RawCall(channel, "/no.Such/Method",
                                         std::string("\x0a\x02"
                                                     "ok"));
  EXPECT_EQ(unknown_service.error_code(), grpc::StatusCode::UNIMPLEMENTED)
      << unknown_service.error_message();

  // A valid request still works, and nothing leaked into it.
  grpc::Status ok = RawCall(channel, "/hangar.v1.CatalogService/GetModel",
                            std::string("\x0a\x02"
                                        "ok"));
  EXPECT_TRUE(ok.ok()) << ok.error_message();

  ASSERT_OK_AND_ASSIGN(
      std::string body,
      HttpGet(absl::StrCat("http://127.0.0.1:", (*server)->metrics_port(),
                           "/metrics")));
  EXPECT_THAT(body, HasSubstr("grpc_server_invalid_requests_total{grpc_method="
                              "\"GetModel\",grpc_service=\"hangar.v1."
                              "CatalogService\",reason=\"invalid_utf8\"} 3"));
  EXPECT_THAT(body, HasSubstr("reason=\"malformed\"} 1"));
  EXPECT_THAT(body, HasSubstr("grpc_server_handled_total{grpc_code=\"INVALID_"
                              "ARGUMENT\",grpc_method=\"GetModel\""));
}

TEST(ServerTest, InvalidUtf8IsInvalidArgumentNamingTheFieldSync) {
  ExpectInvalidUtf8IsInvalidArgument<SyncCatalog>();
}

TEST(ServerTest, InvalidUtf8IsInvalidArgumentNamingTheFieldCallback) {
  ExpectInvalidUtf8IsInvalidArgument<CallbackCatalog>();
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
  EXPECT_THAT(Server::Create({.max_threads = 1}, {&runner}, &metrics),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("max_threads: must be in [4, 4096]; was 1")));
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
  EXPECT_THAT(Server::Create({.port = first->port()}, {&other}, &other_metrics),
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
  EXPECT_THAT(
      client.CallUnary("hangar.v1.RunnerService/Info", "{}",
                       {{"authorization", "Bearer wrong-token-000000"}}),
      StatusIs(absl::StatusCode::kUnauthenticated,
               Not(HasSubstr("wrong-token"))));
  EXPECT_THAT(
      client.CallUnary("hangar.v1.RunnerService/Info", "{}",
                       {{"authorization", (*token)->AuthorizationHeader()}}),
      IsOk());

  grpc::ClientContext context;
  AttachAdminToken(token->get(), &context);
  v1::RunnerInfo info;
  EXPECT_TRUE(v1::RunnerService::NewStub(Dial(*server))
                  ->Info(&context, {}, &info)
                  .ok());
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
  ASSERT_TRUE(
      runner.started_.WaitForNotificationWithTimeout(absl::Seconds(30)));

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
  // The health stream ends instead of holding the drain open.
  EXPECT_FALSE(watch->Read(&seen));
  grpc::Status watch_end = watch->Finish();
  EXPECT_EQ(watch_end.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(watch_end.error_message(), "server shutting down");
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
