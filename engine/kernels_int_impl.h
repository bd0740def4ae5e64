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
inline const uint8_t* IntBlock(const uint8_t* row, int64_t blk) {
  return row + blk * 34 + 2;
}

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
  const int64_t ahead = R * rb;
  __m256 acc[R][NB];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm256_setzero_ps();
  for (int64_t blk = 0; blk < blocks; ++blk) {
    if ((blk & 1) == 0) {
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i)
        __builtin_prefetch(IntBlock(rows[i], blk) + ahead, 0, 3);
    }
    __m256i xv[NB];
    __m256 dx[NB];
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) {
      xv[j] = Load32(xs[j] + blk * 32);
      dx[j] = _mm256_set1_ps(a.xscale[(b0 + j) * a.ldxs + blk]);
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m256i wv = Load32(IntBlock(rows[i], blk));
      const __m256i aw = _mm256_abs_epi8(wv);
      // d_w * d_x per pair: the block scale of the weights times the
      // activations'.
      const __m256 dw = _mm256_set1_ps(HalfBitsToFloat(rows[i] + blk * 34));
#pragma GCC unroll 8
      for (int j = 0; j < NB; ++j) {
        const __m256i p =
            V::DotU8S8(_mm256_setzero_si256(), aw, _mm256_sign_epi8(xv[j], wv));
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
      const __m256i wv = Load32(IntBlock(row, blk));
      const __m256i p = V::DotU8S8(_mm256_setzero_si256(), _mm256_abs_epi8(wv),
                                   _mm256_sign_epi8(Load32(x + blk * 32), wv));
      const float d =
          a.xscale[(b0 + j) * a.ldxs + blk] * HalfBitsToFloat(row + blk * 34);
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

template <class V, DType T>
inline void RunInt(const RowRangeArgs& a) {
  for (int b = 0; b < a.n; b += V::kIntNb)
    IntTilesN<V, T>(a, b, std::min(V::kIntNb, a.n - b));
}
