#pragma once
// The AVX2 kernels conv.cpp chooses at run time (the portable code is its fallback), and the
// AVX-512 build of the first (isa_avx512, at the end):
//
// 1. The direct convolution of one group at stride 1 (conv/direct_avx2.cpp), used instead of
// im2col + pack + GEMM: the input planes are zero-padded so that every tap of every output is
// in bounds; with the padded row length Wp, output (oh, ow) sits at position oh * Wp + ow of
// a "flattened" output, and tap t = (ci, kh, kw) reads the padded input at that position +
// offsets[t]. So the convolution is a GEMM whose B operand is read in place at per-k offsets
// (an implicit im2col); the positions with ow >= out_width are computed and ignored.
#include <cstdint>

namespace fastrnn::cpu {

struct DirectConvArgs {
  const int64_t* offsets = nullptr;  // (taps): tap t reads xpad[position + offsets[t]]
  int64_t taps = 0;
  int64_t channels = 0;  // output channels
  int64_t length = 0;    // positions wanted
  int64_t ld = 0;        // out's channel stride, >= length
  int64_t slice_taps = 0;  // taps per pass over the channel blocks (0: all); whole input channels
  // conv_direct_rows only: output rows and columns, xpad's row length
  int64_t rows = 0, width = 0, wp = 0;
};

// The channel-vectorised forward (AVX-512 only): output positions q < positions of a plane
// `width` wide read xpad at (q / width) * wp + q % width + offsets[t]; out's channels ld apart.
struct DirectChannelArgs {
  const int64_t* offsets = nullptr;
  int64_t taps = 0;
  int64_t channels = 0;  // output channels, a multiple of 2 vectors (32 floats, 16 doubles)
  int64_t positions = 0, width = 0, wp = 0, ld = 0;
};

struct DirectWeightGradArgs {
  const int64_t* offsets = nullptr;  // (taps), as DirectConvArgs
  int64_t taps = 0;
  int64_t channel_blocks = 0;  // blocks of kDirectChannelBlock output channels
  int64_t out_height = 0, out_width = 0;
  int64_t wp = 0;  // the padded row length: output (oh, ow) reads xpad[oh * wp + ow + offsets[t]]
};

struct SparseInputGradArgs {
  const int64_t* vector_offsets = nullptr;  // (vectors): (tap, channel vector) offsets in dx_cl
  int64_t vectors = 0;
  int64_t cl = 0;                     // values per position of dx_cl (channels rounded up to a vector)
  const int64_t* starts = nullptr;    // (positions + 1): position q's entries are [starts[q], starts[q + 1])
  int64_t positions = 0;
  const int64_t* weight_at = nullptr;  // per entry, its output channel's offset in w_cl
};

// Output channels per block of the weight gradient's operands: one 64-byte line, two vectors
// (16 floats, 8 doubles).
template <typename T>
constexpr int64_t kDirectChannelBlock = 64 / sizeof(T);

// The number of positions the kernel may write beyond `length` (less than a vector: 16 floats
// in AVX-512), and read beyond the last tap's reach in xpad (which must hold zeros or any
// finite values there; conv.cpp also lets taps wrap pad_w columns past a padded row onto the
// next row's left padding). The same for every instruction set, so buffer sizes do not depend
// on the one active.
constexpr int64_t kDirectSlack = 64;

// How conv_direct_rows tiles a row of `width` columns in vectors of `lanes`: 3- and 4-vector
// tiles (12 accumulators each: 4 and 3 channels) where the vectors are a sum of them, the rest
// (1, 2 or 5 vectors) partly or wholly on one-vector tiles of 12 channels.
struct RowTiles {
  int64_t fours, threes, ones;
};
inline RowTiles direct_row_tiles(int64_t width, int64_t lanes) {
  const int64_t vectors = (width + lanes - 1) / lanes;
  int64_t fours = vectors % 3 == 1 ? 1 : vectors % 3 == 2 ? 2 : 0;
  if (4 * fours > vectors) fours = vectors >= 4 ? 1 : 0;  // 1, 2, 5 vectors
  const int64_t threes = (vectors - 4 * fours) / 3;
  return {fours, threes, vectors - 4 * fours - 3 * threes};
}

// The kernels both sets have, declared once (conv/simd_kernels.h, included in each namespace):
// 1., 2., 2b. and 6.; with AVX-512 the same contracts in vectors of 16 floats / 8 doubles
// (direct_row_tiles with those lanes; a channel block is one vector).
namespace isa_avx2 {
#include "cpu/conv/simd_kernels.h"

// 3. The fused block's weight gradient, where dy of the conv is nonzero at one position per
// pooling window at most: for each of `count` entries e (value dy, the padded position
// positions[e] = oh * wp + ow),
//   dw[v * lanes + i] += values[e] * x_cl[positions[e] * channels + vector_offsets[v] + i]
// for every vector v < vectors, x_cl the padded input channels-last (hp * wp positions of
// `channels` values, zero padding), vector_offsets the (tap, channel vector) offsets in it. A
// quarter of the dense FLOPs or less, vectorised over input channels.
template <typename T>
void conv_sparse_weight_grad(const int64_t* vector_offsets, int64_t vectors, int64_t channels, const int64_t* positions,
                             const T* values, int64_t count, const T* x_cl, T* dw);

// 4. The fused block's input gradient, the adjoint of 3.: with the entries grouped by conv
// position (entries [starts[q], starts[q + 1]) at padded position q = oh * wp + ow, each a
// value dy and weight_at = its output channel's offset in w_cl, the weights channels-last
// (out_channels, kernel_h * kernel_w, channels), zero past the last input channel),
//   dx_cl[q * channels + vector_offsets[v] + i] += sum over e of values[e] * w_cl[weight_at[e] + v * lanes + i]
// for every vector v < vectors; dx_cl has x_cl's padded channels-last geometry.
template <typename T>
void conv_sparse_input_grad(const SparseInputGradArgs& a, const T* values, const T* w_cl, T* dx_cl);

// 5. The fused block's epilogue (conv/pool_avx2.cpp), 8 windows at a time: for px < pw,
// y[px] = max over the 2x2 window at columns 2px, 2px+1 of rows top and bottom of
// relu(value + bias), and indices[px] its position index0 + 2px (+1 for the right column,
// +out_width for the bottom row), with torch's rules (the first maximum, a NaN wins).
// Returns pw (the windows done).
int64_t relu_pool_row(const float* top, const float* bottom, float bias, int64_t pw, int64_t index0,
                      int64_t out_width, float* y, int64_t* indices);
}  // namespace isa_avx2

namespace isa_avx512 {
#include "cpu/conv/simd_kernels.h"

// 1b. The forward vectorised over output channels instead of positions: out (channels, ld)[c][q]
// = bias[c] + sum_t weight_cl[t * channels + c] * xpad[base(q) + offsets[t]], computed in
// registers as 4 channel vectors x 6 positions or 2 x 12 (input values broadcast), stored
// channels-last into `block` (48 x 4 vectors of scratch) and transposed into out 16 x 16 (8 x 8)
// at a time.
// No position is computed twice or past the plane, where position vectors round each row (or
// the flattened plane) up to 16.
template <typename T>
void conv_direct_channels(const DirectChannelArgs& a, const T* xpad, const T* weight_cl, const T* bias, T* block,
                          T* out);

// The weight gradient's dy in channel blocks of one vector: out[b][q][j] = dy[(b * W + j) *
// positions + q] (zero for channels past `channels`), W = 16 floats / 8 doubles.
template <typename T>
void transpose_to_blocks(const T* dy, int64_t channels, int64_t positions, T* out);
}  // namespace isa_avx512

}  // namespace fastrnn::cpu
