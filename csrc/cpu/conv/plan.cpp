// The choice among the CPU convolution's algorithms (plan.h): each rule a small function with
// its reason; the figures behind the constants and the costs are in bench/NOTES.md, conv.
#include "cpu/conv/plan.h"

#include <algorithm>

#include "common/isa.h"
#include "cpu/conv/isa_entries.h"
#include "cpu/conv/kernels.h"
#include "cpu/gemm/gemm.h"

namespace fastrnn::cpu {
namespace {

constexpr int64_t kColumnBudget = 512 << 10;   // bytes of im2col columns per block (L2)
constexpr int64_t kDirectBudget = 128 << 10;   // bytes of a direct block's output (L2)
constexpr int64_t kDirectInput = 8 << 20;      // the largest padded input copy (bytes per thread)
constexpr int64_t kWinogradBlock = 512 << 10;  // bytes of a Winograd block's transformed input (or output)
constexpr int64_t kWinogradChannels = 16;      // input and output channels per group for Winograd
constexpr int64_t kL1 = 32 << 10;              // a direct tile's input window beyond this is sliced
// Bytes of a direct tile's input window per slice: a quarter of L1 (see bench/NOTES.md, conv).
constexpr int64_t kSliceWindow = 8 << 10;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t align64(int64_t bytes) { return (bytes + 63) / 64 * 64; }

// Rows per block of `budget` bytes at `row_bytes` each, even for the pooled forward (whole
// pooling windows), at most the rows there are.
int64_t block_rows(int64_t budget, int64_t row_bytes, int64_t rows, ConvOp op) {
  int64_t block = std::max<int64_t>(1, budget / std::max<int64_t>(1, row_bytes));
  if (op == ConvOp::PoolForward) block = std::max<int64_t>(2, block / 2 * 2);
  return std::max<int64_t>(1, std::min(block, rows));
}

// The sizes every algorithm shares, and the im2col blocks: columns of about kColumnBudget
// bytes, so the block stays in L2 while the GEMM packs it.
void plan_sizes(const ConvShape& s, DType dtype, ConvOp op, ConvPlan& p) {
  p.element_bytes = static_cast<int64_t>(dtype_size(dtype));
  p.group_in_channels = s.in_channels / s.groups;
  p.group_out_channels = s.out_channels / s.groups;
  p.taps = p.group_in_channels * s.kernel_h * s.kernel_w;
  p.out_pixels = s.out_height * s.out_width;
  p.pooled_pixels = (s.out_height / 2) * (s.out_width / 2);
  // The pooled forward computes only the conv pixels some window reads; backward needs the
  // whole plane of dconv (zero where no window reads it).
  p.conv_rows = op == ConvOp::PoolForward ? s.out_height / 2 * 2 : s.out_height;
  p.conv_cols = op == ConvOp::PoolForward ? s.out_width / 2 * 2 : s.out_width;
  p.pointwise = s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 &&
                s.pad_w == 0 && s.out_height == s.height && s.out_width == s.width && p.conv_cols == s.width;
  p.im2col_rows = block_rows(kColumnBudget, p.taps * p.conv_cols * p.element_bytes, p.conv_rows, op);
  p.gemm_bytes = gemm_scratch_bytes_per_thread(dtype);
  p.dweight_channels = ceil_div(p.group_out_channels, 64 / p.element_bytes) * (64 / p.element_bytes);
  p.padded_in_channels = ceil_div(p.group_in_channels, 32 / p.element_bytes) * (32 / p.element_bytes);
}

// The direct kernel's padded planes and output blocks. It needs stride 1; 1x1 convs with
// several input channels read their input in place through the GEMM instead; the padded copy
// must fit kDirectInput.
void plan_direct(const ConvShape& s, ConvOp op, ConvPlan& p) {
#if defined(FASTRNN_X86)
  const bool possible = s.stride_h == 1 && s.stride_w == 1 && (p.group_in_channels == 1 || !p.pointwise);
#else
  const bool possible = false;
#endif
  p.padded_height = p.conv_rows + (s.kernel_h - 1) * s.dilation_h;
  // A row's right padding can be the next row's left padding: a tap reading column c >= padded_width (wp)
  // wraps to column c - wp of the next row, a zero when c - wp < pad_w and column c is right
  // padding anyway. So wp needs the kernel's reach less pad_w, all input columns the reach
  // touches, and room for the output row (14x14 3x3 p1: 15 instead of 16).
  const int64_t reach = p.conv_cols + (s.kernel_w - 1) * s.dilation_w;
  p.padded_width = std::max({p.conv_cols, reach - s.pad_w, std::min(s.pad_w + s.width, reach)});
  p.direct_rows = block_rows(kDirectBudget, p.group_out_channels * p.padded_width * p.element_bytes, p.conv_rows, op);
  p.direct_channel_stride = p.direct_rows * p.padded_width + kDirectSlack;
  p.direct = possible && p.group_in_channels * p.padded_height * p.padded_width * p.element_bytes <= kDirectInput;
}

// Costs of one output row in multiply-adds per tap, times 4 (see bench/NOTES.md, conv):
// row tiles compute each row's columns rounded up to a vector and copy nothing, columns on
// one-vector tiles counting 5/4 (13 loads per 12 FMAs);
int64_t row_tiles_cost(int64_t cols, int64_t vector, int64_t taps) {
  const RowTiles rt = direct_row_tiles(cols, vector);
  const int64_t tiled = (4 * rt.fours + 3 * rt.threes) * vector, tail = rt.ones * vector;
  return (4 * tiled + 5 * tail) * taps;
}
// flattened tiles compute padded_width columns and, in the plain forward, copy each row out of
// the block, counted as two taps per column (the pooled forward pools the block where it lies).
int64_t flat_tiles_cost(const ConvPlan& p, ConvOp op) {
  const int64_t copy = op == ConvOp::Forward ? 2 * p.conv_cols : 0;
  return 4 * (p.padded_width * p.taps + copy);
}
// Shifted planes compute the plane's positions rounded up to a vector, plus their copy:
// kernel_w input elements per padded input element, spread over the output channels.
int64_t shifted_cost(const ConvShape& s, const ConvPlan& p, int64_t vector) {
  const int64_t vectors = ceil_div(p.out_pixels, vector);
  return 4 * vectors * vector * p.taps + 4 * s.kernel_w * p.group_in_channels * p.shifted_plane / p.group_out_channels;
}

// A shifted-planes tile's window per input channel: kernel_w planes, each the kernel's rows
// of the tile's positions and a line of misalignment.
int64_t shifted_window(const ConvShape& s, const ConvPlan& p, int64_t tile) {
  return s.kernel_w * (((s.kernel_h - 1) * s.dilation_h * p.conv_cols + tile) * p.element_bytes + 64);
}

// A direct tile's window per input channel: the kernel's rows plus the rows its positions span,
// each the tile's columns plus the kernel's reach and a line of misalignment, or, for rows
// shorter than that, the rows as one stretch (14x14: 300 bytes, not 5 x 124).
int64_t direct_window(const ConvShape& s, const ConvPlan& p, int64_t tile) {
  const int64_t wp = p.padded_width;
  const int64_t rows_touched = (s.kernel_h - 1) * s.dilation_h + 1 + (tile + wp - 1) / wp;
  const int64_t cols_touched = std::min(wp, tile + (s.kernel_w - 1) * s.dilation_w);
  return std::min(rows_touched * (cols_touched * p.element_bytes + 64), rows_touched * wp * p.element_bytes + 64);
}

// Input channels per slice: all when their windows fit L1, else as many as fill kSliceWindow.
int64_t slice_channels(int64_t channels, int64_t per_channel) {
  const int64_t fit = std::max<int64_t>(1, kSliceWindow / per_channel);
  const int64_t slices = channels * per_channel <= kL1 ? 1 : ceil_div(channels, fit);
  return ceil_div(channels, slices);
}

// Among the direct forward's tilings, the cheapest: shifted planes only where a tile's window
// over all input channels fits L1 (in slices they were slower than flattened tiles), channel
// vectors where shifted planes are not taken, else row tiles where they cost no more than
// flattened ones.
void plan_direct_tiles(const ConvShape& s, ConvOp op, ConvPlan& p) {
  const int64_t vector = direct_lanes(p.element_bytes), tile = 3 * vector;
  const bool forward = op == ConvOp::Forward || op == ConvOp::PoolForward;
  const int64_t rows_cost = row_tiles_cost(p.conv_cols, vector, p.taps), flat_cost = flat_tiles_cost(p, op);
  p.row_tiles = p.direct && forward && rows_cost <= flat_cost;
  p.shifted_plane = p.padded_height * p.conv_cols;
  const int64_t window = shifted_window(s, p, tile);
  p.shifted_fits = p.direct && (op == ConvOp::Forward || op == ConvOp::Backward) && s.kernel_w > 1 &&
                   s.kernel_w * p.group_in_channels * p.shifted_plane * p.element_bytes <= kDirectInput;
  const bool window_fits = p.shifted_fits && p.group_in_channels * window <= kL1;
  p.shifted =
      op == ConvOp::Forward && window_fits && shifted_cost(s, p, vector) < std::min(rows_cost, flat_cost) * p.conv_rows;
  // Backward, the same planes serve the weight gradient, with no transposed dy.
  p.dot_weight_grad = op == ConvOp::Backward && window_fits;
  p.channel_vectors = p.direct && op == ConvOp::Forward && !p.shifted && active_isa() == Isa::Avx512 &&
                      p.group_out_channels % (128 / p.element_bytes) == 0;
  if (p.shifted || p.channel_vectors) p.row_tiles = false;
  const int64_t per_channel = p.shifted ? window : direct_window(s, p, tile);
  p.slice_taps = slice_channels(p.group_in_channels, per_channel) * s.kernel_h * s.kernel_w;
}

// Bytes of one image's phase planes for Winograd.
int64_t winograd_phase_bytes(const ConvPlan& p) {
  return align64(p.group_in_channels * 4 * p.winograd_phase_plane * p.element_bytes);
}

// Winograd F(2x2, 3x3): 2.25x fewer multiplications than direct, at the price of the transforms
// (per tile, ~48 operations per input and ~40 per output channel against 16 x channels of
// products) and of one unused tile per row of tiles; so 3x3 stride-1 undilated convs with
// kWinogradChannels or more channels each way, in the forward (plain or pooled).
void plan_winograd(const ConvShape& s, ConvOp op, ConvPlan& p) {
  p.winograd_tile_rows = (s.out_height + 1) / 2, p.winograd_tile_cols = (s.out_width + 1) / 2 + 1;
  p.winograd_tiles = p.winograd_tile_rows * p.winograd_tile_cols;
  p.winograd_phase_plane = (p.winograd_tile_rows + 1) * p.winograd_tile_cols + 16;
  p.winograd = p.direct && (op == ConvOp::Forward || op == ConvOp::PoolForward) && s.kernel_h == 3 && s.kernel_w == 3 &&
               s.dilation_h == 1 && s.dilation_w == 1 && p.group_in_channels >= kWinogradChannels &&
               p.group_out_channels >= kWinogradChannels && winograd_phase_bytes(p) <= kDirectInput;
  // Blocks of at most kWinogradBlock bytes of transformed input or products: whole images
  // (winograd_batch of them, their tiles one after the other) where one fits, else about equal
  // parts of an image's tiles in whole vectors (a short last block ran on one-vector tiles).
  const int64_t most = std::max<int64_t>(
      48, kWinogradBlock / (16 * std::max(p.group_in_channels, p.group_out_channels) * p.element_bytes));
  p.winograd_batch = std::max<int64_t>(1, std::min(most / std::max<int64_t>(1, p.winograd_tiles), s.batch));
  if (p.winograd_batch > 1 || p.winograd_tiles <= most) {
    p.winograd_block_tiles = p.winograd_batch * p.winograd_tiles;
  } else {
    const int64_t parts = ceil_div(p.winograd_tiles, most);
    p.winograd_block_tiles = (ceil_div(p.winograd_tiles, parts) + 15) / 16 * 16;
  }
  // The products' input window: up to 4 vectors of each input channel.
  p.winograd_slice_channels = slice_channels(p.group_in_channels, 4 * 64 + 64);
  // The 16 planes one cache line more than their size apart: at exact multiples of 4 KiB the
  // transforms' 16 streams met in one L1 set.
  p.winograd_input_stride = p.group_in_channels * p.winograd_block_tiles + 64 / p.element_bytes;
  p.winograd_product_stride = p.group_out_channels * p.winograd_block_tiles + 64 / p.element_bytes;
}

}  // namespace

ConvPlan choose_algorithm(const ConvShape& s, DType dtype, ConvOp op) {
  ConvPlan p;
  p.shape = s, p.op = op;
  plan_sizes(s, dtype, op, p);
  plan_direct(s, op, p);
  plan_direct_tiles(s, op, p);
  plan_winograd(s, op, p);
  // The fused backward's gradient is nonzero at one position per pooling window at most: sparse
  // kernels over those positions, for 8 or more input channels per group (vectors of channels).
  p.sparse = op == ConvOp::PoolBackward && p.direct && p.group_in_channels >= 8;
  return p;
}

}  // namespace fastrnn::cpu
