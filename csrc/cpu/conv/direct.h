#pragma once
// The direct kernels' operands (plan.h: direct, shifted planes, channel vectors): the weights
// blocked once per call, one group's input zero-padded or in shifted planes, and the blocked
// direct forward of one group. Private to each translation unit (see cells/activations.h).
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common/isa.h"
#include "cpu/conv/im2col.h"
#include "cpu/conv/isa_entries.h"
#include "cpu/conv/plan.h"
#include "cpu/conv/winograd.h"
#include "cpu/conv/workspace.h"

namespace fastrnn::cpu {
namespace {

// The direct kernel runs whole images per thread; with fewer images than threads the GEMM
// path, which splits one image's product across the threads, keeps them all busy.
inline bool use_direct(const ConvShape& s, const ConvPlan& p, const ConvWorkspace& ws) {
  return p.direct && active_isa() != Isa::Generic && s.batch >= usable_threads(ws);
}

// weight (out_channels, taps) as the direct kernel reads it, once per call: per group, blocks
// of 4 channels (ceil(group_out_channels / 4), taps, 4), or channels-last (taps,
// group_out_channels) for channel_vectors; and for winograd also transformed. Output channels
// split over the threads (a serial pass was a few percent of a Winograd forward).
template <typename T>
void block_direct_weights(const ConvShape& s, const ConvPlan& p, const T* weight, const ThreadBuffers<T>& buf,
                          int threads) {
  const int64_t co4 = ConvPlan::round_up4(p.group_out_channels), per_xi = p.group_in_channels * co4;
  if (p.winograd && co4 > p.group_out_channels)  // padding channels
    std::fill(buf.transformed_weights, buf.transformed_weights + s.groups * 16 * per_xi, T(0));
  const int64_t channels = s.groups * p.group_out_channels;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && channels * p.taps >= 4096)
  for (int64_t c = 0; c < channels; ++c) {
    const int64_t g = c / p.group_out_channels, co = c % p.group_out_channels;
    const T* w = weight + c * p.taps;
    T* wt_g = buf.direct_weights + g * p.taps * co4;
    if (p.channel_vectors) {
      for (int64_t t = 0; t < p.taps; ++t) wt_g[t * p.group_out_channels + co] = w[t];
    } else {
      T* out = wt_g + co / 4 * p.taps * 4 + co % 4;
      for (int64_t t = 0; t < p.taps; ++t) out[t * 4] = w[t];
    }
    if (!p.winograd) continue;
    transform_winograd_weights(p, w, g, co, buf.transformed_weights);
  }
}

// The direct kernels' operands of one group: x_g (cin_g, H, W) zero-padded into buf.padded_input
// (group_in_channels, padded_height, padded_width), and each tap's offset in it into buf.offsets.
template <typename T>
void pad_group(const ConvShape& s, const ConvPlan& p, const T* x_g, const ThreadBuffers<T>& buf) {
  // Row by row, zeros only where no input lands (clearing the whole copy first wrote it twice:
  // ResNet 64->64 56x56, 0.8 MiB per image).
  const int64_t plane = p.padded_height * p.padded_width;
  const ValidRange v = valid_columns(-s.pad_w, 1, s.width, p.padded_width);
  for (int64_t ci = 0; ci < p.group_in_channels; ++ci) {
    for (int64_t r = 0; r < p.padded_height; ++r) {
      T* row = buf.padded_input + ci * plane + r * p.padded_width;
      const int64_t ih = r - s.pad_h;
      if (ih < 0 || ih >= s.height || v.hi <= v.lo) {
        std::fill(row, row + p.padded_width, T(0));
        continue;
      }
      const T* src = x_g + (ci * s.height + ih) * s.width - s.pad_w;
      for (int64_t j = 0; j < v.lo; ++j) row[j] = T(0);
      std::memcpy(row + v.lo, src + v.lo, (v.hi - v.lo) * sizeof(T));  // libc's, at the CPU's vector width
      for (int64_t j = v.hi; j < p.padded_width; ++j) row[j] = T(0);
    }
  }
  std::fill(buf.padded_input + p.group_in_channels * plane,
            buf.padded_input + p.group_in_channels * plane + s.pad_w + kDirectSlack, T(0));
  for (int64_t ci = 0, t = 0; ci < p.group_in_channels; ++ci) {
    for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
      for (int64_t kw = 0; kw < s.kernel_w; ++kw, ++t) {
        buf.offsets[t] = ci * plane + kh * s.dilation_h * p.padded_width + kw * s.dilation_w;
      }
    }
  }
}

// The shifted planes of one group (plan.h: shifted) into buf.padded_input: plane kw of input channel ci
// at (kw * cin_g + ci) * shifted_plane, row r column ow = x_g[ci][r - pad_h][ow + kw * dilation_w -
// pad_w] (zero outside x); tap (ci, kh, kw) at offset (kw * cin_g + ci) * shifted_plane + kh *
// dilation_h * conv_cols.
template <typename T>
void pad_shifted(const ConvShape& s, const ConvPlan& p, const T* x_g, const ThreadBuffers<T>& buf) {
  const int64_t cols = p.conv_cols;
  for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
    const int64_t shift = kw * s.dilation_w - s.pad_w;  // input column of output column 0
    const int64_t lo = std::clamp<int64_t>(-shift, 0, cols), hi = std::clamp<int64_t>(s.width - shift, lo, cols);
    for (int64_t ci = 0; ci < p.group_in_channels; ++ci) {
      T* plane = buf.padded_input + (kw * p.group_in_channels + ci) * p.shifted_plane;
      for (int64_t r = 0; r < p.padded_height; ++r) {
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
  const int64_t end = s.kernel_w * p.group_in_channels * p.shifted_plane;
  std::fill(buf.padded_input + end, buf.padded_input + end + kDirectSlack, T(0));
  for (int64_t ci = 0, t = 0; ci < p.group_in_channels; ++ci)
    for (int64_t kh = 0; kh < s.kernel_h; ++kh)
      for (int64_t kw = 0; kw < s.kernel_w; ++kw, ++t)
        buf.offsets[t] = (kw * p.group_in_channels + ci) * p.shifted_plane + kh * s.dilation_h * cols;
}

// The direct forward of one group: pads its input x_g; then runs the kernel block by block on
// output rows [oh0, oh0 + rows), leaving channel co's row r at buf.direct_out + co * direct_channel_stride + r *
// stride (stride = conv_cols with row tiles, else padded_width), and epilogue(oh0, rows, stride) consumes them.
template <typename T, typename Epilogue>
void direct_group(const ConvShape& s, const ConvPlan& p, int64_t g, const T* x_g, const ThreadBuffers<T>& buf,
                  const Epilogue& epilogue) {
  pad_group(s, p, x_g, buf);
  DirectConvArgs a;
  a.offsets = buf.offsets, a.taps = p.taps, a.channels = p.group_out_channels, a.ld = p.direct_channel_stride,
  a.slice_taps = p.slice_taps;
  for (int64_t oh0 = 0; oh0 < p.conv_rows; oh0 += p.direct_rows) {
    const int64_t rows = std::min(p.direct_rows, p.conv_rows - oh0);
    [[maybe_unused]] const T* wt = buf.direct_weights + g * p.taps * ConvPlan::round_up4(p.group_out_channels);
#if defined(FASTRNN_X86)
    if (p.row_tiles) {
      a.rows = rows, a.width = p.conv_cols, a.wp = p.padded_width;
      conv_direct_rows<T>(a, buf.padded_input + oh0 * p.padded_width, wt, static_cast<const T*>(nullptr),
                          buf.direct_out);
    } else {
      a.length = (rows - 1) * p.padded_width + p.conv_cols;
      conv_direct<T>(a, buf.padded_input + oh0 * p.padded_width, wt, static_cast<const T*>(nullptr), buf.direct_out);
    }
#endif
    epilogue(oh0, rows, p.row_tiles ? p.conv_cols : p.padded_width);
  }
}

}  // namespace
}  // namespace fastrnn::cpu
