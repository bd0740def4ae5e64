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
//   Sub, Div, Max, Min, Round (to nearest), ReduceMax, Pow2 (2^n from an
//   integral n in [-126, 127] through the exponent bits), ZeroBelow(v, x,
//   lim) (v where x >= lim, else 0)
//                            for the elementwise exp, softmax and SiLU (ExpV:
//                            x = n ln2 + r, a degree-6 polynomial for e^r;
//                            they replaced scalar std::exp loops that took
//                            ~14 % of a 512-token prefill; f32 prefill / FMA
//                            peak on AVX-512, best of runs on a loaded
//                            2-core machine, 0.40 -> 0.52);
//   Dequant<T>(row, k)       kW weights of dtype T from column k (k a multiple
//                            of kW, and of 32 for the block formats), without
//                            the row scale;
//   kDotNb                   activation rows one small-batch pass covers
//                            (kGemmMinRows: RunFloat hands them all to
//                            DotTilesN at once);
//   kMr                      activation rows per GEMM micro-tile (2 vectors
//                            of output rows wide);
//   kIntNb, DotU8S8          the integer tile width and the 256-bit
//                            u8 x s8 -> s32 dot-accumulate (vpdpbusd with
//                            VNNI, vpmaddubsw + vpmaddwd without).
//
// The matmul algorithms, chosen by batch size and weight type:
//   * n = 1, float: each weight row streams once, in order, with 4
//     accumulators (memory-bound: the prefetcher sees one stream).
//   * 2 <= n < kGemmMinRows, float: "dot tiles" of 4 weight rows x
//     kDotTileNb (6 with AVX-512, 3 with AVX2) activation rows; each weight
//     vector is dequantized once and used by the tile's rows, reduced
//     horizontally once per tile (no packing, which would cost more than the
//     arithmetic at small n). One pass over the weights for all n rows: each
//     group of 4 weight rows runs every activation tile in turn, the first
//     streaming the rows from memory (and prefetching the next group), the
//     others finding them in L1/L2. (Batch 8 as 6 + 2 rows used to stream
//     the whole matrix twice. f32 batch 8 / batch 1 on the base preset,
//     two runs: AVX-512 4.80 -> 5.03 and 5.03 -> 4.95, within the noise;
//     AVX2 4.83 -> 4.73 and 4.61 -> 4.73; batch 16 on AVX2 6.12 -> 6.42 and
//     5.77 -> 6.47. Batch 8 is compute-bound on the tiles' FMAs, not on the
//     second stream. Tiles of 3 x 8 (AVX-512) and 2 x 4 (AVX2) with column
//     blocks of 16 KiB of activations measured slower: 4.31 and 4.07, with
//     more reductions and y round trips per FMA.)
//   * n >= kGemmMinRows, every dtype: a packed GEMM. A panel of 2*kW weight
//     rows x kKc columns is dequantized and transposed into L1 ([k][row]);
//     a kMr x 2*kW micro-tile then broadcasts one activation per row (from
//     the activations MatMul packed as [k][kMr]) and does 2*kMr FMAs per
//     column, writing output rows contiguously. Column blocks of kKc (384
//     with AVX-512: a 512-row prompt's slice is 768 KiB, 256 with AVX2) keep
//     the activations' slice in L2 across panels; the panel itself (48 KiB)
//     streams from L2 as well, which measured faster than 128-column
//     L1-resident panels because the partial sums are reloaded less often.
//     Rows are done in blocks of kGemmRb (64) output columns whose partial
//     sums between column blocks live in a contiguous [n][64] scratch: kept
//     in y (a row stride of thousands of floats) the micro-tiles' rows fall
//     into a few cache sets and came back from L3 (AVX-512 GEMM, one
//     thread: 94 -> 109-115 GFLOP/s of a 150 peak).
//   * Q8_0 weights, n < kGemmMinRows, activations quantized to int8 per
//     32-block (RowRangeArgs::xq): integer tiles of 4 weight rows x kIntNb
//     activation rows over 32-byte blocks, prefetched two tiles ahead; with
//     VNNI vpdpbusd takes the raw weights as w + 128 (each block's lanes
//     start at -128 * the sum of its activations), without it |w| x
//     sign(x, w) (so vpmaddubsw never saturates); each block's int32 sum is
//     converted and scaled by d_w * d_x.
//   * Q8_0 weights, n >= kGemmMinRows (RowRangeArgs::xqpack): an integer
//     GEMM (IntGemm, kernels_int_impl.h). Panels of 8 or 16 weight rows x
//     24 blocks are repacked as [k / 4][row] runs of 4 bytes; micro-tiles of
//     4 (AVX2) or 6 (AVX-512) activation rows broadcast 4 activation bytes
//     and dot-accumulate into one int32 lane per weight row, converting and
//     scaling per block. With VNNI one vpdpbusd per step (activations as
//     q + 128, the panel's -128 * sum(w) as the starting value).
//   * int8 weights, n = 1 (RowRangeArgs::xq16): passes of 4 weight rows
//     share each int16 activation load (vpmaddwd / vpdpwssd, RunIntI8x16),
//     each row prefetched two tiles ahead, int32 sums flushed to float every
//     1024 columns; leftover rows go one at a time.
//   * K-quants (Q4_K, Q5_K, Q6_K), n < kGemmMinRows: one integer algorithm
//     (RunIntKQuant, kernels_kquant_impl.h) over an unpacking policy per
//     format. Tiles of 4 weight rows x 1 activation row at batch 1 (256-bit
//     on every target), 4 x 2 (AVX-512, 512-bit) or 2 x 2 (AVX2) for
//     batches; per super-block each row's scales are unpacked once into int16
//     lanes, per 32-weight sub-block (two per 512-bit vector) the weights
//     are unpacked to u8 in registers, vpmaddubsw x int8 activations and
//     vpmaddwd by the scales give int32 sums, converted once per sub-block
//     and scaled by d once per super-block; mins and Q6_K's -32 offset go
//     through per-group activation sums. From kGemmMinRows rows on (and on
//     the scalar path) rows are dequantized per chunk into a float buffer
//     and run through the float32 algorithms.
// And attention over a block of queries (AttentionScoresImpl /
// AttentionValuesImpl): 4 keys x kScoreNq queries score tiles, 6 queries x
// 2 vectors value tiles, so each cached key/value row is read once per block.
//
// Everything here sits in an anonymous namespace on purpose: each including
// file gets its own copy compiled for its own target.
#ifndef HANGAR_ENGINE_KERNELS_IMPL_H_
#define HANGAR_ENGINE_KERNELS_IMPL_H_

#include <immintrin.h>

#include <algorithm>
#include <cmath>
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
// Small batches (2 <= n < kGemmMinRows): 4 weight rows x NB activation rows
// (NB <= kDotTileNb: 6 with AVX-512, 3 with AVX2). For each group of 4 weight
// rows every activation tile runs in turn, so the group's rows come from
// memory once (the first tile, which also prefetches the next group) and
// from L1/L2 for the other tiles.
template <class V>
constexpr int kDotTileNb = V::kW == 16 ? 6 : 3;

template <class V, DType T, int NB>
inline void DotTile(const RowRangeArgs& a, int64_t r, int b0, int64_t kend,
                    bool prefetch) {
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
  int64_t next_line = prefetch ? 0 : INT64_MAX;
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

template <class V, DType T, int NB = kDotTileNb<V>>
inline void DotTileN(const RowRangeArgs& a, int64_t r, int b0, int nb,
                     int64_t kend, bool prefetch) {
  if constexpr (NB >= 1) {
    if (nb == NB) return DotTile<V, T, NB>(a, r, b0, kend, prefetch);
    if constexpr (NB > 1)
      return DotTileN<V, T, NB - 1>(a, r, b0, nb, kend, prefetch);
  }
}

template <class V, DType T, int NB = kDotTileNb<V>>
inline void DotRowN(const RowRangeArgs& a, int64_t r, int b0, int nb,
                    int64_t kend) {
  if constexpr (NB >= 1) {
    if (nb == NB) return DotRow<V, T, NB>(a, r, b0, kend);
    if constexpr (NB > 1) return DotRowN<V, T, NB - 1>(a, r, b0, nb, kend);
  }
}

// Activation rows [b0, b0 + nb), any nb (RunFloat passes all n < kGemmMinRows
// at once: V::kDotNb == kGemmMinRows), every weight row streamed once.
template <class V, DType T>
inline void DotTilesN(const RowRangeArgs& a, int b0, int nb, int64_t kend) {
  constexpr int NB = kDotTileNb<V>;
  int64_t r = a.r0;
  for (; r + 4 <= a.r1; r += 4)
    for (int b = b0; b < b0 + nb; b += NB)
      DotTileN<V, T>(a, r, b, std::min(NB, b0 + nb - b), kend, b == b0);
  for (; r < a.r1; ++r)
    for (int b = b0; b < b0 + nb; b += NB)
      DotRowN<V, T>(a, r, b, std::min(NB, b0 + nb - b), kend);
}

// ---------------------------------------------------------------------------
// Large batches (MatMul packs the activations from kGemmMinRows rows on):
// packed GEMM.

// Columns per packed panel (see the essay): the activations' slice
// (n x kKc floats) stays in L2; the panel (kKc x 2 vectors) streams from L2.
template <class V>
constexpr int64_t kKc = V::kW == 16 ? 384 : 256;

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

// out[i][0..nr) = (c ? c[i][0..nr) : 0) + sum_k xp[k][i] * panel[k][0..nr)
// for i < MR, where xp is the packed activation block ([k][V::kMr]); c may
// be out itself.
template <class V, int MR>
inline void GemmMicro(const float* panel, int64_t kc, const float* xp,
                      const float* c, int64_t ldc, float* out, int64_t ldo,
                      int nr) {
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
      if (c != nullptr) {
        acc[i][0] = V::Add(acc[i][0], V::Load(c + i * ldc));
        acc[i][1] = V::Add(acc[i][1], V::Load(c + i * ldc + W));
      }
      V::Store(out + i * ldo, acc[i][0]);
      V::Store(out + i * ldo + W, acc[i][1]);
    }
  } else {
    alignas(64) float tmp[NR];
    for (int i = 0; i < MR; ++i) {
      V::Store(tmp, acc[i][0]);
      V::Store(tmp + W, acc[i][1]);
      for (int j = 0; j < nr; ++j)
        out[i * ldo + j] = c != nullptr ? c[i * ldc + j] + tmp[j] : tmp[j];
    }
  }
}

template <class V, int MR = V::kMr>
inline void GemmMicroN(int mr, const float* panel, int64_t kc, const float* xp,
                       const float* c, int64_t ldc, float* out, int64_t ldo,
                       int nr) {
  if constexpr (MR >= 1) {
    if (mr == MR) return GemmMicro<V, MR>(panel, kc, xp, c, ldc, out, ldo, nr);
    if constexpr (MR > 1)
      return GemmMicroN<V, MR - 1>(mr, panel, kc, xp, c, ldc, out, ldo, nr);
  }
}

// Output columns (weight rows) per GEMM row block: the partial sums of a
// block live in a contiguous scratch [n][kGemmRb] between column blocks.
constexpr int64_t kGemmRb = 64;

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
  // Partial sums over the column blocks before the last go to a scratch
  // with a short row stride: accumulated in y itself (a row stride of
  // thousands of floats), the micro-tiles' rows fall into a few cache sets
  // and are evicted to L3 between column blocks. The last column block
  // writes y.
  thread_local std::vector<float> scratch;
  const bool blocked = w.cols > KC;
  if (blocked && scratch.size() < size_t(a.n) * kGemmRb)
    scratch.resize(size_t(a.n) * kGemmRb);
  for (int64_t rb = a.r0; rb < a.r1; rb += kGemmRb) {
    const int64_t rb_end = std::min(a.r1, rb + kGemmRb);
    for (int64_t k0 = 0; k0 < w.cols; k0 += KC) {
      const int64_t kc = std::min(KC, w.cols - k0);
      const bool last = k0 + kc >= w.cols;
      for (int64_t r = rb; r < rb_end; r += NR) {
        const int nr = int(std::min<int64_t>(NR, rb_end - r));
        PackPanel<V, T>(w, r, nr, k0, kc, kend, panel);
        float* part = blocked ? scratch.data() + (r - rb) : nullptr;
        for (int g = 0; g < groups; ++g) {
          const int b = g * MR;
          float* out = last ? a.y + b * a.ldy + r : part + b * kGemmRb;
          const int64_t ldo = last ? a.ldy : kGemmRb;
          GemmMicroN<V>(std::min(MR, a.n - b), panel, kc,
                        a.xpack + (int64_t(g) * w.cols + k0) * MR,
                        k0 > 0 ? part + b * kGemmRb : nullptr, kGemmRb, out,
                        ldo, nr);
        }
      }
    }
  }
}

#include "engine/kernels_int_impl.h"  // NOLINT(build/include)

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

template <class V>
constexpr int kScoreNq = V::kW == 16 ? 6 : 3;  // queries per score tile

template <class V, int NQ = kScoreNq<V>>
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
    for (int j = 0; j < nq; j += kScoreNq<V>)
      ScoresTileN<V>(std::min(kScoreNq<V>, nq - j), q + j * ldq, ldq, k, ldk, p,
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

// exp(x) per lane: x = n ln2 + r with n = round(x / ln2) and |r| <= ln2 / 2
// (ln2 split in two constants so n ln2 is exact enough), e^r by Cephes'
// degree-6 expf polynomial, 2^n through the exponent bits. x is clamped to
// [-87.3, 88] (n stays a normal exponent); below -87.3 the result is 0.
template <class V>
inline typename V::F ExpV(typename V::F x) {
  using F = typename V::F;
  const F c = V::Max(V::Min(x, V::Set1(88.0f)), V::Set1(-87.3f));
  const F n = V::Round(V::Mul(c, V::Set1(1.44269504088896341f)));
  F r = V::Fma(n, V::Set1(-0.693359375f), c);
  r = V::Fma(n, V::Set1(2.12194440e-4f), r);
  F p = V::Set1(1.9875691500e-4f);
  p = V::Fma(p, r, V::Set1(1.3981999507e-3f));
  p = V::Fma(p, r, V::Set1(8.3334519073e-3f));
  p = V::Fma(p, r, V::Set1(4.1665795894e-2f));
  p = V::Fma(p, r, V::Set1(1.6666665459e-1f));
  p = V::Fma(p, r, V::Set1(5.0000001201e-1f));
  const F e = V::Add(V::Fma(p, V::Mul(r, r), r), V::Set1(1.0f));
  return V::ZeroBelow(V::Mul(e, V::Pow2(n)), x, -87.3f);
}

template <class V>
inline void ExpImpl(const float* x, float* out, int64_t n) {
  constexpr int W = V::kW;
  int64_t i = 0;
  for (; i + W <= n; i += W) V::Store(out + i, ExpV<V>(V::Load(x + i)));
  if (i < n) {
    alignas(64) float t[W] = {};
    for (int64_t j = i; j < n; ++j) t[j - i] = x[j];
    V::Store(t, ExpV<V>(V::Load(t)));
    for (int64_t j = i; j < n; ++j) out[j] = t[j - i];
  }
}

// Softmax of one row in place: a max pass, an exp(x - max) pass that also
// sums, a scaling pass (the tail padded with -inf, whose exp is 0).
template <class V>
inline void SoftmaxImpl(float* x, int n) {
  using F = typename V::F;
  constexpr int W = V::kW;
  const int nv = n - n % W;
  F m = V::Set1(-INFINITY);
  for (int p = 0; p < nv; p += W) m = V::Max(m, V::Load(x + p));
  float maxv = V::ReduceMax(m);
  for (int p = nv; p < n; ++p) maxv = std::max(maxv, x[p]);
  const F mv = V::Set1(maxv);
  F s = V::Zero();
  for (int p = 0; p < nv; p += W) {
    const F e = ExpV<V>(V::Sub(V::Load(x + p), mv));
    V::Store(x + p, e);
    s = V::Add(s, e);
  }
  alignas(64) float t[W];
  if (nv < n) {
    for (int p = 0; p < W; ++p) t[p] = nv + p < n ? x[nv + p] : -INFINITY;
    const F e = ExpV<V>(V::Sub(V::Load(t), mv));
    V::Store(t, e);
    s = V::Add(s, e);
  }
  const F inv = V::Set1(1.0f / V::Reduce(s));
  for (int p = 0; p < nv; p += W) V::Store(x + p, V::Mul(V::Load(x + p), inv));
  if (nv < n) {
    V::Store(t, V::Mul(V::Load(t), inv));
    for (int p = nv; p < n; ++p) x[p] = t[p - nv];
  }
}

// g <- g / (1 + exp(-g)) * u.
template <class V>
inline typename V::F SiluMulV(typename V::F g, typename V::F u) {
  const typename V::F e = ExpV<V>(V::Sub(V::Zero(), g));
  return V::Mul(V::Div(g, V::Add(V::Set1(1.0f), e)), u);
}

template <class V>
inline void SiluMulImpl(float* g, const float* u, int64_t n) {
  constexpr int W = V::kW;
  constexpr auto step = SiluMulV<V>;
  int64_t i = 0;
  for (; i + W <= n; i += W)
    V::Store(g + i, step(V::Load(g + i), V::Load(u + i)));
  if (i < n) {
    alignas(64) float tg[W] = {}, tu[W] = {};
    for (int64_t j = i; j < n; ++j) tg[j - i] = g[j], tu[j - i] = u[j];
    V::Store(tg, step(V::Load(tg), V::Load(tu)));
    for (int64_t j = i; j < n; ++j) g[j] = tg[j - i];
  }
}

#include "engine/kernels_kquant_impl.h"  // NOLINT(build/include)

template <class V>
inline void MatMulRowsImpl(const RowRangeArgs& a) {
  if (a.xq != nullptr && a.w->dtype == DType::kQ4_K)
    return RunIntKQuant<V, KqAsymPolicy<false>>(a);
  if (a.xq != nullptr && a.w->dtype == DType::kQ5_K)
    return RunIntKQuant<V, KqAsymPolicy<true>>(a);
  if (a.xq != nullptr && a.w->dtype == DType::kQ6_K)
    return RunIntKQuant<V, KqQ6Policy>(a);
  if (a.xq != nullptr && a.w->dtype == DType::kQ8_0)
    return RunInt<V, DType::kQ8_0>(a);
  if (a.xq16 != nullptr && a.w->dtype == DType::kI8) return RunIntI8x16<V>(a);
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
