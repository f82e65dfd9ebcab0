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

// Keeps GCC from turning a short copy loop into a memcpy call (its loop-distribution pass does
// so for any loop it recognises; for 128 bytes the call costs more than the copy). Clang has no
// such attribute and does not need it here.
#if defined(__GNUC__) && !defined(__clang__)
#define FASTRNN_NO_LIBCALL_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define FASTRNN_NO_LIBCALL_LOOPS
#endif
