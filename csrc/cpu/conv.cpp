// Convolution as blocked im2col + the packed GEMM (gemm.h), one image per thread.
//
// Per image and group, the output rows are taken in blocks whose im2col columns (K values per
// output pixel, K = in_channels/groups * kernel_h * kernel_w) fill about kColumnBudget bytes, so
// the column block stays in L2 while the GEMM packs it; the weights are the GEMM's A operand,
// read in place (rows contiguous in K). Bias, ReLU and pooling are applied to each block right
// after its GEMM, while it is still in cache. Threads take whole images (a thread's im2col,
// col2im and gradient accumulators never touch another thread's memory); a single image runs
// its GEMMs on all threads instead.
//
// The forward at stride 1 takes the direct kernel of conv_avx2.h instead, when the active
// instruction set has it: an implicit GEMM over a zero-padded copy of the group's input
// (no im2col, no packing, no edge panels), at the price of computing wp - out_width unused
// columns per output row. Backward at stride 1 with those kernels, image by image: the input
// gradient is the direct forward of the transposed conv, the weight gradient a direct
// outer-product kernel over the same padded planes, and in the fused block, where the conv's
// gradient is nonzero at one position per pooling window at most, sparse weight and input
// gradients over those positions alone.
//
// 3x3 stride-1 convs with 16 or more channels each way (the plain forward, and so the input
// gradient, a transposed 3x3 conv) take Winograd F(2x2, 3x3) on top of the direct kernel: per
// 2x2 output tile, 16 products of transformed 4x4 input patches with transformed weights, each
// a direct-kernel GEMM over the tiles, instead of 36 (conv_winograd_kernels.h).
#include "cpu/conv.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>

#include "common/error.h"
#include "common/isa.h"
#include "common/parallel.h"
#include "cpu/conv_avx2.h"
#include "cpu/gemm/gemm.h"

namespace fastrnn::cpu {
namespace {

constexpr int64_t kColumnBudget = 512 << 10;  // bytes of im2col columns per block (L2)
constexpr int64_t kDirectBudget = 128 << 10;  // bytes of a direct block's output (L2)
constexpr int64_t kDirectInput = 8 << 20;     // the largest padded input copy (bytes per thread)
constexpr int64_t kWinogradBlock = 512 << 10;  // bytes of a Winograd block's transformed input (or output)
constexpr int64_t kWinogradChannels = 16;      // input and output channels per group for Winograd
constexpr int64_t kL1 = 32 << 10;             // a direct tile's input window beyond this is sliced
constexpr int64_t kSliceWindow = 8 << 10;     // bytes of a direct tile's input window per slice: a quarter of
                                              // L1 (ResNet 64->64: 16 KiB 8%, 8 KiB 10-11% faster
                                              // than no slices; 4 KiB no better)

int64_t align64(int64_t bytes) { return (bytes + 63) / 64 * 64; }

// The direct forward's vector length in elements of `elem` bytes: AVX-512's where it is the
// active instruction set, else AVX2's (the direct kernels need one of them, use_direct).
int64_t direct_lanes(int64_t elem) { return (active_isa() == Isa::Avx512 ? 64 : 32) / elem; }

#if defined(FASTRNN_X86)
// The direct forward kernels of the active instruction set (conv_avx2.h).
template <typename T>
void conv_direct(const DirectConvArgs& a, const T* xpad, const T* weight_blocked, const T* bias, T* out) {
  if (active_isa() == Isa::Avx512) return isa_avx512::conv_direct<T>(a, xpad, weight_blocked, bias, out);
  isa_avx2::conv_direct<T>(a, xpad, weight_blocked, bias, out);
}
template <typename T>
void conv_direct_rows(const DirectConvArgs& a, const T* xpad, const T* weight_blocked, const T* bias, T* out) {
  if (active_isa() == Isa::Avx512) return isa_avx512::conv_direct_rows<T>(a, xpad, weight_blocked, bias, out);
  isa_avx2::conv_direct_rows<T>(a, xpad, weight_blocked, bias, out);
}
template <typename T>
void conv_direct_weight_grad(const DirectWeightGradArgs& a, const T* xpad, const T* dy_blocked, T* dw_blocked) {
  if (active_isa() == Isa::Avx512) return isa_avx512::conv_direct_weight_grad<T>(a, xpad, dy_blocked, dw_blocked);
  isa_avx2::conv_direct_weight_grad<T>(a, xpad, dy_blocked, dw_blocked);
}
template <typename T>
bool winograd_phases(const T* x, int64_t channels, int64_t height, int64_t width, int64_t pad_h, int64_t pad_w,
                     int64_t th, int64_t tc, int64_t plane, T* phases) {
  if (active_isa() == Isa::Avx512)
    return isa_avx512::winograd_phases<T>(x, channels, height, width, pad_h, pad_w, th, tc, plane, phases);
  return isa_avx2::winograd_phases<T>(x, channels, height, width, pad_h, pad_w, th, tc, plane, phases);
}
template <typename T>
void winograd_input(const T* phases, int64_t channels, int64_t plane, int64_t tc, int64_t k0, int64_t count, T* v,
                    int64_t v_ci, int64_t v_xi) {
  if (active_isa() == Isa::Avx512)
    return isa_avx512::winograd_input<T>(phases, channels, plane, tc, k0, count, v, v_ci, v_xi);
  isa_avx2::winograd_input<T>(phases, channels, plane, tc, k0, count, v, v_ci, v_xi);
}
template <typename T>
void winograd_output(const T* m, int64_t m_co, int64_t m_xi, int64_t channels, const T* bias, int64_t k0,
                     int64_t count, int64_t tc, int64_t out_h, int64_t out_w, T* y, T* yab) {
  if (active_isa() == Isa::Avx512)
    return isa_avx512::winograd_output<T>(m, m_co, m_xi, channels, bias, k0, count, tc, out_h, out_w, y, yab);
  isa_avx2::winograd_output<T>(m, m_co, m_xi, channels, bias, k0, count, tc, out_h, out_w, y, yab);
}
template <typename T>
void winograd_pool_output(const T* m, int64_t m_co, int64_t m_xi, int64_t channels, const T* bias, int64_t k0,
                          int64_t count, int64_t tc, int64_t out_w, int64_t ph, int64_t pw, T* y, int64_t* indices,
                          T* yab) {
  if (active_isa() == Isa::Avx512)
    return isa_avx512::winograd_pool_output<T>(m, m_co, m_xi, channels, bias, k0, count, tc, out_w, ph, pw, y,
                                               indices, yab);
  isa_avx2::winograd_pool_output<T>(m, m_co, m_xi, channels, bias, k0, count, tc, out_w, ph, pw, y, indices, yab);
}
template <typename T>
void conv_dot_weight_grad(const int64_t* offsets, int64_t taps, int64_t channels, int64_t length, const T* xs,
                          const T* dy, int64_t ld, T* dw, int64_t dw_channel, int64_t dw_tap) {
  if (active_isa() == Isa::Avx512)
    return isa_avx512::conv_dot_weight_grad<T>(offsets, taps, channels, length, xs, dy, ld, dw, dw_channel, dw_tap);
  isa_avx2::conv_dot_weight_grad<T>(offsets, taps, channels, length, xs, dy, ld, dw, dw_channel, dw_tap);
}
#endif

// Sizes derived from a ConvShape, and where each per-thread buffer sits in the workspace:
// [GEMM packing slots x threads][per thread: col | tmp | dconv | dweight | dbias | direct]
// [the direct forward's weights, shared].
struct Plan {
  int64_t cin_g, cout_g, K, P;  // per-group channels, GEMM depth, output pixels per plane
  int64_t rows_c, cols_c;       // conv output rows/columns computed (pooling drops an odd last one)
  int64_t block_rows;           // output rows per im2col block
  bool pointwise;               // 1x1, stride 1, no padding: the input is its own im2col
  // The direct forward (conv_avx2.h): padded planes (cin_g, hp, wp), output blocks of direct_rows
  // rows, each channel's block direct_ld apart. Backward, the direct weight gradient over the
  // same planes: dy transposed into blocks of channels (dyb), accumulated into dw blocked as
  // (groups, cout_g / block, K, block), cout_g rounded up to the block (dw_ld). Sized whenever
  // the shape allows it, so the workspace does not depend on the instruction set.
  bool direct;
  int64_t hp, wp, taps, direct_rows, direct_ld, dw_ld;
  // Row-aligned tiles (conv_direct_rows) where they cost less than flattened ones: the plain
  // forward writes them straight into the output, the pooled one into its block. The direct kernels pass over the channel
  // blocks once per slice of slice_taps taps (whole input channels) whose input window fits L1.
  bool row_tiles;
  // Shifted planes (the plain forward, where they cost less than rows and flattened tiles):
  // one copy of the padded input per kernel column kw, each row cols_c long, column ow holding
  // padded column ow + kw * dilation_w. Every tap then reads at a fixed offset from the
  // output's own position oh * cols_c + ow, so the kernel computes the output plane as one
  // stretch, straight into y: no padding columns computed, no copy out, a partial vector only
  // at the plane's end (ResNet 56 wide: 3136 positions in 196 vectors; 14x14: 196 in 13, where
  // flattened tiles took 14 for 209 and row tiles 14 for 196). shift_plane = hp * cols_c.
  bool shifted, dot_dw;
  int64_t shift_plane;
  // The forward vectorised over output channels (conv_avx2.h, 1b.; AVX-512, output channels per
  // group a multiple of 2 vectors), where shifted planes are not taken: its weights are
  // channels-last, (groups, taps, cout_g).
  bool channels;
  int64_t slice_taps;
  int64_t xpad_bytes, dout_bytes, wt_bytes, offsets_bytes, dyb_bytes;
  // Winograd F(2x2, 3x3) for the forward (plain or pooled) of a 3x3 stride-1 conv with many
  // channels (conv_avx2.h, 6.): the input's phase planes per image and group (cin_g, 4, wplane), tiles
  // numbered k = ty * wtc + tx over wlen = wth * wtc, taken in blocks of wkb tiles: the
  // transformed input v (16, cin_g, wkb), the 16 products m (16, cout_g, wkb) through
  // conv_direct with the transformed weights (groups, 16, blocked by 4 channels as the direct
  // weights, shared). The direct buffers stay sized: an image with an Inf or NaN runs direct.
  bool winograd;
  int64_t wth, wtc, wlen, wplane, wimages, wkb, wv_xi, wm_xi, wslice, wphase_bytes, wv_bytes, wm_bytes, wu_bytes;
  // The fused backward's sparse weight gradient (conv_avx2.h, 3.), for 8 or more input channels
  // per group: the padded input channels-last, cl channels per position (cin_g rounded up to a
  // vector), dw accumulated as (out_channels, kernel_h * kernel_w, cl); per output channel the
  // entries (positions, values) of its pooling windows. The sparse input gradient (conv_avx2.h,
  // 4.) over the same entries grouped by conv position (starts, weight_at, entry values) into dx
  // channels-last (dxcl, xcl's geometry), from the weights channels-last (wcl, shared).
  bool sparse;
  int64_t pooled, cl, xcl_bytes, entries_bytes, voff_bytes, csr_bytes, wcl_bytes;
  int64_t elem;
  int64_t gemm_bytes, col_bytes, tmp_bytes, dconv_bytes, dw_bytes, db_bytes, thread_bytes;

  Plan(const ConvShape& s, DType dtype, ConvOp op) {
    elem = static_cast<int64_t>(dtype_size(dtype));
    const bool backward = op == ConvOp::Backward || op == ConvOp::PoolBackward;
    cin_g = s.in_channels / s.groups;
    cout_g = s.out_channels / s.groups;
    K = cin_g * s.kernel_h * s.kernel_w;
    P = s.out_height * s.out_width;
    // The pooled forward computes only the conv pixels some window reads; backward needs the
    // whole plane of dconv (zero where no window reads it).
    rows_c = op == ConvOp::PoolForward ? s.out_height / 2 * 2 : s.out_height;
    cols_c = op == ConvOp::PoolForward ? s.out_width / 2 * 2 : s.out_width;
    pointwise = s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 &&
                s.pad_w == 0 && s.out_height == s.height && s.out_width == s.width && cols_c == s.width;
    block_rows = std::max<int64_t>(1, kColumnBudget / std::max<int64_t>(1, K * cols_c * elem));
    if (op == ConvOp::PoolForward) block_rows = std::max<int64_t>(2, block_rows / 2 * 2);
    block_rows = std::max<int64_t>(1, std::min(block_rows, rows_c));
    const int64_t block_cols = block_rows * cols_c;
    gemm_bytes = gemm_scratch_bytes_per_thread(dtype);
    col_bytes = pointwise && !backward ? 0 : align64(K * block_cols * elem);
    tmp_bytes = op == ConvOp::PoolForward ? align64(cout_g * block_cols * elem) : 0;
    dconv_bytes = op == ConvOp::PoolBackward ? align64(s.out_channels * P * elem) : 0;
    db_bytes = backward ? align64(s.out_channels * elem) : 0;
#if defined(FASTRNN_X86)
    // 1x1 convs with several input channels read their input in place through the GEMM.
    direct = s.stride_h == 1 && s.stride_w == 1 && (cin_g == 1 || !pointwise);
#else
    direct = false;
#endif
    taps = K;
    hp = rows_c + (s.kernel_h - 1) * s.dilation_h;
    // A row's right padding can be the next row's left padding: a tap reading column c >= wp
    // wraps to column c - wp of the next row, a zero when c - wp < pad_w and column c is right
    // padding anyway. So wp needs the kernel's reach less pad_w, all input columns the reach
    // touches, and room for the output row (14x14 3x3 p1: 15 instead of 16, 7% fewer FLOPs).
    const int64_t reach = cols_c + (s.kernel_w - 1) * s.dilation_w;
    wp = std::max({cols_c, reach - s.pad_w, std::min(s.pad_w + s.width, reach)});
    direct_rows = std::max<int64_t>(1, kDirectBudget / std::max<int64_t>(1, cout_g * wp * elem));
    if (op == ConvOp::PoolForward) direct_rows = std::max<int64_t>(2, direct_rows / 2 * 2);
    direct_rows = std::max<int64_t>(1, std::min(direct_rows, rows_c));
    direct_ld = direct_rows * wp + kDirectSlack;
    direct = direct && cin_g * hp * wp * elem <= kDirectInput;
    const int64_t vector = direct_lanes(elem), tile = 3 * vector;
    // Row tiles compute each row's columns rounded up to a vector and copy nothing; columns on
    // one-vector tiles (direct_row_tiles) count 5/4 (13 loads per 12 FMAs; ResNet in rows of
    // 3 + 3 + 1 vectors was 2-3% slower than flattened, in rows of 4 + 3 it is 4% faster).
    // Flattened tiles compute wp columns and copy each row out of the block, counted as two taps
    // per column. 1->32 3x3 p1 on 28x28 takes rows (one 4-vector tile: 32 columns of 9 taps
    // against 29 and the copy: 0.75 -> 0.55 ms); 32->64 14x14 stays flattened. The pooled
    // forward pools the block where it lies (no copy either way): the 5x5 valid layer's 24
    // columns against 28.
    const RowTiles rt = direct_row_tiles(cols_c, vector);
    const int64_t tiled = (4 * rt.fours + 3 * rt.threes) * vector, tail = rt.ones * vector;
    const int64_t copy = op == ConvOp::Forward ? 2 * cols_c : 0;
    row_tiles = direct && (op == ConvOp::Forward || op == ConvOp::PoolForward) &&
                (4 * tiled + 5 * tail) * K <= 4 * (wp * K + copy);
    // Shifted planes, costed as their rounded-up positions per row plus their copy (kernel_w
    // input elements per padded input element, spread over the output channels), and only
    // where a tile's window over all input channels fits L1: the planes triple a 3x3 conv's
    // window, and in slices of input channels (ResNet 64->64, 32->64 14x14) they were 2-16%
    // slower than flattened tiles; the first layers (one input channel) run 1.4-1.5x faster.
    shift_plane = hp * cols_c;
    const int64_t shift_window = s.kernel_w * (((s.kernel_h - 1) * s.dilation_h * cols_c + tile) * elem + 64);
    const bool shiftable = direct && (op == ConvOp::Forward || op == ConvOp::Backward) && s.kernel_w > 1 &&
                           s.kernel_w * cin_g * shift_plane * elem <= kDirectInput;
    {
      const int64_t vectors = (P + vector - 1) / vector;
      const int64_t shift_cost = 4 * vectors * vector * K + 4 * s.kernel_w * cin_g * shift_plane / cout_g;
      const int64_t rows_cost = std::min((4 * tiled + 5 * tail) * K, 4 * (wp * K + copy)) * rows_c;
      shifted = op == ConvOp::Forward && shiftable && cin_g * shift_window <= kL1 && shift_cost < rows_cost;
    }
    // Backward, the same planes serve the weight gradient as dot products over the output
    // plane (conv_avx2.h, 2b.), with no transposed dy.
    dot_dw = op == ConvOp::Backward && shiftable && cin_g * shift_window <= kL1;
    channels = direct && op == ConvOp::Forward && !shifted && active_isa() == Isa::Avx512 &&
               cout_g % (128 / elem) == 0;
    if (shifted || channels) row_tiles = false;
    {
      // A tile's window per input channel: the kernel's rows plus the rows its positions span,
      // each the tile's columns plus the kernel's reach and a line of misalignment, or, for
      // rows shorter than that, the rows as one stretch (14x14: 300 bytes, not 5 x 124).
      const int64_t rows_touched = (s.kernel_h - 1) * s.dilation_h + 1 + (tile + wp - 1) / wp;
      const int64_t cols_touched = std::min(wp, tile + (s.kernel_w - 1) * s.dilation_w);
      int64_t per_channel = std::min(rows_touched * (cols_touched * elem + 64), rows_touched * wp * elem + 64);
      if (shifted) per_channel = shift_window;
      const int64_t fit = std::max<int64_t>(1, kSliceWindow / per_channel);
      const int64_t slices = cin_g * per_channel <= kL1 ? 1 : (cin_g + fit - 1) / fit;
      slice_taps = (cin_g + slices - 1) / slices * s.kernel_h * s.kernel_w;
    }
    {
      // 2.25x fewer multiplications than direct, at the price of the transforms (per tile,
      // ~48 operations per input and ~40 per output channel against 16 x cin_g per output
      // channel of products) and of one unused tile per row of tiles.
      wth = (s.out_height + 1) / 2, wtc = (s.out_width + 1) / 2 + 1, wlen = wth * wtc;
      wplane = (wth + 1) * wtc + 16;
      wphase_bytes = align64(cin_g * 4 * wplane * elem);  // per image
      winograd = direct && (op == ConvOp::Forward || op == ConvOp::PoolForward) && s.kernel_h == 3 &&
                 s.kernel_w == 3 && s.dilation_h == 1 && s.dilation_w == 1 && cin_g >= kWinogradChannels &&
                 cout_g >= kWinogradChannels && wphase_bytes <= kDirectInput;
      // Blocks of at most kWinogradBlock bytes of v or m: whole images (wimages of them, their
      // tiles one after the other) where one fits, else about equal parts of an image's tiles
      // in whole vectors (a short last block ran on one-vector tiles: 14x14 took 48 + 8).
      const int64_t most = std::max<int64_t>(48, kWinogradBlock / (16 * std::max(cin_g, cout_g) * elem));
      wimages = std::max<int64_t>(1, std::min(most / std::max<int64_t>(1, wlen), s.batch));
      if (wimages > 1 || wlen <= most) {
        wkb = wimages * wlen;
      } else {
        const int64_t parts = (wlen + most - 1) / most;
        wkb = ((wlen + parts - 1) / parts + 15) / 16 * 16;
      }
      // the products' input window: up to 4 vectors of each input channel
      const int64_t per_channel = 4 * 64 + 64, fit = std::max<int64_t>(1, kSliceWindow / per_channel);
      const int64_t slices = cin_g * per_channel <= kL1 ? 1 : (cin_g + fit - 1) / fit;
      wslice = (cin_g + slices - 1) / slices;
      wphase_bytes = winograd ? wimages * wphase_bytes : 0;
      // The 16 planes of v and of m one cache line more than their size apart: 14x14's m planes
      // (64 x 112 floats) were 7 x 4 KiB apart, and the transforms' 16 streams met in one L1 set.
      wv_xi = cin_g * wkb + 64 / elem, wm_xi = cout_g * wkb + 64 / elem;
      wv_bytes = winograd ? align64((16 * wv_xi + kDirectSlack) * elem) : 0;
      // and the output stage's scratch: 4 output phases, or the pooled maxima and their codes
      wm_bytes = winograd ? align64((16 * wm_xi + 4 * wkb) * elem) : 0;
      wu_bytes = winograd ? align64(s.groups * 16 * cin_g * round_up4(cout_g) * elem) : 0;
    }
    const int64_t block = 64 / elem;  // kDirectChannelBlock<T>
    dw_ld = (cout_g + block - 1) / block * block;
    sparse = op == ConvOp::PoolBackward && direct && cin_g >= 8;
    const int64_t lanes = 32 / elem, spatial = s.kernel_h * s.kernel_w;
    cl = (cin_g + lanes - 1) / lanes * lanes;
    pooled = (s.out_height / 2) * (s.out_width / 2);
    xcl_bytes = sparse ? align64((hp * wp + s.pad_w + 1) * cl * elem) : 0;
    entries_bytes = sparse ? align64(cout_g * pooled * (8 + elem)) : 0;
    voff_bytes = sparse ? align64(spatial * cl / lanes * 8) : 0;
    csr_bytes = sparse ? align64((hp * wp + 1) * 8) + align64(cout_g * pooled * 8) + align64(cout_g * pooled * elem) +
                             align64(cout_g * 8)
                       : 0;
    wcl_bytes = sparse ? align64(s.out_channels * spatial * cl * elem) : 0;
    dw_bytes = backward ? align64(std::max({s.out_channels * K, direct ? s.groups * dw_ld * K : 0,
                                            sparse ? s.out_channels * spatial * cl : 0}) * elem)
                        : 0;
    xpad_bytes = direct ? align64((std::max(cin_g * hp * wp + s.pad_w, shiftable ? s.kernel_w * cin_g * shift_plane : 0) +
                                   kDirectSlack) *
                                  elem)
                        : 0;
    dout_bytes = direct && !backward ? align64(cout_g * direct_ld * elem) : 0;
    wt_bytes = direct && !backward ? align64(s.groups * taps * round_up4(cout_g) * elem) : 0;
    offsets_bytes = direct ? align64(taps * static_cast<int64_t>(sizeof(int64_t))) : 0;
    dyb_bytes = direct && backward ? align64(P * dw_ld * elem) : 0;
    thread_bytes = col_bytes + tmp_bytes + dconv_bytes + dw_bytes + db_bytes + xpad_bytes + dout_bytes +
                   offsets_bytes + dyb_bytes + 2 * xcl_bytes + entries_bytes + voff_bytes + csr_bytes +
                   wphase_bytes + wv_bytes + wm_bytes;
  }
  int64_t total(int threads) const {
    return threads * (gemm_bytes + thread_bytes) + wt_bytes + wcl_bytes + wu_bytes;
  }
  static int64_t round_up4(int64_t n) { return (n + 3) / 4 * 4; }
};

// One thread's buffers.
template <typename T>
struct ThreadBuffers {
  T *col, *tmp, *dconv, *dw, *db;
  T *xpad, *dout;  // the direct forward's padded planes and output block
  T* wt;           // its weights of every group, blocked (shared by all threads)
  int64_t* offsets;
  T* dyb;  // the direct weight gradient's transposed dy
  T* xcl;  // the sparse weight gradient's channels-last input, its entries and vector offsets
  int64_t* positions;  // (cout_g, pooled) entries per output channel, counts (cout_g) of them
  T* values;
  int64_t* counts;
  int64_t* voff;
  T* dxcl;  // the sparse input gradient's channels-last dx, its entries by position
  int64_t *starts, *weight_at;
  T* entry_values;
  T* wcl;  // its channels-last weights (shared by all threads)
  T *wphases, *wv, *wm;  // Winograd: phase planes, transformed input, products
  T* wu;                 // its transformed weights (shared by all threads)
};

template <typename T>
ThreadBuffers<T> buffers(const Plan& p, const ConvWorkspace& ws, int slot) {
  char* base = ws.data + ws.threads * p.gemm_bytes + slot * p.thread_bytes;
  ThreadBuffers<T> b;
  b.col = reinterpret_cast<T*>(base);
  b.tmp = reinterpret_cast<T*>(base + p.col_bytes);
  b.dconv = reinterpret_cast<T*>(base + p.col_bytes + p.tmp_bytes);
  b.dw = reinterpret_cast<T*>(base + p.col_bytes + p.tmp_bytes + p.dconv_bytes);
  b.db = reinterpret_cast<T*>(base + p.col_bytes + p.tmp_bytes + p.dconv_bytes + p.dw_bytes);
  char* direct = base + p.col_bytes + p.tmp_bytes + p.dconv_bytes + p.dw_bytes + p.db_bytes;
  b.xpad = reinterpret_cast<T*>(direct);
  b.dout = reinterpret_cast<T*>(direct + p.xpad_bytes);
  b.offsets = reinterpret_cast<int64_t*>(direct + p.xpad_bytes + p.dout_bytes);
  b.dyb = reinterpret_cast<T*>(direct + p.xpad_bytes + p.dout_bytes + p.offsets_bytes);
  char* sparse = direct + p.xpad_bytes + p.dout_bytes + p.offsets_bytes + p.dyb_bytes;
  b.xcl = reinterpret_cast<T*>(sparse);
  b.positions = reinterpret_cast<int64_t*>(sparse + p.xcl_bytes);
  b.values = reinterpret_cast<T*>(sparse + p.xcl_bytes + p.cout_g * p.pooled * 8);
  b.voff = reinterpret_cast<int64_t*>(sparse + p.xcl_bytes + p.entries_bytes);
  char* csr = sparse + p.xcl_bytes + p.entries_bytes + p.voff_bytes;
  b.dxcl = reinterpret_cast<T*>(csr);
  b.starts = reinterpret_cast<int64_t*>(csr + p.xcl_bytes);
  b.weight_at = reinterpret_cast<int64_t*>(csr + p.xcl_bytes + align64((p.hp * p.wp + 1) * 8));
  char* entries = csr + p.xcl_bytes + align64((p.hp * p.wp + 1) * 8) + align64(p.cout_g * p.pooled * 8);
  b.entry_values = reinterpret_cast<T*>(entries);
  b.counts = reinterpret_cast<int64_t*>(entries + align64(p.cout_g * p.pooled * p.elem));
  b.wcl = reinterpret_cast<T*>(ws.data + ws.threads * (p.gemm_bytes + p.thread_bytes) + p.wt_bytes);
  b.wt = reinterpret_cast<T*>(ws.data + ws.threads * (p.gemm_bytes + p.thread_bytes));
  char* winograd = csr + p.xcl_bytes + p.csr_bytes;
  b.wphases = reinterpret_cast<T*>(winograd);
  b.wv = reinterpret_cast<T*>(winograd + p.wphase_bytes);
  b.wm = reinterpret_cast<T*>(winograd + p.wphase_bytes + p.wv_bytes);
  b.wu = reinterpret_cast<T*>(ws.data + ws.threads * (p.gemm_bytes + p.thread_bytes) + p.wt_bytes + p.wcl_bytes);
  return b;
}

// The output columns [lo, hi) of one kernel tap whose input column iw = ow * stride + offset
// lies inside [0, width).
struct ValidRange {
  int64_t lo, hi;
};
inline ValidRange valid_columns(int64_t offset, int64_t stride, int64_t width, int64_t count) {
  const int64_t lo = offset >= 0 ? 0 : std::min(count, (-offset + stride - 1) / stride);
  const int64_t hi = offset > width - 1 ? 0 : std::min(count, (width - 1 - offset) / stride + 1);
  return {lo, std::max(lo, hi)};
}

// col (K, rows * cols) = the input patches of output rows [oh0, oh0 + rows) and columns
// [0, cols) of one group; x is that group's (cin_g, H, W) input.
template <typename T>
void im2col(const ConvShape& s, int64_t cin_g, const T* x, int64_t oh0, int64_t rows, int64_t cols, T* col) {
  for (int64_t ci = 0; ci < cin_g; ++ci) {
    for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
      for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
        const int64_t iw_offset = kw * s.dilation_w - s.pad_w;
        const ValidRange v = valid_columns(iw_offset, s.stride_w, s.width, cols);
        for (int64_t r = 0; r < rows; ++r, col += cols) {
          const int64_t ih = (oh0 + r) * s.stride_h - s.pad_h + kh * s.dilation_h;
          if (ih < 0 || ih >= s.height) {
            std::fill(col, col + cols, T(0));
            continue;
          }
          const T* src = x + (ci * s.height + ih) * s.width + iw_offset;
          // Plain loops, not memcpy/fill: rows are short (14 columns on a 14x14 layer) and a
          // library call per row cost more than the copy.
          for (int64_t ow = 0; ow < v.lo; ++ow) col[ow] = T(0);
          if (s.stride_w == 1) {
#pragma omp simd
            for (int64_t ow = v.lo; ow < v.hi; ++ow) col[ow] = src[ow];
          } else {
            for (int64_t ow = v.lo; ow < v.hi; ++ow) col[ow] = src[ow * s.stride_w];
          }
          for (int64_t ow = v.hi; ow < cols; ++ow) col[ow] = T(0);
        }
      }
    }
  }
}

// dx (cin_g, H, W) += the patches in col (K, rows * out_width): im2col's adjoint.
template <typename T>
void col2im(const ConvShape& s, int64_t cin_g, const T* col, int64_t oh0, int64_t rows, T* dx) {
  const int64_t cols = s.out_width;
  for (int64_t ci = 0; ci < cin_g; ++ci) {
    for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
      for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
        const int64_t iw_offset = kw * s.dilation_w - s.pad_w;
        const ValidRange v = valid_columns(iw_offset, s.stride_w, s.width, cols);
        for (int64_t r = 0; r < rows; ++r, col += cols) {
          const int64_t ih = (oh0 + r) * s.stride_h - s.pad_h + kh * s.dilation_h;
          if (ih < 0 || ih >= s.height) continue;
          T* dst = dx + (ci * s.height + ih) * s.width + iw_offset;
          if (s.stride_w == 1) {
#pragma omp simd
            for (int64_t ow = v.lo; ow < v.hi; ++ow) dst[ow] += col[ow];
          } else {
            for (int64_t ow = v.lo; ow < v.hi; ++ow) dst[ow * s.stride_w] += col[ow];
          }
        }
      }
    }
  }
}

// Calls image(n, slot) for every image: whole images per thread when there are several,
// else one image at a time with the GEMMs on all threads.
template <typename F>
void for_each_image(int64_t batch, int threads, const F& image) {
  const int teams = static_cast<int>(std::min<int64_t>(threads, batch));
  if (teams <= 1) {
    for (int64_t n = 0; n < batch; ++n) image(n, 0);
    return;
  }
#pragma omp parallel num_threads(teams)
  {
    const int t = omp_get_thread_num(), parts = omp_get_num_threads();
    const Range r = split(batch, t, parts);
    for (int64_t n = r.begin; n < r.end; ++n) image(n, t);
  }
}

// Calls images(n, count, slot) for groups of up to `group` consecutive images, each thread
// taking a contiguous part of the batch (as for_each_image) in groups.
template <typename F>
void for_each_image_group(int64_t batch, int threads, int64_t group, const F& images) {
  for_each_image(std::min<int64_t>(threads, batch), threads, [&](int64_t part, int slot) {
    const Range r = split(batch, static_cast<int>(part), static_cast<int>(std::min<int64_t>(threads, batch)));
    for (int64_t n = r.begin; n < r.end; n += group) images(n, std::min(group, r.end - n), slot);
  });
}

// The shapes the plan and the kernels are written for; the Python layer sends torch the
// degenerate ones (no channels, an empty kernel), so here they are only refused.
void check_shape(const ConvShape& s, const char* name) {
  FASTRNN_CHECK(s.groups > 0, name, ": groups must be positive, got ", s.groups);
  FASTRNN_CHECK(s.in_channels >= s.groups && s.in_channels % s.groups == 0 && s.out_channels >= s.groups &&
                    s.out_channels % s.groups == 0,
                name, ": in_channels (", s.in_channels, ") and out_channels (", s.out_channels,
                ") must be positive multiples of groups (", s.groups, ")");
  FASTRNN_CHECK(s.kernel_h > 0 && s.kernel_w > 0, name, ": kernel size must be positive, got ", s.kernel_h, "x",
                s.kernel_w);
  FASTRNN_CHECK(s.stride_h > 0 && s.stride_w > 0 && s.dilation_h > 0 && s.dilation_w > 0, name,
                ": stride and dilation must be positive");
  FASTRNN_CHECK(s.pad_h >= 0 && s.pad_w >= 0, name, ": padding must be non-negative");
  FASTRNN_CHECK(s.batch >= 0 && s.height >= 0 && s.width >= 0, name, ": sizes must be non-negative");
  // The output is the conv's over the input padded pad_h at the top and pad_h or pad_h + 1 at the
  // bottom (torch's 'same' padding of an even kernel), likewise across.
  auto fits = [](int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation) {
    const int64_t span = dilation * (kernel - 1) + 1;
    for (int64_t extra = 0; extra <= 1; ++extra)
      if (in + 2 * pad + extra >= span && out == (in + 2 * pad + extra - span) / stride + 1) return true;
    return false;
  };
  FASTRNN_CHECK(fits(s.height, s.out_height, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h) &&
                    fits(s.width, s.out_width, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w),
                name, ": output size ", s.out_height, "x", s.out_width, " does not match input size ", s.height, "x",
                s.width, " (kernel ", s.kernel_h, "x", s.kernel_w, ", stride ", s.stride_h, "x", s.stride_w,
                ", padding ", s.pad_h, "x", s.pad_w, ", dilation ", s.dilation_h, "x", s.dilation_w, ")");
}

int usable_threads(const ConvWorkspace& ws) {
  return omp_in_parallel() ? 1 : std::max(1, std::min(omp_get_max_threads(), ws.threads));
}

void check_workspace(const ConvShape& s, DType dtype, ConvOp op, const ConvWorkspace& ws, const char* name) {
  check_shape(s, name);
  FASTRNN_CHECK(ws.threads > 0 && ws.data != nullptr && ws.bytes >= conv_workspace_bytes(s, dtype, op, ws.threads),
                name, ": workspace too small");
}

template <typename T>
GemmScratch gemm_scratch(const Plan& p, const ConvWorkspace& ws) {
  GemmScratch g;
  g.data = ws.data;
  g.bytes_per_thread = p.gemm_bytes;
  g.threads = ws.threads;
  return g;
}

// C (M, N) = op(A) op(B) + beta C, row-major with leading dimensions.
template <typename T>
void matmul(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
            T beta, T* C, int64_t ldc, const GemmScratch& scratch) {
  GemmArgs<T> g;
  g.trans_a = ta, g.trans_b = tb;
  g.M = M, g.N = N, g.K = K;
  g.A = A, g.lda = lda, g.B = B, g.ldb = ldb, g.beta = beta, g.C = C, g.ldc = ldc;
  gemm(g, scratch);
}

// The direct kernel runs whole images per thread; with fewer images than threads the GEMM
// path, which splits one image's product across the threads, keeps them all busy.
bool use_direct(const ConvShape& s, const Plan& p, const ConvWorkspace& ws) {
  return p.direct && active_isa() != Isa::Generic && s.batch >= usable_threads(ws);
}

// weight (out_channels, taps) as the direct kernel reads it, once per call: per group, blocks
// of 4 channels (ceil(cout_g / 4), taps, 4), or channels-last (taps, cout_g) for Plan::channels;
// and for Plan::winograd also transformed (buf.wu). Output channels split over the threads (a
// serial pass was 3% of a 32->64 14x14 Winograd forward).
template <typename T>
void block_direct_weights(const ConvShape& s, const Plan& p, const T* weight, const ThreadBuffers<T>& buf,
                          int threads) {
  const int64_t co4 = Plan::round_up4(p.cout_g), per_xi = p.cin_g * co4;
  if (p.winograd && co4 > p.cout_g) std::fill(buf.wu, buf.wu + s.groups * 16 * per_xi, T(0));  // padding channels
  const int64_t channels = s.groups * p.cout_g;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && channels * p.taps >= 4096)
  for (int64_t c = 0; c < channels; ++c) {
    const int64_t g = c / p.cout_g, co = c % p.cout_g;
    const T* w = weight + c * p.taps;
    T* wt_g = buf.wt + g * p.taps * co4;
    if (p.channels) {
      for (int64_t t = 0; t < p.taps; ++t) wt_g[t * p.cout_g + co] = w[t];
    } else {
      T* out = wt_g + co / 4 * p.taps * 4 + co % 4;
      for (int64_t t = 0; t < p.taps; ++t) out[t * 4] = w[t];
    }
    if (!p.winograd) continue;
    // U = G g G^T per (co, ci), G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1], element xi = 4 i + j
    // stored as the direct weights with cin_g taps: per group and xi, (ceil(cout_g / 4), cin_g, 4).
    for (int64_t ci = 0; ci < p.cin_g; ++ci) {
      const T* k = w + ci * 9;
      T gk[4][3];  // G g
      for (int j = 0; j < 3; ++j) {
        gk[0][j] = k[j];
        gk[1][j] = (k[j] + k[3 + j] + k[6 + j]) / 2;
        gk[2][j] = (k[j] - k[3 + j] + k[6 + j]) / 2;
        gk[3][j] = k[6 + j];
      }
      T* u = buf.wu + g * 16 * per_xi + (co / 4 * p.cin_g + ci) * 4 + co % 4;
      for (int i = 0; i < 4; ++i) {
        u[(4 * i + 0) * per_xi] = gk[i][0];
        u[(4 * i + 1) * per_xi] = (gk[i][0] + gk[i][1] + gk[i][2]) / 2;
        u[(4 * i + 2) * per_xi] = (gk[i][0] - gk[i][1] + gk[i][2]) / 2;
        u[(4 * i + 3) * per_xi] = gk[i][2];
      }
    }
  }
}

// The direct kernels' operands of one group: x_g (cin_g, H, W) zero-padded into buf.xpad
// (cin_g, hp, wp), and each tap's offset in it into buf.offsets.
template <typename T>
void pad_group(const ConvShape& s, const Plan& p, const T* x_g, const ThreadBuffers<T>& buf) {
  // Row by row, zeros only where no input lands (clearing the whole copy first wrote it twice:
  // ResNet 64->64 56x56, 0.8 MiB per image).
  const int64_t plane = p.hp * p.wp;
  const ValidRange v = valid_columns(-s.pad_w, 1, s.width, p.wp);
  for (int64_t ci = 0; ci < p.cin_g; ++ci) {
    for (int64_t r = 0; r < p.hp; ++r) {
      T* row = buf.xpad + ci * plane + r * p.wp;
      const int64_t ih = r - s.pad_h;
      if (ih < 0 || ih >= s.height || v.hi <= v.lo) {
        std::fill(row, row + p.wp, T(0));
        continue;
      }
      const T* src = x_g + (ci * s.height + ih) * s.width - s.pad_w;
      for (int64_t j = 0; j < v.lo; ++j) row[j] = T(0);
      std::memcpy(row + v.lo, src + v.lo, (v.hi - v.lo) * sizeof(T));  // libc's, at the CPU's vector width
      for (int64_t j = v.hi; j < p.wp; ++j) row[j] = T(0);
    }
  }
  std::fill(buf.xpad + p.cin_g * plane, buf.xpad + p.cin_g * plane + s.pad_w + kDirectSlack, T(0));
  for (int64_t ci = 0, t = 0; ci < p.cin_g; ++ci) {
    for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
      for (int64_t kw = 0; kw < s.kernel_w; ++kw, ++t) {
        buf.offsets[t] = ci * plane + kh * s.dilation_h * p.wp + kw * s.dilation_w;
      }
    }
  }
}

// The shifted planes of one group (Plan::shifted) into buf.xpad: plane kw of input channel ci
// at (kw * cin_g + ci) * shift_plane, row r column ow = x_g[ci][r - pad_h][ow + kw * dilation_w -
// pad_w] (zero outside x); tap (ci, kh, kw) at offset (kw * cin_g + ci) * shift_plane + kh *
// dilation_h * cols_c.
template <typename T>
void pad_shifted(const ConvShape& s, const Plan& p, const T* x_g, const ThreadBuffers<T>& buf) {
  const int64_t cols = p.cols_c;
  for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
    const int64_t shift = kw * s.dilation_w - s.pad_w;  // input column of output column 0
    const int64_t lo = std::clamp<int64_t>(-shift, 0, cols), hi = std::clamp<int64_t>(s.width - shift, lo, cols);
    for (int64_t ci = 0; ci < p.cin_g; ++ci) {
      T* plane = buf.xpad + (kw * p.cin_g + ci) * p.shift_plane;
      for (int64_t r = 0; r < p.hp; ++r) {
        T* row = plane + r * cols;
        const int64_t ih = r - s.pad_h;
        if (ih < 0 || ih >= s.height || hi <= lo) {
          std::fill(row, row + cols, T(0));
          continue;
        }
        const T* src = x_g + (ci * s.height + ih) * s.width + shift;
        for (int64_t j = 0; j < lo; ++j) row[j] = T(0);
        std::memcpy(row + lo, src + lo, (hi - lo) * sizeof(T));
        for (int64_t j = hi; j < cols; ++j) row[j] = T(0);
      }
    }
  }
  const int64_t end = s.kernel_w * p.cin_g * p.shift_plane;
  std::fill(buf.xpad + end, buf.xpad + end + kDirectSlack, T(0));
  for (int64_t ci = 0, t = 0; ci < p.cin_g; ++ci)
    for (int64_t kh = 0; kh < s.kernel_h; ++kh)
      for (int64_t kw = 0; kw < s.kernel_w; ++kw, ++t)
        buf.offsets[t] = (kw * p.cin_g + ci) * p.shift_plane + kh * s.dilation_h * cols;
}

// The direct forward of one group: pads its input x_g; then runs the kernel block by block on
// output rows [oh0, oh0 + rows), leaving channel co's row r at buf.dout + co * direct_ld + r *
// stride (stride = cols_c with row tiles, else wp), and epilogue(oh0, rows, stride) consumes them.
template <typename T, typename Epilogue>
void direct_group(const ConvShape& s, const Plan& p, int64_t g, const T* x_g, const ThreadBuffers<T>& buf,
                  const Epilogue& epilogue) {
  pad_group(s, p, x_g, buf);
  DirectConvArgs a;
  a.offsets = buf.offsets, a.taps = p.taps, a.channels = p.cout_g, a.ld = p.direct_ld, a.slice_taps = p.slice_taps;
  for (int64_t oh0 = 0; oh0 < p.rows_c; oh0 += p.direct_rows) {
    const int64_t rows = std::min(p.direct_rows, p.rows_c - oh0);
    [[maybe_unused]] const T* wt = buf.wt + g * p.taps * Plan::round_up4(p.cout_g);
#if defined(FASTRNN_X86)
    if (p.row_tiles) {
      a.rows = rows, a.width = p.cols_c, a.wp = p.wp;
      conv_direct_rows<T>(a, buf.xpad + oh0 * p.wp, wt, static_cast<const T*>(nullptr), buf.dout);
    } else {
      a.length = (rows - 1) * p.wp + p.cols_c;
      conv_direct<T>(a, buf.xpad + oh0 * p.wp, wt, static_cast<const T*>(nullptr), buf.dout);
    }
#endif
    epilogue(oh0, rows, p.row_tiles ? p.cols_c : p.wp);
  }
}

// The forward of `images` consecutive images (at most wimages) by Winograd F(2x2, 3x3)
// (Plan::winograd), group by group: the phase planes of each image, then per block of tiles
// (all the images' tiles one after the other, or a part of one image's) the input transform,
// its 16 products with the transformed weights (conv_direct, one per element of the 4x4 tile)
// and out(n, g, k0, count, m, scratch): the output stage of image n's tiles [k0, k0 + count) of
// group g, their products at m (16 planes wm_xi apart, channels wkb apart). Returns false,
// having computed nothing that counts, when an image has an Inf or NaN.
template <typename T, typename Out>
bool winograd_images(const ConvShape& s, const Plan& p, const T* x, int64_t images, const ThreadBuffers<T>& buf,
                     const Out& out) {
#if defined(FASTRNN_X86)
  const int64_t co4 = Plan::round_up4(p.cout_g), v_xi = p.wv_xi, m_xi = p.wm_xi;
  const int64_t in_numel = s.in_channels * s.height * s.width;
  const int64_t phases = p.cin_g * 4 * p.wplane;  // per image
  for (int64_t ci = 0; ci < p.cin_g; ++ci) buf.offsets[ci] = ci * p.wkb;
  DirectConvArgs a;
  a.offsets = buf.offsets, a.taps = p.cin_g, a.channels = p.cout_g, a.ld = p.wkb;
  a.slice_taps = p.wslice < p.cin_g ? p.wslice : 0;
  for (int64_t g = 0; g < s.groups; ++g) {
    const T* u_g = buf.wu + g * 16 * p.cin_g * co4;
    for (int64_t n = 0; n < images; ++n) {
      const T* x_g = x + n * in_numel + g * p.cin_g * s.height * s.width;
      if (!winograd_phases<T>(x_g, p.cin_g, s.height, s.width, s.pad_h, s.pad_w, p.wth, p.wtc, p.wplane,
                              buf.wphases + n * phases))
        return false;
    }
    // Tiles [k0, k0 + count) of each image, at n * count in the block (images > 1: all of them).
    const int64_t step = images > 1 ? p.wlen : p.wkb;
    for (int64_t k0 = 0; k0 < p.wlen; k0 += step) {
      const int64_t count = std::min(step, p.wlen - k0);
      for (int64_t n = 0; n < images; ++n)
        winograd_input<T>(buf.wphases + n * phases, p.cin_g, p.wplane, p.wtc, k0, count, buf.wv + n * count, p.wkb,
                          v_xi);
      a.length = images * count;
      for (int xi = 0; xi < 16; ++xi)
        conv_direct<T>(a, buf.wv + xi * v_xi, u_g + xi * p.cin_g * co4, static_cast<const T*>(nullptr),
                       buf.wm + xi * m_xi);
      for (int64_t n = 0; n < images; ++n) out(n, g, k0, count, buf.wm + n * count, buf.wm + 16 * m_xi);
    }
  }
  return true;
#else
  (void)s, (void)p, (void)x, (void)images, (void)buf, (void)out;
  return false;
#endif
}

// The plain forward's output stage of winograd_images: y (images, out_channels, out_h, out_w).
template <typename T>
auto winograd_conv_out(const ConvShape& s, const Plan& p, const T* bias, T* y) {
  return [&s, &p, bias, y](int64_t n, int64_t g, int64_t k0, int64_t count, const T* m, T* scratch) {
#if defined(FASTRNN_X86)
    winograd_output<T>(m, p.wkb, p.wm_xi, p.cout_g, bias == nullptr ? nullptr : bias + g * p.cout_g, k0, count,
                       p.wtc, s.out_height, s.out_width, y + (n * s.out_channels + g * p.cout_g) * p.P, scratch);
#else
    (void)s, (void)p, (void)bias, (void)y, (void)n, (void)g, (void)k0, (void)count, (void)m, (void)scratch;
#endif
  };
}

// One image's forward: y_n (out_channels, out_h, out_w) = conv(x_n) + bias.
template <typename T>
void forward_image(const ConvShape& s, const Plan& p, bool direct, const T* x_n, const T* weight, const T* bias,
                   T* y_n, const ThreadBuffers<T>& buf, const GemmScratch& scratch) {
  if (direct && p.winograd && winograd_images(s, p, x_n, 1, buf, winograd_conv_out(s, p, bias, y_n))) return;
  for (int64_t g = 0; g < s.groups; ++g) {
    const T* x_g = x_n + g * p.cin_g * s.height * s.width;
    const T* w_g = weight + g * p.cout_g * p.K;
    T* y_g = y_n + g * p.cout_g * p.P;
    if (direct && p.shifted) {
      pad_shifted(s, p, x_g, buf);
      DirectConvArgs a;
      a.offsets = buf.offsets, a.taps = p.taps, a.channels = p.cout_g, a.ld = p.P, a.slice_taps = p.slice_taps;
      a.length = p.P;
#if defined(FASTRNN_X86)
      conv_direct<T>(a, buf.xpad, buf.wt + g * p.taps * Plan::round_up4(p.cout_g),
                     bias == nullptr ? nullptr : bias + g * p.cout_g, y_g);
#endif
      continue;
    }
    if (direct && p.channels) {
      pad_group(s, p, x_g, buf);
      DirectChannelArgs a;
      a.offsets = buf.offsets, a.taps = p.taps, a.channels = p.cout_g;
      a.positions = p.P, a.width = s.out_width, a.wp = p.wp, a.ld = p.P;
#if defined(FASTRNN_X86)
      isa_avx512::conv_direct_channels<T>(a, buf.xpad, buf.wt + g * p.taps * Plan::round_up4(p.cout_g),
                                          bias == nullptr ? nullptr : bias + g * p.cout_g, buf.dout, y_g);
#endif
      continue;
    }
    if (direct && p.row_tiles) {
      pad_group(s, p, x_g, buf);
      DirectConvArgs a;
      a.offsets = buf.offsets, a.taps = p.taps, a.channels = p.cout_g, a.ld = p.P, a.slice_taps = p.slice_taps;
      a.rows = s.out_height, a.width = s.out_width, a.wp = p.wp;
#if defined(FASTRNN_X86)
      conv_direct_rows<T>(a, buf.xpad, buf.wt + g * p.taps * Plan::round_up4(p.cout_g),
                          bias == nullptr ? nullptr : bias + g * p.cout_g, y_g);
#endif
      continue;
    }
    if (direct) {
      direct_group(s, p, g, x_g, buf, [&](int64_t oh0, int64_t rows, int64_t stride) {
        for (int64_t co = 0; co < p.cout_g; ++co) {
          const T b = bias == nullptr ? T(0) : bias[g * p.cout_g + co];
          for (int64_t r = 0; r < rows; ++r) {
            const T* src = buf.dout + co * p.direct_ld + r * stride;
            T* dst = y_g + co * p.P + (oh0 + r) * s.out_width;
#pragma omp simd
            for (int64_t j = 0; j < s.out_width; ++j) dst[j] = src[j] + b;
          }
        }
      });
      continue;
    }
    for (int64_t oh0 = 0; oh0 < p.rows_c; oh0 += p.block_rows) {
      const int64_t rows = std::min(p.block_rows, p.rows_c - oh0), cols = rows * s.out_width;
      const T* b_mat = x_g + oh0 * s.width;
      int64_t ldb = p.P;
      if (!p.pointwise) {
        im2col(s, p.cin_g, x_g, oh0, rows, s.out_width, buf.col);
        b_mat = buf.col, ldb = cols;
      }
      T* c = y_g + oh0 * s.out_width;
      matmul<T>(false, false, p.cout_g, cols, p.K, w_g, p.K, b_mat, ldb, T(0), c, p.P, scratch);
      if (bias != nullptr) {
        for (int64_t co = 0; co < p.cout_g; ++co) {
          const T b = bias[g * p.cout_g + co];
          T* row = c + co * p.P;
#pragma omp simd
          for (int64_t j = 0; j < cols; ++j) row[j] += b;
        }
      }
    }
  }
}

// sums[c] += the sum of row c of rows (count rows of n values, ld apart): the bias gradient.
template <typename T>
void add_row_sums(const T* rows, int64_t count, int64_t n, int64_t ld, T* sums) {
  for (int64_t c = 0; c < count; ++c) {
    const T* row = rows + c * ld;
    T sum = T(0);
#pragma omp simd reduction(+ : sum)
    for (int64_t q = 0; q < n; ++q) sum += row[q];
    sums[c] += sum;
  }
}

// The direct weight gradient of one image (conv_avx2.h): per group, dy transposed into channel
// blocks (and summed into db on the way), then the kernel over the padded input. dw is blocked
// (groups, dw_ld / B, K, B); dw and db accumulate (+=).
template <typename T>
void direct_weight_grad_image(const ConvShape& s, const Plan& p, const T* dy_n, const T* x_n, T* dw, T* db,
                              const ThreadBuffers<T>& buf) {
  constexpr int64_t B = kDirectChannelBlock<T>;
  for (int64_t g = 0; g < s.groups; ++g) {
    const T* dy_g = dy_n + g * p.cout_g * p.P;
    if (p.dot_dw) {
      // Blocks of B channels: within one, channel c's weights are B * taps apart in dw and
      // its taps B apart.
      if (db != nullptr) add_row_sums(dy_g, p.cout_g, p.P, p.P, db + g * p.cout_g);
      if (dw == nullptr) continue;
      pad_shifted(s, p, x_n + g * p.cin_g * s.height * s.width, buf);
#if defined(FASTRNN_X86)
      for (int64_t c0 = 0; c0 < p.cout_g; c0 += B)
        conv_dot_weight_grad<T>(buf.offsets, p.taps, std::min(B, p.cout_g - c0), p.P, buf.xpad, dy_g + c0 * p.P, p.P,
                                dw + g * p.dw_ld * p.K + c0 * p.K, 1, B);
#endif
      continue;
    }
    bool transposed = false;
#if defined(FASTRNN_X86)
    if (active_isa() == Isa::Avx512) {
      // A block is one vector here: 16 x 16 (8 x 8) transposes, then the sums read dy in order.
      isa_avx512::transpose_to_blocks<T>(dy_g, p.cout_g, p.P, buf.dyb);
      if (db != nullptr) add_row_sums(dy_g, p.cout_g, p.P, p.P, db + g * p.cout_g);
      transposed = true;
    }
#endif
    if (!transposed) {
      for (int64_t co = 0; co < p.dw_ld; ++co) {
        T* out = buf.dyb + co / B * p.P * B + co % B;
        if (co >= p.cout_g) {
          for (int64_t q = 0; q < p.P; ++q) out[q * B] = T(0);
          continue;
        }
        const T* row = dy_g + co * p.P;
        T sum = T(0);
        for (int64_t q = 0; q < p.P; ++q) out[q * B] = row[q], sum += row[q];
        if (db != nullptr) db[g * p.cout_g + co] += sum;
      }
    }
    if (dw == nullptr) continue;
    pad_group(s, p, x_n + g * p.cin_g * s.height * s.width, buf);
    DirectWeightGradArgs a;
    a.offsets = buf.offsets, a.taps = p.taps, a.channel_blocks = p.dw_ld / B;
    a.out_height = s.out_height, a.out_width = s.out_width, a.wp = p.wp;
#if defined(FASTRNN_X86)
    conv_direct_weight_grad<T>(a, buf.xpad, buf.dyb, dw + g * p.dw_ld * p.K);
#endif
  }
}

// The entries of the conv's gradient of group g of one image from its pooled gradient dy_n (and
// the forward's y_n, indices_n; each (out_channels, out_h / 2, out_w / 2)): per output channel
// co of the group, the windows the ReLU passed (not y <= 0: NaN too), entry e < buf.counts[co] at
// co * pooled + e as its maximum's padded position oh * wp + ow (buf.positions) and dy
// (buf.values). Branch-free: the window's corner gives oh and ow (the index is one of its four
// positions; a 64-bit division per entry cost more than the sparse kernels), and every window
// is written, the next overwriting it where the ReLU stopped it.
template <typename T>
void sparse_entries(const ConvShape& s, const Plan& p, int64_t g, const T* dy_n, const T* y_n,
                    const int64_t* indices_n, const ThreadBuffers<T>& buf) {
  const int64_t pw = s.out_width / 2, ph = s.out_height / 2;
  for (int64_t co = 0; co < p.cout_g; ++co) {
    const int64_t c = g * p.cout_g + co;
    const T *dy_c = dy_n + c * p.pooled, *y_c = y_n + c * p.pooled;
    const int64_t* i_c = indices_n + c * p.pooled;
    int64_t* positions = buf.positions + co * p.pooled;
    T* values = buf.values + co * p.pooled;
    int64_t count = 0;
    for (int64_t py = 0, i = 0; py < ph; ++py) {
      for (int64_t px = 0; px < pw; ++px, ++i) {
        const int64_t d = i_c[i] - (2 * py * s.out_width + 2 * px);
        const int64_t bottom = -((s.out_width - 1 - d) >> 63);  // d >= out_width: the window's bottom row
        positions[count] = (2 * py + bottom) * p.wp + 2 * px + d - bottom * s.out_width;
        values[count] = dy_c[i];
        count += y_c[i] <= T(0) ? 0 : 1;  // as torch's ReLU backward: a NaN passes
      }
    }
    buf.counts[co] = count;
  }
}

// The fused block's input gradient of group g of one image from its entries (sparse_entries):
// grouped by conv position (a counting sort), the kernel into a zeroed channels-last dx, then
// the group's planes of dx_n (in_channels, H, W) read back out of it (zero where no tap reaches).
template <typename T>
void sparse_input_grad_group(const ConvShape& s, const Plan& p, int64_t g, T* dx_n, const ThreadBuffers<T>& buf) {
  const int64_t positions = p.hp * p.wp, spatial = s.kernel_h * s.kernel_w;
  const int64_t lanes = 32 / static_cast<int64_t>(sizeof(T));
  int64_t* starts = buf.starts;
  std::fill(starts, starts + positions + 1, int64_t(0));
  for (int64_t co = 0; co < p.cout_g; ++co)
    for (int64_t e = co * p.pooled; e < co * p.pooled + buf.counts[co]; ++e) ++starts[buf.positions[e] + 1];
  for (int64_t q = 0; q < positions; ++q) starts[q + 1] += starts[q];
  // Placing an entry of position q at starts[q]++ leaves starts[q] at q's end, q + 1's start.
  for (int64_t co = 0; co < p.cout_g; ++co) {
    const int64_t weight_at = (g * p.cout_g + co) * spatial * p.cl;
    for (int64_t e = co * p.pooled; e < co * p.pooled + buf.counts[co]; ++e) {
      const int64_t k = starts[buf.positions[e]]++;
      buf.weight_at[k] = weight_at;
      buf.entry_values[k] = buf.values[e];
    }
  }
  for (int64_t q = positions; q > 0; --q) starts[q] = starts[q - 1];
  starts[0] = 0;
  std::fill(buf.dxcl, buf.dxcl + (positions + s.pad_w + 1) * p.cl, T(0));
  SparseInputGradArgs a;
  a.vector_offsets = buf.voff, a.vectors = spatial * p.cl / lanes, a.cl = p.cl;
  a.starts = starts, a.positions = positions, a.weight_at = buf.weight_at;
#if defined(FASTRNN_X86)
  isa_avx2::conv_sparse_input_grad<T>(a, buf.entry_values, buf.wcl, buf.dxcl);
#endif
  // Input (ih, iw) sits at padded (ih + pad_h, iw + pad_w); columns past wp and rows past hp
  // are beyond every tap's reach (wrapped taps land in the left padding, never there).
  const int64_t plane = s.height * s.width;
  T* dx_g = dx_n + g * p.cin_g * plane;
  for (int64_t ci = 0; ci < p.cin_g; ++ci) {
    for (int64_t ih = 0; ih < s.height; ++ih) {
      T* dst = dx_g + ci * plane + ih * s.width;
      const int64_t r = ih + s.pad_h;
      const int64_t inside = r < p.hp ? std::max<int64_t>(0, std::min(s.width, p.wp - s.pad_w)) : 0;
      for (int64_t iw = 0; iw < inside; ++iw) dst[iw] = buf.dxcl[(r * p.wp + s.pad_w + iw) * p.cl + ci];
      for (int64_t iw = inside; iw < s.width; ++iw) dst[iw] = T(0);
    }
  }
}

// The fused block's gradients of one image: the conv's dy is nonzero only at the maximum of a
// window the ReLU passed, so per output channel the weight gradient sums over those entries
// alone (conv_avx2.h, 3.), and the input gradient adds each conv position's entries, times
// their channels' weights, into its kernel_h x kernel_w input neighbourhood (conv_avx2.h, 4.;
// buf.wcl holds the weights channels-last). dw is (out_channels, kernel_h * kernel_w, cl); dw
// and db accumulate (+=); dx_n (in_channels, H, W) is overwritten.
template <typename T>
void sparse_backward_image(const ConvShape& s, const Plan& p, const T* dy_n, const T* y_n, const int64_t* indices_n,
                           const T* x_n, T* dx_n, T* dw, T* db, const ThreadBuffers<T>& buf) {
  const int64_t lanes = 32 / static_cast<int64_t>(sizeof(T)), vectors_per_tap = p.cl / lanes;
  const int64_t spatial = s.kernel_h * s.kernel_w, vectors = spatial * vectors_per_tap;
  for (int64_t kh = 0, v = 0; kh < s.kernel_h; ++kh)
    for (int64_t kw = 0; kw < s.kernel_w; ++kw)
      for (int64_t j = 0; j < vectors_per_tap; ++j, ++v)
        buf.voff[v] = (kh * s.dilation_h * p.wp + kw * s.dilation_w) * p.cl + j * lanes;
  const ValidRange cols = valid_columns(-s.pad_w, 1, s.width, p.wp);
  for (int64_t g = 0; g < s.groups; ++g) {
    if (dw != nullptr) {
      // x_cl (hp * wp + pad_w + 1, cl): the group's input padded as pad_group does, channels last.
      std::fill(buf.xcl, buf.xcl + (p.hp * p.wp + s.pad_w + 1) * p.cl, T(0));
      const T* x_g = x_n + g * p.cin_g * s.height * s.width;
      for (int64_t r = 0; r < p.hp; ++r) {
        const int64_t ih = r - s.pad_h;
        if (ih < 0 || ih >= s.height) continue;
        for (int64_t c = cols.lo; c < cols.hi; ++c) {
          T* dst = buf.xcl + (r * p.wp + c) * p.cl;
          const T* src = x_g + ih * s.width + c - s.pad_w;
          for (int64_t ci = 0; ci < p.cin_g; ++ci) dst[ci] = src[ci * s.height * s.width];
        }
      }
    }
    sparse_entries(s, p, g, dy_n, y_n, indices_n, buf);
    for (int64_t co = 0; co < p.cout_g; ++co) {
      const int64_t c = g * p.cout_g + co, count = buf.counts[co];
      const int64_t* positions = buf.positions + co * p.pooled;
      const T* values = buf.values + co * p.pooled;
      if (db != nullptr) {
        T sum = T(0);
        for (int64_t e = 0; e < count; ++e) sum += values[e];
        db[c] += sum;
      }
#if defined(FASTRNN_X86)
      if (dw != nullptr)
        isa_avx2::conv_sparse_weight_grad<T>(buf.voff, vectors, p.cl, positions, values, count, buf.xcl,
                                             dw + c * spatial * p.cl);
#endif
    }
    if (dx_n != nullptr) sparse_input_grad_group(s, p, g, dx_n, buf);
  }
}

// One image's gradients: dw, db accumulate (+=); dx_n is overwritten. direct: dw and db come
// from direct_weight_grad_image (dw blocked as it writes it).
template <typename T>
void backward_image(const ConvShape& s, const Plan& p, bool direct, const T* dy_n, const T* x_n, const T* weight,
                    T* dx_n, T* dw, T* db, const ThreadBuffers<T>& buf, const GemmScratch& scratch) {
  if (direct && (dw != nullptr || db != nullptr)) {
    direct_weight_grad_image(s, p, dy_n, x_n, dw, db, buf);
    dw = db = nullptr;
  }
  if (dx_n == nullptr && dw == nullptr && db == nullptr) return;
  if (dx_n != nullptr && !p.pointwise) std::fill(dx_n, dx_n + s.in_channels * s.height * s.width, T(0));
  for (int64_t g = 0; g < s.groups; ++g) {
    const T* x_g = x_n + g * p.cin_g * s.height * s.width;
    const T* w_g = weight + g * p.cout_g * p.K;
    const T* dy_g = dy_n + g * p.cout_g * p.P;
    T* dx_g = dx_n == nullptr ? nullptr : dx_n + g * p.cin_g * s.height * s.width;
    for (int64_t oh0 = 0; oh0 < s.out_height; oh0 += p.block_rows) {
      const int64_t rows = std::min(p.block_rows, s.out_height - oh0), cols = rows * s.out_width;
      const T* dy_blk = dy_g + oh0 * s.out_width;
      if (dw != nullptr) {
        // dW_g (cout_g, K) += dy_blk (cout_g, cols) . col^T, col (K, cols)
        const T* col = x_g + oh0 * s.width;
        int64_t ldcol = p.P;
        if (!p.pointwise) {
          im2col(s, p.cin_g, x_g, oh0, rows, s.out_width, buf.col);
          col = buf.col, ldcol = cols;
        }
        matmul<T>(false, true, p.cout_g, p.K, cols, dy_blk, p.P, col, ldcol, T(1), dw + g * p.cout_g * p.K, p.K,
                  scratch);
      }
      if (db != nullptr) add_row_sums(dy_blk, p.cout_g, cols, p.P, db + g * p.cout_g);
      if (dx_g != nullptr) {
        // dcol (K, cols) = W_g^T (K, cout_g) . dy_blk (cout_g, cols), then scattered back.
        if (p.pointwise) {
          matmul<T>(true, false, p.K, cols, p.cout_g, w_g, p.K, dy_blk, p.P, T(0), dx_g + oh0 * s.width, p.P,
                    scratch);
        } else {
          matmul<T>(true, false, p.K, cols, p.cout_g, w_g, p.K, dy_blk, p.P, T(0), buf.col, cols, scratch);
          col2im(s, p.cin_g, buf.col, oh0, rows, dx_g);
        }
      }
    }
  }
}

// max of relu over one 2x2 window, scanning as torch's max_pool2d does (row by row, NaN wins).
template <typename T>
inline void pool_window(const T v[4], const int64_t at[4], T* out, int64_t* index) {
  T best = -std::numeric_limits<T>::infinity();
  int64_t best_at = at[0];
  for (int i = 0; i < 4; ++i) {
    const T r = v[i] <= T(0) ? T(0) : v[i];  // relu that keeps NaN
    if (r > best || r != r) best = r, best_at = at[i];
  }
  *out = best;
  *index = best_at;
}

// The input gradient of a stride-1 conv is a stride-1 conv too: of dy, with the weights
// flipped in both kernel axes and their channel axes swapped, padded (kernel - 1) * dilation
// - pad at the top/left. Sets t to that conv's shape; false when it does not exist (stride,
// or padding wider than the kernel's reach) or would not take the direct kernel, and for fewer
// than 4 input channels per group (t's output channels: the kernel's 4-channel tile would run
// a quarter full, load-bound; measured 1->32 5x5 train 10.5-11.3 ms -> 12.5-12.8 ms).
bool transposed_direct(const ConvShape& s, DType dtype, ConvShape& t) {
  if (s.stride_h != 1 || s.stride_w != 1 || s.in_channels / s.groups < 4) return false;
  t = s;
  t.in_channels = s.out_channels, t.height = s.out_height, t.width = s.out_width;
  t.out_channels = s.in_channels, t.out_height = s.height, t.out_width = s.width;
  t.pad_h = (s.kernel_h - 1) * s.dilation_h - s.pad_h;
  t.pad_w = (s.kernel_w - 1) * s.dilation_w - s.pad_w;
  return t.pad_h >= 0 && t.pad_w >= 0 && Plan(t, dtype, ConvOp::Forward).direct;
}

// Bytes of the flipped weights plus the forward workspace of the transposed conv, after the
// backward's own workspace.
int64_t transposed_bytes(const ConvShape& s, const ConvShape& t, DType dtype, int threads) {
  const int64_t weight_numel = s.out_channels * (s.in_channels / s.groups) * s.kernel_h * s.kernel_w;
  return align64(weight_numel * static_cast<int64_t>(dtype_size(dtype))) +
         Plan(t, dtype, ConvOp::Forward).total(threads);
}


// Whether every element of v is finite (x * 0 is 0 for finite x, NaN for Inf and NaN), summed
// in independent lanes so that the loop vectorises: a pass at memory speed, one thread enough.
template <typename T>
bool all_finite(const T* v, int64_t n) {
  constexpr int64_t kLanes = 16;
  T lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) lanes[j] += v[i + j] * T(0);
  for (; i < n; ++i) lanes[0] += v[i] * T(0);
  T sum = T(0);
  for (int64_t j = 0; j < kLanes; ++j) sum += lanes[j];
  return sum == T(0);
}

// Runs backward_image over the batch with per-thread accumulators, then sums them. dy_of(n,
// buffers) returns image n's (out_channels, out_h, out_w) output gradient. With the AVX2
// kernels and whole images per thread, dx is the direct forward of the transposed conv and dw
// the direct weight gradient, image by image while its dy is in cache; where p.sparse,
// sparse_grad(n, buffers, dx_n, dw, db) gives all three instead (the fused block), unless
// `dense`.
template <typename T, typename DyOf, typename SparseGrad>
void backward_batch(const ConvShape& s, const Plan& p, const DyOf& dy_of, const SparseGrad& sparse_grad,
                    const T* x, const T* weight, T* dx, T* dweight, T* dbias, const ConvWorkspace& ws,
                    bool dense = false) {
  const int threads = usable_threads(ws);
  const int teams = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, s.batch)));
  const bool simd = active_isa() != Isa::Generic && s.batch >= threads;
  const bool sparse = p.sparse && simd && !dense;
  const bool direct = p.direct && simd && !sparse;
  const int64_t w_numel = s.out_channels * p.K;
  const int64_t dw_numel = sparse   ? s.out_channels * s.kernel_h * s.kernel_w * p.cl
                           : direct ? s.groups * p.dw_ld * p.K
                                    : w_numel;
  for (int t = 0; t < teams; ++t) {
    const ThreadBuffers<T> b = buffers<T>(p, ws, t);
    if (dweight != nullptr) std::fill(b.dw, b.dw + dw_numel, T(0));
    if (dbias != nullptr) std::fill(b.db, b.db + s.out_channels, T(0));
  }
  if (sparse && dx != nullptr) {
    // w_cl (out_channels, kernel_h * kernel_w, cl): the weights channels-last, zero past cin_g.
    const int64_t spatial = s.kernel_h * s.kernel_w;
    T* w_cl = buffers<T>(p, ws, 0).wcl;
    std::fill(w_cl, w_cl + s.out_channels * spatial * p.cl, T(0));
    for (int64_t c = 0; c < s.out_channels; ++c)
      for (int64_t ci = 0; ci < p.cin_g; ++ci)
        for (int64_t k = 0; k < spatial; ++k)
          w_cl[(c * spatial + k) * p.cl + ci] = weight[(c * p.cin_g + ci) * spatial + k];
  }
  // The transposed conv multiplies its zero padding by every tap too: an Inf or NaN weight would
  // make NaN at inputs no output reaches, where torch's input gradient (and the GEMM's) has none.
  ConvShape t;
  const bool transposed = dx != nullptr && simd && !sparse && transposed_direct(s, dtype_of<T>(), t) &&
                          all_finite(weight, w_numel);
  const Plan pt(transposed ? t : s, dtype_of<T>(), ConvOp::Forward);
  ConvWorkspace tw;
  T* w_t = reinterpret_cast<T*>(ws.data + p.total(ws.threads));
  if (transposed) {
    // w_t (in_channels, cout_g, kh, kw): the weights with both kernel axes flipped.
    const int64_t taps = s.kernel_h * s.kernel_w;
    for (int64_t g = 0; g < s.groups; ++g)
      for (int64_t ci = 0; ci < p.cin_g; ++ci)
        for (int64_t co = 0; co < p.cout_g; ++co) {
          const T* src = weight + ((g * p.cout_g + co) * p.cin_g + ci) * taps;
          T* dst = w_t + ((g * p.cin_g + ci) * p.cout_g + co) * taps;
          for (int64_t k = 0; k < taps; ++k) dst[k] = src[taps - 1 - k];
        }
    const int64_t w_bytes = align64(w_numel * static_cast<int64_t>(sizeof(T)));
    tw.data = ws.data + p.total(ws.threads) + w_bytes;
    tw.bytes = ws.bytes - p.total(ws.threads) - w_bytes;
    tw.threads = ws.threads;
    block_direct_weights(t, pt, w_t, buffers<T>(pt, tw, 0), threads);
  }
  const GemmScratch scratch = gemm_scratch<T>(p, ws);
  const int64_t in_numel = s.in_channels * s.height * s.width;
  for_each_image(s.batch, threads, [&](int64_t n, int slot) {
    const ThreadBuffers<T> b = buffers<T>(p, ws, slot);
    T* dx_n = dx == nullptr ? nullptr : dx + n * in_numel;
    T* dw = dweight == nullptr ? nullptr : b.dw;
    T* db = dbias == nullptr ? nullptr : b.db;
    if (sparse) {
      sparse_grad(n, b, dx_n, dw, db);
      return;
    }
    const T* dy_n = dy_of(n, b);
    backward_image<T>(s, p, direct, dy_n, x + n * in_numel, weight, transposed ? nullptr : dx_n, dw, db, b, scratch);
    if (transposed) forward_image<T>(t, pt, true, dy_n, w_t, nullptr, dx_n, buffers<T>(pt, tw, slot), scratch);
  });
  auto reduce = [&](T* out, T* ThreadBuffers<T>::*field, int64_t count) {
    if (out == nullptr) return;
    std::copy(buffers<T>(p, ws, 0).*field, buffers<T>(p, ws, 0).*field + count, out);
    for (int t = 1; t < teams; ++t) {
      const T* part = buffers<T>(p, ws, t).*field;
      for (int64_t i = 0; i < count; ++i) out[i] += part[i];
    }
  };
  reduce(dbias, &ThreadBuffers<T>::db, s.out_channels);
  if (!direct && !sparse) {
    reduce(dweight, &ThreadBuffers<T>::dw, w_numel);
  } else if (dweight != nullptr) {
    // Sum the threads' accumulators into the first, then bring them to dweight's layout.
    T* sum = buffers<T>(p, ws, 0).dw;
    for (int t = 1; t < teams; ++t) {
      const T* part = buffers<T>(p, ws, t).dw;
      for (int64_t i = 0; i < dw_numel; ++i) sum[i] += part[i];
    }
    constexpr int64_t B = kDirectChannelBlock<T>;
    const int64_t spatial = s.kernel_h * s.kernel_w;
    for (int64_t g = 0; g < s.groups; ++g)
      for (int64_t co = 0; co < p.cout_g; ++co) {
        T* dst = dweight + (g * p.cout_g + co) * p.K;
        if (sparse) {  // (out_channels, spatial, cl)
          const T* src = sum + (g * p.cout_g + co) * spatial * p.cl;
          for (int64_t ci = 0; ci < p.cin_g; ++ci)
            for (int64_t k = 0; k < spatial; ++k) dst[ci * spatial + k] = src[k * p.cl + ci];
        } else {  // (groups, dw_ld / B, K, B)
          const T* src = sum + g * p.dw_ld * p.K + co / B * p.K * B + co % B;
          for (int64_t k = 0; k < p.K; ++k) dst[k] = src[k * B];
        }
      }
  }
}

}  // namespace

int64_t conv_workspace_bytes(const ConvShape& s, DType dtype, ConvOp op, int threads) {
  check_shape(s, "conv_workspace_bytes");
  const Plan p(s, dtype, op);
  threads = std::max(1, threads);
  ConvShape t;
  int64_t extra = 0;
  if ((op == ConvOp::Backward || op == ConvOp::PoolBackward) && transposed_direct(s, dtype, t)) extra = transposed_bytes(s, t, dtype, threads);
  return p.total(threads) + extra;
}

template <typename T>
void conv2d_forward(const ConvShape& s, const T* x, const T* weight, const T* bias, T* y, const ConvWorkspace& ws) {
  check_workspace(s, dtype_of<T>(), ConvOp::Forward, ws, "conv2d_forward");
  if (s.batch == 0 || s.out_channels == 0 || s.out_height == 0 || s.out_width == 0) return;
  const Plan p(s, dtype_of<T>(), ConvOp::Forward);
  const GemmScratch scratch = gemm_scratch<T>(p, ws);
  const bool direct = use_direct(s, p, ws);
  if (direct) block_direct_weights(s, p, weight, buffers<T>(p, ws, 0), usable_threads(ws));
  const int64_t in_numel = s.in_channels * s.height * s.width, out_numel = s.out_channels * p.P;
  if (direct && p.winograd) {
    // Winograd on groups of wimages images (an image with an Inf or NaN sends its group image
    // by image through forward_image, which runs it direct).
    for_each_image_group(s.batch, usable_threads(ws), p.wimages, [&](int64_t n, int64_t images, int slot) {
      const ThreadBuffers<T> buf = buffers<T>(p, ws, slot);
      if (winograd_images(s, p, x + n * in_numel, images, buf, winograd_conv_out(s, p, bias, y + n * out_numel)))
        return;
      for (int64_t i = n; i < n + images; ++i)
        forward_image<T>(s, p, direct, x + i * in_numel, weight, bias, y + i * out_numel, buf, scratch);
    });
    return;
  }
  for_each_image(s.batch, usable_threads(ws), [&](int64_t n, int slot) {
    forward_image<T>(s, p, direct, x + n * in_numel, weight, bias, y + n * out_numel, buffers<T>(p, ws, slot), scratch);
  });
}

template <typename T>
void conv2d_backward(const ConvShape& s, const T* dy, const T* x, const T* weight, T* dx, T* dweight, T* dbias,
                     const ConvWorkspace& ws) {
  check_workspace(s, dtype_of<T>(), ConvOp::Backward, ws, "conv2d_backward");
  const Plan p(s, dtype_of<T>(), ConvOp::Backward);
  if (s.batch == 0 || p.P == 0) {  // empty sums
    if (dx != nullptr) std::fill(dx, dx + s.batch * s.in_channels * s.height * s.width, T(0));
    if (dweight != nullptr) std::fill(dweight, dweight + s.out_channels * p.K, T(0));
    if (dbias != nullptr) std::fill(dbias, dbias + s.out_channels, T(0));
    return;
  }
  const int64_t out_numel = s.out_channels * p.P;
  backward_batch<T>(
      s, p, [&](int64_t n, const ThreadBuffers<T>&) { return dy + n * out_numel; },
      [](int64_t, const ThreadBuffers<T>&, T*, T*, T*) {}, x, weight, dx, dweight, dbias, ws);
}

template <typename T>
void conv_relu_pool2d_forward(const ConvShape& s, const T* x, const T* weight, const T* bias, T* y,
                              int64_t* indices, const ConvWorkspace& ws) {
  check_workspace(s, dtype_of<T>(), ConvOp::PoolForward, ws, "conv_relu_pool2d_forward");
  const Plan p(s, dtype_of<T>(), ConvOp::PoolForward);
  const int64_t ph = s.out_height / 2, pw = s.out_width / 2;
  if (s.batch == 0 || s.out_channels == 0 || ph == 0 || pw == 0) return;
  const GemmScratch scratch = gemm_scratch<T>(p, ws);
  const int64_t in_numel = s.in_channels * s.height * s.width, pooled = ph * pw;
  const bool direct = use_direct(s, p, ws);
  if (direct) block_direct_weights(s, p, weight, buffers<T>(p, ws, 0), usable_threads(ws));
  // The AVX2 epilogue computes positions in 32 bits.
  [[maybe_unused]] const bool simd_pool = active_isa() != Isa::Generic && p.P < (int64_t(1) << 31);
  auto image = [&](int64_t n, int slot) {
    const ThreadBuffers<T> buf = buffers<T>(p, ws, slot);
    const T* x_n = x + n * in_numel;
    for (int64_t g = 0; g < s.groups; ++g) {
      const T* x_g = x_n + g * p.cin_g * s.height * s.width;
      const T* w_g = weight + g * p.cout_g * p.K;
      // Pools conv rows [oh0, oh0 + rows) of channel co of this group: row r of it at
      // t + r * row_stride.
      auto pool_rows = [&](int64_t co, const T* t, int64_t row_stride, int64_t oh0, int64_t rows) {
        const int64_t c = g * p.cout_g + co;
        const T b = bias == nullptr ? T(0) : bias[c];
        T* y_c = y + (n * s.out_channels + c) * pooled;
        int64_t* i_c = indices + (n * s.out_channels + c) * pooled;
        for (int64_t r = 0; r < rows; r += 2) {
          const int64_t py = (oh0 + r) / 2, oh = oh0 + r;
          const T* top = t + r * row_stride;
          const T* bottom = top + row_stride;
          int64_t px = 0;
#if defined(FASTRNN_X86)
          if constexpr (std::is_same_v<T, float>) {
            if (simd_pool)
              px = isa_avx2::relu_pool_row(top, bottom, b, pw, oh * s.out_width, s.out_width, y_c + py * pw,
                                           i_c + py * pw);
          }
#endif
          for (; px < pw; ++px) {
            const T v[4] = {top[2 * px] + b, top[2 * px + 1] + b, bottom[2 * px] + b, bottom[2 * px + 1] + b};
            const int64_t at[4] = {oh * s.out_width + 2 * px, oh * s.out_width + 2 * px + 1,
                                   (oh + 1) * s.out_width + 2 * px, (oh + 1) * s.out_width + 2 * px + 1};
            pool_window(v, at, y_c + py * pw + px, i_c + py * pw + px);
          }
        }
      };
      if (direct) {
        direct_group(s, p, g, x_g, buf, [&](int64_t oh0, int64_t rows, int64_t stride) {
          for (int64_t co = 0; co < p.cout_g; ++co) pool_rows(co, buf.dout + co * p.direct_ld, stride, oh0, rows);
        });
        continue;
      }
      for (int64_t oh0 = 0; oh0 < p.rows_c; oh0 += p.block_rows) {
        const int64_t rows = std::min(p.block_rows, p.rows_c - oh0), cols = rows * p.cols_c;
        // tmp (cout_g, rows, cols_c): the conv block, pooled below while in cache. A pointwise
        // conv's input is its own im2col (the plan gives it no col buffer), read in place.
        const T* b_mat = x_g + oh0 * s.width;
        int64_t ldb = s.height * s.width;
        if (!p.pointwise) {
          im2col(s, p.cin_g, x_g, oh0, rows, p.cols_c, buf.col);
          b_mat = buf.col, ldb = cols;
        }
        matmul<T>(false, false, p.cout_g, cols, p.K, w_g, p.K, b_mat, ldb, T(0), buf.tmp, cols, scratch);
        for (int64_t co = 0; co < p.cout_g; ++co) pool_rows(co, buf.tmp + co * cols, p.cols_c, oh0, rows);
      }
    }
  };
  if (direct && p.winograd) {
    // Winograd on groups of wimages images, pooling each tile (a 2x2 window) in the output
    // stage (an image with an Inf or NaN sends its group image by image through image()).
    for_each_image_group(s.batch, usable_threads(ws), p.wimages, [&](int64_t n, int64_t images, int slot) {
      auto out = [&](int64_t i, int64_t g, int64_t k0, int64_t count, const T* m, T* scratch) {
        const int64_t at = ((n + i) * s.out_channels + g * p.cout_g) * pooled;
#if defined(FASTRNN_X86)
        winograd_pool_output<T>(m, p.wkb, p.wm_xi, p.cout_g, bias == nullptr ? nullptr : bias + g * p.cout_g, k0,
                                count, p.wtc, s.out_width, ph, pw, y + at, indices + at, scratch);
#else
        (void)at, (void)k0, (void)count, (void)m, (void)scratch;
#endif
      };
      if (winograd_images(s, p, x + n * in_numel, images, buffers<T>(p, ws, slot), out)) return;
      for (int64_t i = n; i < n + images; ++i) image(i, slot);
    });
    return;
  }
  for_each_image(s.batch, usable_threads(ws), image);
}

template <typename T>
void conv_relu_pool2d_backward(const ConvShape& s, const T* dy, const T* y, const int64_t* indices, const T* x,
                               const T* weight, T* dx, T* dweight, T* dbias, const ConvWorkspace& ws) {
  check_workspace(s, dtype_of<T>(), ConvOp::PoolBackward, ws, "conv_relu_pool2d_backward");
  const Plan p(s, dtype_of<T>(), ConvOp::PoolBackward);
  const int64_t pooled = (s.out_height / 2) * (s.out_width / 2);
  if (s.batch == 0 || p.P == 0) {
    if (dx != nullptr) std::fill(dx, dx + s.batch * s.in_channels * s.height * s.width, T(0));
    if (dweight != nullptr) std::fill(dweight, dweight + s.out_channels * p.K, T(0));
    if (dbias != nullptr) std::fill(dbias, dbias + s.out_channels, T(0));
    return;
  }
  // dconv: the pooled gradient at each window's maximum where the ReLU passed it, else 0.
  // torch's ReLU backward zeroes the gradient where its output is <= 0, so a NaN passes it.
  auto dconv_of = [&](int64_t n, const ThreadBuffers<T>& b) -> const T* {
    std::fill(b.dconv, b.dconv + s.out_channels * p.P, T(0));
    for (int64_t c = 0; c < s.out_channels; ++c) {
      const int64_t base = (n * s.out_channels + c) * pooled;
      T* plane = b.dconv + c * p.P;
      for (int64_t i = 0; i < pooled; ++i)
        if (!(y[base + i] <= T(0))) plane[indices[base + i]] += dy[base + i];
    }
    return b.dconv;
  };
  auto sparse_grad = [&](int64_t n, const ThreadBuffers<T>& b, T* dx_n, T* dw, T* db) {
    const int64_t at = n * s.out_channels * pooled;
    sparse_backward_image(s, p, dy + at, y + at, indices + at, x + n * s.in_channels * s.height * s.width, dx_n,
                          dw, db, b);
  };
  // torch's backward is dense: the zeros of dconv times an Inf or NaN of x (in dw) or of the
  // weights (in dx) make NaN, which sums over the entries alone would miss.
  const int64_t x_numel = s.batch * s.in_channels * s.height * s.width;
  const bool dense = p.sparse && ((dweight != nullptr && !all_finite(x, x_numel)) ||
                                  (dx != nullptr && !all_finite(weight, s.out_channels * p.K)));
  backward_batch<T>(s, p, dconv_of, sparse_grad, x, weight, dx, dweight, dbias, ws, dense);
}

#define FASTRNN_INSTANTIATE_CONV(T)                                                                               \
  template void conv2d_forward<T>(const ConvShape&, const T*, const T*, const T*, T*, const ConvWorkspace&);     \
  template void conv2d_backward<T>(const ConvShape&, const T*, const T*, const T*, T*, T*, T*,                  \
                                   const ConvWorkspace&);                                                      \
  template void conv_relu_pool2d_forward<T>(const ConvShape&, const T*, const T*, const T*, T*, int64_t*,        \
                                            const ConvWorkspace&);                                              \
  template void conv_relu_pool2d_backward<T>(const ConvShape&, const T*, const T*, const int64_t*, const T*,     \
                                             const T*, T*, T*, T*, const ConvWorkspace&);
FASTRNN_INSTANTIATE_CONV(float)
FASTRNN_INSTANTIATE_CONV(double)

}  // namespace fastrnn::cpu
