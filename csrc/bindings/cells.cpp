// The cell table (csrc/cells/table.h) for Python: fastrnn._checks reads its gates and reserve
// sizes from here instead of repeating them.
#include <pybind11/pybind11.h>

#include "cells/table.h"

namespace py = pybind11;

namespace fastrnn::bindings {

void register_cells(py::module_& m) {
  m.def(
      "cell_table",
      [] {
        py::dict table;
        for (const cells::CellInfo& cell : cells::kCellTable) {
          py::dict offsets;
          for (int k = 0; k < cell.offset_count; ++k) offsets[cell.offsets[k].name] = cell.offsets[k].block;
          py::dict row;
          row["kind"] = static_cast<int>(cell.kind);
          row["gates"] = cell.gates;
          row["reserve_blocks"] = cell.reserve_blocks;
          row["reserve_offsets"] = offsets;
          table[cell.name] = row;
        }
        return table;
      },
      "Per cell (by torch's mode name): its kind code for the kernels, the gates stacked in its weights, the "
      "H-wide blocks a training forward saves per row (an LSTM with a projection saves one more: "
      "reserve_offsets['projection_input']) and the named blocks of a reserve row.");
}

}  // namespace fastrnn::bindings
