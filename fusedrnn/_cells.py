"""The cell table: every cell's traits, read once from the C++ registry (csrc/fusedrnn/cells.h), so that
the kernels, the bindings and the Python layer share one definition.

A cell's ops are ``torch.ops.fusedrnn.<name>_forward`` / ``<name>_backward``. Their arguments follow from
the traits (see fusedrnn/_ops.py): the initial states are h0 (and c0 when ``states == 2``), a projectable
cell takes w_hr, and a cell that takes a nonlinearity takes it as a string.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _C


@dataclass(frozen=True)
class Cell:
    name: str                  # op prefix, e.g. "lstm"
    gates: int                 # rows of W_ih and W_hh per hidden unit
    states: int                # 1 (h) or 2 (h and the cell state c)
    workspace_cols: int        # values a training forward saves per hidden unit
    input_apart: int           # the gate whose input side stays apart from its hidden side, or -1
    h_feeds_through: bool      # h' depends on h directly, not only through W_hh
    projectable: bool          # takes proj_size (w_hr)
    takes_nonlinearity: bool   # takes 'tanh' or 'relu'


CELLS: dict[str, Cell] = {
    traits["name"]: Cell(**{key: value for key, value in traits.items() if key != "id"}) for traits in _C.cells()
}
LSTM, GRU, RNN = CELLS["lstm"], CELLS["gru"], CELLS["rnn"]

# torch.nn's mode strings (RNNBase.mode) -> (cell, nonlinearity)
MODES: dict[str, tuple[Cell, str | None]] = {
    "LSTM": (LSTM, None),
    "GRU": (GRU, None),
    "RNN_TANH": (RNN, "tanh"),
    "RNN_RELU": (RNN, "relu"),
}
