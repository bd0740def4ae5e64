#include "engine/batch_decoder.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"

namespace hangar::engine {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone:
      return "";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kCancelled:
      return "cancelled";
  }
  return "";
}

struct BatchDecoder::Sequence {
  Sequence(SequenceId id, SequenceRequest req, const Tokenizer* tok,
           uint64_t seed)
      : id(id),
        tokens(std::move(req.prompt_ids)),
        prompt_len(int(tokens.size())),
        params(std::move(req.sampling)),
        sampler(params, seed),
        detok(tok) {
    for (const std::string& s : params.stop)
      max_stop = std::max(max_stop, s.size());
  }
  SequenceId id;
  std::vector<int> tokens;  // prompt + generated
  int prompt_len;
  int cached = 0;  // positions in the KV cache
  SamplingParams params;
  Sampler sampler;
  StreamDetokenizer detok;
  std::string text;     // generated text so far
  size_t emitted = 0;   // bytes of `text` already returned
  size_t max_stop = 0;  // longest stop sequence
  bool cancelled = false;
  int generated() const { return int(tokens.size()) - prompt_len; }
};

BatchDecoder::BatchDecoder(const Model* model, const DecoderOptions& options,
                           int context, std::unique_ptr<DecodeState> state)
    : model_(model),
      options_(options),
      context_(context),
      kv_cache_bytes_(state->bytes()),
      state_(std::move(state)) {
  slots_.resize(size_t(options.max_batch));
}
BatchDecoder::~BatchDecoder() = default;

absl::StatusOr<std::unique_ptr<BatchDecoder>> BatchDecoder::Create(
    const Model* model, const DecoderOptions& options) {
  if (model == nullptr)
    return absl::InvalidArgumentError("model: must not be null");
  if (options.max_batch < 1 || options.max_batch > 256) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_batch: must be in [1, 256]; was ", options.max_batch));
  }
  if (options.max_context < 0 ||
      options.max_context > model->context_length()) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_context: must be in [0, ", model->context_length(),
                     "]; was ", options.max_context));
  }
  if (options.prefill_chunk < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prefill_chunk: must be >= 1; was ", options.prefill_chunk));
  }
  int context =
      options.max_context > 0 ? options.max_context : model->context_length();
  int max_rows = std::max(options.prefill_chunk, 1) + options.max_batch;
  ASSIGN_OR_RETURN(auto state,
                   model->NewState(options.max_batch, context, max_rows));
  auto d = std::unique_ptr<BatchDecoder>(
      new BatchDecoder(model, options, context, std::move(state)));
  absl::MutexLock lock(&d->step_mu_);
  d->logits_.resize(size_t(options.max_batch) * model->vocab_size());
  return d;
}

int BatchDecoder::active() const {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& s : slots_) n += s != nullptr;
  return n;
}

absl::StatusOr<SequenceId> BatchDecoder::Add(SequenceRequest request) {
  RETURN_IF_ERROR(ValidateSamplingParams(request.sampling));
  if (request.prompt_ids.empty()) {
    return absl::InvalidArgumentError(
        "prompt: must contain at least one token");
  }
  const int vocab = model_->vocab_size();
  for (size_t i = 0; i < request.prompt_ids.size(); ++i) {
    int t = request.prompt_ids[i];
    if (t < 0 || t >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt: token ", i, " is ", t,
                       ", outside the vocabulary [0, ", vocab, ")"));
    }
  }
  if (int(request.prompt_ids.size()) >= context_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt: ", request.prompt_ids.size(),
        " tokens leave no room in the context of ", context_, " tokens"));
  }
  absl::MutexLock lock(&mu_);
  for (auto& slot : slots_) {
    if (slot != nullptr) continue;
    SequenceId id = next_id_++;
    uint64_t seed =
        request.sampling.has_seed
            ? request.sampling.seed
            : uint64_t(
                  std::chrono::steady_clock::now().time_since_epoch().count()) ^
                  (++seed_counter_ * 0x9e3779b97f4a7c15ULL);
    slot = std::make_unique<Sequence>(id, std::move(request),
                                      &model_->tokenizer(), seed);
    return id;
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "decoder: all ", options_.max_batch, " sequence slots are busy"));
}

absl::Status BatchDecoder::Cancel(SequenceId id) {
  absl::MutexLock lock(&mu_);
  for (auto& slot : slots_) {
    if (slot != nullptr && slot->id == id) {
      slot->cancelled = true;
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError(absl::StrCat("sequence ", id, " is not active"));
}

// Moves text that can no longer become part of a stop sequence into the
// event (all of it when `all`).
void BatchDecoder::FinishText(Sequence* s, SequenceEvent* e, bool all) {
  size_t end = s->text.size();
  if (!all && s->max_stop > 1) {
    // Hold back the longest suffix that is a proper prefix of a stop string.
    size_t hold = 0;
    for (const std::string& stop : s->params.stop) {
      for (size_t len = std::min(stop.size() - 1, s->text.size()); len > hold;
           --len) {
        if (s->text.compare(s->text.size() - len, len, stop, 0, len) == 0) {
          hold = len;
          break;
        }
      }
    }
    end = std::max(s->emitted, s->text.size() - hold);
    // Never split a UTF-8 character.
    while (end > s->emitted && end < s->text.size() &&
           (uint8_t(s->text[end]) & 0xc0) == 0x80)
      --end;
  }
  e->text += s->text.substr(s->emitted, end - s->emitted);
  s->emitted = end;
}

absl::StatusOr<std::vector<SequenceEvent>> BatchDecoder::Step() {
  absl::MutexLock step_lock(&step_mu_);
  std::vector<SequenceEvent> events;
  // Snapshot the active sequences; handle cancellations.
  std::vector<Sequence*> seqs;
  std::vector<int> seq_slots;
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < slots_.size(); ++i) {
      Sequence* s = slots_[i].get();
      if (s == nullptr) continue;
      if (s->cancelled) {
        SequenceEvent e;
        e.id = s->id;
        e.finished = true;
        e.reason = FinishReason::kCancelled;
        e.prompt_tokens = s->prompt_len;
        e.generated_tokens = s->generated();
        events.push_back(std::move(e));
        slots_[i].reset();
        continue;
      }
      seqs.push_back(s);
      seq_slots.push_back(int(i));
    }
  }
  if (seqs.empty()) return events;
  // Rows: one decode token per decoding sequence first, then prompt chunks.
  rows_.clear();
  std::vector<int> logit_row_of(seqs.size(), -1);
  int n_logits = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    Sequence* s = seqs[i];
    if (s->cached < s->prompt_len) continue;
    rows_.push_back(
        ForwardRow{seq_slots[i], s->cached, s->tokens.back(), true});
    logit_row_of[i] = n_logits++;
  }
  int budget = options_.prefill_chunk;
  std::vector<int> advance(seqs.size(), 0);
  for (size_t i = 0; i < seqs.size() && budget > 0; ++i) {
    Sequence* s = seqs[i];
    if (s->cached >= s->prompt_len) continue;
    int n = std::min(budget, s->prompt_len - s->cached);
    for (int k = 0; k < n; ++k) {
      int pos = s->cached + k;
      bool last = pos == s->prompt_len - 1;
      rows_.push_back(
          ForwardRow{seq_slots[i], pos, s->tokens[size_t(pos)], last});
      if (last) logit_row_of[i] = n_logits++;
    }
    advance[i] = n;
    budget -= n;
  }
  // Logit rows must be in row order: decode rows come first and prompt rows
  // after, matching the order logit_row_of was assigned.
  RETURN_IF_ERROR(model_->Forward(rows_, state_.get(), logits_.data()));
  for (size_t i = 0; i < seqs.size(); ++i) {
    Sequence* s = seqs[i];
    s->cached += advance[i] > 0 ? advance[i] : (logit_row_of[i] >= 0 ? 1 : 0);
  }
  // The tokenizer may be smaller than the embedding table (padded vocab):
  // never sample ids it cannot decode.
  const int vocab = std::min(model_->vocab_size(),
                             std::max(model_->tokenizer().vocab_size(), 1));
  std::vector<SequenceId> finished_ids;
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (logit_row_of[i] < 0) continue;
    Sequence* s = seqs[i];
    const float* logits =
        logits_.data() + size_t(logit_row_of[i]) * model_->vocab_size();
    int token = s->sampler.Sample(logits, vocab);
    SequenceEvent e;
    e.id = s->id;
    e.token = token;
    e.prompt_tokens = s->prompt_len;
    s->tokens.push_back(token);
    e.generated_tokens = s->generated();
    if (!s->params.ignore_eos && model_->IsEos(token)) {
      s->text += s->detok.Flush();
      FinishText(s, &e, true);
      e.finished = true;
      e.reason = FinishReason::kEos;
    } else {
      s->text += s->detok.Push(token);
      // Stop sequences: search the text not yet emitted (plus overlap).
      size_t from = s->emitted;
      size_t best = std::string::npos;
      for (const std::string& stop : s->params.stop) {
        size_t p = s->text.find(stop, from);
        if (p != std::string::npos) best = std::min(best, p);
      }
      if (best != std::string::npos) {
        s->text.resize(best);
        FinishText(s, &e, true);
        e.finished = true;
        e.reason = FinishReason::kStop;
      } else if (s->generated() >= s->params.max_new_tokens ||
                 int(s->tokens.size()) >= context_) {
        s->text += s->detok.Flush();
        FinishText(s, &e, true);
        e.finished = true;
        e.reason = FinishReason::kLength;
      } else {
        FinishText(s, &e, false);
      }
    }
    if (e.finished) finished_ids.push_back(s->id);
    events.push_back(std::move(e));
  }
  if (!finished_ids.empty()) {
    absl::MutexLock lock(&mu_);
    for (auto& slot : slots_) {
      if (slot != nullptr && std::find(finished_ids.begin(), finished_ids.end(),
                                       slot->id) != finished_ids.end()) {
        slot.reset();
      }
    }
  }
  return events;
}

}  // namespace hangar::engine
