#pragma once
// The persistent forward recurrence: one cooperative launch runs all T steps of one layer and
// direction (included by rnn_impl.cuh, which falls back to its step-wise loop when the plan in
// rnn_persistent.cu says no).
//
// Block k owns hidden units [k*U, k*U + U) with all G of their gates: the G*U rows of W_hh
// (G*U, H) stay in shared memory, in the storage type, for the whole sequence. Per step each
// block, for its units and every batch row,
//   1. stages h_prev (B, H) in chunks of batch rows into shared memory, read with __ldcg (L2,
//      never a stale L1 line: other SMs wrote it during the previous step);
//   2. computes gh = h_prev W_hh_slice^T into shared memory: each warp a 4 x 4 tile of (batch
//      row, gate row), its lanes splitting k and reducing with shuffles;
//   3. applies Cell::forward per (row, unit) with the precomputed x W_ih^T of the step, writes
//      h into the other half of a global double buffer and into y, c in place (each unit's
//      cell state is only ever touched by its owning block), and in training the reserve rows
//      in exactly the step-wise layout, so the step-wise backward consumes them unchanged;
// then the grid meets at one barrier. Double buffering makes one barrier per step enough: the
// buffer written at step s+1 was last read at step s, before that step's barrier.
//
// The barrier is cooperative_groups' grid.sync(): one thread per block does atom.add.release.gpu
// on a counter and spins with ld.acquire.gpu, between two __syncthreads, on a barrier word the
// driver provides with a cooperative launch. That is the same protocol a hand-written barrier
// would use, but it needs no workspace to zero before each launch, cannot inherit a counter left
// behind by an aborted launch, and traps (instead of hanging) if ever launched non-cooperatively.
//
// The persistent backward (persistent_backward_kernel, below the forward) walks the steps the
// other way with the roles of the products swapped; see the comment above it.
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include "cuda/launch.h"
#include "cuda/numeric.cuh"
#include "cuda/rnn_persistent.h"
#include "cuda/rnn_workspace.cuh"

namespace fastrnn::cuda {
namespace rnn_detail {

constexpr int kPersistentThreads = 256;
constexpr int kTile = 4;  // a warp's tile: kTile batch rows x kTile gate rows

template <typename S, typename T>
struct PersistentForward {
  int steps, B, H, units, batch_chunk;
  bool reverse;
  const T* xp;         // (steps*B, G*H) x W_ih^T, row t*B + b
  const S* weight_hh;  // (G*H, H)
  const T* bias_ih;    // (G*H)
  const T* bias_hh;    // (G*H)
  T* h0;               // (B, H) holds h0 on entry; the state after even steps
  T* h1;               // (B, H) the state after odd steps
  T* c;                // (B, H) running cell state (LSTM)
  T* reserve;          // (steps*B, R) training only, else null
  int64_t R;
  S* y;                // (steps*B, H) rows y_ld apart
  int64_t y_ld;
};

// Dynamic shared memory: W_hh slice (G*U, H) in S, then h_prev rows (batch_chunk, H) and their
// gates (batch_chunk, G*U) in T. The host computes the same sizes (rnn_persistent.cu).
__host__ __device__ inline int64_t persistent_weight_bytes(int G, int U, int H, int weight_bytes) {
  return (int64_t(G) * U * H * weight_bytes + 15) / 16 * 16;
}

// g_s (nb, G*U) = h_s (nb, H) w_s (G*U, H)^T, one 4x4 tile per warp at a time.
template <typename S, typename T>
__device__ __forceinline__ void slice_products(const S* w_s, const T* h_s, T* g_s, int nb, int GU, int H) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  const int row_tiles = (GU + kTile - 1) / kTile, batch_tiles = (nb + kTile - 1) / kTile;
  for (int tile = warp; tile < row_tiles * batch_tiles; tile += warps) {
    const int r0 = (tile % row_tiles) * kTile, b0 = (tile / row_tiles) * kTile;
    // Rows past the edge repeat the last valid one (in bounds); their sums are not stored.
    const S* w[kTile];
    const T* h[kTile];
#pragma unroll
    for (int i = 0; i < kTile; ++i) {
      w[i] = w_s + int64_t(min(r0 + i, GU - 1)) * H;
      h[i] = h_s + int64_t(min(b0 + i, nb - 1)) * H;
    }
    T acc[kTile][kTile] = {};
    for (int k = lane; k < H; k += 32) {  // consecutive lanes, consecutive words: no bank conflicts
      T hv[kTile], wv[kTile];
#pragma unroll
      for (int i = 0; i < kTile; ++i) {
        hv[i] = h[i][k];
        wv[i] = T(widen(w[i][k]));
      }
#pragma unroll
      for (int i = 0; i < kTile; ++i) {
#pragma unroll
        for (int j = 0; j < kTile; ++j) acc[i][j] += hv[i] * wv[j];
      }
    }
#pragma unroll
    for (int i = 0; i < kTile; ++i) {
#pragma unroll
      for (int j = 0; j < kTile; ++j) {
#pragma unroll
        for (int offset = 16; offset > 0; offset /= 2) acc[i][j] += __shfl_xor_sync(0xffffffffu, acc[i][j], offset);
        // Every lane holds every sum; lane i*kTile + j stores one.
        if (lane == i * kTile + j && b0 + i < nb && r0 + j < GU) g_s[(b0 + i) * GU + r0 + j] = acc[i][j];
      }
    }
  }
}

template <class Cell, typename S, typename T, bool kTraining>
__global__ void __launch_bounds__(kPersistentThreads, 1) persistent_forward_kernel(const PersistentForward<S, T> a) {
  constexpr int G = Cell::kGates;
  extern __shared__ __align__(16) unsigned char smem[];
  const int H = a.H, U = a.units, GU = G * U;
  const int64_t GH = int64_t(G) * H;
  const int u0 = blockIdx.x * U;
  const int owned = min(U, H - u0);  // units of this block
  S* w_s = reinterpret_cast<S*>(smem);
  T* h_s = reinterpret_cast<T*>(smem + persistent_weight_bytes(G, U, H, sizeof(S)));
  T* g_s = h_s + int64_t(a.batch_chunk) * H;

  // Slice row g*U + u is W_hh row g*H + u0 + u; rows of units past H are zeros.
  for (int64_t i = threadIdx.x; i < int64_t(GU) * H; i += blockDim.x) {
    const int r = int(i / H), k = int(i - int64_t(r) * H), g = r / U, u = r - g * U;
    w_s[i] = u < owned ? a.weight_hh[(int64_t(g) * H + u0 + u) * H + k] : narrow<S>(T(0));
  }
  __syncthreads();

  cooperative_groups::grid_group grid = cooperative_groups::this_grid();
  for (int s = 0; s < a.steps; ++s) {
    const int64_t row0 = int64_t(a.reverse ? a.steps - 1 - s : s) * a.B;
    const T* h_prev = (s & 1) ? a.h1 : a.h0;
    T* h_next = (s & 1) ? a.h0 : a.h1;
    for (int b0 = 0; b0 < a.B; b0 += a.batch_chunk) {
      const int nb = min(a.batch_chunk, a.B - b0);
      const T* src = h_prev + int64_t(b0) * H;
      for (int i = threadIdx.x; i < nb * H; i += blockDim.x) h_s[i] = __ldcg(src + i);
      __syncthreads();
      slice_products(w_s, h_s, g_s, nb, GU, H);
      __syncthreads();
      for (int i = threadIdx.x; i < nb * owned; i += blockDim.x) {
        const int bl = i / owned, u = i - bl * owned, b = b0 + bl, j = u0 + u;
        const int64_t row = row0 + b;
        T xg[G], hg[G];
#pragma unroll
        for (int g = 0; g < G; ++g) {
          xg[g] = a.xp[row * GH + int64_t(g) * H + j];
          hg[g] = g_s[bl * GU + g * U + u];
        }
        const T hp = Cell::kReadsHiddenPrev ? h_s[int64_t(bl) * H + j] : T(0);
        const T cp = Cell::kHasCellState ? a.c[int64_t(b) * H + j] : T(0);
        T h = T(0), c = T(0);
        Cell::forward(xg, hg, 1, a.bias_ih + j, a.bias_hh + j, H, hp, cp, h, c,
                      kTraining ? a.reserve + row * a.R + j : nullptr);
        if (Cell::kHasCellState) a.c[int64_t(b) * H + j] = c;
        h_next[int64_t(b) * H + j] = h;
        a.y[row * a.y_ld + j] = narrow<S>(h);
      }
      __syncthreads();  // h_s and g_s are refilled by the next chunk
    }
    if (s + 1 < a.steps) grid.sync();  // publishes h_next to every block
  }
}

template <class Cell, typename S>
const void* persistent_forward_kernel_for(bool training) {
  using T = compute_t<S>;
  return training ? reinterpret_cast<const void*>(&persistent_forward_kernel<Cell, S, T, true>)
                  : reinterpret_cast<const void*>(&persistent_forward_kernel<Cell, S, T, false>);
}

// ---- Backward ----------------------------------------------------------------------------------
//
// Per step (walking the forward's steps in reverse) the step-wise backward runs cell_backward
// over every (row, unit), then dh_prev (B, H) = dgates_hh (B, G*H) W_hh (G*H, H). The cell
// backward of unit j needs only column j of dh (and of dc, dy, the reserve); the product's
// output column j needs every unit's dgates of the row but only column j of W_hh. So block k
// owns hidden units U_k = [k*U, k*U + U) for BOTH halves of the step:
//   A. the cell backward of its units for every batch row: reads dh[:, U_k] (written by this
//      block's own phase B of the previous step), writes the step's dgates rows (all G gates of
//      U_k) into the workspace, dc[:, U_k] in place, h_prev (for dW_hh) and dh[:, U_k] = the
//      cell's direct term (GRU: z * dh; else 0), exactly as cell_backward does;
//   -- grid barrier: every block's dgates of the step are written --
//   B. dh[:, U_k] = direct + dgates_hh[step rows] (B, G*H) W_hh[:, U_k] (G*H, U): the (G*H, U)
//      column slice of W_hh stays in shared memory for the whole sequence (stored transposed,
//      (U, G*H), so the forward's slice_products computes it); the step's dgates_hh rows are
//      staged in chunks of batch rows through L2 (__ldcg: written by other SMs).
// One barrier per step is enough, without double buffering: the only data crossing blocks is
// dgates_hh, and every step writes its own rows of it (the after-loop weight-gradient products
// read them all), so phase A of step s+1 never overwrites what a slower block still reads in
// phase B of step s. dh and dc columns never leave their block, so __syncthreads orders
// B(s) -> A(s+1). The W_hh slice has the forward's size (G*U*H elements), so the same shapes
// fit; the staged rows are longer (G*H + U per row instead of H + G*U). The forward's split
// (block k keeps W_hh rows of its gates) would leave each block partial sums of every column of
// dh_prev: a cross-block reduction, i.e. atomics or a second barrier per step.

template <typename S, typename T>
struct PersistentBackward {
  int steps, B, H, units, batch_chunk;
  bool reverse;
  int64_t R;
  const T* reserve;    // (steps*B, R) the training forward's reserve (null for Elman)
  const S* y;          // (steps*B, H) rows y_ld apart
  int64_t y_ld;
  const S* dy;         // (steps*B, H) rows dy_ld apart
  int64_t dy_ld;
  const S* h0;         // (B, H)
  const S* c0;         // (B, H) LSTM, else null
  const S* weight_hh;  // (G*H, H)
  T* dh;               // (B, H) holds dh_n on entry, dh0 on exit
  T* dc;               // (B, H) holds dc_n on entry, dc0 on exit (LSTM)
  T* dgates_ih;        // (steps*B, G*H)
  T* dgates_hh;        // (steps*B, G*H) the same buffer unless Cell::kSplitRecurrentGrad
  T* h_prev;           // (steps*B, H) the state each row started from (for dW_hh)
};

template <class Cell, typename S, typename T>
__global__ void __launch_bounds__(kPersistentThreads, 1) persistent_backward_kernel(const PersistentBackward<S, T> a) {
  constexpr int G = Cell::kGates;
  extern __shared__ __align__(16) unsigned char smem[];
  const int H = a.H, U = a.units, GH = G * H;
  const int u0 = blockIdx.x * U;
  const int owned = min(U, H - u0);  // units of this block
  S* w_s = reinterpret_cast<S*>(smem);
  T* dg_s = reinterpret_cast<T*>(smem + persistent_weight_bytes(G, U, H, sizeof(S)));
  T* out_s = dg_s + int64_t(a.batch_chunk) * GH;

  // Slice row u is column u0 + u of W_hh (G*H, H); rows of units past H are zeros. Row-major
  // walk over W_hh so neighbouring threads read neighbouring columns (a one-time load).
  for (int64_t i = threadIdx.x; i < int64_t(GH) * U; i += blockDim.x) {
    const int r = int(i / U), u = int(i - int64_t(r) * U);
    w_s[int64_t(u) * GH + r] = u < owned ? a.weight_hh[int64_t(r) * H + u0 + u] : narrow<S>(T(0));
  }
  __syncthreads();

  cooperative_groups::grid_group grid = cooperative_groups::this_grid();
  for (int s = 0; s < a.steps; ++s) {
    // Step t of the forward; it started from step t_prev's output, or from h0 (c0) at the
    // forward's first step (the backward's last).
    const int t = a.reverse ? s : a.steps - 1 - s;
    const bool continued = s + 1 < a.steps;
    const int64_t row0 = int64_t(t) * a.B;
    const int64_t prev_row0 = int64_t(a.reverse ? t + 1 : t - 1) * a.B;  // used only when continued

    // A. cell_backward<Cell, S, T, true> for this block's units.
    for (int64_t i = threadIdx.x; i < int64_t(a.B) * owned; i += blockDim.x) {
      const int b = int(i / owned), j = u0 + int(i - int64_t(b) * owned);
      const int64_t row = row0 + b;
      const T hp = continued ? T(widen(a.y[(prev_row0 + b) * a.y_ld + j])) : T(widen(a.h0[int64_t(b) * H + j]));
      T cp = T(0), dc = T(0), h = T(0);
      if (Cell::kHasCellState) {
        cp = continued ? a.reserve[(prev_row0 + b) * a.R + cells::LstmLayout::kCellState * H + j]
                       : T(widen(a.c0[int64_t(b) * H + j]));
        dc = a.dc[int64_t(b) * H + j];
      }
      if (Cell::kBackwardReadsOutput) h = T(widen(a.y[row * a.y_ld + j]));
      const T dh = a.dh[int64_t(b) * H + j] + T(widen(a.dy[row * a.dy_ld + j]));
      const T* rrow = Cell::kReserveBlocks > 0 ? a.reserve + row * a.R + j : nullptr;
      const T direct =
          Cell::backward(rrow, H, h, hp, cp, dh, dc, a.dgates_ih + row * GH + j, a.dgates_hh + row * GH + j);
      if (Cell::kHasCellState) a.dc[int64_t(b) * H + j] = dc;
      a.dh[int64_t(b) * H + j] = direct;
      a.h_prev[row * H + j] = hp;
    }
    grid.sync();  // every block's dgates rows of step t are written (and visible through L2)

    // B. dh[:, U_k] = direct + dgates_hh[rows of t] W_hh[:, U_k], a chunk of batch rows at a time.
    for (int b0 = 0; b0 < a.B; b0 += a.batch_chunk) {
      const int nb = min(a.batch_chunk, a.B - b0);
      const T* src = a.dgates_hh + (row0 + b0) * GH;
      for (int64_t i = threadIdx.x; i < int64_t(nb) * GH; i += blockDim.x) dg_s[i] = __ldcg(src + i);
      __syncthreads();
      slice_products(w_s, dg_s, out_s, nb, U, GH);
      __syncthreads();
      for (int i = threadIdx.x; i < nb * owned; i += blockDim.x) {
        const int bl = i / owned, u = i - bl * owned;
        T* dh = a.dh + int64_t(b0 + bl) * H + u0 + u;
        *dh = (Cell::kDirectHiddenGrad ? *dh : T(0)) + out_s[bl * U + u];
      }
      __syncthreads();  // dg_s and out_s are refilled by the next chunk; dh is read by phase A
    }
  }
}

template <class Cell, typename S>
const void* persistent_backward_kernel_for() {
  return reinterpret_cast<const void*>(&persistent_backward_kernel<Cell, S, compute_t<S>>);
}

template <class Cell, typename S, class Params>
PersistentShape persistent_shape(const Params& p, const RnnDims& d, bool backward) {
  PersistentShape shape;
  shape.backward = backward;
  shape.gates = Cell::kGates;
  shape.weight_bytes = sizeof(S);
  shape.compute_bytes = sizeof(compute_t<S>);
  shape.projected = d.proj;
  shape.masked = p.recurrent_mask.defined();
  if (p.batch_sizes.defined()) {  // on the CPU, as torch keeps it
    const int64_t* sizes = p.batch_sizes.template data_as<int64_t>();
    for (int64_t t = 0; t < d.T; ++t) shape.variable_batch = shape.variable_batch || sizes[t] != d.B;
  }
  return shape;
}

// Runs the whole recurrence of forward_one persistently when the plan allows: ws.xp, the biases,
// ws.h (= h0) and ws.c (= c0) are ready on `stream`. Returns the buffer holding h_n, or null
// when the caller must run the step-wise loop instead (nothing has been touched then).
template <class Cell, typename S>
const compute_t<S>* persistent_forward(const RnnForwardParams& p, const RnnDims& d, const ForwardSpace<compute_t<S>>& ws,
                                       bool training, compute_t<S>* reserve, int64_t R, cudaStream_t stream) {
  using T = compute_t<S>;
  if (!rnn_persistent_enabled() || d.T == 0 || d.B == 0) return nullptr;
  const void* kernel = persistent_forward_kernel_for<Cell, S>(training);
  const PersistentPlan plan = plan_persistent(kernel, d, persistent_shape<Cell, S>(p, d, false));
  if (!plan.use) return nullptr;
  PersistentForward<S, T> a;
  a.steps = int(d.T), a.B = int(d.B), a.H = int(d.H), a.units = plan.units, a.batch_chunk = plan.batch_chunk;
  a.reverse = p.reverse;
  a.xp = ws.xp;
  a.weight_hh = p.weight_hh.data_as<S>();
  a.bias_ih = ws.bias_ih, a.bias_hh = ws.bias_hh;
  a.h0 = ws.h;
  a.h1 = ws.gates;  // (B, G*H) holds (B, H): the step-wise path's gate scratch is free here
  a.c = ws.c;
  a.reserve = training ? reserve : nullptr;
  a.R = R;
  a.y = p.y.data_as<S>(), a.y_ld = row_stride(p.y);
  void* args[] = {&a};
  const cudaError_t status = cudaLaunchCooperativeKernel(kernel, dim3(plan.blocks), dim3(kPersistentThreads), args,
                                                         size_t(plan.smem_bytes), stream);
  if (status == cudaErrorCooperativeLaunchTooLarge) {  // the plan was too hopeful: nothing ran
    cudaGetLastError();
    return nullptr;
  }
  check_cuda(status, "rnn_forward", "cudaLaunchCooperativeKernel");
  return (d.T & 1) ? a.h1 : a.h0;
}

// Runs the whole recurrence of backward_one persistently when the plan allows: ws.dh (= dh_n)
// and ws.dc (= dc_n) are ready on `stream`. Writes what the step-wise loop writes (every row of
// dgates_ih / dgates_hh / h_prev, dh0 into ws.dh, dc0 into ws.dc) and returns true, or returns
// false when the caller must run the step-wise loop instead (nothing has been touched then).
template <class Cell, typename S>
bool persistent_backward(const RnnBackwardParams& p, const RnnDims& d, const BackwardSpace<compute_t<S>>& ws,
                         const compute_t<S>* reserve, int64_t R, cudaStream_t stream) {
  using T = compute_t<S>;
  if (!rnn_persistent_enabled() || d.T == 0 || d.B == 0 || d.proj) return false;
  const void* kernel = persistent_backward_kernel_for<Cell, S>();
  const PersistentPlan plan = plan_persistent(kernel, d, persistent_shape<Cell, S>(p, d, true));
  if (!plan.use) return false;
  PersistentBackward<S, T> a;
  a.steps = int(d.T), a.B = int(d.B), a.H = int(d.H), a.units = plan.units, a.batch_chunk = plan.batch_chunk;
  a.reverse = p.reverse;
  a.R = R;
  a.reserve = reserve;
  a.y = p.y.data_as<S>(), a.y_ld = row_stride(p.y);
  a.dy = p.dy.data_as<S>(), a.dy_ld = row_stride(p.dy);
  a.h0 = p.h0.data_as<S>();
  a.c0 = Cell::kHasCellState ? p.c0.data_as<S>() : nullptr;
  a.weight_hh = p.weight_hh.data_as<S>();
  a.dh = ws.dh, a.dc = ws.dc;
  a.dgates_ih = ws.dgates_ih, a.dgates_hh = ws.dgates_hh;
  a.h_prev = ws.h_prev;
  void* args[] = {&a};
  const cudaError_t status = cudaLaunchCooperativeKernel(kernel, dim3(plan.blocks), dim3(kPersistentThreads), args,
                                                         size_t(plan.smem_bytes), stream);
  if (status == cudaErrorCooperativeLaunchTooLarge) {  // the plan was too hopeful: nothing ran
    cudaGetLastError();
    return false;
  }
  check_cuda(status, "rnn_backward", "cudaLaunchCooperativeKernel");
  return true;
}

}  // namespace rnn_detail
}  // namespace fastrnn::cuda
