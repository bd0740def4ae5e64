// Element types of weight tensors, and scalar conversions between them.
//
// The engine keeps activations and the KV cache in float32 and reads weights
// in whatever representation the file holds, converting on the fly inside the
// matmul kernels (engine/kernels.h). `DType` names every representation the
// loaders accept:
//
//   kF32, kF16, kBF16   plain floating point, one value per element
//   kI8, kI16           per-output-row symmetric integers; value = q *
//   scale[row] kF8E4M3             fp8 (1 sign, 4 exponent, 3 mantissa bits,
//   bias 7, no
//                       infinities) with a float scale per row
//   kQ8_0, kQ4_0        GGUF block formats: 32 elements share one float16 scale
//   kQ4_K, kQ5_K, kQ6_K GGUF K-quants: 256-element super-blocks with
//                       sub-block scales (engine/kquants.h)
//
// The scalar helpers below are the reference definitions; the vectorized
// kernels must agree with them bit for bit on the dequantized value.
#ifndef HANGAR_ENGINE_DTYPE_H_
#define HANGAR_ENGINE_DTYPE_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace hangar::engine {

enum class DType {
  kF32,
  kF16,
  kBF16,
  kI8,
  kI16,
  kF8E4M3,
  kQ8_0,
  kQ4_0,
  kQ4_K,
  kQ5_K,
  kQ6_K,
};

// Lower-case name used in logs, model info and the manifest ("float32",
// "int8", "q4_0", ...).
const char* DTypeName(DType dtype);

// True for types that need a per-row scale tensor (kI8, kI16, kF8E4M3).
inline bool DTypeHasRowScale(DType d) {
  return d == DType::kI8 || d == DType::kI16 || d == DType::kF8E4M3;
}

// Bytes needed to store one row of `cols` elements. For the block formats
// `cols` must be a multiple of 32 (256 for the K-quants).
int64_t DTypeRowBytes(DType dtype, int64_t cols);

// ---------------------------------------------------------------------------
// Scalar conversions.

inline float F32FromBits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline uint32_t BitsFromF32(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}

inline float Bf16ToF32(uint16_t h) { return F32FromBits(uint32_t{h} << 16); }

// Round to nearest even; NaN stays NaN.
inline uint16_t F32ToBf16(float f) {
  uint32_t bits = BitsFromF32(f);
  if ((bits & 0x7fffffff) > 0x7f800000) return uint16_t((bits >> 16) | 0x40);
  uint32_t rounding = 0x7fff + ((bits >> 16) & 1);
  return uint16_t((bits + rounding) >> 16);
}

float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);

// Little-endian bytes of `v` stored as a safetensors float dtype: "F32",
// "F16", or (anything else) "BF16".
std::string EncodeFloats(const std::vector<float>& v, const std::string& dtype);

// fp8 E4M3 (the "fn" variant: no infinities, 0x7f/0xff are NaN, max 448).
float Fp8E4M3ToF32(uint8_t v);
// Round to nearest even, saturating to +-448.
uint8_t F32ToFp8E4M3(float f);

}  // namespace hangar::engine

#endif  // HANGAR_ENGINE_DTYPE_H_
