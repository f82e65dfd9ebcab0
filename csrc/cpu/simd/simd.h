#pragma once
// Simd<T>: the vocabulary of the instruction set this translation unit is built for
// (simd/isa.h): Avx512<T> (avx512.h) or Avx2<T> (avx2.h). The portable build has none: its
// kernels are plain loops the compiler vectorises (gemm/microkernel_generic.h, pool_kernels.h,
// optim_loop.h), each with its scalar tail. Included inside the set's namespace, after
// <immintrin.h>.
#if defined(FASTRNN_BUILD_AVX512)
#include "cpu/simd/avx512.h"
template <typename T>
using Simd = Avx512<T>;
#elif defined(FASTRNN_BUILD_AVX2)
#include "cpu/simd/avx2.h"
template <typename T>
using Simd = Avx2<T>;
#else
#error "cpu/simd/simd.h is for the AVX2 and AVX-512 builds"
#endif
