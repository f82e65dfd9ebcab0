#pragma once
// One image's conv forward, by whichever algorithm the plan chose (plan.h). Used by the plain
// forward and, for the transposed conv, by the input gradient. Private to each translation
// unit (see cells/activations.h).
#include <cstdint>

#include "cpu/conv/direct.h"
#include "cpu/conv/im2col.h"
#include "cpu/conv/winograd.h"

namespace fastrnn::cpu {
namespace {

// One image's forward: y_n (out_channels, out_h, out_w) = conv(x_n) + bias.
template <typename T>
void forward_image(const ConvShape& s, const ConvPlan& p, bool direct, const T* x_n, const T* weight, const T* bias,
                   T* y_n, const ThreadBuffers<T>& buf, const GemmScratch& scratch) {
  if (direct && p.winograd && winograd_images(s, p, x_n, 1, buf, winograd_conv_out(s, p, bias, y_n))) return;
  for (int64_t g = 0; g < s.groups; ++g) {
    const T* x_g = x_n + g * p.group_in_channels * s.height * s.width;
    const T* w_g = weight + g * p.group_out_channels * p.taps;
    T* y_g = y_n + g * p.group_out_channels * p.out_pixels;
    if (direct && p.shifted) {
      pad_shifted(s, p, x_g, buf);
      DirectConvArgs a;
      a.offsets = buf.offsets, a.taps = p.taps, a.channels = p.group_out_channels, a.ld = p.out_pixels,
      a.slice_taps = p.slice_taps;
      a.length = p.out_pixels;
#if defined(FASTRNN_X86)
      conv_direct<T>(a, buf.padded_input, buf.direct_weights + g * p.taps * ConvPlan::round_up4(p.group_out_channels),
                     bias == nullptr ? nullptr : bias + g * p.group_out_channels, y_g);
#endif
      continue;
    }
    if (direct && p.channel_vectors) {
      pad_group(s, p, x_g, buf);
      DirectChannelArgs a;
      a.offsets = buf.offsets, a.taps = p.taps, a.channels = p.group_out_channels;
      a.positions = p.out_pixels, a.width = s.out_width, a.wp = p.padded_width, a.ld = p.out_pixels;
#if defined(FASTRNN_X86)
      conv_direct_channels<T>(a, buf.padded_input,
                              buf.direct_weights + g * p.taps * ConvPlan::round_up4(p.group_out_channels),
                              bias == nullptr ? nullptr : bias + g * p.group_out_channels, buf.direct_out, y_g);
#endif
      continue;
    }
    if (direct && p.row_tiles) {
      pad_group(s, p, x_g, buf);
      DirectConvArgs a;
      a.offsets = buf.offsets, a.taps = p.taps, a.channels = p.group_out_channels, a.ld = p.out_pixels,
      a.slice_taps = p.slice_taps;
      a.rows = s.out_height, a.width = s.out_width, a.wp = p.padded_width;
#if defined(FASTRNN_X86)
      conv_direct_rows<T>(a, buf.padded_input,
                          buf.direct_weights + g * p.taps * ConvPlan::round_up4(p.group_out_channels),
                          bias == nullptr ? nullptr : bias + g * p.group_out_channels, y_g);
#endif
      continue;
    }
    if (direct) {
      direct_group(s, p, g, x_g, buf, [&](int64_t oh0, int64_t rows, int64_t stride) {
        for (int64_t co = 0; co < p.group_out_channels; ++co) {
          const T b = bias == nullptr ? T(0) : bias[g * p.group_out_channels + co];
          for (int64_t r = 0; r < rows; ++r) {
            const T* src = buf.direct_out + co * p.direct_channel_stride + r * stride;
            T* dst = y_g + co * p.out_pixels + (oh0 + r) * s.out_width;
#pragma omp simd
            for (int64_t j = 0; j < s.out_width; ++j) dst[j] = src[j] + b;
          }
        }
      });
      continue;
    }
    for (int64_t oh0 = 0; oh0 < p.conv_rows; oh0 += p.im2col_rows) {
      const int64_t rows = std::min(p.im2col_rows, p.conv_rows - oh0), cols = rows * s.out_width;
      const T* b_mat = x_g + oh0 * s.width;
      int64_t ldb = p.out_pixels;
      if (!p.pointwise) {
        im2col(s, p.group_in_channels, x_g, oh0, rows, s.out_width, buf.col);
        b_mat = buf.col, ldb = cols;
      }
      T* c = y_g + oh0 * s.out_width;
      matmul<T>(false, false, p.group_out_channels, cols, p.taps, w_g, p.taps, b_mat, ldb, T(0), c, p.out_pixels,
                scratch);
      if (bias != nullptr) {
        for (int64_t co = 0; co < p.group_out_channels; ++co) {
          const T b = bias[g * p.group_out_channels + co];
          T* row = c + co * p.out_pixels;
#pragma omp simd
          for (int64_t j = 0; j < cols; ++j) row[j] += b;
        }
      }
    }
  }
}

}  // namespace
}  // namespace fastrnn::cpu
