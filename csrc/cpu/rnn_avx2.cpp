// The RNN driver compiled for one instruction set (avx2); see rnn_impl.h.
#include <immintrin.h>
#include <omp.h>

#include <cstring>

#include "cells/dispatch.h"
#include "common/barrier.h"
#include "common/macros.h"
#include "common/rnn_params.h"
#include "cpu/gemm/gemm.h"
#include "cpu/rnn_common.h"

namespace fastrnn::cpu::isa_avx2 {

#include "cpu/gemm/microkernel_avx2.h"
#include "cpu/gemm/gemm_impl.h"
#include "cpu/rnn_impl.h"

}  // namespace fastrnn::cpu::isa_avx2
