// The composition root of a runner process: one model replica.
//
// Start() brings up the gRPC server first (health NOT_SERVING, calls answer
// UNAVAILABLE "model loading"), writes the bound port to `port_file` for the
// executor that launched it, loads the model, starts the generation loop and
// only then turns health SERVING. The loaded model's recipe (from its
// hangar_manifest.json), the real kernel thread count, the replica identity
// and the normalized sampling values are what Info reports. A bad model path or
// format fails Start() with the loader's message (NOT_FOUND / INVALID_ARGUMENT
// naming what is wrong), so the process exits at once with one clear line.
#ifndef HANGAR_SERVICES_RUNNER_RUNNER_SERVER_H_
#define HANGAR_SERVICES_RUNNER_RUNNER_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/metrics/metrics.h"
#include "common/server/server.h"
#include "engine/model.h"
#include "services/runner/generation_loop.h"
#include "services/runner/runner_metrics.h"
#include "services/runner/runner_service.h"

namespace hangar::runner {

class RunnerServer {
 public:
  struct Options {
    // Address, ports, drain and TLS (name defaults to "runner").
    ServerOptions server;
    // A Hugging Face model directory, an optimized artifact or a GGUF file.
    std::string model_path;
    // Which replica this is (RunnerInfo names it); empty when started by
    // hand. revision >= 0.
    ReplicaIdentity identity;
    // Kernel threads; 0 means every core.
    int threads = 0;
    // Sequences decoded together, in [1, 256].
    int max_batch = 8;
    // Sequences waiting for a slot before RESOURCE_EXHAUSTED.
    int max_queue = 256;
    // Context per sequence; 0 means the model's.
    int max_context = 0;
    // The deployment's sampling values: defaults of every sequence and the
    // bounds its overrides may only tighten. Unset fields take the defaults
    // of common/sampling; normalized against the context length at Start
    // (INVALID_ARGUMENT "sampling.<field>: ..." otherwise).
    v1::SamplingParams sampling;
    // When set, the bound gRPC port is written here ("<port>\n", atomically)
    // once the server listens.
    std::string port_file;
  };

  static absl::StatusOr<std::unique_ptr<RunnerServer>> Start(
      const Options& options);
  ~RunnerServer();

  Server& server() { return *server_; }
  int port() const { return server_->port(); }

  // Blocks until SIGTERM/SIGINT, then drains and returns.
  void WaitForTermination() { server_->WaitForTermination(); }

 private:
  explicit RunnerServer(ReplicaIdentity identity)
      : service_(std::move(identity)) {}

  MetricsRegistry metrics_;
  std::unique_ptr<RunnerMetrics> runner_metrics_;
  RunnerServiceImpl service_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<engine::Model> model_;
  std::unique_ptr<GenerationLoop> loop_;
};

}  // namespace hangar::runner

#endif  // HANGAR_SERVICES_RUNNER_RUNNER_SERVER_H_
