// The optimizer update loop built for avx2 (CMakeLists.txt gives the flags; the body is shared).
#include "cpu/optim_per_isa.h"
