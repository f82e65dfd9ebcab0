#pragma once
// What the CPU GEMM's checked entry receives from a caller outside the kernels (the bindings):
// views, not pointers, checked here before any is read. The kernels call each other through
// cpu::gemm<T>(GemmArgs, GemmScratch) unchecked: their callers have checked the whole op.
//   c (M x N) = alpha * op(a) (M x K) * op(b) (K x N) + beta * c, in place
#include <cstdint>

#include "common/tensor_view.h"

namespace fastrnn {

struct GemmParams {
  bool trans_a = false, trans_b = false;
  double alpha = 1, beta = 0;
  TensorView a, b, c;  // 2-D CPU matrices of one floating dtype, unit column stride
  TensorView scratch;  // contiguous CPU bytes: gemm_scratch_bytes(), any alignment
};

// The packed panels want this alignment; a caller's buffer (NumPy gives 16 bytes) is rounded up to it.
constexpr int64_t kGemmScratchAlign = 64;

// The bytes a checked call's scratch needs: one slot per thread, and room to align.
inline int64_t gemm_scratch_bytes(int64_t bytes_per_thread, int threads) {
  return bytes_per_thread * threads + kGemmScratchAlign;
}

// A checked call's sizes and its scratch: `threads` slots of bytes_per_thread from the aligned `data`.
struct GemmCall {
  int64_t M = 0, N = 0, K = 0;
  char* scratch = nullptr;
  int threads = 0;
};

// Checks the views (shapes, dtypes, device, strides, the scratch's size) and returns the call;
// bytes_per_thread is the kernels' slot size for c's dtype.
GemmCall check_gemm(const GemmParams& p, int64_t bytes_per_thread);

}  // namespace fastrnn
