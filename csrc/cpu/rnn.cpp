// The CPU RNN entry points: the CPU's part of the shared checks (common/rnn_plan.h), workspace
// sizes, and dispatch to the driver of the active instruction set (rnn_impl.h, compiled once
// per set).
#include "cpu/rnn.h"

#include <algorithm>
#include <initializer_list>

#include "common/checks.h"
#include "common/error.h"
#include "common/rnn_plan.h"
#include "cpu/rnn_variants.h"
#include "cpu/simd/dispatch.h"

namespace fastrnn::cpu {

namespace {

// The workspace any instruction-set variant this CPU can run needs: the active one may change
// between the size query and the call. (A variant the CPU lacks is never asked: its code, even
// the size query, may use instructions this CPU does not have.)
RnnWorkspaceBytes workspace_bytes(CellKind cell, DType dtype, const RnnDims& d) {
  RnnWorkspaceBytes bytes = isa_generic::rnn_workspace_bytes(cell, dtype, d);
  auto widen = [&](const RnnWorkspaceBytes& other) {
    bytes.forward = std::max(bytes.forward, other.forward);
    bytes.backward = std::max(bytes.backward, other.backward);
  };
#if defined(FASTRNN_X86)
  if (isa_supported(Isa::Avx2)) widen(isa_avx2::rnn_workspace_bytes(cell, dtype, d));
  if (isa_supported(Isa::Avx512)) widen(isa_avx512::rnn_workspace_bytes(cell, dtype, d));
#endif
  return bytes;
}

void check_float_dtype(const char* op, DType dtype) {
  FASTRNN_CHECK(dtype == DType::Float32 || dtype == DType::Float64, op, ": dtype ", dtype_name(dtype),
                " is not supported on the CPU; expected float32 or float64");
}

void check_array(const char* op, const char* name, const TensorView& v, const TensorView& /*x*/, DType dtype,
                 std::initializer_list<int64_t> shape) {
  check_cpu_array(op, name, v, dtype, shape);
}

void check_fits(const char* op, const TensorView& workspace, const TensorView& /*x*/, int64_t bytes) {
  check_workspace(op, workspace, bytes);
}

// The CPU kernels: float32 and float64, recurrent dropout, and a call may leave out final
// states it does not need.
const RnnDevice kCpu = {DeviceType::CPU, "the CPU", true, true, check_float_dtype, check_array, check_fits,
                        workspace_bytes};

}  // namespace

RnnBufferSizes rnn_buffer_sizes(CellKind cell, DType dtype, int64_t total_rows, int64_t batch, int64_t input_size,
                                int64_t hidden_size, int64_t proj_size) {
  return fastrnn::rnn_buffer_sizes(kCpu, cell, dtype, total_rows, batch, input_size, hidden_size, proj_size);
}

void rnn_forward(const RnnForwardParams* params, int count) {
  RnnDims dims[kMaxCalls];
  check_rnn_forward(kCpu, params, count, dims);
  FASTRNN_ISA_DISPATCH(active_isa(), rnn_forward, params, dims, count);
}

void rnn_backward(const RnnBackwardParams* params, int count) {
  RnnDims dims[kMaxCalls];
  check_rnn_backward(kCpu, params, count, dims);
  FASTRNN_ISA_DISPATCH(active_isa(), rnn_backward, params, dims, count);
}

}  // namespace fastrnn::cpu
