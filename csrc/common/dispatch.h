#pragma once
// Turns a run-time dtype into the compile-time `scalar_t` of a lambda body:
//   FASTRNN_DISPATCH_FLOATING(view.dtype, "rnn_forward", [&] { run<scalar_t>(params); });
#include "common/error.h"
#include "common/tensor_view.h"

#define FASTRNN_DISPATCH_FLOATING(dtype, op_name, ...)                                         \
  [&] {                                                                                        \
    switch (dtype) {                                                                           \
      case ::fastrnn::DType::Float32: {                                                        \
        using scalar_t = float;                                                                \
        return __VA_ARGS__();                                                                  \
      }                                                                                        \
      case ::fastrnn::DType::Float64: {                                                        \
        using scalar_t = double;                                                               \
        return __VA_ARGS__();                                                                  \
      }                                                                                        \
      default:                                                                                 \
        throw ::fastrnn::Error(::fastrnn::ErrorKind::Runtime,                                  \
                               ::fastrnn::detail::concat(op_name, ": dtype ",                  \
                                                         ::fastrnn::dtype_name(dtype),         \
                                                         " is not supported on the CPU; "      \
                                                         "expected float32 or float64"));     \
    }                                                                                          \
  }()
