#include "common/gemm_params.h"

#include "common/error.h"

namespace fastrnn {
namespace {

void check_matrix(const TensorView& v, DType dtype, const char* name) {
  FASTRNN_CHECK(v.defined() && v.ndim == 2 && v.device == DeviceType::CPU && v.dtype == dtype, "gemm: ", name,
                " must be a 2-D CPU matrix of dtype ", dtype_name(dtype));
  FASTRNN_CHECK(v.strides[1] == 1 || v.sizes[1] <= 1 || v.numel() == 0, "gemm: ", name,
                " must have unit column stride");
}

}  // namespace

GemmCall check_gemm(const GemmParams& p, int64_t bytes_per_thread) {
  const TensorView &A = p.a, &B = p.b, &C = p.c, &S = p.scratch;
  check_matrix(C, C.dtype, "c");
  check_matrix(A, C.dtype, "a");
  check_matrix(B, C.dtype, "b");
  GemmCall call;
  call.M = C.sizes[0], call.N = C.sizes[1];
  call.K = p.trans_a ? A.sizes[0] : A.sizes[1];
  FASTRNN_CHECK((p.trans_a ? A.sizes[1] : A.sizes[0]) == call.M && (p.trans_b ? B.sizes[1] : B.sizes[0]) == call.K &&
                    (p.trans_b ? B.sizes[0] : B.sizes[1]) == call.N,
                "gemm: shapes do not match");
  const int64_t least = gemm_scratch_bytes(bytes_per_thread, 1);
  FASTRNN_CHECK(S.defined() && S.device == DeviceType::CPU && S.is_contiguous() && S.nbytes() >= least,
                "gemm: scratch must hold at least ", least, " bytes");
  const auto raw = reinterpret_cast<uintptr_t>(S.data);
  call.scratch = reinterpret_cast<char*>((raw + kGemmScratchAlign - 1) / kGemmScratchAlign * kGemmScratchAlign);
  const int64_t usable = S.nbytes() - (call.scratch - static_cast<char*>(S.data));
  call.threads = static_cast<int>(usable / bytes_per_thread);
  return call;
}

}  // namespace fastrnn
