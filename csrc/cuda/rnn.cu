// The CUDA RNN entry points: CUDA's part of the shared checks (common/rnn_plan.h: devices,
// dtypes, workspace sizes), and dispatch to the kernels of the dtype (rnn_kernels_<dtype>.cu).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <initializer_list>
#include <string>
#include <type_traits>

#include "common/checks.h"
#include "common/error.h"
#include "common/rnn_plan.h"
#include "cuda/launch.h"
#include "cuda/rnn.h"
#include "cuda/rnn_persistent.h"
#include "cuda/rnn_workspace.cuh"

namespace fastrnn::cuda {

template <typename S>
void forward_calls(const RnnForwardParams* params, const RnnDims* dims, int count, const RnnLaunch& launch);
template <typename S>
void backward_calls(const RnnBackwardParams* params, const RnnDims* dims, int count, const RnnLaunch& launch);
template <typename S>
const void* persistent_kernel(CellKind cell, bool training, bool backward);

namespace {

bool is_half(DType dtype) { return dtype == DType::Float16 || dtype == DType::BFloat16; }

size_t compute_size(DType dtype) { return dtype == DType::Float64 ? sizeof(double) : sizeof(float); }

void check_dtype(const char* op, DType dtype) {
  FASTRNN_CHECK(dtype == DType::Float32 || dtype == DType::Float64 || is_half(dtype), op, ": dtype ",
                dtype_name(dtype), " is not supported on CUDA; expected float16, bfloat16, float32 or float64");
}

std::string device_str(const TensorView& v) {
  return v.device == DeviceType::CUDA ? "cuda:" + std::to_string(v.device_index) : "cpu";
}

// torch's wording for tensors on different devices.
void check_device(const TensorView& v, const TensorView& x) {
  FASTRNN_CHECK(v.device == DeviceType::CUDA && v.device_index == x.device_index,
                "Expected all tensors to be on the same device, but found at least two devices, ", device_str(x),
                " and ", device_str(v), "!");
}

// Present, on x's device, of `dtype`, contiguous and of exactly `shape`.
void check_array(const char* op, const char* name, const TensorView& v, const TensorView& x, DType dtype,
                 std::initializer_list<int64_t> shape) {
  FASTRNN_CHECK(v.defined(), op, ": ", name, " is required");
  check_device(v, x);
  FASTRNN_CHECK(v.dtype == dtype, op, ": expected ", name, " of dtype ", dtype_name(dtype), ", got ",
                dtype_name(v.dtype));
  bool same = v.ndim == static_cast<int>(shape.size());
  int k = 0;
  for (int64_t s : shape) same = same && k < v.ndim && v.sizes[k++] == s;
  FASTRNN_CHECK(same, op, ": expected ", name, " of shape ", shape.size(), "-D ", [&] {
    std::string out = "(";
    int i = 0;
    for (int64_t s : shape) out += (i++ ? ", " : "") + std::to_string(s);
    return out + ")";
  }(), ", got ", v.shape_str());
  FASTRNN_CHECK(v.is_contiguous(), op, ": expected ", name, " to be contiguous");
}

void check_workspace_fits(const char* op, const TensorView& w, const TensorView& x, int64_t bytes) {
  check_device(w, x);
  FASTRNN_CHECK(w.is_contiguous() && w.nbytes() >= bytes, op, ": the workspace holds ", w.nbytes(),
                " bytes; this call needs ", bytes);
}

RnnWorkspaceBytes workspace_bytes(CellKind cell, DType dtype, const RnnDims& d) {
  RnnWorkspaceBytes s;
  if (compute_size(dtype) == sizeof(double)) {
    s.forward = forward_space<double>(nullptr, d).bytes;
    s.backward = backward_space<double>(nullptr, d, cell == CellKind::Gru).bytes;
  } else {
    s.forward = forward_space<float>(nullptr, d).bytes;
    s.backward = backward_space<float>(nullptr, d, cell == CellKind::Gru).bytes;
  }
  return s;
}

// The CUDA kernels: all four float dtypes, no recurrent dropout, and every final state given.
const RnnDevice kCuda = {DeviceType::CUDA, "a CUDA device", false, false, check_dtype, check_array,
                         check_workspace_fits, workspace_bytes};

template <typename Fn>
void with_dtype(DType dtype, const Fn& fn) {
  switch (dtype) {
    case DType::Float16: return fn(static_cast<__half*>(nullptr));
    case DType::BFloat16: return fn(static_cast<__nv_bfloat16*>(nullptr));
    case DType::Float64: return fn(static_cast<double*>(nullptr));
    default: return fn(static_cast<float*>(nullptr));
  }
}

}  // namespace

DType rnn_reserve_dtype(DType dtype) { return fastrnn::rnn_reserve_dtype(dtype); }

RnnBufferSizes rnn_buffer_sizes(CellKind cell, DType dtype, int64_t total_rows, int64_t batch, int64_t input_size,
                                int64_t hidden_size, int64_t proj_size) {
  return fastrnn::rnn_buffer_sizes(kCuda, cell, dtype, total_rows, batch, input_size, hidden_size, proj_size);
}

namespace {

// Checks `count` calls (check: check_rnn_forward or check_rnn_backward) and runs them on their
// device with the kernels of their dtype: run(S*, dims).
template <typename Params, typename Check, typename Run>
void checked_calls(const Params* params, int count, Check check, const Run& run) {
  RnnDims dims[kMaxCalls];
  check(kCuda, params, count, dims);
  DeviceScope scope(params[0].x.device_index);
  with_dtype(params[0].x.dtype, [&](auto* type) { run(type, dims); });
}

}  // namespace

void rnn_forward(const RnnForwardParams* params, int count, const RnnLaunch& launch) {
  checked_calls(params, count, check_rnn_forward, [&](auto* type, const RnnDims* dims) {
    forward_calls<std::remove_pointer_t<decltype(type)>>(params, dims, count, launch);
  });
}

void rnn_backward(const RnnBackwardParams* params, int count, const RnnLaunch& launch) {
  checked_calls(params, count, check_rnn_backward, [&](auto* type, const RnnDims* dims) {
    backward_calls<std::remove_pointer_t<decltype(type)>>(params, dims, count, launch);
  });
}

PersistentPlan rnn_persistent_plan(CellKind cell, DType dtype, int64_t steps, int64_t batch, int64_t hidden_size,
                                   bool training, bool backward, int device) {
  const char* op = "rnn_persistent_plan";
  check_cell_kind(op, cell);
  check_dtype(op, dtype);
  FASTRNN_CHECK_VALUE(steps >= 0 && batch >= 0 && hidden_size >= 1, op, ": sizes must be non-negative");
  DeviceScope scope(device);
  RnnDims d;
  d.T = steps, d.B = batch, d.H = d.P = hidden_size, d.G = gate_count(cell), d.rows = steps * batch;
  PersistentShape shape;
  shape.gates = gate_count(cell);
  shape.weight_bytes = int(dtype_size(dtype));
  shape.compute_bytes = int(compute_size(dtype));
  shape.backward = backward;
  const void* kernel = nullptr;
  with_dtype(dtype, [&](auto* type) {
    kernel = persistent_kernel<std::remove_pointer_t<decltype(type)>>(cell, training, backward);
  });
  return plan_persistent(kernel, d, shape);
}

}  // namespace fastrnn::cuda
