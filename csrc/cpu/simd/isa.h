#pragma once
// The instruction set a per-ISA translation unit is compiled for. CMakeLists.txt compiles
// every file named *_avx512.cpp, *_avx2.cpp or *_generic.cpp with that set's flags and
// defines FASTRNN_BUILD_AVX512, FASTRNN_BUILD_AVX2 or FASTRNN_BUILD_GENERIC; such a file is
// usually one line including a family's shared body (mamba's one instantiation file per
// dtype), which opens `namespace fastrnn::cpu::FASTRNN_ISA_NAMESPACE` and includes this set's
// SIMD vocabulary (simd/avx512.h, simd/avx2.h) inside it. dispatch.h picks among them.
#if defined(FASTRNN_BUILD_AVX512)
#define FASTRNN_ISA_NAMESPACE isa_avx512
#elif defined(FASTRNN_BUILD_AVX2)
#define FASTRNN_ISA_NAMESPACE isa_avx2
#elif defined(FASTRNN_BUILD_GENERIC)
#define FASTRNN_ISA_NAMESPACE isa_generic
#else
#error "a per-ISA body compiled without its set: name the file *_avx512.cpp, *_avx2.cpp or *_generic.cpp"
#endif
