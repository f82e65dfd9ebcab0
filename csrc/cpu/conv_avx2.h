#pragma once
// The AVX2 kernels conv.cpp chooses at run time (the portable code is its fallback):
//
// 1. The direct convolution of one input plane (one input channel per group, stride 1), used
// instead of im2col + GEMM when the GEMM's depth (kernel_h * kernel_w, e.g. 9 or 25) is too
// short to amortise im2col, packing and the C stores. Written with intrinsics in
// conv_direct_avx2.cpp; the portable path is im2col + GEMM.
//
// The input plane is zero-padded so that every tap of every output is in bounds; with the
// padded row length Wp, output (oh, ow) sits at position oh * Wp + ow of a "flattened" output
// and tap t reads the padded plane at that position + offsets[t]. So the convolution is a 1-D
// one over positions; the positions with ow >= out_width are computed and ignored.
#include <cstdint>

namespace fastrnn::cpu {

struct DirectConvArgs {
  const int64_t* offsets = nullptr;  // (taps): tap t reads xpad[position + offsets[t]]
  int64_t taps = 0;
  int64_t channels = 0;  // output channels
  int64_t length = 0;    // positions wanted; the kernel writes them rounded up to 32
  int64_t ld = 0;        // out's channel stride, >= length rounded up to 32
};

// The number of positions the kernel may write beyond `length`, and read beyond the last
// tap's reach in xpad (which must hold zeros or any finite values there).
constexpr int64_t kDirectSlack = 32;

namespace isa_avx2 {
// out (channels, ld)[c][q] = sum_t weight_t[t][c] * xpad[q + offsets[t]] for q < length;
// weight_t is (taps, channels), the weights of one group transposed.
template <typename T>
void conv_single_channel(const DirectConvArgs& a, const T* xpad, const T* weight_t, T* out);

// 2. The fused block's epilogue (conv_pool_avx2.cpp), 8 windows at a time: for px < pw,
// y[px] = max over the 2x2 window at columns 2px, 2px+1 of rows top and bottom of
// relu(value + bias), and indices[px] its position index0 + 2px (+1 for the right column,
// +out_width for the bottom row), with torch's rules (the first maximum, a NaN wins).
// Returns pw (the windows done).
int64_t relu_pool_row(const float* top, const float* bottom, float bias, int64_t pw, int64_t index0,
                      int64_t out_width, float* y, int64_t* indices);
}  // namespace isa_avx2

}  // namespace fastrnn::cpu
