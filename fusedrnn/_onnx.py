"""ONNX export of the fused ops: each layer and direction becomes ONNX's own LSTM, GRU or RNN operator.

The fused ops are one layer in one direction (fusedrnn/_ops.py), so each maps to one ONNX node with
direction "forward" or "reverse"; a bidirectional layer is two nodes and a Concat. ONNX stacks the gates
in another order than torch.nn (LSTM i,f,g,o -> i,o,f,c; GRU r,z,n -> z,r,h, with linear_before_reset=1
since torch.nn applies r to W_hn h + b_hn) and joins the two biases into one input, so the weights are
reordered in the graph; the exporters fold that into the stored initializers.

Both exporters of torch.onnx.export are covered:

- the TorchScript-based one (dynamo=False) traces the fused ops; the symbolic functions registered here
  turn them into the ONNX operator. They are registered when torch.onnx is first imported, so importing
  fusedrnn does not import torch.onnx.
- the dynamo-based one (the default) runs torch.export, whose graph would hold the fused op, which has no
  ONNX translation. While it exports, fusedrnn._ops.forward calls `forward` here instead, which records
  the ONNX operator through torch.onnx.ops.symbolic_multi_out (PyTorch's way to place an ONNX operator in
  an exported graph).

ONNX has no operator for a projected LSTM (proj_size > 0) and packed sequences are not mapped: both raise
a clear error instead of writing a wrong graph.
"""

from __future__ import annotations

import sys

import torch

from . import _compile_support
from ._cells import CELLS, Cell

# ONNX's gate order, as indices of torch.nn's gates
_ONNX_GATES = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn": (0,)}
_ONNX_OP = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def exporting() -> bool:
    """True while the dynamo-based torch.onnx.export traces the model (the TorchScript-based exporter
    traces the fused ops themselves and converts them with the symbolic functions below)."""
    if torch.compiler.is_compiling() and not torch.compiler.is_exporting():
        return False  # torch.compile: never an ONNX export
    onnx = sys.modules.get("torch.onnx")  # not imported yet: no export running (and no need to import it)
    if onnx is None or torch.jit.is_tracing():
        return False
    # The dynamo-based exporter's flag, which torch.onnx.is_in_onnx_export() reads: Dynamo folds that call
    # to False, so the exporter's strict torch.export attempt (after a failed non-strict one) would record
    # the fused op; and the call costs microseconds per layer. The call stays as the fallback.
    flag = getattr(sys.modules.get("torch.onnx._internal.exporter._flags"), "_is_onnx_exporting", None)
    return onnx.is_in_onnx_export() if flag is None else flag


def _check(cell: Cell, w_hr_given: bool, packed: bool) -> None:
    if cell.name not in _ONNX_OP:
        raise RuntimeError(f"fusedrnn: ONNX has no operator for the {cell.name} cell")
    if w_hr_given:
        raise RuntimeError("fusedrnn: ONNX's LSTM operator has no projection, so an LSTM with proj_size > 0 "
                           "cannot be exported to ONNX")
    if packed:
        raise RuntimeError("fusedrnn: ONNX export of packed sequences (PackedSequence, batch_sizes) is not "
                           "supported; export the model with a padded input tensor")


def _attributes(cell: Cell, hidden: int, reverse: bool, nonlinearity: str | None) -> dict:
    attrs = {"hidden_size": hidden, "direction": "reverse" if reverse else "forward"}
    if cell.name == "gru":
        attrs["linear_before_reset"] = 1
    if cell.takes_nonlinearity:
        attrs["activations"] = ["Relu" if nonlinearity == "relu" else "Tanh"]
    return attrs


# ----------------------------------------------------------------------------- dynamo-based exporter


def _onnx_gate_order(cell: Cell, t: torch.Tensor, hidden: int) -> torch.Tensor:
    # slices, not chunk(): the exporter's optimizer folds Slice into the initializers, but not Split
    return torch.cat([t[g * hidden:(g + 1) * hidden] for g in _ONNX_GATES[cell.name]])


def forward(cell: Cell, x, states, weights, batch_sizes, reverse: bool, nonlinearity):
    """The layer as one ONNX node, with _ops.forward's arguments and results: (y, the final states)."""
    w_ih, w_hh, b_ih, b_hh = weights[:4]
    _check(cell, cell.projectable and weights[4] is not None, batch_sizes is not None)
    hidden = w_hh.shape[0] // cell.gates
    bias = None
    if b_ih is not None or b_hh is not None:  # ONNX's B is [W_b, R_b]; a missing half is zeros
        b_ih = b_ih if b_ih is not None else torch.zeros_like(b_hh)
        b_hh = b_hh if b_hh is not None else torch.zeros_like(b_ih)
        bias = torch.cat([_onnx_gate_order(cell, b, hidden) for b in (b_ih, b_hh)]).unsqueeze(0)
    inputs = [x, _onnx_gate_order(cell, w_ih, hidden).unsqueeze(0),
              _onnx_gate_order(cell, w_hh, hidden).unsqueeze(0), bias,
              None, *(s.unsqueeze(0) for s in states)]  # None: sequence_lens
    steps, batch = x.shape[0], x.shape[1]
    outputs = torch.onnx.ops.symbolic_multi_out(
        _ONNX_OP[cell.name], inputs, _attributes(cell, hidden, reverse, nonlinearity),
        dtypes=[x.dtype] * (1 + len(states)),
        shapes=[[steps, 1, batch, hidden]] + [[1, batch, s.shape[-1]] for s in states])
    return outputs[0].squeeze(1), tuple(s.squeeze(0) for s in outputs[1:])


# ----------------------------------------------------------------------- TorchScript-based exporter


def _symbolic(cell: Cell):
    """The symbolic function of cell's forward op (its schema is in fusedrnn/_ops.py)."""
    from torch._C import OptionalType
    from torch.onnx import symbolic_helper as sh

    # x, states, w_ih, w_hh, b_ih, b_hh, w_hr?, batch_sizes, then the constants reverse, nonlinearity?
    tensors = 1 + cell.states + 4 + (1 if cell.projectable else 0) + 1

    def missing(g):  # an absent optional input
        value = g.op("prim::Constant")
        value.setType(OptionalType.ofTensor())
        return value

    def onnx_gate_order(g, t, hidden):
        rows = torch.cat([torch.arange(k * hidden, (k + 1) * hidden) for k in _ONNX_GATES[cell.name]])
        return g.op("Gather", t, g.op("Constant", value_t=rows), axis_i=0)

    def symbolic(g, x, *args):
        states = args[:cell.states]
        w_ih, w_hh, b_ih, b_hh = args[cell.states:cell.states + 4]
        w_hr_given = cell.projectable and not sh._is_none(args[cell.states + 4])
        batch_sizes = args[tensors - 2]
        reverse = sh._get_const(args[tensors - 1], "b", "reverse")
        nonlinearity = sh._get_const(args[tensors], "s", "nonlinearity") if cell.takes_nonlinearity else None
        _check(cell, w_hr_given, not sh._is_none(batch_sizes))
        rows = sh._get_tensor_dim_size(w_hh, 0)
        if rows is None:
            raise RuntimeError(f"fusedrnn: ONNX export of {cell.name} needs the shape of w_hh")
        hidden = rows // cell.gates
        bias = missing(g)
        if not (sh._is_none(b_ih) and sh._is_none(b_hh)):
            zeros = torch.zeros(cell.gates * hidden, dtype=x.type().dtype())
            halves = [b if not sh._is_none(b) else g.op("Constant", value_t=zeros) for b in (b_ih, b_hh)]
            bias = g.op("Concat", *(onnx_gate_order(g, b, hidden) for b in halves), axis_i=0)
            bias = sh._unsqueeze_helper(g, bias, [0])
        weights = [sh._unsqueeze_helper(g, onnx_gate_order(g, w, hidden), [0]) for w in (w_ih, w_hh)]
        initial = [sh._unsqueeze_helper(g, s, [0]) for s in states]
        attrs = {f"{k}_{'i' if isinstance(v, int) else 's'}": v
                 for k, v in _attributes(cell, hidden, reverse, nonlinearity).items()}
        outputs = g.op(_ONNX_OP[cell.name], x, *weights, bias, missing(g), *initial, outputs=1 + cell.states,
                       **attrs)
        y = sh._squeeze_helper(g, outputs[0], [1])
        finals = [sh._squeeze_helper(g, s, [0]) for s in outputs[1:]]
        workspace = g.op("Constant", value_t=torch.zeros(0))  # never used: an export does not train
        return (y, *finals, workspace)

    return symbolic


def register_symbolics(onnx) -> None:
    """Registers the symbolic functions of every fused forward op with the TorchScript-based exporter
    (called once torch.onnx is imported)."""
    for cell in CELLS.values():
        if cell.name in _ONNX_OP:
            onnx.register_custom_op_symbolic(f"fusedrnn::{cell.name}_forward", _symbolic(cell), 9)
    # A model traced with torch.jit.trace asks for grad mode when it runs (fusedrnn/_tracing.py); an
    # ONNX graph never records gradients.
    onnx.register_custom_op_symbolic("aten::is_grad_enabled",
                                     lambda g: g.op("Constant", value_t=torch.tensor(False)), 9)


def install() -> None:
    _compile_support.after_import("torch.onnx", register_symbolics)
