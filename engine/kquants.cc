#include "engine/kquants.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace hangar::engine {
namespace {

float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return F16ToF32(h);
}

void PutHalf(uint8_t* p, float f) {
  uint16_t h = F32ToF16(f);
  std::memcpy(p, &h, 2);
}

// Q4_K / Q5_K share the header: d, dmin, scales[12].
float AsymElement(DType d, const uint8_t* b, int j) {
  const int sub = j / 32, l = j % 32;
  int sc, m;
  UnpackScaleMin(b + 4, sub, &sc, &m);
  const uint8_t* qs = b + (d == DType::kQ4_K ? 16 : 48);
  int q = qs[32 * (sub / 2) + l];
  q = (sub & 1) ? q >> 4 : q & 0x0f;
  if (d == DType::kQ5_K) q |= ((b[16 + l] >> sub) & 1) << 4;
  return HalfAt(b) * float(sc) * float(q) - HalfAt(b + 2) * float(m);
}

float Q6Element(const uint8_t* b, int j) {
  const int h = j / 128, s = (j % 128) / 32, l = j % 32;
  int lo = b[64 * h + 32 * (s & 1) + l];
  lo = s >= 2 ? lo >> 4 : lo & 0x0f;
  const int hi = (b[128 + 32 * h + l] >> (2 * s)) & 3;
  const int8_t scale = int8_t(b[192 + j / 16]);
  return HalfAt(b + 208) * float(scale) * float((lo | hi << 4) - 32);
}

void QuantizeAsym(DType d, const float* x, uint8_t* b) {
  const int qmax = d == DType::kQ4_K ? 15 : 31;
  float scale_f[8], min_f[8];
  float max_scale = 0, max_min = 0;
  for (int s = 0; s < 8; ++s) {
    float lo = 0, hi = 0;  // the range always includes 0: mins are >= 0
    for (int l = 0; l < 32; ++l) {
      lo = std::min(lo, x[32 * s + l]);
      hi = std::max(hi, x[32 * s + l]);
    }
    scale_f[s] = (hi - lo) / float(qmax);
    min_f[s] = -lo;
    max_scale = std::max(max_scale, scale_f[s]);
    max_min = std::max(max_min, min_f[s]);
  }
  std::memset(b, 0, size_t(KQuantBlockBytes(d)));
  PutHalf(b, max_scale / 63.0f);
  PutHalf(b + 2, max_min / 63.0f);
  const float dd = HalfAt(b), dm = HalfAt(b + 2);
  uint8_t sc[8], mn[8];
  for (int s = 0; s < 8; ++s) {
    sc[s] = uint8_t(
        std::clamp(dd > 0 ? std::lround(scale_f[s] / dd) : 0L, 0L, 63L));
    mn[s] =
        uint8_t(std::clamp(dm > 0 ? std::lround(min_f[s] / dm) : 0L, 0L, 63L));
  }
  PackScaleMin(sc, mn, b + 4);
  uint8_t* qs = b + (d == DType::kQ4_K ? 16 : 48);
  for (int s = 0; s < 8; ++s) {
    const float step = dd * float(sc[s]), off = dm * float(mn[s]);
    for (int l = 0; l < 32; ++l) {
      long q = step > 0 ? std::lround((x[32 * s + l] + off) / step) : 0;
      q = std::clamp(q, 0L, long(qmax));
      qs[32 * (s / 2) + l] |= uint8_t((q & 15) << ((s & 1) * 4));
      if (d == DType::kQ5_K) b[16 + l] |= uint8_t(((q >> 4) & 1) << s);
    }
  }
}

void QuantizeQ6(const float* x, uint8_t* b) {
  std::memset(b, 0, kQ6KBytes);
  float scale_f[16], max_scale = 0;
  for (int s = 0; s < 16; ++s) {
    float amax = 0;
    for (int l = 0; l < 16; ++l)
      amax = std::max(amax, std::fabs(x[16 * s + l]));
    scale_f[s] = amax / 31.0f;
    max_scale = std::max(max_scale, scale_f[s]);
  }
  PutHalf(b + 208, max_scale / 127.0f);
  const float d = HalfAt(b + 208);
  for (int s = 0; s < 16; ++s) {
    const long sc =
        std::clamp(d > 0 ? std::lround(scale_f[s] / d) : 0L, 0L, 127L);
    b[192 + s] = uint8_t(int8_t(sc));
    const float step = d * float(sc);
    for (int l = 0; l < 16; ++l) {
      const int j = 16 * s + l;
      long q = step > 0 ? std::lround(x[j] / step) : 0;
      q = std::clamp(q, -32L, 31L) + 32;
      const int h = j / 128, quarter = (j % 128) / 32, ll = j % 32;
      b[64 * h + 32 * (quarter & 1) + ll] |=
          uint8_t((q & 15) << (quarter >= 2 ? 4 : 0));
      b[128 + 32 * h + ll] |= uint8_t((q >> 4) << (2 * quarter));
    }
  }
}

}  // namespace

int KQuantBlockBytes(DType d) {
  return d == DType::kQ4_K   ? kQ4KBytes
         : d == DType::kQ5_K ? kQ5KBytes
         : d == DType::kQ6_K ? kQ6KBytes
                             : 0;
}

void UnpackScaleMin(const uint8_t* s, int b, int* scale, int* min) {
  if (b < 4) {
    *scale = s[b] & 63;
    *min = s[b + 4] & 63;
  } else {
    *scale = (s[b + 4] & 15) | ((s[b - 4] >> 6) << 4);
    *min = (s[b + 4] >> 4) | ((s[b] >> 6) << 4);
  }
}

void PackScaleMin(const uint8_t* scales, const uint8_t* mins, uint8_t* s) {
  for (int b = 0; b < 4; ++b) {
    s[b] = uint8_t((scales[b] & 63) | ((scales[b + 4] >> 4) << 6));
    s[b + 4] = uint8_t((mins[b] & 63) | ((mins[b + 4] >> 4) << 6));
    s[b + 8] = uint8_t((scales[b + 4] & 15) | ((mins[b + 4] & 15) << 4));
  }
}

float DequantizeKElement(DType d, const uint8_t* block, int j) {
  return d == DType::kQ6_K ? Q6Element(block, j) : AsymElement(d, block, j);
}

void DequantizeKBlock(DType d, const uint8_t* b, float* out) {
  if (d == DType::kQ6_K) {
    const float dd = HalfAt(b + 208);
    for (int j = 0; j < kQK; ++j) {
      const int h = j / 128, s = (j % 128) / 32, l = j % 32;
      int lo = b[64 * h + 32 * (s & 1) + l];
      lo = s >= 2 ? lo >> 4 : lo & 0x0f;
      const int hi = (b[128 + 32 * h + l] >> (2 * s)) & 3;
      out[j] = dd * float(int8_t(b[192 + j / 16])) * float((lo | hi << 4) - 32);
    }
    return;
  }
  const float dd = HalfAt(b), dm = HalfAt(b + 2);
  const uint8_t* qs = b + (d == DType::kQ4_K ? 16 : 48);
  for (int sub = 0; sub < 8; ++sub) {
    int sc, m;
    UnpackScaleMin(b + 4, sub, &sc, &m);
    const float step = dd * float(sc), off = dm * float(m);
    for (int l = 0; l < 32; ++l) {
      int q = qs[32 * (sub / 2) + l];
      q = (sub & 1) ? q >> 4 : q & 0x0f;
      if (d == DType::kQ5_K) q |= ((b[16 + l] >> sub) & 1) << 4;
      out[32 * sub + l] = step * float(q) - off;
    }
  }
}

void DequantizeKRow(DType d, const uint8_t* row, int64_t cols, float* out) {
  const int bytes = KQuantBlockBytes(d);
  for (int64_t k = 0; k < cols; k += kQK)
    DequantizeKBlock(d, row + (k / kQK) * bytes, out + k);
}

void QuantizeKBlock(DType d, const float* x, uint8_t* block) {
  if (d == DType::kQ6_K) {
    QuantizeQ6(x, block);
  } else {
    QuantizeAsym(d, x, block);
  }
}

}  // namespace hangar::engine
