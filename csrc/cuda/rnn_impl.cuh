#pragma once
// The step-wise CUDA RNN driver, one layer and direction per call (included by one
// rnn_kernels_<dtype>.cu per storage type S, which instantiates forward_calls / backward_calls).
//
// Forward: one product x W_ih^T over all rows (tensor cores for float16/bfloat16, and for
// float32 when TF32 is allowed), then per step a product h_prev W_hh^T of the step's active
// rows and one fused kernel applying the shared cell math (csrc/cells) to every (row, unit).
// An LSTM projection adds a product h = m W_hr^T per step. The running state h (and c) lives in
// the workspace in the compute type; rows of sequences that have ended are simply not touched
// again, so it ends as h_n. Backward walks the steps the other way: a fused kernel with the cell
// backward per step, then dh_prev = dgates W_hh; after the loop dx, dW_ih, dW_hh, dW_hr and
// the bias gradients are products (or column sums) over all rows at once. Where it applies, the
// forward's recurrence runs instead as one persistent cooperative kernel (rnn_persistent.cuh)
// that writes the same y, state and reserve, and the backward's loop likewise as one that
// writes the same dgates, h_prev and dh0/dc0, so each side runs the same either way.
//
// Rows are numbered as on the CPU (StepWalker, common/rnn_plan.h): step t owns
// [offset(t), offset(t) + batch(t)), and packed sequences cost nothing for their padding. The host reads batch_sizes
// (on the CPU, as torch keeps it) to size each step's launches, so nothing waits on the GPU.
#include <cuda_runtime.h>

#include "cells/dispatch.h"
#include "common/rnn_params.h"
#include "cuda/gemm.cuh"
#include "cuda/launch.h"
#include "cuda/numeric.cuh"
#include "cuda/rnn.h"
#include "cuda/rnn_persistent.cuh"
#include "cuda/rnn_workspace.cuh"

namespace fastrnn::cuda {
namespace rnn_detail {

constexpr int kThreads = 256;

// dst (rows, cols) = src (rows, cols), converted; both row-major with their own row strides.
template <typename From, typename To>
__global__ void copy_rows(const From* src, int64_t src_ld, To* dst, int64_t dst_ld, int64_t rows, int64_t cols) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * cols) return;
  const int64_t r = i / cols, c = i - r * cols;
  dst[r * dst_ld + c] = narrow<To>(widen(src[r * src_ld + c]));
}

template <typename From, typename To>
void copy(const From* src, int64_t src_ld, To* dst, int64_t dst_ld, int64_t rows, int64_t cols, cudaStream_t s,
          const char* op) {
  if (rows * cols == 0) return;
  copy_rows<From, To><<<blocks_for(rows * cols, kThreads), kThreads, 0, s>>>(src, src_ld, dst, dst_ld, rows, cols);
  check_launch(op);
}

// out (cols) = column sums of m (rows, cols): 32 columns per block, 8 row groups reduced in
// shared memory (a fixed order: the result does not depend on timing).
template <typename T, typename S>
__global__ void column_sums(const T* m, int64_t rows, int64_t cols, S* out) {
  __shared__ T part[8][33];
  const int64_t j = int64_t(blockIdx.x) * 32 + threadIdx.x;
  T sum = T(0);
  if (j < cols) {
    for (int64_t r = threadIdx.y; r < rows; r += 8) sum += m[r * cols + j];
  }
  part[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && j < cols) {
    T total = T(0);
#pragma unroll
    for (int k = 0; k < 8; ++k) total += part[k][threadIdx.x];
    out[j] = narrow<S>(total);
  }
}

// ---- Forward ------------------------------------------------------------------------------------

template <typename S, typename T>
struct ForwardStep {
  int64_t bt, H, P, GH, R;
  const T* xp;       // (bt, G*H) this step's rows of x W_ih^T
  const T* gates;    // (bt, G*H) h_prev W_hh^T
  const T* bias_ih;  // (G*H)
  const T* bias_hh;  // (G*H)
  T* h;              // (B, P) running state: read (GRU) and written (without a projection)
  T* c;              // (B, H) running cell state (LSTM)
  T* reserve;        // (bt, R) this step's reserve rows (training)
  S* y;              // (bt, P) this step's output rows, row stride y_ld
  int64_t y_ld;
  T* m;              // (bt, H) unprojected output rows, row stride m_ld (projection)
  int64_t m_ld;
};

// One thread per (row, unit) of the step: the cell's forward, exactly the CPU's element math.
template <class Cell, typename S, typename T, bool kTraining, bool kProj>
__global__ void cell_forward(const ForwardStep<S, T> a) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= a.bt * a.H) return;
  const int64_t b = i / a.H, j = i - b * a.H;
  const T hp = Cell::kReadsHiddenPrev ? a.h[b * a.P + j] : T(0);
  const T cp = Cell::kHasCellState ? a.c[b * a.H + j] : T(0);
  T h = T(0), c = T(0);
  Cell::forward(a.xp + b * a.GH + j, a.gates + b * a.GH + j, a.H, a.bias_ih + j, a.bias_hh + j, a.H, hp, cp, h, c,
                kTraining ? a.reserve + b * a.R + j : nullptr);
  if (Cell::kHasCellState) a.c[b * a.H + j] = c;
  if (kProj) {
    a.m[b * a.m_ld + j] = h;
  } else {
    a.h[b * a.P + j] = h;
    a.y[b * a.y_ld + j] = narrow<S>(h);
  }
}

template <typename S>
MathMode math_mode(bool allow_tf32) {
  if constexpr (std::is_same_v<S, __half>) {
    return MathMode::F16;
  } else if constexpr (std::is_same_v<S, __nv_bfloat16>) {
    return MathMode::Bf16;
  } else if constexpr (std::is_same_v<S, float>) {
    return allow_tf32 ? MathMode::Tf32 : MathMode::Simt;
  } else {
    return MathMode::Simt;
  }
}

template <typename TA, typename TB, typename TC>
GemmArgs<TA, TB, TC> product(int64_t M, int64_t N, int64_t K, const TA* A, int64_t lda, bool trans_a, const TB* B,
                             int64_t ldb, bool trans_b, TC* C, int64_t ldc, float beta = 0.0f) {
  GemmArgs<TA, TB, TC> g;
  g.M = M, g.N = N, g.K = K;
  g.A = A, g.lda = lda, g.trans_a = trans_a;
  g.B = B, g.ldb = ldb, g.trans_b = trans_b;
  g.C = C, g.ldc = ldc, g.beta = beta;
  return g;
}

template <class Cell, typename S>
void forward_one(const RnnForwardParams& p, const RnnDims& d, const RnnLaunch& launch) {
  using T = compute_t<S>;
  const char* op = "rnn_forward";
  const auto stream = reinterpret_cast<cudaStream_t>(launch.stream);
  const MathMode mode = math_mode<S>(launch.allow_tf32);
  const int64_t H = d.H, P = d.P, GH = d.G * d.H;
  const ForwardSpace<T> ws = forward_space<T>(p.workspace.data, d);
  const bool training = p.training && Cell::kReserveBlocks > 0;
  const int64_t R = reserve_blocks(p.cell, d.proj) * H;
  T* reserve = training ? p.reserve.data_as<T>() : nullptr;
  const S* weight_ih = p.weight_ih.data_as<S>();
  const S* weight_hh = p.weight_hh.data_as<S>();
  const S* weight_hr = d.proj ? p.weight_hr.data_as<S>() : nullptr;
  S* y = p.y.data_as<S>();
  const int64_t y_ld = row_stride(p.y);

  // Biases in T (absent ones as zeros, so the cells always add both), the initial states.
  for (auto [bias, copy_to] : {std::make_pair(&p.bias_ih, ws.bias_ih), std::make_pair(&p.bias_hh, ws.bias_hh)}) {
    if (bias->defined()) {
      copy(bias->template data_as<S>(), GH, copy_to, GH, 1, GH, stream, op);
    } else {
      check_cuda(cudaMemsetAsync(copy_to, 0, GH * sizeof(T), stream), op, "cudaMemsetAsync");
    }
  }
  copy(p.h0.data_as<S>(), P, ws.h, P, d.B, P, stream, op);
  if (Cell::kHasCellState) copy(p.c0.data_as<S>(), H, ws.c, H, d.B, H, stream, op);

  // xp = x W_ih^T over every row at once.
  gemm<T>(product(d.rows, GH, d.I, p.x.data_as<S>(), d.I, false, weight_ih, d.I, true, ws.xp, GH), mode, stream, op);

  // The whole recurrence in one cooperative launch where it applies (rnn_persistent.cuh).
  const T* h_last = persistent_forward<Cell, S>(p, d, ws, training, reserve, R, stream);
  const int64_t* batch_sizes = p.batch_sizes.defined() ? p.batch_sizes.data_as<int64_t>() : nullptr;
  for (StepWalker step(d, batch_sizes, p.reverse, false); !h_last && !step.done(); step.next()) {
    const int64_t bt = step.batch(), row0 = step.offset();
    if (bt == 0) continue;
    // The first bt rows of h are this step's sequences (sorted longest first, so the rows a
    // step lacks are the ones that ended, or have not started, and keep their state).
    gemm<T>(product(bt, GH, P, static_cast<const T*>(ws.h), P, false, weight_hh, P, true, ws.gates, GH), mode, stream,
            op);
    ForwardStep<S, T> a;
    a.bt = bt, a.H = H, a.P = P, a.GH = GH, a.R = R;
    a.xp = ws.xp + row0 * GH;
    a.gates = ws.gates;
    a.bias_ih = ws.bias_ih, a.bias_hh = ws.bias_hh;
    a.h = ws.h, a.c = ws.c;
    a.reserve = training ? reserve + row0 * R : nullptr;
    a.y = y + row0 * y_ld, a.y_ld = y_ld;
    // With a projection the training forward keeps m in the reserve's last block (for dW_hr).
    a.m = d.proj ? (training ? reserve + row0 * R + cells::LstmLayout::kProjectionInput * H : ws.m)
                 : nullptr;
    a.m_ld = training ? R : H;
    const unsigned blocks = blocks_for(bt * H, kThreads);
    if (d.proj) {
      if (training) {
        cell_forward<Cell, S, T, true, true><<<blocks, kThreads, 0, stream>>>(a);
      } else {
        cell_forward<Cell, S, T, false, true><<<blocks, kThreads, 0, stream>>>(a);
      }
      check_launch(op);
      // h = m W_hr^T, into the running state and the output rows.
      gemm<T>(product(bt, P, H, static_cast<const T*>(a.m), a.m_ld, false, weight_hr, H, true, ws.h, P), mode, stream,
              op);
      copy(ws.h, P, a.y, y_ld, bt, P, stream, op);
    } else {
      if (training) {
        cell_forward<Cell, S, T, true, false><<<blocks, kThreads, 0, stream>>>(a);
      } else {
        cell_forward<Cell, S, T, false, false><<<blocks, kThreads, 0, stream>>>(a);
      }
      check_launch(op);
    }
  }
  copy(h_last ? h_last : ws.h, P, p.h_n.data_as<S>(), P, d.B, P, stream, op);
  if (Cell::kHasCellState) copy(ws.c, H, p.c_n.data_as<S>(), H, d.B, H, stream, op);
}

// ---- Backward -----------------------------------------------------------------------------------

template <typename S, typename T>
struct BackwardStep {
  int64_t bt, H, P, GH, R, row0, prev_bt, prev_row0;
  const T* reserve;   // (rows, R)
  const S* y;         // (rows, P), row stride y_ld
  int64_t y_ld;
  const S* dy;        // (rows, P), row stride dy_ld
  int64_t dy_ld;
  const S* h0;        // (B, P)
  const S* c0;        // (B, H)
  T* dh;              // (B, P) running dL/dh
  T* dc;              // (B, H) running dL/dc
  const T* dm;        // (bt, H) dL/dm of the step (projection)
  T* dgates_ih;       // (rows, G*H)
  T* dgates_hh;       // (rows, G*H)
  T* h_prev;          // (rows, P)
  T* dh_total;        // (rows, P), projection only
};

// One thread per (row, unit): the cell backward. Without a projection (kOwnsState) the thread
// also adds dy, owns its element of dh (the direct term goes there, W_hh's term is added by
// the product that follows) and records h_prev for dW_hh.
template <class Cell, typename S, typename T, bool kOwnsState>
__global__ void cell_backward(const BackwardStep<S, T> a) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= a.bt * a.H) return;
  const int64_t b = i / a.H, j = i - b * a.H, row = a.row0 + b;
  const bool continued = b < a.prev_bt;  // else this row started from h0 (and c0)
  T hp = T(0), cp = T(0), h = T(0), dc = T(0);
  if (kOwnsState || Cell::kReadsHiddenPrev) {
    hp = continued ? T(widen(a.y[(a.prev_row0 + b) * a.y_ld + j])) : T(widen(a.h0[b * a.P + j]));
  }
  if (Cell::kHasCellState) {
    cp = continued ? a.reserve[(a.prev_row0 + b) * a.R + cells::LstmLayout::kCellState * a.H + j]
                   : T(widen(a.c0[b * a.H + j]));
    dc = a.dc[b * a.H + j];
  }
  if (Cell::kBackwardReadsOutput) h = T(widen(a.y[row * a.y_ld + j]));
  const T dh = kOwnsState ? a.dh[b * a.P + j] + T(widen(a.dy[row * a.dy_ld + j])) : a.dm[b * a.H + j];
  const T* rrow = Cell::kReserveBlocks > 0 ? a.reserve + row * a.R + j : nullptr;
  const T direct = Cell::backward(rrow, a.H, h, hp, cp, dh, dc, a.dgates_ih + row * a.GH + j,
                                  a.dgates_hh + row * a.GH + j);
  if (Cell::kHasCellState) a.dc[b * a.H + j] = dc;
  if (kOwnsState) {
    a.dh[b * a.P + j] = direct;
    a.h_prev[row * a.P + j] = hp;
  }
}

// Projection: per (row, output column) the total dL/dh (kept for dW_hr) and h_prev.
template <typename S, typename T>
__global__ void projection_backward_prepare(const BackwardStep<S, T> a) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= a.bt * a.P) return;
  const int64_t b = i / a.P, j = i - b * a.P, row = a.row0 + b;
  a.dh_total[row * a.P + j] = a.dh[b * a.P + j] + T(widen(a.dy[row * a.dy_ld + j]));
  a.h_prev[row * a.P + j] =
      b < a.prev_bt ? T(widen(a.y[(a.prev_row0 + b) * a.y_ld + j])) : T(widen(a.h0[b * a.P + j]));
}

template <class Cell, typename S>
void backward_one(const RnnBackwardParams& p, const RnnDims& d, const RnnLaunch& launch, bool accumulate_dx) {
  using T = compute_t<S>;
  const char* op = "rnn_backward";
  const auto stream = reinterpret_cast<cudaStream_t>(launch.stream);
  const MathMode mode = math_mode<S>(launch.allow_tf32);
  const int64_t H = d.H, P = d.P, GH = d.G * d.H;
  const BackwardSpace<T> ws = backward_space<T>(p.workspace.data, d, Cell::kSplitRecurrentGrad);
  const int64_t R = reserve_blocks(p.cell, d.proj) * H;
  const T* reserve = R > 0 ? p.reserve.data_as<T>() : nullptr;
  const S* weight_hh = p.weight_hh.data_as<S>();
  const S* weight_hr = d.proj ? p.weight_hr.data_as<S>() : nullptr;

  copy(p.dh_n.data_as<S>(), P, ws.dh, P, d.B, P, stream, op);
  if (Cell::kHasCellState) copy(p.dc_n.data_as<S>(), H, ws.dc, H, d.B, H, stream, op);

  BackwardStep<S, T> a;
  a.H = H, a.P = P, a.GH = GH, a.R = R;
  a.reserve = reserve;
  a.y = p.y.data_as<S>(), a.y_ld = row_stride(p.y);
  a.dy = p.dy.data_as<S>(), a.dy_ld = row_stride(p.dy);
  a.h0 = p.h0.data_as<S>();
  a.c0 = Cell::kHasCellState ? p.c0.data_as<S>() : nullptr;
  a.dh = ws.dh, a.dc = ws.dc, a.dm = ws.dm;
  a.dgates_ih = ws.dgates_ih, a.dgates_hh = ws.dgates_hh;
  a.h_prev = ws.h_prev, a.dh_total = ws.dh_total;
  // The whole loop in one cooperative launch where it applies (rnn_persistent.cuh); it writes
  // what the loop writes, so the products after it are the same either way.
  const bool done = persistent_backward<Cell, S>(p, d, ws, reserve, R, stream);
  const int64_t* batch_sizes = p.batch_sizes.defined() ? p.batch_sizes.data_as<int64_t>() : nullptr;
  for (StepWalker step(d, batch_sizes, p.reverse, true); !done && !step.done(); step.next()) {
    const int64_t bt = step.batch();
    if (bt == 0) continue;
    a.bt = bt, a.row0 = step.offset(), a.prev_bt = step.prev_batch(), a.prev_row0 = step.prev_offset();
    if (!d.proj) {
      cell_backward<Cell, S, T, true><<<blocks_for(bt * H, kThreads), kThreads, 0, stream>>>(a);
      check_launch(op);
    } else {
      projection_backward_prepare<S, T><<<blocks_for(bt * P, kThreads), kThreads, 0, stream>>>(a);
      check_launch(op);
      // dm = dh_total W_hr
      gemm<T>(product(bt, H, P, static_cast<const T*>(ws.dh_total + a.row0 * P), P, false, weight_hr, H, false,
                      ws.dm, H),
              mode, stream, op);
      cell_backward<Cell, S, T, false><<<blocks_for(bt * H, kThreads), kThreads, 0, stream>>>(a);
      check_launch(op);
    }
    // dh_prev = dgates_hh W_hh (+ the cell's direct term, already in dh).
    gemm<T>(product(bt, P, GH, static_cast<const T*>(ws.dgates_hh + a.row0 * GH), GH, false, weight_hh, P, false,
                    ws.dh, P, Cell::kDirectHiddenGrad ? 1.0f : 0.0f),
            mode, stream, op);
  }

  // Everything else is a product over all rows at once.
  const T* dgates_ih = ws.dgates_ih;
  const T* dgates_hh = ws.dgates_hh;
  gemm<T>(product(d.rows, d.I, GH, dgates_ih, GH, false, p.weight_ih.data_as<S>(), d.I, false, p.dx.data_as<S>(), d.I,
                  accumulate_dx ? 1.0f : 0.0f),
          mode, stream, op);
  gemm<T>(product(GH, d.I, d.rows, dgates_ih, GH, true, p.x.data_as<S>(), d.I, false, p.dweight_ih.data_as<S>(), d.I),
          mode, stream, op);
  gemm<T>(product(GH, P, d.rows, dgates_hh, GH, true, static_cast<const T*>(ws.h_prev), P, false,
                  p.dweight_hh.data_as<S>(), P),
          mode, stream, op);
  if (d.proj) {  // dW_hr = dh_total^T m, m saved in the reserve's last block
    gemm<T>(product(P, H, d.rows, static_cast<const T*>(ws.dh_total), P, true,
                    reserve + cells::LstmLayout::kProjectionInput * H, R, false,
                    p.dweight_hr.data_as<S>(), H),
            mode, stream, op);
  }
  const dim3 sum_threads(32, 8);
  if (p.dbias_ih.defined()) {
    column_sums<T, S><<<blocks_for(GH, 32), sum_threads, 0, stream>>>(dgates_ih, d.rows, GH, p.dbias_ih.data_as<S>());
    check_launch(op);
  }
  if (p.dbias_hh.defined()) {
    column_sums<T, S><<<blocks_for(GH, 32), sum_threads, 0, stream>>>(dgates_hh, d.rows, GH, p.dbias_hh.data_as<S>());
    check_launch(op);
  }
  copy(ws.dh, P, p.dh0.data_as<S>(), P, d.B, P, stream, op);
  if (Cell::kHasCellState) copy(ws.dc, H, p.dc0.data_as<S>(), H, d.B, H, stream, op);
}

}  // namespace rnn_detail

// The calls of one entry point, checked by rnn.cu, queued in order on the caller's stream.
template <typename S>
void forward_calls(const RnnForwardParams* params, const RnnDims* dims, int count, const RnnLaunch& launch) {
  using T = compute_t<S>;
  for (int k = 0; k < count; ++k) {
    cells::with_cell<T>(params[k].cell, [&](auto cell) {
      rnn_detail::forward_one<decltype(cell), S>(params[k], dims[k], launch);
    });
  }
}

// The persistent kernel rnn_forward (or rnn_backward) would launch for `cell` (for the plan query).
template <typename S>
const void* persistent_kernel(CellKind cell, bool training, bool backward) {
  using T = compute_t<S>;
  const void* kernel = nullptr;
  cells::with_cell<T>(cell, [&](auto c) {
    using Cell = decltype(c);
    kernel = backward ? rnn_detail::persistent_backward_kernel_for<Cell, S>()
                      : rnn_detail::persistent_forward_kernel_for<Cell, S>(training && Cell::kReserveBlocks > 0);
  });
  return kernel;
}

template <typename S>
void backward_calls(const RnnBackwardParams* params, const RnnDims* dims, int count, const RnnLaunch& launch) {
  using T = compute_t<S>;
  for (int k = 0; k < count; ++k) {
    cells::with_cell<T>(params[k].cell, [&](auto cell) {
      rnn_detail::backward_one<decltype(cell), S>(params[k], dims[k], launch, k > 0);
    });
  }
}

}  // namespace fastrnn::cuda
