#include "common/sampling/sampling.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace hangar::sampling {
namespace {

// Where the first malformed UTF-8 sequence of `text` starts, or npos.
size_t FirstInvalidUtf8(absl::string_view text) {
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
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
      return i;
    }
    if (i + length > n) return i;
    for (int k = 1; k < length; ++k) {
      const unsigned char next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return i;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    static constexpr uint32_t kMinimum[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code_point < kMinimum[length] || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return i;
    }
    i += length;
  }
  return absl::string_view::npos;
}

// Collects violations under one field prefix.
class Violations {
 public:
  explicit Violations(absl::string_view prefix) : prefix_(prefix) {}

  std::string Field(absl::string_view name) const {
    return prefix_.empty() ? std::string(name)
                           : absl::StrCat(prefix_, ".", name);
  }
  void Add(absl::string_view name, std::string rule) {
    list_.push_back({Field(name), std::move(rule)});
  }
  std::vector<FieldViolation> Take() { return std::move(list_); }

 private:
  const absl::string_view prefix_;
  std::vector<FieldViolation> list_;
};

bool TemperatureInBounds(float t) {
  return std::isfinite(t) && t >= 0 && t <= kMaxTemperature;
}
std::string TemperatureRule(float t) {
  return absl::StrCat("must be finite and in [0, ", kMaxTemperature, "]; was ",
                      t);
}

bool MaxTokensInBounds(int64_t m, int context_length) {
  return m >= 1 && (context_length <= 0 || m <= context_length);
}
std::string MaxTokensRule(int64_t m, int context_length) {
  if (context_length <= 0) return absl::StrCat("must be at least 1; was ", m);
  return absl::StrCat("must be in [1, ", context_length,
                      "] (the context length); was ", m);
}

bool TopPInBounds(float p) { return p > 0 && p <= 1; }  // false for NaN
std::string TopPRule(float p) {
  return absl::StrCat("must be in (0, 1]; was ", p);
}

bool TopKInBounds(int64_t k) { return k >= 0 && k <= kMaxTopK; }
std::string TopKRule(int64_t k) {
  return absl::StrCat("must be in [0, ", kMaxTopK, "]; was ", k);
}

// Checks the length and encoding of each stop sequence of `stops`.
void CheckStops(const google::protobuf::RepeatedPtrField<std::string>& stops,
                Violations& violations) {
  for (int i = 0; i < stops.size(); ++i) {
    const std::string& stop = stops[i];
    std::string field = absl::StrCat("stop_sequences[", i, "]");
    if (stop.empty() || stop.size() > kMaxStopSequenceBytes) {
      violations.Add(field, absl::StrCat("must be 1 to ", kMaxStopSequenceBytes,
                                         " bytes; was ", stop.size()));
    } else if (size_t at = FirstInvalidUtf8(stop);
               at != absl::string_view::npos) {
      violations.Add(field, absl::StrCat("must be valid UTF-8; was invalid at "
                                         "byte ",
                                         at));
    }
  }
}

// The deployment's values, defaults for unset fields.
struct DeploymentValues {
  float temperature;
  int max_tokens;
  float top_p;
  int top_k;
};

int DefaultMaxTokens(int context_length) {
  return context_length > 0 ? std::min(kDefaultMaxTokens, context_length)
                            : kDefaultMaxTokens;
}

DeploymentValues ReadDeployment(const v1::SamplingParams& d,
                                int context_length) {
  return {
      .temperature = d.has_temperature() ? d.temperature() : 1.0f,
      .max_tokens = d.has_max_tokens() ? d.max_tokens()
                                       : DefaultMaxTokens(context_length),
      .top_p = d.has_top_p() ? d.top_p() : 1.0f,
      .top_k = d.has_top_k() ? d.top_k() : 0,
  };
}

absl::Status FirstAsStatus(const std::vector<FieldViolation>& violations) {
  return absl::InvalidArgumentError(violations.front().ToString());
}

}  // namespace

bool IsValidUtf8(absl::string_view text) {
  return FirstInvalidUtf8(text) == absl::string_view::npos;
}

std::vector<FieldViolation> CheckSamplingParams(
    const v1::SamplingParams& params, int context_length,
    absl::string_view field_prefix) {
  Violations violations(field_prefix);
  if (params.has_temperature() && !TemperatureInBounds(params.temperature())) {
    violations.Add("temperature", TemperatureRule(params.temperature()));
  }
  if (params.has_max_tokens() &&
      !MaxTokensInBounds(params.max_tokens(), context_length)) {
    violations.Add("max_tokens",
                   MaxTokensRule(params.max_tokens(), context_length));
  }
  if (params.has_top_p() && !TopPInBounds(params.top_p())) {
    violations.Add("top_p", TopPRule(params.top_p()));
  }
  if (params.has_top_k() && !TopKInBounds(params.top_k())) {
    violations.Add("top_k", TopKRule(params.top_k()));
  }
  if (params.stop_sequences_size() > kMaxStopSequences) {
    violations.Add("stop_sequences",
                   absl::StrCat("at most ", kMaxStopSequences, "; was ",
                                params.stop_sequences_size()));
  }
  CheckStops(params.stop_sequences(), violations);
  return violations.Take();
}

absl::StatusOr<v1::SamplingParams> NormalizeSamplingParams(
    const v1::SamplingParams& deployment, int context_length,
    absl::string_view field_prefix) {
  std::vector<FieldViolation> violations =
      CheckSamplingParams(deployment, context_length, field_prefix);
  if (!violations.empty()) return FirstAsStatus(violations);
  const DeploymentValues values = ReadDeployment(deployment, context_length);
  v1::SamplingParams normalized = deployment;
  normalized.set_temperature(values.temperature);
  normalized.set_max_tokens(values.max_tokens);
  normalized.set_top_p(values.top_p);
  normalized.set_top_k(values.top_k);
  return normalized;
}

std::vector<FieldViolation> CheckSamplingOverrides(
    const v1::SamplingParams& normalized_deployment,
    const v1::SamplingOverrides& overrides, int prompt_tokens,
    int context_length, absl::string_view field_prefix) {
  Violations violations(field_prefix);
  const DeploymentValues d =
      ReadDeployment(normalized_deployment, context_length);
  const bool prompt_known = prompt_tokens >= 0 && context_length > 0;
  const int room = prompt_known ? context_length - prompt_tokens : 0;

  if (overrides.has_temperature()) {
    const float t = overrides.temperature();
    if (!TemperatureInBounds(t)) {
      violations.Add("temperature", TemperatureRule(t));
    } else if (t > d.temperature) {
      violations.Add("temperature",
                     absl::StrCat("must be at most the deployment's ",
                                  d.temperature, "; was ", t));
    }
  }
  if (overrides.has_max_tokens()) {
    const int m = overrides.max_tokens();
    if (!MaxTokensInBounds(m, context_length)) {
      violations.Add("max_tokens", MaxTokensRule(m, context_length));
    } else if (m > d.max_tokens) {
      violations.Add("max_tokens",
                     absl::StrCat("must be at most the deployment's ",
                                  d.max_tokens, "; was ", m));
    } else if (prompt_known && m > room) {
      violations.Add(
          "max_tokens",
          absl::StrCat("must be at most ", std::max(room, 0),
                       " (the context length ", context_length, " minus ",
                       prompt_tokens, " prompt tokens); was ", m));
    }
  } else if (prompt_known && room < 1) {
    violations.Add("max_tokens",
                   absl::StrCat("no room is left for output: the prompt's ",
                                prompt_tokens, " tokens fill the context of ",
                                context_length, " tokens"));
  }
  if (overrides.has_top_p()) {
    const float p = overrides.top_p();
    if (!TopPInBounds(p)) {
      violations.Add("top_p", TopPRule(p));
    } else if (p > d.top_p) {
      violations.Add("top_p", absl::StrCat("must be at most the deployment's ",
                                           d.top_p, "; was ", p));
    }
  }
  if (overrides.has_top_k()) {
    const int k = overrides.top_k();
    if (!TopKInBounds(k)) {
      violations.Add("top_k", TopKRule(k));
    } else if (d.top_k != 0 && (k < 1 || k > d.top_k)) {
      violations.Add("top_k", absl::StrCat("must be in [1, the deployment's ",
                                           d.top_k, "]; was ", k));
    }
  }
  const int stops = normalized_deployment.stop_sequences_size() +
                    overrides.stop_sequences_size();
  if (stops > kMaxStopSequences) {
    violations.Add(
        "stop_sequences",
        normalized_deployment.stop_sequences_size() == 0
            ? absl::StrCat("at most ", kMaxStopSequences, "; was ", stops)
            : absl::StrCat("at most ", kMaxStopSequences,
                           " in all with the deployment's ",
                           normalized_deployment.stop_sequences_size(),
                           "; was ", stops));
  }
  CheckStops(overrides.stop_sequences(), violations);
  return violations.Take();
}

absl::StatusOr<EffectiveSampling> ApplySamplingOverrides(
    const v1::SamplingParams& normalized_deployment,
    const v1::SamplingOverrides& overrides, int prompt_tokens,
    int context_length, absl::string_view field_prefix) {
  std::vector<FieldViolation> violations =
      CheckSamplingOverrides(normalized_deployment, overrides, prompt_tokens,
                             context_length, field_prefix);
  if (!violations.empty()) return FirstAsStatus(violations);
  const DeploymentValues d =
      ReadDeployment(normalized_deployment, context_length);
  EffectiveSampling effective{
      .temperature =
          overrides.has_temperature() ? overrides.temperature() : d.temperature,
      .max_tokens =
          overrides.has_max_tokens() ? overrides.max_tokens() : d.max_tokens,
      .top_p = overrides.has_top_p() ? overrides.top_p() : d.top_p,
      .top_k = overrides.has_top_k() ? overrides.top_k() : d.top_k,
  };
  if (!overrides.has_max_tokens() && prompt_tokens >= 0 && context_length > 0) {
    effective.max_tokens =
        std::min(effective.max_tokens, context_length - prompt_tokens);
  }
  effective.stop.assign(normalized_deployment.stop_sequences().begin(),
                        normalized_deployment.stop_sequences().end());
  effective.stop.insert(effective.stop.end(),
                        overrides.stop_sequences().begin(),
                        overrides.stop_sequences().end());
  if (overrides.has_seed()) {
    effective.seed = overrides.seed();
  } else if (normalized_deployment.has_seed()) {
    effective.seed = normalized_deployment.seed();
  }
  return effective;
}

}  // namespace hangar::sampling
