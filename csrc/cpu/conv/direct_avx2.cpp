// The direct stride-1 convolution kernels of conv/kernels.h with AVX2 + FMA.
//
// Forward (conv/direct_kernels.h): register blocks of 4 output channels x 3 vectors of
// positions (24 floats, 12 doubles): 12 accumulators, 3 input vectors and one broadcast weight =
// all 16 ymm registers, the shape of the GEMM's 6x16 micro-kernel. Per tap: 3 input loads and
// 4 weight broadcasts feed 12 FMAs, so the two FMA ports, not the loads, set the pace (a plain
// loop without accumulators held across taps was far slower: see bench/NOTES.md, conv). 4
// channels divide the usual channel counts (32, 64), so no partial block is wasted.
#include <immintrin.h>

#include <algorithm>
#include <limits>

#include "cpu/conv/kernels.h"

namespace fastrnn::cpu::isa_avx2 {

#include "cpu/conv/direct_kernels.h"

namespace {

// The weight gradient's register block: M (<= 6) taps x one channel block (2 vectors) = 12
// accumulators, the 2 dy vectors of a position and one broadcast input value. Per position: 2
// vector loads and M broadcast loads feed 2M FMAs (8 loads for 12 FMAs at M = 6, under the
// two load ports' rate), summed over output rows [oh0, oh1) into dw (M, 2 vectors).
template <int M, typename T>
inline __attribute__((always_inline)) void weight_grad_tile(const DirectWeightGradArgs& a, const T* xpad,
                                                            const int64_t* offsets, const T* dy, int64_t oh0,
                                                            int64_t oh1, T* dw) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::kLanes;
  V acc[M][2];
#pragma GCC unroll 6
  for (int i = 0; i < M; ++i) acc[i][0] = S::load(dw + i * 2 * W), acc[i][1] = S::load(dw + i * 2 * W + W);
  const T* x[M];
#pragma GCC unroll 6
  for (int i = 0; i < M; ++i) x[i] = xpad + offsets[i];
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    const T* d = dy + oh * a.out_width * 2 * W;
    const int64_t row = oh * a.wp;
    for (int64_t ow = 0; ow < a.out_width; ++ow, d += 2 * W) {
      const V d0 = S::load(d), d1 = S::load(d + W);
#pragma GCC unroll 6
      for (int i = 0; i < M; ++i) {
        const V xi = S::broadcast(x[i] + row + ow);
        acc[i][0] = S::fma(xi, d0, acc[i][0]);
        acc[i][1] = S::fma(xi, d1, acc[i][1]);
      }
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < M; ++i) S::store(dw + i * 2 * W, acc[i][0]), S::store(dw + i * 2 * W + W, acc[i][1]);
}

// M (<= 12) accumulator vectors of the sparse weight gradient over all entries: per entry one
// broadcast and M loads feed M FMAs.
template <int M, typename T>
inline __attribute__((always_inline)) void sparse_tile(const int64_t* voff, int64_t channels, const int64_t* positions,
                                                       const T* values, int64_t count, const T* x_cl, T* dw) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::kLanes;
  V acc[M];
#pragma GCC unroll 12
  for (int i = 0; i < M; ++i) acc[i] = S::load(dw + i * W);
  for (int64_t e = 0; e < count; ++e) {
    const V g = S::broadcast(values + e);
    const T* x = x_cl + positions[e] * channels;
#pragma GCC unroll 12
    for (int i = 0; i < M; ++i) acc[i] = S::fma(g, S::load(x + voff[i]), acc[i]);
  }
#pragma GCC unroll 12
  for (int i = 0; i < M; ++i) S::store(dw + i * W, acc[i]);
}

// The input gradient's adjoint of sparse_tile: M (<= 12) accumulator vectors of one conv
// position's contribution, summed over its entries (one broadcast and M weight loads feed M
// FMAs per entry), then added to dx_cl once (M loads and M stores per position, not per entry).
template <int M, typename T>
inline __attribute__((always_inline)) void sparse_input_tile(const int64_t* voff, const int64_t* weight_at,
                                                             const T* values, int64_t begin, int64_t end,
                                                             const T* w_cl, T* dx) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::kLanes;
  V acc[M];
#pragma GCC unroll 12
  for (int i = 0; i < M; ++i) acc[i] = S::zero();
  for (int64_t e = begin; e < end; ++e) {
    const V g = S::broadcast(values + e);
    const T* w = w_cl + weight_at[e];
#pragma GCC unroll 12
    for (int i = 0; i < M; ++i) acc[i] = S::fma(g, S::load(w + i * W), acc[i]);
  }
#pragma GCC unroll 12
  for (int i = 0; i < M; ++i) S::store(dx + voff[i], S::add(S::load(dx + voff[i]), acc[i]));
}

template <int M, typename T>
void sparse_input_pass(const SparseInputGradArgs& a, const int64_t* voff, const T* values, const T* w_cl, T* dx_cl) {
  for (int64_t q = 0; q < a.positions; ++q) {
    const int64_t begin = a.starts[q], end = a.starts[q + 1];
    if (begin == end) continue;
    sparse_input_tile<M>(voff, a.weight_at, values, begin, end, w_cl, dx_cl + q * a.cl);
  }
}

}  // namespace

// Vector tiles outside, positions inside: one tile's slice of every channel's weights (64
// channels x 12 vectors = 24 KiB in float) stays in L1 while the positions pass.
template <typename T>
void conv_sparse_input_grad(const SparseInputGradArgs& a, const T* values, const T* w_cl, T* dx_cl) {
  constexpr int W = Simd<T>::kLanes;
  int64_t v = 0;
  for (; v + 12 <= a.vectors; v += 12) sparse_input_pass<12>(a, a.vector_offsets + v, values, w_cl + v * W, dx_cl);
  for (; v + 4 <= a.vectors; v += 4) sparse_input_pass<4>(a, a.vector_offsets + v, values, w_cl + v * W, dx_cl);
  for (; v < a.vectors; ++v) sparse_input_pass<1>(a, a.vector_offsets + v, values, w_cl + v * W, dx_cl);
}

template <typename T>
void conv_sparse_weight_grad(const int64_t* vector_offsets, int64_t vectors, int64_t channels, const int64_t* positions,
                             const T* values, int64_t count, const T* x_cl, T* dw) {
  constexpr int W = Simd<T>::kLanes;
  int64_t v = 0;
  const int64_t* voff = vector_offsets;
  for (; v + 12 <= vectors; v += 12) sparse_tile<12>(voff + v, channels, positions, values, count, x_cl, dw + v * W);
  for (; v + 4 <= vectors; v += 4) sparse_tile<4>(voff + v, channels, positions, values, count, x_cl, dw + v * W);
  for (; v < vectors; ++v) sparse_tile<1>(voff + v, channels, positions, values, count, x_cl, dw + v * W);
}

// Rows outside: a block of rows keeps one channel block's dy (rows x out_width x 64 bytes, about
// 16 KiB) in L1 while every tap block passes over it; the accumulators go through dw once per
// row block and tap block.
template <typename T>
void conv_direct_weight_grad(const DirectWeightGradArgs& a, const T* xpad, const T* dy_blocked, T* dw_blocked) {
  constexpr int64_t B = kDirectChannelBlock<T>;
  static_assert(B == 2 * Simd<T>::kLanes, "a channel block is two vectors");
  const int64_t rows = std::max<int64_t>(1, 256 / std::max<int64_t>(1, a.out_width));
  const int64_t positions = a.out_height * a.out_width, full = a.taps / 6 * 6;
  for (int64_t oh0 = 0; oh0 < a.out_height; oh0 += rows) {
    const int64_t oh1 = std::min(a.out_height, oh0 + rows);
    for (int64_t b = 0; b < a.channel_blocks; ++b) {
      const T* dy = dy_blocked + b * positions * B;
      T* dw = dw_blocked + b * a.taps * B;
      int64_t t = 0;
      for (; t < full; t += 6) weight_grad_tile<6>(a, xpad, a.offsets + t, dy, oh0, oh1, dw + t * B);
      switch (a.taps - t) {
        case 5: weight_grad_tile<5>(a, xpad, a.offsets + t, dy, oh0, oh1, dw + t * B); break;
        case 4: weight_grad_tile<4>(a, xpad, a.offsets + t, dy, oh0, oh1, dw + t * B); break;
        case 3: weight_grad_tile<3>(a, xpad, a.offsets + t, dy, oh0, oh1, dw + t * B); break;
        case 2: weight_grad_tile<2>(a, xpad, a.offsets + t, dy, oh0, oh1, dw + t * B); break;
        case 1: weight_grad_tile<1>(a, xpad, a.offsets + t, dy, oh0, oh1, dw + t * B); break;
        default: break;
      }
    }
  }
}

template void conv_direct_weight_grad<float>(const DirectWeightGradArgs&, const float*, const float*, float*);
template void conv_direct_weight_grad<double>(const DirectWeightGradArgs&, const double*, const double*, double*);
template void conv_sparse_weight_grad<float>(const int64_t*, int64_t, int64_t, const int64_t*, const float*, int64_t,
                                             const float*, float*);
template void conv_sparse_weight_grad<double>(const int64_t*, int64_t, int64_t, const int64_t*, const double*,
                                              int64_t, const double*, double*);
template void conv_sparse_input_grad<float>(const SparseInputGradArgs&, const float*, const float*, float*);
template void conv_sparse_input_grad<double>(const SparseInputGradArgs&, const double*, const double*, double*);


namespace {

// The Winograd transforms' row helpers (conv/winograd_kernels.h); plain loops for the compiler
// to vectorise at AVX2's width.
// Splits rows of x into their even and odd columns: even[j] = X(2 j), odd[j] = X(2 j + 1) for
// j < n, where X(i) = x[i - shift] inside [0, width) and zero outside. finite() says whether
// every x read was finite (x - x summed).
template <typename T>
class RowSplitter {
 public:
  RowSplitter(int64_t width, int64_t shift, int64_t n) : shift_(shift), n_(n) {
    // j with 0 <= 2 j + b - shift < width
    for (int b = 0; b < 2; ++b) {
      lo_[b] = std::min(n, std::max<int64_t>(0, (shift - b + 1) / 2));
      const int64_t reach = width - 1 + shift - b;
      hi_[b] = std::max(lo_[b], reach < 0 ? int64_t(0) : std::min(n, reach / 2 + 1));
    }
  }
  void split(const T* x, T* even, T* odd) {
    T check = T(0);
    for (int b = 0; b < 2; ++b) {
      T* out = b == 0 ? even : odd;
      const T* src = x + b - shift_;
      std::fill(out, out + lo_[b], T(0));
#pragma omp simd reduction(+ : check)
      for (int64_t j = lo_[b]; j < hi_[b]; ++j) {
        const T v = src[2 * j];
        out[j] = v;
        check += v - v;
      }
      std::fill(out + hi_[b], out + n_, T(0));
    }
    check_ += check;
  }
  void zero(T* even, T* odd) {
    std::fill(even, even + n_, T(0));
    std::fill(odd, odd + n_, T(0));
  }
  bool finite() const { return check_ == T(0); }

 private:
  int64_t shift_, n_, lo_[2], hi_[2];
  T check_ = T(0);
};

// window_max (below) for the values [k0, count), one at a time.
template <typename T>
inline void window_max_scalar(T* y00, T* y01, const T* y10, const T* y11, int64_t k0, int64_t count) {
  for (int64_t k = k0; k < count; ++k) {
    const T v[4] = {y00[k], y01[k], y10[k], y11[k]};
    T top = -std::numeric_limits<T>::infinity(), at = T(0);
    for (int i = 0; i < 4; ++i) {
      const T r = v[i] <= T(0) ? T(0) : v[i];  // relu keeping NaN
      if (r > top || r != r) top = r, at = T(i);
    }
    y00[k] = top;
    y01[k] = at;
  }
}
// The pooling of the fused block's Winograd output stage, in place: y00[k] = the max over
// i of relu(y_i[k]) (y_0..3 = y00, y01, y10, y11: the window scanned row by row) with torch's
// rule (a later value wins if greater, or if NaN; relu keeps NaN), y01[k] = its i. GCC does
// not vectorise this select chain from plain code, hence the compares and blends by hand.
template <typename T>
void window_max(T* y00, T* y01, const T* y10, const T* y11, int64_t count) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::kLanes;
  int64_t k = 0;
  for (; k + W <= count; k += W) {
    const V v[4] = {S::load(y00 + k), S::load(y01 + k), S::load(y10 + k), S::load(y11 + k)};
    V top = S::relu(v[0]), at = S::zero();
    for (int i = 1; i < 4; ++i) {
      const V r = S::relu(v[i]);
      const V take = S::greater_or_nan(r, top);
      top = S::blend(take, top, r);
      at = S::blend(take, at, S::set1(T(i)));
    }
    S::store(y00 + k, top);
    S::store(y01 + k, at);
  }
  window_max_scalar(y00, y01, y10, y11, k, count);
}

// out[i] = a[i / 2] for even i, b[i / 2] for odd i, i < n.
template <typename T>
void interleave_pairs(const T* a, const T* b, int64_t n, T* out) {
  const int64_t pairs = n / 2;
#pragma omp simd
  for (int64_t j = 0; j < pairs; ++j) out[2 * j] = a[j], out[2 * j + 1] = b[j];
  if (n % 2 != 0) out[n - 1] = a[pairs];
}

}  // namespace

#include "cpu/conv/winograd_kernels.h"

}  // namespace fastrnn::cpu::isa_avx2
