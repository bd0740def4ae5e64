#include "engine/kernels.h"

#include "engine/kquants.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace hangar::engine {
namespace {

std::atomic<KernelIsa> g_isa{DetectKernelIsa()};

#if defined(__x86_64__)
// F16C (CPUID.1:ECX bit 29); clang 14's __builtin_cpu_supports lacks "f16c".
bool HasF16c() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  return (ecx >> 29) & 1;
}
#endif

bool CpuHas(KernelIsa isa) {
#if defined(__x86_64__)
  switch (isa) {
    case KernelIsa::kScalar:
      return true;
    case KernelIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             HasF16c();
    case KernelIsa::kAvx512:
      return __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && HasF16c() &&
             __builtin_cpu_supports("fma");
    case KernelIsa::kAvx512Vnni:
      return CpuHas(KernelIsa::kAvx512) && __builtin_cpu_supports("avx512vnni");
  }
  return false;
#else
  return isa == KernelIsa::kScalar;
#endif
}

}  // namespace

const char* KernelIsaName(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kScalar:
      return "scalar";
    case KernelIsa::kAvx2:
      return "avx2+fma";
    case KernelIsa::kAvx512:
      return "avx512";
    case KernelIsa::kAvx512Vnni:
      return "avx512vnni";
  }
  return "?";
}

KernelIsa DetectKernelIsa() {
  KernelIsa best = KernelIsa::kScalar;
  if (CpuHas(KernelIsa::kAvx512Vnni)) {
    best = KernelIsa::kAvx512Vnni;
  } else if (CpuHas(KernelIsa::kAvx512)) {
    best = KernelIsa::kAvx512;
  } else if (CpuHas(KernelIsa::kAvx2)) {
    best = KernelIsa::kAvx2;
  }
  if (const char* env = std::getenv("HANGAR_ENGINE_ISA")) {
    std::string want = env;
    if (want == "scalar") best = KernelIsa::kScalar;
    if (want == "avx2" && CpuHas(KernelIsa::kAvx2)) best = KernelIsa::kAvx2;
    if (want == "avx512" && CpuHas(KernelIsa::kAvx512))
      best = KernelIsa::kAvx512;
    if (want == "avx512vnni" && CpuHas(KernelIsa::kAvx512Vnni))
      best = KernelIsa::kAvx512Vnni;
  }
  return best;
}

KernelIsa ActiveKernelIsa() { return g_isa.load(); }

bool SetKernelIsa(KernelIsa isa) {
  if (!CpuHas(isa)) return false;
  g_isa.store(isa);
  return true;
}

namespace internal {

float DequantElement(const WeightMatrix& w, int64_t row, int64_t k) {
  const uint8_t* r = w.data + row * w.row_bytes();
  switch (w.dtype) {
    case DType::kF32: {
      float v;
      std::memcpy(&v, r + 4 * k, 4);
      return v;
    }
    case DType::kF16: {
      uint16_t h;
      std::memcpy(&h, r + 2 * k, 2);
      return F16ToF32(h);
    }
    case DType::kBF16: {
      uint16_t h;
      std::memcpy(&h, r + 2 * k, 2);
      return Bf16ToF32(h);
    }
    case DType::kI8:
      return float(int8_t(r[k])) * w.scales[row];
    case DType::kI16: {
      int16_t v;
      std::memcpy(&v, r + 2 * k, 2);
      return float(v) * w.scales[row];
    }
    case DType::kF8E4M3:
      return Fp8E4M3ToF32(r[k]) * w.scales[row];
    case DType::kQ8_0: {
      const uint8_t* b = r + (k / 32) * 34;
      uint16_t d;
      std::memcpy(&d, b, 2);
      return F16ToF32(d) * float(int8_t(b[2 + k % 32]));
    }
    case DType::kQ4_0: {
      const uint8_t* b = r + (k / 32) * 18;
      uint16_t d;
      std::memcpy(&d, b, 2);
      int j = int(k % 32);
      int q = j < 16 ? (b[2 + j] & 0x0f) : (b[2 + j - 16] >> 4);
      return F16ToF32(d) * float(q - 8);
    }
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      return DequantizeKElement(
          w.dtype, r + (k / kQK) * KQuantBlockBytes(w.dtype), int(k % kQK));
  }
  return 0;
}

void MatMulRowsScalar(const RowRangeArgs& a) {
  const WeightMatrix& w = *a.w;
  if (a.xq16 != nullptr && w.dtype == DType::kI8) {
    // The reference for int8 weights x int16 activations: the exact integer
    // dot product, times the row scale and the activations' scale.
    for (int64_t r = a.r0; r < a.r1; ++r) {
      const int8_t* row = reinterpret_cast<const int8_t*>(w.data) + r * w.cols;
      int64_t s = 0;
      for (int64_t k = 0; k < w.cols; ++k)
        s += int64_t(row[k]) * int64_t(a.xq16[k]);
      a.y[r] = float(s) * (w.scales[r] * a.xscale16);
    }
    return;
  }
  if (a.xq != nullptr && w.dtype == DType::kQ8_0) {
    // The reference for the integer path: exact int32 sums per 32-column
    // block, scaled by the weights' and the activations' block scales.
    const int64_t rb = w.row_bytes(), blocks = w.cols / 32;
    for (int64_t r = a.r0; r < a.r1; ++r) {
      const uint8_t* row = w.data + r * rb;
      for (int b = 0; b < a.n; ++b) {
        const int8_t* x = a.xq + b * a.ldxq;
        const float* xs = a.xscale + b * a.ldxs;
        float acc = 0;
        for (int64_t blk = 0; blk < blocks; ++blk) {
          const uint8_t* wb = row + blk * 34 + 2;
          int32_t s = 0;
          for (int t = 0; t < 32; ++t)
            s += int32_t(int8_t(wb[t])) * int32_t(x[blk * 32 + t]);
          uint16_t h;
          std::memcpy(&h, row + blk * 34, 2);
          acc += float(s) * (F16ToF32(h) * xs[blk]);
        }
        a.y[b * a.ldy + r] = acc;
      }
    }
    return;
  }
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = a.r0; r < a.r1; ++r) {
    DequantizeRow(w, r, row.data());
    for (int b = 0; b < a.n; ++b) {
      const float* x = a.x + b * a.ldx;
      float acc = 0;
      for (int64_t k = 0; k < w.cols; ++k) acc += row[size_t(k)] * x[k];
      a.y[b * a.ldy + r] = acc;
    }
  }
}

int GemmTileRows(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kScalar:
      return 0;
    case KernelIsa::kAvx2:
      return 6;
    case KernelIsa::kAvx512:
    case KernelIsa::kAvx512Vnni:
      return 12;
  }
  return 0;
}

int IntGemmTileRows(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kScalar:
      return 0;
    case KernelIsa::kAvx2:
      return 4;
    case KernelIsa::kAvx512:
    case KernelIsa::kAvx512Vnni:
      return 6;
  }
  return 0;
}

void PackIntActivations(const int8_t* q, int64_t ldq, const float* scale,
                        int64_t lds, int n, int64_t k, int mr, bool bias128,
                        uint8_t* qout, float* sout) {
  const int groups = (n + mr - 1) / mr;
  const int64_t steps = k / 4, blocks = k / 32;
  const uint32_t flip = bias128 ? 0x80808080u : 0u;
  for (int g = 0; g < groups; ++g) {
    uint8_t* dst = qout + int64_t(g) * k * mr;
    float* sdst = sout + int64_t(g) * blocks * mr;
    for (int i = 0; i < mr; ++i) {
      const int b = g * mr + i;
      if (b >= n) {
        for (int64_t t = 0; t < steps; ++t)
          std::memcpy(dst + (t * mr + i) * 4, &flip, 4);
        for (int64_t t = 0; t < blocks; ++t) sdst[t * mr + i] = 0.0f;
        continue;
      }
      const int8_t* src = q + int64_t(b) * ldq;
      for (int64_t t = 0; t < steps; ++t) {
        uint32_t v;
        std::memcpy(&v, src + 4 * t, 4);
        v ^= flip;
        std::memcpy(dst + (t * mr + i) * 4, &v, 4);
      }
      for (int64_t t = 0; t < blocks; ++t)
        sdst[t * mr + i] = scale[int64_t(b) * lds + t];
    }
  }
}

void PackActivations(const float* x, int64_t ldx, int n, int64_t k, int mr,
                     float* out) {
  const int groups = (n + mr - 1) / mr;
  for (int g = 0; g < groups; ++g) {
    float* dst = out + int64_t(g) * k * mr;
    for (int i = 0; i < mr; ++i) {
      const int b = g * mr + i;
      if (b >= n) {
        for (int64_t t = 0; t < k; ++t) dst[t * mr + i] = 0.0f;
        continue;
      }
      const float* src = x + int64_t(b) * ldx;
      for (int64_t t = 0; t < k; ++t) dst[t * mr + i] = src[t];
    }
  }
}

float QuantizeActivations16(const float* x, int64_t k, int16_t* q) {
  float amax = 0;
  for (int64_t t = 0; t < k; ++t) amax = std::max(amax, std::fabs(x[t]));
  const float inv = amax > 0 ? 32767.0f / amax : 0.0f;
  for (int64_t t = 0; t < k; ++t) q[t] = int16_t(std::nearbyint(x[t] * inv));
  return amax / 32767.0f;
}

#if defined(__x86_64__)
namespace {
// QuantizeActivations' per-block case with AVX2 (every vector ISA has it):
// the same max, scale and round-to-nearest-even (vcvtps2dq under the default
// MXCSR is nearbyint), so the int8 values are bit-identical to the scalar
// loop's.
__attribute__((target("avx2"))) void QuantizeBlocksAvx2(
    const float* x, int64_t ldx, int n, int64_t k, int8_t* q, int64_t ldq,
    float* scale, int64_t lds) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int b = 0; b < n; ++b) {
    const float* xr = x + b * ldx;
    int8_t* qr = q + b * ldq;
    for (int64_t g0 = 0; g0 < k; g0 += 32) {
      __m256 v[4];
      for (int t = 0; t < 4; ++t) v[t] = _mm256_loadu_ps(xr + g0 + 8 * t);
      __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v[0], abs_mask),
                                             _mm256_and_ps(v[1], abs_mask)),
                               _mm256_max_ps(_mm256_and_ps(v[2], abs_mask),
                                             _mm256_and_ps(v[3], abs_mask)));
      __m128 h =
          _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
      h = _mm_max_ps(h, _mm_movehl_ps(h, h));
      h = _mm_max_ss(h, _mm_movehdup_ps(h));
      const float amax = _mm_cvtss_f32(h);
      const float inv = amax > 0 ? 127.0f / amax : 0.0f;
      const __m256 iv = _mm256_set1_ps(inv);
      __m256i i[4];
      for (int t = 0; t < 4; ++t)
        i[t] = _mm256_cvtps_epi32(_mm256_mul_ps(v[t], iv));
      // int32 -> int8 in order: packs work per 128-bit lane, a permute
      // restores the order.
      const __m256i p16a = _mm256_packs_epi32(i[0], i[1]);
      const __m256i p16b = _mm256_packs_epi32(i[2], i[3]);
      const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
      const __m256i ordered = _mm256_permutevar8x32_epi32(
          p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qr + g0), ordered);
      scale[b * lds + g0 / 32] = amax / 127.0f;
    }
  }
}
}  // namespace
#endif

void QuantizeActivations(const float* x, int64_t ldx, int n, int64_t k,
                         bool per_block, int8_t* q, int64_t ldq, float* scale,
                         int64_t lds) {
#if defined(__x86_64__)
  if (per_block && k % 32 == 0 &&
      g_isa.load(std::memory_order_relaxed) != KernelIsa::kScalar)
    return QuantizeBlocksAvx2(x, ldx, n, k, q, ldq, scale, lds);
#endif
  const int64_t group = per_block ? 32 : k;
  for (int b = 0; b < n; ++b) {
    const float* xr = x + b * ldx;
    int8_t* qr = q + b * ldq;
    for (int64_t g0 = 0; g0 < k; g0 += group) {
      float amax = 0;
      for (int64_t t = g0; t < g0 + group; ++t)
        amax = std::max(amax, std::fabs(xr[t]));
      const float d = amax / 127.0f;
      const float inv = amax > 0 ? 127.0f / amax : 0.0f;
      for (int64_t t = g0; t < g0 + group; ++t)
        qr[t] = int8_t(std::nearbyint(xr[t] * inv));
      scale[b * lds + g0 / group] = d;
    }
  }
}

}  // namespace internal

void AttentionScores(const float* q, int64_t ldq, int nq, const float* k,
                     int64_t ldk, int n, int d, float scale, float* scores,
                     int64_t lds) {
  switch (g_isa.load(std::memory_order_relaxed)) {
    case KernelIsa::kAvx512:
    case KernelIsa::kAvx512Vnni:
      return internal::AttentionScoresAvx512(q, ldq, nq, k, ldk, n, d, scale,
                                             scores, lds);
    case KernelIsa::kAvx2:
      return internal::AttentionScoresAvx2(q, ldq, nq, k, ldk, n, d, scale,
                                           scores, lds);
    case KernelIsa::kScalar:
      break;
  }
  for (int j = 0; j < nq; ++j)
    for (int p = 0; p < n; ++p) {
      float dot = 0;
      for (int i = 0; i < d; ++i) dot += q[j * ldq + i] * k[p * ldk + i];
      scores[j * lds + p] = dot * scale;
    }
}

void AttentionValues(const float* w, int64_t ldw, int nq, const float* v,
                     int64_t ldv, int n, int d, float* out, int64_t ldo) {
  switch (g_isa.load(std::memory_order_relaxed)) {
    case KernelIsa::kAvx512:
    case KernelIsa::kAvx512Vnni:
      return internal::AttentionValuesAvx512(w, ldw, nq, v, ldv, n, d, out,
                                             ldo);
    case KernelIsa::kAvx2:
      return internal::AttentionValuesAvx2(w, ldw, nq, v, ldv, n, d, out, ldo);
    case KernelIsa::kScalar:
      break;
  }
  for (int j = 0; j < nq; ++j) {
    float* o = out + j * ldo;
    for (int i = 0; i < d; ++i) o[i] = 0;
    for (int p = 0; p < n; ++p)
      for (int i = 0; i < d; ++i) o[i] += w[j * ldw + p] * v[p * ldv + i];
  }
}

void Exp(const float* x, float* out, int64_t n) {
  switch (g_isa.load(std::memory_order_relaxed)) {
    case KernelIsa::kAvx512:
    case KernelIsa::kAvx512Vnni:
      return internal::ExpAvx512(x, out, n);
    case KernelIsa::kAvx2:
      return internal::ExpAvx2(x, out, n);
    case KernelIsa::kScalar:
      break;
  }
  for (int64_t i = 0; i < n; ++i) out[i] = std::exp(x[i]);
}

void Softmax(float* x, int n) {
  switch (g_isa.load(std::memory_order_relaxed)) {
    case KernelIsa::kAvx512:
    case KernelIsa::kAvx512Vnni:
      return internal::SoftmaxAvx512(x, n);
    case KernelIsa::kAvx2:
      return internal::SoftmaxAvx2(x, n);
    case KernelIsa::kScalar:
      break;
  }
  float maxv = -INFINITY;
  for (int p = 0; p < n; ++p) maxv = std::max(maxv, x[p]);
  float sum = 0;
  for (int p = 0; p < n; ++p) {
    x[p] = std::exp(x[p] - maxv);
    sum += x[p];
  }
  const float inv = 1.0f / sum;
  for (int p = 0; p < n; ++p) x[p] *= inv;
}

void SiluMul(float* g, const float* u, int64_t n) {
  switch (g_isa.load(std::memory_order_relaxed)) {
    case KernelIsa::kAvx512:
    case KernelIsa::kAvx512Vnni:
      return internal::SiluMulAvx512(g, u, n);
    case KernelIsa::kAvx2:
      return internal::SiluMulAvx2(g, u, n);
    case KernelIsa::kScalar:
      break;
  }
  for (int64_t i = 0; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void DequantizeRow(const WeightMatrix& w, int64_t row, float* out) {
  if (w.dtype == DType::kF32) {
    std::memcpy(out, w.data + row * w.row_bytes(), size_t(w.cols) * 4);
    return;
  }
  if (IsKQuant(w.dtype)) {
    DequantizeKRow(w.dtype, w.data + row * w.row_bytes(), w.cols, out);
    return;
  }
  for (int64_t k = 0; k < w.cols; ++k)
    out[k] = internal::DequantElement(w, row, k);
}

namespace {

// Int8 activations for the integer paths, reused across calls by the
// driving thread.
struct QuantizedRows {
  const float* x = nullptr;
  int64_t ldx = 0;
  bool per_block = false;
  std::vector<int8_t> q;
  std::vector<float> scale;
  int64_t ldq = 0, lds = 0;
  // Packed for the integer GEMM (PackIntActivations), when it runs.
  std::vector<uint8_t> qpack;
  std::vector<float> spack;
};

// Float activations packed for the GEMM, likewise.
struct PackedRows {
  const float* x = nullptr;
  int64_t ldx = 0, cols = 0;
  std::vector<float> data;
};

// Q8_0 weights take the integer paths at every batch size: tiles for
// decode, the integer GEMM from kGemmMinRows rows on (activations quantized
// per 32-column block in both cases).
// K-quant (Q4_K, Q5_K, Q6_K) decode batches on the vector ISAs likewise
// (the scalar path dequantizes them).
bool UsesIntegerPath(const WeightMatrix& w, int n, int gemm_rows) {
  if (IsKQuant(w.dtype))
    return w.cols % kQK == 0 && w.cols > 0 && gemm_rows != 0 &&
           n < internal::kGemmMinRows;
  return w.dtype == DType::kQ8_0 && w.cols % 32 == 0 && w.cols > 0;
}

// Whether an integer-path job runs the integer GEMM.
bool UsesIntGemm(const WeightMatrix& w, int n, KernelIsa isa) {
  return w.dtype == DType::kQ8_0 && n >= internal::kGemmMinRows &&
         internal::IntGemmTileRows(isa) > 0;
}

// int8 (per-row scaled) weights at batch 1 multiply int16 activations: one
// byte per weight streamed, integer dot products, and an activation error
// ~256x below int8's (int8 activations exceeded the int8 recipes' bound).
// Small batches and prefill dequantize to float (the dot tiles and the
// GEMM reuse each dequantized weight n times).
bool UsesInt16Path(const WeightMatrix& w, int n) {
  return w.dtype == DType::kI8 && n == 1 && w.cols > 0 && w.scales != nullptr;
}

}  // namespace

void MatMul(ThreadPool* pool, int n, const std::vector<MatMulJob>& jobs) {
  if (n <= 0 || jobs.empty()) return;
  KernelIsa isa = g_isa.load(std::memory_order_relaxed);
  auto kernel = isa == KernelIsa::kAvx512Vnni ? internal::MatMulRowsAvx512Vnni
                : isa == KernelIsa::kAvx512   ? internal::MatMulRowsAvx512
                : isa == KernelIsa::kAvx2     ? internal::MatMulRowsAvx2
                                              : internal::MatMulRowsScalar;
  // Activations of the integer-path jobs, quantized once per distinct input
  // (q/k/v and gate/up share theirs).
  thread_local std::vector<QuantizedRows> quantized;
  size_t used = 0;
  std::vector<const QuantizedRows*> job_q(jobs.size(), nullptr);
  for (size_t j = 0; j < jobs.size(); ++j) {
    const WeightMatrix& w = *jobs[j].w;
    if (!UsesIntegerPath(w, n, internal::GemmTileRows(isa))) continue;
    const bool per_block = true;
    const bool int_gemm = UsesIntGemm(w, n, isa);
    for (size_t u = 0; u < used; ++u) {
      const QuantizedRows& qr = quantized[u];
      if (qr.x == jobs[j].x && qr.ldx == jobs[j].ldx &&
          qr.per_block == per_block && qr.ldq == w.cols &&
          int_gemm == !qr.qpack.empty())
        job_q[j] = &qr;
    }
    if (job_q[j] != nullptr) continue;
    if (quantized.size() <= used) quantized.resize(used + 1);
    QuantizedRows& qr = quantized[used++];
    qr.x = jobs[j].x;
    qr.ldx = jobs[j].ldx;
    qr.per_block = per_block;
    qr.ldq = w.cols;
    qr.lds = per_block ? w.cols / 32 : 1;
    qr.q.resize(size_t(n) * size_t(qr.ldq));
    qr.scale.resize(size_t(n) * size_t(qr.lds));
    internal::QuantizeActivations(qr.x, qr.ldx, n, w.cols, per_block,
                                  qr.q.data(), qr.ldq, qr.scale.data(), qr.lds);
    qr.qpack.clear();
    qr.spack.clear();
    if (int_gemm) {
      // vpdpbusd multiplies unsigned by signed bytes: the VNNI kernel takes
      // the activations as q + 128 and subtracts 128 * sum(w) per block.
      const int imr = internal::IntGemmTileRows(isa);
      const int64_t groups = (n + imr - 1) / imr;
      qr.qpack.resize(size_t(groups * imr * w.cols));
      qr.spack.resize(size_t(groups * imr * (w.cols / 32)));
      internal::PackIntActivations(
          qr.q.data(), qr.ldq, qr.scale.data(), qr.lds, n, w.cols, imr,
          isa == KernelIsa::kAvx512Vnni, qr.qpack.data(), qr.spack.data());
    }
    job_q[j] = &qr;
  }
  // int16 activations of the batch-1 int8-weight jobs, once per distinct
  // input.
  struct Quantized16 {
    const float* x = nullptr;
    int64_t cols = 0;
    std::vector<int16_t> q;
    float scale = 0;
  };
  thread_local std::vector<Quantized16> quantized16;
  size_t used16 = 0;
  std::vector<const Quantized16*> job_q16(jobs.size(), nullptr);
  for (size_t j = 0; j < jobs.size(); ++j) {
    const WeightMatrix& w = *jobs[j].w;
    if (!UsesInt16Path(w, n)) continue;
    for (size_t u = 0; u < used16; ++u) {
      if (quantized16[u].x == jobs[j].x && quantized16[u].cols == w.cols)
        job_q16[j] = &quantized16[u];
    }
    if (job_q16[j] != nullptr) continue;
    if (quantized16.size() <= used16) quantized16.resize(used16 + 1);
    Quantized16& q = quantized16[used16++];
    q.x = jobs[j].x;
    q.cols = w.cols;
    q.q.resize(size_t(w.cols));
    q.scale = internal::QuantizeActivations16(q.x, w.cols, q.q.data());
    job_q16[j] = &q;
  }
  // Activations of the float-path jobs packed for the GEMM, once per
  // distinct input.
  const int mr = internal::GemmTileRows(isa);
  thread_local std::vector<PackedRows> packed;
  size_t packed_used = 0;
  std::vector<const float*> job_pack(jobs.size(), nullptr);
  if (n >= internal::kGemmMinRows && mr > 0) {
    for (size_t j = 0; j < jobs.size(); ++j) {
      const WeightMatrix& w = *jobs[j].w;
      if (job_q[j] != nullptr) continue;
      for (size_t u = 0; u < packed_used; ++u) {
        const PackedRows& p = packed[u];
        if (p.x == jobs[j].x && p.ldx == jobs[j].ldx && p.cols == w.cols)
          job_pack[j] = p.data.data();
      }
      if (job_pack[j] != nullptr) continue;
      if (packed.size() <= packed_used) packed.resize(packed_used + 1);
      PackedRows& p = packed[packed_used++];
      p.x = jobs[j].x;
      p.ldx = jobs[j].ldx;
      p.cols = w.cols;
      p.data.resize(size_t((n + mr - 1) / mr) * size_t(mr) * size_t(w.cols));
      internal::PackActivations(p.x, p.ldx, n, w.cols, mr, p.data.data());
      job_pack[j] = p.data.data();
    }
  }
  // Rows of all jobs are cut into chunks of about kChunkBytes of weights
  // (whole 16-row blocks), handed out dynamically: a thread streams a few
  // hundred KiB sequentially per chunk, and a descheduled thread's share is
  // taken by the others. A GEMM (n >= 32) works on 64-row chunks: two
  // panels of 32 rows, and enough chunks for every thread.
  constexpr int64_t kChunkBytes = 64 * 1024;
  struct Chunk {
    int job;
    int64_t r0, r1;
  };
  std::vector<Chunk> chunks;
  int64_t total_bytes = 0;
  for (size_t j = 0; j < jobs.size(); ++j) {
    const WeightMatrix& w = *jobs[j].w;
    const int64_t rb = std::max<int64_t>(w.row_bytes(), 1);
    const bool gemm = job_pack[j] != nullptr ||
                      (job_q[j] != nullptr && !job_q[j]->qpack.empty());
    int64_t rows_per_chunk =
        gemm ? 64 : std::max<int64_t>(16, (kChunkBytes / rb) / 16 * 16);
    for (int64_t r = 0; r < w.rows; r += rows_per_chunk) {
      chunks.push_back(Chunk{int(j), r, std::min(w.rows, r + rows_per_chunk)});
    }
    total_bytes += w.rows * w.row_bytes();
  }
  auto run_chunk = [&](int64_t c) {
    const Chunk& ch = chunks[size_t(c)];
    const MatMulJob& j = jobs[size_t(ch.job)];
    internal::RowRangeArgs args{j.w, j.x, j.ldx, j.y, j.ldy, n, ch.r0, ch.r1};
    if (const QuantizedRows* qr = job_q[size_t(ch.job)]) {
      args.xq = qr->q.data();
      args.ldxq = qr->ldq;
      args.xscale = qr->scale.data();
      args.ldxs = qr->lds;
      if (!qr->qpack.empty()) {
        args.xqpack = qr->qpack.data();
        args.xspack = qr->spack.data();
      }
    }
    args.xpack = job_pack[size_t(ch.job)];
    if (const Quantized16* q = job_q16[size_t(ch.job)]) {
      args.xq16 = q->q.data();
      args.xscale16 = q->scale;
    }
    kernel(args);
    if (j.bias != nullptr) {
      for (int b = 0; b < n; ++b)
        for (int64_t r = ch.r0; r < ch.r1; ++r) j.y[b * j.ldy + r] += j.bias[r];
    }
  };
  // Small products finish faster on one thread than a fork-join takes.
  constexpr int64_t kMinParallelWork = 256 * 1024;
  if (pool == nullptr || pool->size() == 1 ||
      total_bytes * n < kMinParallelWork) {
    for (size_t c = 0; c < chunks.size(); ++c) run_chunk(int64_t(c));
  } else {
    pool->ParallelFor(int64_t(chunks.size()), run_chunk);
  }
}

}  // namespace hangar::engine
