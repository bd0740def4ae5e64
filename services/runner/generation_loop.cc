#include "services/runner/generation_loop.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"

namespace hangar::runner {
namespace {

// Whether `text` is well-formed UTF-8 (no overlongs, surrogates or code
// points past U+10FFFF).
bool IsValidUtf8(const std::string& text) {
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    int length;
    uint32_t code_point;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      length = 2;
      code_point = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      length = 3;
      code_point = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      length = 4;
      code_point = c & 0x07;
    } else {
      return false;
    }
    if (i + length > n) return false;
    for (int k = 1; k < length; ++k) {
      unsigned char next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    static constexpr uint32_t kMinimum[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code_point < kMinimum[length] || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return false;
    }
    i += length;
  }
  return true;
}

absl::Status Prefixed(int index, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat("sequences[", index, "].",
                                                  status.message()));
}

}  // namespace

Call::NextResult Call::Next(GenerationEvent* event, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !events_.empty() || finished_ == sequences_;
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) {
    return kTimeout;
  }
  if (events_.empty()) return kDone;
  *event = std::move(events_.front());
  events_.pop_front();
  return kEvent;
}

void Call::Push(GenerationEvent event) {
  absl::MutexLock lock(&mu_);
  if (event.finished) ++finished_;
  events_.push_back(std::move(event));
}

absl::StatusOr<std::unique_ptr<GenerationLoop>> GenerationLoop::Create(
    const engine::Model* model, const GenerationLoopOptions& options) {
  if (model == nullptr) return absl::InvalidArgumentError("model: is null");
  if (options.max_queue < 0 || options.max_queue > 65536) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_queue: must be in [0, 65536]; was ", options.max_queue));
  }
  if (options.default_max_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("default_max_tokens: must be >= 1; was ",
                     options.default_max_tokens));
  }
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("clock: is null");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<engine::BatchDecoder> decoder,
                   engine::BatchDecoder::Create(
                       model, {.max_batch = options.max_batch,
                               .max_context = options.max_context}));
  return std::unique_ptr<GenerationLoop>(
      new GenerationLoop(model, options, std::move(decoder)));
}

GenerationLoop::GenerationLoop(const engine::Model* model,
                               GenerationLoopOptions options,
                               std::unique_ptr<engine::BatchDecoder> decoder)
    : model_(model),
      options_(std::move(options)),
      decoder_(std::move(decoder)),
      thread_([this] { Run(); }) {}

GenerationLoop::~GenerationLoop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
  // Whatever is left ends as cancelled, so no reader waits forever.
  absl::MutexLock lock(&mu_);
  for (Pending& pending : queue_) {
    pending.call->Push({.index = pending.index,
                        .finished = true,
                        .reason = engine::FinishReason::kCancelled});
  }
  for (auto& [id, running] : running_) {
    running.call->Push({.index = running.index,
                        .finished = true,
                        .reason = engine::FinishReason::kCancelled});
  }
}

int GenerationLoop::max_context() const { return decoder_->max_context(); }

int GenerationLoop::active() const { return decoder_->active(); }

int GenerationLoop::queued() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(queue_.size());
}

absl::StatusOr<std::shared_ptr<Call>> GenerationLoop::Submit(
    std::vector<SequenceInput> sequences) {
  if (sequences.empty()) {
    return absl::InvalidArgumentError("sequences: must not be empty");
  }
  const engine::Tokenizer& tokenizer = model_->tokenizer();
  const int vocab = model_->info().vocab_size;
  std::vector<engine::SequenceRequest> requests;
  requests.reserve(sequences.size());
  for (int i = 0; i < static_cast<int>(sequences.size()); ++i) {
    SequenceInput& input = sequences[i];
    engine::SequenceRequest request;
    if (!input.prompt.empty() && !input.prompt_ids.empty()) {
      return Prefixed(i, absl::InvalidArgumentError(
                             "prompt: give prompt or prompt_ids, not both"));
    }
    if (input.prompt.empty() && input.prompt_ids.empty()) {
      return Prefixed(i, absl::InvalidArgumentError("prompt: must not be empty"));
    }
    if (!input.prompt.empty()) {
      if (!IsValidUtf8(input.prompt)) {
        return Prefixed(i, absl::InvalidArgumentError(
                               "prompt: must be valid UTF-8"));
      }
      auto ids = tokenizer.Encode(input.prompt);
      if (!ids.ok()) return Prefixed(i, ids.status());
      request.prompt_ids = std::move(ids).value();
    } else {
      for (int id : input.prompt_ids) {
        if (id < 0 || id >= vocab) {
          return Prefixed(i, absl::InvalidArgumentError(absl::StrCat(
                                 "prompt_ids: must be in [0, ", vocab,
                                 "); was ", id)));
        }
      }
      request.prompt_ids = std::move(input.prompt_ids);
    }
    if (static_cast<int>(request.prompt_ids.size()) >= max_context()) {
      return Prefixed(
          i, absl::InvalidArgumentError(absl::StrCat(
                 "prompt: ", request.prompt_ids.size(),
                 " tokens leave no room for output in the context of ",
                 max_context(), " tokens")));
    }
    request.sampling = std::move(input.sampling);
    if (request.sampling.max_new_tokens == 0) {
      request.sampling.max_new_tokens = options_.default_max_tokens;
    }
    if (absl::Status valid = engine::ValidateSamplingParams(request.sampling);
        !valid.ok()) {
      return Prefixed(i, valid);
    }
    requests.push_back(std::move(request));
  }

  auto call = std::shared_ptr<Call>(new Call(static_cast<int>(requests.size())));
  absl::MutexLock lock(&mu_);
  if (stop_) return absl::UnavailableError("runner is shutting down");
  int free_slots = options_.max_batch - decoder_->active();
  if (static_cast<int>(queue_.size() + requests.size()) >
      options_.max_queue + free_slots) {
    return absl::ResourceExhaustedError(
        absl::StrCat("queue full: ", queue_.size(), " sequences waiting (max ",
                     options_.max_queue, ")"));
  }
  absl::Time now = options_.clock->Now();
  for (int i = 0; i < static_cast<int>(requests.size()); ++i) {
    if (options_.metrics != nullptr) {
      options_.metrics->RecordPrompt(
          static_cast<int>(requests[i].prompt_ids.size()));
    }
    queue_.push_back({call, i, std::move(requests[i]), now});
  }
  AdmitLocked();
  return call;
}

void GenerationLoop::Cancel(const std::shared_ptr<Call>& call) {
  {
    absl::MutexLock call_lock(&call->mu_);
    if (call->cancelled_) return;
    call->cancelled_ = true;
  }
  absl::MutexLock lock(&mu_);
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (it->call == call) {
      call->Push({.index = it->index,
                  .finished = true,
                  .reason = engine::FinishReason::kCancelled});
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [id, running] : running_) {
    // The decoder reports the kCancelled finish on its next step.
    if (running.call == call) decoder_->Cancel(id).IgnoreError();
  }
  UpdateGaugesLocked();
}

void GenerationLoop::AdmitLocked() {
  while (!queue_.empty() && decoder_->active() < options_.max_batch) {
    Pending pending = std::move(queue_.front());
    queue_.pop_front();
    auto id = decoder_->Add(std::move(pending.request));
    if (!id.ok()) {
      // Validated at Submit; reaching this is a bug, reported to the caller.
      pending.call->Push({.index = pending.index,
                          .finished = true,
                          .reason = engine::FinishReason::kNone,
                          .error = id.status()});
      continue;
    }
    running_.emplace(*id, Running{.call = pending.call,
                                  .index = pending.index,
                                  .submit_time = pending.submit_time});
  }
  UpdateGaugesLocked();
}

void GenerationLoop::UpdateGaugesLocked() {
  if (options_.metrics == nullptr) return;
  options_.metrics->SetOccupancy(decoder_->active(), options_.max_batch,
                                 static_cast<int>(queue_.size()));
}

void GenerationLoop::Run() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || !running_.empty();
      };
      mu_.Await(absl::Condition(&has_work));
      if (stop_) return;
    }
    absl::Time start = options_.clock->Now();
    absl::StatusOr<std::vector<engine::SequenceEvent>> events = decoder_->Step();
    absl::Time end = options_.clock->Now();
    if (!events.ok()) {
      // The engine failed: end every running sequence with the error.
      absl::MutexLock lock(&mu_);
      for (auto& [id, running] : running_) {
        decoder_->Cancel(id).IgnoreError();
        running.call->Push({.index = running.index,
                            .finished = true,
                            .error = events.status()});
      }
      running_.clear();
      continue;
    }
    int generated = 0;
    for (const engine::SequenceEvent& event : *events) {
      if (event.token >= 0) ++generated;
    }
    if (options_.metrics != nullptr && !events->empty()) {
      options_.metrics->RecordStep(end, end - start,
                                   static_cast<int>(events->size()), generated);
    }
    Dispatch(*events);
  }
}

void GenerationLoop::Dispatch(const std::vector<engine::SequenceEvent>& events) {
  absl::MutexLock lock(&mu_);
  absl::Time now = options_.clock->Now();
  for (const engine::SequenceEvent& event : events) {
    auto it = running_.find(event.id);
    if (it == running_.end()) continue;
    Running& running = it->second;
    GenerationEvent out{.index = running.index,
                        .text = event.text,
                        .finished = event.finished,
                        .reason = event.reason,
                        .prompt_tokens = event.prompt_tokens,
                        .completion_tokens = event.generated_tokens};
    if (event.token >= 0) {
      out.token_ids.push_back(event.token);
      if (!running.first_token_seen && options_.metrics != nullptr) {
        options_.metrics->RecordFirstToken(now - running.submit_time);
      }
      running.first_token_seen = true;
    }
    running.call->Push(std::move(out));
    if (event.finished) {
      if (options_.metrics != nullptr) {
        options_.metrics->RecordFinish(engine::FinishReasonName(event.reason));
      }
      running_.erase(it);
    }
  }
  AdmitLocked();
}

}  // namespace hangar::runner
