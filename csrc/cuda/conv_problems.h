#pragma once
// The three convolutions as implicit GEMMs, C[m, n] = sum_k A[m, k] * B[k, n], one GEMM per
// group. Each problem says where A and B's elements live (the im2col gather, with zeros
// outside the image) and where C goes. Plain host/device code with no CUDA intrinsics, so the
// index arithmetic is also checked on the host (tests/cuda_host/conv_problems_check.cpp).
//
//   forward          m = (n, p, q)   n = k_out          k = (c, r, s)
//   backward input   m = (n, h, w)   n = c              k = (k_out, r, s)   ("dx gather": only
//                    the (p, q) with p * stride - pad + r * dilation == h contribute)
//   backward weight  m = k_out       n = (c, r, s)      k = (n, p, q)       (split along k)
// Indices within a group; channel c means g * C/groups + c, k_out means g * K/groups + k_out.
#include <cstdint>

#include "common/macros.h"

namespace fastrnn::cuda::conv {

// Division by a run-time constant as a multiply-high and a shift (exact for n, d < 2^31):
// the gathers divide every index, and a hardware-less 32-bit division costs ~20 instructions.
struct FastDiv {
  uint32_t d = 1, mul = 1, shift = 0;
  FastDiv() = default;
  explicit FastDiv(int64_t divisor) : d(uint32_t(divisor)) {
    shift = 0;
    while ((uint64_t(1) << shift) < d) ++shift;
    mul = uint32_t(((uint64_t(1) << 32) * ((uint64_t(1) << shift) - d)) / d + 1);
  }
  FASTRNN_HOST_DEVICE int div(int n) const {
#if defined(__CUDA_ARCH__)
    const uint32_t hi = __umulhi(uint32_t(n), mul);
#else
    const uint32_t hi = uint32_t((uint64_t(uint32_t(n)) * mul) >> 32);
#endif
    return int((hi + uint32_t(n)) >> shift);
  }
};

// Element conversions: float16/bfloat16 specialise this in conv_kernels.cuh (Acc = float).
template <class T>
struct Elem {
  using Acc = T;
  static FASTRNN_HOST_DEVICE Acc to_acc(T v) { return v; }
  static FASTRNN_HOST_DEVICE T from_acc(Acc v) { return v; }
  static FASTRNN_HOST_DEVICE T zero() { return T(0); }
};

// Sizes as 32-bit ints (the launcher checks they fit) with the divisors the gathers use.
struct Shape {
  int N, C, H, W, K, R, S, P, Q;
  int sh, sw, ph, pw, dh, dw;
  int groups, Cg, Kg;  // channels per group
  int RS, PQ, HW, CgRS;
  FastDiv div_S, div_RS, div_Q, div_PQ, div_W, div_HW, div_sh, div_sw;
};

// The incoming gradient of the convolution's output, read at (n, k_out, p, q).
template <class T>
struct PlainGrad {
  const T* dy;  // (N, K, P, Q)
  FASTRNN_HOST_DEVICE T at(const Shape& s, int n, int k, int p, int q) const {
    return dy[((int64_t(n) * s.K + k) * s.P + p) * s.Q + q];
  }
  // The bias gradient sums plane_value over i < plane_size for every n.
  FASTRNN_HOST_DEVICE int64_t plane_size(const Shape& s) const { return int64_t(s.P) * s.Q; }
  FASTRNN_HOST_DEVICE T plane_value(const Shape& s, int n, int k, int64_t i) const {
    return dy[(int64_t(n) * s.K + k) * s.PQ + i];
  }
};

// The same after ReLU and a 2x2/2 max pool: the pooled gradient flows to the window's winner,
// and only where the pooled (post-ReLU) output is positive; rows and columns past the last
// whole window get nothing (floor mode).
template <class T>
struct PooledGrad {
  const T* dy;            // (N, K, Po, Qo)
  const T* y;             // (N, K, Po, Qo), the pooled output
  const uint8_t* argmax;  // (N, K, Po, Qo), 2 * dp + dq
  int Po, Qo;
  FASTRNN_HOST_DEVICE T at(const Shape& s, int n, int k, int p, int q) const {
    const int po = p >> 1, qo = q >> 1;
    if (po >= Po || qo >= Qo) return Elem<T>::zero();
    const int64_t i = ((int64_t(n) * s.K + k) * Po + po) * Qo + qo;
    if (argmax[i] != (((p & 1) << 1) | (q & 1))) return Elem<T>::zero();
    return !(Elem<T>::to_acc(y[i]) <= 0) ? dy[i] : Elem<T>::zero();  // NaN passes, as in torch's ReLU
  }
  FASTRNN_HOST_DEVICE int64_t plane_size(const Shape&) const { return int64_t(Po) * Qo; }
  FASTRNN_HOST_DEVICE T plane_value(const Shape& s, int n, int k, int64_t i) const {
    const int64_t j = (int64_t(n) * s.K + k) * Po * Qo + i;
    return !(Elem<T>::to_acc(y[j]) <= 0) ? dy[j] : Elem<T>::zero();
  }
};

// Forward. Pooled: rows are ordered so that each 2x2 window's four outputs land in one
// thread's accumulators (rows w0 + j * stride, j = 0..3, for a tile-policy stride), and the
// epilogue pools them in registers. Rows of windows past the end read zeros and are dropped.
template <class T, bool Pooled>
struct ForwardProblem {
  using Value = T;
  using Acc = typename Elem<T>::Acc;
  static constexpr bool kAFastM = true;  // the gather is contiguous along q
  static constexpr bool kBFastK = true;  // weight rows are contiguous along (c, r, s)
  Shape s;
  int gemm_m, gemm_n, gemm_k;
  const T* x;       // (N, C, H, W)
  const T* weight;  // (K, Cg, R, S)
  const T* bias;    // (K) or null
  T* y;             // (N, K, P, Q), or pooled (N, K, Po, Qo)
  uint8_t* argmax;  // pooled only
  bool relu;
  // Pooled only: windows = N * Po * Qo, row stride 2^log_stride.
  int Po, Qo, windows, log_stride;
  FastDiv div_PoQo, div_Qo;

  FASTRNN_HOST_DEVICE bool window_of(int m, int& n, int& po, int& qo, int& dpq) const {
    const int w = ((m >> (log_stride + 2)) << log_stride) + (m & ((1 << log_stride) - 1));
    dpq = (m >> log_stride) & 3;
    if (w >= windows) return false;
    n = div_PoQo.div(w);
    const int rem = w - n * Po * Qo;
    po = div_Qo.div(rem);
    qo = rem - po * Qo;
    return true;
  }
  FASTRNN_HOST_DEVICE bool row(int m, int& n, int& p, int& q) const {
    if constexpr (Pooled) {
      int po, qo, dpq;
      if (!window_of(m, n, po, qo, dpq)) return false;
      p = 2 * po + (dpq >> 1);
      q = 2 * qo + (dpq & 1);
    } else {
      n = s.div_PQ.div(m);
      const int rem = m - n * s.PQ;
      p = s.div_Q.div(rem);
      q = rem - p * s.Q;
    }
    return true;
  }
  FASTRNN_HOST_DEVICE T a(int g, int m, int k) const {
    int n, p, q;
    if (!row(m, n, p, q)) return Elem<T>::zero();
    const int c = s.div_RS.div(k);
    const int rs = k - c * s.RS;
    const int r = s.div_S.div(rs);
    const int h = p * s.sh - s.ph + r * s.dh;
    const int w = q * s.sw - s.pw + (rs - r * s.S) * s.dw;
    if (unsigned(h) >= unsigned(s.H) || unsigned(w) >= unsigned(s.W)) return Elem<T>::zero();
    return x[((int64_t(n) * s.C + g * s.Cg + c) * s.H + h) * s.W + w];
  }
  FASTRNN_HOST_DEVICE T b(int g, int k, int n) const {
    return weight[(int64_t(g) * s.Kg + n) * s.CgRS + k];
  }
  FASTRNN_HOST_DEVICE Acc biased(int g, int col, Acc v) const {
    return bias != nullptr ? v + Elem<T>::to_acc(bias[g * s.Kg + col]) : v;
  }
  FASTRNN_HOST_DEVICE void store(int g, int /*split*/, int m, int col, Acc v) const {
    int n, p, q;
    row(m, n, p, q);
    v = biased(g, col, v);
    if (relu && v < 0) v = 0;  // NaN stays NaN, as in torch
    y[((int64_t(n) * s.K + g * s.Kg + col) * s.P + p) * s.Q + q] = Elem<T>::from_acc(v);
  }
  // v[j]: rows m_first + j * stride, i.e. the window's (dp, dq) = (j / 2, j % 2).
  FASTRNN_HOST_DEVICE void store_window(int g, int m_first, int col, const Acc* v) const {
    int n, po, qo, dpq;
    if (!window_of(m_first, n, po, qo, dpq)) return;
    Acc best = 0;
    int index = 0;
    for (int j = 0; j < 4; ++j) {
      // Rounded to T first: torch pools the rounded convolution output.
      Acc r = Elem<T>::to_acc(Elem<T>::from_acc(biased(g, col, v[j])));
      if (r < 0) r = 0;
      // torch's rule: the first strict maximum wins, and a NaN wins over anything.
      if (j == 0 || r > best || r != r) {
        best = r;
        index = j;
      }
    }
    const int64_t i = ((int64_t(n) * s.K + g * s.Kg + col) * Po + po) * Qo + qo;
    y[i] = Elem<T>::from_acc(best);
    argmax[i] = uint8_t(index);
  }
};

template <class T, class Grad>
struct BackwardInputProblem {
  using Value = T;
  using Acc = typename Elem<T>::Acc;
  static constexpr bool kAFastM = true;   // dy rows are contiguous along w (stride 1)
  static constexpr bool kBFastK = true;   // weight is contiguous along (r, s)
  Shape s;
  int gemm_m, gemm_n, gemm_k;
  Grad grad;
  const T* weight;  // (K, Cg, R, S)
  T* dx;            // (N, C, H, W)

  FASTRNN_HOST_DEVICE T a(int g, int m, int k) const {
    const int n = s.div_HW.div(m);
    const int hw = m - n * s.HW;
    const int h = s.div_W.div(hw);
    const int w = hw - h * s.W;
    const int ko = s.div_RS.div(k);
    const int rs = k - ko * s.RS;
    const int r = s.div_S.div(rs);
    const int ph = h + s.ph - r * s.dh;
    const int pw = w + s.pw - (rs - r * s.S) * s.dw;
    if (ph < 0 || pw < 0) return Elem<T>::zero();
    const int p = s.div_sh.div(ph), q = s.div_sw.div(pw);
    if (p * s.sh != ph || q * s.sw != pw || p >= s.P || q >= s.Q) return Elem<T>::zero();
    return grad.at(s, n, g * s.Kg + ko, p, q);
  }
  FASTRNN_HOST_DEVICE T b(int g, int k, int c) const {
    const int ko = s.div_RS.div(k);
    const int rs = k - ko * s.RS;
    return weight[((int64_t(g) * s.Kg + ko) * s.Cg + c) * s.RS + rs];
  }
  FASTRNN_HOST_DEVICE void store(int g, int /*split*/, int m, int c, Acc v) const {
    const int n = s.div_HW.div(m);
    const int hw = m - n * s.HW;
    dx[(int64_t(n) * s.C + g * s.Cg + c) * s.HW + hw] = Elem<T>::from_acc(v);
  }
  FASTRNN_HOST_DEVICE void store_window(int, int, int, const Acc*) const {}
};

template <class T, class Grad>
struct BackwardWeightProblem {
  using Value = T;
  using Acc = typename Elem<T>::Acc;
  static constexpr bool kAFastM = false;  // dy is contiguous along (p, q), the reduction
  static constexpr bool kBFastK = true;   // so is the gathered x
  Shape s;
  int gemm_m, gemm_n, gemm_k;
  Grad grad;
  const T* x;      // (N, C, H, W)
  Acc* partial;    // (splits, K, Cg * R * S): one partial sum per split, reduced afterwards

  FASTRNN_HOST_DEVICE T a(int g, int ko, int j) const {
    const int n = s.div_PQ.div(j);
    const int pq = j - n * s.PQ;
    const int p = s.div_Q.div(pq);
    return grad.at(s, n, g * s.Kg + ko, p, pq - p * s.Q);
  }
  FASTRNN_HOST_DEVICE T b(int g, int j, int col) const {
    const int n = s.div_PQ.div(j);
    const int pq = j - n * s.PQ;
    const int p = s.div_Q.div(pq);
    const int q = pq - p * s.Q;
    const int c = s.div_RS.div(col);
    const int rs = col - c * s.RS;
    const int r = s.div_S.div(rs);
    const int h = p * s.sh - s.ph + r * s.dh;
    const int w = q * s.sw - s.pw + (rs - r * s.S) * s.dw;
    if (unsigned(h) >= unsigned(s.H) || unsigned(w) >= unsigned(s.W)) return Elem<T>::zero();
    return x[((int64_t(n) * s.C + g * s.Cg + c) * s.H + h) * s.W + w];
  }
  FASTRNN_HOST_DEVICE void store(int g, int split, int ko, int col, Acc v) const {
    partial[(int64_t(split) * s.K + g * s.Kg + ko) * s.CgRS + col] = v;
  }
  FASTRNN_HOST_DEVICE void store_window(int, int, int, const Acc*) const {}
};

}  // namespace fastrnn::cuda::conv
