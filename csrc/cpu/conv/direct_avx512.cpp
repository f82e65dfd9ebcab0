// The direct stride-1 kernels of conv/kernels.h with AVX-512 (zmm vectors: 16 floats, 8 doubles):
// the forward over positions (1.) and the dot-product weight gradient (2b.) of
// conv/direct_kernels.h, the weight gradient over channel blocks (2.), and two of AVX-512's
// own: the forward vectorised over output channels (1b.) and dy's transpose into channel
// blocks. The fused block's sparse kernels and epilogue stay on AVX2 (conv/direct_avx2.cpp,
// conv/pool_avx2.cpp).
//
// Forward over positions: 32 registers hold twice the AVX2 blocks: 8 output channels x 3
// vectors or 6 x 4 (24 accumulators), 24 channels x 1 vector. Per tap, 3 loads and 8
// broadcasts feed 24 FMAs, where the AVX2 block needs 7 for 12.
#include <immintrin.h>

#include <algorithm>
#include <limits>

#include "cpu/conv/kernels.h"

namespace fastrnn::cpu::isa_avx512 {

#include "cpu/conv/direct_kernels.h"

namespace {

// The weight gradient's register block: M (<= 12) taps x NB (1 or 2) channel blocks, one
// vector each (a block, 64 bytes, is one zmm), NB blocks of dy `block_stride` apart and of dw
// `dw_stride` apart. Per position: NB dy loads and M broadcast loads feed NB * M FMAs (14
// loads for 24 FMAs at M = 12, NB = 2; one block would need a load per FMA), summed over
// output rows [oh0, oh1).
template <int M, int NB, typename T>
inline __attribute__((always_inline)) void weight_grad_tile(const DirectWeightGradArgs& a, const T* xpad,
                                                            const int64_t* offsets, const T* dy, int64_t block_stride,
                                                            int64_t oh0, int64_t oh1, T* dw, int64_t dw_stride) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::kLanes;
  V acc[M][NB];
#pragma GCC unroll 12
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < NB; ++j) acc[i][j] = S::load(dw + j * dw_stride + i * W);
  const T* x[M];
#pragma GCC unroll 12
  for (int i = 0; i < M; ++i) x[i] = xpad + offsets[i];
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    const T* d = dy + oh * a.out_width * W;
    const int64_t row = oh * a.wp;
    for (int64_t ow = 0; ow < a.out_width; ++ow, d += W) {
      V dv[NB];
#pragma GCC unroll 2
      for (int j = 0; j < NB; ++j) dv[j] = S::load(d + j * block_stride);
#pragma GCC unroll 12
      for (int i = 0; i < M; ++i) {
        const V xi = S::set1(x[i][row + ow]);
#pragma GCC unroll 2
        for (int j = 0; j < NB; ++j) acc[i][j] = S::fma(xi, dv[j], acc[i][j]);
      }
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < NB; ++j) S::store(dw + j * dw_stride + i * W, acc[i][j]);
}

// Every tap of NB channel blocks over rows [oh0, oh1), 12 taps at a time.
template <int NB, typename T>
void weight_grad_blocks(const DirectWeightGradArgs& a, const T* xpad, const T* dy, int64_t block_stride,
                        int64_t oh0, int64_t oh1, T* dw, int64_t dw_stride) {
  constexpr int64_t B = kDirectChannelBlock<T>;
  int64_t t = 0;
  for (; t + 12 <= a.taps; t += 12)
    weight_grad_tile<12, NB>(a, xpad, a.offsets + t, dy, block_stride, oh0, oh1, dw + t * B, dw_stride);
  const int64_t left = a.taps - t;
  if (left >= 8) weight_grad_tile<8, NB>(a, xpad, a.offsets + t, dy, block_stride, oh0, oh1, dw + t * B, dw_stride), t += 8;
  if (a.taps - t >= 4) weight_grad_tile<4, NB>(a, xpad, a.offsets + t, dy, block_stride, oh0, oh1, dw + t * B, dw_stride), t += 4;
  switch (a.taps - t) {
    case 3: weight_grad_tile<3, NB>(a, xpad, a.offsets + t, dy, block_stride, oh0, oh1, dw + t * B, dw_stride); break;
    case 2: weight_grad_tile<2, NB>(a, xpad, a.offsets + t, dy, block_stride, oh0, oh1, dw + t * B, dw_stride); break;
    case 1: weight_grad_tile<1, NB>(a, xpad, a.offsets + t, dy, block_stride, oh0, oh1, dw + t * B, dw_stride); break;
    default: break;
  }
}

}  // namespace

// Rows outside: a block of rows keeps two channel blocks' dy (2 x rows x out_width x 64 bytes,
// about 16 KiB) in L1 while every tap block passes over them; pairs of channel blocks, then
// the last one alone when their number is odd.
template <typename T>
void conv_direct_weight_grad(const DirectWeightGradArgs& a, const T* xpad, const T* dy_blocked, T* dw_blocked) {
  constexpr int64_t B = kDirectChannelBlock<T>;
  static_assert(B == Simd<T>::kLanes, "a channel block is one vector");
  const int64_t rows = std::max<int64_t>(1, 128 / std::max<int64_t>(1, a.out_width));
  const int64_t positions = a.out_height * a.out_width, dw_stride = a.taps * B;
  for (int64_t oh0 = 0; oh0 < a.out_height; oh0 += rows) {
    const int64_t oh1 = std::min(a.out_height, oh0 + rows);
    int64_t b = 0;
    for (; b + 2 <= a.channel_blocks; b += 2)
      weight_grad_blocks<2>(a, xpad, dy_blocked + b * positions * B, positions * B, oh0, oh1, dw_blocked + b * dw_stride,
                            dw_stride);
    if (b < a.channel_blocks)
      weight_grad_blocks<1>(a, xpad, dy_blocked + b * positions * B, positions * B, oh0, oh1, dw_blocked + b * dw_stride,
                            dw_stride);
  }
}

namespace {

// The channel-vectorised forward's register block: CV vectors of output channels x 24 / CV
// output positions (24 accumulators). Per tap at CV = 4: 4 weight loads and 6 input broadcasts
// feed 24 FMAs; at CV = 2, 2 and 12.
template <int CV>
constexpr int kPositions = 24 / CV;
// Positions per chunk: whole tiles and whole transposes (48 = 8 x 6 = 4 x 12 = 3 x 16 floats).
constexpr int64_t kChunk = 48;

// Tile: positions with input bases x[j], CV channel vectors at w into block[j][...] (ld ldb).
template <int CV, typename T>
inline __attribute__((always_inline)) void channel_tile(const T* const* x, const int64_t* offsets, int64_t taps,
                                                        const T* w, int64_t ldw, const T* bias, T* block,
                                                        int64_t ldb) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::kLanes, NP = kPositions<CV>;
  V acc[CV][NP];
#pragma GCC unroll 4
  for (int v = 0; v < CV; ++v) {
    const V b = bias == nullptr ? S::zero() : S::load(bias + v * W);
#pragma GCC unroll 12
    for (int j = 0; j < NP; ++j) acc[v][j] = b;
  }
  for (int64_t t = 0; t < taps; ++t, w += ldw) {
    const int64_t off = offsets[t];
    V wv[CV];
#pragma GCC unroll 4
    for (int v = 0; v < CV; ++v) wv[v] = S::load(w + v * W);
#pragma GCC unroll 12
    for (int j = 0; j < NP; ++j) {
      const V xj = S::set1(x[j][off]);
#pragma GCC unroll 4
      for (int v = 0; v < CV; ++v) acc[v][j] = S::fma(wv[v], xj, acc[v][j]);
    }
  }
#pragma GCC unroll 12
  for (int j = 0; j < NP; ++j)
#pragma GCC unroll 4
    for (int v = 0; v < CV; ++v) S::store(block + j * ldb + v * W, acc[v][j]);
}

template <int CV, typename T>
void channel_chunks(const DirectChannelArgs& a, const T* xpad, const T* weight_cl, const T* bias, T* block, T* out) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::kLanes, NP = kPositions<CV>;
  constexpr int64_t group = CV * W;
  static_assert(kChunk % W == 0 && kChunk % NP == 0, "a chunk is whole tiles and whole transposes");
  for (int64_t q0 = 0; q0 < a.positions; q0 += kChunk) {
    const int64_t n = std::min<int64_t>(kChunk, a.positions - q0);
    // each tile's input bases (positions past the end repeat the last one)
    const T* bases[kChunk];
    for (int64_t j = 0; j < kChunk; ++j) {
      const int64_t q = q0 + std::min(j, n - 1);
      bases[j] = xpad + q / a.width * a.wp + q % a.width;
    }
    for (int64_t c0 = 0; c0 < a.channels; c0 += group) {
      for (int64_t j = 0; j < n; j += NP)
        channel_tile<CV, T>(bases + j, a.offsets, a.taps, weight_cl + c0, a.channels,
                            bias == nullptr ? nullptr : bias + c0, block + j * group, group);
      // block (positions x group channels) into out (channels x positions), W x W at a time
      for (int64_t j = 0; j < n; j += W) {
        const int lanes = static_cast<int>(std::min<int64_t>(W, n - j));
        for (int64_t c = 0; c < group; c += W) {
          V r[W];
          for (int i = 0; i < W; ++i) r[i] = S::load(block + (j + i) * group + c);
          S::transpose(r);
          T* o = out + (c0 + c) * a.ld + q0 + j;
          for (int i = 0; i < W; ++i) {
            if (lanes == W) S::store(o + i * a.ld, r[i]);
            else S::store_first(o + i * a.ld, r[i], lanes);
          }
        }
      }
    }
  }
}

}  // namespace

// See conv/kernels.h: 4 channel vectors per block where the channels are a multiple of them, else 2.
template <typename T>
void conv_direct_channels(const DirectChannelArgs& a, const T* xpad, const T* weight_cl, const T* bias, T* block,
                          T* out) {
  constexpr int W = Simd<T>::kLanes;
  if (a.channels % (4 * W) == 0) return channel_chunks<4>(a, xpad, weight_cl, bias, block, out);
  channel_chunks<2>(a, xpad, weight_cl, bias, block, out);
}

// See conv/kernels.h.
template <typename T>
void transpose_to_blocks(const T* dy, int64_t channels, int64_t positions, T* out) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::kLanes;
  for (int64_t c0 = 0; c0 < channels; c0 += W, out += positions * W) {
    const int rows = static_cast<int>(std::min<int64_t>(W, channels - c0));
    for (int64_t q = 0; q < positions; q += W) {
      const int lanes = static_cast<int>(std::min<int64_t>(W, positions - q));
      V r[W];
      for (int i = 0; i < W; ++i) {
        const T* row = dy + (c0 + i) * positions + q;
        r[i] = i >= rows ? S::zero() : lanes == W ? S::load(row) : S::load_first(row, lanes);
      }
      S::transpose(r);
      for (int k = 0; k < lanes; ++k) S::store(out + (q + k) * W, r[k]);
    }
  }
}

template void conv_direct_weight_grad<float>(const DirectWeightGradArgs&, const float*, const float*, float*);
template void conv_direct_weight_grad<double>(const DirectWeightGradArgs&, const double*, const double*, double*);
template void transpose_to_blocks<float>(const float*, int64_t, int64_t, float*);
template void transpose_to_blocks<double>(const double*, int64_t, int64_t, double*);
template void conv_direct_channels<float>(const DirectChannelArgs&, const float*, const float*, const float*, float*,
                                          float*);
template void conv_direct_channels<double>(const DirectChannelArgs&, const double*, const double*, const double*,
                                           double*, double*);


namespace {

// The Winograd transforms' row helpers (conv/winograd_kernels.h), 16 floats or 8 doubles per
// vector, the edges by masks.

// The lanes [lo, hi) of a vector (clamped to [0, W)) as a mask.
template <typename T>
inline typename Simd<T>::Mask lanes_between(int64_t lo, int64_t hi) {
  using P = Simd<T>;
  lo = std::clamp<int64_t>(lo, 0, P::kLanes), hi = std::clamp<int64_t>(hi, 0, P::kLanes);
  return static_cast<typename P::Mask>(P::first(hi) & ~P::first(lo));
}

// Splits rows of x into their even and odd columns: even[j] = X(2 j), odd[j] = X(2 j + 1) for
// j < n, where X(i) = x[i - shift] inside [0, width) and zero outside, a vector of j at a time
// (two masked loads, two permutes); the masks, the same for every row, made once per call
// (computed per row they cost as much as the copies: 14x14 rows are one vector). finite()
// says whether every x read was finite (x - x summed in a vector).
template <typename T>
class RowSplitter {
  using P = Simd<T>;
  using V = typename P::V;
  using M = typename P::Mask;
  static constexpr int W = P::kLanes;
  static constexpr int kChunks = 8;  // rows of up to 8 vectors of j keep their masks here

 public:
  RowSplitter(int64_t width, int64_t shift, int64_t n) : width_(width), shift_(shift), n_(n) {
    chunks_ = (n + W - 1) / W;
    for (int64_t k = 0; k < std::min<int64_t>(chunks_, kChunks); ++k) masks(k, a_[k], b_[k], store_[k]);
  }
  void split(const T* x, T* even, T* odd) {
    const __m512i ie = P::every_other(0), io = P::every_other(1);
    for (int64_t k = 0; k < chunks_; ++k) {
      M ma, mb, ms;
      if (k < kChunks) {
        ma = a_[k], mb = b_[k], ms = store_[k];
      } else {
        masks(k, ma, mb, ms);
      }
      const T* src = x + 2 * k * W - shift_;  // X(2 j) for the chunk's first j
      // masked-off lanes are not read, so the addresses may lie outside x
      const V a = P::load(ma, src), b = P::load(mb, src + W);
      check_ = P::add(check_, P::add(P::sub(a, a), P::sub(b, b)));
      P::store(even + k * W, ms, P::permute(a, ie, b));
      P::store(odd + k * W, ms, P::permute(a, io, b));
    }
  }
  void zero(T* even, T* odd) {
    std::fill(even, even + n_, T(0));
    std::fill(odd, odd + n_, T(0));
  }
  bool finite() const { return P::sum(check_) == T(0); }

 private:
  void masks(int64_t k, M& ma, M& mb, M& ms) const {
    const int64_t i0 = 2 * k * W - shift_;  // x index of the chunk's first lane
    ma = lanes_between<T>(-i0, width_ - i0);
    mb = lanes_between<T>(-i0 - W, width_ - i0 - W);
    ms = P::first(n_ - k * W);
  }
  int64_t width_, shift_, n_, chunks_;
  M a_[kChunks], b_[kChunks], store_[kChunks];
  V check_ = P::zero();
};

// The pooling of the fused block's Winograd output stage, in place: y00[k] = the max over
// i of relu(y_i[k]) (y_0..3 = y00, y01, y10, y11: the window scanned row by row) with torch's
// rule (a later value wins if greater, or if NaN; relu keeps NaN), y01[k] = its i. GCC does
// not vectorise this select chain from plain code (slower than the transform), hence the
// compares and blends by hand.
template <typename T>
void window_max(T* y00, T* y01, const T* y10, const T* y11, int64_t count) {
  using P = Simd<T>;
  using V = typename P::V;
  constexpr int W = P::kLanes;
  for (int64_t k = 0; k < count; k += W) {
    const typename P::Mask all = P::first(count - k);  // the last vector masked
    const V v[4] = {P::load(all, y00 + k), P::load(all, y01 + k), P::load(all, y10 + k), P::load(all, y11 + k)};
    V top = P::relu(v[0]), at = P::zero();
    for (int i = 1; i < 4; ++i) {
      const V r = P::relu(v[i]);
      const typename P::Mask take = P::greater_or_nan(r, top);
      top = P::blend(take, top, r);
      at = P::blend(take, at, P::set1(T(i)));
    }
    P::store(y00 + k, all, top);
    P::store(y01 + k, all, at);
  }
}

// out[i] = a[i / 2] for even i, b[i / 2] for odd i, i < n.
template <typename T>
void interleave_pairs(const T* a, const T* b, int64_t n, T* out) {
  using P = Simd<T>;
  constexpr int W = P::kLanes;
  const __m512i lo = P::alternate_halves(0), hi = P::alternate_halves(W / 2);
  for (int64_t i = 0; i < n; i += 2 * W) {
    const auto k = P::first((n - i + 1) / 2);
    const typename P::V va = P::load(k, a + i / 2), vb = P::load(k, b + i / 2);
    P::store(out + i, P::first(n - i), P::permute(va, lo, vb));
    if (n - i > W) P::store(out + i + W, P::first(n - i - W), P::permute(va, hi, vb));
  }
}

}  // namespace

#include "cpu/conv/winograd_kernels.h"

}  // namespace fastrnn::cpu::isa_avx512
