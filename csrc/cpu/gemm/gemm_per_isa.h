#pragma once
// The general GEMM, one body for every instruction set: gemm_avx512.cpp, gemm_avx2.cpp and
// gemm_generic.cpp are this file built with each set's flags (simd/isa.h); see gemm_impl.h.
#if !defined(FASTRNN_BUILD_GENERIC)
#include <immintrin.h>
#endif
#include <omp.h>

#include "common/macros.h"
#include "common/parallel.h"
#include "cpu/gemm/gemm.h"
#include "cpu/simd/isa.h"

namespace fastrnn::cpu::FASTRNN_ISA_NAMESPACE {

#include "cpu/gemm/microkernel.h"
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

}  // namespace fastrnn::cpu::FASTRNN_ISA_NAMESPACE
