// Matrix kernels: Y = X · Wᵀ with W in any `DType`, dequantized on the fly.
//
// A `WeightMatrix` is a row-major [rows, cols] view of weight bytes (usually
// pointing into a memory-mapped file) plus, for kI8/kI16/kF8E4M3, one float
// scale per row. `MatMul` multiplies a batch of n activation rows by it:
//
//   y[b * ldy + r] = sum_k x[b * ldx + k] * W[r, k]     for b < n, r < rows
//
// The weight matrix is streamed from memory once per call however large n
// is. For n = 1 (memory-bound) rows are read strictly in order, one row at a
// time with 4 accumulators, which is what lets the hardware prefetcher reach
// full bandwidth. For small batches (decode) 4-row x 6-activation register
// tiles (x2 with AVX2) dequantize each weight vector once and use it for
// every activation row. From 32 rows on (prefill) the product is a packed
// GEMM: panels of weights dequantized and transposed into L1, 12 x 32 (6 x 16
// with AVX2) register micro-tiles, column blocks that keep the activations
// in L2. kernels_impl.h describes the three algorithms; they are written once
// over a vector-traits type and compiled per target.
//
// Q8_0 weights use integer dot products at every batch size: MatMul
// quantizes the activations to int8 per 32-element block first (llama.cpp's
// q8_0 x q8_0) and the kernels multiply with vpmaddubsw/vpmaddwd (vpdpbusd
// with AVX-512 VNNI): register tiles for decode, and from 32 rows on an
// integer GEMM over packed activations and int8 weight panels. kI8 (per-row
// scaled) weights at batch 1 multiply int16 activations (one scale per row)
// with vpmaddwd (vpdpwssd with VNNI), one byte per weight streamed; their
// small batches and prefill stay on the dequantizing float tiles and GEMM:
// int8 activations exceeded the int8 recipes' logit-error bound (0.22 vs
// 0.15 on the quantize test's model, per row and per 32-block alike), and
// int16 ones give no arithmetic gain over float FMAs once a dequantized
// weight is reused. The scalar path computes the same integer sums and is
// the reference the vector paths are tested against.
//
// Work is split by output rows into chunks of about 256 KiB of weights that
// the pool's threads claim dynamically (ThreadPool::ParallelFor); several
// matrices that share an input — q/k/v, gate/up — go in one call so one
// fork-join covers them. Four implementations exist and are chosen once at run
// time with __builtin_cpu_supports: AVX-512 (F, BW, VL) with VNNI, the same
// without VNNI, AVX2 + FMA + F16C, and portable scalar C++. `SetKernelIsa`
// overrides the choice (tests compare the paths; the benchmark reports which
// ran). The environment variable
// HANGAR_ENGINE_ISA=scalar|avx2|avx512|avx512vnni does the same at startup.
//
// Thread-safety: the functions are reentrant; the pool is not (see
// thread_pool.h).
#ifndef HANGAR_ENGINE_KERNELS_H_
#define HANGAR_ENGINE_KERNELS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "engine/dtype.h"
#include "engine/thread_pool.h"

namespace hangar::engine {

struct WeightMatrix {
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const uint8_t* data = nullptr;  // rows * DTypeRowBytes(dtype, cols) bytes
  const float* scales = nullptr;  // [rows] for kI8/kI16/kF8E4M3, else null

  int64_t row_bytes() const { return DTypeRowBytes(dtype, cols); }
  int64_t bytes() const { return rows * row_bytes() + (scales ? rows * 4 : 0); }
};

// One matrix product of a MatMul call.
struct MatMulJob {
  const WeightMatrix* w = nullptr;
  const float* x = nullptr;  // [n, ldx]
  int64_t ldx = 0;
  float* y = nullptr;  // [n, ldy]
  int64_t ldy = 0;
  const float* bias = nullptr;  // optional [rows], added to every output row
};

enum class KernelIsa { kScalar, kAvx2, kAvx512, kAvx512Vnni };
const char* KernelIsaName(KernelIsa isa);
// The best ISA this CPU supports.
KernelIsa DetectKernelIsa();
KernelIsa ActiveKernelIsa();
// Returns false (and changes nothing) if the CPU lacks the ISA.
bool SetKernelIsa(KernelIsa isa);

// Runs every job for n activation rows, splitting output rows of all jobs
// across the pool. `pool` may be null (single-threaded).
void MatMul(ThreadPool* pool, int n, const std::vector<MatMulJob>& jobs);

// Attention for a block of nq queries on the active ISA; every key/value
// row is read once per block:
//   scores[j * lds + p] = scale * dot(q + j * ldq, k + p * ldk)  (p < n)
void AttentionScores(const float* q, int64_t ldq, int nq, const float* k,
                     int64_t ldk, int n, int d, float scale, float* scores,
                     int64_t lds);
//   out[j * ldo + i] = sum_p w[j * ldw + p] * v[p * ldv + i]  (i < d)
void AttentionValues(const float* w, int64_t ldw, int nq, const float* v,
                     int64_t ldv, int n, int d, float* out, int64_t ldo);

// Elementwise functions on the active ISA. The vector exp reduces
// x = n ln2 + r, evaluates a degree-6 polynomial for e^r and scales by 2^n
// through the exponent bits (relative error below 1e-6 against std::exp);
// x < -87.3 gives 0 and x > 88 saturates at e^88. The scalar ISA uses
// std::exp.
//   out[i] = exp(x[i])  (i < n; out may equal x)
void Exp(const float* x, float* out, int64_t n);
//   x[0..n) <- softmax(x[0..n)): exp(x - max), then divided by the sum
void Softmax(float* x, int n);
//   g[i] <- g[i] / (1 + exp(-g[i])) * u[i]  (SiLU(gate) * up, SwiGLU)
void SiluMul(float* g, const float* u, int64_t n);

// Dequantizes row `row` of `w` into `out[0..cols)` (embedding lookups).
void DequantizeRow(const WeightMatrix& w, int64_t row, float* out);

// ---------------------------------------------------------------------------
// Implementation details shared with kernels_*.cc.
namespace internal {
// y[b*ldy + r] = dot(W[r], x[b]) for r in [r0, r1), b in [0, n).
struct RowRangeArgs {
  const WeightMatrix* w;
  const float* x;
  int64_t ldx;
  float* y;
  int64_t ldy;
  int n;
  int64_t r0, r1;
  // For kQ8_0 weights: the activations quantized to int8 ([n, ldxq])
  // with their scales, one per 32 columns (xscale[b * ldxs + k / 32]); null
  // means the float path.
  const int8_t* xq = nullptr;
  int64_t ldxq = 0;
  const float* xscale = nullptr;
  int64_t ldxs = 0;
  // For float-path weights with n >= kGemmMinRows on the vector ISAs: x
  // packed by PackActivations (the packed GEMM runs when this is set).
  const float* xpack = nullptr;
  // For kQ8_0 and kI8 weights with n >= kGemmMinRows on the vector ISAs: xq
  // packed by PackIntActivations for the integer GEMM (it runs when set).
  const uint8_t* xqpack = nullptr;
  const float* xspack = nullptr;
  // For kI8 weights at n = 1: the activation row quantized to int16 with one
  // scale (QuantizeActivations16); null means another path.
  const int16_t* xq16 = nullptr;
  float xscale16 = 0;
};
void MatMulRowsScalar(const RowRangeArgs& a);
void MatMulRowsAvx2(const RowRangeArgs& a);
void MatMulRowsAvx512(const RowRangeArgs& a);
void MatMulRowsAvx512Vnni(const RowRangeArgs& a);
void AttentionScoresAvx2(const float* q, int64_t ldq, int nq, const float* k,
                         int64_t ldk, int n, int d, float scale, float* scores,
                         int64_t lds);
void AttentionValuesAvx2(const float* w, int64_t ldw, int nq, const float* v,
                         int64_t ldv, int n, int d, float* out, int64_t ldo);
void AttentionScoresAvx512(const float* q, int64_t ldq, int nq, const float* k,
                           int64_t ldk, int n, int d, float scale,
                           float* scores, int64_t lds);
void AttentionValuesAvx512(const float* w, int64_t ldw, int nq, const float* v,
                           int64_t ldv, int n, int d, float* out, int64_t ldo);
void ExpAvx2(const float* x, float* out, int64_t n);
void SoftmaxAvx2(float* x, int n);
void SiluMulAvx2(float* g, const float* u, int64_t n);
void ExpAvx512(const float* x, float* out, int64_t n);
void SoftmaxAvx512(float* x, int n);
void SiluMulAvx512(float* g, const float* u, int64_t n);
// From this many activation rows on, the vector ISAs run a packed GEMM.
constexpr int kGemmMinRows = 32;
// Activation rows per GEMM micro-tile of `isa` (0 for scalar).
int GemmTileRows(KernelIsa isa);
// Packs x [n, k] (row stride ldx) for the GEMM: groups of `mr` rows, each
// [k][mr] (zero-filled past row n), group g at out + g * k * mr.
void PackActivations(const float* x, int64_t ldx, int n, int64_t k, int mr,
                     float* out);
// Activation rows per integer-GEMM micro-tile of `isa` (0 for scalar).
int IntGemmTileRows(KernelIsa isa);
// Packs int8 activations q [n, k] (row stride ldq; scales one per 32
// columns, row stride lds) for the integer GEMM: groups of `mr` rows, group g
// at qout + g * k * mr as [k / 4][mr] runs of 4 bytes, and its scales at
// sout + g * (k / 32) * mr as [k / 32][mr] (rows past n zero). `bias128`
// stores q + 128 as u8 (for vpdpbusd's unsigned operand).
void PackIntActivations(const int8_t* q, int64_t ldq, const float* scale,
                        int64_t lds, int n, int64_t k, int mr, bool bias128,
                        uint8_t* qout, float* sout);
// Quantizes n rows of k activations (k a multiple of 32) to int8:
// per_block ? one scale per 32 values : one per row, scale = max|x| / 127.
void QuantizeActivations(const float* x, int64_t ldx, int n, int64_t k,
                         bool per_block, int8_t* q, int64_t ldq, float* scale,
                         int64_t lds);
// Quantizes k activations to int16 with one scale, max|x| / 32767 (the
// int8-weight decode path: int8 activations there would exceed the int8
// recipes' logit-error bound). Returns the scale.
float QuantizeActivations16(const float* x, int64_t k, int16_t* q);
// Scalar value of element (row, k), including the row scale.
float DequantElement(const WeightMatrix& w, int64_t row, int64_t k);
}  // namespace internal

}  // namespace hangar::engine

#endif  // HANGAR_ENGINE_KERNELS_H_
