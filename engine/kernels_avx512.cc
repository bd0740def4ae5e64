// AVX-512 matmul kernels (see kernels.h). Every function in this file is
// compiled for AVX-512 F/BW/VL + FMA + F16C and only called when the CPU
// reports those features.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "engine/kernels.h"

#if defined(__clang__)
#pragma clang attribute push(                                           \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))), \
    apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")
#endif

namespace hangar::engine::internal {
namespace {

inline float HalfToFloat(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

struct LoadF32 {
  static constexpr float kScaleFactor = 1.0f;
  static inline __m512 Load(const uint8_t* row, int64_t k) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + k);
  }
};
struct LoadF16 {
  static constexpr float kScaleFactor = 1.0f;
  static inline __m512 Load(const uint8_t* row, int64_t k) {
    return _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k)));
  }
};
struct LoadBF16 {
  static constexpr float kScaleFactor = 1.0f;
  static inline __m512 Load(const uint8_t* row, int64_t k) {
    __m512i v = _mm512_cvtepu16_epi32(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
  }
};
struct LoadI8 {
  static constexpr float kScaleFactor = 1.0f;
  static inline __m512 Load(const uint8_t* row, int64_t k) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k))));
  }
};
struct LoadI16 {
  static constexpr float kScaleFactor = 1.0f;
  static inline __m512 Load(const uint8_t* row, int64_t k) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k))));
  }
};
// fp8 E4M3 -> the float16 with the same sign, exponent and mantissa bits
// shifted into place, which is the value * 2^-8 (also for subnormals); the
// 2^8 is folded into the row scale.
struct LoadF8 {
  static constexpr float kScaleFactor = 256.0f;
  static inline __m512 Load(const uint8_t* row, int64_t k) {
    __m256i b = _mm256_cvtepu8_epi16(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k)));
    __m256i mag =
        _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x7f)), 7);
    __m256i sign =
        _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x80)), 8);
    return _mm512_cvtph_ps(_mm256_or_si256(mag, sign));
  }
};
struct LoadQ8_0 {
  static constexpr float kScaleFactor = 1.0f;
  static inline __m512 Load(const uint8_t* row, int64_t k) {
    const uint8_t* b = row + (k >> 5) * 34;
    __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2 + (k & 31)))));
    return _mm512_mul_ps(q, _mm512_set1_ps(HalfToFloat(b)));
  }
};
struct LoadQ4_0 {
  static constexpr float kScaleFactor = 1.0f;
  static inline __m512 Load(const uint8_t* row, int64_t k) {
    const uint8_t* b = row + (k >> 5) * 18;
    __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    if (k & 16) qs = _mm_srli_epi16(qs, 4);
    qs = _mm_and_si128(qs, _mm_set1_epi8(0x0f));
    __m512i q =
        _mm512_sub_epi32(_mm512_cvtepu8_epi32(qs), _mm512_set1_epi32(8));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(q), _mm512_set1_ps(HalfToFloat(b)));
  }
};

// A 4-row x NB-activation register tile over columns [k0, k1): every
// weight vector is dequantized once and used NB times, every activation
// vector used 4 times. Partial sums stay vectors in `part` ([NB][4] vectors,
// zeroed when `first`) across column chunks; the caller reduces them once.
// Prefetches the next row block (4 rows further, same offset): interleaved rows
// of a few KiB are too short for the hardware prefetcher.
template <class L, int NB>
inline void Tile(const RowRangeArgs& a, int64_t r, int b0, int64_t k0,
                 int64_t k1, bool first, float* part) {
  constexpr int R = 4;
  const WeightMatrix& w = *a.w;
  const int64_t rb = w.row_bytes();
  const uint8_t* rows[R];
  for (int i = 0; i < R; ++i) rows[i] = w.data + (r + i) * rb;
  const float* xs[NB];
  for (int j = 0; j < NB; ++j) xs[j] = a.x + (b0 + j) * a.ldx;
  __m512 acc[R][NB];
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 16
    for (int j = 0; j < NB; ++j)
      acc[i][j] =
          first ? _mm512_setzero_ps() : _mm512_load_ps(part + (j * R + i) * 16);
  const int64_t ahead = 2 * R * rb;
  int64_t next_line = k0 * rb / w.cols;
  for (int64_t k = k0; k < k1; k += 16) {
    const int64_t kb = k * rb / w.cols;
    if (kb >= next_line) {
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i)
        __builtin_prefetch(rows[i] + ahead + kb, 0, 3);
      next_line = kb + 64;
    }
    __m512 wv[R];
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) wv[i] = L::Load(rows[i], k);
#pragma GCC unroll 16
    for (int j = 0; j < NB; ++j) {
      __m512 xv = _mm512_loadu_ps(xs[j] + k);
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i)
        acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 16
    for (int j = 0; j < NB; ++j)
      _mm512_store_ps(part + (j * R + i) * 16, acc[i][j]);
}

// One weight row against NB activation rows over all columns, with U
// independent accumulators per activation row to hide FMA latency. Batch 1
// uses it for every row: rows visited in order make one sequential stream
// per thread, which is what reaches full memory bandwidth.
template <class L, int NB, int U>
inline void Row(const RowRangeArgs& a, int64_t r, int b0, int64_t kend) {
  const WeightMatrix& w = *a.w;
  const uint8_t* row = w.data + r * w.row_bytes();
  const float* xs[NB];
  for (int j = 0; j < NB; ++j) xs[j] = a.x + (b0 + j) * a.ldx;
  __m512 acc[NB][U];
#pragma GCC unroll 16
  for (int j = 0; j < NB; ++j)
#pragma GCC unroll 16
    for (int u = 0; u < U; ++u) acc[j][u] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 * U <= kend; k += 16 * U) {
    __m512 wv[U];
#pragma GCC unroll 16
    for (int u = 0; u < U; ++u) wv[u] = L::Load(row, k + 16 * u);
#pragma GCC unroll 16
    for (int j = 0; j < NB; ++j)
#pragma GCC unroll 16
      for (int u = 0; u < U; ++u)
        acc[j][u] = _mm512_fmadd_ps(wv[u], _mm512_loadu_ps(xs[j] + k + 16 * u),
                                    acc[j][u]);
  }
  for (; k < kend; k += 16) {
    __m512 wv = L::Load(row, k);
#pragma GCC unroll 16
    for (int j = 0; j < NB; ++j)
      acc[j][0] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(xs[j] + k), acc[j][0]);
  }
  const float scale = w.scales ? w.scales[r] * L::kScaleFactor : 1.0f;
  for (int j = 0; j < NB; ++j) {
    __m512 sum = acc[j][0];
#pragma GCC unroll 16
    for (int u = 1; u < U; ++u) sum = _mm512_add_ps(sum, acc[j][u]);
    float s = _mm512_reduce_add_ps(sum) * scale;
    for (int64_t t = kend; t < w.cols; ++t)
      s += DequantElement(w, r, t) * xs[j][t];
    a.y[(b0 + j) * a.ldy + r] = s;
  }
}

// Batch 1 is bound by memory bandwidth: rows stream in order. Larger batches
// are bound by arithmetic: 4-row register tiles, with the columns cut in
// chunks of kChunk so a chunk of the weight rows and of every activation row
// stays in L1 across the batch.
template <class L>
void Run(const RowRangeArgs& a) {
  const WeightMatrix& w = *a.w;
  const int64_t kend = w.cols / 16 * 16;
  if (a.n == 1) {
    for (int64_t r = a.r0; r < a.r1; ++r) Row<L, 1, 4>(a, r, 0, kend);
    return;
  }
  constexpr int64_t kChunk = 256;
  constexpr int kGroup = 16;  // activation rows per pass (partials: 4 KiB)
  alignas(64) float part[kGroup * 4 * 16];
  int64_t r = a.r0;
  for (; r + 4 <= a.r1; r += 4) {
    for (int g = 0; g < a.n; g += kGroup) {
      const int gn = a.n - g < kGroup ? a.n - g : kGroup;
      for (int64_t k0 = 0; k0 < kend; k0 += kChunk) {
        const int64_t k1 = k0 + kChunk < kend ? k0 + kChunk : kend;
        const bool first = k0 == 0;
        int b = 0;
        for (; b + 4 <= gn; b += 4)
          Tile<L, 4>(a, r, g + b, k0, k1, first, part + b * 4 * 16);
        if (gn - b == 3)
          Tile<L, 3>(a, r, g + b, k0, k1, first, part + b * 4 * 16);
        if (gn - b == 2)
          Tile<L, 2>(a, r, g + b, k0, k1, first, part + b * 4 * 16);
        if (gn - b == 1)
          Tile<L, 1>(a, r, g + b, k0, k1, first, part + b * 4 * 16);
      }
      // Four row sums at once per activation row (a transpose-and-add tree).
      __m128 scale4 = _mm_set1_ps(1.0f);
      if (w.scales)
        scale4 = _mm_mul_ps(_mm_loadu_ps(w.scales + r),
                            _mm_set1_ps(L::kScaleFactor));
      for (int j = 0; j < gn; ++j) {
        __m256 h[4];
        for (int i = 0; i < 4; ++i) {
          const __m512 v = _mm512_load_ps(part + (j * 4 + i) * 16);
          h[i] = _mm256_add_ps(
              _mm512_castps512_ps256(v),
              _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        }
        __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]),
                                  _mm256_hadd_ps(h[2], h[3]));
        __m128 sums =
            _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
        sums = kend > 0 ? _mm_mul_ps(sums, scale4) : _mm_setzero_ps();
        float* y = a.y + (g + j) * a.ldy + r;
        _mm_storeu_ps(y, sums);
        for (int64_t t2 = kend; t2 < w.cols; ++t2)
          for (int i = 0; i < 4; ++i)
            y[i] += DequantElement(w, r + i, t2) * a.x[(g + j) * a.ldx + t2];
      }
    }
  }
  for (; r < a.r1; ++r) {
    int b = 0;
    for (; b + 4 <= a.n; b += 4) Row<L, 4, 1>(a, r, b, kend);
    if (a.n - b == 3) Row<L, 3, 1>(a, r, b, kend);
    if (a.n - b == 2) Row<L, 2, 1>(a, r, b, kend);
    if (a.n - b == 1) Row<L, 1, 1>(a, r, b, kend);
  }
}

}  // namespace

void MatMulRowsAvx512(const RowRangeArgs& a) {
  switch (a.w->dtype) {
    case DType::kF32:
      return Run<LoadF32>(a);
    case DType::kF16:
      return Run<LoadF16>(a);
    case DType::kBF16:
      return Run<LoadBF16>(a);
    case DType::kI8:
      return Run<LoadI8>(a);
    case DType::kI16:
      return Run<LoadI16>(a);
    case DType::kF8E4M3:
      return Run<LoadF8>(a);
    case DType::kQ8_0:
      return Run<LoadQ8_0>(a);
    case DType::kQ4_0:
      return Run<LoadQ4_0>(a);
  }
}

}  // namespace hangar::engine::internal

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif
