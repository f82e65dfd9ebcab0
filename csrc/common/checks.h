#pragma once
// Precondition checks the core runs on its own arguments. Python validates first and gives
// the user torch's wording; these keep a direct call into _C from crashing or writing
// outside what the caller passed.
#include <cstdint>
#include <initializer_list>
#include <utility>

#include "common/tensor_view.h"

namespace fastrnn {

using NamedView = std::pair<const char*, const TensorView*>;

// Present, on the CPU, of `dtype`, contiguous and of exactly `shape`.
void check_cpu_array(const char* op, const char* name, const TensorView& v, DType dtype,
                     std::initializer_list<int64_t> shape);
// As above, but an absent view is allowed.
void check_optional_cpu_array(const char* op, const char* name, const TensorView& v, DType dtype,
                              std::initializer_list<int64_t> shape);
// A byte buffer of at least `bytes` bytes on the CPU.
void check_workspace(const char* op, const TensorView& v, int64_t bytes);
// No output shares memory with another output or with an input.
void check_no_overlap(const char* op, std::initializer_list<NamedView> outputs,
                      std::initializer_list<NamedView> inputs);

}  // namespace fastrnn
