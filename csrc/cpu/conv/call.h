#pragma once
// The checks every CPU conv entry runs on its arguments (the shared ones of
// common/conv_params.h, plus the CPU's: device, dtype, indices, workspace) and the workspace
// as the kernels take it.
#include "common/dispatch.h"
#include "cpu/conv.h"

namespace fastrnn::cpu {

// A checked call: its shape and its workspace, 64-byte aligned, for as many threads as it has
// room for.
struct ConvCall {
  ConvShape shape;
  ConvWorkspace workspace;
};

// Checks a's arrays for `op` (named `name` in messages) and fits the workspace.
ConvCall check_conv_call(const char* name, ConvOp op, const ConvArgs& a);

template <typename T>
T* data_or_null(const TensorView& v) {
  return v.defined() ? v.data_as<T>() : nullptr;
}

}  // namespace fastrnn::cpu
