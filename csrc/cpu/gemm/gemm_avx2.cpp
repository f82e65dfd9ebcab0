// The general GEMM compiled for one instruction set (avx2); see gemm_impl.h.
#include <immintrin.h>
#include <omp.h>

#include "common/macros.h"
#include "common/parallel.h"
#include "cpu/gemm/gemm.h"

namespace fastrnn::cpu::isa_avx2 {

#include "cpu/gemm/microkernel_avx2.h"
#include "cpu/gemm/gemm_impl.h"

template <typename T>
void gemm(const GemmArgs<T>& args, const GemmScratch& scratch) {
  parallel_gemm(args, scratch);
}

template void gemm<float>(const GemmArgs<float>&, const GemmScratch&);
template void gemm<double>(const GemmArgs<double>&, const GemmScratch&);

int64_t gemm_scratch_bytes(DType dtype) {
  return dtype == DType::Float64 ? gemm_scratch_bytes<double>() : gemm_scratch_bytes<float>();
}

}  // namespace fastrnn::cpu::isa_avx2
