#pragma once
// The entry points each instruction-set build of the RNN driver defines (rnn_impl.h, compiled
// by rnn_generic.cpp, rnn_avx2.cpp and rnn_avx512.cpp) and rnn.cpp dispatches to. The
// arguments have passed check_rnn_forward / check_rnn_backward; dims are their sizes.
#include <cstdint>

#include "common/rnn_params.h"
#include "common/rnn_plan.h"

namespace fastrnn::cpu {

#define FASTRNN_DECLARE_RNN_VARIANT(ns)                                                      \
  namespace ns {                                                                             \
  void rnn_forward(const RnnForwardParams* params, const RnnDims* dims, int count);          \
  void rnn_backward(const RnnBackwardParams* params, const RnnDims* dims, int count);         \
  RnnWorkspaceBytes rnn_workspace_bytes(CellKind cell, DType dtype, const RnnDims& d);       \
  }

FASTRNN_DECLARE_RNN_VARIANT(isa_generic)
#if defined(FASTRNN_X86)
FASTRNN_DECLARE_RNN_VARIANT(isa_avx2)
FASTRNN_DECLARE_RNN_VARIANT(isa_avx512)
#endif

#undef FASTRNN_DECLARE_RNN_VARIANT

}  // namespace fastrnn::cpu
