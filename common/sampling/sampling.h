// The one sampling validator of Hangar: the bounds written in
// protos/hangar/v1/common.proto on SamplingParams and SamplingOverrides,
// enforced in one place for the runner, the deployment service and the
// gateway.
//
// A deployment's values (SamplingParams) are checked and given their
// defaults once, when the deployment is validated or the runner starts:
//
//   temperature  finite, in [0, 2]          default 1 (0 = greedy)
//   max_tokens   in [1, context length]     default min(256, context length)
//   top_p        in (0, 1]                  default 1 (off)
//   top_k        in [0, 1000]               default 0 (off)
//   stop_sequences  at most 16, each 1 to 64 bytes of valid UTF-8
//   seed         any; unset stays unset (a seed per request)
//
// A request's overrides (SamplingOverrides) may only tighten the
// deployment's values; ApplySamplingOverrides checks them and returns the
// values one sequence is sampled with (EffectiveSampling):
//
//   temperature  <= the deployment's
//   max_tokens   <= the deployment's, and <= context length - prompt tokens
//   top_p        <= the deployment's
//   top_k        in [1, the deployment's] when that is not 0 (off); any
//                value in [0, 1000] when it is 0
//   stop_sequences  added to the deployment's, at most 16 in all
//   seed         any
//
// Every override also obeys the absolute bounds above. An unset max_tokens
// takes the deployment's, cut to the room the prompt leaves in the context
// (the engine would end the sequence there anyway).
//
// Errors name the field with the caller's prefix and the proto field name,
// and the rule with the value:
//
//   sampling.top_p: must be in (0, 1]; was 1.5
//   sampling.max_tokens: must be at most the deployment's 256; was 1000
//   sequences[1].sampling.stop_sequences[3]: must be 1 to 64 bytes; was 65
//
// `Check*` functions return every violation at once (ValidateDeployment
// reports them all); the StatusOr functions return the first as
// INVALID_ARGUMENT "<field>: <rule>".
//
//   ASSIGN_OR_RETURN(v1::SamplingParams deployment,
//                    NormalizeSamplingParams(spec.sampling(), 2048));
//   ASSIGN_OR_RETURN(EffectiveSampling sampling,
//                    ApplySamplingOverrides(deployment, request.sampling(),
//                                           prompt_tokens, 2048));
//
// Thread-safety: every function is pure.
#ifndef HANGAR_COMMON_SAMPLING_SAMPLING_H_
#define HANGAR_COMMON_SAMPLING_SAMPLING_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hangar/v1/common.pb.h"

namespace hangar::sampling {

inline constexpr float kMaxTemperature = 2.0f;
inline constexpr int kMaxTopK = 1000;
inline constexpr int kMaxStopSequences = 16;
inline constexpr int kMaxStopSequenceBytes = 64;
inline constexpr int kDefaultMaxTokens = 256;

// One violated rule: `field` is the full path ("sampling.top_p"), `rule` the
// rule and the value ("must be in (0, 1]; was 1.5").
struct FieldViolation {
  std::string field;
  std::string rule;

  // "<field>: <rule>".
  std::string ToString() const { return field + ": " + rule; }
  bool operator==(const FieldViolation&) const = default;
};

// The values one sequence is sampled with, every field decided.
struct EffectiveSampling {
  // Finite, in [0, 2]; 0 is greedy.
  float temperature = 1.0f;
  // In [1, context length - prompt tokens].
  int max_tokens = kDefaultMaxTokens;
  // In (0, 1]; 1 is off.
  float top_p = 1.0f;
  // In [0, 1000]; 0 is off.
  int top_k = 0;
  // The deployment's stop sequences followed by the request's.
  std::vector<std::string> stop;
  // Unset: the sampler picks one.
  std::optional<uint64_t> seed;
};

// Every violation of the absolute bounds in `params` (unset fields are
// fine: they take defaults). `context_length` <= 0 means unknown: max_tokens
// is then bounded only below. `field_prefix` is prepended with a dot ("" for
// none: "top_p: ...").
std::vector<FieldViolation> CheckSamplingParams(
    const v1::SamplingParams& params, int context_length,
    absl::string_view field_prefix = "sampling");

// `deployment` checked (first violation as INVALID_ARGUMENT) and returned
// with every field but seed set.
absl::StatusOr<v1::SamplingParams> NormalizeSamplingParams(
    const v1::SamplingParams& deployment, int context_length,
    absl::string_view field_prefix = "sampling");

// Every violation of the tighten-only rules and the absolute bounds in
// `overrides` against `normalized_deployment` (the output of
// NormalizeSamplingParams; unset fields there read as the defaults).
// `prompt_tokens` < 0 means not known yet (a gateway before tokenizing): the
// context-minus-prompt bound is then skipped.
std::vector<FieldViolation> CheckSamplingOverrides(
    const v1::SamplingParams& normalized_deployment,
    const v1::SamplingOverrides& overrides, int prompt_tokens,
    int context_length, absl::string_view field_prefix = "sampling");

// The effective values of one request, or the first violation as
// INVALID_ARGUMENT.
absl::StatusOr<EffectiveSampling> ApplySamplingOverrides(
    const v1::SamplingParams& normalized_deployment,
    const v1::SamplingOverrides& overrides, int prompt_tokens,
    int context_length, absl::string_view field_prefix = "sampling");

// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code
// points past U+10FFFF).
bool IsValidUtf8(absl::string_view text);

}  // namespace hangar::sampling

#endif  // HANGAR_COMMON_SAMPLING_SAMPLING_H_
