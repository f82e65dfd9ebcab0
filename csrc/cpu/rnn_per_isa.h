#pragma once
// The RNN driver, one body for every instruction set: rnn_avx512.cpp, rnn_avx2.cpp and
// rnn_generic.cpp are this file built with each set's flags (simd/isa.h); see rnn_impl.h for
// what the driver's headers expect of the namespace they are included in.
#if !defined(FASTRNN_BUILD_GENERIC)
#include <immintrin.h>
#endif
#include <omp.h>

#include <cstring>

#include "cells/dispatch.h"
#include "common/barrier.h"
#include "common/macros.h"
#include "common/parallel.h"
#include "common/rnn_plan.h"
#include "cpu/gemm/gemm.h"
#include "cpu/rnn_variants.h"
#include "cpu/simd/isa.h"

namespace fastrnn::cpu::FASTRNN_ISA_NAMESPACE {

#include "cpu/gemm/microkernel.h"
#include "cpu/gemm/gemm_impl.h"
#include "cpu/rnn_impl.h"

}  // namespace fastrnn::cpu::FASTRNN_ISA_NAMESPACE
