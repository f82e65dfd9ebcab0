// The CUDA RNN entry points: argument checks (the same rules as the CPU's, plus devices),
// buffer sizes, and dispatch to the kernels of the dtype (rnn_kernels_<dtype>.cu).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>

#include "common/checks.h"
#include "common/error.h"
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

constexpr int kMaxCalls = 2;

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

void check_optional(const char* op, const char* name, const TensorView& v, const TensorView& x, DType dtype,
                    std::initializer_list<int64_t> shape) {
  if (v.defined()) check_array(op, name, v, x, dtype, shape);
}

// (T, B, width), or (rows, width) when packed, whose rows may be spaced further apart than
// `width` (one direction's half of a bidirectional output), unit stride along a row.
void check_rows(const char* op, const char* name, const TensorView& v, const TensorView& x, DType dtype,
                const RnnDims& d, bool packed, int64_t width, bool spaced) {
  FASTRNN_CHECK(v.defined() && v.ndim == (packed ? 2 : 3), op, ": expected ", name, " of ", packed ? 2 : 3,
                " dimensions");
  check_device(v, x);
  FASTRNN_CHECK(v.dtype == dtype, op, ": expected ", name, " of dtype ", dtype_name(dtype));
  const bool shape = packed ? (v.sizes[0] == d.rows && v.sizes[1] == width)
                            : (v.sizes[0] == d.T && v.sizes[1] == d.B && v.sizes[2] == width);
  FASTRNN_CHECK(shape, op, ": ", name, " has shape ", v.shape_str());
  if (!spaced) {
    FASTRNN_CHECK(v.is_contiguous(), op, ": expected ", name, " to be contiguous");
    return;
  }
  const int64_t ld = cpu::row_stride(v);
  const bool evenly = packed || v.sizes[0] <= 1 || v.sizes[1] <= 1 || v.strides[0] == v.sizes[1] * ld;
  FASTRNN_CHECK((v.strides[v.ndim - 1] == 1 || width == 1) && ld >= width && evenly, op, ": expected the rows of ",
                name, " to be unit-stride and evenly spaced");
}

void check_workspace_fits(const char* op, const TensorView& w, const TensorView& x, int64_t bytes) {
  FASTRNN_CHECK(w.defined(), op, ": a workspace is required; ask rnn_buffer_sizes for its size");
  check_device(w, x);
  FASTRNN_CHECK(w.is_contiguous() && w.nbytes() >= bytes, op, ": the workspace holds ", w.nbytes(),
                " bytes; this call needs ", bytes);
}

RnnDims check_dims(const char* op, CellKind cell, const TensorView& x, const TensorView& h0,
                   const TensorView& weight_hh, const TensorView& weight_hr, const TensorView& batch_sizes) {
  const RnnDims d = cpu::read_dims(op, cell, x, h0, weight_hh, weight_hr, batch_sizes);
  FASTRNN_CHECK(x.device == DeviceType::CUDA, op, ": expected x on a CUDA device");
  check_dtype(op, x.dtype);
  return d;
}

void check_weights(const char* op, const TensorView& x, const TensorView& weight_ih, const TensorView& weight_hh,
                   const TensorView& weight_hr, const RnnDims& d) {
  check_array(op, "weight_ih", weight_ih, x, x.dtype, {d.G * d.H, d.I});
  check_array(op, "weight_hh", weight_hh, x, x.dtype, {d.G * d.H, d.P});
  check_optional(op, "weight_hr", weight_hr, x, x.dtype, {d.P, d.H});
}

RnnBufferSizes buffer_sizes(CellKind cell, DType dtype, const RnnDims& d) {
  RnnBufferSizes s;
  s.reserve_elements = d.rows * reserve_blocks(cell, d.proj) * d.H;
  if (compute_size(dtype) == sizeof(double)) {
    s.forward_workspace_bytes = forward_space<double>(nullptr, d).bytes;
    s.backward_workspace_bytes = backward_space<double>(nullptr, d, cell == CellKind::Gru).bytes;
  } else {
    s.forward_workspace_bytes = forward_space<float>(nullptr, d).bytes;
    s.backward_workspace_bytes = backward_space<float>(nullptr, d, cell == CellKind::Gru).bytes;
  }
  return s;
}

RnnDims check_forward(const RnnForwardParams& p) {
  const char* op = "rnn_forward";
  FASTRNN_CHECK_KIND(ErrorKind::NotImplemented, !p.recurrent_mask.defined(), op,
                     ": recurrent dropout (recurrent_mask) is implemented only in the CPU kernels");
  const RnnDims d = check_dims(op, p.cell, p.x, p.h0, p.weight_hh, p.weight_hr, p.batch_sizes);
  const TensorView& x = p.x;
  const DType dt = x.dtype;
  const bool packed = p.batch_sizes.defined();
  check_rows(op, "x", x, x, dt, d, packed, d.I, false);
  check_rows(op, "y", p.y, x, dt, d, packed, d.P, true);
  check_weights(op, x, p.weight_ih, p.weight_hh, p.weight_hr, d);
  check_array(op, "h0", p.h0, x, dt, {d.B, d.P});
  check_array(op, "h_n", p.h_n, x, dt, {d.B, d.P});
  check_optional(op, "bias_ih", p.bias_ih, x, dt, {d.G * d.H});
  check_optional(op, "bias_hh", p.bias_hh, x, dt, {d.G * d.H});
  if (p.cell == CellKind::Lstm) {
    check_array(op, "c0", p.c0, x, dt, {d.B, d.H});
    check_array(op, "c_n", p.c_n, x, dt, {d.B, d.H});
  }
  const int64_t R = reserve_blocks(p.cell, d.proj) * d.H;
  if (p.training && R > 0) check_array(op, "reserve", p.reserve, x, rnn_reserve_dtype(dt), {d.rows, R});
  check_workspace_fits(op, p.workspace, x, buffer_sizes(p.cell, dt, d).forward_workspace_bytes);
  check_no_overlap(op,
                   {{"y", &p.y}, {"h_n", &p.h_n}, {"c_n", &p.c_n}, {"reserve", &p.reserve}, {"workspace", &p.workspace}},
                   {{"x", &p.x}, {"h0", &p.h0}, {"c0", &p.c0}, {"weight_ih", &p.weight_ih}, {"weight_hh", &p.weight_hh},
                    {"bias_ih", &p.bias_ih}, {"bias_hh", &p.bias_hh}, {"weight_hr", &p.weight_hr}});
  return d;
}

RnnDims check_backward(const RnnBackwardParams& p) {
  const char* op = "rnn_backward";
  FASTRNN_CHECK_KIND(ErrorKind::NotImplemented, !p.recurrent_mask.defined(), op,
                     ": recurrent dropout (recurrent_mask) is implemented only in the CPU kernels");
  const RnnDims d = check_dims(op, p.cell, p.x, p.h0, p.weight_hh, p.weight_hr, p.batch_sizes);
  const TensorView& x = p.x;
  const DType dt = x.dtype;
  const bool packed = p.batch_sizes.defined();
  check_rows(op, "x", x, x, dt, d, packed, d.I, false);
  check_rows(op, "dx", p.dx, x, dt, d, packed, d.I, false);
  check_rows(op, "y", p.y, x, dt, d, packed, d.P, true);
  check_rows(op, "dy", p.dy, x, dt, d, packed, d.P, true);
  for (auto [name, view] : {std::make_pair("h0", &p.h0), std::make_pair("dh_n", &p.dh_n), std::make_pair("dh0", &p.dh0)}) {
    check_array(op, name, *view, x, dt, {d.B, d.P});
  }
  if (p.cell == CellKind::Lstm) {
    for (auto [name, view] : {std::make_pair("c0", &p.c0), std::make_pair("dc_n", &p.dc_n), std::make_pair("dc0", &p.dc0)}) {
      check_array(op, name, *view, x, dt, {d.B, d.H});
    }
  }
  check_weights(op, x, p.weight_ih, p.weight_hh, p.weight_hr, d);
  check_array(op, "dweight_ih", p.dweight_ih, x, dt, {d.G * d.H, d.I});
  check_array(op, "dweight_hh", p.dweight_hh, x, dt, {d.G * d.H, d.P});
  if (d.proj) check_array(op, "dweight_hr", p.dweight_hr, x, dt, {d.P, d.H});
  check_optional(op, "dbias_ih", p.dbias_ih, x, dt, {d.G * d.H});
  check_optional(op, "dbias_hh", p.dbias_hh, x, dt, {d.G * d.H});
  const int64_t R = reserve_blocks(p.cell, d.proj) * d.H;
  if (R > 0) check_array(op, "reserve", p.reserve, x, rnn_reserve_dtype(dt), {d.rows, R});
  check_workspace_fits(op, p.workspace, x, buffer_sizes(p.cell, dt, d).backward_workspace_bytes);
  check_no_overlap(op,
                   {{"dx", &p.dx}, {"dh0", &p.dh0}, {"dc0", &p.dc0}, {"dweight_ih", &p.dweight_ih},
                    {"dweight_hh", &p.dweight_hh}, {"dweight_hr", &p.dweight_hr}, {"dbias_ih", &p.dbias_ih},
                    {"dbias_hh", &p.dbias_hh}, {"workspace", &p.workspace}},
                   {{"x", &p.x}, {"h0", &p.h0}, {"c0", &p.c0}, {"weight_ih", &p.weight_ih}, {"weight_hh", &p.weight_hh},
                    {"weight_hr", &p.weight_hr}, {"y", &p.y}, {"reserve", &p.reserve}, {"dy", &p.dy},
                    {"dh_n", &p.dh_n}, {"dc_n", &p.dc_n}});
  return d;
}

// Calls run together are the directions of one layer: one cell, dtype, x and batch_sizes.
template <typename Params>
void check_companions(const char* op, const Params* p, const RnnDims* d) {
  FASTRNN_CHECK(p[0].cell == p[1].cell && p[0].x.dtype == p[1].x.dtype, op,
                ": calls run together must share cell and dtype");
  FASTRNN_CHECK(p[0].x.data == p[1].x.data && d[0].rows == d[1].rows && d[0].B == d[1].B, op,
                ": calls run together must read the same x");
  FASTRNN_CHECK(p[0].batch_sizes.data == p[1].batch_sizes.data, op, ": calls run together must share batch_sizes");
}

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

DType rnn_reserve_dtype(DType dtype) { return is_half(dtype) ? DType::Float32 : dtype; }

RnnBufferSizes rnn_buffer_sizes(CellKind cell, DType dtype, int64_t total_rows, int64_t batch, int64_t input_size,
                                int64_t hidden_size, int64_t proj_size) {
  const int k = static_cast<int>(cell);
  FASTRNN_CHECK_VALUE(k >= 0 && k <= 3, "rnn_buffer_sizes: unknown cell kind ", k);
  check_dtype("rnn_buffer_sizes", dtype);
  FASTRNN_CHECK(proj_size == 0 || cell == CellKind::Lstm, "rnn_buffer_sizes: only an LSTM has a projection");
  RnnDims d;
  d.B = batch, d.I = input_size, d.H = hidden_size, d.G = gate_count(cell), d.rows = total_rows;
  d.proj = proj_size > 0;
  d.P = d.proj ? proj_size : hidden_size;
  return buffer_sizes(cell, dtype, d);
}

void rnn_forward(const RnnForwardParams* params, int count, const RnnLaunch& launch) {
  const char* op = "rnn_forward";
  FASTRNN_CHECK(count >= 1 && count <= kMaxCalls, op, ": between 1 and ", kMaxCalls, " calls at once");
  RnnDims dims[kMaxCalls];
  for (int k = 0; k < count; ++k) dims[k] = check_forward(params[k]);
  if (count == 2) check_companions(op, params, dims);
  DeviceScope scope(params[0].x.device_index);
  with_dtype(params[0].x.dtype, [&](auto* type) {
    forward_calls<std::remove_pointer_t<decltype(type)>>(params, dims, count, launch);
  });
}

void rnn_backward(const RnnBackwardParams* params, int count, const RnnLaunch& launch) {
  const char* op = "rnn_backward";
  FASTRNN_CHECK(count >= 1 && count <= kMaxCalls, op, ": between 1 and ", kMaxCalls, " calls at once");
  RnnDims dims[kMaxCalls];
  for (int k = 0; k < count; ++k) dims[k] = check_backward(params[k]);
  if (count == 2) {
    check_companions(op, params, dims);
    FASTRNN_CHECK(params[0].dx.data == params[1].dx.data, op, ": calls run together write one shared dx");
  }
  DeviceScope scope(params[0].x.device_index);
  with_dtype(params[0].x.dtype, [&](auto* type) {
    backward_calls<std::remove_pointer_t<decltype(type)>>(params, dims, count, launch);
  });
}

PersistentPlan rnn_persistent_plan(CellKind cell, DType dtype, int64_t steps, int64_t batch, int64_t hidden_size,
                                   bool training, bool backward, int device) {
  const char* op = "rnn_persistent_plan";
  const int k = static_cast<int>(cell);
  FASTRNN_CHECK_VALUE(k >= 0 && k <= 3, op, ": unknown cell kind ", k);
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
