// The heart of a runner: one thread that drives an engine::BatchDecoder, and
// the calls that feed it sequences and receive their tokens.
//
// Callers `Submit` a batch of sequences (a Call). Each sequence has an id
// that is unique among the sequences the loop holds, its own sampling
// overrides, and its own timeout. Valid sequences wait in a bounded FIFO
// until the decoder has a free slot, then join the running batch at the next
// token boundary (continuous batching); each finishes on its own (EOS, stop
// sequence, max tokens, context full, its timeout, Cancel) while the others
// continue. The loop thread steps the decoder while any sequence is active
// and waits on a condition otherwise, so an idle runner costs nothing.
//
// The contract is per sequence, not per call (a gateway batch mixes clients):
//   - An invalid sequence (bad prompt, prompt too long for the context,
//     sampling overrides that loosen the runner's values or break a bound,
//     both or neither prompt forms, a non-positive timeout) finishes at once
//     with kError and INVALID_ARGUMENT naming it: "sequences[1].sampling.top_p:
//     must be at most the deployment's 0.9; was 1". The valid ones run.
//   - A sequence past its timeout finishes kCancelled with DEADLINE_EXCEEDED.
//   - Cancel(ids) stops named sequences wherever they are (queued or
//     decoding); each finishes kCancelled on its own call.
//   - Cancel(call) stops every unfinished sequence of one call (its client
//     went away).
// Submit fails as a whole only for call-level problems: no sequences, more
// than the batch capacity, a malformed, duplicate or already held id
// (INVALID_ARGUMENT naming sequences[i].id), a full queue
// (RESOURCE_EXHAUSTED), a loop shutting down (UNAVAILABLE).
//
// Events reach a Call's reader without polling: Submit takes a listener that
// the loop calls (with no lock held) after it added events to the call; the
// reader then takes them with Pop() until it returns false. Events pushed
// during Submit (the finishes of invalid sequences) are there to Pop when
// Submit returns, without a listener call.
//
//   auto call = loop->Submit(std::move(inputs), [reactor] { reactor->Wake();
//   });
//   ...  // in Wake() and after Submit:
//   GenerationEvent event;
//   while ((*call)->Pop(&event)) Write(event);
//   if ((*call)->Done()) Finish();
//
// Every sequence of an accepted call ends with exactly one `finished` event,
// also when the loop is destroyed (kCancelled), so a reader never waits
// forever.
//
// Thread-safety: every public method may be called from any thread. A Call's
// events are meant for one reader. The listener must not call back into the
// loop while holding a lock the loop's callers take.
#ifndef HANGAR_SERVICES_RUNNER_GENERATION_LOOP_H_
#define HANGAR_SERVICES_RUNNER_GENERATION_LOOP_H_

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "engine/batch_decoder.h"
#include "engine/model.h"
#include "hangar/v1/common.pb.h"
#include "services/runner/runner_metrics.h"

namespace hangar::runner {

// One sequence of a call.
struct SequenceInput {
  // 1 to 64 printable ASCII characters, unique among held sequences.
  std::string id;
  // Exactly one of prompt text (UTF-8) or prompt token ids.
  std::string prompt;
  std::vector<int> prompt_ids;
  // May only tighten the loop's sampling values (see common/sampling).
  v1::SamplingOverrides sampling;
  // How long the sequence may run from Submit; must be positive.
  absl::Duration timeout = absl::InfiniteDuration();
};

// How a sequence ended.
enum class Finish { kNone, kLength, kStop, kEos, kCancelled, kError };
// "length", "stop", "eos", "cancelled", "error" ("" for kNone).
const char* FinishName(Finish finish);

// Something that happened to one sequence of a call.
struct GenerationEvent {
  // The sequence's id and index in the submitted call.
  std::string sequence_id;
  int index = 0;
  // New text (whole UTF-8 characters) and the tokens sampled this step.
  std::string text;
  std::vector<int> token_ids;
  // Set on the sequence's last event.
  Finish finish = Finish::kNone;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  // Set with kError (INVALID_ARGUMENT for bad input, the engine's error
  // otherwise) and with kCancelled when the timeout passed
  // (DEADLINE_EXCEEDED).
  absl::Status error;

  bool finished() const { return finish != Finish::kNone; }
};

class GenerationLoop;

// The receiving end of one submitted call.
class Call {
 public:
  // Takes the next event into `event`; false when none is ready now.
  bool Pop(GenerationEvent* event);
  // Every sequence has finished and every event was taken.
  bool Done();

  int sequences() const { return sequences_; }

  // ------------------------------------------------------------------------
 private:
  friend class GenerationLoop;
  Call(int sequences, std::function<void()> listener)
      : sequences_(sequences), listener_(std::move(listener)) {}
  void Push(GenerationEvent event);
  // Calls the listener; no lock may be held.
  void Notify() {
    if (listener_) listener_();
  }

  const int sequences_;
  const std::function<void()> listener_;
  absl::Mutex mu_;  // Protects events_ and finished_.
  std::deque<GenerationEvent> events_ ABSL_GUARDED_BY(mu_);
  int finished_ ABSL_GUARDED_BY(mu_) = 0;
};

struct CancelResult {
  // Ids that were queued or decoding; each finishes kCancelled.
  std::vector<std::string> cancelled;
  // Ids the loop does not hold (unknown or finished).
  std::vector<std::string> not_found;
};

struct GenerationLoopOptions {
  // Sequences decoded together (KV cache slots), in [1, 256]; also the most
  // sequences of one call.
  int max_batch = 8;
  // Sequences waiting for a slot before Submit answers RESOURCE_EXHAUSTED,
  // in [0, 65536].
  int max_queue = 256;
  // Positions per sequence; 0 means the model's context length.
  int max_context = 0;
  // The runner's (deployment's) sampling values: defaults of every sequence
  // and the bounds its overrides may only tighten. Normalized by Create
  // against the context length (errors name "sampling.<field>").
  v1::SamplingParams sampling;

  // --- tests and benchmarks ---
  // Keep generating past end-of-sequence tokens, so lengths are exact.
  bool ignore_eos = false;

  // --- injected ---
  // Times TTFT, throughput and sequence timeouts; not owned.
  Clock* clock = Clock::Real();
  // Where to record metrics; null records none. Not owned.
  RunnerMetrics* metrics = nullptr;
};

class GenerationLoop {
 public:
  // `model` is not owned and must outlive the loop.
  static absl::StatusOr<std::unique_ptr<GenerationLoop>> Create(
      const engine::Model* model, const GenerationLoopOptions& options);
  // Ends every held sequence as cancelled and stops the loop thread.
  ~GenerationLoop();

  // `listener` (may be empty) is called after events were added to the call
  // from another thread; see the file comment.
  absl::StatusOr<std::shared_ptr<Call>> Submit(
      std::vector<SequenceInput> sequences,
      std::function<void()> listener = nullptr);

  // Stops the named sequences, queued or decoding. INVALID_ARGUMENT unless
  // 1 to 256 ids are given.
  absl::StatusOr<CancelResult> Cancel(const std::vector<std::string>& ids);

  // Stops every unfinished sequence of `call`; each then reports kCancelled.
  // Idempotent.
  void Cancel(const std::shared_ptr<Call>& call);

  int capacity() const { return options_.max_batch; }
  int max_context() const;
  int active() const;
  int queued() const;
  // The normalized sampling values (every field but seed set).
  const v1::SamplingParams& sampling() const { return sampling_; }

  // ------------------------------------------------------------------------
 private:
  enum class Stopper { kNone, kCancel, kDeadline };
  // A sequence the loop holds, queued or decoding.
  struct Held {
    std::shared_ptr<Call> call;
    int index = 0;
    absl::Time submit_time;
    absl::Time deadline;
    int prompt_tokens = 0;
    // Until admitted.
    engine::SequenceRequest request;
    bool running = false;
    engine::SequenceId engine_id = 0;
    bool first_token_seen = false;
    // Why the decoder was asked to cancel it.
    Stopper stopper = Stopper::kNone;
  };
  using Touched = std::vector<std::shared_ptr<Call>>;

  GenerationLoop(const engine::Model* model, GenerationLoopOptions options,
                 v1::SamplingParams sampling,
                 std::unique_ptr<engine::BatchDecoder> decoder);
  // The decoder request of one sequence, or its per-sequence error.
  absl::StatusOr<engine::SequenceRequest> Prepare(int index,
                                                  SequenceInput& input) const;
  void Run();
  // Moves queued sequences into free decoder slots.
  void AdmitLocked(Touched& touched) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops sequences whose deadline passed.
  void ExpireLocked(Touched& touched) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops one held sequence: a queued one finishes now, a decoding one when
  // the decoder reports it.
  void StopLocked(const std::string& id, Stopper stopper, Touched& touched)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends a held sequence with `event` (finish set) and forgets it.
  void FinishLocked(const std::string& id, GenerationEvent event,
                    Touched& touched) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Dispatch(const std::vector<engine::SequenceEvent>& events);
  void UpdateGaugesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordFinish(const GenerationEvent& event);
  static void NotifyAll(const Touched& touched);

  const engine::Model* const model_;
  const GenerationLoopOptions options_;
  const v1::SamplingParams sampling_;
  const std::unique_ptr<engine::BatchDecoder> decoder_;

  // Protects the held sequences, the queue, the running map and stop_.
  mutable absl::Mutex mu_;
  std::map<std::string, Held> held_ ABSL_GUARDED_BY(mu_);
  // Ids waiting for a slot, oldest first.
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  // Decoder id -> sequence id, for the sequences decoding.
  std::map<engine::SequenceId, std::string> running_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace hangar::runner

#endif  // HANGAR_SERVICES_RUNNER_GENERATION_LOOP_H_
