// The packed GEMM compiled for one instruction set (avx512); see gemm_impl.h.
// AVX-512: 32 zmm registers; 8x2 accumulators leave room for B and broadcasts.
#include <omp.h>

#include "common/macros.h"
#include "cpu/gemm/gemm.h"

namespace fastrnn::cpu::gemm_avx512 {

template <typename T>
struct Tile;
template <>
struct Tile<float> {
  static constexpr int MR = 8, NR = 32;
};
template <>
struct Tile<double> {
  static constexpr int MR = 8, NR = 16;
};

#define FASTRNN_GEMM_NAMESPACE gemm_avx512
#include "cpu/gemm/gemm_impl.h"

}  // namespace fastrnn::cpu::gemm_avx512
