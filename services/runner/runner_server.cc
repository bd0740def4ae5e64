#include "services/runner/runner_server.h"

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"

namespace hangar::runner {
namespace {

absl::Status WritePortFile(const std::string& path, int port) {
  std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << port << "\n";
    if (!out.good()) {
      return absl::InvalidArgumentError(
          absl::StrCat("port_file: cannot write ", temporary));
    }
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("port_file: cannot rename to ", path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<RunnerServer>> RunnerServer::Start(
    const Options& options) {
  if (options.model_path.empty()) {
    return absl::InvalidArgumentError("model: a model path is required");
  }
  if (options.threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("threads: must be >= 0; was ", options.threads));
  }
  if (options.identity.revision < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "revision: must be >= 0; was ", options.identity.revision));
  }
  std::unique_ptr<RunnerServer> runner(new RunnerServer(options.identity));
  runner->runner_metrics_ =
      std::make_unique<RunnerMetrics>(runner->metrics_.registry());
  ASSIGN_OR_RETURN(
      runner->server_,
      Server::Create(options.server, {&runner->service_}, &runner->metrics_));
  if (!options.port_file.empty()) {
    RETURN_IF_ERROR(WritePortFile(options.port_file, runner->port()));
  }
  ASSIGN_OR_RETURN(runner->model_,
                   engine::Model::Load(options.model_path,
                                       {.threads = options.threads,
                                        .max_context = options.max_context}));
  ASSIGN_OR_RETURN(
      runner->loop_,
      GenerationLoop::Create(runner->model_.get(),
                             {.max_batch = options.max_batch,
                              .max_queue = options.max_queue,
                              .max_context = options.max_context,
                              .sampling = options.sampling,
                              .metrics = runner->runner_metrics_.get()}));
  runner->service_.SetLoop(runner->model_.get(), runner->loop_.get());
  runner->server_->SetServing(true);
  return runner;
}

RunnerServer::~RunnerServer() {
  // Drain calls before the loop and model they use go away.
  if (server_ != nullptr) server_->Shutdown();
}

}  // namespace hangar::runner
