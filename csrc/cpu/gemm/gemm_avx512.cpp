// The general GEMM built for avx512 (CMakeLists.txt gives the flags; the body is shared).
#include "cpu/gemm/gemm_per_isa.h"
