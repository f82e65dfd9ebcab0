#pragma once
// Arrays from Python to TensorView, zero-copy: NumPy arrays through the buffer protocol
// (read-only arrays included), anything else through a DLPack capsule (torch tensors pass
// torch.utils.dlpack.to_dlpack(t)); None is an absent optional argument.
#include <pybind11/pybind11.h>

#include <array>
#include <cstdint>
#include <string>

#include "common/error.h"
#include "common/tensor_view.h"

namespace fastrnn::bindings {

// An (h, w) pair of geometry (kernel size, stride, padding, dilation), a Python 2-tuple.
using Pair = std::array<int64_t, 2>;

// The returned view borrows the object's memory: keep the object alive while it is used.
TensorView to_view(pybind11::handle obj, const char* name);

// Refuses the first key of `d` that known(key) rejects (TypeError "<what> '<key>'"), so that a
// misspelt argument cannot pass silently.
template <typename Known>
void refuse_unknown_keys(const pybind11::dict& d, const char* what, const Known& known) {
  for (auto item : d) {
    const std::string key = pybind11::str(item.first);
    FASTRNN_CHECK_KIND(ErrorKind::Type, known(key), what, " '", key, "'");
  }
}

}  // namespace fastrnn::bindings
