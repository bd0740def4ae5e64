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
// full bandwidth. For n > 1 (compute-bound) 4-row x 4-activation register
// tiles (2 with AVX2) over 256-column chunks dequantize each weight vector
// once and reuse it for every activation row while it sits in L1. That is
// what makes batched decoding nearly free until the kernel is compute-bound.
//
// Work is split by output rows into chunks of about 256 KiB of weights that
// the pool's threads claim dynamically (ThreadPool::ParallelFor); several
// matrices that share an input — q/k/v, gate/up — go in one call so one
// fork-join covers them. Three implementations exist and are chosen once at run
// time with __builtin_cpu_supports: AVX-512 (F, BW, VL), AVX2 + FMA + F16C, and
// portable scalar C++. `SetKernelIsa` overrides the choice (tests compare
// the paths; the benchmark reports which ran). The environment variable
// HANGAR_ENGINE_ISA=scalar|avx2|avx512 does the same at startup.
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

enum class KernelIsa { kScalar, kAvx2, kAvx512 };
const char* KernelIsaName(KernelIsa isa);
// The best ISA this CPU supports.
KernelIsa DetectKernelIsa();
KernelIsa ActiveKernelIsa();
// Returns false (and changes nothing) if the CPU lacks the ISA.
bool SetKernelIsa(KernelIsa isa);

// Runs every job for n activation rows, splitting output rows of all jobs
// across the pool. `pool` may be null (single-threaded).
void MatMul(ThreadPool* pool, int n, const std::vector<MatMulJob>& jobs);

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
};
void MatMulRowsScalar(const RowRangeArgs& a);
void MatMulRowsAvx2(const RowRangeArgs& a);
void MatMulRowsAvx512(const RowRangeArgs& a);
// Scalar value of element (row, k), including the row scale.
float DequantElement(const WeightMatrix& w, int64_t row, int64_t k);
}  // namespace internal

}  // namespace hangar::engine

#endif  // HANGAR_ENGINE_KERNELS_H_
