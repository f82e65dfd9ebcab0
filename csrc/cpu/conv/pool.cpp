// The fused block conv -> ReLU -> 2x2 max-pool (cpu/conv.h): the forward pools each conv block
// while it is in cache (the direct block, the GEMM's block, or Winograd's output stage), and
// the backward runs the conv's gradient from the pooled one, sparse where the plan takes it.
#include <limits>
#include <type_traits>

#include "cpu/conv/backward.h"
#include "cpu/conv/call.h"

namespace fastrnn::cpu {
namespace {

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

// y, indices = maxpool2x2(relu(conv(x, weight) + bias)) over the batch (a checked call).
template <typename T>
void run_pool_forward(const ConvShape& s, const ConvWorkspace& ws, const ConvArgs& a) {
  const T *x = a.x.data_as<T>(), *weight = a.weight.data_as<T>(), *bias = data_or_null<T>(a.bias);
  T* y = a.y.data_as<T>();
  int64_t* indices = a.indices.data_as<int64_t>();
  const ConvPlan p = choose_algorithm(s, dtype_of<T>(), ConvOp::PoolForward);
  const int64_t ph = s.out_height / 2, pw = s.out_width / 2;
  if (s.batch == 0 || s.out_channels == 0 || ph == 0 || pw == 0) return;
  const GemmScratch scratch = gemm_scratch(p, ws);
  const int64_t in_numel = s.in_channels * s.height * s.width, pooled = ph * pw;
  const bool direct = use_direct(s, p, ws);
  if (direct) block_direct_weights(s, p, weight, buffers<T>(p, ws, 0), usable_threads(ws));
  // The AVX2 epilogue computes positions in 32 bits.
  [[maybe_unused]] const bool simd_pool = active_isa() != Isa::Generic && p.out_pixels < (int64_t(1) << 31);
  auto image = [&](int64_t n, int slot) {
    const ThreadBuffers<T> buf = buffers<T>(p, ws, slot);
    const T* x_n = x + n * in_numel;
    for (int64_t g = 0; g < s.groups; ++g) {
      const T* x_g = x_n + g * p.group_in_channels * s.height * s.width;
      const T* w_g = weight + g * p.group_out_channels * p.taps;
      // Pools conv rows [oh0, oh0 + rows) of channel co of this group: row r of it at
      // t + r * row_stride.
      auto pool_rows = [&](int64_t co, const T* t, int64_t row_stride, int64_t oh0, int64_t rows) {
        const int64_t c = g * p.group_out_channels + co;
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
              px = relu_pool_row(top, bottom, b, pw, oh * s.out_width, s.out_width, y_c + py * pw, i_c + py * pw);
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
          for (int64_t co = 0; co < p.group_out_channels; ++co)
            pool_rows(co, buf.direct_out + co * p.direct_channel_stride, stride, oh0, rows);
        });
        continue;
      }
      for (int64_t oh0 = 0; oh0 < p.conv_rows; oh0 += p.im2col_rows) {
        const int64_t rows = std::min(p.im2col_rows, p.conv_rows - oh0), cols = rows * p.conv_cols;
        // conv_block (group_out_channels, rows, conv_cols): the conv block, pooled below while in cache. A pointwise
        // conv's input is its own im2col (the plan gives it no col buffer), read in place.
        const T* b_mat = x_g + oh0 * s.width;
        int64_t ldb = s.height * s.width;
        if (!p.pointwise) {
          im2col(s, p.group_in_channels, x_g, oh0, rows, p.conv_cols, buf.col);
          b_mat = buf.col, ldb = cols;
        }
        matmul<T>(false, false, p.group_out_channels, cols, p.taps, w_g, p.taps, b_mat, ldb, T(0), buf.conv_block, cols,
                  scratch);
        for (int64_t co = 0; co < p.group_out_channels; ++co)
          pool_rows(co, buf.conv_block + co * cols, p.conv_cols, oh0, rows);
      }
    }
  };
  if (direct && p.winograd) {
    // Winograd on groups of winograd_batch images, pooling each tile (a 2x2 window) in the output
    // stage (an image with an Inf or NaN sends its group image by image through image()).
    for_each_image_group(s.batch, usable_threads(ws), p.winograd_batch, [&](int64_t n, int64_t images, int slot) {
      auto out = [&](int64_t i, int64_t g, int64_t k0, int64_t count, const T* m, T* scratch) {
        const int64_t at = ((n + i) * s.out_channels + g * p.group_out_channels) * pooled;
#if defined(FASTRNN_X86)
        winograd_pool_output<T>(m, p.winograd_block_tiles, p.winograd_product_stride, p.group_out_channels,
                                bias == nullptr ? nullptr : bias + g * p.group_out_channels, k0, count,
                                p.winograd_tile_cols, s.out_width, ph, pw, y + at, indices + at, scratch);
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

// The fused block's dx, dweight, dbias (those wanted) over the batch (a checked call).
template <typename T>
void run_pool_backward(const ConvShape& s, const ConvWorkspace& ws, const ConvArgs& a) {
  const T *dy = a.dy.data_as<T>(), *y = a.y.data_as<T>(), *x = a.x.data_as<T>(), *weight = a.weight.data_as<T>();
  const int64_t* indices = a.indices.data_as<int64_t>();
  T *dx = data_or_null<T>(a.dx), *dweight = data_or_null<T>(a.dweight), *dbias = data_or_null<T>(a.dbias);
  const ConvPlan p = choose_algorithm(s, dtype_of<T>(), ConvOp::PoolBackward);
  const int64_t pooled = (s.out_height / 2) * (s.out_width / 2);
  if (s.batch == 0 || p.out_pixels == 0) {
    if (dx != nullptr) std::fill(dx, dx + s.batch * s.in_channels * s.height * s.width, T(0));
    if (dweight != nullptr) std::fill(dweight, dweight + s.out_channels * p.taps, T(0));
    if (dbias != nullptr) std::fill(dbias, dbias + s.out_channels, T(0));
    return;
  }
  // dconv: the pooled gradient at each window's maximum where the ReLU passed it, else 0.
  // torch's ReLU backward zeroes the gradient where its output is <= 0, so a NaN passes it.
  auto dconv_of = [&](int64_t n, const ThreadBuffers<T>& b) -> const T* {
    std::fill(b.dconv, b.dconv + s.out_channels * p.out_pixels, T(0));
    for (int64_t c = 0; c < s.out_channels; ++c) {
      const int64_t base = (n * s.out_channels + c) * pooled;
      T* plane = b.dconv + c * p.out_pixels;
      for (int64_t i = 0; i < pooled; ++i)
        if (!(y[base + i] <= T(0))) plane[indices[base + i]] += dy[base + i];
    }
    return b.dconv;
  };
  auto sparse_grad = [&](int64_t n, const ThreadBuffers<T>& b, T* dx_n, T* dw, T* db) {
    const int64_t at = n * s.out_channels * pooled;
    sparse_backward_image(s, p, dy + at, y + at, indices + at, x + n * s.in_channels * s.height * s.width, dx_n, dw, db,
                          b);
  };
  // torch's backward is dense: the zeros of dconv times an Inf or NaN of x (in dw) or of the
  // weights (in dx) make NaN, which sums over the entries alone would miss.
  const int64_t x_numel = s.batch * s.in_channels * s.height * s.width;
  const bool dense = p.sparse && ((dweight != nullptr && !all_finite(x, x_numel)) ||
                                  (dx != nullptr && !all_finite(weight, s.out_channels * p.taps)));
  backward_batch<T>(s, p, dconv_of, sparse_grad, x, weight, dx, dweight, dbias, ws, dense);
}

}  // namespace

void conv_relu_pool2d_forward(const ConvArgs& a) {
  const ConvCall c = check_conv_call("conv_relu_pool2d_forward", ConvOp::PoolForward, a);
  FASTRNN_DISPATCH_FLOATING(a.x.dtype, "conv_relu_pool2d_forward",
                            [&] { run_pool_forward<scalar_t>(c.shape, c.workspace, a); });
}

void conv_relu_pool2d_backward(const ConvArgs& a) {
  const ConvCall c = check_conv_call("conv_relu_pool2d_backward", ConvOp::PoolBackward, a);
  FASTRNN_DISPATCH_FLOATING(a.x.dtype, "conv_relu_pool2d_backward",
                            [&] { run_pool_backward<scalar_t>(c.shape, c.workspace, a); });
}

}  // namespace fastrnn::cpu
