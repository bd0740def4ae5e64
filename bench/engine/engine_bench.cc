// engine_bench: decode and prefill speed of the built-in engine, as
// physical ratios measured in one run (issues 3 and 14).
//
//   engine_bench [--dir /tmp/hangar-bench] [--steps 32] [--prefill 512]
//                [--quick] [--only SECTION[:NAME,...]]...
//                [--llama_bench PATH]
//
// --only (repeatable, also written --only=SPEC) measures a part quickly:
//   --only=prefill                          every prefill model
//   --only=decode:base-q8_0,base-q4_k_m     decode of those two models only
//   --only=peak --only=stream               the machine's peaks only
// Sections: stream; peak[:fma,intdot]; decode[:small-f32,base-f32,base-int8,
// base-bf16,base-q8_0,base-q4_k_m]; prefill[:base-f32,base-int8,base-q8_0].
// decode also measures stream and prefill also peak (cheap; their ratios
// need them). Only the models a selected part needs are generated and
// loaded. A ratio whose inputs were not measured prints "(not measured in
// this run)" and no TARGET line. An unknown section or name is a usage
// error (exit 2) that lists the valid ones.
//
// --llama_bench PATH (a llama.cpp `llama-bench` binary someone built) adds
// the section "llama" (names base-f32, base-q8_0, base-q4_k_m): the ~110 M
// base model is written as GGUF files llama.cpp loads (bench/engine/
// llama_cpp.h: the token list padded to every embedding row), the engine
// measures those files (prefill of --prefill tokens on 2 threads, decode
// batch 1 on 2 and 1 threads) in its rounds, then llama-bench runs on each
// (`-p N -n STEPS -t 2` and `-p 0 -n STEPS -t 1`, -o json) and a table
// prints both tokens/s and Hangar / llama.cpp. Without the flag nothing
// of this runs.
//
// Besides decode (below) it measures the machine's FMA peak with an
// in-bench loop (12 independent FMA chains per thread at the kernels' vector
// width) and the integer-dot peak (u8 x s8 -> s32: vpdpbusd with VNNI, else
// vpmaddubsw + vpmaddwd, at the ISA's widest vectors and at 256 bits),
// prefill of a --prefill token prompt in one Forward call (GFLOP/s
// counted as 2 x linear weights x tokens plus causal attention) for f32,
// int8 and a Q8_0 GGUF of the ~110 M model, and prints prefill / FMA peak,
// int8 and Q8_0 prefill GOP/s (the same count) / integer-dot peak, decode
// weight bytes/s / STREAM bandwidth, batch 8 / batch 1 and Q8_0 /
// f32 prefill next to issue 14's targets, with the kernel path that ran.
//
// It generates (once, cached in --dir) a ~15 M and a ~110 M parameter
// random Llama model with make-tiny-model's library function, derives int8
// and bfloat16 artifacts with the optimizer's QuantizeModel, measures a
// STREAM-style read bandwidth on 1 and 2 threads, then decodes with
// BatchDecoder at batch 1, 4, 8 and 16 and prints tokens/s, the ratios and
// the targets. Decode tokens/s = batch * steps / time over `--steps` steps
// after prefill and 4 warm-up steps; bandwidth efficiency = weight bytes
// streamed per step (ModelInfo::decode_bytes) * steps/s / STREAM read
// bandwidth at the same thread count.
#include <immintrin.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "bench/engine/llama_cpp.h"
#include "engine/batch_decoder.h"
#include "engine/file_util.h"
#include "engine/kernels.h"
#include "engine/model.h"
#include "engine/quantize.h"
#include "engine/thread_pool.h"
#include "engine/tiny_model.h"

namespace {

using namespace hangar::engine;
using Clock = std::chrono::steady_clock;

std::string LoadAverage() {
  std::string s;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    char buf[128] = {0};
    if (std::fgets(buf, sizeof(buf), f) != nullptr) s = buf;
    std::fclose(f);
  }
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

__attribute__((target("avx2"))) float SumAvx2(const float* p, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + i + 24));
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

__attribute__((target("avx512f"))) float SumAvx512(const float* p, size_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 64 <= n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
  }
  return _mm512_reduce_add_ps(
      _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

float SumScalar(const float* p, size_t n) {
  float s = 0;
  for (size_t i = 0; i < n; ++i) s += p[i];
  return s;
}

// STREAM-style read: every thread sums its share of a buffer far larger
// than the caches; best of `reps`.
double ReadBandwidth(int threads, const std::vector<float>& buf, int reps = 5) {
  ThreadPool pool(threads);
  bool avx2 = __builtin_cpu_supports("avx2");
  bool avx512 = __builtin_cpu_supports("avx512f");
  double best = 0;
  volatile float sink = 0;
  for (int r = 0; r < reps; ++r) {
    std::vector<float> sums(static_cast<size_t>(threads));
    auto t0 = Clock::now();
    pool.Run([&](int t, int n) {
      size_t begin = buf.size() * size_t(t) / size_t(n),
             end = buf.size() * size_t(t + 1) / size_t(n);
      const float* p = buf.data() + begin;
      sums[size_t(t)] = avx512 ? SumAvx512(p, end - begin)
                        : avx2 ? SumAvx2(p, end - begin)
                               : SumScalar(p, end - begin);
    });
    double s = Seconds(t0, Clock::now());
    for (float x : sums) sink = sink + x;
    best = std::max(best, double(buf.size()) * 4 / s / 1e9);
  }
  return best;
}

// Peak FMA throughput: every thread runs 12 independent FMA chains at the
// kernels' vector width; best of `reps`, in GFLOP/s.
__attribute__((target("avx512f,fma"))) float FmaChains512(long iters) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(0.001f * float(i));
  const __m512 m = _mm512_set1_ps(0.9999f), b = _mm512_set1_ps(1e-4f);
  for (long t = 0; t < iters; ++t)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], m, b);
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) float FmaChains256(long iters) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(0.001f * float(i));
  const __m256 m = _mm256_set1_ps(0.9999f), b = _mm256_set1_ps(1e-4f);
  for (long t = 0; t < iters; ++t)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], m, b);
  __m256 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, a[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[7];
}

double FmaPeak(int threads, int reps = 3) {
  const KernelIsa isa = ActiveKernelIsa();
  const bool wide = isa == KernelIsa::kAvx512 || isa == KernelIsa::kAvx512Vnni;
  if (isa == KernelIsa::kScalar) return 0;
  const int width = wide ? 16 : 8;
  const long iters = 4000000;
  ThreadPool pool(threads);
  double best = 0;
  volatile float sink = 0;
  for (int r = 0; r < reps; ++r) {
    std::vector<float> sums(static_cast<size_t>(threads));
    auto t0 = Clock::now();
    pool.Run([&](int t, int) {
      sums[size_t(t)] = wide ? FmaChains512(iters) : FmaChains256(iters);
    });
    double s = Seconds(t0, Clock::now());
    for (float x : sums) sink = sink + x;
    best = std::max(best, 2.0 * width * 12 * double(iters) * threads / s / 1e9);
  }
  return best;
}

// Peak integer-dot throughput (u8 x s8 products summed into s32, as the
// int8 and Q8_0 kernels do): every thread runs 12 independent chains, each
// step one vpdpbusd with VNNI, else vpmaddubsw + vpmaddwd (the pair that
// bounds the kernels' vpmaddubsw + vpmaddwd + vpaddd: the add issues on
// another port). The chain's value is the next step's u8 operand, so
// nothing can be hoisted, and 12 chains + 2 constants fit AVX2's 16
// registers without spills.
// Counted as 2 ops per u8 x s8 product, like FLOPs.
__attribute__((target("avx512f,avx512bw,avx512vnni"))) int IntDotVnni512(
    long iters) {
  __m512i a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_epi32(i);
  const __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-5);
  for (long t = 0; t < iters; ++t)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm512_dpbusd_epi32(a[i], u, s);
  __m512i r = a[0];
  for (int i = 1; i < 12; ++i) r = _mm512_add_epi32(r, a[i]);
  return _mm512_reduce_add_epi32(r);
}

__attribute__((target("avx512f,avx512vl,avx512vnni"))) int IntDotVnni256(
    long iters) {
  __m256i a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_epi32(i);
  const __m256i u = _mm256_set1_epi8(3), s = _mm256_set1_epi8(-5);
  for (long t = 0; t < iters; ++t)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm256_dpbusd_epi32(a[i], u, s);
  __m256i r = a[0];
  for (int i = 1; i < 12; ++i) r = _mm256_add_epi32(r, a[i]);
  return _mm256_extract_epi32(r, 0) + _mm256_extract_epi32(r, 7);
}

__attribute__((target("avx512f,avx512bw"))) int IntDotMadd512(long iters) {
  __m512i a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_epi8(char(i + 1));
  const __m512i s = _mm512_set1_epi8(-5), ones = _mm512_set1_epi16(1);
  for (long t = 0; t < iters; ++t)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i)
      a[i] = _mm512_madd_epi16(_mm512_maddubs_epi16(a[i], s), ones);
  __m512i r = a[0];
  for (int i = 1; i < 12; ++i) r = _mm512_add_epi32(r, a[i]);
  return _mm512_reduce_add_epi32(r);
}

// GCC spills an array of 12 chains around the pair on AVX2's 16 registers,
// so this loop is written in assembly: 12 chains in registers, the u8 x s8
// pair on each (vpmaddubsw then vpmaddwd by ones).
__attribute__((target("avx2"))) int IntDotMadd256(long iters) {
  __m256i a0 = _mm256_set1_epi8(1), a1 = _mm256_set1_epi8(2),
          a2 = _mm256_set1_epi8(3), a3 = _mm256_set1_epi8(4),
          a4 = _mm256_set1_epi8(5), a5 = _mm256_set1_epi8(6),
          a6 = _mm256_set1_epi8(7), a7 = _mm256_set1_epi8(8),
          a8 = _mm256_set1_epi8(9), a9 = _mm256_set1_epi8(10),
          a10 = _mm256_set1_epi8(11), a11 = _mm256_set1_epi8(12);
  const __m256i s = _mm256_set1_epi8(-5), ones = _mm256_set1_epi16(1);
#define HANGAR_PAIR(r)                \
  "vpmaddubsw %[s], %[" #r "], %[" #r \
  "]\n\t"                             \
  "vpmaddwd %[o], %[" #r "], %[" #r "]\n\t"
  for (long t = 0; t < iters; ++t) {
    asm volatile(
        HANGAR_PAIR(a0) HANGAR_PAIR(a1) HANGAR_PAIR(a2) HANGAR_PAIR(a3)
            HANGAR_PAIR(a4) HANGAR_PAIR(a5) HANGAR_PAIR(a6) HANGAR_PAIR(a7)
                HANGAR_PAIR(a8) HANGAR_PAIR(a9) HANGAR_PAIR(a10)
                    HANGAR_PAIR(a11)
        : [a0] "+x"(a0), [a1] "+x"(a1), [a2] "+x"(a2), [a3] "+x"(a3),
          [a4] "+x"(a4), [a5] "+x"(a5), [a6] "+x"(a6), [a7] "+x"(a7),
          [a8] "+x"(a8), [a9] "+x"(a9), [a10] "+x"(a10), [a11] "+x"(a11)
        : [s] "x"(s), [o] "x"(ones));
  }
#undef HANGAR_PAIR
  __m256i r = _mm256_add_epi32(
      _mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3)),
      _mm256_add_epi32(_mm256_add_epi32(a4, a5), _mm256_add_epi32(a6, a7)));
  r = _mm256_add_epi32(r, _mm256_add_epi32(_mm256_add_epi32(a8, a9),
                                           _mm256_add_epi32(a10, a11)));
  return _mm256_extract_epi32(r, 0) + _mm256_extract_epi32(r, 7);
}

// Integer-dot peak of the active ISA in GOP/s: at 512 bits on the AVX-512
// paths (`wide`), else 256 (the int8 kernels' own width); 0 on scalar.
double IntDotPeak(int threads, bool wide, int reps = 3) {
  const KernelIsa isa = ActiveKernelIsa();
  if (isa == KernelIsa::kScalar) return 0;
  wide = wide && (isa == KernelIsa::kAvx512 || isa == KernelIsa::kAvx512Vnni);
  const bool vnni = isa == KernelIsa::kAvx512Vnni;
  const int bytes = wide ? 64 : 32;
  const long iters = 4000000;
  ThreadPool pool(threads);
  double best = 0;
  volatile int sink = 0;
  for (int r = 0; r < reps; ++r) {
    std::vector<int> sums(static_cast<size_t>(threads));
    auto t0 = Clock::now();
    pool.Run([&](int t, int) {
      sums[size_t(t)] =
          vnni ? (wide ? IntDotVnni512(iters) : IntDotVnni256(iters))
               : (wide ? IntDotMadd512(iters) : IntDotMadd256(iters));
    });
    double s = Seconds(t0, Clock::now());
    for (int x : sums) sink = sink + x;
    best = std::max(best, 2.0 * bytes * 12 * double(iters) * threads / s / 1e9);
  }
  return best;
}

// Prefill: one Forward over `tokens` prompt rows (logits for the last);
// keeps the fastest of the calls to Time().
class Prefill {
 public:
  Prefill(std::string name, const Model* model, int tokens)
      : name_(std::move(name)), model_(model), tokens_(tokens) {
    auto state = model->NewState(1, tokens, tokens);
    if (!state.ok()) {
      std::fprintf(stderr, "prefill state: %s\n",
                   std::string(state.status().message()).c_str());
      std::exit(1);
    }
    state_ = std::move(state).value();
    logits_.resize(size_t(model->vocab_size()));
    for (int i = 0; i < tokens; ++i)
      rows_.push_back({0, i, (i * 7919 + 13) % 1000, i + 1 == tokens});
    // Linear layers: 2 FLOPs per weight per token; causal attention: 4 *
    // head_dim FLOPs per head per (query, key) pair with key <= query.
    const ModelConfig& c = model->config();
    const double D = c.hidden_size, F = c.intermediate_size,
                 q = double(c.num_heads) * c.head_dim,
                 kv = double(c.num_kv_heads) * c.head_dim;
    const double per_layer = D * (q + 2 * kv) + q * D + 3 * D * F;
    flops_ = c.num_layers *
                 (2 * per_layer * tokens +
                  4.0 * c.head_dim * c.num_heads * tokens * (tokens + 1) / 2) +
             2.0 * c.vocab_size * D;
  }
  void Time() {
    auto t0 = Clock::now();
    if (!model_->Forward(rows_, state_.get(), logits_.data()).ok())
      std::exit(1);
    best_s_ = std::min(best_s_, Seconds(t0, Clock::now()));
  }
  const std::string& name() const { return name_; }
  const Model& model() const { return *model_; }
  double gflops() const { return flops_ / best_s_ / 1e9; }
  double tokens_per_s() const { return tokens_ / best_s_; }
  double seconds() const { return best_s_; }

 private:
  std::string name_;
  const Model* model_;
  int tokens_;
  std::unique_ptr<DecodeState> state_;
  std::vector<ForwardRow> rows_;
  std::vector<float> logits_;
  double flops_ = 0;
  double best_s_ = 1e30;
};

// One decoder kept warm between rounds: prefill and 4 warm-up steps at
// creation, then `Time(steps)` measures that many decode steps.
class Config {
 public:
  Config(std::string name, const Model* model, int batch, int steps, int rounds)
      : name_(std::move(name)), model_(model), batch_(batch) {
    auto decoder =
        BatchDecoder::Create(model, {.max_batch = batch,
                                     .max_context = 64 + steps * rounds + 8,
                                     .prefill_chunk = 256});
    if (!decoder.ok()) {
      std::fprintf(stderr, "decoder: %s\n",
                   std::string(decoder.status().message()).c_str());
      std::exit(1);
    }
    decoder_ = std::move(decoder).value();
    SamplingParams p;
    p.temperature = 0;
    p.ignore_eos = true;
    p.max_new_tokens = steps * rounds + 16;
    std::vector<int> prompt = {0, 17, 250, 3, 99, 300, 42, 7};
    for (int b = 0; b < batch; ++b) {
      prompt[1] = 17 + b;  // different sequences
      if (!decoder_->Add({prompt, p}).ok()) std::exit(1);
    }
    for (int i = 0; i < 5; ++i) (void)decoder_->Step();  // prefill + warm-up
  }
  // Runs `steps` decode steps; keeps the fastest round.
  void Time(int steps) {
    auto t0 = Clock::now();
    int tokens = 0;
    for (int i = 0; i < steps; ++i) {
      auto events = decoder_->Step();
      for (const auto& e : *events) tokens += e.token >= 0;
    }
    double s = Seconds(t0, Clock::now());
    if (s / steps < best_step_s_) {
      best_step_s_ = s / steps;
      best_tps_ = tokens / s;
    }
  }
  const std::string& name() const { return name_; }
  const Model& model() const { return *model_; }
  int batch() const { return batch_; }
  double tokens_per_s() const { return best_tps_; }
  double step_s() const { return best_step_s_; }

 private:
  std::string name_;
  const Model* model_;
  int batch_;
  std::unique_ptr<BatchDecoder> decoder_;
  double best_step_s_ = 1e30;
  double best_tps_ = 0;
};

std::unique_ptr<Model> Load(const std::string& path, int threads) {
  auto m = Model::Load(path, {.threads = threads, .max_context = 1024});
  if (!m.ok()) {
    std::fprintf(stderr, "load %s: %s\n", path.c_str(),
                 std::string(m.status().message()).c_str());
    std::exit(1);
  }
  return std::move(m).value();
}

void Ensure(const std::string& dir, const std::string& preset) {
  if (FileExists(dir + "/model.safetensors")) return;
  std::fprintf(stderr, "generating %s model in %s ...\n", preset.c_str(),
               dir.c_str());
  auto o = TinyModelPreset(preset);
  if (!o.ok() || !WriteTinyModel(*o, dir).ok()) std::exit(1);
}

void EnsureQuantized(const std::string& src, const std::string& dir,
                     const std::string& q) {
  if (FileExists(dir + "/hangar_manifest.json")) return;
  std::fprintf(stderr, "quantizing %s -> %s (%s) ...\n", src.c_str(),
               dir.c_str(), q.c_str());
  auto r = QuantizeModel({.source_dir = src,
                          .output_dir = dir,
                          .engine = "CTRANSLATE2",
                          .quantization = q});
  if (!r.ok()) {
    std::fprintf(stderr, "quantize: %s\n",
                 std::string(r.status().message()).c_str());
    std::exit(1);
  }
}

// What --only selected: sections, each with all its names (an empty set)
// or the listed ones. No --only selects everything.
class Selection {
 public:
  // Valid names per section; a section with no names takes none after ':'.
  static const std::map<std::string, std::vector<std::string>>& Valid() {
    static const auto* v = new std::map<std::string, std::vector<std::string>>{
        {"stream", {}},
        {"peak", {"fma", "intdot"}},
        {"decode",
         {"small-f32", "base-f32", "base-int8", "base-bf16", "base-q8_0",
          "base-q4_k_m"}},
        {"prefill", {"base-f32", "base-int8", "base-q8_0"}},
        {"llama", {"base-f32", "base-q8_0", "base-q4_k_m"}},
    };
    return *v;
  }
  static std::string ValidText() {
    std::string out;
    for (const auto& [section, names] : Valid()) {
      out += "  " + section;
      if (!names.empty()) {
        out += "[:";
        for (size_t i = 0; i < names.size(); ++i)
          out += (i ? "," : "") + names[i];
        out += "]";
      }
      out += "\n";
    }
    return out;
  }
  // Adds one --only value ("decode" or "decode:base-f32,base-q8_0");
  // returns an error message or "".
  std::string Add(const std::string& spec) {
    const size_t colon = spec.find(':');
    const std::string section = spec.substr(0, colon);
    auto it = Valid().find(section);
    if (it == Valid().end()) return "unknown section '" + section + "'";
    std::set<std::string>& chosen = chosen_[section];
    if (colon == std::string::npos) {
      all_names_.insert(section);
      return "";
    }
    std::string rest = spec.substr(colon + 1);
    size_t begin = 0;
    while (begin <= rest.size()) {
      size_t end = rest.find(',', begin);
      if (end == std::string::npos) end = rest.size();
      std::string name = rest.substr(begin, end - begin);
      const auto& names = it->second;
      if (std::find(names.begin(), names.end(), name) == names.end())
        return "unknown name '" + name + "' in section '" + section + "'";
      chosen.insert(name);
      begin = end + 1;
    }
    return "";
  }
  // Sections the chosen ones need for their ratios (cheap machine numbers).
  void AddImplied(bool llama) {
    if (chosen_.empty()) return;
    if (llama && !chosen_.count("llama")) {
      chosen_["llama"];
      all_names_.insert("llama");
    }
    if (chosen_.count("decode") && !chosen_.count("stream")) {
      chosen_["stream"];
      all_names_.insert("stream");
    }
    if (chosen_.count("prefill") && !chosen_.count("peak")) {
      chosen_["peak"];
      all_names_.insert("peak");
    }
  }
  // Named in an --only (or implied by one).
  bool Chosen(const std::string& section) const {
    return chosen_.count(section) > 0;
  }
  bool Section(const std::string& section) const {
    return chosen_.empty() || chosen_.count(section) > 0;
  }
  bool Wants(const std::string& section, const std::string& name) const {
    if (chosen_.empty() || all_names_.count(section)) return true;
    auto it = chosen_.find(section);
    return it != chosen_.end() && it->second.count(name) > 0;
  }

 private:
  std::map<std::string, std::set<std::string>> chosen_;
  std::set<std::string> all_names_;  // sections chosen without names
};

// Numbers measured in this run by key ("decode/base-f32/2/8", "bw/2", ...);
// a ratio of keys that were not measured is absent.
class Measured {
 public:
  void Set(const std::string& key, double v) { values_[key] = v; }
  std::optional<double> Get(const std::string& key) const {
    auto it = values_.find(key);
    if (it == values_.end() || !(it->second > 0)) return std::nullopt;
    return it->second;
  }
  std::optional<double> Div(const std::string& a, const std::string& b) const {
    auto x = Get(a), y = Get(b);
    if (!x || !y) return std::nullopt;
    return *x / *y;
  }

 private:
  std::map<std::string, double> values_;
};

constexpr char kNotMeasured[] = "(not measured in this run)";

void Ratio(const char* what, std::optional<double> measured, double target) {
  if (!measured) {
    std::printf("  %-58s %s\n", what, kNotMeasured);
    return;
  }
  std::printf("  %-58s %7.2f   target >= %.2f   %s\n", what, *measured, target,
              *measured >= target ? "MET" : "below");
  // The same as one line scripts/perf-report.sh collects.
  if (std::strstr(what, "(info)") == nullptr) {
    std::printf("TARGET | %s | %.2fx | >= %.2fx | %s\n", what, *measured,
                target, *measured >= target ? "PASS" : "MISS");
  }
}

// "  (info) what: a / b / c", or the not-measured note when any is absent.
void Info(const char* what, const std::vector<std::optional<double>>& values) {
  for (const auto& v : values) {
    if (!v) {
      std::printf("  (info) %s: %s\n", what, kNotMeasured);
      return;
    }
  }
  std::printf("  (info) %s: ", what);
  for (size_t i = 0; i < values.size(); ++i)
    std::printf("%s%.2f", i ? " / " : "", *values[i]);
  std::printf("\n");
}

constexpr char kUsage[] =
    "usage: engine_bench [--dir DIR] [--steps N] [--prefill N] [--quick]\n"
    "                    [--only SECTION[:NAME,...]]... [--llama_bench PATH]\n"
    "--llama_bench PATH: also run llama.cpp's llama-bench at PATH on the same\n"
    "~110M model as GGUF and print both engines' tokens/s side by side.\n"
    "--only (repeatable; also --only=...) measures only the named sections\n"
    "(and of a section only the named models); decode also measures stream\n"
    "and prefill also peak, which their ratios need; llama needs\n"
    "--llama_bench and --llama_bench alone adds it. Sections and names:\n";

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "/tmp/hangar-bench";
  int steps = 32;
  int prefill_tokens = 512;
  bool quick = false;
  std::string llama_bench;
  Selection only;
  auto usage = [](const std::string& error) {
    if (!error.empty())
      std::fprintf(stderr, "engine_bench: %s\n", error.c_str());
    std::fprintf(stderr, "%s%s", kUsage, Selection::ValidText().c_str());
    return 2;
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (a == "--steps" && i + 1 < argc) {
      steps = std::atoi(argv[++i]);
    } else if (a == "--prefill" && i + 1 < argc) {
      prefill_tokens = std::atoi(argv[++i]);
    } else if (a == "--quick") {
      quick = true;
    } else if ((a == "--llama_bench" && i + 1 < argc) ||
               a.rfind("--llama_bench=", 0) == 0) {
      llama_bench = a == "--llama_bench" ? argv[++i] : a.substr(14);
    } else if ((a == "--only" && i + 1 < argc) || a.rfind("--only=", 0) == 0) {
      std::string spec = a == "--only" ? argv[++i] : a.substr(7);
      if (std::string e = only.Add(spec); !e.empty()) return usage(e);
    } else {
      return usage("unknown argument '" + a + "'");
    }
  }
  if (prefill_tokens < 1 || prefill_tokens > 1024)
    return usage("--prefill must be in [1, 1024]");
  if (steps < 1) return usage("--steps must be >= 1");
  only.AddImplied(!llama_bench.empty());
  if (llama_bench.empty()) {
    if (only.Chosen("llama"))
      return usage("--only=llama needs --llama_bench PATH");
  } else if (access(llama_bench.c_str(), X_OK) != 0) {
    return usage("--llama_bench: '" + llama_bench +
                 "' is not an executable file");
  }
  // Without --llama_bench the side by side is off, whatever else is chosen.
  auto llama = [&](const std::string& m) {
    return !llama_bench.empty() && only.Wants("llama", m);
  };
  auto decode = [&](const std::string& m) { return only.Wants("decode", m); };
  auto prefill = [&](const std::string& m) { return only.Wants("prefill", m); };
  auto uses = [&](const std::string& m) { return decode(m) || prefill(m); };

  const std::string small = dir + "/small-f32", base = dir + "/base-f32",
                    base_i8 = dir + "/base-int8",
                    base_bf16 = dir + "/base-bf16",
                    base_q8 = dir + "/base-q8_0.gguf",
                    base_q4k = dir + "/base-q4_k_m.gguf";
  if (uses("small-f32")) Ensure(small, "small");
  if (uses("base-f32") || uses("base-int8") || uses("base-bf16") ||
      uses("base-q8_0") || uses("base-q4_k_m") || llama("base-f32") ||
      llama("base-q8_0") || llama("base-q4_k_m"))
    Ensure(base, "base");
  if (uses("base-int8")) EnsureQuantized(base, base_i8, "int8");
  if (uses("base-bf16")) EnsureQuantized(base, base_bf16, "bfloat16");
  auto ensure_gguf = [&](const std::string& path, const char* type) {
    if (FileExists(path)) return;
    std::fprintf(stderr, "converting %s -> %s ...\n", base.c_str(),
                 path.c_str());
    if (!ConvertToGguf(base, path, type).ok()) std::exit(1);
  };
  if (uses("base-q8_0")) ensure_gguf(base_q8, "q8_0");
  if (uses("base-q4_k_m")) ensure_gguf(base_q4k, "q4_k_m");
  // The side by side with llama.cpp: the same weights as GGUF files whose
  // token list covers every embedding row (llama.cpp requires it); the
  // engine measures these very files.
  struct LlamaType {
    std::string name, type, path;
  };
  std::vector<LlamaType> llama_types;
  for (const char* t : {"f32", "q8_0", "q4_k_m"}) {
    const std::string name = std::string("base-") + t;
    if (!llama(name)) continue;
    llama_types.push_back({name, t, dir + "/llama-" + name + ".gguf"});
    if (FileExists(llama_types.back().path)) continue;
    std::fprintf(stderr, "writing %s for llama.cpp ...\n",
                 llama_types.back().path.c_str());
    if (auto st =
            hangar::bench::WriteLlamaCppGguf(base, llama_types.back().path, t);
        !st.ok()) {
      std::fprintf(stderr, "WriteLlamaCppGguf: %s\n",
                   std::string(st.message()).c_str());
      std::exit(1);
    }
  }

  std::printf(
      "engine_bench: kernels %s, %u hardware threads, load average %s\n",
      KernelIsaName(ActiveKernelIsa()), std::thread::hardware_concurrency(),
      LoadAverage().c_str());
  const bool stream = only.Section("stream");
  const bool fma = only.Wants("peak", "fma");
  const bool intdot = only.Wants("peak", "intdot");
  const bool wide_isa = ActiveKernelIsa() == KernelIsa::kAvx512 ||
                        ActiveKernelIsa() == KernelIsa::kAvx512Vnni;
  std::vector<float> buf;
  if (stream) {
    buf.resize(size_t(256) << 20 >> 2 << 1);  // 512 MiB
    for (size_t i = 0; i < buf.size(); i += 1024) buf[i] = 1.0f;
  }
  // The read bandwidth and the peaks are measured before and inside every
  // round below, and the best is kept, like the decode numbers.
  double bw1 = 0, bw2 = 0, peak1 = 0, peak2 = 0;
  if (stream) bw1 = ReadBandwidth(1, buf), bw2 = ReadBandwidth(2, buf);
  if (fma) peak1 = FmaPeak(1), peak2 = FmaPeak(2);
  // Integer-dot peak on 2 threads: the ISA's widest vectors, and 256 bits
  // (the int8 kernels' width) where that is narrower.
  double ipeak = 0, ipeak256 = 0;
  if (intdot) {
    ipeak = IntDotPeak(2, true);
    if (wide_isa) ipeak256 = IntDotPeak(2, false);
  }

  // Every configuration stays loaded and warm; rounds go through all of
  // them in turn and each keeps its fastest round, so a burst of other work
  // on the shared machine hurts one round, not one configuration. Models are
  // loaded once per (path, threads), only when a selected part needs them.
  std::map<std::pair<std::string, int>, std::unique_ptr<Model>> models;
  auto model = [&](const std::string& path, int threads) -> const Model* {
    auto& m = models[{path, threads}];
    if (!m) m = Load(path, threads);
    return m.get();
  };
  const int rounds = quick ? 2 : 4;
  std::vector<std::unique_ptr<Config>> configs;
  auto add = [&](const std::string& name, const std::string& path, int threads,
                 std::vector<int> batches) {
    if (!decode(name)) return;
    for (int b : batches)
      configs.push_back(std::make_unique<Config>(name, model(path, threads), b,
                                                 steps, rounds));
  };
  add("small-f32", small, 2, {1, 4, 8, 16});
  add("base-f32", base, 2, {1, 4, 8, 16});
  add("base-f32", base, 1, {1});
  add("base-int8", base_i8, 2, {1, 8});
  add("base-int8", base_i8, 1, {1});
  add("base-bf16", base_bf16, 2, {1, 8});
  add("base-q8_0", base_q8, 2, {1, 8});
  add("base-q4_k_m", base_q4k, 2, {1});
  std::vector<std::unique_ptr<Prefill>> prefills;
  auto add_prefill = [&](const std::string& name, const std::string& path) {
    if (prefill(name))
      prefills.push_back(
          std::make_unique<Prefill>(name, model(path, 2), prefill_tokens));
  };
  add_prefill("base-f32", base);
  add_prefill("base-int8", base_i8);
  add_prefill("base-q8_0", base_q8);
  // Side by side: prefill on 2 threads, decode batch 1 on 2 and 1 threads.
  for (const LlamaType& t : llama_types) {
    const std::string name = "gguf-" + t.type;
    prefills.push_back(
        std::make_unique<Prefill>(name, model(t.path, 2), prefill_tokens));
    configs.push_back(
        std::make_unique<Config>(name, model(t.path, 2), 1, steps, rounds));
    configs.push_back(
        std::make_unique<Config>(name, model(t.path, 1), 1, steps, rounds));
  }
  for (int r = 0; r < rounds; ++r) {
    if (stream) {
      bw1 = std::max(bw1, ReadBandwidth(1, buf, 1));
      bw2 = std::max(bw2, ReadBandwidth(2, buf, 1));
    }
    if (fma) {
      peak1 = std::max(peak1, FmaPeak(1, 1));
      peak2 = std::max(peak2, FmaPeak(2, 1));
    }
    if (intdot) {
      ipeak = std::max(ipeak, IntDotPeak(2, true, 1));
      if (wide_isa) ipeak256 = std::max(ipeak256, IntDotPeak(2, false, 1));
    }
    for (auto& c : configs) c->Time(steps);
    for (auto& p : prefills) p->Time();
  }
  Measured m;
  m.Set("bw/1", bw1);
  m.Set("bw/2", bw2);
  m.Set("fma/1", peak1);
  m.Set("fma/2", peak2);
  m.Set("intdot/2", ipeak);
  if (stream) {
    std::printf(
        "STREAM-style read bandwidth (best of all rounds): 1 thread %.1f "
        "GB/s, 2 threads %.1f GB/s\n",
        bw1, bw2);
  }
  for (const auto& c : configs) {
    const ModelInfo& info = c->model().info();
    const int threads = c->model().threads();
    double bw = double(info.decode_bytes) / c->step_s() / 1e9;
    std::printf(
        "%-10s %6.1fM params %-9s threads %d batch %2d: %8.1f tokens/s  step "
        "%6.2f ms  weights %.2f GB/s\n",
        c->name().c_str(), info.parameters / 1e6, info.weight_dtype.c_str(),
        threads, c->batch(), c->tokens_per_s(), c->step_s() * 1e3, bw);
    m.Set(c->name() + "/" + std::to_string(threads) + "/" +
              std::to_string(c->batch()),
          c->tokens_per_s());
    if (c->batch() == 1)
      m.Set(c->name() + "/bw/" + std::to_string(threads), bw);
  }

  if (fma) {
    std::printf(
        "FMA peak (best of all rounds, %s width): 1 thread %.1f GFLOP/s, 2 "
        "threads %.1f GFLOP/s\n",
        KernelIsaName(ActiveKernelIsa()), peak1, peak2);
  }
  if (intdot) {
    const KernelIsa isa = ActiveKernelIsa();
    std::printf(
        "integer-dot peak (best of all rounds, u8 x s8 -> s32 by %s, 2 ops "
        "per product): 2 threads %.1f GOP/s at %d bits",
        isa == KernelIsa::kAvx512Vnni ? "vpdpbusd"
        : isa == KernelIsa::kScalar   ? "nothing (scalar)"
                                      : "vpmaddubsw+vpmaddwd",
        ipeak, wide_isa ? 512 : 256);
    if (wide_isa) std::printf(", %.1f GOP/s at 256 bits", ipeak256);
    std::printf("\n");
  }
  for (const auto& p : prefills) {
    std::printf(
        "%-10s prefill %d tokens, threads %d: %8.1f tokens/s  %6.3f s  "
        "%6.1f GFLOP/s\n",
        p->name().c_str(), prefill_tokens, p->model().threads(),
        p->tokens_per_s(), p->seconds(), p->gflops());
    m.Set("prefill/" + p->name(), p->gflops());
    m.Set("prefill-tps/" + p->name(), p->tokens_per_s());
  }

  std::printf("\nRatios (measured in this run; targets from issue 14):\n");
  std::printf("  kernel path: %s\n", KernelIsaName(ActiveKernelIsa()));
  Ratio("prefill f32 GFLOP/s / FMA peak, 2 threads",
        m.Div("prefill/base-f32", "fma/2"), 0.55);
  Ratio("Q8_0 prefill / f32 prefill",
        m.Div("prefill/base-q8_0", "prefill/base-f32"), 1.2);
  Info("int8 prefill / f32 prefill",
       {m.Div("prefill/base-int8", "prefill/base-f32")});
  Info("int8 prefill GOP/s / integer-dot peak, 2 threads",
       {m.Div("prefill/base-int8", "intdot/2")});
  Info("Q8_0 prefill GOP/s / integer-dot peak, 2 threads",
       {m.Div("prefill/base-q8_0", "intdot/2")});
  Ratio("base f32 batch 8 vs batch 1 throughput (issue 14)",
        m.Div("base-f32/2/8", "base-f32/2/1"), 5.0);
  Ratio("base int8 batch 8 vs batch 1 throughput",
        m.Div("base-int8/2/8", "base-int8/2/1"), 3.0);
  Info("base q8_0 batch 8 vs batch 1",
       {m.Div("base-q8_0/2/8", "base-q8_0/2/1")});
  Ratio("base int8 batch-1 bytes/s / STREAM, 2 threads",
        m.Div("base-int8/bw/2", "bw/2"), 0.9);
  Ratio("base q8_0 batch-1 bytes/s / STREAM, 2 threads",
        m.Div("base-q8_0/bw/2", "bw/2"), 0.9);
  Ratio("Q4_K_M decode / Q8_0 decode, batch 1, 2 threads",
        m.Div("base-q4_k_m/2/1", "base-q8_0/2/1"), 1.3);

  std::printf("\nRatios (measured in this run; targets from issue 3):\n");
  Ratio("base f32 batch-1 bandwidth efficiency, 2 threads",
        m.Div("base-f32/bw/2", "bw/2"), 0.85);
  Ratio("base f32 batch-1 bandwidth efficiency, 1 thread (info)",
        m.Div("base-f32/bw/1", "bw/1"), 0.85);
  Ratio("base int8 vs f32 decode speed, batch 1",
        m.Div("base-int8/2/1", "base-f32/2/1"), 3.0);
  Ratio("base bf16 vs f32 decode speed, batch 1",
        m.Div("base-bf16/2/1", "base-f32/2/1"), 1.7);
  Ratio("base f32 batch 8 vs batch 1 throughput (issue 3)",
        m.Div("base-f32/2/8", "base-f32/2/1"), 6.0);
  Info("base f32 batch 4 / 16 vs batch 1",
       {m.Div("base-f32/2/4", "base-f32/2/1"),
        m.Div("base-f32/2/16", "base-f32/2/1")});
  Info("small f32 batch 4 / 8 / 16 vs batch 1",
       {m.Div("small-f32/2/4", "small-f32/2/1"),
        m.Div("small-f32/2/8", "small-f32/2/1"),
        m.Div("small-f32/2/16", "small-f32/2/1")});
  Info("base f32 threads 2 vs 1, batch 1",
       {m.Div("base-f32/2/1", "base-f32/1/1")});
  Info("base int8 threads 2 vs 1, batch 1",
       {m.Div("base-int8/2/1", "base-int8/1/1")});
  Info("base int8 / bf16 batch 8 vs batch 1",
       {m.Div("base-int8/2/8", "base-int8/2/1"),
        m.Div("base-bf16/2/8", "base-bf16/2/1")});
  if (!llama_types.empty()) {
    // llama-bench runs after the engine's rounds, on the same files: prefill
    // of --prefill tokens and --steps generated tokens on 2 threads, then
    // decode alone on 1 thread; its fastest repetition, as the engine's
    // numbers are its fastest round.
    const std::string reps = quick ? "3" : "5";
    const std::string p = std::to_string(prefill_tokens),
                      n = std::to_string(steps);
    std::string cpu, backends, commit;
    struct Row {
      std::string what, key;
      int threads;
      std::optional<double> llama;
    };
    std::vector<Row> rows;
    for (const LlamaType& t : llama_types) {
      std::fprintf(stderr, "running %s on %s ...\n", llama_bench.c_str(),
                   t.path.c_str());
      auto two = hangar::bench::RunLlamaBench(
          llama_bench, t.path, {"-p", p, "-n", n, "-t", "2", "-r", reps});
      auto one = hangar::bench::RunLlamaBench(
          llama_bench, t.path, {"-p", "0", "-n", n, "-t", "1", "-r", reps});
      std::optional<double> pp2, tg2, tg1;
      for (auto* r : {&two, &one}) {
        if (!r->ok()) {
          std::printf("llama-bench failed: %s\n",
                      std::string(r->status().message()).c_str());
          continue;
        }
        for (const auto& x : **r) {
          if (x.n_prompt > 0 && x.n_gen == 0 && x.n_threads == 2)
            pp2 = x.best_ts;
          if (x.n_prompt == 0 && x.n_gen > 0 && x.n_threads == 2)
            tg2 = x.best_ts;
          if (x.n_prompt == 0 && x.n_gen > 0 && x.n_threads == 1)
            tg1 = x.best_ts;
          cpu = x.cpu_info, backends = x.backends, commit = x.build_commit;
        }
      }
      const std::string g = "gguf-" + t.type;
      rows.push_back({t.type + " prefill " + p, "prefill-tps/" + g, 2, pp2});
      rows.push_back({t.type + " decode batch 1", g + "/2/1", 2, tg2});
      rows.push_back({t.type + " decode batch 1", g + "/1/1", 1, tg1});
    }
    std::printf(
        "\nSide by side with llama.cpp (%s; build %s, backends %s, CPU %s):\n"
        "  llama.cpp runs the ISA it was compiled for (a GGML_NATIVE build "
        "uses all of this CPU's, AVX-512 where present);\n"
        "  HANGAR_ENGINE_ISA changes only the engine's kernels (here %s).\n",
        llama_bench.c_str(), commit.c_str(), backends.c_str(), cpu.c_str(),
        KernelIsaName(ActiveKernelIsa()));
    std::printf(
        "  Both columns are the fastest of their rounds / repetitions.\n"
        "| weights, test | threads | Hangar tokens/s | llama.cpp tokens/s | "
        "Hangar / llama.cpp |\n|---|---|---|---|---|\n");
    for (const Row& r : rows) {
      std::optional<double> h = m.Get(r.key);
      auto cell = [](std::optional<double> v) {
        char b[32];
        if (!v) return std::string(kNotMeasured);
        std::snprintf(b, sizeof(b), "%.1f", *v);
        return std::string(b);
      };
      std::optional<double> ratio;
      if (h && r.llama) ratio = *h / *r.llama;
      char rb[32] = "-";
      if (ratio) std::snprintf(rb, sizeof(rb), "%.2fx", *ratio);
      std::printf("| %s | %d | %s | %s | %s |\n", r.what.c_str(), r.threads,
                  cell(h).c_str(), cell(r.llama).c_str(), rb);
    }
  }
  std::printf(
      "load average at the end: %s (other work on the machine lowers every "
      "number)\n",
      LoadAverage().c_str());
  return 0;
}
