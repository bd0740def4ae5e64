// The gRPC face of a runner: RunnerService (runner.proto) over a
// GenerationLoop, on the gRPC callback API. A thin adapter: it converts
// messages, calls the loop, and converts statuses; it holds no generation
// logic.
//
// Generate: one ServerWriteReactor per call, fed by the loop's listener (no
// handler polls or sleeps). The reactor keeps one write outstanding; events
// that arrive meanwhile wait in the call's buffer and go out from
// OnWriteDone. OnCancel (the client went away or its deadline passed) stops
// the call's unfinished sequences; each sequence's other outcomes (its own
// error, timeout, Cancel by id) arrive as its last message while the others
// continue. Cancel and Info are unary callback methods.
//
// Until the model has loaded (SetLoop), every call answers UNAVAILABLE
// ("model loading") and health says NOT_SERVING, so callers never see a half
// ready replica.
#ifndef HANGAR_SERVICES_RUNNER_RUNNER_SERVICE_H_
#define HANGAR_SERVICES_RUNNER_RUNNER_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "engine/model.h"
#include "hangar/v1/runner.grpc.pb.h"
#include "services/runner/generation_loop.h"

namespace hangar::runner {

// Which replica this runner is, as its executor named it (empty when started
// by hand).
struct ReplicaIdentity {
  std::string deployment;
  int64_t revision = 0;
  std::string replica;
};

class RunnerServiceImpl final : public v1::RunnerService::CallbackService {
 public:
  explicit RunnerServiceImpl(ReplicaIdentity identity)
      : identity_(std::move(identity)) {}

  // Makes the service answer with `loop` over `model` (both not owned; they
  // must outlive the service's calls).
  void SetLoop(const engine::Model* model, GenerationLoop* loop);

  grpc::ServerWriteReactor<v1::RunnerGenerateResponse>* Generate(
      grpc::CallbackServerContext* context,
      const v1::RunnerGenerateRequest* request) override;
  grpc::ServerUnaryReactor* Cancel(grpc::CallbackServerContext* context,
                                   const v1::RunnerCancelRequest* request,
                                   v1::RunnerCancelResponse* response) override;
  grpc::ServerUnaryReactor* Info(grpc::CallbackServerContext* context,
                                 const v1::RunnerInfoRequest* request,
                                 v1::RunnerInfo* response) override;

 private:
  grpc::Status FillInfo(v1::RunnerInfo* response) const;

  const ReplicaIdentity identity_;
  // Set once, after loading; read by every call.
  std::atomic<const engine::Model*> model_{nullptr};
  std::atomic<GenerationLoop*> loop_{nullptr};
};

// The recipe of a loaded model: its hangar_manifest.json's (engine and
// quantization), or ENGINE_NONE for source weights (a Hugging Face directory
// without a manifest, a GGUF file).
v1::OptimizationRecipe RecipeOf(const engine::ModelInfo& info);

// One loop event as a response message.
v1::RunnerGenerateResponse ToProto(const GenerationEvent& event);

}  // namespace hangar::runner

#endif  // HANGAR_SERVICES_RUNNER_RUNNER_SERVICE_H_
