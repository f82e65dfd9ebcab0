#pragma once
// The one matrix-product interface the CPU kernels use. Row-major:
//   C (M x N) = alpha * op(A) (M x K) * op(B) (K x N) + beta * C
// op(A)[i][k] is A[i*lda + k], or A[k*lda + i] when trans_a; likewise for B. With beta == 0,
// C is only written (NaN already in C does not leak in), as in BLAS.
//
// Packing buffers come from the caller (the core never allocates): GemmScratch holds
// `threads` slots of gemm_scratch_bytes_per_thread() bytes. Called inside an OpenMP parallel
// region, gemm runs on the calling thread alone, in the slot of its thread number.
#include <cstdint>

#include "common/gemm_params.h"
#include "common/tensor_view.h"

namespace fastrnn::cpu {

template <typename T>
struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t M = 0, N = 0, K = 0;
  T alpha = T(1);
  const T* A = nullptr;
  int64_t lda = 0;
  const T* B = nullptr;
  int64_t ldb = 0;
  T beta = T(0);
  T* C = nullptr;
  int64_t ldc = 0;
};

struct GemmScratch {
  char* data = nullptr;
  int64_t bytes_per_thread = 0;
  int threads = 0;
};

// The largest packing buffer any instruction-set variant needs for this dtype, 64-byte multiple.
int64_t gemm_scratch_bytes_per_thread(DType dtype);

template <typename T>
void gemm(const GemmArgs<T>& args, const GemmScratch& scratch);

// The checked entry for callers outside the kernels (the bindings): views, checked by
// check_gemm (common/gemm_params.h) before the call above runs.
void gemm(const GemmParams& params);

}  // namespace fastrnn::cpu
