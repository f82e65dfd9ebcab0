#pragma once
// The workspace layouts of the CUDA RNN kernels, in the compute type T. The size query
// (rnn.cu) and the kernels (rnn_impl.cuh) carve the same layout, so they cannot disagree.
#include <cstdint>

#include "common/rnn_plan.h"

namespace fastrnn::cuda {

template <typename T>
struct ForwardSpace {
  T* xp = nullptr;       // (rows, G*H) x W_ih^T for every step
  T* gates = nullptr;    // (B, G*H) h_prev W_hh^T of one step
  T* h = nullptr;        // (B, P) running hidden state: h0, then each sequence's latest
  T* c = nullptr;        // (B, H) running cell state (LSTM)
  T* m = nullptr;        // (B, H) one step's unprojected output (projection, inference)
  T* bias_ih = nullptr;  // (G*H) bias_ih in T, or zeros
  T* bias_hh = nullptr;  // (G*H)
  int64_t bytes = 0;
};

template <typename T>
ForwardSpace<T> forward_space(void* base, const RnnDims& d) {
  const int64_t GH = d.G * d.H;
  Carver c(base);
  ForwardSpace<T> s;
  s.xp = c.take<T>(d.rows * GH);
  s.gates = c.take<T>(d.B * GH);
  s.h = c.take<T>(d.B * d.P);
  s.c = c.take<T>(d.B * d.H);
  if (d.proj) s.m = c.take<T>(d.B * d.H);
  s.bias_ih = c.take<T>(GH);
  s.bias_hh = c.take<T>(GH);
  s.bytes = c.bytes();
  return s;
}

// The row buffers both devices carve (BackwardRows, common/rnn_plan.h), then the running
// gradients.
template <typename T>
struct BackwardSpace : BackwardRows<T> {
  T* dh = nullptr;         // (B, P) running dL/dh: dh_n, then back to dh0
  T* dc = nullptr;         // (B, H) running dL/dc (LSTM)
  T* dm = nullptr;         // (B, H) one step's dL/dm (projection)
  int64_t bytes = 0;
};

template <typename T>
BackwardSpace<T> backward_space(void* base, const RnnDims& d, bool split_dgates) {
  Carver c(base);
  BackwardSpace<T> s;
  carve_backward_rows<T>(c, d, split_dgates, s);
  s.dh = c.take<T>(d.B * d.P);
  s.dc = c.take<T>(d.B * d.H);
  if (d.proj) s.dm = c.take<T>(d.B * d.H);
  s.bytes = c.bytes();
  return s;
}

}  // namespace fastrnn::cuda
