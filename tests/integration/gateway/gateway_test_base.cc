#include "tests/integration/gateway/gateway_test_base.h"

#include <sys/stat.h>

#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "engine/tiny_model.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace hangar::testing {

std::string* GatewayTestBase::model_dir_ = nullptr;
std::vector<std::unique_ptr<RunnerProcess>>* GatewayTestBase::runners_ =
    nullptr;

std::unique_ptr<RunnerProcess> RunnerProcess::Start(
    const std::string& model_dir, int max_batch) {
  auto runner = std::make_unique<RunnerProcess>();
  const std::string port_file = MakeTempDir("gateway-runner") + "/port";
  auto child = ChildProcess::Start(
      {HANGAR_RUNNER_PATH, "--model=" + model_dir, "--port_file=" + port_file,
       "--metrics_port=-1", "--threads=1",
       absl::StrCat("--max_batch=", max_batch), "--max_tokens=3000"});
  EXPECT_TRUE(child.ok()) << child.status();
  if (!child.ok()) return nullptr;
  runner->process = *std::move(child);
  EXPECT_TRUE(WaitUntil([&] {
    struct stat info;
    return stat(port_file.c_str(), &info) == 0 || !runner->process->Running();
  })) << runner->process->Output();
  std::ifstream in(port_file);
  std::string port((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  runner->address =
      absl::StrCat("127.0.0.1:", absl::StripAsciiWhitespace(port));
  auto channel =
      grpc::CreateChannel(runner->address, grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  EXPECT_TRUE(WaitUntil([&] {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckResponse response;
    return health->Check(&context, {}, &response).ok() &&
           response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  })) << runner->process->Output();
  runner->stub = v1::RunnerService::NewStub(channel);
  return runner;
}

v1::RunnerInfo RunnerProcess::Info() {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(5));
  v1::RunnerInfo info;
  stub->Info(&context, {}, &info);
  return info;
}

void GatewayTestBase::SetUpTestSuite() {
  model_dir_ = new std::string(MakeTempDir("gateway-model"));
  ASSERT_THAT(engine::WriteTinyModel({.max_position_embeddings = kContext},
                                     *model_dir_),
              IsOk());
  runners_ = new std::vector<std::unique_ptr<RunnerProcess>>();
  runners_->push_back(RunnerProcess::Start(*model_dir_, kRunnerBatch));
  ASSERT_NE(runners_->back(), nullptr);
}

void GatewayTestBase::TearDownTestSuite() {
  delete runners_;
  runners_ = nullptr;
  delete model_dir_;
  model_dir_ = nullptr;
}

void GatewayTestBase::SetUp() {
  control_ = std::make_unique<FakeControlPlane>();
  absl::StatusOr<auth::ApiKey> a = auth::GenerateApiKey();
  absl::StatusOr<auth::ApiKey> b = auth::GenerateApiKey();
  ASSERT_TRUE(a.ok() && b.ok());
  key_a_ = *a;
  key_b_ = *b;
  control_->deployment().AddKey("key-a", "dep-a", key_a_.hash);
  control_->deployment().AddKey("key-b", "dep-b", key_b_.hash);
  control_->scheduler().SetRoutes(DefaultRoutes());
}

void GatewayTestBase::TearDown() {
  gateway_.reset();
  control_.reset();
}

v1::Route GatewayTestBase::MakeRoute(const std::string& deployment,
                                     const std::string& display_name,
                                     int64_t revision, int batch_size,
                                     const std::vector<RunnerProcess*>& runners,
                                     int max_batch) {
  v1::Route route;
  route.set_deployment(deployment);
  route.set_display_name(display_name);
  route.set_revision(revision);
  route.set_serving(true);
  route.set_inference_batch_size(batch_size);
  route.set_context_length(kContext);
  route.mutable_sampling()->set_temperature(1.0f);
  route.mutable_sampling()->set_max_tokens(3000);
  for (size_t i = 0; i < runners.size(); ++i) {
    v1::RouteReplica* replica = route.add_replicas();
    replica->set_name(absl::StrCat(deployment, "-", revision, "-r", i));
    replica->set_address(runners[i]->address);
    replica->set_state(v1::REPLICA_STATE_READY);
    replica->set_max_batch(max_batch > 0 ? max_batch : kRunnerBatch);
  }
  return route;
}

std::vector<v1::Route> GatewayTestBase::DefaultRoutes(int batch_size) const {
  return {MakeRoute("dep-a", "alpha", 1, batch_size, {(*runners_)[0].get()}),
          MakeRoute("dep-b", "beta", 1, batch_size, {(*runners_)[0].get()})};
}

void GatewayTestBase::StartGateway(
    std::function<void(gateway::GatewayServer::Options&)> adjust,
    size_t revisions) {
  gateway_.reset();
  gateway::GatewayServer::Options options{
      .server = {.name = "gateway", .port = 0, .metrics_port = -1},
      .scheduler_address = control_->address(),
      .deployment_address = control_->address(),
      .gateway_id = "gw-test",
      .max_queue_delay = absl::Milliseconds(5),
      .report_interval = absl::Milliseconds(200)};
  if (adjust) adjust(options);
  auto gateway = gateway::GatewayServer::Create(options);
  ASSERT_THAT(gateway, IsOk());
  gateway_ = *std::move(gateway);
  channel_ = grpc::CreateChannel(gateway_->address(),
                                 grpc::InsecureChannelCredentials());
  stub_ = v1::InferenceService::NewStub(channel_);
  ASSERT_TRUE(WaitUntil([&] {
    return gateway_->routes().loaded() && gateway_->keys().loaded() &&
           gateway_->dispatcher().Load().size() >= revisions;
  }));
}

v1::GenerateRequest GatewayTestBase::Request(int max_tokens,
                                             const std::string& deployment) {
  v1::GenerateRequest request;
  request.set_deployment(deployment);
  request.set_prompt("Once upon");
  request.mutable_sampling()->set_temperature(0);
  request.mutable_sampling()->set_max_tokens(max_tokens);
  return request;
}

void GatewayTestBase::Authorize(grpc::ClientContext& context,
                                const std::string& key,
                                absl::Duration timeout) {
  if (!key.empty()) context.AddMetadata("authorization", "Bearer " + key);
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

grpc::Status GatewayTestBase::Generate(const v1::GenerateRequest& request,
                                       v1::GenerateResponse* response,
                                       const std::string& key) {
  grpc::ClientContext context;
  Authorize(context, key);
  return stub_->Generate(&context, request, response);
}

StreamResult GatewayTestBase::GenerateStream(
    const v1::GenerateRequest& request, const std::string& key,
    grpc::ClientContext* context,
    std::function<void(const v1::GenerateStreamResponse&)> on_message) {
  grpc::ClientContext own;
  if (context == nullptr) {
    context = &own;
    Authorize(own, key);
  }
  StreamResult result;
  auto reader = stub_->GenerateStream(context, request);
  v1::GenerateStreamResponse message;
  while (reader->Read(&message)) {
    ++result.messages;
    result.text += message.delta();
    result.last = message;
    if (on_message) on_message(message);
  }
  result.status = reader->Finish();
  return result;
}

std::pair<double, double> GatewayTestBase::Histogram(const std::string& name) {
  double sum = 0, count = 0;
  for (const auto& family : gateway_->metrics().registry().Collect()) {
    if (family.name != name) continue;
    for (const auto& metric : family.metric) {
      sum += metric.histogram.sample_sum;
      count += static_cast<double>(metric.histogram.sample_count);
    }
  }
  return {sum, count};
}

double GatewayTestBase::Counter(const std::string& name) {
  double total = 0;
  for (const auto& family : gateway_->metrics().registry().Collect()) {
    if (family.name != name) continue;
    for (const auto& metric : family.metric) total += metric.counter.value;
  }
  return total;
}

}  // namespace hangar::testing
