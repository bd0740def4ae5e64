// AVX-512 matmul kernels (see kernels.h): the algorithms of kernels_impl.h
// over 512-bit vectors. Every function in this file is compiled for AVX-512
// F/BW/VL + FMA + F16C and only called when the CPU reports those features.
// kernels_avx512_vnni.cc builds this same file a second time with
// HANGAR_KERNELS_VNNI set: AVX-512 VNNI on top, and vpdpbusd for the integer
// dot products.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "engine/kernels.h"

// (GCC does not expand macros in #pragma GCC target, hence the spelled-out
// variants.)
#if defined(__clang__) && defined(HANGAR_KERNELS_VNNI)
#pragma clang attribute push(                                           \
    __attribute__((                                                     \
        target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"))), \
    apply_to = function)
#elif defined(__clang__)
#pragma clang attribute push(                                           \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))), \
    apply_to = function)
#elif defined(__GNUC__) && defined(HANGAR_KERNELS_VNNI)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")
#endif

#include "engine/kernels_impl.h"

namespace hangar::engine::internal {
namespace {

struct Avx512 {
  using F = __m512;
  static constexpr int kW = 16;
  // Activation rows one small-batch pass covers (DotTilesN streams each
  // weight row once for all of them; its register tiles are 4 x kDotTileNb
  // in kernels_impl.h).
  static constexpr int kDotNb = kGemmMinRows;
  static constexpr int kMr = 12;    // 12 x 2 accumulators of 32 registers
  static constexpr int kIntNb = 4;  // ymm16-31 give the room

  static F Zero() { return _mm512_setzero_ps(); }
  static F Set1(float v) { return _mm512_set1_ps(v); }
  static F Load(const float* p) { return _mm512_loadu_ps(p); }
  static void Store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static F Add(F a, F b) { return _mm512_add_ps(a, b); }
  static F Mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F Fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F Sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F Div(F a, F b) { return _mm512_div_ps(a, b); }
  static F Max(F a, F b) { return _mm512_max_ps(a, b); }
  static F Min(F a, F b) { return _mm512_min_ps(a, b); }
  static F Round(F v) {
    return _mm512_roundscale_ps(v,
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static F Pow2(F n) {  // 2^n for integral n in [-126, 127]
    return _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
  }
  static F ZeroBelow(F v, F x, float lim) {  // x >= lim ? v : 0
    return _mm512_maskz_mov_ps(
        _mm512_cmp_ps_mask(x, _mm512_set1_ps(lim), _CMP_GE_OQ), v);
  }
  static float ReduceMax(F v) { return _mm512_reduce_max_ps(v); }
  static float Reduce(F v) { return _mm512_reduce_add_ps(v); }
  static __m256 Half(F v) {
    return _mm256_add_ps(
        _mm512_castps512_ps256(v),
        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  }
  static __m128 Reduce4(F a, F b, F c, F d) {
    const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(Half(a), Half(b)),
                                    _mm256_hadd_ps(Half(c), Half(d)));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
  }
  static void Transpose(F r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) {
      r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
      r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
      r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
      r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int h = 0; h < 2; ++h) {
      for (int i = 0; i < 4; ++i) {
        t[8 * h + i] =
            _mm512_shuffle_f32x4(r[8 * h + i], r[8 * h + i + 4], 0x88);
        t[8 * h + i + 4] =
            _mm512_shuffle_f32x4(r[8 * h + i], r[8 * h + i + 4], 0xdd);
      }
    }
    for (int i = 0; i < 8; ++i) {
      r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
      r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
  }
  static __m256i DotU8S8(__m256i acc, __m256i u, __m256i s) {
#if defined(HANGAR_KERNELS_VNNI)
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s),
                                                   _mm256_set1_epi16(1)));
#endif
  }

  template <DType T>
  static F Dequant(const uint8_t* row, int64_t k) {
    if constexpr (T == DType::kF32) {
      return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + k);
    } else if constexpr (T == DType::kF16) {
      return _mm512_cvtph_ps(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k)));
    } else if constexpr (T == DType::kBF16) {
      const __m512i v = _mm512_cvtepu16_epi32(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k)));
      return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    } else if constexpr (T == DType::kI8) {
      return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k))));
    } else if constexpr (T == DType::kI16) {
      return _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k))));
    } else if constexpr (T == DType::kF8E4M3) {
      // fp8 bits moved into a float16 give value * 2^-8 (kScaleFactor).
      const __m256i b = _mm256_cvtepu8_epi16(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k)));
      const __m256i mag =
          _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x7f)), 7);
      const __m256i sign =
          _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x80)), 8);
      return _mm512_cvtph_ps(_mm256_or_si256(mag, sign));
    } else if constexpr (T == DType::kQ8_0) {
      const uint8_t* b = row + (k >> 5) * 34;
      const __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2 + (k & 31)))));
      return _mm512_mul_ps(q, _mm512_set1_ps(HalfBitsToFloat(b)));
    } else {
      static_assert(T == DType::kQ4_0);
      const uint8_t* b = row + (k >> 5) * 18;
      __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
      if (k & 16) qs = _mm_srli_epi16(qs, 4);
      qs = _mm_and_si128(qs, _mm_set1_epi8(0x0f));
      const __m512i q =
          _mm512_sub_epi32(_mm512_cvtepu8_epi32(qs), _mm512_set1_epi32(8));
      return _mm512_mul_ps(_mm512_cvtepi32_ps(q),
                           _mm512_set1_ps(HalfBitsToFloat(b)));
    }
  }
};

}  // namespace

#if defined(HANGAR_KERNELS_VNNI)
void MatMulRowsAvx512Vnni(const RowRangeArgs& a) { MatMulRowsImpl<Avx512>(a); }
#else
void MatMulRowsAvx512(const RowRangeArgs& a) { MatMulRowsImpl<Avx512>(a); }
void AttentionScoresAvx512(const float* q, int64_t ldq, int nq, const float* k,
                           int64_t ldk, int n, int d, float scale,
                           float* scores, int64_t lds) {
  AttentionScoresImpl<Avx512>(q, ldq, nq, k, ldk, n, d, scale, scores, lds);
}
void AttentionValuesAvx512(const float* w, int64_t ldw, int nq, const float* v,
                           int64_t ldv, int n, int d, float* out, int64_t ldo) {
  AttentionValuesImpl<Avx512>(w, ldw, nq, v, ldv, n, d, out, ldo);
}
void ExpAvx512(const float* x, float* out, int64_t n) {
  ExpImpl<Avx512>(x, out, n);
}
void SoftmaxAvx512(float* x, int n) { SoftmaxImpl<Avx512>(x, n); }
void SiluMulAvx512(float* g, const float* u, int64_t n) {
  SiluMulImpl<Avx512>(g, u, n);
}
#endif

}  // namespace hangar::engine::internal

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif
