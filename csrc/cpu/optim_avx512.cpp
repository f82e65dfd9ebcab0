// The optimizer update loop (optim_loop.h) built for AVX512: the updates are bound by memory
// traffic, but Adam's square root and division at SSE width cost about as much time as the
// traffic on a core with two 512-bit FMA ports (Xeon: torch's fused AVX-512 steps were 1.12-1.16x
// faster than the portable loop).
#include <cstdint>

#include "common/optim_rules.h"
#include "cpu/optim.h"

namespace fastrnn::cpu::isa_avx512 {

#include "cpu/optim_loop.h"

template void optimizer_update<float>(const OptimizerHyper&, double, bool, int64_t, int64_t, float*, const float*,
                                      float*, float*, float*);
template void optimizer_update<double>(const OptimizerHyper&, double, bool, int64_t, int64_t, double*,
                                       const double*, double*, double*, double*);

}  // namespace fastrnn::cpu::isa_avx512
