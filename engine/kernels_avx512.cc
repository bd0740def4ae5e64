// AVX-512 matmul kernels (see kernels.h). Every function in this file is
// compiled for AVX-512 F/BW/VL + FMA + F16C and only called when the CPU
// reports those features.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "engine/kernels.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))), \
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
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k)));
  }
};
struct LoadBF16 {
  static constexpr float kScaleFactor = 1.0f;
  static inline __m512 Load(const uint8_t* row, int64_t k) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
  }
};
struct LoadI8 {
  static constexpr float kScaleFactor = 1.0f;
  static inline __m512 Load(const uint8_t* row, int64_t k) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k))));
  }
};
struct LoadI16 {
  static constexpr float kScaleFactor = 1.0f;
  static inline __m512 Load(const uint8_t* row, int64_t k) {
    return _mm512_cvtepi32_ps(
        _mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k))));
  }
};
// fp8 E4M3 -> the float16 with the same sign, exponent and mantissa bits
// shifted into place, which is the value * 2^-8 (also for subnormals); the
// 2^8 is folded into the row scale.
struct LoadF8 {
  static constexpr float kScaleFactor = 256.0f;
  static inline __m512 Load(const uint8_t* row, int64_t k) {
    __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k)));
    __m256i mag = _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x7f)), 7);
    __m256i sign = _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x80)), 8);
    return _mm512_cvtph_ps(_mm256_or_si256(mag, sign));
  }
};
struct LoadQ8_0 {
  static constexpr float kScaleFactor = 1.0f;
  static inline __m512 Load(const uint8_t* row, int64_t k) {
    const uint8_t* b = row + (k >> 5) * 34;
    __m512 q = _mm512_cvtepi32_ps(
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2 + (k & 31)))));
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
    __m512i q = _mm512_sub_epi32(_mm512_cvtepu8_epi32(qs), _mm512_set1_epi32(8));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(q), _mm512_set1_ps(HalfToFloat(b)));
  }
};

template <class L, int R, int NB>
inline void Tile(const RowRangeArgs& a, int64_t r, int b0, int64_t kend) {
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
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kend; k += 16) {
    __m512 wv[R];
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) wv[i] = L::Load(rows[i], k);
#pragma GCC unroll 16
    for (int j = 0; j < NB; ++j) {
      __m512 xv = _mm512_loadu_ps(xs[j] + k);
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i) {
    float scale = w.scales ? w.scales[r + i] * L::kScaleFactor : 1.0f;
    for (int j = 0; j < NB; ++j) {
      float s = _mm512_reduce_add_ps(acc[i][j]) * scale;
      for (int64_t k = kend; k < w.cols; ++k) s += DequantElement(w, r + i, k) * xs[j][k];
      a.y[(b0 + j) * a.ldy + r + i] = s;
    }
  }
}

template <class L, int R>
inline void RowBlock(const RowRangeArgs& a, int64_t r, int64_t kend) {
  int b = 0;
  for (; b + 4 <= a.n; b += 4) Tile<L, R, 4>(a, r, b, kend);
  switch (a.n - b) {
    case 3:
      Tile<L, R, 3>(a, r, b, kend);
      break;
    case 2:
      Tile<L, R, 2>(a, r, b, kend);
      break;
    case 1:
      Tile<L, R, 1>(a, r, b, kend);
      break;
  }
}

template <class L>
void Run(const RowRangeArgs& a) {
  const int64_t kend = a.w->cols / 16 * 16;
  int64_t r = a.r0;
  for (; r + 4 <= a.r1; r += 4) RowBlock<L, 4>(a, r, kend);
  for (; r < a.r1; ++r) RowBlock<L, 1>(a, r, kend);
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
