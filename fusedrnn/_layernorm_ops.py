"""Fake (shape) and autograd registrations of the layer-normalised LSTM and GRU ops, and their wrapper.

The ops (schemas in csrc/ops.cpp) take the plain ops' arguments without w_hr, plus the norms' weights
after the biases:

    layernorm_lstm_forward(x, h0, c0, w_ih, w_hh, b_ih?, b_hh?, ln_ih_weight, ln_hh_weight, ln_c_weight,
                           ln_c_bias, batch_sizes?, reverse, training) -> (y, h_n, c_n, workspace)
    layernorm_gru_forward(x, h0, w_ih, w_hh, b_ih?, b_hh?, ln_ih_weight, ln_hh_weight, batch_sizes?, reverse,
                          training) -> (y, h_n, workspace)

and their ``*_backward`` ops return the plain gradients followed by the norm weights'. The kernels are CPU
only for now (csrc/cpu/layernorm_layer.cpp): on any other device `forward` runs the reference step loop.
Under torch.autocast they compute and output float32 (as autocast's layer_norm does). The autograd
formula is the backward op; a backward that must itself be differentiable
(create_graph=True) goes through autograd over the reference step loop at the saved inputs, as the plain
ops' does.
"""

from __future__ import annotations

import math

import torch

from . import _onnx, _tracing, reference
from ._cells import GRU, LSTM, Cell
from ._ops import accumulate_dtype

_ops = torch.ops.fusedrnn
NORMALISED = (LSTM, GRU)


def norm_weight_names(cell: Cell) -> tuple[str, ...]:
    """The norm weights a layer-normalised cell takes, in the ops' order (the modules' parameter names)."""
    return ("ln_ih_weight", "ln_hh_weight") + (("ln_c_weight", "ln_c_bias") if cell.states == 2 else ())


def norm_weight_sizes(cell: Cell, hidden: int) -> list[tuple[str, int]]:
    """(name, length) of each norm weight: ln_ih and ln_hh span the G*H gate values, the LSTM's ln_c the H
    units."""
    return [(name, hidden * (cell.gates if name in ("ln_ih_weight", "ln_hh_weight") else 1))
            for name in norm_weight_names(cell)]


def workspace_cols(cell: Cell, hidden: int) -> int:
    """LayerNormed<Cell>::workspace_cols (csrc/fusedrnn/layer_norm.h): both sides' normalised products, the
    plain cell's columns, the LSTM's normalised c', then one rstd per norm."""
    normalises_c = cell.states == 2
    return (2 * cell.gates + cell.workspace_cols + normalises_c) * hidden + 2 + normalises_c


def _register(cell: Cell) -> None:
    name = f"layernorm_{cell.name}"
    s = cell.states
    n_norm = len(norm_weight_names(cell))
    forward_op = getattr(_ops, f"{name}_forward").default
    backward_op = getattr(_ops, f"{name}_backward").default
    reference_layer = getattr(reference, name)

    @torch.library.register_fake(f"fusedrnn::{name}_forward")
    def _forward_fake(*args):
        x, states, hidden, training = args[0], args[1:1 + s], args[1].shape[1], args[-1]
        rows = math.prod(x.shape[:-1])
        workspace = x.new_empty((rows, workspace_cols(cell, hidden)) if training else (0,),
                                dtype=accumulate_dtype(x.dtype))
        return (x.new_empty((*x.shape[:-1], hidden)), *(t.new_empty(t.shape) for t in states), workspace)

    @torch.library.register_fake(f"fusedrnn::{name}_backward")
    def _backward_fake(*args):
        # grad_y, the final states' gradients, x, the initial states, w_ih, w_hh, the norm weights, has_bias, ...
        x, states = args[1 + s], args[2 + s:2 + 2 * s]
        w_ih, w_hh = args[2 + 2 * s], args[3 + 2 * s]
        norm = args[4 + 2 * s:4 + 2 * s + n_norm]
        has_bias = args[4 + 2 * s + n_norm]
        input_grad = args[-1] if isinstance(args[-1], bool) else True
        bias = (w_ih.shape[0],) if has_bias else (0,)
        return (x.new_empty(x.shape) if input_grad else x.new_empty((0,)), *(t.new_empty(t.shape) for t in states),
                w_ih.new_empty(w_ih.shape), w_hh.new_empty(w_hh.shape), w_ih.new_empty(bias), w_ih.new_empty(bias),
                *(t.new_empty(t.shape) for t in norm))

    # forward arguments: x, the states, w_ih, w_hh, b_ih, b_hh, the norm weights, batch_sizes, reverse, training
    differentiable = 1 + s + 4 + n_norm

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:differentiable], output[-1])
        # y is kept as an alias sharing its version counter, not saved: saving it would make an in-place op
        # on the output (`out += x`) an error at backward, which torch.nn's outputs allow. The backward
        # recomputes y (an inference forward) when it was changed.
        ctx.y = output[0].detach()
        ctx.y_version = ctx.y._version
        ctx.batch_sizes, ctx.reverse = inputs[differentiable], inputs[differentiable + 1]
        ctx.has_bias = inputs[1 + s + 2] is not None

    def backward(ctx, *grads):
        saved = ctx.saved_tensors
        inputs, workspace = saved[:differentiable], saved[-1]
        y = ctx.y
        if y._version != ctx.y_version:
            with torch.no_grad():
                y = forward_op(*inputs, ctx.batch_sizes, ctx.reverse, False)[0]
        outputs = (y,) + tuple(inputs[1:1 + s])  # shapes of y and the final states (as the initial ones)
        grads_out = [g if g is not None else torch.zeros_like(t) for g, t in zip(grads[:1 + s], outputs)]
        if torch.is_grad_enabled() and not torch.compiler.is_compiling():  # create_graph: differentiable
            return _reference_grads(inputs, grads_out, ctx.batch_sizes, ctx.reverse) + (None, None, None)
        x, states, (w_ih, w_hh, _, _), norm = (inputs[0], inputs[1:1 + s], inputs[1 + s:5 + s], inputs[5 + s:])
        out = backward_op(*grads_out, x, *states, w_ih, w_hh, *norm, ctx.has_bias, ctx.batch_sizes, ctx.reverse, y,
                          workspace, ctx.needs_input_grad[0])
        dx, d_states, (dw_ih, dw_hh, db_ih, db_hh), d_norm = out[0], out[1:1 + s], out[1 + s:5 + s], out[5 + s:]
        if not ctx.has_bias:
            db_ih = db_hh = None
        return (dx if ctx.needs_input_grad[0] else None, *d_states, dw_ih, dw_hh, db_ih, db_hh, *d_norm,
                None, None, None)

    def _reference_grads(inputs, grads_out, batch_sizes, reverse):
        leaves = [t for t in inputs if t is not None and t.requires_grad]
        states = tuple(inputs[1:1 + s])
        y, final = reference_layer(inputs[0], states if s > 1 else states[0], *inputs[1 + s:],
                                   batch_sizes=batch_sizes, reverse=reverse)
        outputs = (y, *final) if s > 1 else (y, final)
        found = torch.autograd.grad(outputs, leaves, grads_out, create_graph=True, allow_unused=True)
        by_id = {id(t): g for t, g in zip(leaves, found)}
        return tuple(by_id.get(id(t)) if t is not None else None for t in inputs)

    torch.library.register_autograd(f"fusedrnn::{name}_forward", backward, setup_context=setup_context)
    # Under autocast these layers compute in float32, as autocast runs layer_norm: a 16-bit input (from an
    # autocast nn.Linear before them, say) meets float32 weights.
    torch.library.register_autocast(f"fusedrnn::{name}_forward", "cpu", torch.float32)
    FORWARD[cell.name] = forward_op


FORWARD: dict[str, torch._ops.OpOverload] = {}
for _cell in NORMALISED:
    _register(_cell)


def forward(cell: Cell, x, states, weights, norm_weights, batch_sizes, reverse: bool, training: bool):
    """The layer-normalised cell's forward op: states = (h0,) or (h0, c0); weights = (w_ih, w_hh, b_ih, b_hh);
    norm_weights in norm_weight_names(cell)'s order. Returns (y, the final states as a tuple)."""
    if _onnx.exporting() or (torch.jit.is_tracing() and torch.onnx.is_in_onnx_export()):
        raise RuntimeError(f"fusedrnn: ONNX has no layer-normalised {cell.name.upper()} operator, so "
                           f"fusedrnn.LayerNorm{cell.name.upper()} cannot be exported to ONNX")
    if x.device.type != "cpu":  # not fused there yet: the reference step loop, through autograd
        layer = getattr(reference, f"layernorm_{cell.name}")
        y, final = layer(x, states if cell.states > 1 else states[0], *weights, *norm_weights,
                         batch_sizes=batch_sizes, reverse=reverse)
        return y, (tuple(final) if cell.states > 1 else (final,))
    if torch.jit.is_tracing():
        out = _tracing.forward_op(f"layernorm_{cell.name}_forward")(x, *states, *weights, *norm_weights, batch_sizes,
                                                                     reverse)
    else:
        out = FORWARD[cell.name](x, *states, *weights, *norm_weights, batch_sizes, reverse, training)
    return out[0], tuple(out[1:-1])
