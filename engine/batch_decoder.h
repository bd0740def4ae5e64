// Step-wise batched generation with continuous batching: the API the runner
// drives.
//
// A BatchDecoder owns a KV cache with `max_batch` slots over one Model. Each
// `Add` validates a request and claims a slot; each `Step` runs ONE forward
// pass over every active sequence — prompt chunks of sequences still in
// prefill and one token of each decoding sequence — so every weight matrix
// is read once per step for the whole batch. New sequences therefore join at
// the next token boundary, and sequences leave independently when they end.
//
//   ASSIGN_OR_RETURN(auto decoder, BatchDecoder::Create(model.get(),
//   {.max_batch = 8})); ASSIGN_OR_RETURN(SequenceId id,
//   decoder->Add({.prompt_ids = ids,
//                                                 .sampling = {.temperature =
//                                                 0}}));
//   while (decoder->HasWork()) {
//     ASSIGN_OR_RETURN(std::vector<SequenceEvent> events, decoder->Step());
//     for (const SequenceEvent& e : events) std::cout << e.text;
//   }
//
// Events: a step yields at most one event per sequence: the new token with
// its text delta (UTF-8 complete; text that might be the start of a stop
// sequence is held back until it is not), and/or `finished` with the reason:
//   kLength     max_new_tokens reached, or prompt + output filled the context
//   kStop       the output contains a stop sequence (text cut before it)
//   kEos        an end-of-sequence token was sampled (its text not emitted)
//   kCancelled  Cancel() was called
// After a finished event the id is forgotten and its slot is free.
//
// Errors: Add returns INVALID_ARGUMENT for bad sampling parameters (see
// sampler.h), an empty prompt, token ids outside the vocabulary or a prompt
// that leaves no room in the context; RESOURCE_EXHAUSTED when every slot is
// taken. Cancel returns NOT_FOUND for unknown or finished ids.
//
// Thread-safety: Add, Cancel, active(), HasWork() may be called from any
// thread at any time, including while Step runs (they take `mu_`). Step is
// serialized by `step_mu_`; one driver thread calling it in a loop is the
// intended use. Two decoders over the same Model must not Step at the same
// time (they share the model's thread pool).
#ifndef HANGAR_ENGINE_BATCH_DECODER_H_
#define HANGAR_ENGINE_BATCH_DECODER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"

namespace hangar::engine {

using SequenceId = uint64_t;

struct DecoderOptions {
  // Sequences decoded together (KV cache slots), in [1, 256].
  int max_batch = 8;
  // Positions per sequence (prompt + output); 0 means the model's context
  // length. The KV cache takes max_batch * max_context * layers * 2 *
  // kv_dim * 4 bytes.
  int max_context = 0;
  // Prompt tokens processed per step, across sequences, >= 1. Larger values
  // speed up prefill; smaller ones keep decode steps of other sequences
  // short while a long prompt arrives.
  int prefill_chunk = 256;
};

struct SequenceRequest {
  std::vector<int> prompt_ids;
  SamplingParams sampling;
};

enum class FinishReason { kNone, kLength, kStop, kEos, kCancelled };
// "length", "stop", "eos", "cancelled" ("" for kNone).
const char* FinishReasonName(FinishReason reason);

struct SequenceEvent {
  SequenceId id = 0;
  int token = -1;    // the token sampled this step, -1 if none
  std::string text;  // text delta to append (may be empty)
  bool finished = false;
  FinishReason reason = FinishReason::kNone;
  int prompt_tokens = 0;
  int generated_tokens = 0;  // including this step's token
};

class BatchDecoder {
 public:
  // `model` must outlive the decoder.
  static absl::StatusOr<std::unique_ptr<BatchDecoder>> Create(
      const Model* model, const DecoderOptions& options);
  ~BatchDecoder();

  absl::StatusOr<SequenceId> Add(SequenceRequest request);
  absl::Status Cancel(SequenceId id);
  // One forward pass over the active sequences; an empty vector when idle.
  absl::StatusOr<std::vector<SequenceEvent>> Step();

  int capacity() const { return options_.max_batch; }
  // Bytes of the KV cache (allocated at Create).
  int64_t kv_cache_bytes() const { return kv_cache_bytes_; }
  int max_context() const { return context_; }
  // Sequences added and not yet finished.
  int active() const;
  bool HasWork() const { return active() > 0; }

  // ------------------------------------------------------------------------
 private:
  struct Sequence;
  BatchDecoder(const Model* model, const DecoderOptions& options, int context,
               std::unique_ptr<DecodeState> state);
  void FinishText(Sequence* s, SequenceEvent* e, bool all);

  const Model* model_;
  const DecoderOptions options_;
  const int context_;
  const int64_t kv_cache_bytes_;
  // Serializes Step; guards what only Step touches.
  absl::Mutex step_mu_;
  std::unique_ptr<DecodeState> state_ ABSL_GUARDED_BY(step_mu_);
  std::vector<float> logits_ ABSL_GUARDED_BY(step_mu_);
  std::vector<ForwardRow> rows_ ABSL_GUARDED_BY(step_mu_);
  // Guards the slot table, id counter and cancellation flags (Add/Cancel may
  // run while Step works on the sequences; Step reads them under mu_).
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Sequence>> slots_ ABSL_GUARDED_BY(mu_);
  SequenceId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t seed_counter_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hangar::engine

#endif  // HANGAR_ENGINE_BATCH_DECODER_H_
