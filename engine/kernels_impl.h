// The matmul algorithms, written once over a vector-traits type `V` and
// compiled once per target: kernels_avx2.cc instantiates them with 256-bit
// AVX2 traits, kernels_avx512.cc (and kernels_avx512_vnni.cc, the same file
// built with VNNI) with 512-bit traits. Only those files include this header.
//
// A traits type provides
//   F, kW                    the float vector and its lane count;
//   Zero, Set1, Load, Store, Add, Mul, Fma, Reduce, Reduce4
//                            (Reduce4(a, b, c, d) = the four lane sums),
//                            Transpose (of kW vectors, in place);
//   Dequant<T>(row, k)       kW weights of dtype T from column k (k a multiple
//                            of kW, and of 32 for the block formats), without
//                            the row scale;
//   kDotNb                   activation rows per small-batch register tile;
//   kMr                      activation rows per GEMM micro-tile (2 vectors
//                            of output rows wide);
//   kIntNb, DotU8S8          the integer tile width and the 256-bit
//                            u8 x s8 -> s32 dot-accumulate (vpdpbusd with
//                            VNNI, vpmaddubsw + vpmaddwd without).
//
// The matmul algorithms, chosen by batch size and weight type:
//   * n = 1, float: each weight row streams once, in order, with 4
//     accumulators (memory-bound: the prefetcher sees one stream).
//   * 2 <= n < kGemmMinRows, float: "dot tiles" of 4 weight rows x kDotNb
//     activation rows; each weight vector is dequantized once and used kDotNb
//     times, reduced horizontally once per tile (no packing, which would cost
//     more than the arithmetic at small n).
//   * n >= kGemmMinRows, every dtype: a packed GEMM. A panel of 2*kW weight
//     rows x kKc columns is dequantized and transposed into L1 ([k][row]);
//     a kMr x 2*kW micro-tile then broadcasts one activation per row (from
//     the activations MatMul packed as [k][kMr]) and does 2*kMr FMAs per
//     column, writing output rows contiguously. Column blocks of kKc keep
//     the activations' slice in L2 across panels.
//   * Q8_0 weights, n < kGemmMinRows, activations quantized to int8 per
//     32-block (RowRangeArgs::xq): integer tiles of 4 weight rows x kIntNb
//     activation rows over 32-byte blocks with |w| x sign(x, w) (so
//     vpmaddubsw never saturates); each block's int32 sum is converted and
//     scaled by d_w * d_x.
//   * K-quants (Q4_K, Q5_K, Q6_K): rows dequantized per chunk by vectorizable
//     block loops into a float buffer and run through the float32
//     algorithms; Q4_K and Q6_K decode batches (n < kGemmMinRows) instead
//     take the int8 activations with DotU8S8 per 32-weight sub-block
//     (RunIntQ4K / RunIntQ6K).
// And attention over a block of queries (AttentionScoresImpl /
// AttentionValuesImpl): 4 keys x kDotNb queries score tiles, 6 queries x
// 2 vectors value tiles, so each cached key/value row is read once per block.
//
// Everything here sits in an anonymous namespace on purpose: each including
// file gets its own copy compiled for its own target.
#ifndef HANGAR_ENGINE_KERNELS_IMPL_H_
#define HANGAR_ENGINE_KERNELS_IMPL_H_

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "engine/kernels.h"
#include "engine/kquants.h"

namespace hangar::engine::internal {
namespace {

template <DType T>
constexpr float kScaleFactor = T == DType::kF8E4M3 ? 256.0f : 1.0f;

inline float HalfBitsToFloat(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// Byte offset of column k in a row of dtype T (k a multiple of 32 for the
// block formats); no division in the hot loops.
template <DType T>
constexpr int64_t ByteOffset(int64_t k) {
  if constexpr (T == DType::kF32) return 4 * k;
  if constexpr (T == DType::kF16 || T == DType::kBF16 || T == DType::kI16)
    return 2 * k;
  if constexpr (T == DType::kI8 || T == DType::kF8E4M3) return k;
  if constexpr (T == DType::kQ8_0) return (k >> 5) * 34;
  return (k >> 5) * 18;
}

// Row scale (with the dtype's factor) or 1.
template <DType T>
inline float RowScale(const WeightMatrix& w, int64_t r) {
  return w.scales ? w.scales[r] * kScaleFactor<T> : 1.0f;
}

// ---------------------------------------------------------------------------
// n = 1: one row at a time, in order.
template <class V, DType T>
inline void Row1(const RowRangeArgs& a, int64_t r, int64_t kend) {
  constexpr int W = V::kW;
  const WeightMatrix& w = *a.w;
  const uint8_t* row = w.data + r * w.row_bytes();
  const float* x = a.x;
  typename V::F acc0 = V::Zero(), acc1 = V::Zero(), acc2 = V::Zero(),
                acc3 = V::Zero();
  int64_t k = 0;
  for (; k + 4 * W <= kend; k += 4 * W) {
    acc0 = V::Fma(V::template Dequant<T>(row, k), V::Load(x + k), acc0);
    acc1 = V::Fma(V::template Dequant<T>(row, k + W), V::Load(x + k + W), acc1);
    acc2 = V::Fma(V::template Dequant<T>(row, k + 2 * W),
                  V::Load(x + k + 2 * W), acc2);
    acc3 = V::Fma(V::template Dequant<T>(row, k + 3 * W),
                  V::Load(x + k + 3 * W), acc3);
  }
  for (; k < kend; k += W)
    acc0 = V::Fma(V::template Dequant<T>(row, k), V::Load(x + k), acc0);
  float s = V::Reduce(V::Add(V::Add(acc0, acc1), V::Add(acc2, acc3))) *
            RowScale<T>(w, r);
  for (int64_t t = kend; t < w.cols; ++t) s += DequantElement(w, r, t) * x[t];
  a.y[r] = s;
}

// ---------------------------------------------------------------------------
// Small batches: 4 weight rows x NB activation rows.
template <class V, DType T, int NB>
inline void DotTile(const RowRangeArgs& a, int64_t r, int b0, int64_t kend) {
  constexpr int R = 4;
  constexpr int W = V::kW;
  const WeightMatrix& w = *a.w;
  const int64_t rb = w.row_bytes();
  const uint8_t* rows[R];
  for (int i = 0; i < R; ++i) rows[i] = w.data + (r + i) * rb;
  const float* xs[NB];
  for (int j = 0; j < NB; ++j) xs[j] = a.x + (b0 + j) * a.ldx;
  typename V::F acc[R][NB];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) acc[i][j] = V::Zero();
  // Interleaved rows of a few KiB are too short for the hardware prefetcher:
  // fetch the next tile's rows (R rows further) a cache line at a time.
  const int64_t ahead = R * rb;
  int64_t next_line = 0;
  for (int64_t k = 0; k < kend; k += W) {
    const int64_t kb = ByteOffset<T>(k);
    if (kb >= next_line) {
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i)
        __builtin_prefetch(rows[i] + ahead + kb, 0, 3);
      next_line = kb + 64;
    }
    typename V::F xv[NB];
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) xv[j] = V::Load(xs[j] + k);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const typename V::F wv = V::template Dequant<T>(rows[i], k);
#pragma GCC unroll 8
      for (int j = 0; j < NB; ++j) acc[i][j] = V::Fma(wv, xv[j], acc[i][j]);
    }
  }
  __m128 scale4 = _mm_set1_ps(1.0f);
  if (w.scales)
    scale4 =
        _mm_mul_ps(_mm_loadu_ps(w.scales + r), _mm_set1_ps(kScaleFactor<T>));
  for (int j = 0; j < NB; ++j) {
    __m128 sums =
        kend > 0
            ? _mm_mul_ps(V::Reduce4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]),
                         scale4)
            : _mm_setzero_ps();
    float* y = a.y + (b0 + j) * a.ldy + r;
    _mm_storeu_ps(y, sums);
    for (int64_t t = kend; t < w.cols; ++t)
      for (int i = 0; i < R; ++i)
        y[i] += DequantElement(w, r + i, t) * xs[j][t];
  }
}

// One weight row x NB activation rows (the rows left over by DotTile).
template <class V, DType T, int NB>
inline void DotRow(const RowRangeArgs& a, int64_t r, int b0, int64_t kend) {
  constexpr int W = V::kW;
  const WeightMatrix& w = *a.w;
  const uint8_t* row = w.data + r * w.row_bytes();
  const float* xs[NB];
  for (int j = 0; j < NB; ++j) xs[j] = a.x + (b0 + j) * a.ldx;
  typename V::F acc[NB];
  for (int j = 0; j < NB; ++j) acc[j] = V::Zero();
  for (int64_t k = 0; k < kend; k += W) {
    const typename V::F wv = V::template Dequant<T>(row, k);
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j)
      acc[j] = V::Fma(wv, V::Load(xs[j] + k), acc[j]);
  }
  const float scale = RowScale<T>(w, r);
  for (int j = 0; j < NB; ++j) {
    float s = V::Reduce(acc[j]) * scale;
    for (int64_t t = kend; t < w.cols; ++t)
      s += DequantElement(w, r, t) * xs[j][t];
    a.y[(b0 + j) * a.ldy + r] = s;
  }
}

template <class V, DType T, int NB>
inline void DotTiles(const RowRangeArgs& a, int b0, int64_t kend) {
  int64_t r = a.r0;
  for (; r + 4 <= a.r1; r += 4) DotTile<V, T, NB>(a, r, b0, kend);
  for (; r < a.r1; ++r) DotRow<V, T, NB>(a, r, b0, kend);
}

// Runs DotTiles for activation rows [b0, b0 + nb) with nb <= V::kDotNb, as a
// compile-time tile width.
template <class V, DType T, int NB = V::kDotNb>
inline void DotTilesN(const RowRangeArgs& a, int b0, int nb, int64_t kend) {
  if constexpr (NB >= 1) {
    if (nb == NB) return DotTiles<V, T, NB>(a, b0, kend);
    if constexpr (NB > 1) return DotTilesN<V, T, NB - 1>(a, b0, nb, kend);
  }
}

// ---------------------------------------------------------------------------
// Large batches (MatMul packs the activations from kGemmMinRows rows on):
// packed GEMM.

// Columns per packed panel: the panel (kKc x 2 vectors of floats) fills
// about half of L1.
template <class V>
constexpr int64_t kKc = V::kW == 16 ? 128 : 256;

// Dequantizes rows [r, r + nr) x columns [k0, k0 + kc) of `w` (with the
// row scale) into panel[k][j] (2*kW floats per k), zero-filling rows past nr:
// kW x kW blocks transposed in registers.
template <class V, DType T>
inline void PackPanel(const WeightMatrix& w, int64_t r, int nr, int64_t k0,
                      int64_t kc, int64_t kend, float* panel) {
  constexpr int W = V::kW, NR = 2 * V::kW;
  const int64_t rb = w.row_bytes();
  const int64_t kvec_end = std::max(k0, std::min(k0 + kc, kend));
  for (int h = 0; h < 2; ++h) {
    const uint8_t* rows[W];
    typename V::F scale[W];
    for (int j = 0; j < W; ++j) {
      const int jj = h * W + j;
      rows[j] = jj < nr ? w.data + (r + jj) * rb : nullptr;
      scale[j] = V::Set1(jj < nr ? RowScale<T>(w, r + jj) : 0.0f);
    }
    for (int64_t k = k0; k < kvec_end; k += W) {
      typename V::F v[W];
#pragma GCC unroll 16
      for (int j = 0; j < W; ++j)
        v[j] = rows[j] ? V::Mul(V::template Dequant<T>(rows[j], k), scale[j])
                       : V::Zero();
      V::Transpose(v);
      float* p = panel + (k - k0) * NR + h * W;
#pragma GCC unroll 16
      for (int t = 0; t < W; ++t) V::Store(p + t * NR, v[t]);
    }
  }
  for (int64_t k = kvec_end; k < k0 + kc; ++k)
    for (int j = 0; j < NR; ++j)
      panel[(k - k0) * NR + j] = j < nr ? DequantElement(w, r + j, k) : 0.0f;
}

// y[i][0..nr) (+)= sum_k xp[k][i] * panel[k][0..nr) for i < MR, where xp
// is the packed activation block ([k][V::kMr]).
template <class V, int MR>
inline void GemmMicro(const float* panel, int64_t kc, const float* xp, float* y,
                      int64_t ldy, int nr, bool accumulate) {
  constexpr int W = V::kW, NR = 2 * V::kW;
  typename V::F acc[MR][2];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = V::Zero();
  for (int64_t k = 0; k < kc; ++k) {
    const typename V::F w0 = V::Load(panel + k * NR);
    const typename V::F w1 = V::Load(panel + k * NR + W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const typename V::F xb = V::Set1(xp[k * V::kMr + i]);
      acc[i][0] = V::Fma(w0, xb, acc[i][0]);
      acc[i][1] = V::Fma(w1, xb, acc[i][1]);
    }
  }
  if (nr == NR) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      float* yi = y + i * ldy;
      if (accumulate) {
        acc[i][0] = V::Add(acc[i][0], V::Load(yi));
        acc[i][1] = V::Add(acc[i][1], V::Load(yi + W));
      }
      V::Store(yi, acc[i][0]);
      V::Store(yi + W, acc[i][1]);
    }
  } else {
    alignas(64) float tmp[NR];
    for (int i = 0; i < MR; ++i) {
      V::Store(tmp, acc[i][0]);
      V::Store(tmp + W, acc[i][1]);
      float* yi = y + i * ldy;
      for (int j = 0; j < nr; ++j) yi[j] = accumulate ? yi[j] + tmp[j] : tmp[j];
    }
  }
}

template <class V, int MR = V::kMr>
inline void GemmMicroN(int mr, const float* panel, int64_t kc, const float* xp,
                       float* y, int64_t ldy, int nr, bool accumulate) {
  if constexpr (MR >= 1) {
    if (mr == MR)
      return GemmMicro<V, MR>(panel, kc, xp, y, ldy, nr, accumulate);
    if constexpr (MR > 1)
      return GemmMicroN<V, MR - 1>(mr, panel, kc, xp, y, ldy, nr, accumulate);
  }
}

template <class V, DType T>
inline void Gemm(const RowRangeArgs& a, int64_t kend) {
  constexpr int NR = 2 * V::kW, MR = V::kMr;
  constexpr int64_t KC = kKc<V>;
  const WeightMatrix& w = *a.w;
  alignas(64) float panel[KC * NR];
  // The activations come packed by MatMul (PackActivations): per group of
  // MR rows as [k][MR], so the micro-tile's broadcasts read one sequential
  // stream.
  const int groups = (a.n + MR - 1) / MR;
  for (int64_t k0 = 0; k0 < w.cols; k0 += KC) {
    const int64_t kc = std::min(KC, w.cols - k0);
    for (int64_t r = a.r0; r < a.r1; r += NR) {
      const int nr = int(std::min<int64_t>(NR, a.r1 - r));
      PackPanel<V, T>(w, r, nr, k0, kc, kend, panel);
      for (int g = 0; g < groups; ++g) {
        const int b = g * MR;
        GemmMicroN<V>(std::min(MR, a.n - b), panel, kc,
                      a.xpack + (int64_t(g) * w.cols + k0) * MR,
                      a.y + b * a.ldy + r, a.ldy, nr, k0 > 0);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Integer dot products (int8 and Q8_0 weights, int8 activations).

// Sum of the 4 int32 lane groups... as floats: the lane sums of a, b, c, d.
inline __m128 Reduce4x256(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

inline __m256i Load32(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// Block `blk` of a Q8_0 row: a float16 scale, then 32 int8.
inline const uint8_t* IntBlock(const uint8_t* row, int64_t blk) {
  return row + blk * 34 + 2;
}

template <class V, DType T, int NB>
inline void IntTile(const RowRangeArgs& a, int64_t r, int b0) {
  constexpr int R = 4;
  const WeightMatrix& w = *a.w;
  const int64_t rb = w.row_bytes();
  const int64_t blocks = w.cols / 32;
  const uint8_t* rows[R];
  for (int i = 0; i < R; ++i) rows[i] = w.data + (r + i) * rb;
  const int8_t* xs[NB];
  for (int j = 0; j < NB; ++j) xs[j] = a.xq + (b0 + j) * a.ldxq;
  const int64_t ahead = R * rb;
  __m256 acc[R][NB];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm256_setzero_ps();
  for (int64_t blk = 0; blk < blocks; ++blk) {
    if ((blk & 1) == 0) {
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i)
        __builtin_prefetch(IntBlock(rows[i], blk) + ahead, 0, 3);
    }
    __m256i xv[NB];
    __m256 dx[NB];
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) {
      xv[j] = Load32(xs[j] + blk * 32);
      dx[j] = _mm256_set1_ps(a.xscale[(b0 + j) * a.ldxs + blk]);
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m256i wv = Load32(IntBlock(rows[i], blk));
      const __m256i aw = _mm256_abs_epi8(wv);
      // d_w * d_x per pair: the block scale of the weights times the
      // activations'.
      const __m256 dw = _mm256_set1_ps(HalfBitsToFloat(rows[i] + blk * 34));
#pragma GCC unroll 8
      for (int j = 0; j < NB; ++j) {
        const __m256i p =
            V::DotU8S8(_mm256_setzero_si256(), aw, _mm256_sign_epi8(xv[j], wv));
        acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p),
                                    _mm256_mul_ps(dw, dx[j]), acc[i][j]);
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NB; ++j)
    _mm_storeu_ps(a.y + (b0 + j) * a.ldy + r,
                  Reduce4x256(acc[0][j], acc[1][j], acc[2][j], acc[3][j]));
}

// One weight row x NB activation rows, scalar over blocks (leftover rows).
template <class V, DType T, int NB>
inline void IntRow(const RowRangeArgs& a, int64_t r, int b0) {
  const WeightMatrix& w = *a.w;
  const uint8_t* row = w.data + r * w.row_bytes();
  const int64_t blocks = w.cols / 32;
  for (int j = 0; j < NB; ++j) {
    const int8_t* x = a.xq + (b0 + j) * a.ldxq;
    __m256 facc = _mm256_setzero_ps();
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const __m256i wv = Load32(IntBlock(row, blk));
      const __m256i p = V::DotU8S8(_mm256_setzero_si256(), _mm256_abs_epi8(wv),
                                   _mm256_sign_epi8(Load32(x + blk * 32), wv));
      const float d =
          a.xscale[(b0 + j) * a.ldxs + blk] * HalfBitsToFloat(row + blk * 34);
      facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d), facc);
    }
    const float s = _mm_cvtss_f32(Reduce4x256(facc, facc, facc, facc));
    a.y[(b0 + j) * a.ldy + r] = s;
  }
}

template <class V, DType T, int NB>
inline void IntTiles(const RowRangeArgs& a, int b0) {
  int64_t r = a.r0;
  for (; r + 4 <= a.r1; r += 4) IntTile<V, T, NB>(a, r, b0);
  for (; r < a.r1; ++r) IntRow<V, T, NB>(a, r, b0);
}

template <class V, DType T, int NB = V::kIntNb>
inline void IntTilesN(const RowRangeArgs& a, int b0, int nb) {
  if constexpr (NB >= 1) {
    if (nb == NB) return IntTiles<V, T, NB>(a, b0);
    if constexpr (NB > 1) return IntTilesN<V, T, NB - 1>(a, b0, nb);
  }
}

// ---------------------------------------------------------------------------

template <class V, DType T>
inline void RunFloat(const RowRangeArgs& a) {
  const WeightMatrix& w = *a.w;
  const int64_t kend = w.cols / V::kW * V::kW;
  if (a.n == 1) {
    for (int64_t r = a.r0; r < a.r1; ++r) Row1<V, T>(a, r, kend);
    return;
  }
  if (a.xpack != nullptr) return Gemm<V, T>(a, kend);
  for (int b = 0; b < a.n; b += V::kDotNb)
    DotTilesN<V, T>(a, b, std::min(V::kDotNb, a.n - b), kend);
}

template <class V, DType T>
inline void RunInt(const RowRangeArgs& a) {
  for (int b = 0; b < a.n; b += V::kIntNb)
    IntTilesN<V, T>(a, b, std::min(V::kIntNb, a.n - b));
}

// ---------------------------------------------------------------------------
// Attention over a block of queries: every key and value row is loaded once
// per block and used by all its queries (a prompt's attention reads the
// cache block by block instead of once per query).

// scores[j * lds + p] = scale * dot(q + j * ldq, k + p * ldk), j < nq, p < n.
template <class V, int NQ>
inline void ScoresTile(const float* q, int64_t ldq, const float* k, int64_t ldk,
                       int p, int d, int dend, float scale, float* scores,
                       int64_t lds) {
  constexpr int W = V::kW;
  typename V::F acc[4][NQ];
#pragma GCC unroll 4
  for (int t = 0; t < 4; ++t)
#pragma GCC unroll 8
    for (int j = 0; j < NQ; ++j) acc[t][j] = V::Zero();
  for (int i = 0; i < dend; i += W) {
    typename V::F qv[NQ];
#pragma GCC unroll 8
    for (int j = 0; j < NQ; ++j) qv[j] = V::Load(q + j * ldq + i);
#pragma GCC unroll 4
    for (int t = 0; t < 4; ++t) {
      const typename V::F kv = V::Load(k + (p + t) * ldk + i);
#pragma GCC unroll 8
      for (int j = 0; j < NQ; ++j) acc[t][j] = V::Fma(kv, qv[j], acc[t][j]);
    }
  }
  for (int j = 0; j < NQ; ++j) {
    alignas(16) float s[4];
    _mm_store_ps(s, V::Reduce4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]));
    for (int t = 0; t < 4; ++t) {
      for (int i = dend; i < d; ++i)
        s[t] += q[j * ldq + i] * k[(p + t) * ldk + i];
      scores[j * lds + p + t] = s[t] * scale;
    }
  }
}

template <class V, int NQ = V::kDotNb>
inline void ScoresTileN(int nq, const float* q, int64_t ldq, const float* k,
                        int64_t ldk, int p, int d, int dend, float scale,
                        float* scores, int64_t lds) {
  if constexpr (NQ >= 1) {
    if (nq == NQ)
      return ScoresTile<V, NQ>(q, ldq, k, ldk, p, d, dend, scale, scores, lds);
    if constexpr (NQ > 1)
      return ScoresTileN<V, NQ - 1>(nq, q, ldq, k, ldk, p, d, dend, scale,
                                    scores, lds);
  }
}

template <class V>
inline void AttentionScoresImpl(const float* q, int64_t ldq, int nq,
                                const float* k, int64_t ldk, int n, int d,
                                float scale, float* scores, int64_t lds) {
  const int dend = d / V::kW * V::kW;
  int p = 0;
  for (; p + 4 <= n; p += 4)
    for (int j = 0; j < nq; j += V::kDotNb)
      ScoresTileN<V>(std::min(V::kDotNb, nq - j), q + j * ldq, ldq, k, ldk, p,
                     d, dend, scale, scores + j * lds, lds);
  for (; p < n; ++p) {
    for (int j = 0; j < nq; ++j) {
      typename V::F acc = V::Zero();
      for (int i = 0; i < dend; i += V::kW)
        acc = V::Fma(V::Load(q + j * ldq + i), V::Load(k + p * ldk + i), acc);
      float s = V::Reduce(acc);
      for (int i = dend; i < d; ++i) s += q[j * ldq + i] * k[p * ldk + i];
      scores[j * lds + p] = s * scale;
    }
  }
}

// out[j * ldo + i] = sum_p w[j * ldw + p] * v[p * ldv + i], j < nq, i < d.
template <class V, int NQ>
inline void ValuesTile(const float* w, int64_t ldw, const float* v, int64_t ldv,
                       int n, int i, float* out, int64_t ldo) {
  constexpr int W = V::kW;
  typename V::F acc[NQ][2];
#pragma GCC unroll 8
  for (int j = 0; j < NQ; ++j) acc[j][0] = acc[j][1] = V::Zero();
  for (int p = 0; p < n; ++p) {
    const typename V::F v0 = V::Load(v + p * ldv + i);
    const typename V::F v1 = V::Load(v + p * ldv + i + W);
#pragma GCC unroll 8
    for (int j = 0; j < NQ; ++j) {
      const typename V::F wj = V::Set1(w[j * ldw + p]);
      acc[j][0] = V::Fma(wj, v0, acc[j][0]);
      acc[j][1] = V::Fma(wj, v1, acc[j][1]);
    }
  }
  for (int j = 0; j < NQ; ++j) {
    V::Store(out + j * ldo + i, acc[j][0]);
    V::Store(out + j * ldo + i + W, acc[j][1]);
  }
}

template <class V, int NQ = 6>
inline void ValuesTileN(int nq, const float* w, int64_t ldw, const float* v,
                        int64_t ldv, int n, int i, float* out, int64_t ldo) {
  if constexpr (NQ >= 1) {
    if (nq == NQ) return ValuesTile<V, NQ>(w, ldw, v, ldv, n, i, out, ldo);
    if constexpr (NQ > 1)
      return ValuesTileN<V, NQ - 1>(nq, w, ldw, v, ldv, n, i, out, ldo);
  }
}

template <class V>
inline void AttentionValuesImpl(const float* w, int64_t ldw, int nq,
                                const float* v, int64_t ldv, int n, int d,
                                float* out, int64_t ldo) {
  constexpr int W = V::kW;
  int i = 0;
  for (; i + 2 * W <= d; i += 2 * W)
    for (int j = 0; j < nq; j += 6)
      ValuesTileN<V>(std::min(6, nq - j), w + j * ldw, ldw, v, ldv, n, i,
                     out + j * ldo, ldo);
  for (; i < d; ++i) {
    for (int j = 0; j < nq; ++j) {
      float a = 0;
      for (int p = 0; p < n; ++p) a += w[j * ldw + p] * v[p * ldv + i];
      out[j * ldo + i] = a;
    }
  }
}

// K-quant weights (Q4_K, Q5_K, Q6_K): chunks of rows are dequantized into a
// per-thread float buffer (L1-sized for decode, about 128 KiB for batches)
// and multiplied by the float32 algorithms above. The block loops below
// follow the reference in engine/kquants.cc but run over whole sub-blocks
// with uniform scales, so the compiler vectorizes them for this file's
// target; the tests compare every ISA with the reference.
inline void DequantQ6KBlockFast(const uint8_t* __restrict__ b,
                                float* __restrict__ out) {
  const float d = HalfBitsToFloat(b + 208);
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = b + 64 * h;
    const uint8_t* qh = b + 128 + 32 * h;
    for (int half = 0; half < 2; ++half) {
      const float s0 = d * sc[8 * h + half], s1 = d * sc[8 * h + half + 2],
                  s2 = d * sc[8 * h + half + 4], s3 = d * sc[8 * h + half + 6];
      float* __restrict__ o = out + 128 * h + 16 * half;
      for (int l = 16 * half; l < 16 * half + 16; ++l) {
        const int lo0 = ql[l], lo1 = ql[32 + l], hi = qh[l];
        const int i = l - 16 * half;
        o[i] = s0 * float(((lo0 & 15) | ((hi & 3) << 4)) - 32);
        o[32 + i] = s1 * float(((lo1 & 15) | (((hi >> 2) & 3) << 4)) - 32);
        o[64 + i] = s2 * float(((lo0 >> 4) | (((hi >> 4) & 3) << 4)) - 32);
        o[96 + i] = s3 * float(((lo1 >> 4) | (((hi >> 6) & 3) << 4)) - 32);
      }
    }
  }
}

// UnpackScaleMin (engine/kquants.h) inlined, for the hot loop.
inline void ScaleMinInline(const uint8_t* s, int b, int* scale, int* min) {
  if (b < 4) {
    *scale = s[b] & 63;
    *min = s[b + 4] & 63;
  } else {
    *scale = (s[b + 4] & 15) | ((s[b - 4] >> 6) << 4);
    *min = (s[b + 4] >> 4) | ((s[b] >> 6) << 4);
  }
}

template <bool kFive>
inline void DequantAsymKBlockFast(const uint8_t* __restrict__ b,
                                  float* __restrict__ out) {
  const float d = HalfBitsToFloat(b), dmin = HalfBitsToFloat(b + 2);
  const uint8_t* qs = b + (kFive ? 48 : 16);
  const uint8_t* qh = b + 16;
  for (int p = 0; p < 4; ++p) {
    int sc0, m0, sc1, m1;
    ScaleMinInline(b + 4, 2 * p, &sc0, &m0);
    ScaleMinInline(b + 4, 2 * p + 1, &sc1, &m1);
    const float st0 = d * float(sc0), off0 = dmin * float(m0);
    const float st1 = d * float(sc1), off1 = dmin * float(m1);
    const uint8_t* q = qs + 32 * p;
    float* __restrict__ o = out + 64 * p;
    for (int l = 0; l < 32; ++l) {
      int a = q[l] & 15, c = q[l] >> 4;
      if constexpr (kFive) {
        a |= ((qh[l] >> (2 * p)) & 1) << 4;
        c |= ((qh[l] >> (2 * p + 1)) & 1) << 4;
      }
      o[l] = st0 * float(a) - off0;
      o[32 + l] = st1 * float(c) - off1;
    }
  }
}

inline void DequantKRowFast(DType d, const uint8_t* row, int64_t cols,
                            float* out) {
  for (int64_t k = 0; k < cols; k += kQK) {
    const int64_t blk = k / kQK;
    if (d == DType::kQ6_K) {
      DequantQ6KBlockFast(row + blk * kQ6KBytes, out + k);
    } else if (d == DType::kQ4_K) {
      DequantAsymKBlockFast<false>(row + blk * kQ4KBytes, out + k);
    } else {
      DequantAsymKBlockFast<true>(row + blk * kQ5KBytes, out + k);
    }
  }
}

template <class V>
inline void RunKQuant(const RowRangeArgs& a) {
  const WeightMatrix& w = *a.w;
  const int64_t cols = std::max<int64_t>(w.cols, 1);
  const int64_t chunk = a.n == 1
                            ? std::clamp<int64_t>(4096 / cols, 1, 16)
                            : std::clamp<int64_t>(32768 / cols / 4 * 4, 4, 64);
  thread_local std::vector<float> buf;
  if (buf.size() < size_t(chunk * w.cols)) buf.resize(size_t(chunk * w.cols));
  const int64_t rb = w.row_bytes();
  for (int64_t r0 = a.r0; r0 < a.r1; r0 += chunk) {
    const int64_t cnt = std::min(chunk, a.r1 - r0);
    for (int64_t i = 0; i < cnt; ++i)
      DequantKRowFast(w.dtype, w.data + (r0 + i) * rb, w.cols,
                      buf.data() + i * w.cols);
    WeightMatrix f{.dtype = DType::kF32,
                   .rows = cnt,
                   .cols = w.cols,
                   .data = reinterpret_cast<const uint8_t*>(buf.data())};
    RowRangeArgs b = a;
    b.w = &f;
    b.y = a.y + r0;
    b.r0 = 0;
    b.r1 = cnt;
    b.xq = nullptr;
    RunFloat<V, DType::kF32>(b);
  }
}

// Q4_K weights with int8 activations (RowRangeArgs::xq, one scale per 32
// columns), decode batches: per 32-weight sub-block the u8 nibbles times the
// s8 activations sum exactly in int32 (vpmaddubsw cannot saturate: 2 * 15 *
// 127 < 32767), scaled by d * scale * d_x; the mins contribute dmin * min *
// d_x * sum(x_q), with the activation sums computed once per call.
inline float HorizontalSum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <class V>
inline void RunIntQ4K(const RowRangeArgs& a) {
  const WeightMatrix& w = *a.w;
  const int64_t subs = w.cols / 32, blocks = w.cols / kQK;
  thread_local std::vector<float> xsum;
  if (xsum.size() < size_t(a.n * subs)) xsum.resize(size_t(a.n * subs));
  for (int b = 0; b < a.n; ++b)
    for (int64_t s = 0; s < subs; ++s) {
      const int8_t* x = a.xq + b * a.ldxq + 32 * s;
      int32_t t = 0;
      for (int l = 0; l < 32; ++l) t += x[l];
      xsum[size_t(b * subs + s)] = float(t) * a.xscale[b * a.ldxs + s];
    }
  const __m256i low = _mm256_set1_epi8(0x0f);
  const int64_t rb = w.row_bytes();
  for (int64_t r = a.r0; r < a.r1; ++r) {
    const uint8_t* row = w.data + r * rb;
    for (int b = 0; b < a.n; ++b) {
      const int8_t* xq = a.xq + b * a.ldxq;
      const float* xs = a.xscale + b * a.ldxs;
      const float* xm = xsum.data() + b * subs;
      __m256 acc = _mm256_setzero_ps();
      float mins = 0;
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const uint8_t* bp = row + blk * kQ4KBytes;
        const float d = HalfBitsToFloat(bp), dmin = HalfBitsToFloat(bp + 2);
        for (int p = 0; p < 4; ++p) {
          int sc0, m0, sc1, m1;
          ScaleMinInline(bp + 4, 2 * p, &sc0, &m0);
          ScaleMinInline(bp + 4, 2 * p + 1, &sc1, &m1);
          const int64_t s0 = blk * 8 + 2 * p;
          const __m256i q = _mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(bp + 16 + 32 * p));
          const __m256i lo = _mm256_and_si256(q, low);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
          const __m256i x0 = _mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(xq + 32 * s0));
          const __m256i x1 = _mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(xq + 32 * s0 + 32));
          const __m256i p0 = V::DotU8S8(_mm256_setzero_si256(), lo, x0);
          const __m256i p1 = V::DotU8S8(_mm256_setzero_si256(), hi, x1);
          acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0),
                                _mm256_set1_ps(d * float(sc0) * xs[s0]), acc);
          acc =
              _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1),
                              _mm256_set1_ps(d * float(sc1) * xs[s0 + 1]), acc);
          mins += dmin * (float(m0) * xm[s0] + float(m1) * xm[s0 + 1]);
        }
      }
      a.y[b * a.ldy + r] = HorizontalSum256(acc) - mins;
    }
  }
}

// Q6_K likewise: the 6-bit values q in [0, 64) are u8, the scales apply per
// 16 weights (the low and high four int32 lanes of each 32-weight dot), and
// the -32 offset contributes -32 * d * scale * d_x * sum(x_q) per 16.
template <class V>
inline void RunIntQ6K(const RowRangeArgs& a) {
  const WeightMatrix& w = *a.w;
  const int64_t halves = w.cols / 16, blocks = w.cols / kQK;
  thread_local std::vector<float> xsum;
  if (xsum.size() < size_t(a.n * halves)) xsum.resize(size_t(a.n * halves));
  for (int b = 0; b < a.n; ++b)
    for (int64_t s = 0; s < halves; ++s) {
      const int8_t* x = a.xq + b * a.ldxq + 16 * s;
      int32_t t = 0;
      for (int l = 0; l < 16; ++l) t += x[l];
      xsum[size_t(b * halves + s)] = float(t) * a.xscale[b * a.ldxs + s / 2];
    }
  const __m256i low = _mm256_set1_epi8(0x0f), two = _mm256_set1_epi8(0x30);
  const int64_t rb = w.row_bytes();
  for (int64_t r = a.r0; r < a.r1; ++r) {
    const uint8_t* row = w.data + r * rb;
    for (int b = 0; b < a.n; ++b) {
      const int8_t* xq = a.xq + b * a.ldxq;
      const float* xs = a.xscale + b * a.ldxs;
      const float* xm = xsum.data() + b * halves;
      __m256 acc = _mm256_setzero_ps();
      float offset = 0;
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const uint8_t* bp = row + blk * kQ6KBytes;
        const float d = HalfBitsToFloat(bp + 208);
        const int8_t* sc = reinterpret_cast<const int8_t*>(bp + 192);
        for (int h = 0; h < 2; ++h) {
          const __m256i qa =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp + 64 * h));
          const __m256i qb = _mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(bp + 64 * h + 32));
          const __m256i qh = _mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(bp + 128 + 32 * h));
          const __m256i q[4] = {
              _mm256_or_si256(_mm256_and_si256(qa, low),
                              _mm256_and_si256(_mm256_slli_epi16(qh, 4), two)),
              _mm256_or_si256(_mm256_and_si256(qb, low),
                              _mm256_and_si256(_mm256_slli_epi16(qh, 2), two)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), low),
                              _mm256_and_si256(qh, two)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), low),
                              _mm256_and_si256(_mm256_srli_epi16(qh, 2), two))};
          for (int s = 0; s < 4; ++s) {
            const int64_t s32 = blk * 8 + 4 * h + s;  // activation block
            const int g = 8 * h + 2 * s;              // scale index
            const __m256i x = _mm256_loadu_si256(
                reinterpret_cast<const __m256i*>(xq + 32 * s32));
            const __m256i p = V::DotU8S8(_mm256_setzero_si256(), q[s], x);
            const float f0 = d * float(sc[g]), f1 = d * float(sc[g + 1]);
            const __m256 scale = _mm256_set_m128(_mm_set1_ps(f1 * xs[s32]),
                                                 _mm_set1_ps(f0 * xs[s32]));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), scale, acc);
            offset += 32.0f * (f0 * xm[2 * s32] + f1 * xm[2 * s32 + 1]);
          }
        }
      }
      a.y[b * a.ldy + r] = HorizontalSum256(acc) - offset;
    }
  }
}

template <class V>
inline void MatMulRowsImpl(const RowRangeArgs& a) {
  if (a.xq != nullptr && a.w->dtype == DType::kQ6_K) return RunIntQ6K<V>(a);
  if (a.xq != nullptr && a.w->dtype == DType::kQ4_K) return RunIntQ4K<V>(a);
  if (a.xq != nullptr && a.w->dtype == DType::kQ8_0)
    return RunInt<V, DType::kQ8_0>(a);
  switch (a.w->dtype) {
    case DType::kF32:
      return RunFloat<V, DType::kF32>(a);
    case DType::kF16:
      return RunFloat<V, DType::kF16>(a);
    case DType::kBF16:
      return RunFloat<V, DType::kBF16>(a);
    case DType::kI8:
      return RunFloat<V, DType::kI8>(a);
    case DType::kI16:
      return RunFloat<V, DType::kI16>(a);
    case DType::kF8E4M3:
      return RunFloat<V, DType::kF8E4M3>(a);
    case DType::kQ8_0:
      return RunFloat<V, DType::kQ8_0>(a);
    case DType::kQ4_0:
      return RunFloat<V, DType::kQ4_0>(a);
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      return RunKQuant<V>(a);
  }
}

}  // namespace
}  // namespace hangar::engine::internal

#endif  // HANGAR_ENGINE_KERNELS_IMPL_H_
