// gateway_bench: issue 11's targets, measured in one run.
//
//   gateway_bench [--quick] [--nginx=PATH] [--only=abc]
//
// --only runs the named sections (letters a, b, c; default all).
//
// Everything runs on this host: hangar-runner child processes on the
// "small" preset model (~15 M parameters), an in-process GatewayServer, the
// in-process fake scheduler and deployment service of the gateway's
// integration tests, and a C++ client (one thread per concurrent client,
// blocking unary calls over shared channels). The closed-loop loads of (a)
// and (c) count only the calls that finish inside the measured window, after
// a warm-up (a quarter of it, at most 1 s): the calls still running when the
// window closes are not counted, since they would add the same `clients`
// calls' worth to every rate and squash the ratios toward 1.
//
// (a) Batching gain. 32 concurrent clients, Generate with 32 new tokens,
//     greedy, for a fixed time, through the gateway to one runner:
//     inference_batch_size 8 (runner --max_batch=8) vs 1 (--max_batch=1).
//     Prints completion tokens/s of both and the ratio (target >= 3.5x),
//     and the same load sent straight to the runner, whose own ratio bounds
//     what the gateway can show.
// (b) Overhead. One client, sequential Generate with max_tokens 1, through
//     the gateway (max_queue_delay 0, batch size 1) and directly to the
//     runner (RunnerService.Generate with one sequence), plus a no-op
//     health check of the gateway (one gRPC hop, the floor under any
//     proxy's overhead), in rounds whose order rotates so that all three see
//     the same background load and none always goes first; warm-up rounds
//     first (30 with --quick), then 400 (1000) recorded: p50 and p99 of each
//     and the p50 difference (target <= 0.3 ms + the queue delay).
// (c) Proxy efficiency. Batching off (inference_batch_size 1, no queue
//     delay), the "tiny" preset, Generate with max_tokens 1, 32 closed-loop
//     clients for a fixed time, in front of one runner (--max_batch=1):
//     calls/s straight to the runner, through nginx `grpc_pass` (Debian's
//     nginx, two workers, upstream keepalive on and keepalive_requests
//     raised; the clients call RunnerService.Generate through it), and
//     through the gateway (InferenceService.Generate). Prints gateway ÷
//     nginx (target >= 0.8x). Skipped, saying so, when nginx is absent
//     (`apt-get install nginx-light`; --nginx=PATH picks another binary).
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/auth/api_key.h"
#include "common/testing/child_process.h"
#include "engine/tiny_model.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "hangar/v1/inference.grpc.pb.h"
#include "hangar/v1/runner.grpc.pb.h"
#include "services/gateway/gateway_server.h"
#include "tests/integration/gateway/fake_control_plane.h"

namespace hangar {
namespace {

using testing::ChildProcess;

struct Runner {
  std::unique_ptr<ChildProcess> process;
  std::string address;
};

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "gateway_bench: %s\n", message.c_str());
  std::exit(1);
}

Runner StartRunner(const std::string& model, int max_batch) {
  char dir[] = "/tmp/gateway-bench-XXXXXX";
  if (mkdtemp(dir) == nullptr) Die("mkdtemp failed");
  const std::string port_file = std::string(dir) + "/port";
  auto child = ChildProcess::Start(
      {HANGAR_RUNNER_PATH, "--model=" + model, "--port_file=" + port_file,
       "--metrics_port=-1", absl::StrCat("--max_batch=", max_batch),
       "--max_tokens=256"});
  if (!child.ok()) Die(std::string(child.status().message()));
  Runner runner{.process = *std::move(child)};
  if (!testing::WaitUntil([&] {
        struct stat info;
        return stat(port_file.c_str(), &info) == 0 ||
               !runner.process->Running();
      }) ||
      !runner.process->Running()) {
    Die("runner did not start: " + runner.process->Output());
  }
  std::ifstream in(port_file);
  std::string port((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  runner.address = absl::StrCat("127.0.0.1:", absl::StripAsciiWhitespace(port));
  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(runner.address, grpc::InsecureChannelCredentials()));
  if (!testing::WaitUntil([&] {
        grpc::ClientContext context;
        grpc::health::v1::HealthCheckResponse response;
        return health->Check(&context, {}, &response).ok() &&
               response.status() ==
                   grpc::health::v1::HealthCheckResponse::SERVING;
      })) {
    Die("runner not SERVING: " + runner.process->Output());
  }
  return runner;
}

v1::Route MakeRoute(const Runner& runner, int batch_size) {
  v1::Route route;
  route.set_deployment("dep-bench");
  route.set_display_name("bench");
  route.set_revision(1);
  route.set_serving(true);
  route.set_inference_batch_size(batch_size);
  route.set_context_length(1024);
  route.mutable_sampling()->set_max_tokens(256);
  v1::RouteReplica* replica = route.add_replicas();
  replica->set_name("r0");
  replica->set_address(runner.address);
  replica->set_state(v1::REPLICA_STATE_READY);
  replica->set_max_batch(batch_size);
  return route;
}

struct Bench {
  testing::FakeControlPlane control;
  auth::ApiKey key;
};

std::unique_ptr<gateway::GatewayServer> StartGateway(
    Bench& bench, absl::Duration queue_delay) {
  auto gateway = gateway::GatewayServer::Create(
      {.server = {.name = "gateway", .port = 0, .metrics_port = -1},
       .scheduler_address = bench.control.address(),
       .deployment_address = bench.control.address(),
       .gateway_id = "gw-bench",
       .max_queue_delay = queue_delay,
       .max_concurrent_per_key = 1024});
  if (!gateway.ok()) Die(std::string(gateway.status().message()));
  if (!testing::WaitUntil([&] {
        return (*gateway)->routes().Resolve("dep-bench").ok() &&
               (*gateway)->keys().loaded() &&
               !(*gateway)->dispatcher().Load().empty();
      })) {
    Die("gateway did not load its route");
  }
  return *std::move(gateway);
}

v1::GenerateRequest Request(int max_tokens) {
  v1::GenerateRequest request;
  request.set_deployment("dep-bench");
  request.set_prompt("Once upon a time");
  request.mutable_sampling()->set_temperature(0);
  request.mutable_sampling()->set_max_tokens(max_tokens);
  return request;
}

// What `clients` closed-loop clients achieved in a fixed time.
struct Load {
  double calls_per_s = 0;
  double tokens_per_s = 0;  // Completion tokens.
};

// Four shared channels (distinct connections) for a load.
std::vector<std::shared_ptr<grpc::Channel>> Channels(
    const std::string& address) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < 4; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("bench_channel", i);  // Distinct connections.
    channels.push_back(grpc::CreateCustomChannel(
        address, grpc::InsecureChannelCredentials(), args));
  }
  return channels;
}

// Runs `clients` threads, each calling `call(client index)` until the time
// is up; `call` returns the completion tokens of one successful call, or
// nullopt for a failed one.
Load Drive(int clients, absl::Duration duration,
           const std::function<std::optional<int64_t>(int)>& call) {
  // Only calls that finish inside [start, end] count: the warm-up fills the
  // pipeline (every client busy, batches formed) before counting starts, and
  // the calls still running at `end` are finished but not counted. Counting
  // those too (or the warm-up's) would add `clients` calls' worth of tokens
  // to every rate whatever the batch size, and squash the ratios toward 1.
  std::atomic<int64_t> calls{0};
  std::atomic<int64_t> tokens{0};
  std::atomic<int64_t> failures{0};
  const absl::Duration warm_up = std::min(duration / 4, absl::Seconds(1));
  const absl::Time start = absl::Now() + warm_up;
  const absl::Time end = start + duration;
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      while (absl::Now() < end) {
        std::optional<int64_t> got = call(c);
        const absl::Time done = absl::Now();
        if (done < start || done > end) continue;
        if (got) {
          ++calls;
          tokens += *got;
        } else {
          ++failures;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  if (failures > 0) {
    std::printf("  (%lld failed calls)\n", static_cast<long long>(failures));
  }
  const double seconds = absl::ToDoubleSeconds(duration);
  return {.calls_per_s = calls / seconds, .tokens_per_s = tokens / seconds};
}

// InferenceService.Generate through the gateway.
Load GatewayLoad(const std::string& address, const std::string& key,
                 int clients, absl::Duration duration, int max_tokens) {
  auto channels = Channels(address);
  std::vector<std::unique_ptr<v1::InferenceService::Stub>> stubs;
  for (int c = 0; c < clients; ++c) {
    stubs.push_back(
        v1::InferenceService::NewStub(channels[c % channels.size()]));
  }
  const v1::GenerateRequest request = Request(max_tokens);
  return Drive(clients, duration, [&](int c) -> std::optional<int64_t> {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + key);
    v1::GenerateResponse response;
    if (!stubs[c]->Generate(&context, request, &response).ok()) {
      return std::nullopt;
    }
    return response.usage().completion_tokens();
  });
}

// RunnerService.Generate, one sequence per call, straight to a runner (or
// through a proxy in front of it): separates the runner's own batching gain
// from the gateway's, and is the proxy comparison's load.
Load RunnerLoad(const std::string& address, int clients,
                absl::Duration duration, int max_tokens) {
  auto channels = Channels(address);
  std::vector<std::unique_ptr<v1::RunnerService::Stub>> stubs;
  for (int c = 0; c < clients; ++c) {
    stubs.push_back(v1::RunnerService::NewStub(channels[c % channels.size()]));
  }
  std::atomic<int64_t> next_id{0};
  return Drive(clients, duration, [&](int c) -> std::optional<int64_t> {
    v1::RunnerGenerateRequest request;
    v1::RunnerSequence* sequence = request.add_sequences();
    sequence->set_id(absl::StrCat("direct-", next_id.fetch_add(1)));
    sequence->set_prompt("Once upon a time");
    sequence->mutable_sampling()->set_temperature(0);
    sequence->mutable_sampling()->set_max_tokens(max_tokens);
    grpc::ClientContext context;
    auto reader = stubs[c]->Generate(&context, request);
    v1::RunnerGenerateResponse response;
    int64_t got = 0;
    while (reader->Read(&response)) got += response.token_ids_size();
    if (!reader->Finish().ok()) return std::nullopt;
    return got;
  });
}

// A loopback port nobody listens on now (nginx needs a number up front).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  if (fd < 0 ||
      bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    Die("cannot find a free port");
  }
  close(fd);
  return ntohs(address.sin_port);
}

// nginx in front of `upstream`, configured as a careful operator would for
// gRPC: HTTP/2 on the listener, keepalive connections to the upstream, and
// keepalive_requests raised so that connections are not recycled mid-run.
struct Nginx {
  std::unique_ptr<ChildProcess> process;
  std::string address;
  ~Nginx() {
    // SIGQUIT: the master stops its workers and exits (a SIGKILL of the
    // master would leave them behind).
    if (process != nullptr && process->Signal(SIGQUIT)) {
      (void)process->Wait(absl::Seconds(10));
    }
  }
};

std::unique_ptr<Nginx> StartNginx(const std::string& binary,
                                  const std::string& upstream) {
  char dir[] = "/tmp/gateway-bench-nginx-XXXXXX";
  if (mkdtemp(dir) == nullptr) Die("mkdtemp failed");
  const int port = FreePort();
  const std::string conf = std::string(dir) + "/nginx.conf";
  std::ofstream(conf) << absl::StrCat(
      "worker_processes 2;\n"
      "error_log ",
      dir, "/error.log warn;\n", "pid ", dir, "/nginx.pid;\n",
      "events { worker_connections 4096; }\n"
      "http {\n"
      "  access_log off;\n"
      "  client_body_temp_path ",
      dir, "/body;\n", "  proxy_temp_path ", dir, "/proxy;\n",
      "  fastcgi_temp_path ", dir, "/fastcgi;\n", "  uwsgi_temp_path ", dir,
      "/uwsgi;\n", "  scgi_temp_path ", dir, "/scgi;\n",
      "  upstream runner {\n"
      "    server ",
      upstream, ";\n",
      "    keepalive 64;\n"
      "    keepalive_requests 1000000;\n"
      "  }\n"
      "  server {\n"
      "    listen 127.0.0.1:",
      port, " http2;\n",
      "    keepalive_requests 1000000;\n"
      "    location / { grpc_pass grpc://runner; }\n"
      "  }\n"
      "}\n");
  auto child =
      ChildProcess::Start({binary, "-p", dir, "-c", conf, "-g", "daemon off;"});
  if (!child.ok()) Die(std::string(child.status().message()));
  auto nginx = std::make_unique<Nginx>();
  nginx->process = *std::move(child);
  nginx->address = absl::StrCat("127.0.0.1:", port);
  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(nginx->address, grpc::InsecureChannelCredentials()));
  if (!testing::WaitUntil(
          [&] {
            grpc::ClientContext context;
            grpc::health::v1::HealthCheckResponse response;
            return health->Check(&context, {}, &response).ok() ||
                   !nginx->process->Running();
          },
          absl::Seconds(20)) ||
      !nginx->process->Running()) {
    Die("nginx did not start: " + nginx->process->Output());
  }
  return nginx;
}

struct Percentiles {
  double p50_ms;
  double p99_ms;
};

Percentiles Summarize(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) {
    return samples[std::min(samples.size() - 1,
                            static_cast<size_t>(q * samples.size()))];
  };
  return {at(0.50), at(0.99)};
}

// What (b) measured: p50/p99 of each path, and of a no-op unary call to
// the gateway's own health service (the cost of one more gRPC hop on this
// host, the floor under any proxy's overhead).
struct Overhead {
  Percentiles direct;
  Percentiles through;
  Percentiles hop;
};

// Sequential max_tokens=1 calls, one round = one call through the gateway,
// one straight to the runner and one health check of the gateway, in an
// order that rotates every round so that neither path always goes first
// (the first call of a round finds the runner idle for longer) and drifting
// background load touches all alike. `warmup` rounds are not recorded.
Overhead Latencies(const std::string& gateway, const std::string& runner,
                   const std::string& key, int calls, int warmup) {
  auto inference = v1::InferenceService::NewStub(
      grpc::CreateChannel(gateway, grpc::InsecureChannelCredentials()));
  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(gateway, grpc::InsecureChannelCredentials()));
  auto direct = v1::RunnerService::NewStub(
      grpc::CreateChannel(runner, grpc::InsecureChannelCredentials()));
  const v1::GenerateRequest request = Request(1);
  std::vector<double> through_samples, direct_samples, hop_samples;
  auto through_call = [&](bool record) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + key);
    v1::GenerateResponse response;
    const absl::Time start = absl::Now();
    if (!inference->Generate(&context, request, &response).ok()) {
      Die("Generate through the gateway failed");
    }
    if (record) {
      through_samples.push_back(
          absl::ToDoubleMilliseconds(absl::Now() - start));
    }
  };
  int next_id = 0;
  auto direct_call = [&](bool record) {
    v1::RunnerGenerateRequest runner_request;
    v1::RunnerSequence* sequence = runner_request.add_sequences();
    sequence->set_id(absl::StrCat("direct-", next_id++));
    sequence->set_prompt(request.prompt());
    sequence->mutable_sampling()->set_temperature(0);
    sequence->mutable_sampling()->set_max_tokens(1);
    grpc::ClientContext context;
    const absl::Time start = absl::Now();
    auto reader = direct->Generate(&context, runner_request);
    v1::RunnerGenerateResponse response;
    while (reader->Read(&response)) {
    }
    if (!reader->Finish().ok()) Die("Generate on the runner failed");
    if (record) {
      direct_samples.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
    }
  };
  auto hop_call = [&](bool record) {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckResponse response;
    const absl::Time start = absl::Now();
    if (!health->Check(&context, {}, &response).ok()) {
      Die("health check of the gateway failed");
    }
    if (record) {
      hop_samples.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
    }
  };
  const std::function<void(bool)> paths[3] = {through_call, direct_call,
                                              hop_call};
  for (int i = 0; i < warmup + calls; ++i) {
    for (int k = 0; k < 3; ++k) paths[(i + k) % 3](i >= warmup);
  }
  return {.direct = Summarize(direct_samples),
          .through = Summarize(through_samples),
          .hop = Summarize(hop_samples)};
}

int Main(bool quick, const std::string& nginx, const std::string& only) {
  auto section = [&](char name) {
    return only.find(name) != std::string::npos;
  };
  char dir[] = "/tmp/gateway-bench-model-XXXXXX";
  if (mkdtemp(dir) == nullptr) Die("mkdtemp failed");
  absl::StatusOr<engine::TinyModelOptions> preset =
      engine::TinyModelPreset("small");
  if (!preset.ok() || !engine::WriteTinyModel(*preset, dir).ok()) {
    Die("cannot write the small model");
  }
  Bench bench;
  absl::StatusOr<auth::ApiKey> key = auth::GenerateApiKey();
  if (!key.ok()) Die("no key");
  bench.key = *key;
  bench.control.deployment().AddKey("key-bench", "dep-bench", bench.key.hash);
  const absl::Duration duration = absl::Seconds(quick ? 3 : 10);
  const int calls = quick ? 400 : 1000;

  if (section('a')) {
    std::printf("(a) batching gain: 32 clients, 32 new tokens, %s each\n",
                absl::FormatDuration(duration).c_str());
    double tokens_per_s[2] = {0, 0};
    double direct_per_s[2] = {0, 0};
    const int batch_sizes[2] = {1, 8};
    for (int i = 0; i < 2; ++i) {
      Runner runner = StartRunner(dir, batch_sizes[i]);
      bench.control.scheduler().SetRoutes({MakeRoute(runner, batch_sizes[i])});
      auto gateway = StartGateway(bench, absl::Milliseconds(5));
      tokens_per_s[i] =
          GatewayLoad(gateway->address(), bench.key.plaintext, 32, duration, 32)
              .tokens_per_s;
      gateway.reset();
      direct_per_s[i] =
          RunnerLoad(runner.address, 32, duration, 32).tokens_per_s;
      std::printf(
          "  inference_batch_size %d: %.0f tokens/s through the gateway, %.0f "
          "direct to the runner\n",
          batch_sizes[i], tokens_per_s[i], direct_per_s[i]);
    }
    std::printf(
        "  ratio 8 vs 1: %.2fx through the gateway (target >= 3.5x), "
        "%.2fx direct to the runner\n",
        tokens_per_s[1] / std::max(tokens_per_s[0], 1e-9),
        direct_per_s[1] / std::max(direct_per_s[0], 1e-9));
    // One line per target, as scripts/perf-report.sh collects them.
    const double gain = tokens_per_s[1] / std::max(tokens_per_s[0], 1e-9);
    std::printf(
        "TARGET | batching gain, batch size 8 vs 1, through the gateway | "
        "%.2fx | >= 3.5x | %s\n",
        gain, gain >= 3.5 ? "PASS" : "MISS");
  }

  if (section('b')) {
    std::printf("(b) overhead: Generate max_tokens 1, one client, %d calls\n",
                calls);
    Runner runner = StartRunner(dir, 1);
    bench.control.scheduler().SetRoutes({MakeRoute(runner, 1)});
    auto gateway = StartGateway(bench, absl::ZeroDuration());
    auto [direct, through, hop] =
        Latencies(gateway->address(), runner.address, bench.key.plaintext,
                  calls, /*warmup=*/quick ? 30 : 100);
    std::printf("  direct to the runner: p50 %.3f ms, p99 %.3f ms\n",
                direct.p50_ms, direct.p99_ms);
    std::printf("  through the gateway:  p50 %.3f ms, p99 %.3f ms\n",
                through.p50_ms, through.p99_ms);
    std::printf(
        "  one gRPC hop (health check of the gateway): p50 %.3f ms, p99 %.3f "
        "ms\n",
        hop.p50_ms, hop.p99_ms);
    std::printf(
        "  p50 overhead: %.3f ms (target <= 0.3 ms + queue delay 0 ms)\n",
        through.p50_ms - direct.p50_ms);
    std::printf(
        "TARGET | p50 overhead through the gateway vs direct to the runner | "
        "%.3f ms | <= 0.3 ms | %s\n",
        through.p50_ms - direct.p50_ms,
        through.p50_ms - direct.p50_ms <= 0.3 ? "PASS" : "MISS");
    gateway.reset();
  }

  if (!section('c')) return 0;
  std::printf(
      "(c) proxy efficiency: batching off, tiny preset, Generate max_tokens 1, "
      "32 clients, %s each\n",
      absl::FormatDuration(duration).c_str());
  if (access(nginx.c_str(), X_OK) != 0) {
    std::printf("  skipped: no nginx at %s (apt-get install nginx-light)\n",
                nginx.c_str());
    return 0;
  }
  char tiny_dir[] = "/tmp/gateway-bench-tiny-XXXXXX";
  if (mkdtemp(tiny_dir) == nullptr) Die("mkdtemp failed");
  absl::StatusOr<engine::TinyModelOptions> tiny =
      engine::TinyModelPreset("tiny");
  if (!tiny.ok() || !engine::WriteTinyModel(*tiny, tiny_dir).ok()) {
    Die("cannot write the tiny model");
  }
  Runner proxied = StartRunner(tiny_dir, 1);
  bench.control.scheduler().SetRoutes({MakeRoute(proxied, 1)});
  std::unique_ptr<Nginx> proxy = StartNginx(nginx, proxied.address);
  // Alternate the three paths twice so that drifting background load
  // touches each alike; report the sums.
  double direct_rate = 0, nginx_rate = 0, gateway_rate = 0;
  const absl::Duration leg = duration / 2;
  for (int round = 0; round < 2; ++round) {
    direct_rate += RunnerLoad(proxied.address, 32, leg, 1).calls_per_s / 2;
    nginx_rate += RunnerLoad(proxy->address, 32, leg, 1).calls_per_s / 2;
    auto proxy_gateway = StartGateway(bench, absl::ZeroDuration());
    gateway_rate +=
        GatewayLoad(proxy_gateway->address(), bench.key.plaintext, 32, leg, 1)
            .calls_per_s /
        2;
  }
  std::printf("  direct to the runner: %.0f calls/s\n", direct_rate);
  std::printf("  through nginx:        %.0f calls/s (%.2fx direct)\n",
              nginx_rate, nginx_rate / std::max(direct_rate, 1e-9));
  std::printf("  through the gateway:  %.0f calls/s (%.2fx direct)\n",
              gateway_rate, gateway_rate / std::max(direct_rate, 1e-9));
  const double proxy_ratio = gateway_rate / std::max(nginx_rate, 1e-9);
  std::printf("  ratio gateway vs nginx: %.2fx (target >= 0.8x)\n",
              proxy_ratio);
  std::printf(
      "TARGET | calls/s through the gateway vs nginx grpc_pass, batching off "
      "| %.2fx | >= 0.8x | %s\n",
      proxy_ratio, proxy_ratio >= 0.8 ? "PASS" : "MISS");
  return 0;
}

}  // namespace
}  // namespace hangar

int main(int argc, char** argv) {
  // As hangar-gateway's main does: the in-process gateway runs as it would
  // in production (see services/gateway/main.cc).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  bool quick = false;
  std::string nginx = "/usr/sbin/nginx";
  std::string only = "abc";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      quick = true;
    } else if (arg.rfind("--nginx=", 0) == 0) {
      nginx = arg.substr(8);
    } else if (arg.rfind("--only=", 0) == 0) {
      only = arg.substr(7);
    } else {
      std::fprintf(
          stderr,
          "usage: gateway_bench [--quick] [--nginx=PATH] [--only=abc]\n");
      return 2;
    }
  }
  return hangar::Main(quick, nginx, only);
}
