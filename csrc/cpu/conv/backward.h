#pragma once
// The conv's gradients over a batch (backward_batch), for the plain conv and the fused block:
// the weight gradient direct or by GEMM, the input gradient as the direct forward of the
// transposed conv or by GEMM and col2im, or the fused block's sparse gradients. Private to
// each translation unit (see cells/activations.h).
#include <algorithm>
#include <cstdint>

#include "cpu/conv/direct.h"
#include "cpu/conv/forward.h"
#include "cpu/conv/im2col.h"
#include "cpu/conv/sparse.h"

namespace fastrnn::cpu {
namespace {

// The direct weight gradient of one image (conv/kernels.h): per group, dy transposed into channel
// blocks (and summed into db on the way), then the kernel over the padded input. dw is blocked
// (groups, dweight_channels / B, taps, B); dw and db accumulate (+=).
template <typename T>
void direct_weight_grad_image(const ConvShape& s, const ConvPlan& p, const T* dy_n, const T* x_n, T* dw, T* db,
                              const ThreadBuffers<T>& buf) {
  constexpr int64_t B = kDirectChannelBlock<T>;
  for (int64_t g = 0; g < s.groups; ++g) {
    const T* dy_g = dy_n + g * p.group_out_channels * p.out_pixels;
    if (p.dot_weight_grad) {
      // Blocks of B channels: within one, channel c's weights are B * taps apart in dw and
      // its taps B apart.
      if (db != nullptr)
        add_row_sums(dy_g, p.group_out_channels, p.out_pixels, p.out_pixels, db + g * p.group_out_channels);
      if (dw == nullptr) continue;
      pad_shifted(s, p, x_n + g * p.group_in_channels * s.height * s.width, buf);
#if defined(FASTRNN_X86)
      for (int64_t c0 = 0; c0 < p.group_out_channels; c0 += B)
        conv_dot_weight_grad<T>(buf.offsets, p.taps, std::min(B, p.group_out_channels - c0), p.out_pixels,
                                buf.padded_input, dy_g + c0 * p.out_pixels, p.out_pixels,
                                dw + g * p.dweight_channels * p.taps + c0 * p.taps, 1, B);
#endif
      continue;
    }
    bool transposed = false;
#if defined(FASTRNN_X86)
    if (active_isa() == Isa::Avx512) {
      // A block is one vector here: 16 x 16 (8 x 8) transposes, then the sums read dy in order.
      transpose_to_blocks<T>(dy_g, p.group_out_channels, p.out_pixels, buf.dy_blocked);
      if (db != nullptr)
        add_row_sums(dy_g, p.group_out_channels, p.out_pixels, p.out_pixels, db + g * p.group_out_channels);
      transposed = true;
    }
#endif
    if (!transposed) {
      for (int64_t co = 0; co < p.dweight_channels; ++co) {
        T* out = buf.dy_blocked + co / B * p.out_pixels * B + co % B;
        if (co >= p.group_out_channels) {
          for (int64_t q = 0; q < p.out_pixels; ++q) out[q * B] = T(0);
          continue;
        }
        const T* row = dy_g + co * p.out_pixels;
        T sum = T(0);
        for (int64_t q = 0; q < p.out_pixels; ++q) out[q * B] = row[q], sum += row[q];
        if (db != nullptr) db[g * p.group_out_channels + co] += sum;
      }
    }
    if (dw == nullptr) continue;
    pad_group(s, p, x_n + g * p.group_in_channels * s.height * s.width, buf);
    DirectWeightGradArgs a;
    a.offsets = buf.offsets, a.taps = p.taps, a.channel_blocks = p.dweight_channels / B;
    a.out_height = s.out_height, a.out_width = s.out_width, a.wp = p.padded_width;
#if defined(FASTRNN_X86)
    conv_direct_weight_grad<T>(a, buf.padded_input, buf.dy_blocked, dw + g * p.dweight_channels * p.taps);
#endif
  }
}

// One image's gradients: dw, db accumulate (+=); dx_n is overwritten. direct: dw and db come
// from direct_weight_grad_image (dw blocked as it writes it).
template <typename T>
void backward_image(const ConvShape& s, const ConvPlan& p, bool direct, const T* dy_n, const T* x_n, const T* weight,
                    T* dx_n, T* dw, T* db, const ThreadBuffers<T>& buf, const GemmScratch& scratch) {
  if (direct && (dw != nullptr || db != nullptr)) {
    direct_weight_grad_image(s, p, dy_n, x_n, dw, db, buf);
    dw = db = nullptr;
  }
  if (dx_n == nullptr && dw == nullptr && db == nullptr) return;
  if (dx_n != nullptr && !p.pointwise) std::fill(dx_n, dx_n + s.in_channels * s.height * s.width, T(0));
  for (int64_t g = 0; g < s.groups; ++g) {
    const T* x_g = x_n + g * p.group_in_channels * s.height * s.width;
    const T* w_g = weight + g * p.group_out_channels * p.taps;
    const T* dy_g = dy_n + g * p.group_out_channels * p.out_pixels;
    T* dx_g = dx_n == nullptr ? nullptr : dx_n + g * p.group_in_channels * s.height * s.width;
    for (int64_t oh0 = 0; oh0 < s.out_height; oh0 += p.im2col_rows) {
      const int64_t rows = std::min(p.im2col_rows, s.out_height - oh0), cols = rows * s.out_width;
      const T* dy_blk = dy_g + oh0 * s.out_width;
      if (dw != nullptr) {
        // dW_g (cout_g, K) += dy_blk (cout_g, cols) . col^T, col (K, cols)
        const T* col = x_g + oh0 * s.width;
        int64_t ldcol = p.out_pixels;
        if (!p.pointwise) {
          im2col(s, p.group_in_channels, x_g, oh0, rows, s.out_width, buf.col);
          col = buf.col, ldcol = cols;
        }
        matmul<T>(false, true, p.group_out_channels, p.taps, cols, dy_blk, p.out_pixels, col, ldcol, T(1),
                  dw + g * p.group_out_channels * p.taps, p.taps, scratch);
      }
      if (db != nullptr) add_row_sums(dy_blk, p.group_out_channels, cols, p.out_pixels, db + g * p.group_out_channels);
      if (dx_g != nullptr) {
        // dcol (K, cols) = W_g^T (K, cout_g) . dy_blk (cout_g, cols), then scattered back.
        if (p.pointwise) {
          matmul<T>(true, false, p.taps, cols, p.group_out_channels, w_g, p.taps, dy_blk, p.out_pixels, T(0),
                    dx_g + oh0 * s.width, p.out_pixels, scratch);
        } else {
          matmul<T>(true, false, p.taps, cols, p.group_out_channels, w_g, p.taps, dy_blk, p.out_pixels, T(0), buf.col,
                    cols, scratch);
          col2im(s, p.group_in_channels, buf.col, oh0, rows, dx_g);
        }
      }
    }
  }
}

// The input gradient of a stride-1 conv is a stride-1 conv too: of dy, with the weights
// flipped in both kernel axes and their channel axes swapped, padded (kernel - 1) * dilation
// - pad at the top/left. Sets t to that conv's shape; false when it does not exist (stride,
// or padding wider than the kernel's reach) or would not take the direct kernel, and for fewer
// than 4 input channels per group (t's output channels: the kernel's 4-channel tile would run
// a quarter full, load-bound; see bench/NOTES.md, conv).
inline bool transposed_direct(const ConvShape& s, DType dtype, ConvShape& t) {
  if (s.stride_h != 1 || s.stride_w != 1 || s.in_channels / s.groups < 4) return false;
  t = s;
  t.in_channels = s.out_channels, t.height = s.out_height, t.width = s.out_width;
  t.out_channels = s.in_channels, t.out_height = s.height, t.out_width = s.width;
  t.pad_h = (s.kernel_h - 1) * s.dilation_h - s.pad_h;
  t.pad_w = (s.kernel_w - 1) * s.dilation_w - s.pad_w;
  return t.pad_h >= 0 && t.pad_w >= 0 && choose_algorithm(t, dtype, ConvOp::Forward).direct;
}

// The backward's workspace where its input gradient is the transposed conv's forward: its own
// (plan p), then the flipped weights (in_channels, group_out_channels, kernel_h, kernel_w) and
// the transposed forward's workspace (plan transposed).
template <typename T>
struct TransposedSpace {
  T* flipped_weights = nullptr;
  ConvWorkspace forward;
  int64_t bytes = 0;
};

template <typename T>
TransposedSpace<T> carve_transposed(const ConvPlan& p, const ConvPlan& transposed, char* base, int threads) {
  Carver c(base);
  c.take<char>(carve_workspace<T>(p, nullptr, threads).bytes);
  TransposedSpace<T> w;
  w.flipped_weights = c.take<T>(p.shape.out_channels * p.taps);
  w.forward.bytes = carve_workspace<T>(transposed, nullptr, threads).bytes;
  w.forward.data = c.take<char>(w.forward.bytes);
  w.forward.threads = threads;
  w.bytes = c.bytes();
  return w;
}

// Bytes of the workspace of `op` on s for `threads` threads.
template <typename T>
int64_t workspace_bytes(const ConvShape& s, ConvOp op, int threads) {
  const ConvPlan p = choose_algorithm(s, dtype_of<T>(), op);
  ConvShape t;
  if ((op == ConvOp::Backward || op == ConvOp::PoolBackward) && transposed_direct(s, dtype_of<T>(), t))
    return carve_transposed<T>(p, choose_algorithm(t, dtype_of<T>(), ConvOp::Forward), nullptr, threads).bytes;
  return carve_workspace<T>(p, nullptr, threads).bytes;
}

// w_t (in_channels, group_out_channels, kernel_h, kernel_w): weight with both kernel axes
// flipped and its channel axes swapped.
template <typename T>
void flip_weights(const ConvShape& s, const ConvPlan& p, const T* weight, T* w_t) {
  const int64_t taps = s.kernel_h * s.kernel_w;
  for (int64_t g = 0; g < s.groups; ++g)
    for (int64_t ci = 0; ci < p.group_in_channels; ++ci)
      for (int64_t co = 0; co < p.group_out_channels; ++co) {
        const T* src = weight + ((g * p.group_out_channels + co) * p.group_in_channels + ci) * taps;
        T* dst = w_t + ((g * p.group_in_channels + ci) * p.group_out_channels + co) * taps;
        for (int64_t k = 0; k < taps; ++k) dst[k] = src[taps - 1 - k];
      }
}

// w_cl (out_channels, kernel_h * kernel_w, padded_in_channels): the weights channels-last, zero
// past group_in_channels, for the sparse input gradient.
template <typename T>
void weights_channels_last(const ConvShape& s, const ConvPlan& p, const T* weight, T* w_cl) {
  const int64_t spatial = s.kernel_h * s.kernel_w, cl = p.padded_in_channels;
  std::fill(w_cl, w_cl + s.out_channels * spatial * cl, T(0));
  for (int64_t c = 0; c < s.out_channels; ++c)
    for (int64_t ci = 0; ci < p.group_in_channels; ++ci)
      for (int64_t k = 0; k < spatial; ++k)
        w_cl[(c * spatial + k) * cl + ci] = weight[(c * p.group_in_channels + ci) * spatial + k];
}

// dweight and dbias: the sums of the `teams` threads' accumulators, brought to dweight's layout
// from the direct kernel's (groups, dweight_channels / B, taps, B) or the sparse one's
// (out_channels, kernel_h * kernel_w, padded_in_channels).
template <typename T>
void reduce_gradients(const ConvShape& s, const ConvPlan& p, const ConvWorkspace& ws, int teams, bool direct,
                      bool sparse, int64_t dw_numel, T* dweight, T* dbias) {
  auto reduce = [&](T* out, T* ThreadBuffers<T>::* field, int64_t count) {
    if (out == nullptr) return;
    std::copy(buffers<T>(p, ws, 0).*field, buffers<T>(p, ws, 0).*field + count, out);
    for (int t = 1; t < teams; ++t) {
      const T* part = buffers<T>(p, ws, t).*field;
      for (int64_t i = 0; i < count; ++i) out[i] += part[i];
    }
  };
  reduce(dbias, &ThreadBuffers<T>::dbias, s.out_channels);
  if (!direct && !sparse) {
    reduce(dweight, &ThreadBuffers<T>::dweight, s.out_channels * p.taps);
    return;
  }
  if (dweight == nullptr) return;
  // Sum the threads' accumulators into the first, then bring them to dweight's layout.
  T* sum = buffers<T>(p, ws, 0).dweight;
  for (int t = 1; t < teams; ++t) {
    const T* part = buffers<T>(p, ws, t).dweight;
    for (int64_t i = 0; i < dw_numel; ++i) sum[i] += part[i];
  }
  constexpr int64_t B = kDirectChannelBlock<T>;
  const int64_t spatial = s.kernel_h * s.kernel_w, cl = p.padded_in_channels;
  for (int64_t g = 0; g < s.groups; ++g)
    for (int64_t co = 0; co < p.group_out_channels; ++co) {
      T* dst = dweight + (g * p.group_out_channels + co) * p.taps;
      if (sparse) {
        const T* src = sum + (g * p.group_out_channels + co) * spatial * cl;
        for (int64_t ci = 0; ci < p.group_in_channels; ++ci)
          for (int64_t k = 0; k < spatial; ++k) dst[ci * spatial + k] = src[k * cl + ci];
      } else {
        const T* src = sum + g * p.dweight_channels * p.taps + co / B * p.taps * B + co % B;
        for (int64_t k = 0; k < p.taps; ++k) dst[k] = src[k * B];
      }
    }
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
void backward_batch(const ConvShape& s, const ConvPlan& p, const DyOf& dy_of, const SparseGrad& sparse_grad, const T* x,
                    const T* weight, T* dx, T* dweight, T* dbias, const ConvWorkspace& ws, bool dense = false) {
  const int threads = usable_threads(ws);
  const int teams = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, s.batch)));
  const bool simd = active_isa() != Isa::Generic && s.batch >= threads;
  const bool sparse = p.sparse && simd && !dense;
  const bool direct = p.direct && simd && !sparse;
  const int64_t w_numel = s.out_channels * p.taps;
  const int64_t dw_numel = sparse   ? s.out_channels * s.kernel_h * s.kernel_w * p.padded_in_channels
                           : direct ? s.groups * p.dweight_channels * p.taps
                                    : w_numel;
  for (int t = 0; t < teams; ++t) {
    const ThreadBuffers<T> b = buffers<T>(p, ws, t);
    if (dweight != nullptr) std::fill(b.dweight, b.dweight + dw_numel, T(0));
    if (dbias != nullptr) std::fill(b.dbias, b.dbias + s.out_channels, T(0));
  }
  if (sparse && dx != nullptr) weights_channels_last(s, p, weight, buffers<T>(p, ws, 0).weight_cl);
  // The transposed conv multiplies its zero padding by every tap too: an Inf or NaN weight would
  // make NaN at inputs no output reaches, where torch's input gradient (and the GEMM's) has none.
  ConvShape t;
  const bool transposed =
      dx != nullptr && simd && !sparse && transposed_direct(s, dtype_of<T>(), t) && all_finite(weight, w_numel);
  const ConvPlan pt = choose_algorithm(transposed ? t : s, dtype_of<T>(), ConvOp::Forward);
  const TransposedSpace<T> space = carve_transposed<T>(p, pt, ws.data, ws.threads);
  T* w_t = space.flipped_weights;
  const ConvWorkspace& tw = space.forward;
  if (transposed) {
    flip_weights(s, p, weight, w_t);
    block_direct_weights(t, pt, w_t, buffers<T>(pt, tw, 0), threads);
  }
  const GemmScratch scratch = gemm_scratch(p, ws);
  const int64_t in_numel = s.in_channels * s.height * s.width;
  for_each_image(s.batch, threads, [&](int64_t n, int slot) {
    const ThreadBuffers<T> b = buffers<T>(p, ws, slot);
    T* dx_n = dx == nullptr ? nullptr : dx + n * in_numel;
    T* dw = dweight == nullptr ? nullptr : b.dweight;
    T* db = dbias == nullptr ? nullptr : b.dbias;
    if (sparse) {
      sparse_grad(n, b, dx_n, dw, db);
      return;
    }
    const T* dy_n = dy_of(n, b);
    backward_image<T>(s, p, direct, dy_n, x + n * in_numel, weight, transposed ? nullptr : dx_n, dw, db, b, scratch);
    if (transposed) forward_image<T>(t, pt, true, dy_n, w_t, nullptr, dx_n, buffers<T>(pt, tw, slot), scratch);
  });
  reduce_gradients(s, p, ws, teams, direct, sparse, dw_numel, dweight, dbias);
}

}  // namespace
}  // namespace fastrnn::cpu
