#include "engine/kquants.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/testing/status_matchers.h"
#include "engine/file_util.h"
#include "engine/kernels.h"
#include "engine/model.h"
#include "engine/safetensors.h"
#include "engine/test_util.h"
#include "engine/tiny_model.h"
#include "gtest/gtest.h"

namespace hangar::engine {
namespace {

using ::hangar::engine::testing::AllPositionLogits;
using ::hangar::engine::testing::MakeTempDir;

void PutHalf(uint8_t* p, uint16_t h) { std::memcpy(p, &h, 2); }

// Every element of a hand-built Q6_K block, checked against values worked
// out by hand from the layout (engine/kquants.h).
TEST(KQuantsTest, Q6KHandBuiltBlock) {
  uint8_t b[kQ6KBytes] = {};
  PutHalf(b + 208, 0x3C00);  // d = 1
  b[192 + 0] = 2;
  b[192 + 2] = uint8_t(int8_t(-1));
  b[192 + 4] = 4;
  b[192 + 8] = uint8_t(int8_t(-3));
  b[192 + 15] = 1;
  b[0] = 0x5A;    // element 0 low nibble 10, element 64 high nibble 5
  b[128] = 0x93;  // qh for l = 0: s0 -> 3, s1 -> 0, s2 -> 1, s3 -> 2
  b[32] = 0x07;   // element 32 low nibble 7
  b[64 + 1] = 0x0F;
  b[127] = 0xF0;
  b[128 + 32 + 31] = 0xC0;
  float out[kQK];
  DequantizeKBlock(DType::kQ6_K, b, out);
  EXPECT_EQ(out[0], 2.0f * ((10 | 3 << 4) - 32));    // 52
  EXPECT_EQ(out[1], 2.0f * -32);                     // all-zero bits
  EXPECT_EQ(out[32], -1.0f * (7 - 32));              // 25
  EXPECT_EQ(out[64], 4.0f * ((5 | 1 << 4) - 32));    // -44
  EXPECT_EQ(out[96], 0.0f);                          // scale 6 is 0
  EXPECT_EQ(out[129], -3.0f * (15 - 32));            // 51
  EXPECT_EQ(out[255], 1.0f * ((15 | 3 << 4) - 32));  // 31
  for (int j = 0; j < kQK; ++j)
    EXPECT_EQ(DequantizeKElement(DType::kQ6_K, b, j), out[j]) << j;
}

// The 12 packed bytes of scales {1,2,3,4,17,33,63,0} and mins
// {0,1,2,3,18,40,5,63}, packed by hand.
constexpr uint8_t kPacked[12] = {0x41, 0x82, 0xC3, 0x04, 0x40, 0x81,
                                 0x02, 0xC3, 0x21, 0x81, 0x5F, 0xF0};
constexpr uint8_t kSc[8] = {1, 2, 3, 4, 17, 33, 63, 0};
constexpr uint8_t kMn[8] = {0, 1, 2, 3, 18, 40, 5, 63};

TEST(KQuantsTest, SixBitScalesPackAndUnpack) {
  uint8_t s[12];
  PackScaleMin(kSc, kMn, s);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(s[i], kPacked[i]) << i;
  for (int b = 0; b < 8; ++b) {
    int sc, m;
    UnpackScaleMin(kPacked, b, &sc, &m);
    EXPECT_EQ(sc, kSc[b]) << b;
    EXPECT_EQ(m, kMn[b]) << b;
  }
}

TEST(KQuantsTest, Q4KHandBuiltBlock) {
  uint8_t b[kQ4KBytes] = {};
  PutHalf(b, 0x3C00);      // d = 1
  PutHalf(b + 2, 0x3800);  // dmin = 0.5
  std::memcpy(b + 4, kPacked, 12);
  b[16 + 0] = 0x3A;
  b[16 + 69] = 0x7C;
  float out[kQK];
  DequantizeKBlock(DType::kQ4_K, b, out);
  EXPECT_EQ(out[0], 10.0f);            // 1 * 10 - 0.5 * 0
  EXPECT_EQ(out[32], 5.5f);            // 2 * 3 - 0.5 * 1
  EXPECT_EQ(out[133], 195.0f);         // 17 * 12 - 0.5 * 18
  EXPECT_EQ(out[165], 211.0f);         // 33 * 7 - 0.5 * 40
  EXPECT_EQ(out[255], -31.5f);         // 0 * 0 - 0.5 * 63
  EXPECT_EQ(out[200], 63 * 0 - 2.5f);  // sub-block 6: min 5
  for (int j = 0; j < kQK; ++j)
    EXPECT_EQ(DequantizeKElement(DType::kQ4_K, b, j), out[j]) << j;
}

TEST(KQuantsTest, Q5KHandBuiltBlock) {
  uint8_t b[kQ5KBytes] = {};
  PutHalf(b, 0x3C00);
  PutHalf(b + 2, 0x3800);
  std::memcpy(b + 4, kPacked, 12);
  b[16 + 0] = 0x03;  // fifth bit of elements 0 (sub 0) and 32 (sub 1)
  b[16 + 5] = 0x20;  // fifth bit of element 165 (sub 5)
  b[48 + 0] = 0x3A;
  b[48 + 69] = 0x7C;
  float out[kQK];
  DequantizeKBlock(DType::kQ5_K, b, out);
  EXPECT_EQ(out[0], 26.0f);     // 1 * (10 | 16)
  EXPECT_EQ(out[32], 37.5f);    // 2 * (3 | 16) - 0.5
  EXPECT_EQ(out[133], 195.0f);  // no fifth bit
  EXPECT_EQ(out[165], 739.0f);  // 33 * (7 | 16) - 20
  EXPECT_EQ(out[255], -31.5f);
  for (int j = 0; j < kQK; ++j)
    EXPECT_EQ(DequantizeKElement(DType::kQ5_K, b, j), out[j]) << j;
}

std::vector<float> Gaussian(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// The test encoder round-trips within the resolution of each format:
// relative RMS error of Gaussian data.
TEST(KQuantsTest, EncoderRoundTrips) {
  const std::vector<float> x = Gaussian(kQK * 64, 7);
  for (auto [d, bound] :
       {std::pair{DType::kQ4_K, 0.12}, std::pair{DType::kQ5_K, 0.06},
        std::pair{DType::kQ6_K, 0.03}}) {
    std::vector<uint8_t> q(size_t(DTypeRowBytes(d, int64_t(x.size()))));
    for (size_t b = 0; b < x.size() / kQK; ++b)
      QuantizeKBlock(d, x.data() + b * kQK, q.data() + b * KQuantBlockBytes(d));
    std::vector<float> y(x.size());
    DequantizeKRow(d, q.data(), int64_t(x.size()), y.data());
    double e = 0, s = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      e += (x[i] - y[i]) * (x[i] - y[i]);
      s += x[i] * x[i];
    }
    EXPECT_LT(std::sqrt(e / s), bound) << DTypeName(d);
  }
}

// Checks MatMul on K-quant weights `data` ([rows, cols] of type d) against
// the scalar dequantizing reference (DequantizeRow) for n activation rows x,
// on every ISA this CPU runs. K-quant decode batches (n < kGemmMinRows) on
// the vector ISAs take int8 activations (one scale per 32 columns, as
// Q8_0): their reference uses the same quantized activations; the GEMM and
// the scalar path use the float activations.
void ExpectMatMulMatchesReference(DType d, int64_t rows, int64_t cols,
                                  const std::vector<uint8_t>& data, int n,
                                  const std::vector<float>& x,
                                  double tolerance) {
  const KernelIsa saved = ActiveKernelIsa();
  WeightMatrix w{.dtype = d, .rows = rows, .cols = cols, .data = data.data()};
  std::vector<float> deq(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) DequantizeRow(w, r, &deq[r * cols]);
  std::vector<int8_t> xq(x.size());
  std::vector<float> xs(x.size() / 32);
  internal::QuantizeActivations(x.data(), cols, n, cols, true, xq.data(), cols,
                                xs.data(), cols / 32);
  for (KernelIsa isa : {KernelIsa::kScalar, KernelIsa::kAvx2,
                        KernelIsa::kAvx512, KernelIsa::kAvx512Vnni}) {
    if (!SetKernelIsa(isa)) continue;
    const bool int8 = isa != KernelIsa::kScalar && n < internal::kGemmMinRows;
    std::vector<float> y(size_t(n * rows), -1.0f);
    MatMul(nullptr, n,
           {{.w = &w, .x = x.data(), .ldx = cols, .y = y.data(), .ldy = rows}});
    for (int b = 0; b < n; ++b)
      for (int64_t r = 0; r < rows; ++r) {
        double want = 0;
        for (int64_t k = 0; k < cols; ++k) {
          const size_t i = size_t(b * cols + k);
          want += double(deq[r * cols + k]) *
                  (int8 ? double(xq[i]) * xs[i / 32] : double(x[i]));
        }
        ASSERT_NEAR(y[b * rows + r], want, tolerance)
            << DTypeName(d) << " n=" << n << " row " << r << " of " << rows
            << " " << KernelIsaName(isa);
      }
  }
  SetKernelIsa(saved);
}

std::vector<uint8_t> Encode(DType d, const std::vector<float>& wf) {
  std::vector<uint8_t> data(wf.size() / kQK * size_t(KQuantBlockBytes(d)));
  for (size_t b = 0; b < wf.size() / kQK; ++b)
    QuantizeKBlock(d, wf.data() + b * kQK,
                   data.data() + b * KQuantBlockBytes(d));
  return data;
}

// MatMul on K-quant weights equals the dequantized product on every ISA
// this CPU runs: decode (n = 1), small batches that fill the integer tiles
// and leave partial ones (2, 3, 5, 8), the GEMM (40); row counts that leave
// 1 and 3 rows past the 4-row tiles.
TEST(KQuantsTest, MatMulMatchesDequantizedReference) {
  for (DType d : {DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{37, 512},
                              std::pair<int64_t, int64_t>{7, 768}}) {
      const std::vector<uint8_t> data =
          Encode(d, Gaussian(size_t(rows * cols), 3));
      for (int n : {1, 2, 3, 5, 8, 40}) {
        SCOPED_TRACE(::testing::Message() << rows << "x" << cols);
        ExpectMatMulMatchesReference(d, rows, cols, data, n,
                                     Gaussian(size_t(n * cols), 11), 1e-3);
      }
    }
  }
}

// The extremes of each format meet the extremes of the activations: weights
// at the largest value and scale of their type (Q4_K 15 and Q5_K 31 with
// scale 63; Q6_K 63, i.e. +31, with scale 127) and at the largest min, times
// activations quantized to +-127: the u8 x s8 pair sums and the scaled
// int32 sums must not saturate.
TEST(KQuantsTest, MatMulExtremesDoNotSaturate) {
  const int64_t rows = 5, cols = 512;
  std::vector<float> wf(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < cols; ++k)
      wf[size_t(r * cols + k)] = r == 0   ? 3.0f
                                 : r == 1 ? -3.0f
                                 : r == 2 ? (k % 2 ? 3.0f : -3.0f)
                                 : r == 3 ? (k < 256 ? 1e-3f : 3.0f)
                                          : (k % 64 < 32 ? 3.0f : -3.0f);
  for (DType d : {DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}) {
    const std::vector<uint8_t> data = Encode(d, wf);
    for (int n : {1, 3}) {
      std::vector<float> x(size_t(n * cols));
      for (size_t i = 0; i < x.size(); ++i)
        x[i] = (i / 2) % 3 == 2 ? -1.0f : 1.0f;
      ExpectMatMulMatchesReference(d, rows, cols, data, n, x, 0.05);
    }
  }
}

int ArgMax(const std::vector<float>& v) {
  return int(std::max_element(v.begin(), v.end()) - v.begin());
}

// The K-quant type ConvertToGguf gives an HF tensor under `type`.
DType TypeFor(const std::string& type, const std::string& name) {
  if (type == "q4_k_m")
    return name == "lm_head.weight" ||
                   name.find("down_proj") != std::string::npos
               ? DType::kQ6_K
               : DType::kQ4_K;
  return type == "q4_k"   ? DType::kQ4_K
         : type == "q5_k" ? DType::kQ5_K
                          : DType::kQ6_K;
}

// Writes a copy of the HF model in `dir` whose 2-D weights went through the
// K-quant encoder and back (what a K-quant GGUF holds, as float32).
void WriteDequantizedCopy(const std::string& dir, const std::string& type,
                          const std::string& out) {
  ASSERT_OK_AND_ASSIGN(auto st,
                       SafetensorsFile::Open(dir + "/model.safetensors"));
  SafetensorsWriter wr;
  for (const auto& [name, t] : st->tensors()) {
    ASSERT_EQ(t.dtype, "F32");
    std::vector<float> v(size_t(t.elements()));
    std::memcpy(v.data(), t.data, v.size() * 4);
    if (t.shape.size() == 2) {
      ASSERT_EQ(t.shape[1] % kQK, 0) << name;
      const DType d = TypeFor(type, name);
      std::vector<uint8_t> blk(size_t(KQuantBlockBytes(d)));
      for (size_t b = 0; b < v.size(); b += kQK) {
        QuantizeKBlock(d, v.data() + b, blk.data());
        DequantizeKBlock(d, blk.data(), v.data() + b);
      }
    }
    ASSERT_OK(wr.Add(name, "F32", t.shape, EncodeFloats(v, "F32")));
  }
  std::filesystem::create_directories(out);
  ASSERT_OK(wr.Write(out + "/model.safetensors"));
  for (const char* f :
       {"config.json", "tokenizer.json", "tokenizer_config.json"}) {
    if (!FileExists(dir + "/" + f)) continue;
    ASSERT_OK_AND_ASSIGN(std::string text, ReadFileToString(dir + "/" + f));
    ASSERT_OK(WriteStringToFile(out + "/" + f, text));
  }
}

class KQuantModelTest : public ::testing::TestWithParam<std::string> {};

// A tiny model (every matrix row a multiple of 256) written as a K-quant
// GGUF: its logits equal the same weights dequantized and run as float32,
// greedy ids equal (up to near-ties under int8 activations). Bound: 2e-3 on
// the scalar path, where only the summation order differs; 0.15 on the
// vector ISAs, where K-quant decode takes int8 activations (the int8
// recipes' logit bound; measured about 0.07). The
// logits also stay close to the unquantized model (correlation).
TEST_P(KQuantModelTest, RunsLikeItsDequantizedWeights) {
  const std::string type = GetParam();
  const std::string dir = MakeTempDir("kquant");
  TinyModelOptions o;
  o.hidden_size = 256;
  o.intermediate_size = 512;
  o.num_layers = 2;
  o.vocab_size = 512;
  ASSERT_OK(WriteTinyModel(o, dir));
  const std::string gguf = dir + "/m-" + type + ".gguf";
  ASSERT_OK(ConvertToGguf(dir, gguf, type));
  WriteDequantizedCopy(dir, type, dir + "/dq");
  ASSERT_OK_AND_ASSIGN(auto kq, Model::Load(gguf, {.threads = 2}));
  ASSERT_OK_AND_ASSIGN(auto dq, Model::Load(dir + "/dq", {.threads = 2}));
  ASSERT_OK_AND_ASSIGN(auto f32, Model::Load(dir, {.threads = 2}));
  EXPECT_EQ(kq->info().weight_dtype, type == "q4_k_m" ? "mixed" : type);
  const std::vector<int> ids = {0, 17, 250, 3, 99, 300, 42, 7, 128, 64, 1, 400};
  auto got = AllPositionLogits(*kq, ids), want = AllPositionLogits(*dq, ids),
       ref = AllPositionLogits(*f32, ids);
  const double bound = ActiveKernelIsa() != KernelIsa::kScalar ? 0.15 : 2e-3;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    // Greedy ids equal; with int8 activations a near-tie (the two logits
    // within 2 * bound) may resolve either way.
    const int g = ArgMax(got[i]), r = ArgMax(want[i]);
    if (bound < 0.01) {
      EXPECT_EQ(g, r) << i;
    } else if (g != r) {
      EXPECT_LT(want[i][size_t(r)] - want[i][size_t(g)], 2 * bound) << i;
    }
    for (size_t k = 0; k < got[i].size(); ++k) {
      EXPECT_NEAR(got[i][k], want[i][k], bound) << i << " " << k;
      sxy += double(ref[i][k]) * got[i][k];
      sxx += double(ref[i][k]) * ref[i][k];
      syy += double(got[i][k]) * got[i][k];
    }
  }
  EXPECT_GT(sxy / std::sqrt(sxx * syy), type == "q4_k" ? 0.9 : 0.95);
}

INSTANTIATE_TEST_SUITE_P(Types, KQuantModelTest,
                         ::testing::Values("q6_k", "q4_k", "q5_k", "q4_k_m"));

}  // namespace
}  // namespace hangar::engine
