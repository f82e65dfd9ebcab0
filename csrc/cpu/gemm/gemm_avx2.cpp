// The packed GEMM compiled for one instruction set (avx2); see gemm_impl.h.
// AVX2+FMA: 16 ymm registers; 6x2 accumulators, 2 for B, 1 broadcast.
#include <omp.h>

#include "common/macros.h"
#include "cpu/gemm/gemm.h"

namespace fastrnn::cpu::gemm_avx2 {

template <typename T>
struct Tile;
template <>
struct Tile<float> {
  static constexpr int MR = 6, NR = 16;
};
template <>
struct Tile<double> {
  static constexpr int MR = 6, NR = 8;
};

#define FASTRNN_GEMM_NAMESPACE gemm_avx2
#include "cpu/gemm/gemm_impl.h"

}  // namespace fastrnn::cpu::gemm_avx2
