// The packed GEMM compiled for one instruction set (generic); see gemm_impl.h.
// Portable C++: 16 vector registers of 128 bits on baseline x86-64.
#include <omp.h>

#include "common/macros.h"
#include "cpu/gemm/gemm.h"

namespace fastrnn::cpu::gemm_generic {

template <typename T>
struct Tile;
template <>
struct Tile<float> {
  static constexpr int MR = 4, NR = 16;
};
template <>
struct Tile<double> {
  static constexpr int MR = 4, NR = 8;
};

#define FASTRNN_GEMM_NAMESPACE gemm_generic
#include "cpu/gemm/gemm_impl.h"

}  // namespace fastrnn::cpu::gemm_generic
