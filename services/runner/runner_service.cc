#include "services/runner/runner_service.h"

#include "common/status/grpc_status.h"

namespace hangar::runner {
namespace {

// How often a waiting call checks whether its client went away; the
// synchronous API has no cancellation callback.
constexpr absl::Duration kCancelPoll = absl::Milliseconds(50);

}  // namespace

engine::SamplingParams FromProto(const v1::SamplingParameters& sampling) {
  engine::SamplingParams params;
  params.temperature = sampling.temperature();
  params.top_k = sampling.top_k();
  params.top_p = sampling.top_p() == 0 ? 1.0f : sampling.top_p();
  params.max_new_tokens = sampling.max_tokens();
  params.has_seed = sampling.seed() != 0;
  params.seed = sampling.seed();
  params.stop.assign(sampling.stop_sequences().begin(),
                     sampling.stop_sequences().end());
  return params;
}

v1::FinishReason ToProto(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case engine::FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case engine::FinishReason::kEos:
      return v1::FINISH_REASON_EOS;
    case engine::FinishReason::kCancelled:
      return v1::FINISH_REASON_CANCELLED;
    case engine::FinishReason::kNone:
      break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void RunnerServiceImpl::SetLoop(const engine::Model* model,
                                GenerationLoop* loop, int threads) {
  threads_ = threads;
  model_ = model;
  loop_ = loop;
}

grpc::Status RunnerServiceImpl::Generate(
    grpc::ServerContext* context, const v1::RunnerGenerateRequest* request,
    grpc::ServerWriter<v1::RunnerGenerateResponse>* writer) {
  GenerationLoop* loop = loop_.load();
  if (loop == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "model loading");
  }
  if (request->sequences_size() > loop->capacity()) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        "sequences: at most " + std::to_string(loop->capacity()) +
            " per call (the batch capacity); was " +
            std::to_string(request->sequences_size()));
  }
  std::vector<SequenceInput> inputs;
  inputs.reserve(request->sequences_size());
  for (const v1::RunnerSequence& sequence : request->sequences()) {
    inputs.push_back(
        {.prompt = sequence.prompt(),
         .prompt_ids = {sequence.prompt_ids().begin(),
                        sequence.prompt_ids().end()},
         .sampling = FromProto(sequence.sampling())});
  }
  absl::StatusOr<std::shared_ptr<Call>> call = loop->Submit(std::move(inputs));
  if (!call.ok()) return ToGrpcStatus(call.status());

  GenerationEvent event;
  bool client_gone = false;
  while (true) {
    Call::NextResult next = (*call)->Next(&event, kCancelPoll);
    if (next == Call::kDone) break;
    if (next == Call::kTimeout) {
      // Deadline passed or client cancelled: stop this call's sequences.
      if (context->IsCancelled() && !client_gone) {
        client_gone = true;
        loop->Cancel(*call);
      }
      continue;
    }
    if (!event.error.ok()) {
      loop->Cancel(*call);
      return ToGrpcStatus(event.error);
    }
    if (client_gone) continue;  // drain the loop's events, write nothing
    v1::RunnerGenerateResponse response;
    response.set_index(event.index);
    response.set_delta(event.text);
    response.mutable_token_ids()->Add(event.token_ids.begin(),
                                      event.token_ids.end());
    if (event.finished) {
      response.set_finish_reason(ToProto(event.reason));
      response.mutable_usage()->set_prompt_tokens(event.prompt_tokens);
      response.mutable_usage()->set_completion_tokens(event.completion_tokens);
    }
    if (!writer->Write(response)) {
      client_gone = true;
      loop->Cancel(*call);
    }
  }
  if (client_gone) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
  }
  return grpc::Status::OK;
}

grpc::Status RunnerServiceImpl::Info(grpc::ServerContext* /*context*/,
                                     const v1::RunnerInfoRequest* /*request*/,
                                     v1::RunnerInfo* response) {
  const engine::Model* model = model_.load();
  GenerationLoop* loop = loop_.load();
  if (model == nullptr || loop == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "model loading");
  }
  const engine::ModelInfo& info = model->info();
  const engine::ModelConfig& config = model->config();
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
  response->set_threads(threads_.load());
  return grpc::Status::OK;
}

}  // namespace hangar::runner
