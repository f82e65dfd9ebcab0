#pragma once
// Where a binding runs its call: on the CPU kernels, or on the CUDA kernels when this build has
// them. Every call into csrc/cuda goes through cuda_only(), cuda_or() or when_cuda(), so the
// answer of a build without CUDA lives here alone: cuda_only() raises no_cuda(), cuda_or()
// returns its fallback, when_cuda() does nothing. There the CUDA lambda is never called, so
// neither it nor the csrc/cuda functions it names are emitted, and they need no definition
// (csrc/cuda's headers are host-only declarations, included by every build).
#include <pybind11/pybind11.h>

#include <string>

#include "common/error.h"
#include "common/tensor_view.h"

namespace fastrnn::bindings {

#if defined(FASTRNN_WITH_CUDA)
inline constexpr bool kCudaBuild = true;
inline constexpr const char* kCudaArchs = FASTRNN_CUDA_ARCHS;  // "80,90"
#else
inline constexpr bool kCudaBuild = false;
inline constexpr const char* kCudaArchs = "";
#endif

[[noreturn]] inline void no_cuda(const char* op) {
  throw Error(ErrorKind::Runtime,
              std::string(op) + ": this build of fastrnn has no CUDA kernels (install with FASTRNN_CUDA=ON)");
}

inline bool on_cuda(const TensorView& v) { return v.defined() && v.device == DeviceType::CUDA; }

// fn(), a call into the CUDA kernels, in a build that has them; no_cuda(op) otherwise.
template <typename Fn>
auto cuda_only(const char* op, Fn&& fn) -> decltype(fn()) {
  if constexpr (kCudaBuild) {
    return fn();
  } else {
    (void)fn;
    no_cuda(op);
  }
}

// fn() in a build with CUDA; `fallback` otherwise (queries that have an answer without CUDA).
template <typename T, typename Fn>
T cuda_or(T fallback, Fn&& fn) {
  if constexpr (kCudaBuild) {
    return fn();
  } else {
    (void)fn;
    return fallback;
  }
}

// fn() in a build with CUDA; nothing otherwise (switches that mean nothing without it).
template <typename Fn>
void when_cuda(Fn&& fn) {
  if constexpr (kCudaBuild) fn();
  (void)fn;
}

// A call on the arrays' device, `first` deciding: cpu() for CPU arrays, cuda() for CUDA ones
// (or no_cuda(op)), with the GIL released while it runs.
template <typename Cpu, typename Cuda>
void run_on_device(const char* op, const TensorView& first, const Cpu& cpu, const Cuda& cuda) {
  pybind11::gil_scoped_release release;
  if (on_cuda(first)) return cuda_only(op, cuda);
  cpu();
}

}  // namespace fastrnn::bindings
