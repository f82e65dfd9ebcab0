#include "common/isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "common/error.h"

namespace fastrnn {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    case Isa::Generic: break;
  }
  return "generic";
}

bool isa_supported(Isa isa) {
#if defined(FASTRNN_X86)
  // __builtin_cpu_supports also checks that the OS saves the wide registers (XCR0).
  switch (isa) {
    case Isa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("fma");
    case Isa::Avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::Generic: return true;
  }
  return false;
#else
  return isa == Isa::Generic;
#endif
}

Isa best_supported_isa() {
  for (Isa isa : {Isa::Avx512, Isa::Avx2}) {
    if (isa_supported(isa)) return isa;
  }
  return Isa::Generic;
}

namespace {

Isa initial_isa() {
  Isa isa = best_supported_isa();
  if (const char* env = std::getenv("FASTRNN_ISA")) {
    for (Isa wanted : {Isa::Generic, Isa::Avx2, Isa::Avx512}) {
      // An unsupported request falls back to the best supported set rather than crashing.
      if (std::strcmp(env, isa_name(wanted)) == 0 && isa_supported(wanted)) isa = wanted;
    }
  }
  return isa;
}

std::atomic<Isa>& active() {
  static std::atomic<Isa> isa{initial_isa()};
  return isa;
}

}  // namespace

Isa active_isa() { return active().load(std::memory_order_relaxed); }

void set_active_isa(Isa isa) {
  FASTRNN_CHECK_VALUE(isa_supported(isa), "instruction set '", isa_name(isa),
                      "' is not supported by this CPU or build");
  active().store(isa, std::memory_order_relaxed);
}

}  // namespace fastrnn
