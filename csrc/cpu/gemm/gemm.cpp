// Picks the GEMM variant of the active instruction set (cpu/simd/dispatch.h) at each call.
#include "cpu/gemm/gemm.h"

#include <algorithm>

#include "common/dispatch.h"
#include "cpu/simd/dispatch.h"

namespace fastrnn::cpu {

#define FASTRNN_DECLARE_GEMM_VARIANT(ns)                      \
  namespace ns {                                               \
  template <typename T>                                        \
  void gemm(const GemmArgs<T>& args, const GemmScratch& scratch); \
  int64_t gemm_scratch_bytes(DType dtype);                     \
  }

FASTRNN_DECLARE_GEMM_VARIANT(isa_generic)
#if defined(FASTRNN_X86)
FASTRNN_DECLARE_GEMM_VARIANT(isa_avx2)
FASTRNN_DECLARE_GEMM_VARIANT(isa_avx512)
#endif

int64_t gemm_scratch_bytes_per_thread(DType dtype) {
  int64_t bytes = isa_generic::gemm_scratch_bytes(dtype);
#if defined(FASTRNN_X86)
  bytes = std::max({bytes, isa_avx2::gemm_scratch_bytes(dtype), isa_avx512::gemm_scratch_bytes(dtype)});
#endif
  return bytes;
}

template <typename T>
void gemm(const GemmArgs<T>& args, const GemmScratch& scratch) {
  FASTRNN_ISA_DISPATCH(active_isa(), gemm<T>, args, scratch);
}

template void gemm<float>(const GemmArgs<float>&, const GemmScratch&);
template void gemm<double>(const GemmArgs<double>&, const GemmScratch&);

void gemm(const GemmParams& p) {
  const int64_t bytes_per_thread = gemm_scratch_bytes_per_thread(p.c.dtype);
  const GemmCall call = check_gemm(p, bytes_per_thread);
  FASTRNN_DISPATCH_FLOATING(p.c.dtype, "gemm", [&] {
    GemmArgs<scalar_t> g;
    g.trans_a = p.trans_a, g.trans_b = p.trans_b;
    g.M = call.M, g.N = call.N, g.K = call.K;
    g.alpha = static_cast<scalar_t>(p.alpha), g.beta = static_cast<scalar_t>(p.beta);
    g.A = p.a.data_as<scalar_t>(), g.lda = p.a.strides[0];
    g.B = p.b.data_as<scalar_t>(), g.ldb = p.b.strides[0];
    g.C = p.c.data_as<scalar_t>(), g.ldc = p.c.strides[0];
    gemm(g, GemmScratch{call.scratch, bytes_per_thread, call.threads});
  });
}

}  // namespace fastrnn::cpu
