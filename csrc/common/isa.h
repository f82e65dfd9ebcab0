#pragma once
// The CPU instruction set the kernels use, chosen at run time: the best one this CPU (and OS)
// supports, at most the one FASTRNN_ISA=generic|avx2|avx512 names (any case; read once, when the
// extension first asks), or what set_active_isa() asks for.
// FASTRNN_ISA is a ceiling, never a demand: naming a set this CPU lacks (avx512 on an AVX2 CPU)
// gives the best one it has below it, so one setting suits every machine and never runs an
// illegal instruction. A value naming no set is ignored, and the extension warns at import.
namespace fastrnn {

enum class Isa { Generic = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);
Isa best_supported_isa();
bool isa_supported(Isa isa);
Isa active_isa();
void set_active_isa(Isa isa);  // throws ValueError if this CPU or build lacks it
// FASTRNN_ISA's value when it is set (non-empty) and names no instruction set; nullptr otherwise.
const char* unknown_isa_environment();

}  // namespace fastrnn
