#pragma once
// Kernel bodies of the CUDA convolutions (instantiated once per dtype in conv_<dtype>.cu).
//
// One implicit-GEMM kernel serves forward, backward-input and backward-weight: the problem
// (conv_problems.h) gathers A and B element by element into registers, the registers go to a
// double-buffered shared-memory tile (one barrier per k-step; the loads of step k+1 are in
// flight while step k's products run), and a tile policy multiplies the tiles:
//   Mma16   fp16/bf16: 128x128x32 block, 8 warps of 64x32, mma.sync m16n8k16, fp32 accumulators
//   MmaTf32 fp32 with allow_tf32: 128x128x16, mma.sync m16n8k8 (operands rounded to TF32)
//   Simt<T> fp32/fp64: 64x64x16 block, 256 threads of 4x4 outputs, plain FMAs
// The gather is element-wise (a 2-byte element has no cp.async form, and the padding zeros
// must be written anyway), so register staging replaces cp.async; see bench/NOTES.md.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/conv.h"
#include "cuda/conv_problems.h"
#include "cuda/launch.h"

namespace fastrnn::cuda::conv {

template <>
struct Elem<__half> {
  using Acc = float;
  static __host__ __device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
  static __host__ __device__ __forceinline__ __half from_acc(float v) { return __float2half_rn(v); }
  static __host__ __device__ __forceinline__ __half zero() { return __ushort_as_half(0); }
};
template <>
struct Elem<__nv_bfloat16> {
  using Acc = float;
  static __host__ __device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __host__ __device__ __forceinline__ __nv_bfloat16 from_acc(float v) { return __float2bfloat16_rn(v); }
  static __host__ __device__ __forceinline__ __nv_bfloat16 zero() { return __ushort_as_bfloat16(0); }
};

__device__ __forceinline__ uint16_t raw_bits(__half v) { return __half_as_ushort(v); }
__device__ __forceinline__ uint16_t raw_bits(__nv_bfloat16 v) { return __bfloat16_as_ushort(v); }

// ---- tile policies -------------------------------------------------------------------------
// Each has: BM, BN, BK, kThreads, kPad (smem row padding), kWindowStride (rows of one pooling
// window held by one thread are m0 + j * stride), Smem (the tile element), to_smem(T), Acc,
// zero(), compute(As, Bs), for_each(fn(m, n, acc)), for_each_window(fn(m_first, n, acc[4])).

// fp16/bf16 on tensor cores. Warps 2 (m) x 4 (n), each 64x32 = 4x4 mma tiles of 16x8.
// Rows of a pooling window: g, g+8 (tile mi) and g+16, g+24 (tile mi+1) -> stride 8.
template <class T>
struct Mma16 {
  static constexpr int BM = 128, BN = 128, BK = 32, kThreads = 256, kPad = 8, kWindowStride = 8;
  using Smem = uint16_t;
  using Acc = float;
  float acc[4][4][4];

  static __device__ __forceinline__ Smem to_smem(T v) { return raw_bits(v); }
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;
  }
  static __device__ __forceinline__ uint32_t pack(uint16_t lo, uint16_t hi) { return uint32_t(lo) | (uint32_t(hi) << 16); }

  // As: [BK][BM + kPad] (k-major), Bs: [BK][BN + kPad].
  __device__ __forceinline__ void compute(const Smem (*As)[BM + kPad], const Smem (*Bs)[BN + kPad]) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      uint32_t af[4][4], bf[4][2];
      const int k0 = kk + 2 * t;
#pragma unroll
      for (int mi = 0; mi < 4; ++mi) {
        const int r = wm + mi * 16 + g;
        af[mi][0] = pack(As[k0][r], As[k0 + 1][r]);
        af[mi][1] = pack(As[k0][r + 8], As[k0 + 1][r + 8]);
        af[mi][2] = pack(As[k0 + 8][r], As[k0 + 9][r]);
        af[mi][3] = pack(As[k0 + 8][r + 8], As[k0 + 9][r + 8]);
      }
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        const int c = wn + ni * 8 + g;
        bf[ni][0] = pack(Bs[k0][c], Bs[k0 + 1][c]);
        bf[ni][1] = pack(Bs[k0 + 8][c], Bs[k0 + 9][c]);
      }
#pragma unroll
      for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) mma(acc[mi][ni], af[mi], bf[ni]);
    }
  }
  static __device__ __forceinline__ void mma(float* d, const uint32_t* a, const uint32_t* b) {
    if constexpr (sizeof(T) == 2 && std::is_same_v<T, __half>) {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
          "{%0,%1,%2,%3};\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    } else {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
          "{%0,%1,%2,%3};\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
  }
  // C fragment of tile (mi, ni): c0, c1 at (g, 2t), (g, 2t+1); c2, c3 at (g+8, 2t), (g+8, 2t+1).
  template <class Fn>
  __device__ __forceinline__ void for_each(Fn fn) const {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
      for (int ni = 0; ni < 4; ++ni)
#pragma unroll
        for (int e = 0; e < 4; ++e) fn(wm + mi * 16 + g + (e >> 1) * 8, wn + ni * 8 + 2 * t + (e & 1), acc[mi][ni][e]);
  }
  template <class Fn>
  __device__ __forceinline__ void for_each_window(Fn fn) const {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
#pragma unroll
    for (int half = 0; half < 2; ++half)
#pragma unroll
      for (int ni = 0; ni < 4; ++ni)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float v[4] = {acc[2 * half][ni][e], acc[2 * half][ni][2 + e], acc[2 * half + 1][ni][e],
                              acc[2 * half + 1][ni][2 + e]};
          fn(wm + half * 32 + g, wn + ni * 8 + 2 * t + e, v);
        }
  }
};

// fp32 on TF32 tensor cores: the same warp layout with m16n8k8 tiles.
// A fragment: a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4); B: b0 (t, g), b1 (t+4, g).
struct MmaTf32 : Mma16<float> {
  static constexpr int BK = 16;
  using Smem = uint32_t;
  static __device__ __forceinline__ Smem to_smem(float v) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(v));
    return r;
  }
  __device__ __forceinline__ void compute(const Smem (*As)[BM + kPad], const Smem (*Bs)[BN + kPad]) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 8) {
      uint32_t af[4][4], bf[4][2];
#pragma unroll
      for (int mi = 0; mi < 4; ++mi) {
        const int r = wm + mi * 16 + g;
        af[mi][0] = As[kk + t][r];
        af[mi][1] = As[kk + t][r + 8];
        af[mi][2] = As[kk + t + 4][r];
        af[mi][3] = As[kk + t + 4][r + 8];
      }
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        const int c = wn + ni * 8 + g;
        bf[ni][0] = Bs[kk + t][c];
        bf[ni][1] = Bs[kk + t + 4][c];
      }
#pragma unroll
      for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
          float* d = acc[mi][ni];
          asm volatile(
              "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
              "{%0,%1,%2,%3};\n"
              : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
              : "r"(af[mi][0]), "r"(af[mi][1]), "r"(af[mi][2]), "r"(af[mi][3]), "r"(bf[ni][0]), "r"(bf[ni][1]));
        }
    }
  }
};

// fp32/fp64 on the FMA units: 16x16 threads, each rows ty + 16 i and columns tx + 16 j
// (strided, so a warp reads 16 consecutive B columns and 2 A rows: no bank conflicts).
template <class T>
struct Simt {
  static constexpr int BM = 64, BN = 64, BK = 16, kThreads = 256, kPad = 1, kWindowStride = 16;
  using Smem = T;
  using Acc = T;
  T acc[4][4];

  static __device__ __forceinline__ Smem to_smem(T v) { return v; }
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] = T(0);
  }
  __device__ __forceinline__ void compute(const Smem (*As)[BM + kPad], const Smem (*Bs)[BN + kPad]) {
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      T a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[k][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[k][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
    }
  }
  template <class Fn>
  __device__ __forceinline__ void for_each(Fn fn) const {
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) fn(ty + 16 * i, tx + 16 * j, acc[i][j]);
  }
  template <class Fn>
  __device__ __forceinline__ void for_each_window(Fn fn) const {
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const T v[4] = {acc[0][j], acc[1][j], acc[2][j], acc[3][j]};
      fn(ty, tx + 16 * j, v);
    }
  }
};

// ---- the implicit-GEMM kernel ----------------------------------------------------------------
// Grid: x over m tiles, y over n tiles, z over groups * splits (split-major).
template <class Policy, class Problem, bool Pooled>
__global__ void __launch_bounds__(Policy::kThreads) igemm_kernel(const Problem prob, int k_per_split) {
  constexpr int BM = Policy::BM, BN = Policy::BN, BK = Policy::BK, kThreads = Policy::kThreads;
  constexpr int kPad = Policy::kPad;
  constexpr int kAPer = BM * BK / kThreads, kBPer = BN * BK / kThreads;
  static_assert(kThreads % BM == 0 && kThreads % BN == 0 && kThreads % BK == 0, "thread mapping");
  using Smem = typename Policy::Smem;
  using T = typename Problem::Value;
  __shared__ Smem As[2][BK][BM + kPad];
  __shared__ Smem Bs[2][BK][BN + kPad];

  const int groups = prob.s.groups;
  const int g = blockIdx.z % groups, split = blockIdx.z / groups;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int k_begin = split * k_per_split;
  const int k_end = min(prob.gemm_k, k_begin + k_per_split);
  const int tid = threadIdx.x;

  // Thread -> tile element for the loads: along m (or n) when the operand is contiguous
  // there, along k otherwise, so a warp's 32 loads hit consecutive addresses.
  auto a_at = [&](int i, int& ml, int& kl) {
    if constexpr (Problem::kAFastM) {
      ml = tid % BM;
      kl = tid / BM + i * (kThreads / BM);
    } else {
      kl = tid % BK;
      ml = tid / BK + i * (kThreads / BK);
    }
  };
  auto b_at = [&](int i, int& kl, int& nl) {
    if constexpr (Problem::kBFastK) {
      kl = tid % BK;
      nl = tid / BK + i * (kThreads / BK);
    } else {
      nl = tid % BN;
      kl = tid / BN + i * (kThreads / BN);
    }
  };

  T ra[kAPer], rb[kBPer];
  auto load = [&](int k0) {
#pragma unroll
    for (int i = 0; i < kAPer; ++i) {
      int ml, kl;
      a_at(i, ml, kl);
      const int m = m0 + ml, k = k0 + kl;
      ra[i] = (m < prob.gemm_m && k < k_end) ? prob.a(g, m, k) : Elem<T>::zero();
    }
#pragma unroll
    for (int i = 0; i < kBPer; ++i) {
      int kl, nl;
      b_at(i, kl, nl);
      const int n = n0 + nl, k = k0 + kl;
      rb[i] = (n < prob.gemm_n && k < k_end) ? prob.b(g, k, n) : Elem<T>::zero();
    }
  };
  auto stash = [&](int buf) {
#pragma unroll
    for (int i = 0; i < kAPer; ++i) {
      int ml, kl;
      a_at(i, ml, kl);
      As[buf][kl][ml] = Policy::to_smem(ra[i]);
    }
#pragma unroll
    for (int i = 0; i < kBPer; ++i) {
      int kl, nl;
      b_at(i, kl, nl);
      Bs[buf][kl][nl] = Policy::to_smem(rb[i]);
    }
  };

  Policy tile;
  tile.zero();
  if (k_begin < k_end) {
    load(k_begin);
    stash(0);
    __syncthreads();
    int buf = 0;
    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
      const bool more = k0 + BK < k_end;
      if (more) load(k0 + BK);  // in flight during this step's products
      tile.compute(As[buf], Bs[buf]);
      if (more) stash(buf ^ 1);  // the other buffer: everyone left it at the last barrier
      __syncthreads();
      buf ^= 1;
    }
  }

  if constexpr (Pooled) {
    tile.for_each_window([&](int ml, int nl, const typename Policy::Acc* v) {
      const int m = m0 + ml, n = n0 + nl;
      if (m < prob.gemm_m && n < prob.gemm_n) prob.store_window(g, m, n, v);
    });
  } else {
    tile.for_each([&](int ml, int nl, typename Policy::Acc v) {
      const int m = m0 + ml, n = n0 + nl;
      if (m < prob.gemm_m && n < prob.gemm_n) prob.store(g, split, m, n, v);
    });
  }
}

template <class Policy, bool Pooled = false, class Problem>
void launch_igemm(const Problem& prob, int splits, int k_per_split, cudaStream_t stream, const char* op) {
  const int64_t mt = (int64_t(prob.gemm_m) + Policy::BM - 1) / Policy::BM;
  const int64_t nt = (int64_t(prob.gemm_n) + Policy::BN - 1) / Policy::BN;
  const int64_t z = int64_t(prob.s.groups) * splits;
  FASTRNN_CHECK(mt < (int64_t(1) << 31) && nt <= 65535 && z <= 65535, op, ": problem too large for one launch");
  if (mt == 0 || nt == 0) return;
  const dim3 grid{unsigned(mt), unsigned(nt), unsigned(z)};
  igemm_kernel<Policy, Problem, Pooled><<<grid, Policy::kThreads, 0, stream>>>(prob, k_per_split);
  check_launch(op);
}

}  // namespace fastrnn::cuda::conv
