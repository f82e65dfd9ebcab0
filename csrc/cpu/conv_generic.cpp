// The direct single-channel convolution for the portable build; see conv_direct.h.
#include <cstdint>

#include "cpu/conv.h"

namespace fastrnn::cpu::isa_generic {

#include "cpu/conv_direct.h"

template void direct_single_channel<float>(const ConvShape&, const float*, const float*, const float*, float*,
                                           float*);
template void direct_single_channel<double>(const ConvShape&, const double*, const double*, const double*, double*,
                                            double*);

}  // namespace fastrnn::cpu::isa_generic
