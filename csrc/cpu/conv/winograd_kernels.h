// The transforms of the Winograd F(2x2, 3x3) forward (conv/kernels.h, 6.), written once and
// included inside an instruction set's namespace (conv/direct_avx2.cpp, conv/direct_avx512.cpp),
// so that each file's compiler flags vectorise the plain loops at that set's width. That file
// first defines the row helpers, in intrinsics where GCC would not vectorise plain code:
// RowSplitter (even/odd columns), interleave_pairs (two rows into one) and window_max (the
// fused block's pooling). The products between the transforms are conv_direct's
// (conv/direct_kernels.h).
//
// Tiles: output (2 ty + a, 2 tx + b), a, b in {0, 1}, is tile (ty, tx), read from the 4x4 input
// patch at padded (2 ty, 2 tx). Tile (ty, tx) is number k = ty * tc + tx of its plane, tc =
// tiles per row + 1: every row has one unused tile at tx = tc - 1, so that the input patch of
// tile k sits at fixed offsets from k in the phase planes below, and the transforms run over
// k as one stretch of unit-stride vectors.
// (No include guard: each instruction set's file includes it once, in its own namespace.)

// Phase (a, b) of input channel c: phases[(c * 4 + a * 2 + b) * plane + r * tc + j] = padded
// input (2 r + a, 2 j + b), i.e. x[c][2 r + a - pad_h][2 j + b - pad_w] or zero outside x, for
// rows r <= th and columns j < tc, then zeros to the end of the plane. Returns false when x has
// an Inf or NaN (the Winograd sums would turn an Inf into NaN where a direct sum keeps it).
// Row by row through the instruction set's RowSplitter (even and odd columns by vector
// permutes, masked at the edges; it also sums x - x, zero unless x has an Inf or NaN).
template <typename T>
bool winograd_phases(const T* x, int64_t channels, int64_t height, int64_t width, int64_t pad_h, int64_t pad_w,
                     int64_t th, int64_t tc, int64_t plane, T* phases) {
  RowSplitter<T> rows(width, pad_w, tc);
  for (int64_t c = 0; c < channels; ++c) {
    T* p = phases + c * 4 * plane;
    for (int64_t r = 0; r <= th; ++r) {
      for (int a = 0; a < 2; ++a) {
        T* even = p + a * 2 * plane + r * tc;
        T* odd = even + plane;
        const int64_t ih = 2 * r + a - pad_h;
        if (ih < 0 || ih >= height) {
          rows.zero(even, odd);
        } else {
          rows.split(x + (c * height + ih) * width, even, odd);
        }
      }
    }
    for (int k = 0; k < 4; ++k) std::fill(p + k * plane + (th + 1) * tc, p + (k + 1) * plane, T(0));
  }
  return rows.finite();
}

// v[xi * v_xi + c * v_ci + k] for xi = 4 i + j < 16, c < channels, k < count: element (i, j) of
// B^T d B, d the 4x4 input patch of tile k0 + k of channel c, read from the phase planes (patch
// element (i, j) is phase (i % 2, j % 2) at k0 + k + (i / 2) * tc + j / 2). B^T = [1 0 -1 0; 0 1 1 0;
// 0 -1 1 0; 0 1 0 -1].
template <typename T>
void winograd_input(const T* phases, int64_t channels, int64_t plane, int64_t tc, int64_t k0, int64_t count, T* v,
                    int64_t v_ci, int64_t v_xi) {
  for (int64_t c = 0; c < channels; ++c) {
    const T* p00 = phases + c * 4 * plane + k0;
    const T* p01 = p00 + plane;
    const T* p10 = p00 + 2 * plane;
    const T* p11 = p00 + 3 * plane;
    T* out = v + c * v_ci;
#pragma omp simd
    for (int64_t k = 0; k < count; ++k) {
      // d[i][j]: rows i = 0, 1 from phase rows at k, rows 2, 3 one phase row (tc) further on.
      const T d00 = p00[k], d01 = p01[k], d02 = p00[k + 1], d03 = p01[k + 1];
      const T d10 = p10[k], d11 = p11[k], d12 = p10[k + 1], d13 = p11[k + 1];
      const T d20 = p00[k + tc], d21 = p01[k + tc], d22 = p00[k + tc + 1], d23 = p01[k + tc + 1];
      const T d30 = p10[k + tc], d31 = p11[k + tc], d32 = p10[k + tc + 1], d33 = p11[k + tc + 1];
      // t = B^T d (rows), then t B (columns)
      const T t00 = d00 - d20, t01 = d01 - d21, t02 = d02 - d22, t03 = d03 - d23;
      const T t10 = d10 + d20, t11 = d11 + d21, t12 = d12 + d22, t13 = d13 + d23;
      const T t20 = d20 - d10, t21 = d21 - d11, t22 = d22 - d12, t23 = d23 - d13;
      const T t30 = d10 - d30, t31 = d11 - d31, t32 = d12 - d32, t33 = d13 - d33;
      out[0 * v_xi + k] = t00 - t02, out[1 * v_xi + k] = t01 + t02, out[2 * v_xi + k] = t02 - t01;
      out[3 * v_xi + k] = t01 - t03;
      out[4 * v_xi + k] = t10 - t12, out[5 * v_xi + k] = t11 + t12, out[6 * v_xi + k] = t12 - t11;
      out[7 * v_xi + k] = t11 - t13;
      out[8 * v_xi + k] = t20 - t22, out[9 * v_xi + k] = t21 + t22, out[10 * v_xi + k] = t22 - t21;
      out[11 * v_xi + k] = t21 - t23;
      out[12 * v_xi + k] = t30 - t32, out[13 * v_xi + k] = t31 + t32, out[14 * v_xi + k] = t32 - t31;
      out[15 * v_xi + k] = t31 - t33;
    }
  }
}

namespace {

// yab[k] = (A^T m A)[a][b] + bias of tiles k < count of one channel, m[xi * m_xi + k], A^T =
// [1 1 1 0; 0 1 -1 -1]: the output transform over the tiles as one stretch.
template <typename T>
inline void winograd_tiles(const T* m, int64_t m_xi, int64_t count, T bias, T* y00, T* y01, T* y10, T* y11) {
#pragma omp simd
  for (int64_t k = 0; k < count; ++k) {
    T s0[4], s1[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const T m0 = m[j * m_xi + k], m1 = m[(4 + j) * m_xi + k];
      const T m2 = m[(8 + j) * m_xi + k], m3 = m[(12 + j) * m_xi + k];
      s0[j] = m0 + m1 + m2;
      s1[j] = m1 - m2 - m3;
    }
    y00[k] = s0[0] + s0[1] + s0[2] + bias;
    y01[k] = s0[1] - s0[2] - s0[3] + bias;
    y10[k] = s1[0] + s1[1] + s1[2] + bias;
    y11[k] = s1[1] - s1[2] - s1[3] + bias;
  }
}

// For each channel c < channels: winograd_tiles of its products (m + c * m_co) into the four
// output phases (count values each, one after the other at yab), then
// stage(c, y00, y01, y10, y11), the output stage's use of them.
template <typename T, typename Stage>
inline void for_each_channel_tiles(const T* m, int64_t m_co, int64_t m_xi, int64_t channels, const T* bias,
                                   int64_t count, T* yab, const Stage& stage) {
  T* y00 = yab;
  T* y01 = yab + count;
  T* y10 = yab + 2 * count;
  T* y11 = yab + 3 * count;
  for (int64_t c = 0; c < channels; ++c) {
    winograd_tiles(m + c * m_co, m_xi, count, bias == nullptr ? T(0) : bias[c], y00, y01, y10, y11);
    stage(c, y00, y01, y10, y11);
  }
}

}  // namespace

// y[c][2 ty + a][2 tx + b] = (A^T m A)[a][b] + bias[c] (bias may be null) for the tiles k =
// ty * tc + tx in [k0, k0 + count) with tx < tc - 1 (not a row's unused tile), where the output
// (out_h, out_w) has them; m[xi * m_xi + c * m_co + k - k0] is tile k's product of channel c.
// A^T = [1 1 1 0; 0 1 -1 -1]. Per channel, the transform over the block's tiles as one stretch
// into the four output phases (yab, count each), then each row of tiles into two output rows
// by interleave_pairs (the instruction set's file).
template <typename T>
void winograd_output(const T* m, int64_t m_co, int64_t m_xi, int64_t channels, const T* bias, int64_t k0,
                     int64_t count, int64_t tc, int64_t out_h, int64_t out_w, T* y, T* yab) {
  const int64_t tw = tc - 1;
  for_each_channel_tiles(m, m_co, m_xi, channels, bias, count, yab,
                         [&](int64_t c, const T* y00, const T* y01, const T* y10, const T* y11) {
    for (int64_t ty = k0 / tc; ty * tc < k0 + count; ++ty) {
      const int64_t row = ty * tc;
      const int64_t lo = std::max<int64_t>(0, k0 - row), hi = std::min(tw, k0 + count - row);
      if (lo >= hi) continue;
      const int64_t at = row + lo - k0, n = std::min(2 * hi, out_w) - 2 * lo;  // output columns
      T* top = y + (c * out_h + 2 * ty) * out_w + 2 * lo;
      interleave_pairs(y00 + at, y01 + at, n, top);
      if (2 * ty + 1 < out_h) interleave_pairs(y10 + at, y11 + at, n, top + out_w);
    }
  });
}

// The fused block's output stage: a tile's 2x2 outputs are one 2x2 pooling window. For the
// tiles k in [k0, k0 + count) with ty < ph, tx < pw (the windows; an odd last row or column of
// tiles is not pooled): y[c][ty][tx] = max over the window of relu(A^T m A + bias[c]) and
// indices[c][ty][tx] its position (2 ty + a) * out_w + 2 tx + b, scanning (0,0), (0,1), (1,0),
// (1,1) with torch's rule (a later value wins if greater, or if NaN). yab (4 count values) is
// scratch: winograd_output's transform, then in place (the instruction set's window_max) the
// maxima and their codes 2 a + b (as T).
template <typename T>
void winograd_pool_output(const T* m, int64_t m_co, int64_t m_xi, int64_t channels, const T* bias, int64_t k0,
                          int64_t count, int64_t tc, int64_t out_w, int64_t ph, int64_t pw, T* y, int64_t* indices,
                          T* yab) {
  const int64_t pooled = ph * pw;
  for_each_channel_tiles(m, m_co, m_xi, channels, bias, count, yab, [&](int64_t c, T* y00, T* y01, T* y10, T* y11) {
    window_max(y00, y01, y10, y11, count);
    for (int64_t ty = k0 / tc; ty * tc < k0 + count && ty < ph; ++ty) {
      const int64_t row = ty * tc;
      const int64_t lo = std::max<int64_t>(0, k0 - row), hi = std::min(pw, k0 + count - row);
      T* yr = y + c * pooled + ty * pw;
      int64_t* ir = indices + c * pooled + ty * pw;
      for (int64_t tx = lo; tx < hi; ++tx) {
        const int q = static_cast<int>(y01[row + tx - k0]);
        yr[tx] = y00[row + tx - k0];
        ir[tx] = (2 * ty + (q >> 1)) * out_w + 2 * tx + (q & 1);
      }
    }
  });
}

// The instruction set's file includes this once, so its instances are made here.
#define FASTRNN_INSTANTIATE_WINOGRAD(T)                                                                          \
  template bool winograd_phases<T>(const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                   T*);                                                                          \
  template void winograd_input<T>(const T*, int64_t, int64_t, int64_t, int64_t, int64_t, T*, int64_t, int64_t);     \
  template void winograd_output<T>(const T*, int64_t, int64_t, int64_t, const T*, int64_t, int64_t, int64_t, int64_t, \
                                   int64_t, T*, T*);                                                             \
  template void winograd_pool_output<T>(const T*, int64_t, int64_t, int64_t, const T*, int64_t, int64_t, int64_t,    \
                                        int64_t, int64_t, int64_t, T*, int64_t*, T*);
FASTRNN_INSTANTIATE_WINOGRAD(float)
FASTRNN_INSTANTIATE_WINOGRAD(double)
#undef FASTRNN_INSTANTIATE_WINOGRAD
