// The direct (implicit-GEMM) stride-1 forward of conv/kernels.h, written once over a vector type
// and included inside an instruction set's namespace (conv/direct_avx2.cpp,
// conv/direct_avx512.cpp), over the set's vocabulary Simd<T> (simd/simd.h).
// Per tap, a block's NV input loads and M weight broadcasts feed M x NV FMAs, with the
// accumulators in registers across all taps; the input is read in place at each tap's offset
// (unaligned loads), never copied into panels, and no im2col, no packing.
// The weights are blocked by 4 channels: w(t, c) = weight_blocked[((c / 4) * taps + t) * 4 + c % 4].
// (No include guard: each instruction set's file includes it once, in its own namespace.)

#include "cpu/simd/simd.h"

namespace {

// Vector registers a register block keeps its sums in: 12 of AVX2's 16, 24 of AVX-512's 32
// (the rest hold the input vectors and a broadcast weight).
constexpr int kAccumulators = Simd<float>::kLanes == 16 ? 24 : 12;
// Output channels per forward register block of NV (1, 3 or 4) vectors of positions.
template <int NV>
constexpr int kTileChannels = kAccumulators / NV;
// The dot-product weight gradient's block: kDotChannels channels x kDotTaps taps.
constexpr int kDotTaps = 6, kDotChannels = kAccumulators / kDotTaps;

// Positions [0, NV vectors) of x = xpad + q for M output channels c0 + i (M <= kTileChannels<NV>),
// over taps [0, taps) of offsets; w is the blocked weights of c0's block
// at the first tap, so channel i's weight of tap t is w[((first + i) / 4) * block + t * 4 +
// (first + i) % 4], first = c0 % 4 (0 when Aligned). The accumulators start at out's values
// when `accumulate` (a later slice of taps), else at the channels' bias (zero when null). The
// last vector reads and stores only its first `last` lanes (S::load_first, S::store_first).
template <int M, int NV, bool Aligned, typename T>
inline __attribute__((always_inline)) void tile(const T* x, const int64_t* offsets, int64_t taps, const T* w,
                                                int64_t block, int first, const T* bias, bool accumulate, T* out,
                                                int64_t ld, int last) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::kLanes;
  int64_t lane[M];
#pragma GCC unroll 24
  for (int i = 0; i < M; ++i) {
    const int k = (Aligned ? 0 : first) + i;
    lane[i] = (k / 4) * block + k % 4;
  }
  V acc[M][NV];
#pragma GCC unroll 24
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j)
      acc[i][j] = !accumulate          ? (bias == nullptr ? S::zero() : S::set1(bias[i]))
                  : j + 1 < NV || last == W ? S::load(out + i * ld + j * W)
                                            : S::load_first(out + i * ld + j * W, last);
  for (int64_t t = 0; t < taps; ++t, w += 4) {
    const T* xs = x + offsets[t];
    if constexpr (NV > 3) {
      // M x NV accumulators, M broadcast weights and one input vector at a time (AVX2: 12 + 3 +
      // 1 = all 16 registers).
      V wi[M];
#pragma GCC unroll 24
      for (int i = 0; i < M; ++i) wi[i] = S::set1(w[lane[i]]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) {
        const V v = S::load(xs + j * W);
#pragma GCC unroll 24
        for (int i = 0; i < M; ++i) acc[i][j] = S::fma(wi[i], v, acc[i][j]);
      }
    } else {
      V v[NV];
#pragma GCC unroll 3
      for (int j = 0; j < NV; ++j) v[j] = S::load(xs + j * W);
#pragma GCC unroll 24
      for (int i = 0; i < M; ++i) {
        const V wi = S::set1(w[lane[i]]);
#pragma GCC unroll 3
        for (int j = 0; j < NV; ++j) acc[i][j] = S::fma(wi, v[j], acc[i][j]);
      }
    }
  }
  // A running pointer: with out + i * ld the compiler kept the M products on the stack and
  // reloaded them here, a fifth of a 9-tap tile's samples.
  T* o = out;
#pragma GCC unroll 24
  for (int i = 0; i < M; ++i, o += ld) {
#pragma GCC unroll 4
    for (int j = 0; j < NV - 1; ++j) S::store(o + j * W, acc[i][j]);
    if (last == W) {
      S::store(o + (NV - 1) * W, acc[i][NV - 1]);
    } else {
      S::store_first(o + (NV - 1) * W, acc[i][NV - 1], last);
    }
  }
}

// The operands of one slice of taps of one position tile; run<M, NV, Aligned>(c) runs channels
// [c, c + M) (Aligned: c % 4 == 0).
template <typename T>
struct Slice {
  const T* x;
  const int64_t* offsets;
  int64_t taps;
  const T* w;  // the blocked weights at the slice's first tap
  int64_t block;
  const T* bias;
  bool accumulate;
  T* out;
  int64_t ld;
  int last;
  template <int M, int NV, bool Aligned>
  inline __attribute__((always_inline)) void run(int64_t c) const {
    tile<M, NV, Aligned>(x, offsets, taps, w + c / 4 * block, block, static_cast<int>(c % 4),
                         bias == nullptr ? nullptr : bias + c, accumulate, out + c * ld, ld, last);
  }
};

// One position tile of NV vectors (at x = xpad + q, written at out + q): per slice of
// a.slice_taps taps, every block of kTileChannels<NV> output channels, then the channels left
// in blocks of 12, 8, 4 (where those fit the register budget) and 3, 2 or 1. A slice's input
// window (its channels' rows under the tile) stays in L1 while the channel blocks pass; with
// all 64 channels of a 56-wide ResNet layer the window (~40 KiB) did not, and the kernel's
// input loads waited on L2.
template <int NV, typename T>
inline void position_tile(const DirectConvArgs& a, const T* x, const T* weight_blocked, const T* bias, T* out,
                          int last) {
  constexpr int MB = kTileChannels<NV>;
  constexpr bool aligned = MB % 4 == 0;
  const int64_t block = a.taps * 4, full = a.channels / MB * MB;
  const int64_t slice = a.slice_taps > 0 ? a.slice_taps : a.taps;
  for (int64_t t0 = 0; t0 < a.taps; t0 += slice) {
    const int64_t taps = std::min(slice, a.taps - t0);
    const int64_t* offsets = a.offsets + t0;
    const Slice<T> sl{x, offsets, taps, weight_blocked + t0 * 4, block, bias, t0 > 0, out, a.ld, last};
    int64_t c = 0;
    for (; c < full; c += MB) sl.template run<MB, NV, aligned>(c);
    if constexpr (MB > 12) {
      if (a.channels - c >= 12) sl.template run<12, NV, aligned>(c), c += 12;
    }
    if constexpr (MB > 8) {
      if (a.channels - c >= 8) sl.template run<8, NV, aligned>(c), c += 8;
    }
    if constexpr (MB > 4) {
      if (a.channels - c >= 4) sl.template run<4, NV, aligned>(c), c += 4;
    }
    switch (a.channels - c) {
      case 3: sl.template run<3, NV, aligned>(c); break;
      case 2: sl.template run<2, NV, aligned>(c); break;
      case 1: sl.template run<1, NV, aligned>(c); break;
      default: break;
    }
  }
}

}  // namespace

// Positions outside, channels inside: the input window of one position tile stays in L1 while
// every channel block passes over it, and each channel block's weights are one sequential
// stream. The positions in the tiles of direct_row_tiles (4- and 3-vector ones, one-vector
// ones for what is left), so that no more than a vector is computed past `length` (3-vector
// tiles alone computed up to 3: 14x14 3x3 p1, 209 positions, took 240, now 224).
template <typename T>
void conv_direct(const DirectConvArgs& a, const T* xpad, const T* weight_blocked, const T* bias, T* out) {
  constexpr int W = Simd<T>::kLanes;
  const RowTiles tiles = direct_row_tiles(a.length, W);
  const int64_t vectors = 4 * tiles.fours + 3 * tiles.threes + tiles.ones;
  const int tail = static_cast<int>(a.length - (vectors - 1) * W);  // lanes of the last vector
  int64_t q = 0, v = 0;
  for (int64_t k = 0; k < tiles.fours; ++k, q += 4 * W, v += 4)
    position_tile<4>(a, xpad + q, weight_blocked, bias, out + q, v + 4 == vectors ? tail : W);
  for (int64_t k = 0; k < tiles.threes; ++k, q += 3 * W, v += 3)
    position_tile<3>(a, xpad + q, weight_blocked, bias, out + q, v + 3 == vectors ? tail : W);
  for (int64_t k = 0; k < tiles.ones; ++k, q += W, v += 1)
    position_tile<1>(a, xpad + q, weight_blocked, bias, out + q, v + 1 == vectors ? tail : W);
}

// Row by row in the tiles of direct_row_tiles (4-vector, 3-vector, then one-vector ones). A
// row's last vector is stored whole (its extra lanes land on the next row, computed afterwards)
// except in the last row.
template <typename T>
void conv_direct_rows(const DirectConvArgs& a, const T* xpad, const T* weight_blocked, const T* bias, T* out) {
  constexpr int W = Simd<T>::kLanes;
  const RowTiles tiles = direct_row_tiles(a.width, W);
  const int64_t vectors = 4 * tiles.fours + 3 * tiles.threes + tiles.ones;
  const int tail = static_cast<int>(a.width - (vectors - 1) * W);  // lanes of a row's last vector
  for (int64_t r = 0; r < a.rows; ++r) {
    const T* x = xpad + r * a.wp;
    T* o = out + r * a.width;
    const int last = r + 1 == a.rows ? tail : W;
    int64_t v = 0;
    for (int64_t k = 0; k < tiles.fours; ++k, v += 4)
      position_tile<4>(a, x + v * W, weight_blocked, bias, o + v * W, v + 4 == vectors ? last : W);
    for (int64_t k = 0; k < tiles.threes; ++k, v += 3)
      position_tile<3>(a, x + v * W, weight_blocked, bias, o + v * W, v + 3 == vectors ? last : W);
    for (; v < vectors; ++v)
      position_tile<1>(a, x + v * W, weight_blocked, bias, o + v * W, v + 1 == vectors ? last : W);
  }
}


namespace {

// M channels x N taps of conv_dot_weight_grad: M * N accumulator vectors over the positions,
// per vector of positions M dy loads and N input loads feed M * N FMAs; the last vector reads
// only its first `tail` lanes of both (past them may lie values of other rows, Inf or NaN).
template <int M, int N, typename T>
inline __attribute__((always_inline)) void dot_tile(const int64_t* offsets, int64_t length, const T* xs, const T* dy,
                                                    int64_t ld, T* dw, int64_t dw_channel, int64_t dw_tap) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::kLanes;
  V acc[M][N];
  fill_tile(acc, S::zero());
  const T* x[N];
#pragma GCC unroll 8
  for (int j = 0; j < N; ++j) x[j] = xs + offsets[j];
  const int64_t full = length / W * W;
  for (int64_t q = 0; q < full; q += W) {
    V d[M];
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) d[i] = S::load(dy + i * ld + q);
#pragma GCC unroll 8
    for (int j = 0; j < N; ++j) {
      const V v = S::load(x[j] + q);
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i) acc[i][j] = S::fma(d[i], v, acc[i][j]);
    }
  }
  if (const int tail = static_cast<int>(length - full); tail > 0) {
    V d[M];
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) d[i] = S::load_first(dy + i * ld + full, tail);
#pragma GCC unroll 8
    for (int j = 0; j < N; ++j) {
      const V v = S::load_first(x[j] + full, tail);
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i) acc[i][j] = S::fma(d[i], v, acc[i][j]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < N; ++j) dw[i * dw_channel + j * dw_tap] += S::sum(acc[i][j]);
}

template <int M, typename T>
void dot_channels(const int64_t* offsets, int64_t taps, int64_t length, const T* xs, const T* dy, int64_t ld, T* dw,
                  int64_t dw_channel, int64_t dw_tap) {
  constexpr int N = kDotTaps;
  int64_t t = 0;
  for (; t + N <= taps; t += N) dot_tile<M, N>(offsets + t, length, xs, dy, ld, dw + t * dw_tap, dw_channel, dw_tap);
  static_assert(N <= 6, "the taps left take one tile of 1 to 5");
  switch (taps - t) {
    case 5: dot_tile<M, 5>(offsets + t, length, xs, dy, ld, dw + t * dw_tap, dw_channel, dw_tap); break;
    case 4: dot_tile<M, 4>(offsets + t, length, xs, dy, ld, dw + t * dw_tap, dw_channel, dw_tap); break;
    case 3: dot_tile<M, 3>(offsets + t, length, xs, dy, ld, dw + t * dw_tap, dw_channel, dw_tap); break;
    case 2: dot_tile<M, 2>(offsets + t, length, xs, dy, ld, dw + t * dw_tap, dw_channel, dw_tap); break;
    case 1: dot_tile<M, 1>(offsets + t, length, xs, dy, ld, dw + t * dw_tap, dw_channel, dw_tap); break;
    default: break;
  }
}

}  // namespace

// dw(c, t) += sum over q < length of dy[c * ld + q] * xs[q + offsets[t]], for c < channels, t <
// taps, at dw + c * dw_channel + t * dw_tap; see conv/kernels.h.
template <typename T>
void conv_dot_weight_grad(const int64_t* offsets, int64_t taps, int64_t channels, int64_t length, const T* xs,
                          const T* dy, int64_t ld, T* dw, int64_t dw_channel, int64_t dw_tap) {
  constexpr int M = kDotChannels;
  int64_t c = 0;
  for (; c + M <= channels; c += M)
    dot_channels<M>(offsets, taps, length, xs, dy + c * ld, ld, dw + c * dw_channel, dw_channel, dw_tap);
  for (; c < channels; ++c)
    dot_channels<1>(offsets, taps, length, xs, dy + c * ld, ld, dw + c * dw_channel, dw_channel, dw_tap);
}

// The instruction set's file includes this once, so its instances are made here.
#define FASTRNN_INSTANTIATE_DIRECT(T)                                                                              \
  template void conv_dot_weight_grad<T>(const int64_t*, int64_t, int64_t, int64_t, const T*, const T*, int64_t, T*, \
                                        int64_t, int64_t);                                                         \
  template void conv_direct<T>(const DirectConvArgs&, const T*, const T*, const T*, T*);                           \
  template void conv_direct_rows<T>(const DirectConvArgs&, const T*, const T*, const T*, T*);
FASTRNN_INSTANTIATE_DIRECT(float)
FASTRNN_INSTANTIATE_DIRECT(double)
#undef FASTRNN_INSTANTIATE_DIRECT
