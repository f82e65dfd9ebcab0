// The micro-kernels of the instruction set this translation unit is built for (simd/isa.h),
// included inside its namespace; see gemm_impl.h for the contract.
#if defined(FASTRNN_BUILD_AVX512)
#include "cpu/gemm/microkernel_avx512.h"
#elif defined(FASTRNN_BUILD_AVX2)
#include "cpu/gemm/microkernel_avx2.h"
#else
#include "cpu/gemm/microkernel_generic.h"
#endif
