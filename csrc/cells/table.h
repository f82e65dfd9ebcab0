#pragma once
// The one table of the cell kinds: how many gates each stacks in its weights, how many H-wide
// blocks its training forward saves per (t, b) row for backward (the reserve), and where each
// saved quantity sits in a reserve row. The cell headers, the CPU and CUDA drivers, the buffer
// sizing and Python (_C.cell_table(), read by fastrnn._checks) all take their numbers from
// here, so a new cell adds one row and one layout. Plain constants: usable on host and device.

namespace fastrnn {

enum class CellKind : int { RnnTanh = 0, RnnRelu = 1, Lstm = 2, Gru = 3 };

namespace cells {

// An Elman cell saves nothing: its backward reads act'(.) from h itself.
struct ElmanLayout {
  static constexpr int kGates = 1;
  static constexpr int kReserveBlocks = 0;
};

// LSTM, gate order i, f, g, o. A row of the reserve: the four activated gates, then c. With a
// projection (proj_size) the unprojected output m = o * tanh(c) follows, for dW_hr.
struct LstmLayout {
  static constexpr int kGates = 4;
  static constexpr int kInputGate = 0, kForgetGate = 1, kCellGate = 2, kOutputGate = 3;
  static constexpr int kCellState = 4;
  static constexpr int kReserveBlocks = 5;
  static constexpr int kProjectionInput = kReserveBlocks;  // only with a projection
};

// GRU, gate order r, z, n. A row of the reserve: r, z, n and h_n = W_hn h_prev + b_hn (which
// the reset gate multiplies).
struct GruLayout {
  static constexpr int kGates = 3;
  static constexpr int kResetGate = 0, kUpdateGate = 1, kNewGate = 2;
  static constexpr int kHiddenNew = 3;
  static constexpr int kReserveBlocks = 4;
};

// One named block of a reserve row, for the table Python reads.
struct ReserveOffset {
  const char* name;
  int block;
};

struct CellInfo {
  CellKind kind;
  const char* name;         // the mode string torch uses ("lstm", "rnn_tanh", ...)
  int gates;                // G: gates stacked along the rows of W_ih, W_hh and the biases
  int reserve_blocks;       // H-wide blocks a training forward saves per row (no projection)
  const ReserveOffset* offsets;
  int offset_count;
};

constexpr ReserveOffset kLstmOffsets[] = {{"input_gate", LstmLayout::kInputGate},
                                          {"forget_gate", LstmLayout::kForgetGate},
                                          {"cell_gate", LstmLayout::kCellGate},
                                          {"output_gate", LstmLayout::kOutputGate},
                                          {"cell_state", LstmLayout::kCellState},
                                          {"projection_input", LstmLayout::kProjectionInput}};
constexpr ReserveOffset kGruOffsets[] = {{"reset_gate", GruLayout::kResetGate},
                                         {"update_gate", GruLayout::kUpdateGate},
                                         {"new_gate", GruLayout::kNewGate},
                                         {"hidden_new", GruLayout::kHiddenNew}};

constexpr int kCellKinds = 4;
constexpr CellInfo kCellTable[kCellKinds] = {
    {CellKind::RnnTanh, "rnn_tanh", ElmanLayout::kGates, ElmanLayout::kReserveBlocks, nullptr, 0},
    {CellKind::RnnRelu, "rnn_relu", ElmanLayout::kGates, ElmanLayout::kReserveBlocks, nullptr, 0},
    {CellKind::Lstm, "lstm", LstmLayout::kGates, LstmLayout::kReserveBlocks, kLstmOffsets,
     int(sizeof(kLstmOffsets) / sizeof(kLstmOffsets[0]))},
    {CellKind::Gru, "gru", GruLayout::kGates, GruLayout::kReserveBlocks, kGruOffsets,
     int(sizeof(kGruOffsets) / sizeof(kGruOffsets[0]))},
};

}  // namespace cells

constexpr bool is_cell_kind(int kind) { return kind >= 0 && kind < cells::kCellKinds; }

// The table's row of `cell` (the first row for a kind out of range: callers check the kind
// first, see check_cell_kind in common/rnn_plan.h).
constexpr const cells::CellInfo& cell_info(CellKind cell) {
  return cells::kCellTable[is_cell_kind(static_cast<int>(cell)) ? static_cast<int>(cell) : 0];
}

// G, the number of gates stacked in the weights.
constexpr int gate_count(CellKind cell) { return cell_info(cell).gates; }

// H-wide blocks the training forward saves per (t, b) for backward; an LSTM with a projection
// also keeps the unprojected output o * tanh(c) for dW_hr.
constexpr int reserve_blocks(CellKind cell, bool projected = false) {
  return cell_info(cell).reserve_blocks + (projected && cell == CellKind::Lstm ? 1 : 0);
}

}  // namespace fastrnn
