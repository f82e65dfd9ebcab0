// The RNN driver compiled for one instruction set (generic); see rnn_impl.h.
#include <omp.h>

#include <cstring>

#include "cells/dispatch.h"
#include "common/barrier.h"
#include "common/macros.h"
#include "common/parallel.h"
#include "common/rnn_plan.h"
#include "cpu/gemm/gemm.h"
#include "cpu/rnn_variants.h"

namespace fastrnn::cpu::isa_generic {

#include "cpu/gemm/microkernel_generic.h"
#include "cpu/gemm/gemm_impl.h"
#include "cpu/rnn_impl.h"

}  // namespace fastrnn::cpu::isa_generic
