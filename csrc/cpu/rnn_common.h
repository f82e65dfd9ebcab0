#pragma once
// Pieces of the CPU RNN driver shared by the portable checks (rnn.cpp) and the per-ISA
// kernels (rnn_<isa>.cpp).
#include <cstdint>

#include "common/parallel.h"
#include "common/rnn_params.h"
#include "common/tensor_view.h"

namespace fastrnn::cpu {

// The sizes of one layer-direction call. `rows` counts the (t, b) pairs really computed:
// T*B, or the sum of batch_sizes for packed sequences. P = H unless an LSTM projects h.
struct RnnDims {
  int64_t T = 0, B = 0, I = 0, H = 0, P = 0, G = 0, rows = 0;
  bool proj = false;
};

// Reads and checks the sizes of one layer-direction call from x (T, B, I) or packed (rows, I),
// h0 (B, P), weight_hh and weight_hr, and validates batch_sizes (on the CPU) when given.
// Device and dtype are the caller's to check. Defined in cpu/rnn.cpp.
RnnDims read_dims(const char* op, CellKind cell, const TensorView& x, const TensorView& h0,
                  const TensorView& weight_hh, const TensorView& weight_hr, const TensorView& batch_sizes);

struct RnnWorkspaceBytes {
  int64_t forward = 0, backward = 0;
};

// Independent calls (the directions of a layer) one entry point runs side by side.
constexpr int kMaxCalls = 2;

namespace {  // private to each translation unit (see cells/activations.h)

// The distance between consecutive rows of a row-shaped view: (rows, width), or (T, B, width)
// whose row t*B + b sits at t*stride0 + b*stride1. Size-1 dimensions may carry any stride
// (torch's contiguous tensors do), so the stride comes from a dimension that has extent.
inline int64_t row_stride(const TensorView& v) {
  if (v.ndim == 2) return v.sizes[0] > 1 ? v.strides[0] : v.sizes[1];
  if (v.sizes[1] > 1) return v.strides[1];
  return v.sizes[0] > 1 ? v.strides[0] : v.sizes[2];
}

constexpr int64_t kAlign = 64;

// Hands out 64-byte-aligned pieces of one buffer. With a null base it only adds up sizes, so
// the size query and the kernels share one layout. Addresses, not offsets, are aligned (a
// NumPy buffer may be only 16-byte aligned), so a size query includes that slack.
class Carver {
 public:
  explicit Carver(void* base) : base_(static_cast<char*>(base)) {}
  template <typename T>
  T* take(int64_t count) {
    const uintptr_t at = reinterpret_cast<uintptr_t>(base_) + static_cast<uintptr_t>(offset_);
    offset_ += static_cast<int64_t>((kAlign - at % kAlign) % kAlign);
    T* piece = base_ ? reinterpret_cast<T*>(base_ + offset_) : nullptr;
    offset_ += count * static_cast<int64_t>(sizeof(T));
    return piece;
  }
  int64_t bytes() const { return offset_ + (base_ ? 0 : kAlign); }

 private:
  char* base_;
  int64_t offset_ = 0;
};

// The steps in processing order, t = 0..T-1 or T-1..0, with each step's first row and the
// step processed just before it in the *forward* pass (whose first rows are the same
// sequences; rows it lacked start from h0).
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
}  // namespace fastrnn::cpu
