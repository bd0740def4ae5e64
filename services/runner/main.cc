// hangar-runner: one model replica. Started by the scheduler's executor (or
// by hand); loads one model and serves RunnerService.
//
//   hangar-runner --model=/models/tiny --port=0 --port_file=/tmp/r1.port \
//       --deployment=chat --revision=3 --replica=chat-3-a \
//       --temperature=0.7 --max_tokens=512 --stop_sequences='\n\n,END'
//
// The sampling flags are the deployment's values (common.proto
// SamplingParams): the defaults of every request and the bounds its
// overrides may only tighten. A value out of bounds exits 2 with one line
// naming the flag; --max_tokens past the model's context length is found
// once the model is loaded and exits 1 naming sampling.max_tokens.
// --stop_sequences is a comma-separated list; each item is C-escaped (\n, \t,
// \\, \x41) and "\," is a comma inside an item.
#include <cstdint>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/escaping.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/config/flags.h"
#include "common/sampling/sampling.h"
#include "services/runner/runner_server.h"

ABSL_FLAG(std::string, model, "",
          "Model to serve: a Hugging Face directory, an optimized artifact "
          "directory or a GGUF file");
ABSL_FLAG(std::string, host, "127.0.0.1", "Address to bind");
ABSL_FLAG(int, port, 0, "gRPC port; 0 picks a free one (see --port_file)");
ABSL_FLAG(int, metrics_port, 0,
          "Prometheus /metrics port; 0 picks a free one, -1 disables");
ABSL_FLAG(std::string, port_file, "",
          "Write the bound gRPC port here once listening");
ABSL_FLAG(std::string, deployment, "",
          "Deployment this replica serves (reported by Info)");
ABSL_FLAG(int64_t, revision, 0,
          "Deployment revision this replica serves (reported by Info)");
ABSL_FLAG(std::string, replica, "",
          "This replica's name, as its executor knows it (reported by Info)");
ABSL_FLAG(int, threads, 0, "Kernel threads; 0 means every core");
ABSL_FLAG(int, max_batch, 8, "Sequences decoded together, in [1, 256]");
ABSL_FLAG(int, max_queue, 256,
          "Sequences waiting for a batch slot before RESOURCE_EXHAUSTED");
ABSL_FLAG(int, max_context, 0,
          "Context length per sequence; 0 means the model's");
ABSL_FLAG(std::optional<float>, temperature, std::nullopt,
          "Deployment temperature, finite in [0, 2] (0 = greedy); default 1");
ABSL_FLAG(std::optional<int>, max_tokens, std::nullopt,
          "Deployment max new tokens, in [1, context length]; default "
          "min(256, context length)");
ABSL_FLAG(std::optional<float>, top_p, std::nullopt,
          "Deployment nucleus mass, in (0, 1]; default 1 (off)");
ABSL_FLAG(std::optional<int>, top_k, std::nullopt,
          "Deployment top-k, in [0, 1000]; default 0 (off)");
ABSL_FLAG(std::string, stop_sequences, "",
          "Deployment stop sequences: comma-separated, at most 16 of 1 to 64 "
          "bytes; C escapes (\\n) work and \\, is a comma inside one");
ABSL_FLAG(std::optional<uint64_t>, seed, std::nullopt,
          "Deployment sampling seed; default a seed per request");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(30),
          "How long in-flight generations may run after SIGTERM");
ABSL_FLAG(std::string, tls_cert_file, "", "PEM certificate for TLS");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key for TLS");

namespace {

// Splits --stop_sequences on unescaped commas and unescapes each item.
bool ParseStopSequences(const std::string& flag,
                        std::vector<std::string>* stops, std::string* error) {
  if (flag.empty()) return true;
  std::vector<std::string> items(1);
  for (size_t i = 0; i < flag.size(); ++i) {
    if (flag[i] == '\\' && i + 1 < flag.size() && flag[i + 1] == ',') {
      items.back() += ',';
      ++i;
    } else if (flag[i] == ',') {
      items.emplace_back();
    } else {
      items.back() += flag[i];
      if (flag[i] == '\\' && i + 1 < flag.size()) items.back() += flag[++i];
    }
  }
  for (const std::string& item : items) {
    std::string stop;
    if (!absl::CUnescape(item, &stop, error)) return false;
    stops->push_back(std::move(stop));
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // As in hangar-gateway: Debian's Abseil is built without NDEBUG, so every
  // absl::Mutex acquisition (gRPC's and the generation loop's) would update
  // a process-wide lock-order graph; tests keep the check, servers skip it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  hangar::ParseFlagsWithEnv(argc, argv, "HANGAR_RUNNER_", "runner");

  hangar::v1::SamplingParams sampling;
  if (auto v = absl::GetFlag(FLAGS_temperature)) sampling.set_temperature(*v);
  if (auto v = absl::GetFlag(FLAGS_max_tokens)) sampling.set_max_tokens(*v);
  if (auto v = absl::GetFlag(FLAGS_top_p)) sampling.set_top_p(*v);
  if (auto v = absl::GetFlag(FLAGS_top_k)) sampling.set_top_k(*v);
  if (auto v = absl::GetFlag(FLAGS_seed)) sampling.set_seed(*v);
  std::vector<std::string> stops;
  std::string error;
  if (!ParseStopSequences(absl::GetFlag(FLAGS_stop_sequences), &stops,
                          &error)) {
    std::cerr << "runner: --stop_sequences: " << error << std::endl;
    return 2;
  }
  for (std::string& stop : stops) sampling.add_stop_sequences(std::move(stop));
  // The bounds that do not need the model; max_tokens against the context
  // length is checked once the model is loaded.
  if (auto checked = hangar::sampling::NormalizeSamplingParams(
          sampling, /*context_length=*/0, /*field_prefix=*/"");
      !checked.ok()) {
    std::cerr << "runner: --" << checked.status().message() << std::endl;
    return 2;
  }

  hangar::runner::RunnerServer::Options options{
      .server = {.name = "runner",
                 .host = absl::GetFlag(FLAGS_host),
                 .port = absl::GetFlag(FLAGS_port),
                 .metrics_port = absl::GetFlag(FLAGS_metrics_port),
                 .drain_timeout = absl::GetFlag(FLAGS_drain_timeout),
                 .tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file),
                 .tls_key_file = absl::GetFlag(FLAGS_tls_key_file)},
      .model_path = absl::GetFlag(FLAGS_model),
      .identity = {.deployment = absl::GetFlag(FLAGS_deployment),
                   .revision = absl::GetFlag(FLAGS_revision),
                   .replica = absl::GetFlag(FLAGS_replica)},
      .threads = absl::GetFlag(FLAGS_threads),
      .max_batch = absl::GetFlag(FLAGS_max_batch),
      .max_queue = absl::GetFlag(FLAGS_max_queue),
      .max_context = absl::GetFlag(FLAGS_max_context),
      .sampling = sampling,
      .port_file = absl::GetFlag(FLAGS_port_file)};
  auto runner = hangar::runner::RunnerServer::Start(options);
  if (!runner.ok()) {
    std::cerr << "runner: " << runner.status().message() << std::endl;
    return 1;
  }
  std::cerr << "runner: serving " << options.model_path << " on "
            << (*runner)->server().address() << " (metrics port "
            << (*runner)->server().metrics_port() << ")" << std::endl;
  (*runner)->WaitForTermination();
  return 0;
}
