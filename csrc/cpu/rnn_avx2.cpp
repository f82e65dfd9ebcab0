// The RNN driver built for avx2 (CMakeLists.txt gives the flags; the body is shared).
#include "cpu/rnn_per_isa.h"
