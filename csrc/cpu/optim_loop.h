// The optimizer update loop, compiled once per instruction set: included by optim.cpp (the
// portable build) and by optim_avx2.cpp / optim_avx512.cpp, each inside its own namespace. The
// rules (common/optim_rules.h) have internal linkage, so each file inlines its own copy. The
// ISA files are compiled with -ffp-contract=off (CMakeLists.txt): every instruction set then
// rounds as the portable build does (with FMA contraction, centered RMSprop's v - mean^2 moved
// past a float32 test's tolerance).
//
// p, g and the states s0..s2 (null where the rule has none) over elements [begin, end).
template <typename T>
void optimizer_update(const OptimizerHyper& h, double step, bool fresh_buffer, int64_t begin, int64_t end, T* p,
                      const T* g, T* s0, T* s1, T* s2) {
  optim::with_rule<T>(h, step, fresh_buffer, [&](const auto& rule) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) optim::apply<T>(rule, i, p, g, s0, s1, s2);
  });
}
