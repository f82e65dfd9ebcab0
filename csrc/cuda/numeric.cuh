#pragma once
// Storage types and the types arithmetic runs in on the GPU: float16 and bfloat16 are stored
// as such and computed in float32; float32 and float64 compute in themselves.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace fastrnn::cuda {

template <typename S>
struct ComputeOf {
  using type = S;
};
template <>
struct ComputeOf<__half> {
  using type = float;
};
template <>
struct ComputeOf<__nv_bfloat16> {
  using type = float;
};
template <typename S>
using compute_t = typename ComputeOf<S>::type;

// Storage -> compute.
__device__ __forceinline__ float widen(__half v) { return __half2float(v); }
__device__ __forceinline__ float widen(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ double widen(double v) { return v; }

// Compute -> storage, rounding to nearest.
template <typename S, typename T>
__device__ __forceinline__ S narrow(T v) {
  return static_cast<S>(v);
}
template <>
__device__ __forceinline__ __half narrow<__half, float>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 narrow<__nv_bfloat16, float>(float v) {
  return __float2bfloat16_rn(v);
}

}  // namespace fastrnn::cuda
