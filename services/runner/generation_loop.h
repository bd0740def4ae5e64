// The heart of a runner: one thread that drives an engine::BatchDecoder, and
// the calls that feed it sequences and read their tokens.
//
// Callers `Submit` a batch of sequences (a Call). Sequences wait in a bounded
// FIFO until the decoder has a free slot, then join the running batch at the
// next token boundary (continuous batching); each finishes on its own (EOS,
// stop sequence, max tokens, context full) while the others continue. The
// loop thread steps the decoder while any sequence is active and sleeps
// otherwise, so an idle runner costs nothing.
//
//   ASSIGN_OR_RETURN(auto loop, GenerationLoop::Create(model, {.max_batch = 8}));
//   ASSIGN_OR_RETURN(auto call, loop->Submit({{.prompt = "Hello", .sampling = s}}));
//   GenerationEvent event;
//   while (call->Next(&event, absl::Milliseconds(100)) != Call::kDone) { ... }
//
// Validation happens at Submit, for the whole call: a bad prompt or bad
// sampling parameters of any sequence refuse the call with INVALID_ARGUMENT
// naming the sequence and the field ("sequences[1].top_p: must be in (0, 1];
// was 1.5") and nothing is queued. A full queue is RESOURCE_EXHAUSTED.
//
// Thread-safety: every public method may be called from any thread. A Call's
// events are meant for one reader.
#ifndef HANGAR_SERVICES_RUNNER_GENERATION_LOOP_H_
#define HANGAR_SERVICES_RUNNER_GENERATION_LOOP_H_

#include <deque>
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
#include "services/runner/runner_metrics.h"

namespace hangar::runner {

// One sequence of a call: a prompt as text or token ids (exactly one).
struct SequenceInput {
  std::string prompt;
  std::vector<int> prompt_ids;
  engine::SamplingParams sampling;
};

// Something that happened to one sequence of a call.
struct GenerationEvent {
  // Index of the sequence in the submitted call.
  int index = 0;
  // New text (whole UTF-8 characters) and the tokens sampled this step.
  std::string text;
  std::vector<int> token_ids;
  bool finished = false;
  engine::FinishReason reason = engine::FinishReason::kNone;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  // Set when the sequence ended because the engine failed.
  absl::Status error;
};

class GenerationLoop;

// The receiving end of one submitted call.
class Call {
 public:
  enum NextResult { kEvent, kTimeout, kDone };

  // Waits up to `timeout` (real time) for the next event. kDone once every
  // sequence has finished and all events were read.
  NextResult Next(GenerationEvent* event, absl::Duration timeout);

  int sequences() const { return sequences_; }

  // ------------------------------------------------------------------------
 private:
  friend class GenerationLoop;
  explicit Call(int sequences) : sequences_(sequences) {}
  void Push(GenerationEvent event);

  const int sequences_;
  absl::Mutex mu_;  // Protects events_ and finished_.
  std::deque<GenerationEvent> events_ ABSL_GUARDED_BY(mu_);
  int finished_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

struct GenerationLoopOptions {
  // Sequences decoded together (KV cache slots), in [1, 256].
  int max_batch = 8;
  // Sequences waiting for a slot before Submit answers RESOURCE_EXHAUSTED,
  // in [0, 65536].
  int max_queue = 256;
  // Positions per sequence; 0 means the model's context length.
  int max_context = 0;
  // max_new_tokens for a sequence that does not set one.
  int default_max_tokens = 256;

  // --- injected ---
  // Times TTFT and throughput; not owned.
  Clock* clock = Clock::Real();
  // Where to record metrics; null records none. Not owned.
  RunnerMetrics* metrics = nullptr;
};

class GenerationLoop {
 public:
  // `model` is not owned and must outlive the loop.
  static absl::StatusOr<std::unique_ptr<GenerationLoop>> Create(
      const engine::Model* model, const GenerationLoopOptions& options);
  // Cancels every call and stops the loop thread.
  ~GenerationLoop();

  absl::StatusOr<std::shared_ptr<Call>> Submit(
      std::vector<SequenceInput> sequences);

  // Stops every sequence of `call` that has not finished; each then reports
  // a kCancelled finish. Idempotent.
  void Cancel(const std::shared_ptr<Call>& call);

  int capacity() const { return options_.max_batch; }
  int max_context() const;
  int active() const;
  int queued() const;

  // ------------------------------------------------------------------------
 private:
  struct Pending {
    std::shared_ptr<Call> call;
    int index;
    engine::SequenceRequest request;
    absl::Time submit_time;
  };
  struct Running {
    std::shared_ptr<Call> call;
    int index;
    absl::Time submit_time;
    bool first_token_seen = false;
  };

  GenerationLoop(const engine::Model* model, GenerationLoopOptions options,
                 std::unique_ptr<engine::BatchDecoder> decoder);
  void Run();
  // Moves queued sequences into free decoder slots.
  void AdmitLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Dispatch(const std::vector<engine::SequenceEvent>& events);
  void UpdateGaugesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const engine::Model* const model_;
  const GenerationLoopOptions options_;
  const std::unique_ptr<engine::BatchDecoder> decoder_;

  mutable absl::Mutex mu_;  // Protects the queue, the running map and stop_.
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  std::map<engine::SequenceId, Running> running_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace hangar::runner

#endif  // HANGAR_SERVICES_RUNNER_GENERATION_LOOP_H_
