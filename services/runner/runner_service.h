// The gRPC face of a runner: RunnerService (runner.proto) over a
// GenerationLoop. A thin adapter: it converts messages, calls the loop, and
// converts statuses; it holds no generation logic.
//
// Until the model has loaded (SetLoop), every call answers UNAVAILABLE
// ("model loading") and health says NOT_SERVING, so callers never see a half
// ready replica.
#ifndef HANGAR_SERVICES_RUNNER_RUNNER_SERVICE_H_
#define HANGAR_SERVICES_RUNNER_RUNNER_SERVICE_H_

#include <atomic>
#include <string>

#include "absl/time/time.h"
#include "engine/model.h"
#include "hangar/v1/runner.grpc.pb.h"
#include "services/runner/generation_loop.h"

namespace hangar::runner {

class RunnerServiceImpl final : public v1::RunnerService::Service {
 public:
  RunnerServiceImpl() = default;

  // Makes the service answer with `loop` over `model` (both not owned; they
  // must outlive the service's calls).
  void SetLoop(const engine::Model* model, GenerationLoop* loop, int threads);

  grpc::Status Generate(
      grpc::ServerContext* context, const v1::RunnerGenerateRequest* request,
      grpc::ServerWriter<v1::RunnerGenerateResponse>* writer) override;
  grpc::Status Info(grpc::ServerContext* context,
                    const v1::RunnerInfoRequest* request,
                    v1::RunnerInfo* response) override;

 private:
  // Set once, after loading; read by every call.
  std::atomic<const engine::Model*> model_{nullptr};
  std::atomic<GenerationLoop*> loop_{nullptr};
  std::atomic<int> threads_{0};
};

// Proto sampling parameters -> engine ones. Unset (zero) fields take the
// engine's defaults where zero is not a meaningful value: top_p 0 -> 1,
// max_tokens 0 -> the runner's default, seed 0 -> random. Temperature 0 is
// greedy. Out-of-range values are kept so that validation names them.
engine::SamplingParams FromProto(const v1::SamplingParameters& sampling);

v1::FinishReason ToProto(engine::FinishReason reason);

}  // namespace hangar::runner

#endif  // HANGAR_SERVICES_RUNNER_RUNNER_SERVICE_H_
