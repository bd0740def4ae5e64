// Per-sequence sampling parameters, their validation, and the sampler.
//
// `SamplingParams` are what a request may set. `ValidateSamplingParams`
// returns INVALID_ARGUMENT naming the field and the rule, e.g.
// "top_p: must be in (0, 1]; was 1.5", so the runner can hand the message
// straight to the client.
//
// `Sampler` picks the next token from a row of logits: temperature 0 is
// greedy (argmax, lowest id on ties); otherwise logits are divided by the
// temperature, cut to the top_k largest (0 = no cut), softmaxed, cut to the
// smallest set whose probability reaches top_p, renormalized and sampled
// with a xoshiro256** generator seeded from `seed`. The same seed, logits
// and parameters always give the same token.
//
// Thread-safety: SamplingParams is a value; a Sampler belongs to one
// sequence.
#ifndef HANGAR_ENGINE_SAMPLER_H_
#define HANGAR_ENGINE_SAMPLER_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace hangar::engine {

struct SamplingParams {
  // 0 means greedy; must be finite and >= 0.
  float temperature = 1.0f;
  // Keep only the k most likely tokens; 0 means no limit; must be >= 0.
  int top_k = 0;
  // Nucleus sampling mass, in (0, 1]; 1 disables it.
  float top_p = 1.0f;
  // Random seed; when `has_seed` is false the decoder picks one.
  bool has_seed = false;
  uint64_t seed = 0;
  // Generation stops when the output text contains one of these; the stop
  // text itself is not returned. At most 16, each 1..256 bytes of UTF-8.
  std::vector<std::string> stop;
  // Upper bound on generated tokens, >= 1 (the context length may end the
  // sequence earlier, with finish reason "length" either way).
  int max_new_tokens = 256;
  // Keep going past end-of-sequence tokens (benchmarks).
  bool ignore_eos = false;
};

absl::Status ValidateSamplingParams(const SamplingParams& params);

class Sampler {
 public:
  Sampler(const SamplingParams& params, uint64_t seed);
  // Samples among logits[0, n). May reorder internal scratch, not `logits`.
  int Sample(const float* logits, int n);

 private:
  uint64_t Next();
  double Uniform() { return double(Next() >> 11) * (1.0 / 9007199254740992.0); }

  float temperature_;
  int top_k_;
  float top_p_;
  uint64_t s_[4];
  std::vector<std::pair<float, int>> scratch_;
};

}  // namespace hangar::engine

#endif  // HANGAR_ENGINE_SAMPLER_H_
