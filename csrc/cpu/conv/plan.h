#pragma once
// Which of the CPU convolution's algorithms a call takes, and the sizes it takes them with.
//
// Per image and group the conv is one of:
//   im2col + GEMM   the general path: output rows in blocks whose im2col columns stay in L2,
//                   the packed GEMM over them (a 1x1 stride-1 conv reads its input in place);
//   direct          stride 1: an implicit GEMM over a zero-padded copy of the group's input
//                   (conv/kernels.h), in flattened tiles or row-aligned tiles (row_tiles);
//   shifted planes  the direct kernel over one copy of the input per kernel column, so the
//                   output plane is one stretch (shifted);
//   channel vectors the direct forward vectorised over output channels (AVX-512, channel_vectors);
//   Winograd        F(2x2, 3x3) on top of the direct kernel, 3x3 stride-1 with many channels;
// and backward the weight gradient direct (blocked dy, or dot products over the shifted planes:
// dot_weight_grad), the fused block's gradients sparse (sparse), the input gradient the direct
// forward of the transposed conv where that exists (backward.h).
#include <cstdint>

#include "common/tensor_view.h"
#include "cpu/conv.h"

namespace fastrnn::cpu {

struct ConvPlan {
  ConvShape shape;  // the call's
  ConvOp op = ConvOp::Forward;
  int64_t element_bytes = 0;
  int64_t group_in_channels = 0, group_out_channels = 0;  // channels per group
  int64_t taps = 0;           // group_in_channels * kernel_h * kernel_w: the GEMM depth, values per output pixel
  int64_t out_pixels = 0;     // out_height * out_width, one output plane
  int64_t pooled_pixels = 0;  // (out_height / 2) * (out_width / 2), one pooled plane
  // The conv output rows and columns computed: the pooled forward drops an odd last one.
  int64_t conv_rows = 0, conv_cols = 0;

  // im2col + GEMM: output rows per im2col block, the block (taps, im2col_rows * conv_cols).
  int64_t im2col_rows = 0;
  bool pointwise = false;  // 1x1, stride 1, no padding: the input is its own im2col
  int64_t gemm_bytes = 0;  // one GEMM packing slot

  // The direct kernel (conv/kernels.h), sized whenever the shape allows it so that the workspace
  // does not depend on the instruction set: the group's input padded into planes
  // (group_in_channels, padded_height, padded_width); output blocks of direct_rows rows, each
  // channel's block direct_channel_stride elements apart.
  bool direct = false;
  int64_t padded_height = 0, padded_width = 0;
  int64_t direct_rows = 0, direct_channel_stride = 0;
  // Row-aligned tiles (conv_direct_rows) where they cost less than flattened ones.
  bool row_tiles = false;
  // Shifted planes (the plain forward): one copy of the padded input per kernel column kw, each
  // (padded_height, conv_cols), column ow holding padded column ow + kw * dilation_w, so every
  // tap reads at a fixed offset from the output's own position. shifted_plane = padded_height *
  // conv_cols. shifted_fits: the copies fit (they are sized in the workspace when they do).
  bool shifted = false, shifted_fits = false;
  int64_t shifted_plane = 0;
  // Backward: the weight gradient as dot products over the shifted planes (conv/kernels.h, 2b.).
  bool dot_weight_grad = false;
  // The forward vectorised over output channels (conv/kernels.h, 1b.; AVX-512, output channels per
  // group a multiple of 2 vectors); its weights channels-last (groups, taps, group_out_channels).
  bool channel_vectors = false;
  // The direct kernels pass over the channel blocks once per slice of slice_taps taps (whole
  // input channels) whose input window fits L1.
  int64_t slice_taps = 0;
  // The direct weight gradient: dy transposed into blocks of kDirectChannelBlock channels,
  // accumulated into dweight blocked as (groups, dweight_channels / block, taps, block),
  // dweight_channels = group_out_channels rounded up to the block.
  int64_t dweight_channels = 0;

  // Winograd F(2x2, 3x3) (conv/kernels.h, 6.): 2x2 output tiles, winograd_tile_rows x
  // winograd_tile_cols of them (one unused column), numbered k = ty * winograd_tile_cols + tx
  // over winograd_tiles; per image and group the input's phase planes (group_in_channels, 4,
  // winograd_phase_plane); tiles taken in blocks of winograd_block_tiles (winograd_batch images
  // at once where one image's tiles fit a block): the transformed input (16,
  // group_in_channels, winograd_block_tiles) with its 16 planes winograd_input_stride apart, the
  // 16 products (16, group_out_channels, winograd_block_tiles) winograd_product_stride apart.
  // The products' input channels in slices of winograd_slice_channels.
  bool winograd = false;
  int64_t winograd_tile_rows = 0, winograd_tile_cols = 0, winograd_tiles = 0, winograd_phase_plane = 0;
  int64_t winograd_batch = 0, winograd_block_tiles = 0;
  int64_t winograd_input_stride = 0, winograd_product_stride = 0, winograd_slice_channels = 0;

  // The fused backward's sparse gradients (conv/kernels.h, 3. and 4.): the padded input and dx
  // channels-last, padded_in_channels (group_in_channels rounded up to a vector) per position.
  bool sparse = false;
  int64_t padded_in_channels = 0;

  static int64_t round_up4(int64_t n) { return (n + 3) / 4 * 4; }
};

// The algorithm and sizes for one call of `op` on shape s in dtype (the shape checked).
ConvPlan choose_algorithm(const ConvShape& s, DType dtype, ConvOp op);

}  // namespace fastrnn::cpu
