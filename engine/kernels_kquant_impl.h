// K-quant kernels (Q4_K, Q5_K, Q6_K), written once over the vector traits. A
// fragment of kernels_impl.h: it is included there, inside that header's
// anonymous namespace, after the float, integer and attention kernels, and
// is not a standalone header (no guards or includes of its own).
// K-quant weights (Q4_K, Q5_K, Q6_K): chunks of rows are dequantized into a
// per-thread float buffer (L1-sized for decode, about 128 KiB for batches)
// and multiplied by the float32 algorithms above. The block loops below
// follow the reference in engine/kquants.cc but run over whole sub-blocks
// with uniform scales, so the compiler vectorizes them for this file's
// target; the tests compare every ISA with the reference.
inline void DequantQ6KBlockFast(const uint8_t* __restrict__ b,
                                float* __restrict__ out) {
  const float d = HalfBitsToFloat(b + 208);
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = b + 64 * h;
    const uint8_t* qh = b + 128 + 32 * h;
    for (int half = 0; half < 2; ++half) {
      const float s0 = d * sc[8 * h + half], s1 = d * sc[8 * h + half + 2],
                  s2 = d * sc[8 * h + half + 4], s3 = d * sc[8 * h + half + 6];
      float* __restrict__ o = out + 128 * h + 16 * half;
      for (int l = 16 * half; l < 16 * half + 16; ++l) {
        const int lo0 = ql[l], lo1 = ql[32 + l], hi = qh[l];
        const int i = l - 16 * half;
        o[i] = s0 * float(((lo0 & 15) | ((hi & 3) << 4)) - 32);
        o[32 + i] = s1 * float(((lo1 & 15) | (((hi >> 2) & 3) << 4)) - 32);
        o[64 + i] = s2 * float(((lo0 >> 4) | (((hi >> 4) & 3) << 4)) - 32);
        o[96 + i] = s3 * float(((lo1 >> 4) | (((hi >> 6) & 3) << 4)) - 32);
      }
    }
  }
}

// UnpackScaleMin (engine/kquants.h) inlined, for the hot loop.
inline void ScaleMinInline(const uint8_t* s, int b, int* scale, int* min) {
  if (b < 4) {
    *scale = s[b] & 63;
    *min = s[b + 4] & 63;
  } else {
    *scale = (s[b + 4] & 15) | ((s[b - 4] >> 6) << 4);
    *min = (s[b + 4] >> 4) | ((s[b] >> 6) << 4);
  }
}

template <bool kFive>
inline void DequantAsymKBlockFast(const uint8_t* __restrict__ b,
                                  float* __restrict__ out) {
  const float d = HalfBitsToFloat(b), dmin = HalfBitsToFloat(b + 2);
  const uint8_t* qs = b + (kFive ? 48 : 16);
  const uint8_t* qh = b + 16;
  for (int p = 0; p < 4; ++p) {
    int sc0, m0, sc1, m1;
    ScaleMinInline(b + 4, 2 * p, &sc0, &m0);
    ScaleMinInline(b + 4, 2 * p + 1, &sc1, &m1);
    const float st0 = d * float(sc0), off0 = dmin * float(m0);
    const float st1 = d * float(sc1), off1 = dmin * float(m1);
    const uint8_t* q = qs + 32 * p;
    float* __restrict__ o = out + 64 * p;
    for (int l = 0; l < 32; ++l) {
      int a = q[l] & 15, c = q[l] >> 4;
      if constexpr (kFive) {
        a |= ((qh[l] >> (2 * p)) & 1) << 4;
        c |= ((qh[l] >> (2 * p + 1)) & 1) << 4;
      }
      o[l] = st0 * float(a) - off0;
      o[32 + l] = st1 * float(c) - off1;
    }
  }
}

inline void DequantKRowFast(DType d, const uint8_t* row, int64_t cols,
                            float* out) {
  for (int64_t k = 0; k < cols; k += kQK) {
    const int64_t blk = k / kQK;
    if (d == DType::kQ6_K) {
      DequantQ6KBlockFast(row + blk * kQ6KBytes, out + k);
    } else if (d == DType::kQ4_K) {
      DequantAsymKBlockFast<false>(row + blk * kQ4KBytes, out + k);
    } else {
      DequantAsymKBlockFast<true>(row + blk * kQ5KBytes, out + k);
    }
  }
}

template <class V>
inline void RunKQuant(const RowRangeArgs& a) {
  const WeightMatrix& w = *a.w;
  const int64_t cols = std::max<int64_t>(w.cols, 1);
  const int64_t chunk = a.n == 1
                            ? std::clamp<int64_t>(4096 / cols, 1, 16)
                            : std::clamp<int64_t>(32768 / cols / 4 * 4, 4, 64);
  thread_local std::vector<float> buf;
  if (buf.size() < size_t(chunk * w.cols)) buf.resize(size_t(chunk * w.cols));
  const int64_t rb = w.row_bytes();
  for (int64_t r0 = a.r0; r0 < a.r1; r0 += chunk) {
    const int64_t cnt = std::min(chunk, a.r1 - r0);
    for (int64_t i = 0; i < cnt; ++i)
      DequantKRowFast(w.dtype, w.data + (r0 + i) * rb, w.cols,
                      buf.data() + i * w.cols);
    WeightMatrix f{.dtype = DType::kF32,
                   .rows = cnt,
                   .cols = w.cols,
                   .data = reinterpret_cast<const uint8_t*>(buf.data())};
    RowRangeArgs b = a;
    b.w = &f;
    b.y = a.y + r0;
    b.r0 = 0;
    b.r1 = cnt;
    b.xq = nullptr;
    RunFloat<V, DType::kF32>(b);
  }
}

// Q4_K weights with int8 activations (RowRangeArgs::xq, one scale per 32
// columns), decode batches: per 32-weight sub-block the u8 nibbles times the
// s8 activations sum exactly in int32 (vpmaddubsw cannot saturate: 2 * 15 *
// 127 < 32767), scaled by d * scale * d_x; the mins contribute dmin * min *
// d_x * sum(x_q), with the activation sums computed once per call.
inline float HorizontalSum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <class V>
inline void RunIntQ4K(const RowRangeArgs& a) {
  const WeightMatrix& w = *a.w;
  const int64_t subs = w.cols / 32, blocks = w.cols / kQK;
  thread_local std::vector<float> xsum;
  if (xsum.size() < size_t(a.n * subs)) xsum.resize(size_t(a.n * subs));
  for (int b = 0; b < a.n; ++b)
    for (int64_t s = 0; s < subs; ++s) {
      const int8_t* x = a.xq + b * a.ldxq + 32 * s;
      int32_t t = 0;
      for (int l = 0; l < 32; ++l) t += x[l];
      xsum[size_t(b * subs + s)] = float(t) * a.xscale[b * a.ldxs + s];
    }
  const __m256i low = _mm256_set1_epi8(0x0f);
  const int64_t rb = w.row_bytes();
  for (int64_t r = a.r0; r < a.r1; ++r) {
    const uint8_t* row = w.data + r * rb;
    for (int b = 0; b < a.n; ++b) {
      const int8_t* xq = a.xq + b * a.ldxq;
      const float* xs = a.xscale + b * a.ldxs;
      const float* xm = xsum.data() + b * subs;
      __m256 acc = _mm256_setzero_ps();
      float mins = 0;
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const uint8_t* bp = row + blk * kQ4KBytes;
        const float d = HalfBitsToFloat(bp), dmin = HalfBitsToFloat(bp + 2);
        for (int p = 0; p < 4; ++p) {
          int sc0, m0, sc1, m1;
          ScaleMinInline(bp + 4, 2 * p, &sc0, &m0);
          ScaleMinInline(bp + 4, 2 * p + 1, &sc1, &m1);
          const int64_t s0 = blk * 8 + 2 * p;
          const __m256i q = _mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(bp + 16 + 32 * p));
          const __m256i lo = _mm256_and_si256(q, low);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
          const __m256i x0 = _mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(xq + 32 * s0));
          const __m256i x1 = _mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(xq + 32 * s0 + 32));
          const __m256i p0 = V::DotU8S8(_mm256_setzero_si256(), lo, x0);
          const __m256i p1 = V::DotU8S8(_mm256_setzero_si256(), hi, x1);
          acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0),
                                _mm256_set1_ps(d * float(sc0) * xs[s0]), acc);
          acc =
              _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1),
                              _mm256_set1_ps(d * float(sc1) * xs[s0 + 1]), acc);
          mins += dmin * (float(m0) * xm[s0] + float(m1) * xm[s0 + 1]);
        }
      }
      a.y[b * a.ldy + r] = HorizontalSum256(acc) - mins;
    }
  }
}

// Q6_K likewise: the 6-bit values q in [0, 64) are u8, the scales apply per
// 16 weights (the low and high four int32 lanes of each 32-weight dot), and
// the -32 offset contributes -32 * d * scale * d_x * sum(x_q) per 16.
template <class V>
inline void RunIntQ6K(const RowRangeArgs& a) {
  const WeightMatrix& w = *a.w;
  const int64_t halves = w.cols / 16, blocks = w.cols / kQK;
  thread_local std::vector<float> xsum;
  if (xsum.size() < size_t(a.n * halves)) xsum.resize(size_t(a.n * halves));
  for (int b = 0; b < a.n; ++b)
    for (int64_t s = 0; s < halves; ++s) {
      const int8_t* x = a.xq + b * a.ldxq + 16 * s;
      int32_t t = 0;
      for (int l = 0; l < 16; ++l) t += x[l];
      xsum[size_t(b * halves + s)] = float(t) * a.xscale[b * a.ldxs + s / 2];
    }
  const __m256i low = _mm256_set1_epi8(0x0f), two = _mm256_set1_epi8(0x30);
  const int64_t rb = w.row_bytes();
  for (int64_t r = a.r0; r < a.r1; ++r) {
    const uint8_t* row = w.data + r * rb;
    for (int b = 0; b < a.n; ++b) {
      const int8_t* xq = a.xq + b * a.ldxq;
      const float* xs = a.xscale + b * a.ldxs;
      const float* xm = xsum.data() + b * halves;
      __m256 acc = _mm256_setzero_ps();
      float offset = 0;
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const uint8_t* bp = row + blk * kQ6KBytes;
        const float d = HalfBitsToFloat(bp + 208);
        const int8_t* sc = reinterpret_cast<const int8_t*>(bp + 192);
        for (int h = 0; h < 2; ++h) {
          const __m256i qa =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp + 64 * h));
          const __m256i qb = _mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(bp + 64 * h + 32));
          const __m256i qh = _mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(bp + 128 + 32 * h));
          const __m256i q[4] = {
              _mm256_or_si256(_mm256_and_si256(qa, low),
                              _mm256_and_si256(_mm256_slli_epi16(qh, 4), two)),
              _mm256_or_si256(_mm256_and_si256(qb, low),
                              _mm256_and_si256(_mm256_slli_epi16(qh, 2), two)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), low),
                              _mm256_and_si256(qh, two)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), low),
                              _mm256_and_si256(_mm256_srli_epi16(qh, 2), two))};
          for (int s = 0; s < 4; ++s) {
            const int64_t s32 = blk * 8 + 4 * h + s;  // activation block
            const int g = 8 * h + 2 * s;              // scale index
            const __m256i x = _mm256_loadu_si256(
                reinterpret_cast<const __m256i*>(xq + 32 * s32));
            const __m256i p = V::DotU8S8(_mm256_setzero_si256(), q[s], x);
            const float f0 = d * float(sc[g]), f1 = d * float(sc[g + 1]);
            const __m256 scale = _mm256_set_m128(_mm_set1_ps(f1 * xs[s32]),
                                                 _mm_set1_ps(f0 * xs[s32]));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), scale, acc);
            offset += 32.0f * (f0 * xm[2 * s32] + f1 * xm[2 * s32 + 1]);
          }
        }
      }
      a.y[b * a.ldy + r] = HorizontalSum256(acc) - offset;
    }
  }
}
