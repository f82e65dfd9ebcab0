#pragma once
// Host-side helpers for the CUDA kernels: make the tensors' device current, and turn a failed
// launch into an exception (a fastrnn::Error, so Python sees a RuntimeError, never an abort).
#include <cuda_runtime.h>

#include "common/error.h"

namespace fastrnn::cuda {

inline void check_launch(const char* op) {
  const cudaError_t status = cudaGetLastError();
  FASTRNN_CHECK(status == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(status));
}

inline void check_cuda(cudaError_t status, const char* op, const char* what) {
  FASTRNN_CHECK(status == cudaSuccess, op, ": ", what, " failed: ", cudaGetErrorString(status));
}

// Makes `device` current for this scope.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    cudaGetDevice(&previous_);
    if (device != previous_) {
      const cudaError_t status = cudaSetDevice(device);
      FASTRNN_CHECK(status == cudaSuccess, "cannot use CUDA device ", device, ": ", cudaGetErrorString(status));
    }
  }
  ~DeviceScope() { cudaSetDevice(previous_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace fastrnn::cuda
