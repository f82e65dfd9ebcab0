#pragma once
// Macros shared by the CPU and CUDA sources.

// Element math in csrc/cells is compiled for the host and, under nvcc, for the device too.
#if defined(__CUDACC__)
#define FASTRNN_HOST_DEVICE __host__ __device__ __forceinline__
#else
// Always inlined on the host: a call left in a loop over hidden units stops it vectorising.
#define FASTRNN_HOST_DEVICE inline __attribute__((always_inline))
#endif

#define FASTRNN_RESTRICT __restrict__
