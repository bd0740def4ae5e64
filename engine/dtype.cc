#include "engine/dtype.h"

#include <cmath>
#include <cstring>

namespace hangar::engine {

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "float32";
    case DType::kF16:
      return "float16";
    case DType::kBF16:
      return "bfloat16";
    case DType::kI8:
      return "int8";
    case DType::kI16:
      return "int16";
    case DType::kF8E4M3:
      return "fp8_e4m3";
    case DType::kQ8_0:
      return "q8_0";
    case DType::kQ4_0:
      return "q4_0";
    case DType::kQ4_K:
      return "q4_k";
    case DType::kQ5_K:
      return "q5_k";
    case DType::kQ6_K:
      return "q6_k";
  }
  return "unknown";
}

int64_t DTypeRowBytes(DType dtype, int64_t cols) {
  switch (dtype) {
    case DType::kF32:
      return cols * 4;
    case DType::kF16:
    case DType::kBF16:
    case DType::kI16:
      return cols * 2;
    case DType::kI8:
    case DType::kF8E4M3:
      return cols;
    case DType::kQ8_0:
      return cols / 32 * 34;
    case DType::kQ4_0:
      return cols / 32 * 18;
    case DType::kQ4_K:
      return cols / 256 * 144;
    case DType::kQ5_K:
      return cols / 256 * 176;
    case DType::kQ6_K:
      return cols / 256 * 210;
  }
  return 0;
}

float F16ToF32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24.
    float v = std::ldexp(float(mant), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return F32FromBits(sign | 0x7f800000 | (mant << 13));
  return F32FromBits(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t F32ToF16(float f) {
  uint32_t bits = BitsFromF32(f);
  uint16_t sign = uint16_t((bits >> 16) & 0x8000);
  float a = std::fabs(f);
  if (std::isnan(f)) return sign | 0x7e00;
  if (a >= 65520.0f) return sign | 0x7c00;  // rounds to infinity
  if (a < std::ldexp(1.0f, -14)) {
    // Subnormal range: quantize to multiples of 2^-24, ties to even.
    float q = std::nearbyint(a * 16777216.0f);  // default rounding: even
    return sign | uint16_t(q);
  }
  uint32_t abits = BitsFromF32(a);
  uint32_t exp = (abits >> 23) - 112;
  uint32_t mant = abits & 0x7fffff;
  uint32_t half = (exp << 10) | (mant >> 13);
  uint32_t rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) half++;
  return sign | uint16_t(half);
}

float Fp8E4M3ToF32(uint8_t v) {
  uint32_t sign = v & 0x80;
  uint32_t exp = (v >> 3) & 0xf;
  uint32_t mant = v & 0x7;
  if (exp == 15 && mant == 7) return std::nanf("");
  float r = exp == 0 ? std::ldexp(float(mant), -9)
                     : std::ldexp(float(8 + mant), int(exp) - 10);
  return sign ? -r : r;
}

uint8_t F32ToFp8E4M3(float f) {
  if (std::isnan(f)) return 0x7f;
  uint8_t sign = std::signbit(f) ? 0x80 : 0;
  float a = std::fabs(f);
  if (a >= 448.0f) return sign | 0x7e;
  // Find the best code by rounding within the exponent's grid.
  int e;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  // Grid step for normal numbers with exponent E (value in [2^E, 2^(E+1))):
  // 2^(E-3); E = e - 1. Subnormals (E < -6) use step 2^-9.
  int E = e - 1;
  if (a == 0.0f || E < -6) E = -6;
  float step = std::ldexp(1.0f, E - 3);
  float q = std::nearbyint(a / step) * step;  // ties to even
  if (q >= 448.0f) return sign | 0x7e;
  if (q == 0.0f) return sign;
  int qe;
  float qm = std::frexp(q, &qe);  // q = qm * 2^qe
  int biased = qe - 1 + 7;
  if (biased <= 0) {
    // Subnormal: q = mant * 2^-9.
    return sign | uint8_t(std::lround(q * 512.0f));
  }
  int mant = int(std::lround((qm * 2.0f - 1.0f) * 8.0f));
  return sign | uint8_t(biased << 3) | uint8_t(mant);
}

std::string EncodeFloats(const std::vector<float>& v,
                         const std::string& dtype) {
  std::string out;
  if (dtype == "F32") {
    out.resize(v.size() * 4);
    std::memcpy(out.data(), v.data(), out.size());
    return out;
  }
  out.resize(v.size() * 2);
  for (size_t i = 0; i < v.size(); ++i) {
    uint16_t h = dtype == "F16" ? F32ToF16(v[i]) : F32ToBf16(v[i]);
    std::memcpy(out.data() + 2 * i, &h, 2);
  }
  return out;
}

}  // namespace hangar::engine
