// The CPU RNN entry points: argument checks, workspace sizes, and dispatch to the driver of
// the active instruction set (rnn_impl.h, compiled once per set).
#include "cpu/rnn.h"

#include <algorithm>
#include <initializer_list>
#include <tuple>
#include <utility>

#include "common/checks.h"
#include "common/error.h"
#include "common/isa.h"
#include "cpu/rnn_common.h"

namespace fastrnn::cpu {

#define FASTRNN_DECLARE_RNN_VARIANT(ns)                                                      \
  namespace ns {                                                                             \
  void rnn_forward(const RnnForwardParams* params, const RnnDims* dims, int count);          \
  void rnn_backward(const RnnBackwardParams* params, const RnnDims* dims, int count);         \
  RnnWorkspaceBytes rnn_workspace_bytes(CellKind cell, DType dtype, const RnnDims& d);       \
  }

FASTRNN_DECLARE_RNN_VARIANT(isa_generic)
#if defined(FASTRNN_X86)
FASTRNN_DECLARE_RNN_VARIANT(isa_avx2)
FASTRNN_DECLARE_RNN_VARIANT(isa_avx512)
#endif

namespace {

// The workspace any instruction-set variant this CPU can run needs: the active one may change
// between the size query and the call. (A variant the CPU lacks is never asked: its code, even
// the size query, may use instructions this CPU does not have.)
RnnWorkspaceBytes workspace_bytes(CellKind cell, DType dtype, const RnnDims& d) {
  RnnWorkspaceBytes bytes = isa_generic::rnn_workspace_bytes(cell, dtype, d);
  auto widen = [&](const RnnWorkspaceBytes& other) {
    bytes.forward = std::max(bytes.forward, other.forward);
    bytes.backward = std::max(bytes.backward, other.backward);
  };
#if defined(FASTRNN_X86)
  if (isa_supported(Isa::Avx2)) widen(isa_avx2::rnn_workspace_bytes(cell, dtype, d));
  if (isa_supported(Isa::Avx512)) widen(isa_avx512::rnn_workspace_bytes(cell, dtype, d));
#endif
  return bytes;
}

void check_cell(const char* op, CellKind cell) {
  const int k = static_cast<int>(cell);
  FASTRNN_CHECK_VALUE(k >= 0 && k <= 3, op, ": unknown cell kind ", k);
}

void check_float_dtype(const char* op, DType dtype) {
  FASTRNN_CHECK(dtype == DType::Float32 || dtype == DType::Float64, op, ": dtype ", dtype_name(dtype),
                " is not supported on the CPU; expected float32 or float64");
}

}  // namespace

// The sizes every argument must agree on, read from x, h0, the weights and batch_sizes, with
// batch_sizes itself checked (it decides which rows the kernels touch). Shared with the CUDA
// kernels, which add their own device and dtype checks.
RnnDims read_dims(const char* op, CellKind cell, const TensorView& x, const TensorView& h0,
                  const TensorView& weight_hh, const TensorView& weight_hr, const TensorView& batch_sizes) {
  check_cell(op, cell);
  RnnDims d;
  d.G = gate_count(cell);
  const bool packed = batch_sizes.defined();
  FASTRNN_CHECK(x.defined() && x.ndim == (packed ? 2 : 3), op, ": expected x of ", packed ? 2 : 3,
                " dimensions, got ", x.ndim);
  FASTRNN_CHECK(h0.defined() && h0.ndim == 2, op, ": expected h0 of 2 dimensions");
  FASTRNN_CHECK(weight_hh.defined() && weight_hh.ndim == 2, op, ": expected weight_hh of 2 dimensions");
  d.proj = weight_hr.defined();
  FASTRNN_CHECK(!d.proj || cell == CellKind::Lstm, op, ": only an LSTM takes weight_hr");
  FASTRNN_CHECK(!d.proj || weight_hr.ndim == 2, op, ": expected weight_hr of 2 dimensions");
  d.B = h0.size(0);
  d.P = h0.size(1);
  d.H = d.proj ? weight_hr.size(1) : d.P;
  d.I = x.size(x.ndim - 1);
  FASTRNN_CHECK(d.H > 0 && d.P > 0, op, ": expected hidden_size > 0");
  FASTRNN_CHECK(d.B > 0, op, ": expected batch size > 0");
  if (packed) {
    check_cpu_array(op, "batch_sizes", batch_sizes, DType::Int64, {batch_sizes.size(0)});
    d.T = batch_sizes.size(0);
    const int64_t* bs = batch_sizes.data_as<int64_t>();
    for (int64_t t = 0; t < d.T; ++t) {
      FASTRNN_CHECK(bs[t] >= 0 && bs[t] <= d.B && (t == 0 || bs[t] <= bs[t - 1]), op,
                    ": batch_sizes must be non-increasing and within [0, ", d.B, "]; got ", bs[t], " at step ", t);
      d.rows += bs[t];
    }
    FASTRNN_CHECK(x.size(0) == d.rows, op, ": x has ", x.size(0), " rows but batch_sizes sum to ", d.rows);
  } else {
    d.T = x.size(0);
    FASTRNN_CHECK(x.size(1) == d.B, op, ": x has batch size ", x.size(1), " but h0 has ", d.B);
    d.rows = d.T * d.B;
  }
  FASTRNN_CHECK(d.T > 0, op, ": expected sequence length to be larger than 0");
  return d;
}

namespace {

RnnDims check_dims(const char* op, CellKind cell, const TensorView& x, const TensorView& h0,
                   const TensorView& weight_hh, const TensorView& weight_hr, const TensorView& batch_sizes) {
  const RnnDims d = read_dims(op, cell, x, h0, weight_hh, weight_hr, batch_sizes);
  check_float_dtype(op, x.dtype);
  return d;
}

// x and its row-shaped companions (y, dy, dx) are (T, B, width), or (rows, width) when packed.
void check_rows(const char* op, const char* name, const TensorView& v, DType dt, const RnnDims& d, bool packed,
                int64_t width) {
  if (packed) {
    check_cpu_array(op, name, v, dt, {d.rows, width});
  } else {
    check_cpu_array(op, name, v, dt, {d.T, d.B, width});
  }
}

// As check_rows, but the rows may be spaced further apart than `width` (one direction's half of
// a bidirectional output): unit stride along a row, every row the same distance from the last.
void check_spaced_rows(const char* op, const char* name, const TensorView& v, DType dt, const RnnDims& d,
                       bool packed, int64_t width) {
  FASTRNN_CHECK(v.defined() && v.ndim == (packed ? 2 : 3), op, ": expected ", name, " of ", packed ? 2 : 3,
                " dimensions");
  TensorView contiguous_like = v;
  const int64_t ld = row_stride(v);
  const bool evenly = packed || v.sizes[0] <= 1 || v.sizes[1] <= 1 || v.strides[0] == v.sizes[1] * ld;
  FASTRNN_CHECK((v.strides[v.ndim - 1] == 1 || width == 1) && ld >= width && evenly, op, ": expected the rows of ",
                name, " to be unit-stride and evenly spaced");
  // The shape, dtype and device checks of a contiguous array with these sizes.
  int64_t stride = 1;
  for (int k = v.ndim - 1; k >= 0; --k) {
    contiguous_like.strides[k] = stride;
    stride *= v.sizes[k];
  }
  check_rows(op, name, contiguous_like, dt, d, packed, width);
}

void check_weights(const char* op, const TensorView& weight_ih, const TensorView& weight_hh,
                   const TensorView& weight_hr, DType dt, const RnnDims& d) {
  const int64_t GH = d.G * d.H;
  check_cpu_array(op, "weight_ih", weight_ih, dt, {GH, d.I});
  check_cpu_array(op, "weight_hh", weight_hh, dt, {GH, d.P});
  check_optional_cpu_array(op, "weight_hr", weight_hr, dt, {d.P, d.H});
}

void check_fits(const char* op, const TensorView& workspace, int64_t bytes) {
  FASTRNN_CHECK(workspace.defined(), op, ": a workspace is required; ask rnn_buffer_sizes for its size");
  check_workspace(op, workspace, bytes);
}

}  // namespace

RnnBufferSizes rnn_buffer_sizes(CellKind cell, DType dtype, int64_t total_rows, int64_t batch, int64_t input_size,
                                int64_t hidden_size, int64_t proj_size) {
  check_cell("rnn_buffer_sizes", cell);
  check_float_dtype("rnn_buffer_sizes", dtype);
  FASTRNN_CHECK(proj_size == 0 || cell == CellKind::Lstm, "rnn_buffer_sizes: only an LSTM has a projection");
  RnnDims d;
  d.B = batch, d.I = input_size, d.H = hidden_size, d.G = gate_count(cell), d.rows = total_rows;
  d.proj = proj_size > 0;
  d.P = d.proj ? proj_size : hidden_size;
  const RnnWorkspaceBytes ws = workspace_bytes(cell, dtype, d);
  return {total_rows * reserve_blocks(cell, d.proj) * hidden_size, ws.forward, ws.backward};
}

namespace {

// Checks one forward call on its own; returns its sizes.
RnnDims check_forward(const RnnForwardParams& p) {
  const char* op = "rnn_forward";
  const RnnDims d = check_dims(op, p.cell, p.x, p.h0, p.weight_hh, p.weight_hr, p.batch_sizes);
  const DType dt = p.x.dtype;
  const bool packed = p.batch_sizes.defined();
  check_rows(op, "x", p.x, dt, d, packed, d.I);
  check_spaced_rows(op, "y", p.y, dt, d, packed, d.P);
  check_weights(op, p.weight_ih, p.weight_hh, p.weight_hr, dt, d);
  check_cpu_array(op, "h0", p.h0, dt, {d.B, d.P});
  // A one-step call's y already is its final state: it may leave h_n out (the cells do).
  if (p.h_n.defined() || packed || d.T != 1) check_cpu_array(op, "h_n", p.h_n, dt, {d.B, d.P});
  check_optional_cpu_array(op, "bias_ih", p.bias_ih, dt, {d.G * d.H});
  check_optional_cpu_array(op, "bias_hh", p.bias_hh, dt, {d.G * d.H});
  check_optional_cpu_array(op, "recurrent_mask", p.recurrent_mask, dt, {d.B, d.P});
  if (p.cell == CellKind::Lstm) {
    check_cpu_array(op, "c0", p.c0, dt, {d.B, d.H});
    check_cpu_array(op, "c_n", p.c_n, dt, {d.B, d.H});
  }
  const int64_t R = reserve_blocks(p.cell, d.proj) * d.H;
  if (p.training && R > 0) check_cpu_array(op, "reserve", p.reserve, dt, {d.rows, R});
  check_fits(op, p.workspace, workspace_bytes(p.cell, dt, d).forward);
  check_no_overlap(op,
                   {{"y", &p.y}, {"h_n", &p.h_n}, {"c_n", &p.c_n}, {"reserve", &p.reserve}, {"workspace", &p.workspace}},
                   {{"x", &p.x}, {"h0", &p.h0}, {"c0", &p.c0}, {"weight_ih", &p.weight_ih}, {"weight_hh", &p.weight_hh},
                    {"bias_ih", &p.bias_ih}, {"bias_hh", &p.bias_hh}, {"weight_hr", &p.weight_hr},
                    {"batch_sizes", &p.batch_sizes}, {"recurrent_mask", &p.recurrent_mask}});
  return d;
}

// Calls run together are the directions of one layer: the same cell, dtype, x and sequence
// lengths; their outputs apart, except two y that are the halves of one bidirectional output.
void check_companions(const char* op, const RnnDims* dims, int count, CellKind cell0, CellKind cell, DType dt0,
                      DType dt, const TensorView& x0, const TensorView& x, const TensorView& bs0,
                      const TensorView& bs) {
  (void)count;
  FASTRNN_CHECK(cell == cell0 && dt == dt0, op, ": calls run together must share cell and dtype");
  FASTRNN_CHECK(x.data == x0.data && dims[0].T == dims[1].T && dims[0].B == dims[1].B && dims[0].I == dims[1].I &&
                    dims[0].rows == dims[1].rows,
                op, ": calls run together must read the same x");
  FASTRNN_CHECK(bs.data == bs0.data, op, ": calls run together must share batch_sizes");
}

void check_halves(const char* op, const char* name, const TensorView& first, const TensorView& second, int64_t width) {
  // One row has no pitch to compare (row_stride gives its width): only where the halves start.
  const bool one_row = first.numel() == width && second.numel() == width;
  const int64_t ld = row_stride(first);
  const bool same_layout = first.ndim == second.ndim && (one_row || (row_stride(second) == ld && ld >= 2 * width));
  FASTRNN_CHECK(same_layout &&
                    static_cast<char*>(second.data) == static_cast<char*>(first.data) + width * dtype_size(first.dtype),
                op, ": the two ", name, " must be the two halves of one array's rows");
}

}  // namespace

void rnn_forward(const RnnForwardParams* params, int count) {
  const char* op = "rnn_forward";
  FASTRNN_CHECK(count >= 1 && count <= kMaxCalls, op, ": between 1 and ", kMaxCalls, " calls at once");
  RnnDims dims[kMaxCalls];
  for (int k = 0; k < count; ++k) dims[k] = check_forward(params[k]);
  if (count == 2) {
    const RnnForwardParams &a = params[0], &b = params[1];
    check_companions(op, dims, count, a.cell, b.cell, a.x.dtype, b.x.dtype, a.x, b.x, a.batch_sizes, b.batch_sizes);
    check_halves(op, "y", a.y, b.y, dims[0].P);
    check_no_overlap(op, {{"h_n", &a.h_n}, {"c_n", &a.c_n}, {"reserve", &a.reserve}, {"workspace", &a.workspace}},
                     {{"h_n", &b.h_n}, {"c_n", &b.c_n}, {"reserve", &b.reserve}, {"workspace", &b.workspace},
                      {"y", &b.y}});
    check_no_overlap(op, {{"y", &a.y}}, {{"h_n", &b.h_n}, {"c_n", &b.c_n}, {"reserve", &b.reserve},
                                          {"workspace", &b.workspace}});
  }
  switch (active_isa()) {
#if defined(FASTRNN_X86)
    case Isa::Avx512: return isa_avx512::rnn_forward(params, dims, count);
    case Isa::Avx2: return isa_avx2::rnn_forward(params, dims, count);
#endif
    default: return isa_generic::rnn_forward(params, dims, count);
  }
}

namespace {

RnnDims check_backward(const RnnBackwardParams& p) {
  const char* op = "rnn_backward";
  const RnnDims d = check_dims(op, p.cell, p.x, p.h0, p.weight_hh, p.weight_hr, p.batch_sizes);
  const DType dt = p.x.dtype;
  const bool packed = p.batch_sizes.defined();
  check_rows(op, "x", p.x, dt, d, packed, d.I);
  check_rows(op, "dx", p.dx, dt, d, packed, d.I);
  check_spaced_rows(op, "y", p.y, dt, d, packed, d.P);
  check_spaced_rows(op, "dy", p.dy, dt, d, packed, d.P);
  // An absent dh_n or dc_n is zero (a cell's step has only its output's gradient).
  check_cpu_array(op, "h0", p.h0, dt, {d.B, d.P});
  check_optional_cpu_array(op, "dh_n", p.dh_n, dt, {d.B, d.P});
  check_cpu_array(op, "dh0", p.dh0, dt, {d.B, d.P});
  if (p.cell == CellKind::Lstm) {
    check_cpu_array(op, "c0", p.c0, dt, {d.B, d.H});
    check_optional_cpu_array(op, "dc_n", p.dc_n, dt, {d.B, d.H});
    check_cpu_array(op, "dc0", p.dc0, dt, {d.B, d.H});
  }
  check_weights(op, p.weight_ih, p.weight_hh, p.weight_hr, dt, d);
  check_cpu_array(op, "dweight_ih", p.dweight_ih, dt, {d.G * d.H, d.I});
  check_cpu_array(op, "dweight_hh", p.dweight_hh, dt, {d.G * d.H, d.P});
  if (d.proj) check_cpu_array(op, "dweight_hr", p.dweight_hr, dt, {d.P, d.H});
  check_optional_cpu_array(op, "dbias_ih", p.dbias_ih, dt, {d.G * d.H});
  check_optional_cpu_array(op, "dbias_hh", p.dbias_hh, dt, {d.G * d.H});
  check_optional_cpu_array(op, "recurrent_mask", p.recurrent_mask, dt, {d.B, d.P});
  const int64_t R = reserve_blocks(p.cell, d.proj) * d.H;
  if (R > 0) check_cpu_array(op, "reserve", p.reserve, dt, {d.rows, R});
  check_fits(op, p.workspace, workspace_bytes(p.cell, dt, d).backward);
  check_no_overlap(op,
                   {{"dx", &p.dx}, {"dh0", &p.dh0}, {"dc0", &p.dc0}, {"dweight_ih", &p.dweight_ih},
                    {"dweight_hh", &p.dweight_hh}, {"dweight_hr", &p.dweight_hr}, {"dbias_ih", &p.dbias_ih},
                    {"dbias_hh", &p.dbias_hh}, {"workspace", &p.workspace}},
                   {{"x", &p.x}, {"h0", &p.h0}, {"c0", &p.c0}, {"weight_ih", &p.weight_ih}, {"weight_hh", &p.weight_hh},
                    {"weight_hr", &p.weight_hr}, {"batch_sizes", &p.batch_sizes}, {"y", &p.y}, {"reserve", &p.reserve},
                    {"dy", &p.dy}, {"dh_n", &p.dh_n}, {"dc_n", &p.dc_n},
                    {"recurrent_mask", &p.recurrent_mask}});
  return d;
}

}  // namespace

void rnn_backward(const RnnBackwardParams* params, int count) {
  const char* op = "rnn_backward";
  FASTRNN_CHECK(count >= 1 && count <= kMaxCalls, op, ": between 1 and ", kMaxCalls, " calls at once");
  RnnDims dims[kMaxCalls];
  for (int k = 0; k < count; ++k) dims[k] = check_backward(params[k]);
  if (count == 2) {
    // The directions' input gradients add up in the one dx they share.
    const RnnBackwardParams &a = params[0], &b = params[1];
    check_companions(op, dims, count, a.cell, b.cell, a.x.dtype, b.x.dtype, a.x, b.x, a.batch_sizes, b.batch_sizes);
    FASTRNN_CHECK(a.dx.data == b.dx.data, op, ": calls run together write one shared dx");
    check_halves(op, "y", a.y, b.y, dims[0].P);
    check_halves(op, "dy", a.dy, b.dy, dims[0].P);
    check_no_overlap(op,
                     {{"dh0", &a.dh0}, {"dc0", &a.dc0}, {"dweight_ih", &a.dweight_ih}, {"dweight_hh", &a.dweight_hh},
                      {"dweight_hr", &a.dweight_hr}, {"dbias_ih", &a.dbias_ih}, {"dbias_hh", &a.dbias_hh},
                      {"workspace", &a.workspace}},
                     {{"dh0", &b.dh0}, {"dc0", &b.dc0}, {"dweight_ih", &b.dweight_ih}, {"dweight_hh", &b.dweight_hh},
                      {"dweight_hr", &b.dweight_hr}, {"dbias_ih", &b.dbias_ih}, {"dbias_hh", &b.dbias_hh},
                      {"workspace", &b.workspace}, {"dx", &b.dx}, {"y", &b.y}, {"reserve", &b.reserve}});
  }
  switch (active_isa()) {
#if defined(FASTRNN_X86)
    case Isa::Avx512: return isa_avx512::rnn_backward(params, dims, count);
    case Isa::Avx2: return isa_avx2::rnn_backward(params, dims, count);
#endif
    default: return isa_generic::rnn_backward(params, dims, count);
  }
}

}  // namespace fastrnn::cpu
