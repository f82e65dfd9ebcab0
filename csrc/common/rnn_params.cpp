#include "common/rnn_params.h"

namespace fastrnn {

const char* cell_name(CellKind cell) {
  switch (cell) {
    case CellKind::RnnTanh: return "rnn_tanh";
    case CellKind::RnnRelu: return "rnn_relu";
    case CellKind::Lstm: return "lstm";
    case CellKind::Gru: return "gru";
  }
  return "unknown";
}

}  // namespace fastrnn
