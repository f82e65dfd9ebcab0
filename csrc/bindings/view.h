#pragma once
// Arrays from Python to TensorView, zero-copy: NumPy arrays through the buffer protocol
// (read-only arrays included), anything else through a DLPack capsule (torch tensors pass
// torch.utils.dlpack.to_dlpack(t)); None is an absent optional argument.
#include <pybind11/pybind11.h>

#include "common/tensor_view.h"

namespace fastrnn::bindings {

// The returned view borrows the object's memory: keep the object alive while it is used.
TensorView to_view(pybind11::handle obj, const char* name);

}  // namespace fastrnn::bindings
