// One sequence driver for every cell (csrc/cells), forward and BPTT backward.
//
// Data layout: the rows of x, y and the reserve are the (t, b) pairs that are really computed,
// step after step: T*B rows for a full batch, sum(batch_sizes) for packed sequences. Step t
// owns rows [offset(t), offset(t) + batch_sizes[t]), so padding is never stored or computed.
//
// Forward:  xp = x W_ih^T + b_ih for all rows (one product), then per step
//           gh = h W_hh^T for the active rows and the cell's element math on (xp, gh).
// Backward: per step in reverse processing order, the cell's gate gradients, then
//           dh_prev = dgates_hh W_hh; after the loop dx, dW_ih, dW_hh and the bias
//           gradients are large products over all rows.
#include "cpu/rnn.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <tuple>
#include <utility>

#include "cells/elman.h"
#include "cells/gru.h"
#include "cells/lstm.h"
#include "common/checks.h"
#include "common/dispatch.h"
#include "common/error.h"
#include "common/parallel.h"
#include "cpu/gemm/gemm.h"

namespace fastrnn::cpu {
namespace {

// Element math below this many elements runs on one thread.
constexpr int64_t kSerialBelow = 4096;
constexpr int64_t kAlign = 64;

// Hands out 64-byte-aligned pieces of one buffer. With a null base it only adds up sizes, so
// the size query and the kernels share one layout.
class Carver {
 public:
  explicit Carver(void* base) : base_(static_cast<char*>(base)) {}
  template <typename T>
  T* take(int64_t count) {
    offset_ = (offset_ + kAlign - 1) / kAlign * kAlign;
    T* piece = base_ ? reinterpret_cast<T*>(base_ + offset_) : nullptr;
    offset_ += count * static_cast<int64_t>(sizeof(T));
    return piece;
  }
  int64_t bytes() const { return offset_; }

 private:
  char* base_;
  int64_t offset_ = 0;
};

// The GEMM packing slots come last in every workspace. A size query (no base) asks for one
// per OpenMP thread; a run uses as many as the given workspace holds, so a thread count that
// changed since the query cannot overrun it.
template <typename T>
GemmScratch take_scratch(Carver& carver, const TensorView* workspace) {
  GemmScratch scratch;
  scratch.bytes_per_thread = gemm_scratch_bytes_per_thread(dtype_of<T>());
  int64_t slots = omp_get_max_threads();
  if (workspace) {
    const int64_t start = (carver.bytes() + kAlign - 1) / kAlign * kAlign;
    slots = std::min<int64_t>(slots, (workspace->nbytes() - start) / scratch.bytes_per_thread);
  }
  scratch.threads = static_cast<int>(std::max<int64_t>(slots, 0));
  scratch.data = carver.take<char>(scratch.threads * scratch.bytes_per_thread);
  return scratch;
}

struct Dims {
  int64_t T, B, I, H, G;
  int64_t rows;  // computed (t, b) pairs
};

template <typename T>
struct ForwardWorkspace {
  T* xp = nullptr;  // (rows, G*H) input projection, when it is not written into the reserve
  T* gh = nullptr;  // (B, G*H) one step's recurrent projection
  GemmScratch scratch;
  int64_t bytes = 0;
};

template <typename T>
ForwardWorkspace<T> forward_workspace(const TensorView* workspace, CellKind cell, const Dims& d, bool training) {
  Carver carver(workspace ? workspace->data : nullptr);
  ForwardWorkspace<T> ws;
  // Training cells with a reserve get their projection written straight into it (see forward).
  if (!(training && reserve_blocks(cell) > 0)) ws.xp = carver.take<T>(d.rows * d.G * d.H);
  ws.gh = carver.take<T>(d.B * d.G * d.H);
  ws.scratch = take_scratch<T>(carver, workspace);
  ws.bytes = carver.bytes();
  return ws;
}

template <typename T>
struct BackwardWorkspace {
  T* dgates_ih = nullptr;  // (rows, G*H) dL/d(pre-activation), input side
  T* dgates_hh = nullptr;  // (rows, G*H) recurrent side; aliases dgates_ih unless the cell splits them
  T* h_prev = nullptr;     // (rows, H) the state each row started from
  GemmScratch scratch;
  int64_t bytes = 0;
};

template <typename T>
BackwardWorkspace<T> backward_workspace(const TensorView* workspace, CellKind cell, const Dims& d) {
  Carver carver(workspace ? workspace->data : nullptr);
  BackwardWorkspace<T> ws;
  ws.dgates_ih = carver.take<T>(d.rows * d.G * d.H);
  ws.dgates_hh = cell == CellKind::Gru ? carver.take<T>(d.rows * d.G * d.H) : ws.dgates_ih;
  ws.h_prev = carver.take<T>(d.rows * d.H);
  ws.scratch = take_scratch<T>(carver, workspace);
  ws.bytes = carver.bytes();
  return ws;
}

// The steps in processing order, t = 0..T-1 or T-1..0, with each step's first row.
class StepWalker {
 public:
  StepWalker(const Dims& d, const int64_t* batch_sizes, bool reverse_time)
      : d_(d), batch_sizes_(batch_sizes), reverse_(reverse_time) {
    t_ = reverse_ ? d.T - 1 : 0;
    offset_ = reverse_ ? d.rows - batch(t_) : 0;
  }
  bool done() const { return t_ < 0 || t_ >= d_.T; }
  int64_t t() const { return t_; }
  int64_t offset() const { return offset_; }
  int64_t batch() const { return batch(t_); }
  // Active rows of step t (0 outside the sequence).
  int64_t batch(int64_t t) const {
    if (t < 0 || t >= d_.T) return 0;
    return batch_sizes_ ? batch_sizes_[t] : d_.B;
  }
  void next() {
    if (reverse_) {
      --t_;
      if (t_ >= 0) offset_ -= batch(t_);
    } else {
      offset_ += batch(t_);
      ++t_;
    }
  }

 private:
  const Dims& d_;
  const int64_t* batch_sizes_;
  bool reverse_;
  int64_t t_, offset_;
};

template <typename T>
const T* optional_data(const TensorView& v) {
  return v.defined() ? v.data_as<T>() : nullptr;
}

// Columns sums of a (rows, cols) matrix: the bias gradients.
template <typename T>
void column_sums(const T* m, int64_t rows, int64_t cols, T* out) {
  parallel_rows(1, cols, 256, [&](int64_t, int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) out[j] = T(0);
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = m + r * cols;
      for (int64_t j = j0; j < j1; ++j) out[j] += row[j];
    }
  });
}

template <class Cell, typename T>
void forward_impl(const RnnForwardParams& p, const Dims& d) {
  const int64_t B = d.B, H = d.H, GH = d.G * d.H, R = Cell::kReserveBlocks * d.H;
  const ForwardWorkspace<T> ws = forward_workspace<T>(&p.workspace, p.cell, d, p.training);
  T* reserve = p.training && R > 0 ? p.reserve.data_as<T>() : nullptr;
  const T* bias_ih = optional_data<T>(p.bias_ih);
  const T* bias_hh = optional_data<T>(p.bias_hh);
  const T* weight_hh = p.weight_hh.data_as<T>();
  T* y = p.y.data_as<T>();
  T* h = p.h_n.data_as<T>();
  T* c = Cell::kHasCellState ? p.c_n.data_as<T>() : nullptr;

  // The input projection of every row. In training it goes straight into the reserve rows
  // (stride R), where the cell overwrites each unit's inputs with its saved activations.
  T* xp = ws.xp ? ws.xp : reserve;
  const int64_t xp_ld = ws.xp ? GH : R;
  if (bias_ih) {
    parallel_rows(d.rows, GH, kSerialBelow, [&](int64_t r, int64_t j0, int64_t j1) {
      std::memcpy(xp + r * xp_ld + j0, bias_ih + j0, (j1 - j0) * sizeof(T));
    });
  }
  GemmArgs<T> proj;
  proj.trans_b = true;
  proj.M = d.rows, proj.N = GH, proj.K = d.I;
  proj.A = p.x.data_as<T>(), proj.lda = d.I;
  proj.B = p.weight_ih.data_as<T>(), proj.ldb = d.I;
  proj.beta = bias_ih ? T(1) : T(0);
  proj.C = xp, proj.ldc = xp_ld;
  gemm(proj, ws.scratch);

  // The state lives in the outputs: h_n (and c_n) start as h0 (and c0) and are updated in
  // place, so a sequence that ends early keeps its last state.
  std::memcpy(h, p.h0.data, B * H * sizeof(T));
  if (c) std::memcpy(c, p.c0.data, B * H * sizeof(T));

  for (StepWalker step(d, optional_data<int64_t>(p.batch_sizes), p.reverse); !step.done(); step.next()) {
    const int64_t bt = step.batch(), row0 = step.offset();
    if (bt == 0) continue;
    GemmArgs<T> rec;
    rec.trans_b = true;
    rec.M = bt, rec.N = GH, rec.K = H;
    rec.A = h, rec.lda = H;
    rec.B = weight_hh, rec.ldb = H;
    rec.C = ws.gh, rec.ldc = GH;
    gemm(rec, ws.scratch);
    parallel_rows(bt, H, kSerialBelow, [&](int64_t b, int64_t j0, int64_t j1) {
      const T* xrow = xp + (row0 + b) * xp_ld;
      const T* grow = ws.gh + b * GH;
      T* rrow = reserve ? reserve + (row0 + b) * R : nullptr;
      T* hb = h + b * H;
      T* cb = c ? c + b * H : nullptr;
      T* yb = y + (row0 + b) * H;
      for (int64_t j = j0; j < j1; ++j) {
        T h_new, c_new = T(0);
        Cell::forward(H, j, xrow, grow, bias_hh, hb[j], cb ? cb[j] : T(0), h_new, c_new, rrow);
        hb[j] = h_new;
        yb[j] = h_new;
        if (cb) cb[j] = c_new;
      }
    });
  }
}

template <class Cell, typename T>
void backward_impl(const RnnBackwardParams& p, const Dims& d) {
  const int64_t B = d.B, H = d.H, GH = d.G * d.H, R = Cell::kReserveBlocks * d.H;
  const BackwardWorkspace<T> ws = backward_workspace<T>(&p.workspace, p.cell, d);
  const T* reserve = R > 0 ? p.reserve.data_as<T>() : nullptr;
  const T* y = p.y.data_as<T>();
  const T* dy = p.dy.data_as<T>();
  const T* h0 = p.h0.data_as<T>();
  const T* c0 = Cell::kHasCellState ? p.c0.data_as<T>() : nullptr;
  // The running gradients w.r.t. the state live in the outputs dh0 (and dc0), as in forward.
  T* dh = p.dh0.data_as<T>();
  T* dc = Cell::kHasCellState ? p.dc0.data_as<T>() : nullptr;
  std::memcpy(dh, p.dh_n.data, B * H * sizeof(T));
  if (dc) std::memcpy(dc, p.dc_n.data, B * H * sizeof(T));

  // Walk the steps against the forward's order.
  for (StepWalker step(d, optional_data<int64_t>(p.batch_sizes), !p.reverse); !step.done(); step.next()) {
    const int64_t bt = step.batch(), row0 = step.offset();
    if (bt == 0) continue;
    // The forward reached step t from step t-1 (t+1 in reverse). That step's first rows are
    // the same sequences; rows it did not have started at step t from h0 / c0.
    const int64_t prev_rows = step.batch(p.reverse ? step.t() + 1 : step.t() - 1);
    const int64_t prev_row0 = p.reverse ? row0 + bt : row0 - prev_rows;
    parallel_rows(bt, H, kSerialBelow, [&](int64_t b, int64_t j0, int64_t j1) {
      const int64_t row = row0 + b;
      const bool from_prev = b < prev_rows;
      const T* hp = from_prev ? y + (prev_row0 + b) * H : h0 + b * H;
      const T* cp = nullptr;
      if constexpr (Cell::kHasCellState) {
        cp = from_prev ? reserve + (prev_row0 + b) * R + Cell::kReserveCellBlock * H : c0 + b * H;
      }
      const T* rrow = reserve ? reserve + row * R : nullptr;
      const T* yrow = y + row * H;
      const T* dyrow = dy + row * H;
      T* dgi = ws.dgates_ih + row * GH;
      T* dgh = ws.dgates_hh + row * GH;
      T* hprow = ws.h_prev + row * H;
      T* dhb = dh + b * H;
      T* dcb = dc ? dc + b * H : nullptr;
      for (int64_t j = j0; j < j1; ++j) {
        T dc_j = dcb ? dcb[j] : T(0);
        dhb[j] = Cell::backward(H, j, rrow, yrow[j], hp[j], cp ? cp[j] : T(0), dhb[j] + dyrow[j], dc_j, dgi, dgh);
        if (dcb) dcb[j] = dc_j;
        hprow[j] = hp[j];
      }
    });
    GemmArgs<T> rec;  // dh_prev (+)= dgates_hh W_hh
    rec.M = bt, rec.N = H, rec.K = GH;
    rec.A = ws.dgates_hh + row0 * GH, rec.lda = GH;
    rec.B = p.weight_hh.data_as<T>(), rec.ldb = H;
    rec.beta = Cell::kDirectHiddenGrad ? T(1) : T(0);
    rec.C = dh, rec.ldc = H;
    gemm(rec, ws.scratch);
  }

  // Everything left is a product over all rows at once.
  GemmArgs<T> dx;  // dx = dgates_ih W_ih
  dx.M = d.rows, dx.N = d.I, dx.K = GH;
  dx.A = ws.dgates_ih, dx.lda = GH;
  dx.B = p.weight_ih.data_as<T>(), dx.ldb = d.I;
  dx.C = p.dx.data_as<T>(), dx.ldc = d.I;
  gemm(dx, ws.scratch);

  GemmArgs<T> dw_ih;  // dW_ih = dgates_ih^T x
  dw_ih.trans_a = true;
  dw_ih.M = GH, dw_ih.N = d.I, dw_ih.K = d.rows;
  dw_ih.A = ws.dgates_ih, dw_ih.lda = GH;
  dw_ih.B = p.x.data_as<T>(), dw_ih.ldb = d.I;
  dw_ih.C = p.dweight_ih.data_as<T>(), dw_ih.ldc = d.I;
  gemm(dw_ih, ws.scratch);

  GemmArgs<T> dw_hh;  // dW_hh = dgates_hh^T h_prev
  dw_hh.trans_a = true;
  dw_hh.M = GH, dw_hh.N = H, dw_hh.K = d.rows;
  dw_hh.A = ws.dgates_hh, dw_hh.lda = GH;
  dw_hh.B = ws.h_prev, dw_hh.ldb = H;
  dw_hh.C = p.dweight_hh.data_as<T>(), dw_hh.ldc = H;
  gemm(dw_hh, ws.scratch);

  if (p.dbias_ih.defined()) column_sums(ws.dgates_ih, d.rows, GH, p.dbias_ih.data_as<T>());
  if (p.dbias_hh.defined()) column_sums(ws.dgates_hh, d.rows, GH, p.dbias_hh.data_as<T>());
}

// Calls fn(Cell{}) with the cell type of `kind` for element type T.
template <typename T, typename Fn>
void with_cell(CellKind kind, const Fn& fn) {
  using cells::Activation;
  switch (kind) {
    case CellKind::RnnTanh: return fn(cells::ElmanCell<T, Activation::Tanh>{});
    case CellKind::RnnRelu: return fn(cells::ElmanCell<T, Activation::Relu>{});
    case CellKind::Lstm: return fn(cells::LstmCell<T>{});
    case CellKind::Gru: return fn(cells::GruCell<T>{});
  }
  FASTRNN_CHECK(false, "unknown cell kind ", static_cast<int>(kind));
}

static_assert(cells::LstmCell<float>::kReserveBlocks == reserve_blocks(CellKind::Lstm), "");
static_assert(cells::GruCell<float>::kReserveBlocks == reserve_blocks(CellKind::Gru), "");
static_assert(cells::LstmCell<float>::kGates == gate_count(CellKind::Lstm), "");
static_assert(cells::GruCell<float>::kGates == gate_count(CellKind::Gru), "");

void check_cell(const char* op, CellKind cell) {
  const int k = static_cast<int>(cell);
  FASTRNN_CHECK_VALUE(k >= 0 && k <= 3, op, ": unknown cell kind ", k);
}

void check_float_dtype(const char* op, DType dtype) {
  FASTRNN_CHECK(dtype == DType::Float32 || dtype == DType::Float64, op, ": dtype ", dtype_name(dtype),
                " is not supported on the CPU; expected float32 or float64");
}

// The sizes every kernel argument must agree on, read from x, h0 and batch_sizes,
// with batch_sizes itself checked (it decides which rows the kernels touch).
Dims check_dims(const char* op, CellKind cell, const TensorView& x, const TensorView& h0,
                const TensorView& batch_sizes) {
  Dims d{};
  d.G = gate_count(cell);
  const bool packed = batch_sizes.defined();
  FASTRNN_CHECK(x.defined() && x.ndim == (packed ? 2 : 3), op, ": expected x of ", packed ? 2 : 3,
                " dimensions, got ", x.ndim);
  FASTRNN_CHECK(h0.defined() && h0.ndim == 2, op, ": expected h0 of 2 dimensions");
  d.B = h0.size(0);
  d.H = h0.size(1);
  d.I = x.size(x.ndim - 1);
  FASTRNN_CHECK(d.H > 0, op, ": expected hidden_size > 0");
  FASTRNN_CHECK(d.B > 0, op, ": expected batch size > 0");
  if (packed) {
    check_cpu_array(op, "batch_sizes", batch_sizes, DType::Int64, {batch_sizes.size(0)});
    d.T = batch_sizes.size(0);
    const int64_t* bs = batch_sizes.data_as<int64_t>();
    int64_t total = 0;
    for (int64_t t = 0; t < d.T; ++t) {
      FASTRNN_CHECK(bs[t] >= 0 && bs[t] <= d.B && (t == 0 || bs[t] <= bs[t - 1]), op,
                    ": batch_sizes must be non-increasing and within [0, ", d.B, "]; got ", bs[t],
                    " at step ", t);
      total += bs[t];
    }
    d.rows = total;
    FASTRNN_CHECK(x.size(0) == d.rows, op, ": x has ", x.size(0), " rows but batch_sizes sum to ", d.rows);
  } else {
    d.T = x.size(0);
    FASTRNN_CHECK(x.size(1) == d.B, op, ": x has batch size ", x.size(1), " but h0 has ", d.B);
    d.rows = d.T * d.B;
  }
  FASTRNN_CHECK(d.T > 0, op, ": expected sequence length to be larger than 0");
  return d;
}

}  // namespace

RnnBufferSizes rnn_buffer_sizes(CellKind cell, DType dtype, int64_t total_rows, int64_t batch,
                                int64_t hidden_size) {
  check_cell("rnn_buffer_sizes", cell);
  Dims d{};
  d.B = batch, d.H = hidden_size, d.G = gate_count(cell), d.rows = total_rows;
  RnnBufferSizes sizes{};
  sizes.reserve_elements = total_rows * reserve_blocks(cell) * hidden_size;
  FASTRNN_DISPATCH_FLOATING(dtype, "rnn_buffer_sizes", [&] {
    // The training forward's workspace is the smaller one; inference needs the projection too.
    sizes.forward_workspace_bytes = forward_workspace<scalar_t>(nullptr, cell, d, false).bytes;
    sizes.backward_workspace_bytes = backward_workspace<scalar_t>(nullptr, cell, d).bytes;
  });
  return sizes;
}

void rnn_forward(const RnnForwardParams& p) {
  const char* op = "rnn_forward";
  check_cell(op, p.cell);
  const Dims d = check_dims(op, p.cell, p.x, p.h0, p.batch_sizes);
  const DType dt = p.x.dtype;
  const bool lstm = p.cell == CellKind::Lstm;
  const int64_t GH = d.G * d.H;
  const bool packed = p.batch_sizes.defined();
  check_float_dtype(op, dt);
  if (packed) {
    check_cpu_array(op, "x", p.x, dt, {d.rows, d.I});
    check_cpu_array(op, "y", p.y, dt, {d.rows, d.H});
  } else {
    check_cpu_array(op, "x", p.x, dt, {d.T, d.B, d.I});
    check_cpu_array(op, "y", p.y, dt, {d.T, d.B, d.H});
  }
  check_cpu_array(op, "h0", p.h0, dt, {d.B, d.H});
  check_cpu_array(op, "weight_ih", p.weight_ih, dt, {GH, d.I});
  check_cpu_array(op, "weight_hh", p.weight_hh, dt, {GH, d.H});
  check_optional_cpu_array(op, "bias_ih", p.bias_ih, dt, {GH});
  check_optional_cpu_array(op, "bias_hh", p.bias_hh, dt, {GH});
  check_cpu_array(op, "h_n", p.h_n, dt, {d.B, d.H});
  if (lstm) {
    check_cpu_array(op, "c0", p.c0, dt, {d.B, d.H});
    check_cpu_array(op, "c_n", p.c_n, dt, {d.B, d.H});
  }
  const int64_t R = reserve_blocks(p.cell) * d.H;
  if (p.training && R > 0) check_cpu_array(op, "reserve", p.reserve, dt, {d.rows, R});
  FASTRNN_DISPATCH_FLOATING(dt, op, [&] {
    const auto ws = forward_workspace<scalar_t>(&p.workspace, p.cell, d, p.training);
    FASTRNN_CHECK(ws.scratch.threads >= 1, op, ": workspace is too small; ask rnn_buffer_sizes for its size");
    check_workspace(op, p.workspace, ws.bytes);
  });
  check_no_overlap(op,
                   {{"y", &p.y}, {"h_n", &p.h_n}, {"c_n", &p.c_n}, {"reserve", &p.reserve}, {"workspace", &p.workspace}},
                   {{"x", &p.x}, {"h0", &p.h0}, {"c0", &p.c0}, {"weight_ih", &p.weight_ih}, {"weight_hh", &p.weight_hh},
                    {"bias_ih", &p.bias_ih}, {"bias_hh", &p.bias_hh}, {"batch_sizes", &p.batch_sizes}});
  FASTRNN_DISPATCH_FLOATING(dt, op, [&] {
    with_cell<scalar_t>(p.cell, [&](auto cell) { forward_impl<decltype(cell), scalar_t>(p, d); });
  });
}

void rnn_backward(const RnnBackwardParams& p) {
  const char* op = "rnn_backward";
  check_cell(op, p.cell);
  const Dims d = check_dims(op, p.cell, p.x, p.h0, p.batch_sizes);
  const DType dt = p.x.dtype;
  const bool lstm = p.cell == CellKind::Lstm;
  const int64_t GH = d.G * d.H;
  const bool packed = p.batch_sizes.defined();
  check_float_dtype(op, dt);
  for (auto [name, view, width] : {std::make_tuple("x", &p.x, d.I), std::make_tuple("y", &p.y, d.H),
                                   std::make_tuple("dy", &p.dy, d.H), std::make_tuple("dx", &p.dx, d.I)}) {
    if (packed) {
      check_cpu_array(op, name, *view, dt, {d.rows, width});
    } else {
      check_cpu_array(op, name, *view, dt, {d.T, d.B, width});
    }
  }
  for (auto [name, view] : {std::make_pair("h0", &p.h0), std::make_pair("dh_n", &p.dh_n), std::make_pair("dh0", &p.dh0)}) {
    check_cpu_array(op, name, *view, dt, {d.B, d.H});
  }
  if (lstm) {
    for (auto [name, view] : {std::make_pair("c0", &p.c0), std::make_pair("dc_n", &p.dc_n), std::make_pair("dc0", &p.dc0)}) {
      check_cpu_array(op, name, *view, dt, {d.B, d.H});
    }
  }
  check_cpu_array(op, "weight_ih", p.weight_ih, dt, {GH, d.I});
  check_cpu_array(op, "weight_hh", p.weight_hh, dt, {GH, d.H});
  check_cpu_array(op, "dweight_ih", p.dweight_ih, dt, {GH, d.I});
  check_cpu_array(op, "dweight_hh", p.dweight_hh, dt, {GH, d.H});
  check_optional_cpu_array(op, "dbias_ih", p.dbias_ih, dt, {GH});
  check_optional_cpu_array(op, "dbias_hh", p.dbias_hh, dt, {GH});
  const int64_t R = reserve_blocks(p.cell) * d.H;
  if (R > 0) check_cpu_array(op, "reserve", p.reserve, dt, {d.rows, R});
  FASTRNN_DISPATCH_FLOATING(dt, op, [&] {
    const auto ws = backward_workspace<scalar_t>(&p.workspace, p.cell, d);
    FASTRNN_CHECK(ws.scratch.threads >= 1, op, ": workspace is too small; ask rnn_buffer_sizes for its size");
    check_workspace(op, p.workspace, ws.bytes);
  });
  check_no_overlap(op,
                   {{"dx", &p.dx}, {"dh0", &p.dh0}, {"dc0", &p.dc0}, {"dweight_ih", &p.dweight_ih},
                    {"dweight_hh", &p.dweight_hh}, {"dbias_ih", &p.dbias_ih}, {"dbias_hh", &p.dbias_hh},
                    {"workspace", &p.workspace}},
                   {{"x", &p.x}, {"h0", &p.h0}, {"c0", &p.c0}, {"weight_ih", &p.weight_ih}, {"weight_hh", &p.weight_hh},
                    {"batch_sizes", &p.batch_sizes}, {"y", &p.y}, {"reserve", &p.reserve}, {"dy", &p.dy},
                    {"dh_n", &p.dh_n}, {"dc_n", &p.dc_n}});
  FASTRNN_DISPATCH_FLOATING(dt, op, [&] {
    with_cell<scalar_t>(p.cell, [&](auto cell) { backward_impl<decltype(cell), scalar_t>(p, d); });
  });
}

}  // namespace fastrnn::cpu
