// AVX2 matmul kernels (see kernels.h): the algorithms of kernels_impl.h over
// 256-bit vectors. Every function in this file is compiled for AVX2 + FMA +
// F16C and only called when the CPU reports those features.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "engine/kernels.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), \
                             apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

#include "engine/kernels_impl.h"

namespace hangar::engine::internal {
namespace {

inline __m128i Load8Bytes(const uint8_t* p) {
  return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
}

struct Avx2 {
  using F = __m256;
  static constexpr int kW = 8;
  // Activation rows one small-batch pass covers (DotTilesN streams each
  // weight row once for all of them; its register tiles are 4 x kDotTileNb
  // in kernels_impl.h).
  static constexpr int kDotNb = kGemmMinRows;
  static constexpr int kMr = 6;  // 6 x 2 accumulators (Haswell's 6x16)
  static constexpr int kIntNb = 2;

  static F Zero() { return _mm256_setzero_ps(); }
  static F Set1(float v) { return _mm256_set1_ps(v); }
  static F Load(const float* p) { return _mm256_loadu_ps(p); }
  static void Store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static F Add(F a, F b) { return _mm256_add_ps(a, b); }
  static F Mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F Fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F Sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F Div(F a, F b) { return _mm256_div_ps(a, b); }
  static F Max(F a, F b) { return _mm256_max_ps(a, b); }
  static F Min(F a, F b) { return _mm256_min_ps(a, b); }
  static F Round(F v) {
    return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static F Pow2(F n) {  // 2^n for integral n in [-126, 127]
    return _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
  }
  static F ZeroBelow(F v, F x, float lim) {  // x >= lim ? v : 0
    return _mm256_and_ps(v, _mm256_cmp_ps(x, _mm256_set1_ps(lim), _CMP_GE_OQ));
  }
  static float ReduceMax(F v) {
    __m128 s =
        _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float Reduce(F v) {
    __m128 s =
        _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static __m128 Reduce4(F a, F b, F c, F d) {
    const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
  }
  static void Transpose(F r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; ++i) {
      u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
      u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
      u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
      u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int i = 0; i < 4; ++i) {
      r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
      r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
  }
  static __m256i DotU8S8(__m256i acc, __m256i u, __m256i s) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s),
                                                   _mm256_set1_epi16(1)));
  }

  template <DType T>
  static F Dequant(const uint8_t* row, int64_t k) {
    if constexpr (T == DType::kF32) {
      return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + k);
    } else if constexpr (T == DType::kF16) {
      return _mm256_cvtph_ps(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
    } else if constexpr (T == DType::kBF16) {
      const __m256i v = _mm256_cvtepu16_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
      return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    } else if constexpr (T == DType::kI8) {
      return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(Load8Bytes(row + k)));
    } else if constexpr (T == DType::kI16) {
      return _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k))));
    } else if constexpr (T == DType::kF8E4M3) {
      // fp8 bits moved into a float16 give value * 2^-8 (kScaleFactor).
      const __m128i b = _mm_cvtepu8_epi16(Load8Bytes(row + k));
      const __m128i mag =
          _mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x7f)), 7);
      const __m128i sign =
          _mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x80)), 8);
      return _mm256_cvtph_ps(_mm_or_si128(mag, sign));
    } else if constexpr (T == DType::kQ8_0) {
      const uint8_t* b = row + (k >> 5) * 34;
      const __m256 q = _mm256_cvtepi32_ps(
          _mm256_cvtepi8_epi32(Load8Bytes(b + 2 + (k & 31))));
      return _mm256_mul_ps(q, _mm256_set1_ps(HalfBitsToFloat(b)));
    } else {
      static_assert(T == DType::kQ4_0);
      const uint8_t* b = row + (k >> 5) * 18;
      __m128i qs = Load8Bytes(b + 2 + (k & 15));
      if (k & 16) qs = _mm_srli_epi16(qs, 4);
      qs = _mm_and_si128(qs, _mm_set1_epi8(0x0f));
      const __m256i q =
          _mm256_sub_epi32(_mm256_cvtepu8_epi32(qs), _mm256_set1_epi32(8));
      return _mm256_mul_ps(_mm256_cvtepi32_ps(q),
                           _mm256_set1_ps(HalfBitsToFloat(b)));
    }
  }
};

}  // namespace

void MatMulRowsAvx2(const RowRangeArgs& a) { MatMulRowsImpl<Avx2>(a); }
void AttentionScoresAvx2(const float* q, int64_t ldq, int nq, const float* k,
                         int64_t ldk, int n, int d, float scale, float* scores,
                         int64_t lds) {
  AttentionScoresImpl<Avx2>(q, ldq, nq, k, ldk, n, d, scale, scores, lds);
}
void AttentionValuesAvx2(const float* w, int64_t ldw, int nq, const float* v,
                         int64_t ldv, int n, int d, float* out, int64_t ldo) {
  AttentionValuesImpl<Avx2>(w, ldw, nq, v, ldv, n, d, out, ldo);
}
void ExpAvx2(const float* x, float* out, int64_t n) {
  ExpImpl<Avx2>(x, out, n);
}
void SoftmaxAvx2(float* x, int n) { SoftmaxImpl<Avx2>(x, n); }
void SiluMulAvx2(float* g, const float* u, int64_t n) {
  SiluMulImpl<Avx2>(g, u, n);
}

}  // namespace hangar::engine::internal

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif
