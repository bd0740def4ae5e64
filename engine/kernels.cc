#include "engine/kernels.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <algorithm>
#include <atomic>
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
  }
  return "?";
}

KernelIsa DetectKernelIsa() {
  KernelIsa best = KernelIsa::kScalar;
  if (CpuHas(KernelIsa::kAvx512)) {
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
  }
  return 0;
}

void MatMulRowsScalar(const RowRangeArgs& a) {
  const WeightMatrix& w = *a.w;
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = a.r0; r < a.r1; ++r) {
    for (int64_t k = 0; k < w.cols; ++k)
      row[size_t(k)] = DequantElement(w, r, k);
    for (int b = 0; b < a.n; ++b) {
      const float* x = a.x + b * a.ldx;
      float acc = 0;
      for (int64_t k = 0; k < w.cols; ++k) acc += row[size_t(k)] * x[k];
      a.y[b * a.ldy + r] = acc;
    }
  }
}

}  // namespace internal

void DequantizeRow(const WeightMatrix& w, int64_t row, float* out) {
  if (w.dtype == DType::kF32) {
    std::memcpy(out, w.data + row * w.row_bytes(), size_t(w.cols) * 4);
    return;
  }
  for (int64_t k = 0; k < w.cols; ++k)
    out[k] = internal::DequantElement(w, row, k);
}

void MatMul(ThreadPool* pool, int n, const std::vector<MatMulJob>& jobs) {
  if (n <= 0 || jobs.empty()) return;
  KernelIsa isa = g_isa.load(std::memory_order_relaxed);
  auto kernel = isa == KernelIsa::kAvx512 ? internal::MatMulRowsAvx512
                : isa == KernelIsa::kAvx2 ? internal::MatMulRowsAvx2
                                          : internal::MatMulRowsScalar;
  // Rows of all jobs are cut into chunks of about kChunkBytes of weights
  // (whole 16-row blocks), handed out dynamically: a thread streams a few
  // hundred KiB sequentially per chunk, and a descheduled thread's share is
  // taken by the others.
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
    int64_t rows_per_chunk =
        std::max<int64_t>(16, (kChunkBytes / rb) / 16 * 16);
    for (int64_t r = 0; r < w.rows; r += rows_per_chunk) {
      chunks.push_back(Chunk{int(j), r, std::min(w.rows, r + rows_per_chunk)});
    }
    total_bytes += w.rows * w.row_bytes();
  }
  auto run_chunk = [&](int64_t c) {
    const Chunk& ch = chunks[size_t(c)];
    const MatMulJob& j = jobs[size_t(ch.job)];
    internal::RowRangeArgs args{j.w, j.x, j.ldx, j.y, j.ldy, n, ch.r0, ch.r1};
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
