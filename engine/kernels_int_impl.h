// Integer-dot kernels (int8 and Q8_0 weights x int8 activations), written
// once over the vector traits. A fragment of kernels_impl.h: it is included
// there, inside that header's anonymous namespace, after the float kernels,
// and is not a standalone header (no guards or includes of its own).
// ---------------------------------------------------------------------------
// Integer dot products (int8 and Q8_0 weights, int8 activations).

// Sum of the 4 int32 lane groups... as floats: the lane sums of a, b, c, d.
inline __m128 Reduce4x256(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

inline __m256i Load32(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// Block `blk` of a Q8_0 row: a float16 scale, then 32 int8.
template <DType T>
inline const uint8_t* IntBlock(const uint8_t* row, int64_t blk) {
  static_assert(T == DType::kQ8_0);
  return row + blk * 34 + 2;
}

// The weights' scale of that block (Q8_0's float16 block scale).
template <DType T>
inline float IntBlockScale(const uint8_t* row, int64_t blk) {
  static_assert(T == DType::kQ8_0);
  return HalfBitsToFloat(row + blk * 34);
}

// int8 weights (per-row scale) x int16 activations (one scale), n = 1: R
// rows stream side by side, each 32-column step loads the activations once
// (two int16 vectors) for all R rows; 16 weights sign-extended to int16 per
// vector and multiplied with vpmaddwd (vpdpwssd with VNNI) into two int32
// accumulators per row, flushed to float every kI16Flush columns
// (|w * x| <= 2^22, so an int32 lane cannot overflow within that run). The
// R rows' horizontal sums share one reduction.
constexpr int64_t kI16Flush = 1024;

inline __m256i DotS16(__m256i acc, __m256i a, __m256i b) {
#if defined(HANGAR_KERNELS_VNNI)
  return _mm256_dpwssd_epi32(acc, a, b);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

template <class V, int R>
inline void IntRowsI8x16(const RowRangeArgs& a, int64_t r) {
  static_assert(R == 1 || R == 4);
  const WeightMatrix& w = *a.w;
  const int8_t* rows[R];
  for (int i = 0; i < R; ++i)
    rows[i] = reinterpret_cast<const int8_t*>(w.data) + (r + i) * w.cols;
  const int16_t* x = a.xq16;
  const int64_t kend = w.cols / 16 * 16;
  // The next tile's same columns: each of the R streams runs that far ahead.
  const int64_t ahead = 2 * R * w.cols;
  auto wv = [&](int i, int64_t k) {
    return _mm256_cvtepi8_epi16(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[i] + k)));
  };
  auto xv = [&](int64_t k) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + k));
  };
  __m256 facc[R];
#pragma GCC unroll 4
  for (int i = 0; i < R; ++i) facc[i] = _mm256_setzero_ps();
  for (int64_t k0 = 0; k0 < kend; k0 += kI16Flush) {
    const int64_t k1 = std::min(kend, k0 + kI16Flush);
    __m256i i0[R], i1[R];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) i0[i] = i1[i] = _mm256_setzero_si256();
    int64_t k = k0;
    if constexpr (R == 1) {
      for (; k + 64 <= k1; k += 64) {
        i0[0] = DotS16(i0[0], wv(0, k), xv(k));
        i1[0] = DotS16(i1[0], wv(0, k + 16), xv(k + 16));
        i0[0] = DotS16(i0[0], wv(0, k + 32), xv(k + 32));
        i1[0] = DotS16(i1[0], wv(0, k + 48), xv(k + 48));
      }
    }
    for (; k + 32 <= k1; k += 32) {
      const __m256i x0 = xv(k), x1 = xv(k + 16);
      if (R > 1 && (k & 63) == 0) {
#pragma GCC unroll 4
        for (int i = 0; i < R; ++i)
          __builtin_prefetch(rows[i] + k + ahead, 0, 3);
      }
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) {
        i0[i] = DotS16(i0[i], wv(i, k), x0);
        i1[i] = DotS16(i1[i], wv(i, k + 16), x1);
      }
    }
    if (k < k1) {
      const __m256i x0 = xv(k);
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) i0[i] = DotS16(i0[i], wv(i, k), x0);
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i)
      facc[i] = _mm256_add_ps(
          facc[i], _mm256_cvtepi32_ps(_mm256_add_epi32(i0[i], i1[i])));
  }
  alignas(16) float sums[4];
  if constexpr (R == 4) {
    _mm_store_ps(sums, Reduce4x256(facc[0], facc[1], facc[2], facc[3]));
  } else {
    sums[0] = _mm_cvtss_f32(Reduce4x256(facc[0], facc[0], facc[0], facc[0]));
  }
  for (int i = 0; i < R; ++i) {
    int64_t tail = 0;
    for (int64_t k = kend; k < w.cols; ++k) tail += int64_t(rows[i][k]) * x[k];
    a.y[r + i] = (sums[i] + float(tail)) * (w.scales[r + i] * a.xscale16);
  }
}

template <class V>
inline void RunIntI8x16(const RowRangeArgs& a) {
  int64_t r = a.r0;
  for (; r + 4 <= a.r1; r += 4) IntRowsI8x16<V, 4>(a, r);
  for (; r < a.r1; ++r) IntRowsI8x16<V, 1>(a, r);
}

// With VNNI, vpdpbusd takes one operand as u8 biased by 128 and the bias is
// taken off through the int32 starting values (see IntTile and IntGemm).
#if defined(HANGAR_KERNELS_VNNI)
constexpr bool kIntBias128 = true;
#else
constexpr bool kIntBias128 = false;
#endif

template <class V, DType T, int NB>
inline void IntTile(const RowRangeArgs& a, int64_t r, int b0) {
  constexpr int R = 4;
  const WeightMatrix& w = *a.w;
  const int64_t rb = w.row_bytes();
  const int64_t blocks = w.cols / 32;
  const uint8_t* rows[R];
  for (int i = 0; i < R; ++i) rows[i] = w.data + (r + i) * rb;
  const int8_t* xs[NB];
  for (int j = 0; j < NB; ++j) xs[j] = a.xq + (b0 + j) * a.ldxq;
  const int64_t ahead = 2 * R * rb;
  __m256 acc[R][NB];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm256_setzero_ps();
  for (int64_t blk = 0; blk < blocks; ++blk) {
    {  // every block: 34-byte blocks cross a line every other block
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i)
        __builtin_prefetch(IntBlock<T>(rows[i], blk) + ahead, 0, 3);
    }
    __m256i xv[NB], x0[NB];
    __m256 dx[NB];
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) {
      xv[j] = Load32(xs[j] + blk * 32);
      dx[j] = _mm256_set1_ps(a.xscale[(b0 + j) * a.ldxs + blk]);
      // With VNNI the weights go in as w + 128 (u8): the int32 lanes start
      // at -128 * (their 4 activations' sum), once per block for all rows.
      if constexpr (kIntBias128)
        x0[j] =
            _mm256_sub_epi32(_mm256_setzero_si256(),
                             V::DotU8S8(_mm256_setzero_si256(),
                                        _mm256_set1_epi8(char(0x80)), xv[j]));
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m256i wv = Load32(IntBlock<T>(rows[i], blk));
      __m256i aw;
      if constexpr (kIntBias128) {
        aw = _mm256_xor_si256(wv, _mm256_set1_epi8(char(0x80)));
      } else {
        aw = _mm256_abs_epi8(wv);
      }
      // d_w * d_x per pair: the scale of the weights times the
      // activations' block scale.
      const __m256 dw = _mm256_set1_ps(IntBlockScale<T>(rows[i], blk));
#pragma GCC unroll 8
      for (int j = 0; j < NB; ++j) {
        __m256i p;
        if constexpr (kIntBias128) {
          p = V::DotU8S8(x0[j], aw, xv[j]);
        } else {
          p = V::DotU8S8(_mm256_setzero_si256(), aw,
                         _mm256_sign_epi8(xv[j], wv));
        }
        acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p),
                                    _mm256_mul_ps(dw, dx[j]), acc[i][j]);
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NB; ++j)
    _mm_storeu_ps(a.y + (b0 + j) * a.ldy + r,
                  Reduce4x256(acc[0][j], acc[1][j], acc[2][j], acc[3][j]));
}

// One weight row x NB activation rows, scalar over blocks (leftover rows).
template <class V, DType T, int NB>
inline void IntRow(const RowRangeArgs& a, int64_t r, int b0) {
  const WeightMatrix& w = *a.w;
  const uint8_t* row = w.data + r * w.row_bytes();
  const int64_t blocks = w.cols / 32;
  for (int j = 0; j < NB; ++j) {
    const int8_t* x = a.xq + (b0 + j) * a.ldxq;
    __m256 facc = _mm256_setzero_ps();
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const __m256i wv = Load32(IntBlock<T>(row, blk));
      const __m256i p = V::DotU8S8(_mm256_setzero_si256(), _mm256_abs_epi8(wv),
                                   _mm256_sign_epi8(Load32(x + blk * 32), wv));
      const float d =
          IntBlockScale<T>(row, blk) * a.xscale[(b0 + j) * a.ldxs + blk];
      facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d), facc);
    }
    const float s = _mm_cvtss_f32(Reduce4x256(facc, facc, facc, facc));
    a.y[(b0 + j) * a.ldy + r] = s;
  }
}

template <class V, DType T, int NB>
inline void IntTiles(const RowRangeArgs& a, int b0) {
  int64_t r = a.r0;
  for (; r + 4 <= a.r1; r += 4) IntTile<V, T, NB>(a, r, b0);
  for (; r < a.r1; ++r) IntRow<V, T, NB>(a, r, b0);
}

template <class V, DType T, int NB = V::kIntNb>
inline void IntTilesN(const RowRangeArgs& a, int b0, int nb) {
  if constexpr (NB >= 1) {
    if (nb == NB) return IntTiles<V, T, NB>(a, b0);
    if constexpr (NB > 1) return IntTilesN<V, T, NB - 1>(a, b0, nb);
  }
}

// ---------------------------------------------------------------------------

template <class V, DType T>
inline void RunFloat(const RowRangeArgs& a) {
  const WeightMatrix& w = *a.w;
  const int64_t kend = w.cols / V::kW * V::kW;
  if (a.n == 1) {
    for (int64_t r = a.r0; r < a.r1; ++r) Row1<V, T>(a, r, kend);
    return;
  }
  if (a.xpack != nullptr) return Gemm<V, T>(a, kend);
  for (int b = 0; b < a.n; b += V::kDotNb)
    DotTilesN<V, T>(a, b, std::min(V::kDotNb, a.n - b), kend);
}

// ---------------------------------------------------------------------------
// Integer GEMM (n >= kGemmMinRows; MatMul packs the quantized activations
// with PackIntActivations). A panel of kIntNr weight rows x kIntKb blocks is
// repacked into L1 as [k / 4][row] runs of 4 bytes, so one 256-bit load holds
// 4 columns of 8 rows; a micro-tile of kIntMr activation rows broadcasts 4
// activation bytes per row and dot-accumulates them into int32 lanes (one
// lane per weight row). Each 32-column block's int32 sums are converted and
// scaled by d_w * d_x into float accumulators.
//
// With VNNI the activations come as q + 128 (u8) and one vpdpbusd does a
// step; the panel carries -128 * sum(w) per row and block as the int32
// starting value. Without VNNI vpmaddubsw would saturate on (q + 128) * w, so
// the step is |w| x sign(q, w) (vpsignb, vpmaddubsw, vpmaddwd, vpaddd).

template <class V>
constexpr int kIntNrv = V::kW == 16 ? 2 : 1;  // 8-row int32 vectors per panel
template <class V>
constexpr int kIntNr = 8 * kIntNrv<V>;
template <class V>
constexpr int kIntMr = V::kW == 16 ? 6 : 4;  // == IntGemmTileRows
constexpr int kIntKb = 24;                   // blocks per panel (768 columns)

// Repacks rows [r, r + nr) x blocks [blk0, blk0 + nb) of `w` (zero rows past
// nr).
template <class V, DType T>
inline void PackIntPanel(const WeightMatrix& w, int64_t r, int nr, int64_t blk0,
                         int nb, uint8_t* pw, float* pdw, int32_t* pws) {
  constexpr int NR = kIntNr<V>;
  const int64_t rb = w.row_bytes();
  for (int j = 0; j < NR; ++j) {
    if (j >= nr) {
      for (int b = 0; b < nb; ++b) {
        for (int s = 0; s < 8; ++s)
          std::memset(pw + ((b * 8 + s) * NR + j) * 4, 0, 4);
        pdw[b * NR + j] = 0.0f;
        pws[b * NR + j] = 0;
      }
      continue;
    }
    const uint8_t* row = w.data + (r + j) * rb;
    for (int b = 0; b < nb; ++b) {
      const uint8_t* src = IntBlock<T>(row, blk0 + b);
      for (int s = 0; s < 8; ++s)
        std::memcpy(pw + ((b * 8 + s) * NR + j) * 4, src + 4 * s, 4);
      pdw[b * NR + j] = IntBlockScale<T>(row, blk0 + b);
      if constexpr (kIntBias128) {
        int32_t sum = 0;
        for (int t = 0; t < 32; ++t) sum += int8_t(src[t]);
        pws[b * NR + j] = -128 * sum;
      }
    }
  }
}

// y[i][0..nr) (+)= the panel's products with activation rows i < mr of one
// packed group (xp: its [k / 4][kIntMr] bytes from the panel's first column;
// xs: its [block][kIntMr] scales from the panel's first block).
template <class V>
inline void IntGemmMicro(const uint8_t* pw, const float* pdw,
                         const int32_t* pws, int nb, const uint8_t* xp,
                         const float* xs, float* y, int64_t ldy, int nr, int mr,
                         bool accumulate) {
  constexpr int NRV = kIntNrv<V>, NR = kIntNr<V>, MR = kIntMr<V>;
  __m256 facc[MR][NRV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NRV; ++v) facc[i][v] = _mm256_setzero_ps();
  for (int b = 0; b < nb; ++b) {
    __m256i iacc[MR][NRV];
#pragma GCC unroll 2
    for (int v = 0; v < NRV; ++v) {
      const __m256i init =
          kIntBias128 ? Load32(pws + b * NR + 8 * v) : _mm256_setzero_si256();
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) iacc[i][v] = init;
    }
#pragma GCC unroll 8
    for (int s = 0; s < 8; ++s) {
      const uint8_t* wp = pw + (b * 8 + s) * NR * 4;
      const uint8_t* xq = xp + (b * 8 + s) * MR * 4;
      __m256i wv[NRV], aw[NRV];
#pragma GCC unroll 2
      for (int v = 0; v < NRV; ++v) {
        wv[v] = Load32(wp + 32 * v);
        if constexpr (!kIntBias128) aw[v] = _mm256_abs_epi8(wv[v]);
      }
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        int32_t x4;
        std::memcpy(&x4, xq + 4 * i, 4);
        const __m256i xb = _mm256_set1_epi32(x4);
#pragma GCC unroll 2
        for (int v = 0; v < NRV; ++v) {
          if constexpr (kIntBias128) {
            iacc[i][v] = V::DotU8S8(iacc[i][v], xb, wv[v]);
          } else {
            iacc[i][v] =
                V::DotU8S8(iacc[i][v], aw[v], _mm256_sign_epi8(xb, wv[v]));
          }
        }
      }
    }
#pragma GCC unroll 2
    for (int v = 0; v < NRV; ++v) {
      const __m256 dw = _mm256_loadu_ps(pdw + b * NR + 8 * v);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i)
        facc[i][v] = _mm256_fmadd_ps(
            _mm256_cvtepi32_ps(iacc[i][v]),
            _mm256_mul_ps(dw, _mm256_set1_ps(xs[b * MR + i])), facc[i][v]);
    }
  }
  for (int i = 0; i < mr; ++i) {
    float* yi = y + i * ldy;
    if (nr == NR) {
#pragma GCC unroll 2
      for (int v = 0; v < NRV; ++v) {
        __m256 t = facc[i][v];
        if (accumulate) t = _mm256_add_ps(t, _mm256_loadu_ps(yi + 8 * v));
        _mm256_storeu_ps(yi + 8 * v, t);
      }
    } else {
      alignas(32) float tmp[NR];
      for (int v = 0; v < NRV; ++v) _mm256_store_ps(tmp + 8 * v, facc[i][v]);
      for (int j = 0; j < nr; ++j) yi[j] = accumulate ? yi[j] + tmp[j] : tmp[j];
    }
  }
}

template <class V, DType T>
inline void IntGemm(const RowRangeArgs& a) {
  constexpr int NR = kIntNr<V>, MR = kIntMr<V>;
  const WeightMatrix& w = *a.w;
  alignas(64) uint8_t pw[kIntKb * 32 * NR];
  alignas(64) float pdw[kIntKb * NR];
  alignas(64) int32_t pws[kIntKb * NR];
  const int64_t blocks = w.cols / 32;
  const int groups = (a.n + MR - 1) / MR;
  for (int64_t blk0 = 0; blk0 < blocks; blk0 += kIntKb) {
    const int nb = int(std::min<int64_t>(kIntKb, blocks - blk0));
    for (int64_t r = a.r0; r < a.r1; r += NR) {
      const int nr = int(std::min<int64_t>(NR, a.r1 - r));
      PackIntPanel<V, T>(w, r, nr, blk0, nb, pw, pdw, pws);
      for (int g = 0; g < groups; ++g) {
        const int b = g * MR;
        IntGemmMicro<V>(
            pw, pdw, pws, nb, a.xqpack + (int64_t(g) * w.cols + blk0 * 32) * MR,
            a.xspack + (int64_t(g) * blocks + blk0) * MR, a.y + b * a.ldy + r,
            a.ldy, nr, std::min(MR, a.n - b), blk0 > 0);
      }
    }
  }
}

template <class V, DType T>
inline void RunInt(const RowRangeArgs& a) {
  if (a.xqpack != nullptr) return IntGemm<V, T>(a);
  for (int b = 0; b < a.n; b += V::kIntNb)
    IntTilesN<V, T>(a, b, std::min(V::kIntNb, a.n - b));
}
