#pragma once
// The one switch from a run-time CellKind to the compile-time cell type the CPU and CUDA
// sequence drivers are templated on.
#include "cells/elman.h"
#include "cells/gru.h"
#include "cells/lstm.h"
#include "common/rnn_params.h"

namespace fastrnn::cells {
namespace {  // private to each translation unit, like the cells (see cells/activations.h)

// Calls fn(cell) with a value of the cell type for `kind`, computing in T.
template <typename T, typename Fn>
void with_cell(CellKind kind, const Fn& fn) {
  switch (kind) {
    case CellKind::RnnTanh: return fn(ElmanCell<T, Activation::Tanh>{});
    case CellKind::RnnRelu: return fn(ElmanCell<T, Activation::Relu>{});
    case CellKind::Lstm: return fn(LstmCell<T>{});
    case CellKind::Gru: return fn(GruCell<T>{});
  }
}

}  // namespace
}  // namespace fastrnn::cells
