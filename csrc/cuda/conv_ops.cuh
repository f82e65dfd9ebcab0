#pragma once
// The launchers of each convolution for one dtype T (instantiated in conv_<dtype>.cu), plus the
// small kernels around the implicit GEMM: depthwise direct convolutions, the split-K reduction
// of the weight gradient, and the bias gradient.
#include <algorithm>

#include "cuda/conv_kernels.cuh"

namespace fastrnn::cuda::conv {

Shape make_shape(const Conv2dParams& p);  // conv.cu

// ---- depthwise (one input channel per group): direct kernels, one thread per output -------
template <class T>
__global__ void depthwise_forward_kernel(const Shape s, const T* x, const T* weight, const T* bias, T* y,
                                         bool relu, int64_t total) {
  using Acc = typename Elem<T>::Acc;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int q = int(i % s.Q), p = int(i / s.Q % s.P), k = int(i / s.PQ % s.K);
  const int64_t n = i / (int64_t(s.PQ) * s.K);
  const int c = k / s.Kg;
  const T* xc = x + (n * s.C + c) * s.HW;
  const T* wk = weight + int64_t(k) * s.RS;
  Acc acc = bias != nullptr ? Elem<T>::to_acc(bias[k]) : Acc(0);
  for (int r = 0; r < s.R; ++r) {
    const int h = p * s.sh - s.ph + r * s.dh;
    if (unsigned(h) >= unsigned(s.H)) continue;
    for (int t = 0; t < s.S; ++t) {
      const int w = q * s.sw - s.pw + t * s.dw;
      if (unsigned(w) >= unsigned(s.W)) continue;
      acc += Elem<T>::to_acc(xc[h * s.W + w]) * Elem<T>::to_acc(wk[r * s.S + t]);
    }
  }
  if (relu && acc < 0) acc = 0;
  y[i] = Elem<T>::from_acc(acc);
}

template <class T>
__global__ void depthwise_backward_input_kernel(const Shape s, const T* dy, const T* weight, T* dx, int64_t total) {
  using Acc = typename Elem<T>::Acc;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int w = int(i % s.W), h = int(i / s.W % s.H), c = int(i / s.HW % s.C);
  const int64_t n = i / (int64_t(s.HW) * s.C);
  Acc acc = 0;
  for (int ko = 0; ko < s.Kg; ++ko) {
    const int k = c * s.Kg + ko;
    const T* dyk = dy + (n * s.K + k) * s.PQ;
    for (int r = 0; r < s.R; ++r) {
      const int ph = h + s.ph - r * s.dh;
      if (ph < 0 || ph % s.sh != 0 || ph / s.sh >= s.P) continue;
      for (int t = 0; t < s.S; ++t) {
        const int pw = w + s.pw - t * s.dw;
        if (pw < 0 || pw % s.sw != 0 || pw / s.sw >= s.Q) continue;
        acc += Elem<T>::to_acc(dyk[(ph / s.sh) * s.Q + pw / s.sw]) * Elem<T>::to_acc(weight[int64_t(k) * s.RS + r * s.S + t]);
      }
    }
  }
  dx[i] = Elem<T>::from_acc(acc);
}

constexpr int kReduceThreads = 256;

template <class Acc>
__device__ Acc block_sum(Acc v) {
  __shared__ Acc partial[kReduceThreads / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = v;
  __syncthreads();
  v = threadIdx.x < kReduceThreads / 32 ? partial[threadIdx.x] : Acc(0);
  if (threadIdx.x < 32) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  }
  return v;  // valid in thread 0
}

// One block per (k, r, s): dweight[k, 0, r, s] = sum over (n, p, q) of dy * x.
template <class T>
__global__ void __launch_bounds__(kReduceThreads)
    depthwise_backward_weight_kernel(const Shape s, const T* dy, const T* x, T* dweight) {
  using Acc = typename Elem<T>::Acc;
  const int k = blockIdx.x / s.RS, rs = blockIdx.x % s.RS;
  const int r = rs / s.S, t = rs % s.S, c = k / s.Kg;
  Acc acc = 0;
  const int64_t total = int64_t(s.N) * s.PQ;
  for (int64_t j = threadIdx.x; j < total; j += kReduceThreads) {
    const int64_t n = j / s.PQ;
    const int pq = int(j % s.PQ), p = pq / s.Q, q = pq % s.Q;
    const int h = p * s.sh - s.ph + r * s.dh, w = q * s.sw - s.pw + t * s.dw;
    if (unsigned(h) >= unsigned(s.H) || unsigned(w) >= unsigned(s.W)) continue;
    acc += Elem<T>::to_acc(dy[(n * s.K + k) * s.PQ + pq]) * Elem<T>::to_acc(x[(n * s.C + c) * s.HW + h * s.W + w]);
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) dweight[blockIdx.x] = Elem<T>::from_acc(acc);
}

// One block per output channel: dbias[k] = sum over (n, plane) of the output gradient.
template <class T, class Grad>
__global__ void __launch_bounds__(kReduceThreads) bias_grad_kernel(const Shape s, const Grad grad, T* dbias) {
  using Acc = typename Elem<T>::Acc;
  const int k = blockIdx.x;
  const int64_t plane = grad.plane_size(s);
  Acc acc = 0;
  for (int n = 0; n < s.N; ++n)
    for (int64_t i = threadIdx.x; i < plane; i += kReduceThreads) acc += Elem<T>::to_acc(grad.plane_value(s, n, k, i));
  acc = block_sum(acc);
  if (threadIdx.x == 0) dbias[k] = Elem<T>::from_acc(acc);
}

// dweight[i] = sum over splits of partial[split][i], in a fixed order (deterministic).
template <class T, class Acc>
__global__ void sum_splits_kernel(const Acc* partial, int splits, int64_t total, T* dweight) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    Acc acc = 0;
    for (int sp = 0; sp < splits; ++sp) acc += partial[sp * total + i];
    dweight[i] = Elem<T>::from_acc(acc);
  }
}

inline unsigned blocks_for(int64_t total, int threads) { return unsigned((total + threads - 1) / threads); }

// ---- split-K plan of the weight gradient -----------------------------------------------------
// The weight gradient's GEMM is small in m and n (K/groups x C/groups*R*S) and long in k
// (N*P*Q): split k until ~2 blocks per SM of an H100 (132 SMs) are busy, keeping >= 4 k-steps
// per split.
struct SplitPlan {
  int splits, k_per_split;
};
template <class Policy>
SplitPlan split_plan(const Shape& s) {
  const int64_t gemm_k = int64_t(s.N) * s.PQ;
  if (gemm_k == 0) return SplitPlan{1, Policy::BK};
  const int64_t tiles = ((s.Kg + Policy::BM - 1) / Policy::BM) * ((int64_t(s.CgRS) + Policy::BN - 1) / Policy::BN) * s.groups;
  int64_t splits = (264 + tiles - 1) / tiles;
  const int64_t max_splits = (gemm_k + 4 * Policy::BK - 1) / (4 * Policy::BK);
  splits = splits > max_splits ? max_splits : splits;
  splits = splits > 65535 / s.groups ? 65535 / s.groups : splits;
  splits = splits < 1 ? 1 : splits;
  int64_t per = (gemm_k + splits - 1) / splits;
  per = (per + Policy::BK - 1) / Policy::BK * Policy::BK;
  const int64_t used = (gemm_k + per - 1) / per;
  return SplitPlan{int(used < 1 ? 1 : used), int(per)};
}

// ---- the launchers for dtype T with tile policy Policy --------------------------------------
template <class T, class Policy>
struct ConvOps {
  using Acc = typename Elem<T>::Acc;

  static void forward(const Conv2dParams& p, bool pooled) {
    const Shape s = make_shape(p);
    const auto stream = reinterpret_cast<cudaStream_t>(p.stream);
    const T* bias = p.bias.defined() ? p.bias.data_as<T>() : nullptr;
    if (s.Cg == 1 && !pooled) {
      const int64_t total = int64_t(s.N) * s.K * s.PQ;
      if (total == 0) return;
      depthwise_forward_kernel<T><<<blocks_for(total, 256), 256, 0, stream>>>(
          s, p.x.data_as<T>(), p.weight.data_as<T>(), bias, p.y.data_as<T>(), p.relu, total);
      return check_launch("conv2d_forward");
    }
    if (pooled) {
      ForwardProblem<T, true> prob{};
      fill_forward(prob, s, p, bias);
      prob.Po = s.P / 2;
      prob.Qo = s.Q / 2;
      prob.windows = s.N * prob.Po * prob.Qo;
      prob.div_PoQo = FastDiv(prob.Po * prob.Qo > 0 ? prob.Po * prob.Qo : 1);
      prob.div_Qo = FastDiv(prob.Qo > 0 ? prob.Qo : 1);
      constexpr int stride = Policy::kWindowStride;
      prob.log_stride = stride == 8 ? 3 : 4;
      static_assert(stride == 8 || stride == 16, "window stride");
      // Every window's four rows: windows rounded up to whole groups of `stride`.
      prob.gemm_m = (prob.windows + stride - 1) / stride * stride * 4;
      prob.argmax = p.argmax.data_as<uint8_t>();
      if (prob.windows == 0) return;
      return launch_igemm<Policy, true>(prob, 1, prob.gemm_k, stream, "conv_relu_pool2d_forward");
    }
    ForwardProblem<T, false> prob{};
    fill_forward(prob, s, p, bias);
    prob.gemm_m = s.N * s.PQ;
    launch_igemm<Policy>(prob, 1, prob.gemm_k, stream, "conv2d_forward");
  }

  template <class Problem>
  static void fill_forward(Problem& prob, const Shape& s, const Conv2dParams& p, const T* bias) {
    prob.s = s;
    prob.gemm_n = s.Kg;
    prob.gemm_k = s.CgRS;
    prob.x = p.x.data_as<T>();
    prob.weight = p.weight.data_as<T>();
    prob.bias = bias;
    prob.y = p.y.data_as<T>();
    prob.relu = p.relu;
  }

  template <class Grad>
  static void backward_input(const Conv2dParams& p, const Grad& grad, const char* op) {
    const Shape s = make_shape(p);
    const auto stream = reinterpret_cast<cudaStream_t>(p.stream);
    if (s.Cg == 1 && std::is_same_v<Grad, PlainGrad<T>>) {
      const int64_t total = int64_t(s.N) * s.C * s.HW;
      if (total == 0) return;
      depthwise_backward_input_kernel<T><<<blocks_for(total, 256), 256, 0, stream>>>(
          s, p.dy.data_as<T>(), p.weight.data_as<T>(), p.dx.data_as<T>(), total);
      return check_launch(op);
    }
    BackwardInputProblem<T, Grad> prob{};
    prob.s = s;
    prob.gemm_m = s.N * s.HW;
    prob.gemm_n = s.Cg;
    prob.gemm_k = s.Kg * s.RS;
    prob.grad = grad;
    prob.weight = p.weight.data_as<T>();
    prob.dx = p.dx.data_as<T>();
    launch_igemm<Policy>(prob, 1, prob.gemm_k, stream, op);
  }

  template <class Grad>
  static void backward_weight(const Conv2dParams& p, const Grad& grad, const char* op) {
    const Shape s = make_shape(p);
    const auto stream = reinterpret_cast<cudaStream_t>(p.stream);
    if (p.dbias.defined() && s.K > 0) {
      bias_grad_kernel<T, Grad><<<unsigned(s.K), kReduceThreads, 0, stream>>>(s, grad, p.dbias.data_as<T>());
      check_launch(op);
    }
    if (!p.dweight.defined() || p.dweight.numel() == 0) return;
    if (s.Cg == 1 && std::is_same_v<Grad, PlainGrad<T>>) {
      depthwise_backward_weight_kernel<T><<<unsigned(s.K * s.RS), kReduceThreads, 0, stream>>>(
          s, p.dy.data_as<T>(), p.x.data_as<T>(), p.dweight.data_as<T>());
      return check_launch(op);
    }
    const SplitPlan plan = split_plan<Policy>(s);
    FASTRNN_CHECK(!p.workspace.defined() || (p.workspace.device == DeviceType::CUDA &&
                                             p.workspace.device_index == p.x.device_index &&
                                             reinterpret_cast<uintptr_t>(p.workspace.data) % alignof(Acc) == 0),
                  op, ": the workspace must be aligned memory on the input's CUDA device");
    FASTRNN_CHECK(p.workspace.defined() && p.workspace.nbytes() >= workspace_bytes(p), op,
                  ": the workspace holds ", p.workspace.defined() ? p.workspace.nbytes() : 0, " bytes, ",
                  workspace_bytes(p), " are needed");
    BackwardWeightProblem<T, Grad> prob{};
    prob.s = s;
    prob.gemm_m = s.Kg;
    prob.gemm_n = s.CgRS;
    prob.gemm_k = s.N * s.PQ;
    prob.grad = grad;
    prob.x = p.x.data_as<T>();
    prob.partial = static_cast<Acc*>(p.workspace.data);
    if (prob.gemm_k == 0) {
      // Nothing to sum: the partial sums are one split of zeros.
      check_cuda(cudaMemsetAsync(prob.partial, 0, sizeof(Acc) * size_t(s.K) * s.CgRS, stream), op, "cudaMemsetAsync");
    } else {
      launch_igemm<Policy>(prob, plan.splits, plan.k_per_split, stream, op);
    }
    const int64_t total = int64_t(s.K) * s.CgRS;
    const unsigned blocks = unsigned(std::min<int64_t>(blocks_for(total, 256), 4096));
    sum_splits_kernel<T, Acc><<<blocks, 256, 0, stream>>>(prob.partial, prob.gemm_k == 0 ? 1 : plan.splits, total,
                                                           p.dweight.data_as<T>());
    check_launch(op);
  }

  // The depthwise kernel needs none, but the pooled backward takes the GEMM path for every
  // shape: one size for both keeps the caller simple (the depthwise one is small anyway).
  static int64_t workspace_bytes(const Conv2dParams& p) {
    const Shape s = make_shape(p);
    return int64_t(split_plan<Policy>(s).splits) * s.K * s.CgRS * int64_t(sizeof(Acc));
  }

  static void forward_plain(const Conv2dParams& p) { forward(p, false); }
  static void forward_pooled(const Conv2dParams& p) { forward(p, true); }
  static void backward_input_plain(const Conv2dParams& p) {
    backward_input(p, PlainGrad<T>{p.dy.data_as<T>()}, "conv2d_backward_input");
  }
  static void backward_weight_plain(const Conv2dParams& p) {
    backward_weight(p, PlainGrad<T>{p.dy.data_as<T>()}, "conv2d_backward_weight");
  }

  static void pooled_backward(const Conv2dParams& p) {
    PooledGrad<T> grad{p.dy.data_as<T>(), p.y.data_as<T>(), p.argmax.data_as<uint8_t>(), int(p.P / 2), int(p.Q / 2)};
    if (p.dx.defined() && p.dx.numel() > 0) backward_input(p, grad, "conv_relu_pool2d_backward");
    if (p.dweight.defined() || p.dbias.defined()) backward_weight(p, grad, "conv_relu_pool2d_backward");
  }
};

// conv.cu calls these through the explicit instantiations in conv_<dtype>.cu.
extern template struct ConvOps<__half, Mma16<__half>>;
extern template struct ConvOps<__nv_bfloat16, Mma16<__nv_bfloat16>>;
extern template struct ConvOps<float, MmaTf32>;
extern template struct ConvOps<float, Simt<float>>;
extern template struct ConvOps<double, Simt<double>>;

}  // namespace fastrnn::cuda::conv
