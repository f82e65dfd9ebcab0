#pragma once
// Work splitting shared by the OpenMP kernels. In an unnamed namespace (see cells/activations.h):
// the per-ISA translation units each keep their own copy.
#include <cstdint>

namespace fastrnn {
namespace {

struct Range {
  int64_t begin, end;
};

// Part `part` of `parts` near-equal contiguous pieces of [0, n).
inline Range split(int64_t n, int part, int parts) { return {n * part / parts, n * (part + 1) / parts}; }

}  // namespace
}  // namespace fastrnn
