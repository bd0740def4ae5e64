// hangar-gateway's GatewayServer against real hangar-runner processes on a
// tiny model and a fake control plane on loopback: answers with text (unary
// and streaming), the API-key matrix and revocation, validation, batching,
// back-pressure, per-sequence cancellation, retries after kill -9 of a
// runner, revision switches, usage and load reports, and the drain.
#include <signal.h>

#include <atomic>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/testing/ports.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "tests/integration/gateway/gateway_test_base.h"

namespace hangar::testing {
namespace {

using ::hangar::testing::IsOkAndHolds;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

class GatewayTest : public GatewayTestBase {};

TEST_F(GatewayTest, GenerateAndGenerateStreamAnswerWithText) {
  StartGateway();
  v1::GenerateResponse response;
  v1::GenerateRequest request = Request(12);
  request.set_request_id("my-request-1");
  grpc::Status status = Generate(request, &response, key_a_.plaintext);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(response.text().empty());
  EXPECT_EQ(response.deployment(), "dep-a");
  EXPECT_EQ(response.revision(), 1);
  EXPECT_EQ(response.request_id(), "my-request-1");
  EXPECT_EQ(response.usage().completion_tokens(), 12);
  EXPECT_GT(response.usage().prompt_tokens(), 0);
  EXPECT_EQ(response.finish_reason(), v1::FINISH_REASON_LENGTH);

  // By display name, streamed: the deltas add up to the same greedy text.
  request.set_deployment("alpha");
  request.clear_request_id();
  StreamResult stream = GenerateStream(request, key_a_.plaintext);
  ASSERT_TRUE(stream.status.ok()) << stream.status.error_message();
  EXPECT_GT(stream.messages, 1);
  EXPECT_EQ(stream.text, response.text());
  EXPECT_EQ(stream.last.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(stream.last.usage().completion_tokens(), 12);
  EXPECT_EQ(stream.last.deployment(), "dep-a");
  EXPECT_THAT(stream.last.request_id(), HasSubstr("req-"));

  // x-api-key works too.
  grpc::ClientContext context;
  context.AddMetadata("x-api-key", key_a_.plaintext);
  v1::GenerateResponse again;
  EXPECT_TRUE(stub_->Generate(&context, Request(2), &again).ok());

  EXPECT_EQ(Counter("hangar_gateway_requests_total"), 3);
  EXPECT_EQ(Histogram("hangar_gateway_time_to_first_token_seconds").second, 3);
  EXPECT_EQ(Counter("hangar_gateway_completion_tokens_total"), 26);
}

TEST_F(GatewayTest, ListDeploymentsShowsTheKeysDeployment) {
  StartGateway();
  grpc::ClientContext context;
  Authorize(context, key_a_.plaintext);
  v1::ListInferenceDeploymentsResponse response;
  ASSERT_TRUE(stub_->ListDeployments(&context, {}, &response).ok());
  ASSERT_EQ(response.deployments_size(), 1);
  EXPECT_EQ(response.deployments(0).name(), "dep-a");
  EXPECT_EQ(response.deployments(0).display_name(), "alpha");
  EXPECT_EQ(response.deployments(0).context_length(), kContext);
  EXPECT_EQ(response.deployments(0).sampling().max_tokens(), 3000);
  EXPECT_TRUE(response.deployments(0).ready());
}

TEST_F(GatewayTest, EveryInferenceMethodRefusesACallWithoutAKey) {
  StartGateway();
  {
    grpc::ClientContext context;
    v1::GenerateResponse response;
    EXPECT_EQ(stub_->Generate(&context, Request(1), &response).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext context;
    StreamResult stream = GenerateStream(Request(1), "", &context);
    EXPECT_EQ(stream.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(stream.messages, 0);
  }
  {
    grpc::ClientContext context;
    v1::ListInferenceDeploymentsResponse response;
    EXPECT_EQ(stub_->ListDeployments(&context, {}, &response).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_GE(Counter("hangar_gateway_auth_failures_total"), 3);
}

TEST_F(GatewayTest, AuthMatrix) {
  control_->deployment().AddKey("key-c", "dep-a", auth::GenerateApiKey()->hash);
  absl::StatusOr<auth::ApiKey> revoked = auth::GenerateApiKey();
  ASSERT_TRUE(revoked.ok());
  control_->deployment().AddKey("key-r", "dep-a", revoked->hash);
  control_->deployment().RevokeKey("key-r");
  StartGateway();
  absl::StatusOr<auth::ApiKey> unknown = auth::GenerateApiKey();
  ASSERT_TRUE(unknown.ok());

  auto code = [&](const std::string& authorization) {
    grpc::ClientContext context;
    if (!authorization.empty()) {
      context.AddMetadata("authorization", authorization);
    }
    v1::GenerateResponse response;
    return stub_->Generate(&context, Request(1), &response).error_code();
  };
  EXPECT_EQ(code(""), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(code("Bearer not-a-key"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(code("Basic " + key_a_.plaintext),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(code("Bearer " + unknown->plaintext),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(code("Bearer " + revoked->plaintext),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(code("Bearer " + key_b_.plaintext),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(code("Bearer " + key_a_.plaintext), grpc::StatusCode::OK);

  // A revocation on the WatchApiKeys stream takes effect within 2 s.
  const absl::Time revoked_at = absl::Now();
  control_->deployment().RevokeKey("key-a");
  EXPECT_TRUE(WaitUntil(
      [&] {
        return code("Bearer " + key_a_.plaintext) ==
               grpc::StatusCode::UNAUTHENTICATED;
      },
      absl::Seconds(2)));
  EXPECT_LT(absl::Now() - revoked_at, absl::Seconds(2));
  // And a key added later works without a restart.
  absl::StatusOr<auth::ApiKey> added = auth::GenerateApiKey();
  control_->deployment().AddKey("key-n", "dep-a", added->hash);
  EXPECT_TRUE(WaitUntil(
      [&] {
        return code("Bearer " + added->plaintext) == grpc::StatusCode::OK;
      },
      absl::Seconds(2)));
}

TEST_F(GatewayTest, BadRequestsNameTheField) {
  StartGateway();
  auto status = [&](const v1::GenerateRequest& request) {
    v1::GenerateResponse response;
    return Generate(request, &response, key_a_.plaintext);
  };
  v1::GenerateRequest request = Request(4);
  request.set_deployment("");
  grpc::Status result = status(request);
  EXPECT_EQ(result.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(result.error_message(), HasSubstr("deployment"));

  request = Request(4);
  request.set_prompt("");
  result = status(request);
  EXPECT_EQ(result.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(result.error_message(), HasSubstr("prompt"));

  request = Request(4);
  request.set_prompt(std::string(2 << 20, 'a'));
  result = status(request);
  EXPECT_EQ(result.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(result.error_message(), HasSubstr("prompt: must be 1 byte"));

  request = Request(4);
  request.set_request_id(std::string(65, 'x'));
  result = status(request);
  EXPECT_EQ(result.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(result.error_message(), HasSubstr("request_id"));

  // Overrides may only tighten the deployment's values (temperature 1,
  // max_tokens 3000).
  request = Request(4);
  request.mutable_sampling()->set_temperature(1.5f);
  result = status(request);
  EXPECT_EQ(result.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(result.error_message(), HasSubstr("sampling.temperature"));
  request = Request(4000);
  result = status(request);
  EXPECT_EQ(result.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(result.error_message(), HasSubstr("sampling.max_tokens"));

  // The runner refuses a prompt over the model's context; the client sees
  // its own field, not the runner's sequences[i].
  request = Request(4);
  std::string long_prompt;
  for (int i = 0; i < 4000; ++i) long_prompt += "word ";
  request.set_prompt(long_prompt);
  result = status(request);
  EXPECT_EQ(result.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(result.error_message(),
              StartsWith("prompt: must be shorter than the context"));

  request = Request(4, "no-such-deployment");
  EXPECT_EQ(status(request).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(GatewayTest, ConcurrentRequestsAreBatched) {
  control_->scheduler().SetRoutes(DefaultRoutes(/*batch_size=*/8));
  StartGateway([](gateway::GatewayServer::Options& options) {
    options.max_queue_delay = absl::Milliseconds(500);
  });
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&] {
      v1::GenerateResponse response;
      if (Generate(Request(8), &response, key_a_.plaintext).ok() &&
          response.usage().completion_tokens() == 8) {
        ++ok;
      }
    });
  }
  for (std::thread& client : clients) client.join();
  EXPECT_EQ(ok.load(), 8);
  auto [sum, count] = Histogram("hangar_gateway_batch_size");
  EXPECT_EQ(sum, 8);
  EXPECT_LT(count, 8) << "every request went alone";
  EXPECT_GT(sum / count, 1.0);
}

TEST_F(GatewayTest, FullQueueIsResourceExhaustedWithARetryHint) {
  // One slot at the replica and one place in the queue.
  control_->scheduler().SetRoutes(
      {MakeRoute("dep-a", "alpha", 1, 1, {(*runners_)[0].get()},
                 /*max_batch=*/1)});
  StartGateway(
      [](gateway::GatewayServer::Options& options) {
        options.max_queue_size = 1;
      },
      /*revisions=*/1);
  grpc::ClientContext first_context, second_context;
  Authorize(first_context, key_a_.plaintext);
  Authorize(second_context, key_a_.plaintext);
  absl::Notification first_token;
  std::thread first([&] {
    GenerateStream(Request(3000), "", &first_context,
                   [&](const v1::GenerateStreamResponse&) {
                     if (!first_token.HasBeenNotified()) first_token.Notify();
                   });
  });
  ASSERT_TRUE(first_token.WaitForNotificationWithTimeout(absl::Seconds(30)));
  std::thread second(
      [&] { GenerateStream(Request(3000), "", &second_context); });
  ASSERT_TRUE(WaitUntil([&] {
    for (const v1::RevisionLoad& load : gateway_->dispatcher().Load()) {
      if (load.deployment() == "dep-a" && load.queued() == 1) return true;
    }
    return false;
  }));
  grpc::ClientContext context;
  Authorize(context, key_a_.plaintext);
  v1::GenerateResponse response;
  grpc::Status status = stub_->Generate(&context, Request(4), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  auto hint = context.GetServerTrailingMetadata().find("retry-after-ms");
  ASSERT_NE(hint, context.GetServerTrailingMetadata().end());
  int64_t retry_ms = 0;
  EXPECT_TRUE(absl::SimpleAtoi(
      absl::string_view(hint->second.data(), hint->second.size()), &retry_ms));
  EXPECT_GT(retry_ms, 0);
  first_context.TryCancel();
  second_context.TryCancel();
  first.join();
  second.join();
  // Both cancelled calls are answered and leave nothing behind.
  EXPECT_TRUE(WaitUntil([&] { return gateway_->dispatcher().pending() == 0; }));
}

TEST_F(GatewayTest, ClientCancelMidStreamSparesTheRestOfItsBatch) {
  StartGateway([](gateway::GatewayServer::Options& options) {
    options.max_queue_delay = absl::Milliseconds(500);
  });
  grpc::ClientContext cancelled;
  Authorize(cancelled, key_a_.plaintext);
  absl::Notification got_token;
  StreamResult cancelled_result;
  std::thread victim([&] {
    cancelled_result = GenerateStream(Request(3000), "", &cancelled,
                                      [&](const v1::GenerateStreamResponse&) {
                                        if (!got_token.HasBeenNotified())
                                          got_token.Notify();
                                      });
  });
  std::vector<StreamResult> others(3);
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back(
        [&, i] { others[i] = GenerateStream(Request(150), key_a_.plaintext); });
  }
  ASSERT_TRUE(got_token.WaitForNotificationWithTimeout(absl::Seconds(30)));
  cancelled.TryCancel();
  victim.join();
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(cancelled_result.status.error_code(), grpc::StatusCode::CANCELLED);
  for (const StreamResult& other : others) {
    EXPECT_TRUE(other.status.ok()) << other.status.error_message();
    EXPECT_EQ(other.last.usage().completion_tokens(), 150);
  }
  // The four went out together (batch size 4 fills at once).
  auto [sum, count] = Histogram("hangar_gateway_batch_size");
  EXPECT_EQ(sum, 4);
  EXPECT_EQ(count, 1);
  // The runner stopped the cancelled sequence: it holds nothing now.
  EXPECT_TRUE(
      WaitUntil([&] { return (*runners_)[0]->Info().active_sequences() == 0; },
                absl::Seconds(10)));
}

TEST_F(GatewayTest, RevisionSwitchFailsNoRequest) {
  StartGateway();
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  std::atomic<int> on_revision_2{0};
  for (int i = 0; i < 6; ++i) {
    clients.emplace_back([&] {
      v1::GenerateResponse response;
      grpc::Status status = Generate(Request(200), &response, key_a_.plaintext);
      if (status.ok()) ++ok;
      if (response.revision() == 2) ++on_revision_2;
      EXPECT_TRUE(status.ok()) << status.error_message();
    });
  }
  // While they run: revision 2 serves, revision 1's replica drains.
  ASSERT_TRUE(
      WaitUntil([&] { return (*runners_)[0]->Info().active_sequences() > 0; }));
  v1::Route old_route = DefaultRoutes()[0];
  old_route.set_serving(false);
  old_route.mutable_replicas(0)->set_state(v1::REPLICA_STATE_DRAINING);
  v1::Route new_route =
      MakeRoute("dep-a", "alpha", 2, 4, {(*runners_)[0].get()});
  control_->scheduler().SetRoutes({old_route, new_route, DefaultRoutes()[1]});
  ASSERT_TRUE(WaitUntil([&] {
    auto route = gateway_->routes().Resolve("dep-a");
    return route.ok() && route->revision == 2;
  }));
  v1::GenerateResponse response;
  ASSERT_TRUE(Generate(Request(3), &response, key_a_.plaintext).ok());
  EXPECT_EQ(response.revision(), 2);
  for (std::thread& client : clients) client.join();
  EXPECT_EQ(ok.load(), 6);
}

TEST_F(GatewayTest, UsageReachesTheDeploymentServiceOnceWithItsTokens) {
  control_->deployment().FailNextUsage(1);
  StartGateway();
  v1::GenerateResponse first, second;
  ASSERT_TRUE(Generate(Request(5), &first, key_a_.plaintext).ok());
  ASSERT_TRUE(Generate(Request(7), &second, key_a_.plaintext).ok());
  int64_t prompt = 0, completion = 0, requests = 0;
  ASSERT_TRUE(WaitUntil(
      [&] {
        prompt = completion = requests = 0;
        for (const v1::RecordUsageRequest& call :
             control_->deployment().usage()) {
          for (const v1::TokenUsageReport& report : call.reports()) {
            EXPECT_EQ(report.api_key(), "key-a");
            EXPECT_EQ(report.deployment(), "dep-a");
            EXPECT_EQ(report.revision(), 1);
            requests += report.requests();
            prompt += report.tokens().prompt_tokens();
            completion += report.tokens().completion_tokens();
          }
        }
        return requests == 2;
      },
      absl::Seconds(10)));
  EXPECT_EQ(completion, 12);
  EXPECT_EQ(prompt,
            first.usage().prompt_tokens() + second.usage().prompt_tokens());
  // The failed attempt was retried under the same report id.
  std::vector<std::string> attempts = control_->deployment().attempts();
  ASSERT_GE(attempts.size(), 2u);
  EXPECT_EQ(attempts[0], attempts[1]);
  EXPECT_EQ(attempts[0], control_->deployment().usage()[0].report_id());
}

TEST_F(GatewayTest, UsageIsFlushedAtShutdown) {
  StartGateway([](gateway::GatewayServer::Options& options) {
    options.report_interval = absl::Hours(1);  // Only the flush reports.
  });
  v1::GenerateResponse response;
  ASSERT_TRUE(Generate(Request(3), &response, key_a_.plaintext).ok());
  EXPECT_THAT(control_->deployment().usage(), IsEmpty());
  gateway_->Shutdown();
  ASSERT_EQ(control_->deployment().usage().size(), 1u);
  EXPECT_EQ(
      control_->deployment().usage()[0].reports(0).tokens().completion_tokens(),
      3);
}

TEST_F(GatewayTest, LoadIsReportedToTheScheduler) {
  StartGateway();
  v1::GenerateResponse response;
  ASSERT_TRUE(Generate(Request(2), &response, key_a_.plaintext).ok());
  ASSERT_TRUE(
      WaitUntil([&] { return control_->scheduler().loads().size() >= 3; },
                absl::Seconds(5)));
  for (const v1::ReportLoadRequest& load : control_->scheduler().loads()) {
    EXPECT_EQ(load.reporter(), "gw-test");
    EXPECT_TRUE(load.has_report_time());
    EXPECT_EQ(load.ttl().seconds(), 10);
  }
  v1::ReportLoadRequest last = control_->scheduler().loads().back();
  ASSERT_EQ(last.loads_size(), 2);
  EXPECT_EQ(last.loads(0).deployment(), "dep-a");
  EXPECT_EQ(last.loads(0).revision(), 1);
  EXPECT_EQ(last.loads(0).queued(), 0);
}

TEST_F(GatewayTest, ShutdownEndsStreamsWithUnavailable) {
  StartGateway([](gateway::GatewayServer::Options& options) {
    // Shorter than the rest of the generation (about a second).
    options.server.drain_timeout = absl::Milliseconds(200);
  });
  grpc::ClientContext context;
  Authorize(context, key_a_.plaintext);
  absl::Notification got_token;
  StreamResult result;
  std::thread client([&] {
    result = GenerateStream(Request(3000), "", &context,
                            [&](const v1::GenerateStreamResponse&) {
                              if (!got_token.HasBeenNotified()) {
                                got_token.Notify();
                              }
                            });
  });
  ASSERT_TRUE(got_token.WaitForNotificationWithTimeout(absl::Seconds(30)));
  const absl::Time start = absl::Now();
  gateway_->Shutdown();
  client.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << result.status.error_message();
  EXPECT_GT(result.messages, 0);
  // Its sequence was cancelled on the runner.
  EXPECT_TRUE(
      WaitUntil([&] { return (*runners_)[0]->Info().active_sequences() == 0; },
                absl::Seconds(10)));
}

TEST_F(GatewayTest, KillOfARunnerRetriesTheRequestOnTheOther) {
  std::unique_ptr<RunnerProcess> doomed =
      RunnerProcess::Start(*model_dir_, kRunnerBatch);
  std::unique_ptr<RunnerProcess> survivor =
      RunnerProcess::Start(*model_dir_, kRunnerBatch);
  ASSERT_NE(doomed, nullptr);
  ASSERT_NE(survivor, nullptr);
  control_->scheduler().SetRoutes(
      {MakeRoute("dep-a", "alpha", 1, 1, {doomed.get(), survivor.get()}),
       DefaultRoutes()[1]});
  StartGateway();
  // Whichever replica takes the call is killed before it answers.
  v1::GenerateResponse response;
  grpc::Status status;
  std::thread client(
      [&] { status = Generate(Request(3000), &response, key_a_.plaintext); });
  RunnerProcess* busy = nullptr;
  ASSERT_TRUE(WaitUntil([&] {
    for (RunnerProcess* runner : {doomed.get(), survivor.get()}) {
      if (runner->Info().active_sequences() > 0) busy = runner;
    }
    return busy != nullptr;
  }));
  RunnerProcess* other = busy == doomed.get() ? survivor.get() : doomed.get();
  busy->process->Signal(SIGKILL);
  client.join();
  ASSERT_TRUE(status.ok()) << status.error_message();
  // The whole completion came from the survivor (greedy: the same text as
  // asking it directly).
  EXPECT_GT(response.usage().completion_tokens(), 0);
  EXPECT_EQ(Counter("hangar_gateway_retries_total"), 1);
  EXPECT_TRUE(other->process->Running());
  v1::RunnerGenerateRequest direct;
  v1::RunnerSequence* sequence = direct.add_sequences();
  sequence->set_id("direct");
  sequence->set_prompt(Request(1).prompt());
  sequence->mutable_sampling()->set_temperature(0);
  sequence->mutable_sampling()->set_max_tokens(3000);
  grpc::ClientContext context;
  auto reader = other->stub->Generate(&context, direct);
  std::string text;
  v1::RunnerGenerateResponse message;
  while (reader->Read(&message)) text += message.delta();
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(response.text(), text);
}

TEST_F(GatewayTest, OversizedAndMalformedRequestsAreRefusedClearly) {
  StartGateway();
  // 10 MB: past the gateway's 4 MiB message limit.
  v1::GenerateRequest request = Request(4);
  request.set_prompt(std::string(10 << 20, 'a'));
  v1::GenerateResponse response;
  grpc::Status big = Generate(request, &response, key_a_.plaintext);
  EXPECT_TRUE(big.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ||
              big.error_code() == grpc::StatusCode::INVALID_ARGUMENT)
      << big.error_code() << " " << big.error_message();
  EXPECT_FALSE(big.error_message().empty());
  // Invalid UTF-8 in GenerateRequest.prompt (field 2).
  grpc::GenericStub stub(channel_);
  // "\x0a\x05" "dep-a": deployment; "\x12\x02\xff\xfe": prompt.
  const std::string bytes(
      "\x0a\x05"
      "dep-a"
      "\x12\x02\xff\xfe",
      11);
  grpc::Slice slice(bytes);
  grpc::ByteBuffer raw(&slice, 1);
  grpc::ByteBuffer raw_response;
  grpc::ClientContext context;
  Authorize(context, key_a_.plaintext);
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&context, "/hangar.v1.InferenceService/Generate",
                 grpc::StubOptions(), &raw, &raw_response,
                 [&](grpc::Status result) {
                   status = std::move(result);
                   done.Notify();
                 });
  done.WaitForNotification();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("GenerateRequest.prompt"));
  // The gateway keeps serving.
  EXPECT_TRUE(Generate(Request(2), &response, key_a_.plaintext).ok());
}

TEST_F(GatewayTest, OneKeyPastItsConcurrencyLimitDoesNotStopOthers) {
  StartGateway([](gateway::GatewayServer::Options& options) {
    options.max_concurrent_per_key = 1;
  });
  grpc::ClientContext long_context;
  Authorize(long_context, key_a_.plaintext);
  absl::Notification got_token;
  std::thread holder([&] {
    GenerateStream(Request(3000), "", &long_context,
                   [&](const v1::GenerateStreamResponse&) {
                     if (!got_token.HasBeenNotified()) got_token.Notify();
                   });
  });
  ASSERT_TRUE(got_token.WaitForNotificationWithTimeout(absl::Seconds(30)));
  v1::GenerateResponse response;
  grpc::Status refused = Generate(Request(2), &response, key_a_.plaintext);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("API key"));
  EXPECT_TRUE(Generate(Request(2, "dep-b"), &response, key_b_.plaintext).ok());
  long_context.TryCancel();
  holder.join();
  // The slot is back once the call ended.
  EXPECT_TRUE(WaitUntil(
      [&] { return Generate(Request(2), &response, key_a_.plaintext).ok(); }));
}

TEST_F(GatewayTest, CallsAreUnavailableUntilTheFirstRouteSnapshot) {
  absl::StatusOr<int> port = PickFreeLoopbackPort();
  ASSERT_TRUE(port.ok());
  auto gateway = gateway::GatewayServer::Create(
      {.server = {.name = "gateway", .port = 0, .metrics_port = -1},
       .scheduler_address = absl::StrCat("127.0.0.1:", *port),
       .deployment_address = control_->address(),
       .gateway_id = "gw-no-routes"});
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  ASSERT_TRUE(WaitUntil([&] { return (*gateway)->keys().loaded(); }));
  auto stub = v1::InferenceService::NewStub(grpc::CreateChannel(
      (*gateway)->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  Authorize(context, key_a_.plaintext);
  v1::GenerateResponse response;
  grpc::Status status = stub->Generate(&context, Request(2), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
}

TEST_F(GatewayTest, RouteStreamReconnectsAndResyncs) {
  StartGateway();
  const int before = control_->scheduler().connections();
  control_->scheduler().EndStreams();
  std::vector<v1::Route> routes = DefaultRoutes();
  routes[0].set_display_name("alpha-renamed");
  control_->scheduler().SetRoutes(routes);
  ASSERT_TRUE(WaitUntil(
      [&] { return gateway_->routes().Resolve("alpha-renamed").ok(); },
      absl::Seconds(10)));
  EXPECT_GT(control_->scheduler().connections(), before);
  v1::GenerateRequest request = Request(2, "alpha-renamed");
  v1::GenerateResponse response;
  EXPECT_TRUE(Generate(request, &response, key_a_.plaintext).ok());
}

TEST_F(GatewayTest, TheBinaryServesAndExitsCleanlyOnSigterm) {
  // A missing dependency is one line naming the flag and exit 1.
  auto bad = ChildProcess::Start({HANGAR_GATEWAY_PATH, "--port=0"});
  ASSERT_TRUE(bad.ok());
  EXPECT_THAT((*bad)->Wait(absl::Seconds(30)), IsOkAndHolds(1));
  EXPECT_THAT((*bad)->Output(), HasSubstr("--scheduler_address: required"));

  absl::StatusOr<int> port = PickFreeLoopbackPort();
  ASSERT_TRUE(port.ok());
  // Flags and their environment fallbacks.
  auto child = ChildProcess::Start(
      {HANGAR_GATEWAY_PATH, "--host=127.0.0.1", absl::StrCat("--port=", *port),
       "--metrics_port=-1", "--scheduler_address=" + control_->address(),
       "--gateway_id=gw-process", "--drain_timeout=2s"},
      {"HANGAR_GATEWAY_DEPLOYMENT_ADDRESS=" + control_->address(),
       "HANGAR_GATEWAY_MAX_QUEUE_DELAY=1ms"});
  ASSERT_TRUE(child.ok());
  auto stub = v1::InferenceService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", *port), grpc::InsecureChannelCredentials()));
  v1::GenerateResponse response;
  ASSERT_TRUE(WaitUntil([&] {
    grpc::ClientContext context;
    Authorize(context, key_a_.plaintext, absl::Seconds(5));
    return stub->Generate(&context, Request(3), &response).ok();
  })) << (*child)->Output();
  EXPECT_EQ(response.usage().completion_tokens(), 3);

  (*child)->Signal(SIGTERM);
  EXPECT_THAT((*child)->Wait(absl::Seconds(20)), IsOkAndHolds(0))
      << (*child)->Output();
  // The shutdown flushed the usage and load went to the scheduler with the
  // instance's id.
  int64_t completion = 0;
  for (const v1::RecordUsageRequest& call : control_->deployment().usage()) {
    for (const v1::TokenUsageReport& report : call.reports()) {
      completion += report.tokens().completion_tokens();
    }
  }
  EXPECT_EQ(completion, 3);
  ASSERT_FALSE(control_->scheduler().loads().empty());
  EXPECT_EQ(control_->scheduler().loads().back().reporter(), "gw-process");
}

}  // namespace
}  // namespace hangar::testing
