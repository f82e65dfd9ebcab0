// The direct single-channel convolution compiled for AVX2+FMA; see conv_direct.h.
#include <cstdint>

#include "cpu/conv.h"

namespace fastrnn::cpu::isa_avx2 {

#include "cpu/conv_direct.h"

template void direct_single_channel<float>(const ConvShape&, const float*, const float*, const float*, float*,
                                           float*);
template void direct_single_channel<double>(const ConvShape&, const double*, const double*, const double*, double*,
                                            double*);

}  // namespace fastrnn::cpu::isa_avx2
