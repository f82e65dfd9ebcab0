#pragma once
// The GPU matrix products of the RNN kernels: C = A B + beta C, row-major C, with A and B read
// in place, each optionally transposed, and each of its own element type (the products mix
// stored float16/bfloat16 tensors with float32 scratch). Two kernels:
//   * tensor cores (mma.sync): m16n8k16 on float16 or bfloat16 operands, m16n8k8 on TF32, all
//     accumulating in float32. Operands are rounded to the MMA type as they are staged into
//     shared memory, so any element type can feed them;
//   * SIMT, in the compute type (float32, or float64), for true-fp32 and fp64 products.
// Tiles are guarded on every side, so any M, N, K and leading dimension works; the loads are
// scalar (nothing is assumed about alignment), which keeps one kernel for every layout.
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/launch.h"
#include "cuda/numeric.cuh"

namespace fastrnn::cuda {

inline unsigned blocks_for(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

enum class MathMode { Simt, Tf32, F16, Bf16 };

template <typename TA, typename TB, typename TC>
struct GemmArgs {
  int64_t M = 0, N = 0, K = 0;
  const TA* A = nullptr;  // (M, K), or (K, M) when trans_a; row-major, leading dimension lda
  int64_t lda = 0;
  bool trans_a = false;
  const TB* B = nullptr;  // (K, N), or (N, K) when trans_b
  int64_t ldb = 0;
  bool trans_b = false;
  TC* C = nullptr;        // (M, N), leading dimension ldc
  int64_t ldc = 0;
  float beta = 0;         // 0: C is only written
};

namespace gemm_detail {

template <typename T>
__device__ __forceinline__ T load_a(const T* A, int64_t lda, bool trans, int64_t m, int64_t k) {
  return trans ? A[k * lda + m] : A[m * lda + k];
}

// ---- SIMT ---------------------------------------------------------------------------------------

constexpr int kSimtBM = 64, kSimtBN = 64, kSimtBK = 16, kSimtThreads = 256;

// Each thread accumulates a 4x4 block of C, rows ty + 16 i and columns tx + 16 j, so that the
// shared-memory reads of a warp are broadcasts (A) or consecutive words (B).
template <typename TA, typename TB, typename TC, typename Acc>
__global__ void __launch_bounds__(kSimtThreads) gemm_simt(const GemmArgs<TA, TB, TC> g) {
  __shared__ Acc As[kSimtBK][kSimtBM + 1];
  __shared__ Acc Bs[kSimtBK][kSimtBN + 1];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t m0 = int64_t(blockIdx.x) * kSimtBM, n0 = int64_t(blockIdx.y) * kSimtBN;
  Acc acc[4][4] = {};
  for (int64_t k0 = 0; k0 < g.K; k0 += kSimtBK) {
#pragma unroll
    for (int r = 0; r < (kSimtBM * kSimtBK) / kSimtThreads; ++r) {
      // Consecutive threads walk the operand's contiguous dimension.
      const int e = tid + r * kSimtThreads;
      const int mm = g.trans_a ? e % kSimtBM : e / kSimtBK, kk = g.trans_a ? e / kSimtBM : e % kSimtBK;
      const int64_t m = m0 + mm, k = k0 + kk;
      As[kk][mm] = (m < g.M && k < g.K) ? Acc(widen(load_a(g.A, g.lda, g.trans_a, m, k))) : Acc(0);
      const int nn = g.trans_b ? e / kSimtBK : e % kSimtBN, kb = g.trans_b ? e % kSimtBK : e / kSimtBN;
      const int64_t n = n0 + nn, kg = k0 + kb;
      Bs[kb][nn] = (n < g.N && kg < g.K) ? Acc(widen(g.trans_b ? g.B[n * g.ldb + kg] : g.B[kg * g.ldb + n]))
                                         : Acc(0);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kSimtBK; ++kk) {
      Acc a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + ty + 16 * i;
    if (m >= g.M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t n = n0 + tx + 16 * j;
      if (n >= g.N) continue;
      TC* c = g.C + m * g.ldc + n;
      Acc v = acc[i][j];
      if (g.beta != 0.0f) v += Acc(g.beta) * Acc(widen(*c));
      *c = narrow<TC>(v);
    }
  }
}

// ---- Tensor cores -------------------------------------------------------------------------------

constexpr int kMmaBM = 64, kMmaBN = 64, kMmaBK = 32, kMmaThreads = 128;

template <MathMode kMode>
struct Mma;

// float16 / bfloat16: two 16-bit elements per 32-bit register, k-steps of 16.
template <MathMode kMode>
struct Mma16 {
  using Elem = uint16_t;
  static constexpr int kK = 16, kPad = 8;  // rows of 40 halves: a warp's fragment reads hit 32 banks
  static __device__ __forceinline__ Elem convert(float v) {
    if constexpr (kMode == MathMode::F16) {
      return __half_as_ushort(__float2half_rn(v));
    } else {
      return __bfloat16_as_ushort(__float2bfloat16_rn(v));
    }
  }
  // A fragment (16 x 16, row-major) from As[row][k]; B fragment (16 x 8) from Bs[n][k].
  static __device__ __forceinline__ void load_a(const Elem* tile, int ld, int row0, int k0, int lane, uint32_t a[4]) {
    const int g = lane >> 2, t = lane & 3;
    const Elem* p = tile + (row0 + g) * ld + k0 + 2 * t;
    a[0] = *reinterpret_cast<const uint32_t*>(p);
    a[1] = *reinterpret_cast<const uint32_t*>(p + 8 * ld);
    a[2] = *reinterpret_cast<const uint32_t*>(p + 8);
    a[3] = *reinterpret_cast<const uint32_t*>(p + 8 * ld + 8);
  }
  static __device__ __forceinline__ void load_b(const Elem* tile, int ld, int n0, int k0, int lane, uint32_t b[2]) {
    const int g = lane >> 2, t = lane & 3;
    const Elem* p = tile + (n0 + g) * ld + k0 + 2 * t;
    b[0] = *reinterpret_cast<const uint32_t*>(p);
    b[1] = *reinterpret_cast<const uint32_t*>(p + 8);
  }
  static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    if constexpr (kMode == MathMode::F16) {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
          "{%0,%1,%2,%3};\n"
          : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    } else {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
          "{%0,%1,%2,%3};\n"
          : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
  }
};

template <>
struct Mma<MathMode::F16> : Mma16<MathMode::F16> {};
template <>
struct Mma<MathMode::Bf16> : Mma16<MathMode::Bf16> {};

// TF32: one element per register, k-steps of 8.
template <>
struct Mma<MathMode::Tf32> {
  using Elem = uint32_t;
  static constexpr int kK = 8, kPad = 4;  // rows of 36 words
  static __device__ __forceinline__ Elem convert(float v) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(v));
    return r;
  }
  static __device__ __forceinline__ void load_a(const Elem* tile, int ld, int row0, int k0, int lane, uint32_t a[4]) {
    const int g = lane >> 2, t = lane & 3;
    const Elem* p = tile + (row0 + g) * ld + k0 + t;
    a[0] = p[0];
    a[1] = p[8 * ld];
    a[2] = p[4];
    a[3] = p[8 * ld + 4];
  }
  static __device__ __forceinline__ void load_b(const Elem* tile, int ld, int n0, int k0, int lane, uint32_t b[2]) {
    const int g = lane >> 2, t = lane & 3;
    const Elem* p = tile + (n0 + g) * ld + k0 + t;
    b[0] = p[0];
    b[1] = p[4];
  }
  static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
};

// 4 warps in a 2 x 2 grid, each owning a 32 x 32 piece of the 64 x 64 tile: 2 x 4 MMA tiles of
// 16 x 8. Both operands are staged k-contiguous (As[m][k], Bs[n][k]), the layout the fragments read.
template <typename TA, typename TB, typename TC, MathMode kMode>
__global__ void __launch_bounds__(kMmaThreads) gemm_mma(const GemmArgs<TA, TB, TC> g) {
  using M = Mma<kMode>;
  using Elem = typename M::Elem;
  constexpr int ld = kMmaBK + M::kPad;
  __shared__ __align__(16) Elem As[kMmaBM * ld];
  __shared__ __align__(16) Elem Bs[kMmaBN * ld];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;
  const int64_t m0 = int64_t(blockIdx.x) * kMmaBM, n0 = int64_t(blockIdx.y) * kMmaBN;
  float acc[2][4][4] = {};
  for (int64_t k0 = 0; k0 < g.K; k0 += kMmaBK) {
#pragma unroll 4
    for (int r = 0; r < (kMmaBM * kMmaBK) / kMmaThreads; ++r) {
      const int e = tid + r * kMmaThreads;
      const int mm = g.trans_a ? e % kMmaBM : e / kMmaBK, kk = g.trans_a ? e / kMmaBM : e % kMmaBK;
      const int64_t m = m0 + mm, k = k0 + kk;
      As[mm * ld + kk] = M::convert((m < g.M && k < g.K) ? float(widen(load_a(g.A, g.lda, g.trans_a, m, k))) : 0.0f);
      const int nn = g.trans_b ? e / kMmaBK : e % kMmaBN, kb = g.trans_b ? e % kMmaBK : e / kMmaBN;
      const int64_t n = n0 + nn, kg = k0 + kb;
      const float bv = (n < g.N && kg < g.K) ? float(widen(g.trans_b ? g.B[n * g.ldb + kg] : g.B[kg * g.ldb + n]))
                                             : 0.0f;
      Bs[nn * ld + kb] = M::convert(bv);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kMmaBK; kk += M::kK) {
      uint32_t a[2][4], b[4][2];
#pragma unroll
      for (int i = 0; i < 2; ++i) M::load_a(As, ld, wm + 16 * i, kk, lane, a[i]);
#pragma unroll
      for (int j = 0; j < 4; ++j) M::load_b(Bs, ld, wn + 8 * j, kk, lane, b[j]);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) M::mma(acc[i][j], a[i], b[j]);
    }
    __syncthreads();
  }
  // Accumulator c of tile (i, j): rows g and g + 8, columns 2t and 2t + 1.
  const int gr = lane >> 2, tc = 2 * (lane & 3);
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int64_t m = m0 + wm + 16 * i + gr + (q >= 2 ? 8 : 0);
        const int64_t n = n0 + wn + 8 * j + tc + (q & 1);
        if (m < g.M && n < g.N) {
          TC* c = g.C + m * g.ldc + n;
          float v = acc[i][j][q];
          if (g.beta != 0.0f) v += g.beta * float(widen(*c));
          *c = narrow<TC>(v);
        }
      }
}

}  // namespace gemm_detail

// C = A B + beta C on `stream`. mode picks the tensor-core type; Simt computes in Acc.
template <typename Acc, typename TA, typename TB, typename TC>
void gemm(const GemmArgs<TA, TB, TC>& g, MathMode mode, cudaStream_t stream, const char* op) {
  static_assert(std::is_same_v<Acc, float> || std::is_same_v<Acc, double>, "Acc is float or double");
  using namespace gemm_detail;
  if (g.M == 0 || g.N == 0) return;
  FASTRNN_CHECK((g.N + kSimtBN - 1) / kSimtBN < 65536, op, ": a product is too wide (", g.N, " columns)");
  if constexpr (std::is_same_v<Acc, double>) mode = MathMode::Simt;  // float64 has no tensor-core path here
  switch (mode) {
    case MathMode::F16:
    case MathMode::Bf16:
    case MathMode::Tf32: {
      const dim3 grid(blocks_for(g.M, kMmaBM), blocks_for(g.N, kMmaBN));
      if constexpr (std::is_same_v<Acc, float>) {
        if (mode == MathMode::F16) {
          gemm_mma<TA, TB, TC, MathMode::F16><<<grid, kMmaThreads, 0, stream>>>(g);
        } else if (mode == MathMode::Bf16) {
          gemm_mma<TA, TB, TC, MathMode::Bf16><<<grid, kMmaThreads, 0, stream>>>(g);
        } else {
          gemm_mma<TA, TB, TC, MathMode::Tf32><<<grid, kMmaThreads, 0, stream>>>(g);
        }
      }
      break;
    }
    default: {
      const dim3 grid(blocks_for(g.M, kSimtBM), blocks_for(g.N, kSimtBN));
      gemm_simt<TA, TB, TC, Acc><<<grid, kSimtThreads, 0, stream>>>(g);
    }
  }
  check_launch(op);
}

}  // namespace fastrnn::cuda
