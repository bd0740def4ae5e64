#include "engine/kernels.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::engine {
namespace {

struct Matrix {
  WeightMatrix w;
  std::string bytes;
  std::vector<float> scales;
};

// Builds a rows x cols matrix of `dtype` from random values.
Matrix Make(DType dtype, int rows, int cols, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  Matrix m;
  m.w.dtype = dtype;
  m.w.rows = rows;
  m.w.cols = cols;
  m.bytes.resize(size_t(DTypeRowBytes(dtype, cols) * rows));
  uint8_t* p = reinterpret_cast<uint8_t*>(m.bytes.data());
  for (int r = 0; r < rows; ++r) {
    uint8_t* row = p + r * DTypeRowBytes(dtype, cols);
    if (DTypeHasRowScale(dtype)) m.scales.push_back(0.01f + 0.001f * r);
    for (int k = 0; k < cols; ++k) {
      float v = dist(rng);
      switch (dtype) {
        case DType::kF32:
          std::memcpy(row + 4 * k, &v, 4);
          break;
        case DType::kF16: {
          uint16_t h = F32ToF16(v);
          std::memcpy(row + 2 * k, &h, 2);
          break;
        }
        case DType::kBF16: {
          uint16_t h = F32ToBf16(v);
          std::memcpy(row + 2 * k, &h, 2);
          break;
        }
        case DType::kI8:
          row[k] = uint8_t(int8_t(std::lround(v * 40)));
          break;
        case DType::kI16: {
          int16_t q = int16_t(std::lround(v * 9000));
          std::memcpy(row + 2 * k, &q, 2);
          break;
        }
        case DType::kF8E4M3:
          row[k] = F32ToFp8E4M3(v * 100);
          break;
        case DType::kQ8_0: {
          uint8_t* b = row + (k / 32) * 34;
          if (k % 32 == 0) {
            uint16_t d = F32ToF16(0.02f + 0.001f * r);
            std::memcpy(b, &d, 2);
          }
          b[2 + k % 32] =
              uint8_t(int8_t(std::lround(std::clamp(v * 40, -127.0f, 127.0f))));
          break;
        }
        case DType::kQ4_0: {
          uint8_t* b = row + (k / 32) * 18;
          if (k % 32 == 0) {
            uint16_t d = F32ToF16(0.1f + 0.01f * r);
            std::memcpy(b, &d, 2);
            std::memset(b + 2, 0, 16);
          }
          int q = int(std::clamp(std::lround(v * 3 + 8), 0L, 15L));
          int j = k % 32;
          if (j < 16) {
            b[2 + j] = uint8_t((b[2 + j] & 0xf0) | q);
          } else {
            b[2 + j - 16] = uint8_t((b[2 + j - 16] & 0x0f) | (q << 4));
          }
          break;
        }
      }
    }
  }
  m.w.data = p;
  m.w.scales = m.scales.empty() ? nullptr : m.scales.data();
  return m;
}

class KernelsTest
    : public ::testing::TestWithParam<std::tuple<DType, KernelIsa>> {
 protected:
  void TearDown() override { SetKernelIsa(DetectKernelIsa()); }
};

// Q8_0 weights take the integer path: the activations are quantized to
// int8 first (per 32-column block).
bool IntegerPath(DType dtype, int cols) {
  return dtype == DType::kQ8_0 && cols % 32 == 0;
}

// int8 weights at n = 1 multiply int16 activations (one scale per row): the
// error bound is sum_k |w_k| * max|x| / 32767 / 2.
double Int16QuantizationBound(const WeightMatrix& w, int r, const float* x,
                              int cols) {
  double amax = 0, wsum = 0;
  for (int k = 0; k < cols; ++k) {
    amax = std::max(amax, std::fabs(double(x[k])));
    wsum += std::fabs(double(internal::DequantElement(w, r, k)));
  }
  return wsum * amax / 32767.0 / 2.0;
}

// The error bound of activation quantization for one output: every
// activation moves by at most half its 32-block's step (max|x| / 127 / 2), so
// |y - y_exact| <= sum_k |w_k| * step_k / 2 (plus float rounding).
double QuantizationBound(const WeightMatrix& w, int r, const float* x,
                         int cols) {
  const int group = 32;
  double bound = 0;
  for (int g0 = 0; g0 < cols; g0 += group) {
    double amax = 0;
    for (int k = g0; k < g0 + group; ++k)
      amax = std::max(amax, std::fabs(double(x[k])));
    for (int k = g0; k < g0 + group; ++k)
      bound += std::fabs(double(internal::DequantElement(w, r, k))) * amax /
               127.0 / 2.0;
  }
  return bound;
}

TEST_P(KernelsTest, MatchesScalarDefinition) {
  auto [dtype, isa] = GetParam();
  if (!SetKernelIsa(isa)) GTEST_SKIP() << "CPU lacks " << KernelIsaName(isa);
  std::mt19937 rng(7);
  bool block = dtype == DType::kQ8_0 || dtype == DType::kQ4_0;
  ThreadPool pool(2);
  // 160 and 320 columns span several GEMM column blocks; 40 leaves a
  // remainder past the last vector.
  for (int cols : {96, 160, 40, 320}) {
    if (block && cols % 32 != 0) continue;
    Matrix m = Make(dtype, 37, cols, rng);
    // n >= 32 runs the packed GEMM (with row and column remainders).
    for (int n : {1, 2, 3, 5, 8, 13, 33, 45}) {
      std::vector<float> x(size_t(n) * cols);
      std::normal_distribution<float> dist;
      for (float& v : x) v = dist(rng);
      std::vector<float> bias(37);
      for (float& v : bias) v = dist(rng);
      std::vector<float> y(size_t(n) * 40, -1.0f);
      MatMul(&pool, n,
             {MatMulJob{&m.w, x.data(), cols, y.data(), 40, bias.data()}});
      for (int b = 0; b < n; ++b) {
        for (int r = 0; r < 37; ++r) {
          double want = bias[size_t(r)], mag = 0;
          for (int k = 0; k < cols; ++k) {
            double t = double(internal::DequantElement(m.w, r, k)) *
                       x[size_t(b * cols + k)];
            want += t;
            mag += std::fabs(t);
          }
          double tol = 1e-4 * (1 + std::fabs(want)) + 1e-6 * mag;
          if (IntegerPath(dtype, cols))
            tol += QuantizationBound(m.w, r, x.data() + b * cols, cols);
          if (dtype == DType::kI8 && n == 1)
            tol += Int16QuantizationBound(m.w, r, x.data(), cols);
          ASSERT_NEAR(y[size_t(b * 40 + r)], want, tol)
              << DTypeName(dtype) << " " << KernelIsaName(isa) << " n=" << n
              << " cols=" << cols << " r=" << r;
        }
        // Columns past `rows` in y are untouched.
        EXPECT_EQ(y[size_t(b * 40 + 38)], -1.0f);
      }
    }
  }
}

// Small batches (n < kGemmMinRows) run as one pass over the weights: for each
// group of 4 weight rows, tiles of 6 (AVX-512) or 3 (AVX2) activation rows and
// a narrower last tile, single weight rows past the last group. Every n from 1
// to 17, 31, row counts that leave each remainder, on every ISA, against the
// definition.
TEST(KernelsSmallBatchTest, EveryBatchSizeAndRowRemainderMatchesTheDefinition) {
  std::mt19937 rng(11);
  ThreadPool pool(2);
  for (KernelIsa isa : {KernelIsa::kScalar, KernelIsa::kAvx2,
                        KernelIsa::kAvx512, KernelIsa::kAvx512Vnni}) {
    if (!SetKernelIsa(isa)) continue;
    for (DType dtype : {DType::kF32, DType::kF16}) {
      for (int rows : {1, 2, 5, 7, 12}) {
        // 1000 columns: several column blocks (their partial sums added in
        // y) and a tail past the last vector.
        for (int cols : {40, 96, 1000}) {
          Matrix m = Make(dtype, rows, cols, rng);
          std::vector<int> ns;
          for (int n = 1; n <= 17; ++n) ns.push_back(n);
          ns.push_back(31);
          for (int n : ns) {
            std::vector<float> x(size_t(n) * cols);
            std::normal_distribution<float> dist;
            for (float& v : x) v = dist(rng);
            std::vector<float> y(size_t(n) * (rows + 1), -1.0f);
            MatMul(&pool, n,
                   {MatMulJob{&m.w, x.data(), cols, y.data(), rows + 1}});
            for (int b = 0; b < n; ++b) {
              for (int r = 0; r < rows; ++r) {
                double want = 0, mag = 0;
                for (int k = 0; k < cols; ++k) {
                  double t = double(internal::DequantElement(m.w, r, k)) *
                             x[size_t(b * cols + k)];
                  want += t;
                  mag += std::fabs(t);
                }
                ASSERT_NEAR(y[size_t(b * (rows + 1) + r)], want,
                            1e-5 * (1 + std::fabs(want)) + 1e-6 * mag)
                    << DTypeName(dtype) << " " << KernelIsaName(isa)
                    << " n=" << n << " rows=" << rows << " cols=" << cols
                    << " b=" << b << " r=" << r;
              }
              EXPECT_EQ(y[size_t(b * (rows + 1) + rows)], -1.0f);
            }
          }
        }
      }
    }
  }
  SetKernelIsa(DetectKernelIsa());
}

// The vector exp against std::exp over [-100, 90] (every ISA, lengths that
// leave each tail): relative error below 2e-6 where the result is a normal
// float, 0 below -87.3, saturation (finite, >= e^88) above 88.
TEST(KernelsExpTest, MatchesStdExpOnEveryIsa) {
  std::vector<float> x;
  for (int i = 0; i <= 190000; ++i) x.push_back(-100.0f + i * 0.001f);
  x.push_back(-INFINITY);
  x.push_back(0.0f);
  for (KernelIsa isa : {KernelIsa::kScalar, KernelIsa::kAvx2,
                        KernelIsa::kAvx512, KernelIsa::kAvx512Vnni}) {
    if (!SetKernelIsa(isa)) continue;
    for (size_t len : {x.size(), size_t(13), size_t(1)}) {
      std::vector<float> y(len + 1, -1.0f);
      Exp(x.data() + (x.size() - len), y.data(), int64_t(len));
      EXPECT_EQ(y[len], -1.0f);
      for (size_t i = 0; i < len; ++i) {
        const float xi = x[x.size() - len + i];
        const double want = std::exp(double(xi));
        if (xi < -87.3f) {
          if (isa != KernelIsa::kScalar) ASSERT_EQ(y[i], 0.0f) << xi;
        } else if (xi > 88.0f) {
          ASSERT_TRUE(std::isfinite(y[i]) || isa == KernelIsa::kScalar) << xi;
          ASSERT_GE(y[i], 0.999999 * std::exp(88.0)) << xi;
        } else if (want > 1.2e-38) {
          ASSERT_NEAR(y[i] / want, 1.0, 2e-6)
              << KernelIsaName(isa) << " x=" << xi;
        }
      }
    }
  }
  SetKernelIsa(DetectKernelIsa());
}

// Softmax and SiLU(gate) * up on every ISA against the double-precision
// definition, for lengths around the vector widths.
TEST(KernelsExpTest, SoftmaxAndSiluMulMatchTheDefinition) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 8.0f);
  for (KernelIsa isa : {KernelIsa::kScalar, KernelIsa::kAvx2,
                        KernelIsa::kAvx512, KernelIsa::kAvx512Vnni}) {
    if (!SetKernelIsa(isa)) continue;
    for (int n : {1, 2, 7, 8, 9, 15, 16, 17, 33, 100, 513}) {
      std::vector<float> x(size_t(n) + 1);
      for (float& v : x) v = dist(rng);
      x[size_t(n)] = 12345.0f;
      std::vector<float> s = x;
      Softmax(s.data(), n);
      double m = -INFINITY, sum = 0;
      for (int p = 0; p < n; ++p) m = std::max(m, double(x[size_t(p)]));
      for (int p = 0; p < n; ++p) sum += std::exp(double(x[size_t(p)]) - m);
      for (int p = 0; p < n; ++p) {
        const double want = std::exp(double(x[size_t(p)]) - m) / sum;
        ASSERT_NEAR(s[size_t(p)], want, 4e-6 * want + 1e-30)
            << KernelIsaName(isa) << " n=" << n << " p=" << p;
      }
      EXPECT_EQ(s[size_t(n)], 12345.0f);

      std::vector<float> u(size_t(n) + 1);
      for (float& v : u) v = dist(rng);
      std::vector<float> g = x;
      SiluMul(g.data(), u.data(), n);
      for (int i = 0; i < n; ++i) {
        const double gi = x[size_t(i)];
        const double want = gi / (1.0 + std::exp(-gi)) * u[size_t(i)];
        ASSERT_NEAR(g[size_t(i)], want, 4e-6 * std::fabs(want) + 1e-30)
            << KernelIsaName(isa) << " n=" << n << " i=" << i;
      }
      EXPECT_EQ(g[size_t(n)], 12345.0f);
    }
  }
  SetKernelIsa(DetectKernelIsa());
}

// The packed GEMM over several column blocks (1000 columns: partial sums kept
// in its scratch between blocks, an 8-column tail past the last 16-wide
// vector) and several 64-row blocks (150 rows: a partial last panel), with a
// partial last micro-tile (45 rows), on every vector ISA.
TEST(KernelsGemmTest, ColumnAndRowBlocksMatchTheDefinition) {
  std::mt19937 rng(5);
  ThreadPool pool(2);
  const int rows = 150, cols = 1000, n = 45;
  for (DType dtype : {DType::kF32, DType::kF16}) {
    Matrix m = Make(dtype, rows, cols, rng);
    std::vector<float> x(size_t(n) * cols);
    std::normal_distribution<float> dist;
    for (float& v : x) v = dist(rng);
    for (KernelIsa isa :
         {KernelIsa::kAvx2, KernelIsa::kAvx512, KernelIsa::kAvx512Vnni}) {
      if (!SetKernelIsa(isa)) continue;
      std::vector<float> y(size_t(n) * (rows + 3), -1.0f);
      MatMul(&pool, n, {MatMulJob{&m.w, x.data(), cols, y.data(), rows + 3}});
      for (int b = 0; b < n; ++b) {
        for (int r = 0; r < rows; ++r) {
          double want = 0, mag = 0;
          for (int k = 0; k < cols; ++k) {
            const double t = double(internal::DequantElement(m.w, r, k)) *
                             x[size_t(b * cols + k)];
            want += t;
            mag += std::fabs(t);
          }
          ASSERT_NEAR(y[size_t(b * (rows + 3) + r)], want, 1e-6 * mag + 1e-5)
              << DTypeName(dtype) << " " << KernelIsaName(isa) << " b=" << b
              << " r=" << r;
        }
        EXPECT_EQ(y[size_t(b * (rows + 3) + rows)], -1.0f);
      }
    }
  }
  SetKernelIsa(DetectKernelIsa());
}

// The vector integer paths compute the scalar reference's integer sums: only
// the float accumulation order may differ. Q8_0: tiles (n < kGemmMinRows)
// and the integer GEMM (from kGemmMinRows rows on: with a partial last
// micro-tile, a partial last panel of rows, and 832 columns for a second,
// partial column block of the panel). int8: int16 activations at n = 1
// in tiles of 4 weight rows and single rows past them (1000 columns: a flush
// of the int32 sums at 1024 is not reached, 1030 columns pass it and leave a
// 6-column tail; 48 and 1040 end on a lone 16-column step).
TEST_P(KernelsTest, IntegerPathsMatchTheScalarReference) {
  auto [dtype, isa] = GetParam();
  if (dtype != DType::kI8 && dtype != DType::kQ8_0) GTEST_SKIP();
  if (!SetKernelIsa(isa)) GTEST_SKIP() << "CPU lacks " << KernelIsaName(isa);
  std::mt19937 rng(11);
  ThreadPool pool(2);
  for (int cols : {256, 832, 1000, 1030, 48, 1040}) {
    if (dtype == DType::kQ8_0 && cols % 32 != 0) continue;
    const int rows = 22 + cols / 32;
    Matrix m = Make(dtype, rows, cols, rng);
    for (int n : {1, 4, 7, 31, 32, 45, 77}) {
      // int8's float paths (n > 1): MatchesScalarDefinition.
      if (dtype == DType::kI8 && n != 1) continue;
      std::vector<float> x(size_t(n) * cols);
      std::normal_distribution<float> dist;
      for (float& v : x) v = dist(rng);
      std::vector<float> got(size_t(n) * rows), want(size_t(n) * rows);
      MatMul(&pool, n, {MatMulJob{&m.w, x.data(), cols, got.data(), rows}});
      ASSERT_TRUE(SetKernelIsa(KernelIsa::kScalar));
      MatMul(&pool, n, {MatMulJob{&m.w, x.data(), cols, want.data(), rows}});
      ASSERT_TRUE(SetKernelIsa(isa));
      for (size_t i = 0; i < got.size(); ++i)
        // Float rounding of the per-block sums grows with the row length.
        ASSERT_NEAR(got[i], want[i],
                    1e-5 * (1 + std::fabs(want[i])) * (cols / 256.0))
            << DTypeName(dtype) << " " << KernelIsaName(isa) << " n=" << n
            << " cols=" << cols << " i=" << i;
    }
  }
}

// The vector ISAs quantize per block with AVX2; the bytes and scales equal
// the scalar loop's.
TEST(QuantizeActivationsTest, VectorQuantizerEqualsScalar) {
  std::mt19937 rng(9);
  std::normal_distribution<float> dist(0.0f, 1.5f);
  const int n = 5, k = 160, ld = 170;
  std::vector<float> x(size_t(n) * ld);
  for (float& v : x) v = dist(rng);
  // A block of evenly spaced values (+-127 steps of 1: exact products) and
  // an all-zero block.
  for (int t = 32; t < 64; ++t) x[size_t(t)] = float(t - 48) * 127.0f / 16;
  for (int t = 64; t < 96; ++t) x[size_t(ld + t)] = 0.0f;
  auto run = [&](KernelIsa isa, std::vector<int8_t>& q, std::vector<float>& s) {
    EXPECT_TRUE(SetKernelIsa(isa));
    q.assign(size_t(n) * k, 0);
    s.assign(size_t(n) * (k / 32), 0);
    internal::QuantizeActivations(x.data(), ld, n, k, true, q.data(), k,
                                  s.data(), k / 32);
  };
  std::vector<int8_t> want_q, got_q;
  std::vector<float> want_s, got_s;
  run(KernelIsa::kScalar, want_q, want_s);
  for (KernelIsa isa : {KernelIsa::kAvx2, KernelIsa::kAvx512Vnni}) {
    if (!SetKernelIsa(isa)) continue;
    run(isa, got_q, got_s);
    EXPECT_EQ(got_q, want_q) << KernelIsaName(isa);
    EXPECT_EQ(got_s, want_s) << KernelIsaName(isa);
  }
  SetKernelIsa(DetectKernelIsa());
}

// int16 activation quantization (int8 weights at n = 1): the values times
// the scale reproduce the input to half a step, the peak maps to +-32767, and
// an all-zero row gets scale 0.
TEST(QuantizeActivationsTest, Int16RoundTripsWithinHalfAStep) {
  std::mt19937 rng(4);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> x(200);
  for (float& v : x) v = dist(rng);
  std::vector<int16_t> q(x.size());
  const float d = internal::QuantizeActivations16(x.data(), 200, q.data());
  int peak = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_NEAR(q[i] * d, x[i], d / 2 + 1e-7f);
    peak = std::max(peak, std::abs(int(q[i])));
  }
  EXPECT_EQ(peak, 32767);
  std::vector<float> zeros(40, 0.0f);
  EXPECT_EQ(internal::QuantizeActivations16(zeros.data(), 40, q.data()), 0.0f);
  EXPECT_EQ(q[0], 0);
}

// Activation quantization: the int8 values times their scale reproduce the
// input to half a step, and the largest magnitude maps to +-127.
TEST(QuantizeActivationsTest, RoundTripsWithinHalfAStep) {
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  const int n = 3, k = 96;
  std::vector<float> x(size_t(n) * k);
  for (float& v : x) v = dist(rng);
  x[5] = 0;  // an all-zero block below
  for (int t = 64; t < 96; ++t) x[size_t(k + t)] = 0;
  for (bool per_block : {false, true}) {
    const int groups = per_block ? k / 32 : 1;
    std::vector<int8_t> q(size_t(n) * k);
    std::vector<float> scale(size_t(n) * groups);
    internal::QuantizeActivations(x.data(), k, n, k, per_block, q.data(), k,
                                  scale.data(), groups);
    for (int b = 0; b < n; ++b) {
      for (int g = 0; g < groups; ++g) {
        const int size = k / groups;
        const float d = scale[size_t(b * groups + g)];
        int peak = 0;
        for (int t = g * size; t < (g + 1) * size; ++t) {
          const size_t i = size_t(b * k + t);
          EXPECT_NEAR(q[i] * d, x[i], d / 2 + 1e-7f);
          peak = std::max(peak, std::abs(int(q[i])));
        }
        EXPECT_EQ(peak, d > 0 ? 127 : 0);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllTypes, KernelsTest,
    ::testing::Combine(::testing::Values(DType::kF32, DType::kF16, DType::kBF16,
                                         DType::kI8, DType::kI16,
                                         DType::kF8E4M3, DType::kQ8_0,
                                         DType::kQ4_0),
                       ::testing::Values(KernelIsa::kScalar, KernelIsa::kAvx2,
                                         KernelIsa::kAvx512,
                                         KernelIsa::kAvx512Vnni)));

class AttentionKernelsTest : public ::testing::TestWithParam<KernelIsa> {
 protected:
  void TearDown() override { SetKernelIsa(DetectKernelIsa()); }
};

TEST_P(AttentionKernelsTest, MatchScalarDefinitions) {
  if (!SetKernelIsa(GetParam())) GTEST_SKIP();
  std::mt19937 rng(5);
  std::normal_distribution<float> dist;
  for (int d : {64, 40, 8}) {
    for (int nq : {1, 7, 13}) {
      const int n = 37, ld = 3 * d + 5, lds = n + 3, ldo = d + 2;
      std::vector<float> q(static_cast<size_t>(nq * ld)),
          kv(static_cast<size_t>(n * ld)), w(static_cast<size_t>(nq * lds));
      for (float& v : q) v = dist(rng);
      for (float& v : kv) v = dist(rng);
      for (float& v : w) v = dist(rng);
      std::vector<float> scores(static_cast<size_t>(nq * lds)),
          out(static_cast<size_t>(nq * ldo), 99.0f);
      AttentionScores(q.data(), ld, nq, kv.data() + 2, ld, n, d, 0.25f,
                      scores.data(), lds);
      AttentionValues(w.data(), lds, nq, kv.data() + 3, ld, n, d, out.data(),
                      ldo);
      for (int j = 0; j < nq; ++j) {
        for (int p = 0; p < n; ++p) {
          double want = 0;
          for (int i = 0; i < d; ++i)
            want += double(q[size_t(j * ld + i)]) * kv[size_t(p * ld + 2 + i)];
          EXPECT_NEAR(scores[size_t(j * lds + p)], 0.25 * want, 1e-4)
              << "d=" << d << " nq=" << nq;
        }
        for (int i = 0; i < d; ++i) {
          double want = 0;
          for (int p = 0; p < n; ++p)
            want += double(w[size_t(j * lds + p)]) * kv[size_t(p * ld + 3 + i)];
          EXPECT_NEAR(out[size_t(j * ldo + i)], want, 1e-4)
              << "d=" << d << " nq=" << nq;
        }
        EXPECT_EQ(out[size_t(j * ldo + d)], 99.0f);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, AttentionKernelsTest,
                         ::testing::Values(KernelIsa::kScalar, KernelIsa::kAvx2,
                                           KernelIsa::kAvx512,
                                           KernelIsa::kAvx512Vnni));

TEST(DTypeTest, Fp8RoundTripsEveryCode) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;  // NaN
    float v = Fp8E4M3ToF32(uint8_t(c));
    uint8_t back = F32ToFp8E4M3(v);
    if (v == 0) {
      EXPECT_EQ(back & 0x7f, 0);
    } else {
      EXPECT_EQ(back, c) << v;
    }
  }
  EXPECT_EQ(Fp8E4M3ToF32(F32ToFp8E4M3(1000.0f)), 448.0f);
  EXPECT_EQ(Fp8E4M3ToF32(0x08), std::ldexp(1.0f, -6));
  EXPECT_EQ(Fp8E4M3ToF32(0x01), std::ldexp(1.0f, -9));
}

TEST(DTypeTest, HalfAndBfloatConversions) {
  for (float v :
       {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.1f}) {
    EXPECT_NEAR(F16ToF32(F32ToF16(v)), v, std::fabs(v) * 1e-3 + 1e-8) << v;
    EXPECT_NEAR(Bf16ToF32(F32ToBf16(v)), v, std::fabs(v) * 1e-2 + 1e-30) << v;
  }
  EXPECT_EQ(F32ToF16(1.0f), 0x3c00);
  EXPECT_EQ(F32ToBf16(1.0f), 0x3f80);
  EXPECT_TRUE(std::isinf(F16ToF32(F32ToF16(1e6f))));
}

TEST(ThreadPoolTest, RunsEveryThreadOncePerJob) {
  ThreadPool pool(3);
  for (int iter = 0; iter < 100; ++iter) {
    std::vector<int> hits(3, 0);
    pool.Run([&](int t, int n) {
      EXPECT_EQ(n, 3);
      hits[size_t(t)]++;
    });
    EXPECT_THAT(hits, ::testing::ElementsAre(1, 1, 1));
  }
}

TEST(ThreadPoolTest, ParallelForRunsEveryChunkExactlyOnce) {
  ThreadPool pool(3);
  for (int iter = 0; iter < 300; ++iter) {
    const int64_t chunks = 1 + iter % 37;
    std::vector<std::atomic<int>> hits(static_cast<size_t>(chunks));
    pool.ParallelFor(chunks, [&](int64_t c) { hits[size_t(c)].fetch_add(1); });
    for (int64_t c = 0; c < chunks; ++c)
      ASSERT_EQ(hits[size_t(c)].load(), 1) << iter << " " << c;
    // Static jobs interleave with dynamic ones.
    std::atomic<int> calls{0};
    pool.Run([&](int, int) { calls.fetch_add(1); });
    ASSERT_EQ(calls.load(), 3);
  }
}

}  // namespace
}  // namespace hangar::engine
