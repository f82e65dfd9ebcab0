#pragma once
// The CPU instruction set the kernels use, chosen at run time: the best one this CPU (and OS)
// supports, unless FASTRNN_ISA=generic|avx2|avx512 or set_active_isa() asks for a lower one.
namespace fastrnn {

enum class Isa { Generic = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);
Isa best_supported_isa();
bool isa_supported(Isa isa);
Isa active_isa();
void set_active_isa(Isa isa);  // throws ValueError if this CPU or build lacks it

}  // namespace fastrnn
