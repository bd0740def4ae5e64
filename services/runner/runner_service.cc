#include "services/runner/runner_service.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/status/grpc_status.h"

namespace hangar::runner {
namespace {

grpc::Status Loading() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "model loading");
}

v1::FinishReason ToProto(Finish finish) {
  switch (finish) {
    case Finish::kLength:
      return v1::FINISH_REASON_LENGTH;
    case Finish::kStop:
      return v1::FINISH_REASON_STOP;
    case Finish::kEos:
      return v1::FINISH_REASON_EOS;
    case Finish::kCancelled:
      return v1::FINISH_REASON_CANCELLED;
    case Finish::kError:
      return v1::FINISH_REASON_ERROR;
    case Finish::kNone:
      break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

absl::Duration FromProto(const google::protobuf::Duration& duration) {
  return absl::Seconds(duration.seconds()) +
         absl::Nanoseconds(duration.nanos());
}

// Streams one Generate call. Owned by a shared_ptr of its own (self_) from
// Start until gRPC's OnDone, so the loop's listener, which holds a weak_ptr,
// never reaches a deleted reactor.
//
// Locking: mu_ guards the reactor's state; StartWrite and Finish are called
// with mu_ released (gRPC may run a reaction inline), and the loop is called
// with mu_ released (its listener takes mu_).
class GenerateReactor final
    : public grpc::ServerWriteReactor<v1::RunnerGenerateResponse> {
 public:
  explicit GenerateReactor(GenerationLoop* loop) : loop_(loop) {}

  static GenerateReactor* Start(GenerationLoop* loop,
                                std::vector<SequenceInput> inputs) {
    auto reactor = std::make_shared<GenerateReactor>(loop);
    reactor->self_ = reactor;
    std::weak_ptr<GenerateReactor> weak = reactor;
    absl::StatusOr<std::shared_ptr<Call>> call =
        loop->Submit(std::move(inputs), [weak] {
          if (std::shared_ptr<GenerateReactor> live = weak.lock()) {
            live->Pump();
          }
        });
    if (!call.ok()) {
      reactor->self_.reset();  // Refuse makes its own
      return Refuse(ToGrpcStatus(call.status()));
    }
    bool cancelled;
    {
      absl::MutexLock lock(&reactor->mu_);
      reactor->call_ = *call;
      cancelled = reactor->client_gone_;
    }
    // OnCancel may have run before call_ was set.
    if (cancelled) loop->Cancel(*call);
    reactor->Pump();
    return reactor.get();
  }

  // A reactor that only finishes with `status`.
  static GenerateReactor* Refuse(const grpc::Status& status) {
    auto reactor = std::make_shared<GenerateReactor>(nullptr);
    reactor->self_ = reactor;
    reactor->Finish(status);
    return reactor.get();
  }

  void OnWriteDone(bool ok) override {
    std::shared_ptr<Call> call;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok && !client_gone_) {
        client_gone_ = true;
        call = call_;
      }
    }
    if (call != nullptr) loop_->Cancel(call);
    Pump();
  }

  void OnCancel() override {
    std::shared_ptr<Call> call;
    {
      absl::MutexLock lock(&mu_);
      if (client_gone_) return;
      client_gone_ = true;
      call = call_;
    }
    if (call != nullptr) loop_->Cancel(call);
    Pump();
  }

  void OnDone() override {
    // The last reference may be this one; nothing runs after it.
    std::shared_ptr<GenerateReactor> self = std::move(self_);
  }

 private:
  // Starts the next write, or finishes when every sequence has ended. Safe
  // to call from any thread at any time.
  void Pump() {
    bool finish = false;
    grpc::Status finish_status;
    {
      absl::MutexLock lock(&mu_);
      if (call_ == nullptr || writing_ || finished_) return;
      GenerationEvent event;
      while (call_->Pop(&event)) {
        if (client_gone_) continue;  // drain the loop's events, write nothing
        response_ = ToProto(event);
        writing_ = true;
        break;
      }
      if (!writing_) {
        if (!call_->Done()) return;
        finished_ = true;
        finish = true;
        if (client_gone_) {
          finish_status =
              grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
        }
      }
    }
    if (finish) {
      Finish(finish_status);
    } else {
      StartWrite(&response_);
    }
  }

  GenerationLoop* const loop_;
  std::shared_ptr<GenerateReactor> self_;
  absl::Mutex mu_;  // Protects the fields below.
  std::shared_ptr<Call> call_ ABSL_GUARDED_BY(mu_);
  // The message of the one outstanding write (owned here until it is done).
  v1::RunnerGenerateResponse response_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool client_gone_ ABSL_GUARDED_BY(mu_) = false;
};

grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context,
                                      const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

}  // namespace

v1::RunnerGenerateResponse ToProto(const GenerationEvent& event) {
  v1::RunnerGenerateResponse response;
  response.set_sequence_id(event.sequence_id);
  response.set_index(event.index);
  response.set_delta(event.text);
  response.mutable_token_ids()->Add(event.token_ids.begin(),
                                    event.token_ids.end());
  if (event.finished()) {
    response.set_finish_reason(ToProto(event.finish));
    response.mutable_usage()->set_prompt_tokens(event.prompt_tokens);
    response.mutable_usage()->set_completion_tokens(event.completion_tokens);
  }
  if (!event.error.ok()) {
    response.mutable_error()->set_code(static_cast<int>(event.error.code()));
    response.mutable_error()->set_message(std::string(event.error.message()));
  }
  return response;
}

v1::OptimizationRecipe RecipeOf(const engine::ModelInfo& info) {
  v1::OptimizationRecipe recipe;
  std::vector<std::string> parts = absl::StrSplit(info.quantization, ':');
  if (parts.size() != 2) {
    recipe.set_engine(v1::ENGINE_NONE);
    return recipe;
  }
  v1::Engine engine = v1::ENGINE_UNSPECIFIED;
  v1::Quantization quantization = v1::QUANTIZATION_UNSPECIFIED;
  if (!v1::Engine_Parse(
          absl::StrCat("ENGINE_", absl::AsciiStrToUpper(parts[0])), &engine)) {
    engine = v1::ENGINE_UNSPECIFIED;
  }
  if (!v1::Quantization_Parse(
          absl::StrCat("QUANTIZATION_", absl::AsciiStrToUpper(parts[1])),
          &quantization)) {
    quantization = v1::QUANTIZATION_UNSPECIFIED;
  }
  recipe.set_engine(engine);
  recipe.set_quantization(quantization);
  return recipe;
}

void RunnerServiceImpl::SetLoop(const engine::Model* model,
                                GenerationLoop* loop) {
  model_ = model;
  loop_ = loop;
}

grpc::ServerWriteReactor<v1::RunnerGenerateResponse>*
RunnerServiceImpl::Generate(grpc::CallbackServerContext* /*context*/,
                            const v1::RunnerGenerateRequest* request) {
  GenerationLoop* loop = loop_.load();
  if (loop == nullptr) {
    return GenerateReactor::Refuse(Loading());
  }
  std::vector<SequenceInput> inputs;
  inputs.reserve(request->sequences_size());
  for (const v1::RunnerSequence& sequence : request->sequences()) {
    SequenceInput input{.id = sequence.id(),
                        .prompt = sequence.prompt(),
                        .prompt_ids = {sequence.prompt_ids().begin(),
                                       sequence.prompt_ids().end()},
                        .sampling = sequence.sampling()};
    if (sequence.has_timeout()) input.timeout = FromProto(sequence.timeout());
    inputs.push_back(std::move(input));
  }
  return GenerateReactor::Start(loop, std::move(inputs));
}

grpc::ServerUnaryReactor* RunnerServiceImpl::Cancel(
    grpc::CallbackServerContext* context,
    const v1::RunnerCancelRequest* request,
    v1::RunnerCancelResponse* response) {
  GenerationLoop* loop = loop_.load();
  if (loop == nullptr) return FinishUnary(context, Loading());
  absl::StatusOr<CancelResult> result = loop->Cancel(std::vector<std::string>(
      request->sequence_ids().begin(), request->sequence_ids().end()));
  if (!result.ok()) return FinishUnary(context, ToGrpcStatus(result.status()));
  for (std::string& id : result->cancelled)
    response->add_cancelled(std::move(id));
  for (std::string& id : result->not_found)
    response->add_not_found(std::move(id));
  return FinishUnary(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* RunnerServiceImpl::Info(
    grpc::CallbackServerContext* context,
    const v1::RunnerInfoRequest* /*request*/, v1::RunnerInfo* response) {
  return FinishUnary(context, FillInfo(response));
}

grpc::Status RunnerServiceImpl::FillInfo(v1::RunnerInfo* response) const {
  const engine::Model* model = model_.load();
  GenerationLoop* loop = loop_.load();
  if (model == nullptr || loop == nullptr) return Loading();
  const engine::ModelInfo& info = model->info();
  const engine::ModelConfig& config = model->config();
  response->set_deployment(identity_.deployment);
  response->set_revision(identity_.revision);
  response->set_replica(identity_.replica);
  *response->mutable_recipe() = RecipeOf(info);
  response->set_model_path(info.path);
  response->set_architecture(info.architecture);
  response->set_parameter_count(info.parameters);
  response->set_weight_dtype(info.weight_dtype);
  response->set_context_length(loop->max_context());
  response->set_weight_bytes(info.weight_bytes);
  // Float32 keys and values for every layer, slot and position.
  int64_t kv_dim = static_cast<int64_t>(config.num_kv_heads) * config.head_dim;
  response->set_kv_cache_bytes(int64_t{2} * config.num_layers * kv_dim *
                               loop->max_context() * loop->capacity() *
                               static_cast<int64_t>(sizeof(float)));
  response->set_batch_capacity(loop->capacity());
  response->set_active_sequences(loop->active());
  response->set_queued_sequences(loop->queued());
  response->set_threads(model->threads());
  *response->mutable_sampling() = loop->sampling();
  return grpc::Status::OK;
}

}  // namespace hangar::runner
