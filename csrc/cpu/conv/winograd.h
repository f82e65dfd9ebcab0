#pragma once
// Winograd F(2x2, 3x3) on top of the direct kernel (plan.h: winograd): the forward of a few
// images, and the plain forward's output stage. Private to each translation unit (see
// cells/activations.h).
#include <algorithm>
#include <cstdint>

#include "cpu/conv/isa_entries.h"
#include "cpu/conv/plan.h"
#include "cpu/conv/workspace.h"

namespace fastrnn::cpu {
namespace {

// The Winograd weights of output channel co of group g from its weights w (group_in_channels,
// 3, 3): U = G g G^T per input channel ci, G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1], element
// xi = 4 i + j stored as the direct weights with group_in_channels taps: u (groups, 16,
// ceil(group_out_channels / 4), group_in_channels, 4).
template <typename T>
inline void transform_winograd_weights(const ConvPlan& p, const T* w, int64_t g, int64_t co, T* u_all) {
  const int64_t per_xi = p.group_in_channels * ConvPlan::round_up4(p.group_out_channels);
  for (int64_t ci = 0; ci < p.group_in_channels; ++ci) {
    const T* k = w + ci * 9;
    T gk[4][3];  // G g
    for (int j = 0; j < 3; ++j) {
      gk[0][j] = k[j];
      gk[1][j] = (k[j] + k[3 + j] + k[6 + j]) / 2;
      gk[2][j] = (k[j] - k[3 + j] + k[6 + j]) / 2;
      gk[3][j] = k[6 + j];
    }
    T* u = u_all + g * 16 * per_xi + (co / 4 * p.group_in_channels + ci) * 4 + co % 4;
    for (int i = 0; i < 4; ++i) {
      u[(4 * i + 0) * per_xi] = gk[i][0];
      u[(4 * i + 1) * per_xi] = (gk[i][0] + gk[i][1] + gk[i][2]) / 2;
      u[(4 * i + 2) * per_xi] = (gk[i][0] - gk[i][1] + gk[i][2]) / 2;
      u[(4 * i + 3) * per_xi] = gk[i][2];
    }
  }
}

// The forward of `images` consecutive images (at most winograd_batch) by Winograd F(2x2, 3x3)
// (plan.h: winograd), group by group: the phase planes of each image, then per block of tiles
// (all the images' tiles one after the other, or a part of one image's) the input transform,
// its 16 products with the transformed weights (conv_direct, one per element of the 4x4 tile)
// and out(n, g, k0, count, m, scratch): the output stage of image n's tiles [k0, k0 + count) of
// group g, their products at m (16 planes winograd_product_stride apart, channels winograd_block_tiles apart). Returns
// false, having computed nothing that counts, when an image has an Inf or NaN.
template <typename T, typename Out>
bool winograd_images(const ConvShape& s, const ConvPlan& p, const T* x, int64_t images, const ThreadBuffers<T>& buf,
                     const Out& out) {
#if defined(FASTRNN_X86)
  const int64_t co4 = ConvPlan::round_up4(p.group_out_channels), v_xi = p.winograd_input_stride,
                m_xi = p.winograd_product_stride;
  const int64_t in_numel = s.in_channels * s.height * s.width;
  const int64_t phases = p.group_in_channels * 4 * p.winograd_phase_plane;  // per image
  for (int64_t ci = 0; ci < p.group_in_channels; ++ci) buf.offsets[ci] = ci * p.winograd_block_tiles;
  DirectConvArgs a;
  a.offsets = buf.offsets, a.taps = p.group_in_channels, a.channels = p.group_out_channels,
  a.ld = p.winograd_block_tiles;
  a.slice_taps = p.winograd_slice_channels < p.group_in_channels ? p.winograd_slice_channels : 0;
  for (int64_t g = 0; g < s.groups; ++g) {
    const T* u_g = buf.transformed_weights + g * 16 * p.group_in_channels * co4;
    for (int64_t n = 0; n < images; ++n) {
      const T* x_g = x + n * in_numel + g * p.group_in_channels * s.height * s.width;
      if (!winograd_phases<T>(x_g, p.group_in_channels, s.height, s.width, s.pad_h, s.pad_w, p.winograd_tile_rows,
                              p.winograd_tile_cols, p.winograd_phase_plane, buf.phase_planes + n * phases))
        return false;
    }
    // Tiles [k0, k0 + count) of each image, at n * count in the block (images > 1: all of them).
    const int64_t step = images > 1 ? p.winograd_tiles : p.winograd_block_tiles;
    for (int64_t k0 = 0; k0 < p.winograd_tiles; k0 += step) {
      const int64_t count = std::min(step, p.winograd_tiles - k0);
      for (int64_t n = 0; n < images; ++n)
        winograd_input<T>(buf.phase_planes + n * phases, p.group_in_channels, p.winograd_phase_plane,
                          p.winograd_tile_cols, k0, count, buf.transformed_input + n * count, p.winograd_block_tiles,
                          v_xi);
      a.length = images * count;
      for (int xi = 0; xi < 16; ++xi)
        conv_direct<T>(a, buf.transformed_input + xi * v_xi, u_g + xi * p.group_in_channels * co4,
                       static_cast<const T*>(nullptr), buf.products + xi * m_xi);
      for (int64_t n = 0; n < images; ++n) out(n, g, k0, count, buf.products + n * count, buf.products + 16 * m_xi);
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
auto winograd_conv_out(const ConvShape& s, const ConvPlan& p, const T* bias, T* y) {
  return [&s, &p, bias, y](int64_t n, int64_t g, int64_t k0, int64_t count, const T* m, T* scratch) {
#if defined(FASTRNN_X86)
    winograd_output<T>(m, p.winograd_block_tiles, p.winograd_product_stride, p.group_out_channels,
                       bias == nullptr ? nullptr : bias + g * p.group_out_channels, k0, count, p.winograd_tile_cols,
                       s.out_height, s.out_width, y + (n * s.out_channels + g * p.group_out_channels) * p.out_pixels,
                       scratch);
#else
    (void)s, (void)p, (void)bias, (void)y, (void)n, (void)g, (void)k0, (void)count, (void)m, (void)scratch;
#endif
  };
}

}  // namespace
}  // namespace fastrnn::cpu
