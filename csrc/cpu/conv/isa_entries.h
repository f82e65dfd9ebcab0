#pragma once
// The CPU convolution's calls into the kernels of the active instruction set (conv/kernels.h):
// AVX-512's where it is active, else AVX2's (cpu/simd/dispatch.h). The one place that chooses; the
// generic build has no direct kernels (the plan never takes them there). Private to each
// translation unit (see cells/activations.h).
#include "cpu/conv/kernels.h"
#include "cpu/simd/dispatch.h"

namespace fastrnn::cpu {
namespace {

// The direct forward's vector length in elements of `elem` bytes: AVX-512's where it is the
// active instruction set, else AVX2's (the direct kernels need one of them, use_direct).
inline int64_t direct_lanes(int64_t elem) { return (active_isa() == Isa::Avx512 ? 64 : 32) / elem; }

#if defined(FASTRNN_X86)
// The kernels both sets have (conv/simd_kernels.h), AVX-512's where it is active.
template <typename T>
void conv_direct(const DirectConvArgs& a, const T* xpad, const T* weight_blocked, const T* bias, T* out) {
  FASTRNN_SIMD_DISPATCH(conv_direct<T>, a, xpad, weight_blocked, bias, out);
}
template <typename T>
void conv_direct_rows(const DirectConvArgs& a, const T* xpad, const T* weight_blocked, const T* bias, T* out) {
  FASTRNN_SIMD_DISPATCH(conv_direct_rows<T>, a, xpad, weight_blocked, bias, out);
}
template <typename T>
void conv_direct_weight_grad(const DirectWeightGradArgs& a, const T* xpad, const T* dy_blocked, T* dw_blocked) {
  FASTRNN_SIMD_DISPATCH(conv_direct_weight_grad<T>, a, xpad, dy_blocked, dw_blocked);
}
template <typename T>
bool winograd_phases(const T* x, int64_t channels, int64_t height, int64_t width, int64_t pad_h, int64_t pad_w,
                     int64_t th, int64_t tc, int64_t plane, T* phases) {
  return FASTRNN_SIMD_DISPATCH(winograd_phases<T>, x, channels, height, width, pad_h, pad_w, th, tc, plane, phases);
}
template <typename T>
void winograd_input(const T* phases, int64_t channels, int64_t plane, int64_t tc, int64_t k0, int64_t count, T* v,
                    int64_t v_ci, int64_t v_xi) {
  FASTRNN_SIMD_DISPATCH(winograd_input<T>, phases, channels, plane, tc, k0, count, v, v_ci, v_xi);
}
template <typename T>
void winograd_output(const T* m, int64_t m_co, int64_t m_xi, int64_t channels, const T* bias, int64_t k0, int64_t count,
                     int64_t tc, int64_t out_h, int64_t out_w, T* y, T* yab) {
  FASTRNN_SIMD_DISPATCH(winograd_output<T>, m, m_co, m_xi, channels, bias, k0, count, tc, out_h, out_w, y, yab);
}
template <typename T>
void winograd_pool_output(const T* m, int64_t m_co, int64_t m_xi, int64_t channels, const T* bias, int64_t k0,
                          int64_t count, int64_t tc, int64_t out_w, int64_t ph, int64_t pw, T* y, int64_t* indices,
                          T* yab) {
  FASTRNN_SIMD_DISPATCH(winograd_pool_output<T>, m, m_co, m_xi, channels, bias, k0, count, tc, out_w, ph, pw, y,
                        indices, yab);
}
template <typename T>
void conv_dot_weight_grad(const int64_t* offsets, int64_t taps, int64_t channels, int64_t length, const T* xs,
                          const T* dy, int64_t ld, T* dw, int64_t dw_channel, int64_t dw_tap) {
  FASTRNN_SIMD_DISPATCH(conv_dot_weight_grad<T>, offsets, taps, channels, length, xs, dy, ld, dw, dw_channel, dw_tap);
}
// Kernels one instruction set alone has: the forward over output channels and dy's transpose
// into channel blocks (AVX-512; the plan takes them only there), the sparse gradients and the
// pooling epilogue (AVX2, which AVX-512 machines run too).
template <typename T>
void conv_direct_channels(const DirectChannelArgs& a, const T* xpad, const T* weight_cl, const T* bias, T* block,
                          T* out) {
  isa_avx512::conv_direct_channels<T>(a, xpad, weight_cl, bias, block, out);
}
template <typename T>
void transpose_to_blocks(const T* dy, int64_t channels, int64_t positions, T* out) {
  isa_avx512::transpose_to_blocks<T>(dy, channels, positions, out);
}
template <typename T>
void conv_sparse_weight_grad(const int64_t* vector_offsets, int64_t vectors, int64_t channels, const int64_t* positions,
                             const T* values, int64_t count, const T* x_cl, T* dw) {
  isa_avx2::conv_sparse_weight_grad<T>(vector_offsets, vectors, channels, positions, values, count, x_cl, dw);
}
template <typename T>
void conv_sparse_input_grad(const SparseInputGradArgs& a, const T* values, const T* w_cl, T* dx_cl) {
  isa_avx2::conv_sparse_input_grad<T>(a, values, w_cl, dx_cl);
}
inline int64_t relu_pool_row(const float* top, const float* bottom, float bias, int64_t pw, int64_t index0,
                             int64_t width, float* out, int64_t* indices) {
  return isa_avx2::relu_pool_row(top, bottom, bias, pw, index0, width, out, indices);
}
#endif

}  // namespace
}  // namespace fastrnn::cpu
