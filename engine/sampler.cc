#include "engine/sampler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer.h"

namespace hangar::engine {

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  if (!std::isfinite(p.temperature) || p.temperature < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "temperature: must be a finite number >= 0; was ", p.temperature));
  }
  if (!(p.top_p > 0 && p.top_p <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_p: must be in (0, 1]; was ", p.top_p));
  }
  if (p.top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_k: must be >= 0; was ", p.top_k));
  }
  if (p.max_new_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens: must be >= 1; was ", p.max_new_tokens));
  }
  if (p.stop.size() > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("stop: at most 16 stop sequences; was ", p.stop.size()));
  }
  for (size_t i = 0; i < p.stop.size(); ++i) {
    const std::string& s = p.stop[i];
    if (s.empty() || s.size() > 256 || !IsValidUtf8(s)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "stop[", i, "]: must be 1 to 256 bytes of valid UTF-8; was ",
          s.size(), " bytes"));
    }
  }
  return absl::OkStatus();
}

namespace {
uint64_t SplitMix(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
inline uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Sampler::Sampler(const SamplingParams& params, uint64_t seed)
    : temperature_(params.temperature),
      top_k_(params.top_k),
      top_p_(params.top_p) {
  uint64_t x = seed;
  for (uint64_t& s : s_) s = SplitMix(x);
}

uint64_t Sampler::Next() {
  uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

int Sampler::Sample(const float* logits, int n) {
  if (n <= 0) return 0;
  if (temperature_ == 0) {
    int best = 0;
    for (int i = 1; i < n; ++i)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  scratch_.resize(size_t(n));
  for (int i = 0; i < n; ++i) scratch_[size_t(i)] = {logits[i], i};
  auto desc = [](const std::pair<float, int>& a,
                 const std::pair<float, int>& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  size_t m = size_t(n);
  if (top_k_ > 0 && size_t(top_k_) < m) {
    std::nth_element(scratch_.begin(), scratch_.begin() + top_k_,
                     scratch_.end(), desc);
    m = size_t(top_k_);
  }
  if (top_p_ < 1) std::sort(scratch_.begin(), scratch_.begin() + long(m), desc);
  float maxv = -INFINITY;
  for (size_t i = 0; i < m; ++i) maxv = std::max(maxv, scratch_[i].first);
  double sum = 0;
  std::vector<double> probs(m);
  for (size_t i = 0; i < m; ++i) {
    probs[i] = std::exp(double(scratch_[i].first - maxv) / temperature_);
    sum += probs[i];
  }
  if (top_p_ < 1) {
    double cum = 0;
    size_t keep = m;
    for (size_t i = 0; i < m; ++i) {
      cum += probs[i] / sum;
      if (cum >= top_p_) {
        keep = i + 1;
        break;
      }
    }
    m = keep;
    sum = 0;
    for (size_t i = 0; i < m; ++i) sum += probs[i];
  }
  double r = Uniform() * sum;
  for (size_t i = 0; i < m; ++i) {
    r -= probs[i];
    if (r < 0) return scratch_[i].second;
  }
  return scratch_[m - 1].second;
}

}  // namespace hangar::engine
