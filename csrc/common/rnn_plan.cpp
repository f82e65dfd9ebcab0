// The checks of an RNN call, shared by the CPU and CUDA entry points (common/rnn_plan.h).
#include "common/rnn_plan.h"

#include "common/checks.h"
#include "common/error.h"

namespace fastrnn {

void check_cell_kind(const char* op, CellKind cell) {
  const int k = static_cast<int>(cell);
  FASTRNN_CHECK_VALUE(is_cell_kind(k), op, ": unknown cell kind ", k);
}

DType rnn_reserve_dtype(DType dtype) {
  return dtype == DType::Float16 || dtype == DType::BFloat16 ? DType::Float32 : dtype;
}

// The sizes every argument must agree on, read from x, h0, the weights and batch_sizes, with
// batch_sizes itself checked (it decides which rows the kernels touch).
RnnDims read_rnn_dims(const char* op, CellKind cell, const TensorView& x, const TensorView& h0,
                      const TensorView& weight_hh, const TensorView& weight_hr, const TensorView& batch_sizes) {
  check_cell_kind(op, cell);
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

RnnBufferSizes rnn_buffer_sizes(const RnnDevice& device, CellKind cell, DType dtype, int64_t total_rows, int64_t batch,
                                int64_t input_size, int64_t hidden_size, int64_t proj_size) {
  const char* op = "rnn_buffer_sizes";
  check_cell_kind(op, cell);
  device.check_dtype(op, dtype);
  FASTRNN_CHECK(proj_size == 0 || cell == CellKind::Lstm, op, ": only an LSTM has a projection");
  RnnDims d;
  d.B = batch, d.I = input_size, d.H = hidden_size, d.G = gate_count(cell), d.rows = total_rows;
  d.proj = proj_size > 0;
  d.P = d.proj ? proj_size : hidden_size;
  const RnnWorkspaceBytes ws = device.workspace_bytes(cell, dtype, d);
  return {total_rows * reserve_blocks(cell, d.proj) * hidden_size, ws.forward, ws.backward};
}

namespace {

// One call's checks on one device: its sizes, and the device's array checks bound to x.
class CallChecker {
 public:
  CallChecker(const RnnDevice& device, const char* op, bool recurrent_mask_given)
      : device_(device), op_(op) {
    FASTRNN_CHECK_KIND(ErrorKind::NotImplemented, device.recurrent_mask || !recurrent_mask_given, op,
                       ": recurrent dropout (recurrent_mask) is implemented only in the CPU kernels");
  }

  const RnnDims& read(CellKind cell, const TensorView& x, const TensorView& h0, const TensorView& weight_hh,
                      const TensorView& weight_hr, const TensorView& batch_sizes) {
    d_ = read_rnn_dims(op_, cell, x, h0, weight_hh, weight_hr, batch_sizes);
    FASTRNN_CHECK(x.device == device_.type, op_, ": expected x on ", device_.where);
    device_.check_dtype(op_, x.dtype);
    x_ = &x;
    packed_ = batch_sizes.defined();
    return d_;
  }

  void array(const char* name, const TensorView& v, std::initializer_list<int64_t> shape) const {
    device_.check_array(op_, name, v, *x_, x_->dtype, shape);
  }
  void optional(const char* name, const TensorView& v, std::initializer_list<int64_t> shape) const {
    if (v.defined()) array(name, v, shape);
  }

  // x and its row-shaped companions are (T, B, width), or (rows, width) when packed.
  void rows(const char* name, const TensorView& v, int64_t width) const {
    if (packed_) {
      array(name, v, {d_.rows, width});
    } else {
      array(name, v, {d_.T, d_.B, width});
    }
  }

  // As rows, but the rows may be spaced further apart than `width` (one direction's half of a
  // bidirectional output): unit stride along a row, every row the same distance from the last.
  void spaced_rows(const char* name, const TensorView& v, int64_t width) const {
    FASTRNN_CHECK(v.defined() && v.ndim == (packed_ ? 2 : 3), op_, ": expected ", name, " of ", packed_ ? 2 : 3,
                  " dimensions");
    const int64_t ld = row_stride(v);
    const bool evenly = packed_ || v.sizes[0] <= 1 || v.sizes[1] <= 1 || v.strides[0] == v.sizes[1] * ld;
    FASTRNN_CHECK((v.strides[v.ndim - 1] == 1 || width == 1) && ld >= width && evenly, op_,
                  ": expected the rows of ", name, " to be unit-stride and evenly spaced");
    // The shape, dtype and device checks of a contiguous array with these sizes.
    TensorView contiguous_like = v;
    int64_t stride = 1;
    for (int k = v.ndim - 1; k >= 0; --k) {
      contiguous_like.strides[k] = stride;
      stride *= v.sizes[k];
    }
    rows(name, contiguous_like, width);
  }

  void weights(const TensorView& weight_ih, const TensorView& weight_hh, const TensorView& weight_hr) const {
    array("weight_ih", weight_ih, {d_.G * d_.H, d_.I});
    array("weight_hh", weight_hh, {d_.G * d_.H, d_.P});
    optional("weight_hr", weight_hr, {d_.P, d_.H});
  }

  // A final state (or its gradient) the device may let a call leave out.
  void final_state(const char* name, const TensorView& v, std::initializer_list<int64_t> shape) const {
    if (device_.final_state_optional) {
      optional(name, v, shape);
    } else {
      array(name, v, shape);
    }
  }

  void reserve(CellKind cell, const TensorView& reserve) const {
    const int64_t R = reserve_blocks(cell, d_.proj) * d_.H;
    if (R > 0) device_.check_array(op_, "reserve", reserve, *x_, rnn_reserve_dtype(x_->dtype), {d_.rows, R});
  }

  void workspace(CellKind cell, const TensorView& workspace, bool backward) const {
    FASTRNN_CHECK(workspace.defined(), op_, ": a workspace is required; ask rnn_buffer_sizes for its size");
    const RnnWorkspaceBytes bytes = device_.workspace_bytes(cell, x_->dtype, d_);
    device_.check_workspace(op_, workspace, *x_, backward ? bytes.backward : bytes.forward);
  }

  const RnnDims& dims() const { return d_; }
  bool packed() const { return packed_; }

 private:
  const RnnDevice& device_;
  const char* op_;
  const TensorView* x_ = nullptr;
  RnnDims d_;
  bool packed_ = false;
};

RnnDims check_forward(const RnnDevice& device, const RnnForwardParams& p) {
  CallChecker check(device, "rnn_forward", p.recurrent_mask.defined());
  const RnnDims& d = check.read(p.cell, p.x, p.h0, p.weight_hh, p.weight_hr, p.batch_sizes);
  check.rows("x", p.x, d.I);
  check.spaced_rows("y", p.y, d.P);
  check.weights(p.weight_ih, p.weight_hh, p.weight_hr);
  check.array("h0", p.h0, {d.B, d.P});
  // A one-step call's y already is its final state: it may leave h_n out (the cells do).
  if (p.h_n.defined() || check.packed() || d.T != 1) {
    check.array("h_n", p.h_n, {d.B, d.P});
  } else {
    check.final_state("h_n", p.h_n, {d.B, d.P});
  }
  check.optional("bias_ih", p.bias_ih, {d.G * d.H});
  check.optional("bias_hh", p.bias_hh, {d.G * d.H});
  check.optional("recurrent_mask", p.recurrent_mask, {d.B, d.P});
  if (p.cell == CellKind::Lstm) {
    check.array("c0", p.c0, {d.B, d.H});
    check.array("c_n", p.c_n, {d.B, d.H});
  }
  if (p.training) check.reserve(p.cell, p.reserve);
  check.workspace(p.cell, p.workspace, false);
  check_no_overlap("rnn_forward",
                   {{"y", &p.y}, {"h_n", &p.h_n}, {"c_n", &p.c_n}, {"reserve", &p.reserve}, {"workspace", &p.workspace}},
                   {{"x", &p.x}, {"h0", &p.h0}, {"c0", &p.c0}, {"weight_ih", &p.weight_ih}, {"weight_hh", &p.weight_hh},
                    {"bias_ih", &p.bias_ih}, {"bias_hh", &p.bias_hh}, {"weight_hr", &p.weight_hr},
                    {"batch_sizes", &p.batch_sizes}, {"recurrent_mask", &p.recurrent_mask}});
  return d;
}

RnnDims check_backward(const RnnDevice& device, const RnnBackwardParams& p) {
  CallChecker check(device, "rnn_backward", p.recurrent_mask.defined());
  const RnnDims& d = check.read(p.cell, p.x, p.h0, p.weight_hh, p.weight_hr, p.batch_sizes);
  check.rows("x", p.x, d.I);
  check.rows("dx", p.dx, d.I);
  check.spaced_rows("y", p.y, d.P);
  check.spaced_rows("dy", p.dy, d.P);
  // An absent dh_n or dc_n is zero where the device allows it (a cell's step has only its
  // output's gradient).
  check.array("h0", p.h0, {d.B, d.P});
  check.final_state("dh_n", p.dh_n, {d.B, d.P});
  check.array("dh0", p.dh0, {d.B, d.P});
  if (p.cell == CellKind::Lstm) {
    check.array("c0", p.c0, {d.B, d.H});
    check.final_state("dc_n", p.dc_n, {d.B, d.H});
    check.array("dc0", p.dc0, {d.B, d.H});
  }
  check.weights(p.weight_ih, p.weight_hh, p.weight_hr);
  check.array("dweight_ih", p.dweight_ih, {d.G * d.H, d.I});
  check.array("dweight_hh", p.dweight_hh, {d.G * d.H, d.P});
  if (d.proj) check.array("dweight_hr", p.dweight_hr, {d.P, d.H});
  check.optional("dbias_ih", p.dbias_ih, {d.G * d.H});
  check.optional("dbias_hh", p.dbias_hh, {d.G * d.H});
  check.optional("recurrent_mask", p.recurrent_mask, {d.B, d.P});
  check.reserve(p.cell, p.reserve);
  check.workspace(p.cell, p.workspace, true);
  check_no_overlap("rnn_backward",
                   {{"dx", &p.dx}, {"dh0", &p.dh0}, {"dc0", &p.dc0}, {"dweight_ih", &p.dweight_ih},
                    {"dweight_hh", &p.dweight_hh}, {"dweight_hr", &p.dweight_hr}, {"dbias_ih", &p.dbias_ih},
                    {"dbias_hh", &p.dbias_hh}, {"workspace", &p.workspace}},
                   {{"x", &p.x}, {"h0", &p.h0}, {"c0", &p.c0}, {"weight_ih", &p.weight_ih}, {"weight_hh", &p.weight_hh},
                    {"weight_hr", &p.weight_hr}, {"batch_sizes", &p.batch_sizes}, {"y", &p.y}, {"reserve", &p.reserve},
                    {"dy", &p.dy}, {"dh_n", &p.dh_n}, {"dc_n", &p.dc_n}, {"recurrent_mask", &p.recurrent_mask}});
  return d;
}

// Calls run together are the directions of one layer: the same cell, dtype, x and sequence
// lengths.
template <typename Params>
void check_companions(const char* op, const Params* p, const RnnDims* dims) {
  FASTRNN_CHECK(p[1].cell == p[0].cell && p[1].x.dtype == p[0].x.dtype, op,
                ": calls run together must share cell and dtype");
  FASTRNN_CHECK(p[1].x.data == p[0].x.data && dims[0].T == dims[1].T && dims[0].B == dims[1].B &&
                    dims[0].I == dims[1].I && dims[0].rows == dims[1].rows,
                op, ": calls run together must read the same x");
  FASTRNN_CHECK(p[1].batch_sizes.data == p[0].batch_sizes.data, op, ": calls run together must share batch_sizes");
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

// Checks each of `count` calls on its own (check_one), then, for two, that they are the
// directions of one layer. Returns whether there are two.
template <typename Params, typename CheckOne>
bool check_calls(const char* op, const RnnDevice& device, const Params* params, int count, RnnDims* dims,
                 const CheckOne& check_one) {
  FASTRNN_CHECK(count >= 1 && count <= kMaxCalls, op, ": between 1 and ", kMaxCalls, " calls at once");
  for (int k = 0; k < count; ++k) dims[k] = check_one(device, params[k]);
  if (count < 2) return false;
  check_companions(op, params, dims);
  return true;
}

}  // namespace

void check_rnn_forward(const RnnDevice& device, const RnnForwardParams* params, int count, RnnDims* dims) {
  const char* op = "rnn_forward";
  if (!check_calls(op, device, params, count, dims, check_forward)) return;
  const RnnForwardParams &a = params[0], &b = params[1];
  check_halves(op, "y", a.y, b.y, dims[0].P);
  check_no_overlap(op, {{"h_n", &a.h_n}, {"c_n", &a.c_n}, {"reserve", &a.reserve}, {"workspace", &a.workspace}},
                   {{"h_n", &b.h_n}, {"c_n", &b.c_n}, {"reserve", &b.reserve}, {"workspace", &b.workspace},
                    {"y", &b.y}});
  check_no_overlap(op, {{"y", &a.y}}, {{"h_n", &b.h_n}, {"c_n", &b.c_n}, {"reserve", &b.reserve},
                                        {"workspace", &b.workspace}});
}

void check_rnn_backward(const RnnDevice& device, const RnnBackwardParams* params, int count, RnnDims* dims) {
  const char* op = "rnn_backward";
  if (!check_calls(op, device, params, count, dims, check_backward)) return;
  // The directions' input gradients add up in the one dx they share.
  const RnnBackwardParams &a = params[0], &b = params[1];
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

}  // namespace fastrnn
