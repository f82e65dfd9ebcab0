#pragma once
// The optimizer update loop (optim_loop.h) built for AVX2 and AVX-512 (optim_avx2.cpp,
// optim_avx512.cpp are this file with each set's flags, simd/isa.h): the updates are bound by
// memory traffic, but Adam's square root and division at SSE width cost about as much time as
// the traffic on a core with two 512-bit FMA ports (see bench/NOTES.md, optimizers).
#include <cstdint>

#include "common/optim_rules.h"
#include "cpu/optim.h"
#include "cpu/simd/isa.h"

namespace fastrnn::cpu::FASTRNN_ISA_NAMESPACE {

#include "cpu/optim_loop.h"

template void optimizer_update<float>(const OptimizerHyper&, double, bool, int64_t, int64_t, float*, const float*,
                                      float*, float*, float*);
template void optimizer_update<double>(const OptimizerHyper&, double, bool, int64_t, int64_t, double*,
                                       const double*, double*, double*, double*);

}  // namespace fastrnn::cpu::FASTRNN_ISA_NAMESPACE
