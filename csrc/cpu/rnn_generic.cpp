// The RNN driver built for generic (CMakeLists.txt gives the flags; the body is shared).
#include "cpu/rnn_per_isa.h"
