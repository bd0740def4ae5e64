// GGUF "K-quant" block formats: Q4_K, Q5_K and Q6_K.
//
// llama.cpp's K-quants group 256 weights (QK_K) into a super-block with one
// or two float16 super-scales and small per-sub-block integer scales. The
// engine keeps these tensors packed as the file stores them and dequantizes
// rows on the fly (engine/kernels.h); the functions below are the scalar
// reference definitions, written from the published block layouts:
//
//   Q6_K (210 bytes): ql[128] low 4 bits, qh[64] high 2 bits, int8
//       scales[16] (one per 16 weights), float16 d.
//       w[j] = d * scales[j / 16] * (q6[j] - 32), with j = 128 h + 32 s + l
//       (h < 2, s < 4, l < 32): low nibble of ql[64 h + 32 (s & 1) + l]
//       (high nibble for s >= 2), high bits (qh[32 h + l] >> 2 s) & 3.
//   Q4_K (144 bytes): float16 d, float16 dmin, scales[12] (six-bit scale
//       and min for each of 8 sub-blocks of 32, packed), qs[128].
//       w[j] = d * sc[j / 32] * q4[j] - dmin * m[j / 32]; sub-block b reads
//       qs[32 (b / 2) + l], low nibble for even b, high for odd.
//   Q5_K (176 bytes): d, dmin, scales[12] as Q4_K, qh[32], qs[128]; the
//       fifth bit of weight j = 32 b + l is (qh[l] >> b) & 1.
//
// Six-bit packing of the 8 (scale, min) pairs into 12 bytes: for b < 4,
// scale = s[b] & 63 and min = s[b + 4] & 63; for b >= 4, scale =
// (s[b + 4] & 15) | (s[b - 4] >> 6) << 4 and min = (s[b + 4] >> 4) |
// (s[b] >> 6) << 4.
//
// The encoders are simple round-to-nearest quantizers (not llama.cpp's
// error-minimizing search); they exist so tests and the tiny-model converter
// can write K-quant files.
#ifndef HANGAR_ENGINE_KQUANTS_H_
#define HANGAR_ENGINE_KQUANTS_H_

#include <cstdint>

#include "engine/dtype.h"

namespace hangar::engine {

constexpr int kQK = 256;  // weights per K-quant super-block
constexpr int kQ4KBytes = 144;
constexpr int kQ5KBytes = 176;
constexpr int kQ6KBytes = 210;

inline bool IsKQuant(DType d) {
  return d == DType::kQ4_K || d == DType::kQ5_K || d == DType::kQ6_K;
}
// Bytes of one super-block of `d` (a K-quant type).
int KQuantBlockBytes(DType d);

// Unpacks sub-block b's (scale, min) from the 12 packed bytes.
void UnpackScaleMin(const uint8_t* s12, int b, int* scale, int* min);
// Packs 8 six-bit scales and mins (each 0..63) into 12 bytes.
void PackScaleMin(const uint8_t* scales, const uint8_t* mins, uint8_t* s12);

// The 256 weights of one super-block of type `d`.
void DequantizeKBlock(DType d, const uint8_t* block, float* out);
// Weight j (< 256) of one super-block of type `d`.
float DequantizeKElement(DType d, const uint8_t* block, int j);
// A row of `cols` (a multiple of 256) weights.
void DequantizeKRow(DType d, const uint8_t* row, int64_t cols, float* out);

// Encodes 256 floats as one super-block of type `d`.
void QuantizeKBlock(DType d, const float* x, uint8_t* block);

}  // namespace hangar::engine

#endif  // HANGAR_ENGINE_KQUANTS_H_
