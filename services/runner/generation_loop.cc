#include "services/runner/generation_loop.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/sampling/sampling.h"
#include "common/status/status_macros.h"
#include "engine/tokenizer.h"

namespace hangar::runner {
namespace {

constexpr size_t kMaxIdBytes = 64;
constexpr size_t kMaxCancelIds = 256;

absl::Status SequenceError(int index, absl::string_view field,
                           absl::string_view rule) {
  return absl::InvalidArgumentError(
      absl::StrCat("sequences[", index, "].", field, ": ", rule));
}

// A value for an error message: quoted, escaped and cut to a readable size.
std::string Quoted(absl::string_view value) {
  constexpr size_t kShown = 80;
  std::string shown = absl::CHexEscape(value.substr(0, kShown));
  return absl::StrCat("\"", shown, value.size() > kShown ? "...\"" : "\"");
}

bool IsValidId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxIdBytes) return false;
  return std::all_of(id.begin(), id.end(),
                     [](char c) { return c >= 0x20 && c <= 0x7E; });
}

Finish FromEngine(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kLength:
      return Finish::kLength;
    case engine::FinishReason::kStop:
      return Finish::kStop;
    case engine::FinishReason::kEos:
      return Finish::kEos;
    case engine::FinishReason::kCancelled:
      return Finish::kCancelled;
    case engine::FinishReason::kNone:
      break;
  }
  return Finish::kNone;
}

engine::SamplingParams ToEngine(const sampling::EffectiveSampling& effective,
                                bool ignore_eos) {
  return {.temperature = effective.temperature,
          .top_k = effective.top_k,
          .top_p = effective.top_p,
          .has_seed = effective.seed.has_value(),
          .seed = effective.seed.value_or(0),
          .stop = effective.stop,
          .max_new_tokens = effective.max_tokens,
          .ignore_eos = ignore_eos};
}

}  // namespace

const char* FinishName(Finish finish) {
  switch (finish) {
    case Finish::kLength:
      return "length";
    case Finish::kStop:
      return "stop";
    case Finish::kEos:
      return "eos";
    case Finish::kCancelled:
      return "cancelled";
    case Finish::kError:
      return "error";
    case Finish::kNone:
      break;
  }
  return "";
}

bool Call::Pop(GenerationEvent* event) {
  absl::MutexLock lock(&mu_);
  if (events_.empty()) return false;
  *event = std::move(events_.front());
  events_.pop_front();
  return true;
}

bool Call::Done() {
  absl::MutexLock lock(&mu_);
  return events_.empty() && finished_ == sequences_;
}

void Call::Push(GenerationEvent event) {
  absl::MutexLock lock(&mu_);
  if (event.finished()) ++finished_;
  events_.push_back(std::move(event));
}

absl::StatusOr<std::unique_ptr<GenerationLoop>> GenerationLoop::Create(
    const engine::Model* model, const GenerationLoopOptions& options) {
  if (model == nullptr) return absl::InvalidArgumentError("model: is null");
  if (options.max_queue < 0 || options.max_queue > 65536) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_queue: must be in [0, 65536]; was ", options.max_queue));
  }
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("clock: is null");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<engine::BatchDecoder> decoder,
                   engine::BatchDecoder::Create(
                       model, {.max_batch = options.max_batch,
                               .max_context = options.max_context}));
  ASSIGN_OR_RETURN(v1::SamplingParams sampling,
                   sampling::NormalizeSamplingParams(
                       options.sampling, decoder->max_context(), "sampling"));
  return std::unique_ptr<GenerationLoop>(new GenerationLoop(
      model, options, std::move(sampling), std::move(decoder)));
}

GenerationLoop::GenerationLoop(const engine::Model* model,
                               GenerationLoopOptions options,
                               v1::SamplingParams sampling,
                               std::unique_ptr<engine::BatchDecoder> decoder)
    : model_(model),
      options_(std::move(options)),
      sampling_(std::move(sampling)),
      decoder_(std::move(decoder)),
      thread_([this] { Run(); }) {}

GenerationLoop::~GenerationLoop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
  // Whatever is left ends as cancelled, so no reader waits forever.
  Touched touched;
  {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> ids;
    for (const auto& [id, held] : held_) ids.push_back(id);
    for (const std::string& id : ids) {
      FinishLocked(id, {.finish = Finish::kCancelled}, touched);
    }
  }
  NotifyAll(touched);
}

int GenerationLoop::max_context() const { return decoder_->max_context(); }

int GenerationLoop::active() const { return decoder_->active(); }

int GenerationLoop::queued() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(queue_.size());
}

absl::StatusOr<engine::SequenceRequest> GenerationLoop::Prepare(
    int index, SequenceInput& input) const {
  engine::SequenceRequest request;
  if (!input.prompt.empty() && !input.prompt_ids.empty()) {
    return SequenceError(index, "prompt",
                         "give prompt or prompt_ids, not both");
  }
  if (input.prompt.empty() && input.prompt_ids.empty()) {
    return SequenceError(index, "prompt",
                         "one of prompt or prompt_ids is required");
  }
  if (!input.prompt.empty()) {
    if (!engine::IsValidUtf8(input.prompt)) {
      return SequenceError(index, "prompt", "must be valid UTF-8");
    }
    absl::StatusOr<std::vector<int>> ids =
        model_->tokenizer().Encode(input.prompt);
    if (!ids.ok()) {
      return SequenceError(index, "prompt", ids.status().message());
    }
    request.prompt_ids = std::move(ids).value();
  } else {
    const int vocab = model_->info().vocab_size;
    for (size_t i = 0; i < input.prompt_ids.size(); ++i) {
      const int id = input.prompt_ids[i];
      if (id < 0 || id >= vocab) {
        return SequenceError(index, absl::StrCat("prompt_ids[", i, "]"),
                             absl::StrCat("must be in [0, ", vocab,
                                          ") (the vocabulary); was ", id));
      }
    }
    request.prompt_ids = std::move(input.prompt_ids);
  }
  const int prompt_tokens = static_cast<int>(request.prompt_ids.size());
  if (prompt_tokens >= max_context()) {
    return SequenceError(
        index, input.prompt.empty() ? "prompt_ids" : "prompt",
        absl::StrCat("must be shorter than the context of ", max_context(),
                     " tokens; was ", prompt_tokens, " tokens"));
  }
  if (input.timeout <= absl::ZeroDuration()) {
    return SequenceError(index, "timeout",
                         absl::StrCat("must be positive; was ",
                                      absl::FormatDuration(input.timeout)));
  }
  ASSIGN_OR_RETURN(sampling::EffectiveSampling effective,
                   sampling::ApplySamplingOverrides(
                       sampling_, input.sampling, prompt_tokens, max_context(),
                       absl::StrCat("sequences[", index, "].sampling")));
  request.sampling = ToEngine(effective, options_.ignore_eos);
  return request;
}

absl::StatusOr<std::shared_ptr<Call>> GenerationLoop::Submit(
    std::vector<SequenceInput> sequences, std::function<void()> listener) {
  const int count = static_cast<int>(sequences.size());
  if (count == 0 || count > options_.max_batch) {
    return absl::InvalidArgumentError(
        absl::StrCat("sequences: must hold 1 to ", options_.max_batch,
                     " sequences (the batch capacity); was ", count));
  }
  absl::flat_hash_map<std::string, int> first_index;
  for (int i = 0; i < count; ++i) {
    const std::string& id = sequences[i].id;
    if (!IsValidId(id)) {
      return SequenceError(
          i, "id",
          absl::StrCat("must be 1 to ", kMaxIdBytes,
                       " printable ASCII characters; was ", Quoted(id)));
    }
    auto [it, inserted] = first_index.emplace(id, i);
    if (!inserted) {
      return SequenceError(i, "id",
                           absl::StrCat("duplicates sequences[", it->second,
                                        "].id; was ", Quoted(id)));
    }
  }
  // Per-sequence validation (tokenizing) happens outside the lock.
  std::vector<absl::StatusOr<engine::SequenceRequest>> requests;
  requests.reserve(count);
  int valid = 0;
  for (int i = 0; i < count; ++i) {
    requests.push_back(Prepare(i, sequences[i]));
    if (requests.back().ok()) ++valid;
  }

  auto call = std::shared_ptr<Call>(new Call(count, std::move(listener)));
  Touched touched;
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return absl::UnavailableError("runner is shutting down");
    for (int i = 0; i < count; ++i) {
      if (held_.contains(sequences[i].id)) {
        return SequenceError(
            i, "id",
            absl::StrCat("is held by a sequence that has not finished; was ",
                         Quoted(sequences[i].id)));
      }
    }
    const int free_slots = options_.max_batch - decoder_->active();
    if (static_cast<int>(queue_.size()) + valid >
        options_.max_queue + std::max(free_slots, 0)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("queue full: ", queue_.size(),
                       " sequences waiting (max ", options_.max_queue, ")"));
    }
    const absl::Time now = options_.clock->Now();
    for (int i = 0; i < count; ++i) {
      if (!requests[i].ok()) {
        GenerationEvent event{.sequence_id = sequences[i].id,
                              .index = i,
                              .finish = Finish::kError,
                              .error = requests[i].status()};
        RecordFinish(event);
        call->Push(std::move(event));
        continue;
      }
      Held held{
          .call = call,
          .index = i,
          .submit_time = now,
          .deadline = now + sequences[i].timeout,
          .prompt_tokens = static_cast<int>(requests[i]->prompt_ids.size()),
          .request = std::move(requests[i]).value()};
      if (options_.metrics != nullptr) {
        options_.metrics->RecordPrompt(held.prompt_tokens);
      }
      held_.emplace(sequences[i].id, std::move(held));
      queue_.push_back(sequences[i].id);
    }
    AdmitLocked(touched);
  }
  // Submit never calls the new call's own listener: its caller Pops.
  std::erase(touched, call);
  NotifyAll(touched);
  return call;
}

absl::StatusOr<CancelResult> GenerationLoop::Cancel(
    const std::vector<std::string>& ids) {
  if (ids.empty() || ids.size() > kMaxCancelIds) {
    return absl::InvalidArgumentError(
        absl::StrCat("sequence_ids: must hold 1 to ", kMaxCancelIds,
                     " ids; was ", ids.size()));
  }
  CancelResult result;
  Touched touched;
  {
    absl::MutexLock lock(&mu_);
    absl::flat_hash_set<std::string> seen;
    for (const std::string& id : ids) {
      if (!seen.insert(id).second) continue;  // named twice: answered once
      if (!held_.contains(id)) {
        result.not_found.push_back(id);
        continue;
      }
      StopLocked(id, Stopper::kCancel, touched);
      result.cancelled.push_back(id);
    }
    AdmitLocked(touched);
  }
  NotifyAll(touched);
  return result;
}

void GenerationLoop::Cancel(const std::shared_ptr<Call>& call) {
  Touched touched;
  {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> ids;
    for (const auto& [id, held] : held_) {
      if (held.call == call) ids.push_back(id);
    }
    for (const std::string& id : ids) StopLocked(id, Stopper::kCancel, touched);
    AdmitLocked(touched);
  }
  NotifyAll(touched);
}

void GenerationLoop::StopLocked(const std::string& id, Stopper stopper,
                                Touched& touched) {
  auto it = held_.find(id);
  if (it == held_.end()) return;
  Held& held = it->second;
  if (!held.running) {
    GenerationEvent event{.finish = Finish::kCancelled,
                          .prompt_tokens = held.prompt_tokens};
    if (stopper == Stopper::kDeadline) {
      event.error = absl::DeadlineExceededError(
          "the sequence's timeout passed while it waited for a slot");
    }
    FinishLocked(id, std::move(event), touched);
    return;
  }
  // The decoder reports the kCancelled finish on its next step. A first
  // reason sticks (a cancel after the deadline stays a deadline).
  if (held.stopper == Stopper::kNone) held.stopper = stopper;
  decoder_->Cancel(held.engine_id).IgnoreError();
}

void GenerationLoop::FinishLocked(const std::string& id, GenerationEvent event,
                                  Touched& touched) {
  auto it = held_.find(id);
  if (it == held_.end()) return;
  Held& held = it->second;
  event.sequence_id = id;
  event.index = held.index;
  RecordFinish(event);
  held.call->Push(std::move(event));
  touched.push_back(held.call);
  if (held.running) {
    running_.erase(held.engine_id);
  } else {
    queue_.erase(std::find(queue_.begin(), queue_.end(), id));
  }
  held_.erase(it);
}

void GenerationLoop::AdmitLocked(Touched& touched) {
  while (!queue_.empty() && decoder_->active() < options_.max_batch) {
    const std::string id = queue_.front();
    Held& held = held_.at(id);
    absl::StatusOr<engine::SequenceId> engine_id =
        decoder_->Add(std::move(held.request));
    if (!engine_id.ok()) {
      // Validated at Submit; reaching this is a bug, reported to the caller.
      FinishLocked(id, {.finish = Finish::kError, .error = engine_id.status()},
                   touched);
      continue;
    }
    queue_.pop_front();
    held.running = true;
    held.engine_id = *engine_id;
    running_.emplace(*engine_id, id);
  }
  UpdateGaugesLocked();
}

void GenerationLoop::ExpireLocked(Touched& touched) {
  const absl::Time now = options_.clock->Now();
  std::vector<std::string> expired;
  for (const auto& [id, held] : held_) {
    if (held.deadline <= now && held.stopper == Stopper::kNone) {
      expired.push_back(id);
    }
  }
  for (const std::string& id : expired) {
    StopLocked(id, Stopper::kDeadline, touched);
  }
}

void GenerationLoop::UpdateGaugesLocked() {
  if (options_.metrics == nullptr) return;
  options_.metrics->SetOccupancy(decoder_->active(), options_.max_batch,
                                 static_cast<int>(queue_.size()));
}

void GenerationLoop::RecordFinish(const GenerationEvent& event) {
  if (options_.metrics == nullptr) return;
  options_.metrics->RecordFinish(absl::IsDeadlineExceeded(event.error)
                                     ? "deadline_exceeded"
                                     : FinishName(event.finish));
}

void GenerationLoop::NotifyAll(const Touched& touched) {
  // A call touched many times is told once.
  std::vector<Call*> told;
  for (const std::shared_ptr<Call>& call : touched) {
    if (std::find(told.begin(), told.end(), call.get()) != told.end()) continue;
    told.push_back(call.get());
    call->Notify();
  }
}

void GenerationLoop::Run() {
  while (true) {
    Touched touched;
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || !running_.empty();
      };
      mu_.Await(absl::Condition(&has_work));
      if (stop_) return;
      ExpireLocked(touched);
    }
    NotifyAll(touched);
    absl::Time start = options_.clock->Now();
    absl::StatusOr<std::vector<engine::SequenceEvent>> events =
        decoder_->Step();
    absl::Time end = options_.clock->Now();
    if (!events.ok()) {
      // The engine failed: end every decoding sequence with the error.
      Touched failed;
      {
        absl::MutexLock lock(&mu_);
        std::vector<std::string> ids;
        for (const auto& [engine_id, id] : running_) {
          decoder_->Cancel(engine_id).IgnoreError();
          ids.push_back(id);
        }
        for (const std::string& id : ids) {
          FinishLocked(id, {.finish = Finish::kError, .error = events.status()},
                       failed);
        }
      }
      NotifyAll(failed);
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

void GenerationLoop::Dispatch(
    const std::vector<engine::SequenceEvent>& events) {
  Touched touched;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = options_.clock->Now();
    for (const engine::SequenceEvent& event : events) {
      auto running = running_.find(event.id);
      if (running == running_.end()) continue;
      const std::string id = running->second;
      Held& held = held_.at(id);
      GenerationEvent out{.text = event.text,
                          .prompt_tokens = event.prompt_tokens,
                          .completion_tokens = event.generated_tokens};
      if (event.token >= 0) {
        out.token_ids.push_back(event.token);
        if (!held.first_token_seen && options_.metrics != nullptr) {
          options_.metrics->RecordFirstToken(now - held.submit_time);
        }
        held.first_token_seen = true;
      }
      if (!event.finished) {
        out.sequence_id = id;
        out.index = held.index;
        held.call->Push(std::move(out));
        touched.push_back(held.call);
        continue;
      }
      out.finish = FromEngine(event.reason);
      if (out.finish == Finish::kCancelled &&
          held.stopper == Stopper::kDeadline) {
        out.error = absl::DeadlineExceededError(absl::StrCat(
            "the sequence's timeout of ",
            absl::FormatDuration(held.deadline - held.submit_time), " passed"));
      }
      FinishLocked(id, std::move(out), touched);
    }
    AdmitLocked(touched);
  }
  NotifyAll(touched);
}

}  // namespace hangar::runner
