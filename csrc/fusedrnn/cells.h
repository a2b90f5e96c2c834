// The registry of cells: every backend instantiates its kernels for each cell listed here, the
// bindings dispatch an op to its cell through it, and Python reads the traits from it
// (fusedrnn._C.cells()). A new cell is a header like lstm.h, an entry in CellId (cell.h) and a line
// in each function below.
#pragma once

#include "fusedrnn/gru.h"
#include "fusedrnn/lstm.h"
#include "fusedrnn/rnn.h"

namespace fusedrnn {

constexpr int kCellCount = 3;

// f(Cell{}) for every cell.
template <typename F>
void for_each_cell(F&& f) {
  f(LstmCell{});
  f(GruCell{});
  f(RnnCell{});
}

// f(Cell{}) for the cell with this id.
template <typename F>
decltype(auto) visit_cell(CellId id, F&& f) {
  switch (id) {
    case CellId::Gru: return f(GruCell{});
    case CellId::Rnn: return f(RnnCell{});
    default: return f(LstmCell{});
  }
}

}  // namespace fusedrnn
