#pragma once
// Launch helpers shared by the CUDA kernels: the caller's device made current for a scope, the
// caller's stream, and a check after every launch that turns a CUDA error into fastrnn::Error
// (a Python exception) instead of an abort. Checking cudaGetLastError does not synchronise.
#include <cuda_runtime.h>

#include <cstdint>

#include "common/error.h"

namespace fastrnn::cuda {

// Makes `device` current for this scope (the caller's tensors live there; its stream belongs to it).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    cudaGetDevice(&previous_);
    if (device != previous_) {
      const cudaError_t status = cudaSetDevice(device);
      FASTRNN_CHECK(status == cudaSuccess, "cannot use CUDA device ", device, ": ", cudaGetErrorString(status));
    }
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

inline cudaStream_t as_stream(uintptr_t handle) { return reinterpret_cast<cudaStream_t>(handle); }

// After each launch (or asynchronous runtime call): a failed launch becomes an exception.
inline void check_cuda(cudaError_t status, const char* op, const char* what) {
  FASTRNN_CHECK(status == cudaSuccess, op, ": CUDA error in ", what, ": ", cudaGetErrorString(status));
}
inline void check_launch(const char* op, const char* kernel) { check_cuda(cudaGetLastError(), op, kernel); }

inline unsigned blocks_for(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace fastrnn::cuda
