#pragma once
// The RNN plan both devices share: a call's sizes (read and checked once), the checks of a
// forward or backward call, row strides, the order the steps are walked in, and the carving of
// workspaces. The pattern of common/pool_params.h: one check that the CPU and CUDA entry points
// both call, each passing an RnnDevice with what only it knows (where its arrays live, which
// dtypes it computes in, how big its workspaces are). Host code only: no kernel calls these.
#include <cstdint>
#include <initializer_list>

#include "common/carver.h"
#include "common/rnn_params.h"
#include "common/tensor_view.h"

namespace fastrnn {

// The sizes of one layer-direction call. `rows` counts the (t, b) pairs really computed:
// T*B, or the sum of batch_sizes for packed sequences. P = H unless an LSTM projects h.
struct RnnDims {
  int64_t T = 0, B = 0, I = 0, H = 0, P = 0, G = 0, rows = 0;
  bool proj = false;
};

// Independent calls (the directions of a layer) one entry point runs together.
constexpr int kMaxCalls = 2;

// The workspace bytes of a forward and of a backward call.
struct RnnWorkspaceBytes {
  int64_t forward = 0, backward = 0;
};

// What a device adds to the shared checks. The entry points of cpu/rnn.cpp and cuda/rnn.cu
// each define one; the messages of its array checks are its own.
struct RnnDevice {
  DeviceType type;
  const char* where;  // "the CPU", "a CUDA device": for "expected x on <where>"
  bool recurrent_mask;        // the kernels implement recurrent dropout (recurrent_mask)
  bool final_state_optional;  // h_n of a one-step unpacked forward, dh_n and dc_n may be absent
  // Refuses a dtype this device does not compute in.
  void (*check_dtype)(const char* op, DType dtype);
  // v present, on x's device, of `dtype`, contiguous and of exactly `shape`.
  void (*check_array)(const char* op, const char* name, const TensorView& v, const TensorView& x, DType dtype,
                      std::initializer_list<int64_t> shape);
  // The (present) workspace is usable on x's device and holds at least `bytes`.
  void (*check_workspace)(const char* op, const TensorView& workspace, const TensorView& x, int64_t bytes);
  // The workspace bytes of a call of these sizes.
  RnnWorkspaceBytes (*workspace_bytes)(CellKind cell, DType dtype, const RnnDims& d);
};

// Refuses a CellKind outside the table (a direct call into _C may pass any int).
void check_cell_kind(const char* op, CellKind cell);

// The dtype of the reserve for tensors of `dtype`: float16 and bfloat16 keep theirs in float32.
DType rnn_reserve_dtype(DType dtype);

// Reads and checks the sizes of one layer-direction call from x (T, B, I) or packed (rows, I),
// h0 (B, P), weight_hh and weight_hr, and validates batch_sizes (int64, on the CPU on either
// device: it decides which rows the kernels touch) when given. Device and dtype are the
// caller's to check.
RnnDims read_rnn_dims(const char* op, CellKind cell, const TensorView& x, const TensorView& h0,
                      const TensorView& weight_hh, const TensorView& weight_hr, const TensorView& batch_sizes);

// Sizes of the buffers the caller allocates; see cpu/rnn.h.
RnnBufferSizes rnn_buffer_sizes(const RnnDevice& device, CellKind cell, DType dtype, int64_t total_rows, int64_t batch,
                                int64_t input_size, int64_t hidden_size, int64_t proj_size);

// Check `count` calls (1..kMaxCalls) run together and write their sizes into dims. Two calls
// are the directions of one layer: one cell, dtype, x and batch_sizes, outputs apart except
// two y (and dy) that are the halves of one array's rows, and (backward) one shared dx.
void check_rnn_forward(const RnnDevice& device, const RnnForwardParams* params, int count, RnnDims* dims);
void check_rnn_backward(const RnnDevice& device, const RnnBackwardParams* params, int count, RnnDims* dims);

// The row buffers of a backward call, one row per (t, b), in the compute type T: the start of
// either device's backward workspace (each adds its own pieces after them).
template <typename T>
struct BackwardRows {
  T* dgates_ih = nullptr;  // (rows, G*H) dL/d(pre-activations), input side
  T* dgates_hh = nullptr;  // (rows, G*H) recurrent side; the same buffer unless the cell splits them
  T* h_prev = nullptr;     // (rows, P) the state each row started from
  T* dh_total = nullptr;   // (rows, P) dL/dh of each row (projection only, for dW_hr)
};

namespace {  // private to each translation unit (each CPU instruction set's; see cells/activations.h)

// The distance between consecutive rows of a row-shaped view: (rows, width), or (T, B, width)
// whose row t*B + b sits at t*stride0 + b*stride1. Size-1 dimensions may carry any stride
// (torch's contiguous tensors do), so the stride comes from a dimension that has extent.
inline int64_t row_stride(const TensorView& v) {
  if (v.ndim == 2) return v.sizes[0] > 1 ? v.strides[0] : v.sizes[1];
  if (v.sizes[1] > 1) return v.strides[1];
  return v.sizes[0] > 1 ? v.strides[0] : v.sizes[2];
}

template <typename T>
void carve_backward_rows(Carver& c, const RnnDims& d, bool split_dgates, BackwardRows<T>& s) {
  const int64_t GH = d.G * d.H;
  s.dgates_ih = c.take<T>(d.rows * GH);
  s.dgates_hh = split_dgates ? c.take<T>(d.rows * GH) : s.dgates_ih;
  s.h_prev = c.take<T>(d.rows * d.P);
  if (d.proj) s.dh_total = c.take<T>(d.rows * d.P);
}

// The steps in processing order, t = 0..T-1 or T-1..0, with each step's first row and the
// step processed just before it in the *forward* pass (whose first rows are the same
// sequences; rows it lacked start from h0). Step t owns rows [offset(t), offset(t) + batch(t)).
class StepWalker {
 public:
  StepWalker(const RnnDims& d, const int64_t* batch_sizes, bool reverse, bool walk_backwards)
      : d_(d), batch_sizes_(batch_sizes), reverse_(reverse), down_(reverse != walk_backwards) {
    t_ = down_ ? d.T - 1 : 0;
    offset_ = down_ ? d.rows - batch(t_) : 0;
  }
  bool done() const { return t_ < 0 || t_ >= d_.T; }
  int64_t t() const { return t_; }
  int64_t offset() const { return offset_; }
  int64_t batch() const { return batch(t_); }
  // Active rows and first row of the step the forward pass came from (0 rows at the start).
  int64_t prev_batch() const { return batch(reverse_ ? t_ + 1 : t_ - 1); }
  int64_t prev_offset() const { return reverse_ ? offset_ + batch() : offset_ - prev_batch(); }
  int64_t batch(int64_t t) const {
    if (t < 0 || t >= d_.T) return 0;
    return batch_sizes_ ? batch_sizes_[t] : d_.B;
  }
  void next() {
    if (down_) {
      --t_;
      if (t_ >= 0) offset_ -= batch(t_);
    } else {
      offset_ += batch(t_);
      ++t_;
    }
  }

 private:
  const RnnDims& d_;
  const int64_t* batch_sizes_;
  bool reverse_, down_;
  int64_t t_, offset_;
};

}  // namespace
}  // namespace fastrnn
