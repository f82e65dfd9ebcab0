#pragma once
// The fused block's sparse gradients (plan.h: sparse): the conv's gradient is nonzero at one
// position per pooling window at most, so the weight and input gradients run over those
// entries alone. Private to each translation unit (see cells/activations.h).
#include <algorithm>
#include <cstdint>

#include "cpu/conv/im2col.h"
#include "cpu/conv/isa_entries.h"
#include "cpu/conv/plan.h"
#include "cpu/conv/workspace.h"

namespace fastrnn::cpu {
namespace {

// The entries of the conv's gradient of group g of one image from its pooled gradient dy_n (and
// the forward's y_n, indices_n; each (out_channels, out_h / 2, out_w / 2)): per output channel
// co of the group, the windows the ReLU passed (not y <= 0: NaN too), entry e < buf.counts[co] at
// co * pooled + e as its maximum's padded position oh * padded_width + ow (buf.positions) and dy
// (buf.values). Branch-free: the window's corner gives oh and ow (the index is one of its four
// positions; a 64-bit division per entry cost more than the sparse kernels), and every window
// is written, the next overwriting it where the ReLU stopped it.
template <typename T>
void sparse_entries(const ConvShape& s, const ConvPlan& p, int64_t g, const T* dy_n, const T* y_n,
                    const int64_t* indices_n, const ThreadBuffers<T>& buf) {
  const int64_t pw = s.out_width / 2, ph = s.out_height / 2;
  for (int64_t co = 0; co < p.group_out_channels; ++co) {
    const int64_t c = g * p.group_out_channels + co;
    const T *dy_c = dy_n + c * p.pooled_pixels, *y_c = y_n + c * p.pooled_pixels;
    const int64_t* i_c = indices_n + c * p.pooled_pixels;
    int64_t* positions = buf.positions + co * p.pooled_pixels;
    T* values = buf.values + co * p.pooled_pixels;
    int64_t count = 0;
    for (int64_t py = 0, i = 0; py < ph; ++py) {
      for (int64_t px = 0; px < pw; ++px, ++i) {
        const int64_t d = i_c[i] - (2 * py * s.out_width + 2 * px);
        const int64_t bottom = -((s.out_width - 1 - d) >> 63);  // d >= out_width: the window's bottom row
        positions[count] = (2 * py + bottom) * p.padded_width + 2 * px + d - bottom * s.out_width;
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
void sparse_input_grad_group(const ConvShape& s, const ConvPlan& p, int64_t g, T* dx_n, const ThreadBuffers<T>& buf) {
  const int64_t positions = p.padded_height * p.padded_width, spatial = s.kernel_h * s.kernel_w;
  const int64_t lanes = 32 / static_cast<int64_t>(sizeof(T));
  int64_t* starts = buf.starts;
  std::fill(starts, starts + positions + 1, int64_t(0));
  for (int64_t co = 0; co < p.group_out_channels; ++co)
    for (int64_t e = co * p.pooled_pixels; e < co * p.pooled_pixels + buf.counts[co]; ++e)
      ++starts[buf.positions[e] + 1];
  for (int64_t q = 0; q < positions; ++q) starts[q + 1] += starts[q];
  // Placing an entry of position q at starts[q]++ leaves starts[q] at q's end, q + 1's start.
  for (int64_t co = 0; co < p.group_out_channels; ++co) {
    const int64_t weight_at = (g * p.group_out_channels + co) * spatial * p.padded_in_channels;
    for (int64_t e = co * p.pooled_pixels; e < co * p.pooled_pixels + buf.counts[co]; ++e) {
      const int64_t k = starts[buf.positions[e]]++;
      buf.weight_at[k] = weight_at;
      buf.entry_values[k] = buf.values[e];
    }
  }
  for (int64_t q = positions; q > 0; --q) starts[q] = starts[q - 1];
  starts[0] = 0;
  std::fill(buf.dx_cl, buf.dx_cl + (positions + s.pad_w + 1) * p.padded_in_channels, T(0));
  SparseInputGradArgs a;
  a.vector_offsets = buf.vector_offsets, a.vectors = spatial * p.padded_in_channels / lanes,
  a.cl = p.padded_in_channels;
  a.starts = starts, a.positions = positions, a.weight_at = buf.weight_at;
#if defined(FASTRNN_X86)
  conv_sparse_input_grad<T>(a, buf.entry_values, buf.weight_cl, buf.dx_cl);
#endif
  // Input (ih, iw) sits at padded (ih + pad_h, iw + pad_w); columns past padded_width and rows past padded_height
  // are beyond every tap's reach (wrapped taps land in the left padding, never there).
  const int64_t plane = s.height * s.width;
  T* dx_g = dx_n + g * p.group_in_channels * plane;
  for (int64_t ci = 0; ci < p.group_in_channels; ++ci) {
    for (int64_t ih = 0; ih < s.height; ++ih) {
      T* dst = dx_g + ci * plane + ih * s.width;
      const int64_t r = ih + s.pad_h;
      const int64_t inside =
          r < p.padded_height ? std::max<int64_t>(0, std::min(s.width, p.padded_width - s.pad_w)) : 0;
      for (int64_t iw = 0; iw < inside; ++iw)
        dst[iw] = buf.dx_cl[(r * p.padded_width + s.pad_w + iw) * p.padded_in_channels + ci];
      for (int64_t iw = inside; iw < s.width; ++iw) dst[iw] = T(0);
    }
  }
}

// The fused block's gradients of one image: the conv's dy is nonzero only at the maximum of a
// window the ReLU passed, so per output channel the weight gradient sums over those entries
// alone (conv/kernels.h, 3.), and the input gradient adds each conv position's entries, times
// their channels' weights, into its kernel_h x kernel_w input neighbourhood (conv/kernels.h, 4.;
// buf.weight_cl holds the weights channels-last). dw is (out_channels, kernel_h * kernel_w, padded_in_channels); dw
// and db accumulate (+=); dx_n (in_channels, H, W) is overwritten.
template <typename T>
void sparse_backward_image(const ConvShape& s, const ConvPlan& p, const T* dy_n, const T* y_n, const int64_t* indices_n,
                           const T* x_n, T* dx_n, T* dw, T* db, const ThreadBuffers<T>& buf) {
  const int64_t lanes = 32 / static_cast<int64_t>(sizeof(T)), vectors_per_tap = p.padded_in_channels / lanes;
  const int64_t spatial = s.kernel_h * s.kernel_w, vectors = spatial * vectors_per_tap;
  for (int64_t kh = 0, v = 0; kh < s.kernel_h; ++kh)
    for (int64_t kw = 0; kw < s.kernel_w; ++kw)
      for (int64_t j = 0; j < vectors_per_tap; ++j, ++v)
        buf.vector_offsets[v] =
            (kh * s.dilation_h * p.padded_width + kw * s.dilation_w) * p.padded_in_channels + j * lanes;
  const ValidRange cols = valid_columns(-s.pad_w, 1, s.width, p.padded_width);
  for (int64_t g = 0; g < s.groups; ++g) {
    if (dw != nullptr) {
      // x_cl (padded_height * padded_width + pad_w + 1, padded_in_channels): the group's input padded as pad_group
      // does, channels last.
      std::fill(buf.input_cl, buf.input_cl + (p.padded_height * p.padded_width + s.pad_w + 1) * p.padded_in_channels,
                T(0));
      const T* x_g = x_n + g * p.group_in_channels * s.height * s.width;
      for (int64_t r = 0; r < p.padded_height; ++r) {
        const int64_t ih = r - s.pad_h;
        if (ih < 0 || ih >= s.height) continue;
        for (int64_t c = cols.lo; c < cols.hi; ++c) {
          T* dst = buf.input_cl + (r * p.padded_width + c) * p.padded_in_channels;
          const T* src = x_g + ih * s.width + c - s.pad_w;
          for (int64_t ci = 0; ci < p.group_in_channels; ++ci) dst[ci] = src[ci * s.height * s.width];
        }
      }
    }
    sparse_entries(s, p, g, dy_n, y_n, indices_n, buf);
    for (int64_t co = 0; co < p.group_out_channels; ++co) {
      const int64_t c = g * p.group_out_channels + co, count = buf.counts[co];
      const int64_t* positions = buf.positions + co * p.pooled_pixels;
      const T* values = buf.values + co * p.pooled_pixels;
      if (db != nullptr) {
        T sum = T(0);
        for (int64_t e = 0; e < count; ++e) sum += values[e];
        db[c] += sum;
      }
#if defined(FASTRNN_X86)
      if (dw != nullptr)
        conv_sparse_weight_grad<T>(buf.vector_offsets, vectors, p.padded_in_channels, positions, values, count,
                                   buf.input_cl, dw + c * spatial * p.padded_in_channels);
#endif
    }
    if (dx_n != nullptr) sparse_input_grad_group(s, p, g, dx_n, buf);
  }
}

}  // namespace
}  // namespace fastrnn::cpu
