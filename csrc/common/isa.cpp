#include "common/isa.h"

#include <atomic>
#include <cctype>
#include <cstdlib>

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

namespace {

// The best set this CPU supports among those at or below `ceiling`. The sets nest on real CPUs,
// but each is checked, so a CPU reporting AVX-512 without AVX2 still gets a supported one.
Isa best_supported_isa_up_to(Isa ceiling) {
  for (Isa isa : {Isa::Avx512, Isa::Avx2}) {
    if (isa <= ceiling && isa_supported(isa)) return isa;
  }
  return Isa::Generic;
}

// FASTRNN_ISA, or nullptr when unset or empty (`FASTRNN_ISA= python ...` unsets it).
const char* isa_environment() {
  const char* env = std::getenv("FASTRNN_ISA");
  return env != nullptr && *env != '\0' ? env : nullptr;
}

// ASCII case-insensitive comparison with a lower-case name.
bool names(const char* value, const char* lower_case_name) {
  for (; *value != '\0' && *lower_case_name != '\0'; ++value, ++lower_case_name) {
    if (std::tolower(static_cast<unsigned char>(*value)) != *lower_case_name) return false;
  }
  return *value == *lower_case_name;
}

// The set FASTRNN_ISA names, in `isa`; false when it is unset or names none.
bool isa_from_environment(Isa* isa) {
  const char* env = isa_environment();
  if (env == nullptr) return false;
  for (Isa named : {Isa::Generic, Isa::Avx2, Isa::Avx512}) {
    if (names(env, isa_name(named))) {
      *isa = named;
      return true;
    }
  }
  return false;
}

Isa initial_isa() {
  Isa ceiling = Isa::Avx512;
  isa_from_environment(&ceiling);  // left as is when unset or unknown
  return best_supported_isa_up_to(ceiling);
}

std::atomic<Isa>& active() {
  static std::atomic<Isa> isa{initial_isa()};
  return isa;
}

}  // namespace

Isa best_supported_isa() { return best_supported_isa_up_to(Isa::Avx512); }

Isa active_isa() { return active().load(std::memory_order_relaxed); }

void set_active_isa(Isa isa) {
  FASTRNN_CHECK_VALUE(isa_supported(isa), "instruction set '", isa_name(isa),
                      "' is not supported by this CPU or build");
  active().store(isa, std::memory_order_relaxed);
}

const char* unknown_isa_environment() {
  Isa named;
  return isa_from_environment(&named) ? nullptr : isa_environment();
}

}  // namespace fastrnn
