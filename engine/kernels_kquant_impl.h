// K-quant kernels (Q4_K, Q5_K, Q6_K), written once over the vector traits. A
// fragment of kernels_impl.h: it is included there, inside that header's
// anonymous namespace, after the float, integer and attention kernels, and
// is not a standalone header (no guards or includes of its own).
//
// Two paths:
//   * decode batches (n < kGemmMinRows, activations quantized to int8):
//     RunIntKQuant at the end of this file, integer dot products on the
//     packed blocks;
//   * everything else (prefill's packed GEMM, and calls without int8
//     activations): RunKQuant, which dequantizes chunks of rows into a
//     per-thread float buffer (L1-sized for decode, about 128 KiB for
//     batches) and multiplies them with the float32 algorithms above. Its
//     block loops follow the reference in engine/kquants.cc but run over
//     whole sub-blocks with uniform scales, so the compiler vectorizes them
//     for this file's target.
// The tests compare every ISA with the reference (engine/kquants_test.cc).
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

// ---------------------------------------------------------------------------
// K-quant weights (Q4_K, Q5_K, Q6_K) with int8 activations, decode batches
// (n < kGemmMinRows): one algorithm, RunIntKQuant<V, P>, over an unpacking
// policy P per format and a width layer KqVec<V> per target.
//
// The activations come as MatMul quantized them for Q8_0 (RowRangeArgs::xq,
// int8 with one scale d_x per 32 columns). Per call, for each activation
// row, two small tables are built once: the scales expanded to 8 lanes per
// 32 columns (so a 256- or 512-bit load gives the float factor of one or
// two sub-blocks), and the "offset sums" d_x * sum(x_q) per group of
// P::kGroup columns (32 for Q4_K/Q5_K's mins, 16 for Q6_K's -32 offset).
//
// A tile is R weight rows x NB activation rows (4 x 1 at batch 1, with
// 256-bit vectors on every target; 4 x 2 on AVX-512 and 2 x 2 on AVX2 for
// batches). Per super-block (256
// weights) each row's policy unpacks its scales once (the six-bit
// scale/min pairs of Q4_K/Q5_K with 32-bit masks, Q6_K's int8 scales with
// one shuffle per sub-block) into int16 lanes. Per 32-weight sub-block (two
// per 512-bit vector) the policy unpacks the weights to u8 values in
// registers (nibbles with shifts and masks, Q5_K's fifth bit and Q6_K's
// high two bits or-ed in), and for every activation row of the tile
//     vpmaddubsw(q, x) -> int16 pair sums (at most 2 * 63 * 127 < 32767),
//     vpmaddwd(., scale16) -> int32 with the sub-block scale folded in,
//     one conversion and one FMA with d_x into the super-block's float sum.
// At the end of the super-block the sum is scaled by d once, and the
// offset term -sum_g off_g * (d_x * sum x_q)_g (off = dmin * min for
// Q4_K/Q5_K, 32 * d * scale for Q6_K) is one or two FMAs. Each activation
// vector is loaded once per R rows, each weight vector unpacked once per NB
// activation rows.

// Offset sums and expanded scales of the activations (see above).
struct KqActivations {
  const int8_t* xq;
  int64_t ldxq;
  const float* xs8;  // [n][cols / 32 * 8]
  int64_t ld8;
  const float* sums;  // [n][cols / group]
  int64_t ldsum;
};

template <class V, bool kWide = (V::kW == 16)>
struct KqVec;

// 256-bit: one sub-block per vector.
template <class V>
struct KqVec<V, false> {
  using I = __m256i;
  using F = __m256;
  static constexpr int kSubs = 1;
  static I Join(__m256i a, __m256i) { return a; }
  static I LoadI(const void* p) {
    return _mm256_loadu_si256(static_cast<const __m256i*>(p));
  }
  static I Dot(I q, I x, I s16) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), s16);
  }
  static F Zero() { return _mm256_setzero_ps(); }
  static F LoadF(const float* p) { return _mm256_loadu_ps(p); }
  static F Set1(float v) { return _mm256_set1_ps(v); }
  static F Cvt(I v) { return _mm256_cvtepi32_ps(v); }
  static F Fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F Fnma(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
  // a.off[g] * sums[g] for the kGroups groups of a super-block, into acc.
  template <int kGroups>
  static F Offsets(const float* off, const float* sums, F acc) {
#pragma GCC unroll 2
    for (int g = 0; g < kGroups; g += 8)
      acc = Fnma(LoadF(off + g), LoadF(sums + g), acc);
    return acc;
  }
  static float Reduce(F v) {
    __m128 t =
        _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    t = _mm_add_ps(t, _mm_movehl_ps(t, t));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
  }
};

// 512-bit: two sub-blocks per vector (low and high 256 bits).
template <class V>
struct KqVec<V, true> {
  using I = __m512i;
  using F = __m512;
  static constexpr int kSubs = 2;
  static I Join(__m256i a, __m256i b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
  }
  static I LoadI(const void* p) { return _mm512_loadu_si512(p); }
  static I Dot(I q, I x, I s16) {
    return _mm512_madd_epi16(_mm512_maddubs_epi16(q, x), s16);
  }
  static F Zero() { return _mm512_setzero_ps(); }
  static F LoadF(const float* p) { return _mm512_loadu_ps(p); }
  static F Set1(float v) { return _mm512_set1_ps(v); }
  static F Cvt(I v) { return _mm512_cvtepi32_ps(v); }
  static F Fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F Fnma(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }
  template <int kGroups>
  static F Offsets(const float* off, const float* sums, F acc) {
    if constexpr (kGroups == 8) {
      return Fnma(_mm512_zextps256_ps512(_mm256_loadu_ps(off)),
                  _mm512_zextps256_ps512(_mm256_loadu_ps(sums)), acc);
    } else {
      static_assert(kGroups == 16);
      return Fnma(LoadF(off), LoadF(sums), acc);
    }
  }
  static float Reduce(F v) { return _mm512_reduce_add_ps(v); }
};

inline __m256i LoadU256(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// Q4_K and Q5_K (kFive): d, dmin, 12 bytes of six-bit scales and mins,
// [qh[32],] qs[128]. Sub-block s (32 weights) reads qs[32 (s / 2) + l], the
// low nibble for even s and the high one for odd s; Q5_K's fifth bit is
// (qh[l] >> s) & 1.
template <bool kFive>
struct KqAsymPolicy {
  static constexpr int kBytes = kFive ? kQ5KBytes : kQ4KBytes;
  static constexpr int kGroup = 32;  // columns per offset (min) group
  static constexpr int kGroups = 8;

  struct Block {
    const uint8_t* b;
    float d;
    alignas(32) int32_t sc[8];  // scale in both int16 halves
    alignas(32) float off[8];   // dmin * min

    void Prepare(const uint8_t* p) {
      b = p;
      d = HalfBitsToFloat(p);
      // The 12 bytes as three words: scales 0-3 and mins 0-3 are the low 6
      // bits of words a and m; scales and mins 4-7 take their low 4 bits
      // from word c's nibbles and their high 2 bits from the top of a / m.
      uint32_t a, m, c;
      std::memcpy(&a, p + 4, 4);
      std::memcpy(&m, p + 8, 4);
      std::memcpy(&c, p + 12, 4);
      const uint64_t scales =
          uint64_t(a & 0x3f3f3f3fu) |
          uint64_t((c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u)) << 32;
      const uint64_t mins =
          uint64_t(m & 0x3f3f3f3fu) |
          uint64_t(((c >> 4) & 0x0f0f0f0fu) | ((m >> 2) & 0x30303030u)) << 32;
      const __m256i s32 = _mm256_cvtepu8_epi32(
          _mm_cvtsi64_si128(static_cast<long long>(scales)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(sc),
                         _mm256_or_si256(s32, _mm256_slli_epi32(s32, 16)));
      // Scales() broadcasts from memory (a load-port operation); without
      // this the compiler extracts them from the register with shuffles,
      // which compete with the unpacking for the shuffle port.
      asm("" : "+m"(sc));
      const __m256 m32 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(
          _mm_cvtsi64_si128(static_cast<long long>(mins))));
      _mm256_store_ps(
          off, _mm256_mul_ps(m32, _mm256_set1_ps(HalfBitsToFloat(p + 2))));
    }
    // u8 values (< 16, or < 32 for Q5_K) of sub-block s.
    __m256i Values(int s) const {
      const __m256i q = LoadU256(b + (kFive ? 48 : 16) + 32 * (s / 2));
      const __m256i nib = _mm256_and_si256(
          (s & 1) ? _mm256_srli_epi16(q, 4) : q, _mm256_set1_epi8(0x0f));
      if constexpr (!kFive) {
        return nib;
      } else {
        const __m256i qh = LoadU256(b + 16);
        // Bit s of each qh byte moved to bit 4 (16-bit shifts; the mask
        // keeps only bits that stayed within their byte).
        const __m256i h = s <= 4 ? _mm256_slli_epi16(qh, 4 - s)
                                 : _mm256_srli_epi16(qh, s - 4);
        return _mm256_or_si256(nib,
                               _mm256_and_si256(h, _mm256_set1_epi8(0x10)));
      }
    }
    // int16 multipliers of sub-block s's pair sums: its scale.
    __m256i Scales(int s) const { return _mm256_set1_epi32(sc[s]); }
  };
};

// Q6_K: ql[128], qh[64], int8 scales[16] (one per 16 weights), d. Sub-block
// t = 4 h + u (h < 2, u < 4) takes the low (u < 2) or high nibble of
// ql[64 h + 32 (u & 1) + l] and bits 2u, 2u + 1 of qh[32 h + l]; values
// q in [0, 64) stand for q - 32, the -32 going through the offset sums.
struct KqQ6Policy {
  static constexpr int kBytes = kQ6KBytes;
  static constexpr int kGroup = 16;  // columns per offset group (scale)
  static constexpr int kGroups = 16;

  struct Block {
    const uint8_t* b;
    float d;
    __m256i lo, hi;             // int16 scales 0-7 / 8-15, in both lanes
    alignas(64) float off[16];  // 32 * d * scale

    void Prepare(const uint8_t* p) {
      b = p;
      d = HalfBitsToFloat(p + 208);
      const __m128i sc =
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 192));
      const __m256i w16 = _mm256_cvtepi8_epi16(sc);
      lo = _mm256_permute4x64_epi64(w16, 0x44);
      hi = _mm256_permute4x64_epi64(w16, 0xee);
      const __m256 k = _mm256_set1_ps(32.0f * d);
      _mm256_store_ps(
          off, _mm256_mul_ps(k, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc))));
      _mm256_store_ps(off + 8,
                      _mm256_mul_ps(k, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                           _mm_srli_si128(sc, 8)))));
    }
    __m256i Values(int t) const {
      const int h = t / 4, u = t % 4;
      const __m256i ql = LoadU256(b + 64 * h + 32 * (u & 1));
      const __m256i qh = LoadU256(b + 128 + 32 * h);
      const __m256i lo = _mm256_and_si256(
          u >= 2 ? _mm256_srli_epi16(ql, 4) : ql, _mm256_set1_epi8(0x0f));
      // Bits 2u, 2u + 1 of qh moved to bits 4, 5.
      const __m256i hi = u == 0   ? _mm256_slli_epi16(qh, 4)
                         : u == 1 ? _mm256_slli_epi16(qh, 2)
                         : u == 2 ? qh
                                  : _mm256_srli_epi16(qh, 2);
      return _mm256_or_si256(lo, _mm256_and_si256(hi, _mm256_set1_epi8(0x30)));
    }
    // Scales 2t (low 16 weights, low 128 bits) and 2t + 1, as int16.
    // One in-lane byte shuffle: int16 scale 2t to the low lane's 8 words,
    // 2t + 1 to the high lane's.
    __m256i Scales(int t) const {
      const int k = t % 4;
      const long long a = 0x0100010001000100LL + 0x0404040404040404LL * k;
      const long long b = a + 0x0202020202020202LL;
      return _mm256_shuffle_epi8(t < 4 ? lo : hi,
                                 _mm256_set_epi64x(b, b, a, a));
    }
  };
};

template <class V, class P, int R, int NB, bool kWide>
inline void KqTile(const RowRangeArgs& a, const KqActivations& x, int64_t r,
                   int b0) {
  using K = KqVec<V, kWide>;
  using I = typename K::I;
  using F = typename K::F;
  const WeightMatrix& w = *a.w;
  const int64_t rb = w.row_bytes(), blocks = w.cols / kQK;
  const uint8_t* rows[R];
#pragma GCC unroll 4
  for (int i = 0; i < R; ++i) rows[i] = w.data + (r + i) * rb;
  // The next tile's rows, a cache line at a time (R interleaved rows are
  // too short for the hardware prefetcher).
  const int64_t ahead = R * rb;
  F acc[R][NB];
#pragma GCC unroll 4
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) acc[i][j] = K::Zero();
  for (int64_t blk = 0; blk < blocks; ++blk) {
    typename P::Block pb[R];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const uint8_t* p = rows[i] + blk * P::kBytes;
#pragma GCC unroll 4
      for (int o = 0; o < P::kBytes; o += 64)
        __builtin_prefetch(p + ahead + o, 0, 3);
      pb[i].Prepare(p);
    }
    F sb[R][NB];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) sb[i][j] = K::Zero();
#pragma GCC unroll 8
    for (int s = 0; s < 8; s += K::kSubs) {
      I xv[NB];
      F xf[NB];
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) {
        xv[j] = K::LoadI(x.xq + (b0 + j) * x.ldxq + blk * kQK + 32 * s);
        xf[j] = K::LoadF(x.xs8 + (b0 + j) * x.ld8 + (blk * 8 + s) * 8);
      }
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) {
        const I q =
            K::Join(pb[i].Values(s), pb[i].Values(K::kSubs == 2 ? s + 1 : s));
        const I sc =
            K::Join(pb[i].Scales(s), pb[i].Scales(K::kSubs == 2 ? s + 1 : s));
#pragma GCC unroll 4
        for (int j = 0; j < NB; ++j)
          sb[i][j] = K::Fma(K::Cvt(K::Dot(q, xv[j], sc)), xf[j], sb[i][j]);
      }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const F d = K::Set1(pb[i].d);
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) {
        acc[i][j] = K::template Offsets<P::kGroups>(
            pb[i].off, x.sums + (b0 + j) * x.ldsum + blk * P::kGroups,
            K::Fma(sb[i][j], d, acc[i][j]));
      }
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j)
      a.y[(b0 + j) * a.ldy + r + i] = K::Reduce(acc[i][j]);
}

template <class V, class P, int NB, bool kWide = (V::kW == 16)>
inline void KqTiles(const RowRangeArgs& a, const KqActivations& x, int b0) {
  // 4 x NB tiles; on AVX2 batches 2 x 2 (8 float accumulators of its 16
  // registers) rather than 4 x 1: the weights are unpacked once per 2
  // activation rows (25-40 % faster at n = 4 than 4 x 1).
  constexpr int R = V::kW == 8 && NB > 1 ? 2 : 4;
  int64_t r = a.r0;
  for (; r + R <= a.r1; r += R) KqTile<V, P, R, NB, kWide>(a, x, r, b0);
  for (; r < a.r1; ++r) KqTile<V, P, 1, NB, kWide>(a, x, r, b0);
}

// Activation rows per tile: 2. With 4 weight rows (2 on AVX2) x 2 (the sum
// and the super-block's sum), the float accumulators fit the registers.
template <class V>
constexpr int kKqNb = 2;

template <class V, class P, int NB = kKqNb<V>>
inline void KqTilesN(const RowRangeArgs& a, const KqActivations& x, int b0,
                     int nb) {
  if constexpr (NB >= 1) {
    if (nb == NB) return KqTiles<V, P, NB>(a, x, b0);
    if constexpr (NB > 1) return KqTilesN<V, P, NB - 1>(a, x, b0, nb);
  }
}

template <class V, class P>
inline void RunIntKQuant(const RowRangeArgs& a) {
  const int64_t cols = a.w->cols, subs = cols / 32;
  const int64_t groups = cols / P::kGroup;
  thread_local std::vector<float> xs8, sums;
  const int64_t ld8 = subs * 8;
  if (xs8.size() < size_t(a.n * ld8)) xs8.resize(size_t(a.n * ld8));
  if (sums.size() < size_t(a.n * groups)) sums.resize(size_t(a.n * groups));
  for (int b = 0; b < a.n; ++b) {
    const int8_t* xq = a.xq + b * a.ldxq;
    const float* xs = a.xscale + b * a.ldxs;
    float* e = xs8.data() + b * ld8;
    float* sm = sums.data() + b * groups;
    for (int64_t s = 0; s < subs; ++s)
      _mm256_storeu_ps(e + 8 * s, _mm256_set1_ps(xs[s]));
    for (int64_t g = 0; g < groups; ++g) {
      int32_t t = 0;
      for (int l = 0; l < P::kGroup; ++l) t += xq[g * P::kGroup + l];
      sm[g] = float(t) * xs[g * P::kGroup / 32];
    }
  }
  const KqActivations x{a.xq, a.ldxq, xs8.data(), ld8, sums.data(), groups};
  // Batch 1 runs 256-bit vectors on every target: on one AVX-512 core
  // with the weights in L2 the 512-bit tiles were 6 % slower for Q4_K (the
  // bulk of a Q4_K_M model) and 4 % faster for Q6_K, and 512-bit integer
  // multiplies may lower the clock of AVX-512 parts.
  if (a.n == 1) return KqTiles<V, P, 1, false>(a, x, 0);
  for (int b = 0; b < a.n; b += kKqNb<V>)
    KqTilesN<V, P>(a, x, b, std::min(kKqNb<V>, a.n - b));
}
