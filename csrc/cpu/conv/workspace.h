#pragma once
// The CPU convolution's workspace, carved by the shared Carver in one order for the size query
// and the kernels: [GEMM packing slots x threads][per thread: the buffers of ThreadBuffers]
// [shared: the direct, channels-last and Winograd weights]. A buffer an algorithm does not
// take is empty. Private to each translation unit (see cells/activations.h).
#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "common/carver.h"
#include "common/parallel.h"
#include "cpu/conv.h"
#include "cpu/conv/plan.h"
#include "cpu/conv/kernels.h"
#include "cpu/gemm/gemm.h"

namespace fastrnn::cpu {
namespace {

// One thread's buffers, and the shared ones (the same in every thread's).
template <typename T>
struct ThreadBuffers {
  T* col = nullptr;         // (taps, im2col_rows * conv_cols) im2col block
  T* conv_block = nullptr;  // (group_out_channels, im2col_rows * conv_cols) the pooled forward's GEMM output
  T* dconv = nullptr;       // (out_channels, out_pixels) the fused backward's dense conv gradient
  T* dweight = nullptr;     // this thread's weight gradient (layout: backward.h)
  T* dbias = nullptr;       // (out_channels) this thread's bias gradient
  // The direct kernels: the padded planes (group_in_channels, padded_height, padded_width) or
  // shifted planes (kernel_w, group_in_channels, shifted_plane), the output block
  // (group_out_channels, direct_channel_stride), each tap's offset in the planes (taps), dy
  // transposed into channel blocks (dweight_channels / block, out_pixels, block).
  T* padded_input = nullptr;
  T* direct_out = nullptr;
  int64_t* offsets = nullptr;
  T* dy_blocked = nullptr;
  // The sparse weight gradient: the padded input channels-last (padded_height * padded_width +
  // pad_w + 1, padded_in_channels); per output channel the entries of its pooling windows,
  // (group_out_channels, pooled_pixels) positions and values, and their counts
  // (group_out_channels); each (tap, channel vector)'s offset in input_cl.
  T* input_cl = nullptr;
  int64_t* positions = nullptr;
  T* values = nullptr;
  int64_t* counts = nullptr;
  int64_t* vector_offsets = nullptr;
  // The sparse input gradient: dx channels-last (input_cl's geometry), the entries grouped by
  // conv position: starts (positions + 1), each entry's weight offset and value.
  T* dx_cl = nullptr;
  int64_t *starts = nullptr, *weight_at = nullptr;
  T* entry_values = nullptr;
  // Winograd: the phase planes (winograd_batch, group_in_channels, 4, winograd_phase_plane), the
  // transformed input (16 planes winograd_input_stride apart) and the products (16 planes
  // winograd_product_stride apart, then the output stage's scratch of 4 * winograd_block_tiles).
  T *phase_planes = nullptr, *transformed_input = nullptr, *products = nullptr;
  // Shared: the direct weights of every group, blocked by 4 output channels (groups,
  // ceil(group_out_channels / 4), taps, 4) or channels-last; the weights channels-last
  // (out_channels, kernel_h * kernel_w, padded_in_channels); the Winograd-transformed weights
  // (groups, 16, ceil(group_out_channels / 4), group_in_channels, 4).
  T* direct_weights = nullptr;
  T* weight_cl = nullptr;
  T* transformed_weights = nullptr;
};

// One thread's buffers carved from base (null: only their size, into *bytes).
template <typename T>
ThreadBuffers<T> carve_thread(const ConvPlan& p, char* base, int64_t* bytes) {
  const ConvShape& s = p.shape;
  const ConvOp op = p.op;
  const bool backward = op == ConvOp::Backward || op == ConvOp::PoolBackward;
  const bool direct = p.direct, sparse = p.sparse, winograd = p.winograd;
  const int64_t cout_g = p.group_out_channels, spatial = s.kernel_h * s.kernel_w;
  const int64_t planes = p.padded_height * p.padded_width;
  const int64_t cl_numel = sparse ? (planes + s.pad_w + 1) * p.padded_in_channels : 0;
  const int64_t entries = sparse ? cout_g * p.pooled_pixels : 0;
  const int64_t dweight = backward
                              ? std::max({s.out_channels * p.taps, direct ? s.groups * p.dweight_channels * p.taps : 0,
                                          sparse ? s.out_channels * spatial * p.padded_in_channels : 0})
                              : 0;
  const int64_t padded = std::max(p.group_in_channels * planes + s.pad_w,
                                  p.shifted_fits ? s.kernel_w * p.group_in_channels * p.shifted_plane : 0);
  Carver c(base);
  ThreadBuffers<T> b;
  b.col = c.take<T>(p.pointwise && !backward ? 0 : p.taps * p.im2col_rows * p.conv_cols);
  b.conv_block = c.take<T>(op == ConvOp::PoolForward ? cout_g * p.im2col_rows * p.conv_cols : 0);
  b.dconv = c.take<T>(op == ConvOp::PoolBackward ? s.out_channels * p.out_pixels : 0);
  b.dweight = c.take<T>(dweight);
  b.dbias = c.take<T>(backward ? s.out_channels : 0);
  b.padded_input = c.take<T>(direct ? padded + kDirectSlack : 0);
  b.direct_out = c.take<T>(direct && !backward ? cout_g * p.direct_channel_stride : 0);
  b.offsets = c.take<int64_t>(direct ? p.taps : 0);
  b.dy_blocked = c.take<T>(direct && backward ? p.out_pixels * p.dweight_channels : 0);
  b.input_cl = c.take<T>(cl_numel);
  b.positions = c.take<int64_t>(entries);
  b.values = c.take<T>(entries);
  b.vector_offsets = c.take<int64_t>(sparse ? spatial * p.padded_in_channels / (32 / p.element_bytes) : 0);
  b.dx_cl = c.take<T>(cl_numel);
  b.starts = c.take<int64_t>(sparse ? planes + 1 : 0);
  b.weight_at = c.take<int64_t>(entries);
  b.entry_values = c.take<T>(entries);
  b.counts = c.take<int64_t>(sparse ? cout_g : 0);
  b.phase_planes = c.take<T>(winograd ? p.winograd_batch * p.group_in_channels * 4 * p.winograd_phase_plane : 0);
  b.transformed_input = c.take<T>(winograd ? 16 * p.winograd_input_stride + kDirectSlack : 0);
  b.products = c.take<T>(winograd ? 16 * p.winograd_product_stride + 4 * p.winograd_block_tiles : 0);
  if (bytes != nullptr) *bytes = (c.bytes() + kAlign - 1) / kAlign * kAlign;
  return b;
}

// The whole workspace for `threads` threads carved from base (null: only its size).
template <typename T>
struct ConvLayout {
  char* gemm = nullptr;     // threads x plan.gemm_bytes
  char* threads = nullptr;  // threads x thread_bytes
  int64_t thread_bytes = 0;
  T *direct_weights = nullptr, *weight_cl = nullptr, *transformed_weights = nullptr;
  int64_t bytes = 0;
};

template <typename T>
ConvLayout<T> carve_workspace(const ConvPlan& p, char* base, int threads) {
  const ConvShape& s = p.shape;
  const ConvOp op = p.op;
  const bool backward = op == ConvOp::Backward || op == ConvOp::PoolBackward;
  const int64_t cout4 = ConvPlan::round_up4(p.group_out_channels);
  Carver c(base);
  ConvLayout<T> w;
  w.gemm = c.take<char>(threads * p.gemm_bytes);
  carve_thread<T>(p, nullptr, &w.thread_bytes);
  w.threads = c.take<char>(threads * w.thread_bytes);
  w.direct_weights = c.take<T>(p.direct && !backward ? s.groups * p.taps * cout4 : 0);
  w.weight_cl = c.take<T>(p.sparse ? s.out_channels * s.kernel_h * s.kernel_w * p.padded_in_channels : 0);
  w.transformed_weights = c.take<T>(p.winograd ? s.groups * 16 * p.group_in_channels * cout4 : 0);
  w.bytes = c.bytes();
  return w;
}

// Thread `slot`'s buffers in ws.
template <typename T>
ThreadBuffers<T> buffers(const ConvPlan& p, const ConvWorkspace& ws, int slot) {
  const ConvLayout<T> w = carve_workspace<T>(p, ws.data, ws.threads);
  ThreadBuffers<T> b = carve_thread<T>(p, w.threads + slot * w.thread_bytes, nullptr);
  b.direct_weights = w.direct_weights, b.weight_cl = w.weight_cl, b.transformed_weights = w.transformed_weights;
  return b;
}

// The threads a call runs on: those the workspace was sized for, one inside a parallel region.
inline int usable_threads(const ConvWorkspace& ws) {
  return omp_in_parallel() ? 1 : std::max(1, std::min(omp_get_max_threads(), ws.threads));
}

inline GemmScratch gemm_scratch(const ConvPlan& p, const ConvWorkspace& ws) {
  GemmScratch g;
  g.data = ws.data;
  g.bytes_per_thread = p.gemm_bytes;
  g.threads = ws.threads;
  return g;
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

}  // namespace
}  // namespace fastrnn::cpu
