// hangar-runner: one model replica. Started by the scheduler's executor (or
// by hand); loads one model and serves RunnerService.
//
//   hangar-runner --model=/models/tiny --port=0 --port_file=/tmp/r1.port
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "common/config/flags.h"
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
ABSL_FLAG(int, threads, 0, "Kernel threads; 0 means every core");
ABSL_FLAG(int, max_batch, 8, "Sequences decoded together, in [1, 256]");
ABSL_FLAG(int, max_queue, 256,
          "Sequences waiting for a batch slot before RESOURCE_EXHAUSTED");
ABSL_FLAG(int, max_context, 0,
          "Context length per sequence; 0 means the model's");
ABSL_FLAG(int, default_max_tokens, 256,
          "New tokens for a request that does not set max_tokens");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(30),
          "How long in-flight generations may run after SIGTERM");
ABSL_FLAG(std::string, tls_cert_file, "", "PEM certificate for TLS");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key for TLS");

int main(int argc, char** argv) {
  hangar::ParseFlagsWithEnv(argc, argv, "HANGAR_RUNNER_", "runner");
  hangar::runner::RunnerServer::Options options{
      .server = {.name = "runner",
                 .host = absl::GetFlag(FLAGS_host),
                 .port = absl::GetFlag(FLAGS_port),
                 .metrics_port = absl::GetFlag(FLAGS_metrics_port),
                 .drain_timeout = absl::GetFlag(FLAGS_drain_timeout),
                 .tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file),
                 .tls_key_file = absl::GetFlag(FLAGS_tls_key_file)},
      .model_path = absl::GetFlag(FLAGS_model),
      .threads = absl::GetFlag(FLAGS_threads),
      .max_batch = absl::GetFlag(FLAGS_max_batch),
      .max_queue = absl::GetFlag(FLAGS_max_queue),
      .max_context = absl::GetFlag(FLAGS_max_context),
      .default_max_tokens = absl::GetFlag(FLAGS_default_max_tokens),
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
