#pragma once
// The one way a CPU kernel family picks its instruction set at run time (flash-attention's
// static_switch.h is the model). A family compiles its kernels once per set, into namespaces
// isa_avx512, isa_avx2 and isa_generic (isa.h: one source, one tiny file per set), and calls
//   FASTRNN_ISA_DISPATCH(active_isa(), gemm, args, scratch);
// which runs isa_avx512::gemm(args, scratch), isa_avx2::gemm(...) or isa_generic::gemm(...).
// The first argument may be any Isa (pool passes Isa::Generic for windows its SIMD code does
// not take). A family whose SIMD kernels have no portable variant (the caller takes another
// path on generic) calls FASTRNN_SIMD_DISPATCH(fn, args...): AVX-512's where it is active,
// else AVX2's. A set that reuses another's kernel says so with a using-declaration in its
// namespace. Off x86 only isa_generic exists, and FASTRNN_SIMD_DISPATCH must not be reached.
#include "common/isa.h"

#if defined(FASTRNN_X86)
#define FASTRNN_ISA_DISPATCH(isa, fn, ...)                              \
  [&] {                                                                 \
    switch (isa) {                                                      \
      case ::fastrnn::Isa::Avx512: return isa_avx512::fn(__VA_ARGS__);  \
      case ::fastrnn::Isa::Avx2: return isa_avx2::fn(__VA_ARGS__);      \
      default: return isa_generic::fn(__VA_ARGS__);                     \
    }                                                                   \
  }()
#define FASTRNN_SIMD_DISPATCH(fn, ...)                                                                   \
  (::fastrnn::active_isa() == ::fastrnn::Isa::Avx512 ? isa_avx512::fn(__VA_ARGS__) \
                                                     : isa_avx2::fn(__VA_ARGS__))
#else
#define FASTRNN_ISA_DISPATCH(isa, fn, ...) \
  [&] {                                    \
    (void)(isa);                           \
    return isa_generic::fn(__VA_ARGS__);   \
  }()
#endif
