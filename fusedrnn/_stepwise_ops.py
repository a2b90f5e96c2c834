"""Fake (shape) and autograd registrations of the step-wise ops, and their wrapper.

The step-wise ops run a cell with layer norm, zoneout or recurrent dropout (csrc/fusedrnn/stepwise.h). Their
schemas (csrc/ops.cpp) take the plain ops' arguments without w_hr, then the options, each None when off:

    stepwise_lstm_forward(x, h0, c0, w_ih, w_hh, b_ih?, b_hh?, ln_ih_weight?, ln_hh_weight?, ln_c_weight?,
                          ln_c_bias?, zoneout?, recurrent_mask?, batch_sizes?, reverse, training)
        -> (y, h_n, c_n, workspace)
    stepwise_gru_forward(x, h0, w_ih, w_hh, b_ih?, b_hh?, ln_ih_weight?, ln_hh_weight?, zoneout?, recurrent_mask?,
                         batch_sizes?, reverse, training) -> (y, h_n, workspace)
    stepwise_rnn_forward(x, h0, w_ih, w_hh, b_ih?, b_hh?, zoneout?, recurrent_mask?, batch_sizes?, reverse,
                         nonlinearity, training) -> (y, h_n, workspace)

zoneout has x's layout with S*H features (the previous h's weight, then the previous c's, per step);
recurrent_mask is [B, H]. The ``*_backward`` ops return the plain gradients followed by the norm weights'.
The kernels are CPU only for now (csrc/cpu/stepwise_layer.cpp): on any other device `forward` runs the
reference step loop. Under torch.autocast they compute and output float32 (as autocast's layer_norm does).
The autograd formula is the backward op; a backward that must itself be differentiable (create_graph=True)
goes through autograd over the reference step loop at the saved inputs, as the plain ops' does.
"""

from __future__ import annotations

import math

import torch

from . import _onnx, _tracing, reference
from ._cells import CELLS, Cell
from ._ops import accumulate_dtype

_ops = torch.ops.fusedrnn
NORMALISED = ("lstm", "gru")  # the cells with a layer-normalised form


def norm_weight_names(cell: Cell) -> tuple[str, ...]:
    """The norm weights a layer-normalised cell takes, in the ops' order (the modules' parameter names)."""
    if cell.name not in NORMALISED:
        return ()
    return ("ln_ih_weight", "ln_hh_weight") + (("ln_c_weight", "ln_c_bias") if cell.states == 2 else ())


def norm_weight_sizes(cell: Cell, hidden: int) -> list[tuple[str, int]]:
    """(name, length) of each norm weight: ln_ih and ln_hh span the G*H gate values, the LSTM's ln_c the H
    units."""
    return [(name, hidden * (cell.gates if name in ("ln_ih_weight", "ln_hh_weight") else 1))
            for name in norm_weight_names(cell)]


def workspace_cols(cell: Cell, hidden: int, norm: bool, zoneout: bool) -> int:
    """StepwiseLayout::cols (csrc/fusedrnn/stepwise.h): with layer norm both sides' normalised products, the
    plain cell's columns, the LSTM's normalised c~, the zoned-out LSTM's c', with layer norm an rstd per norm."""
    has_c = cell.states == 2
    normalises_c = norm and has_c
    return ((2 * cell.gates if norm else 0) + cell.workspace_cols + normalises_c + (zoneout and has_c)) * hidden + (
        (2 + normalises_c) if norm else 0)


def _reference_layer(cell: Cell, norm: bool):
    """reference's layer for the cell, with or without layer norm."""
    return getattr(reference, f"layernorm_{cell.name}" if norm else cell.name)


def _register(cell: Cell) -> None:
    name = f"stepwise_{cell.name}"
    s = cell.states
    n_norm = len(norm_weight_names(cell))
    forward_op = getattr(_ops, f"{name}_forward").default
    backward_op = getattr(_ops, f"{name}_backward").default
    # forward arguments: x, the states, w_ih, w_hh, b_ih, b_hh, the norm weights, zoneout, recurrent_mask,
    # batch_sizes, reverse, (nonlinearity), training
    differentiable = 1 + s + 4 + n_norm

    @torch.library.register_fake(f"fusedrnn::{name}_forward")
    def _forward_fake(*args):
        x, states, hidden, training = args[0], args[1:1 + s], args[1].shape[1], args[-1]
        norm, zoneout = args[5 + s] is not None if n_norm else False, args[differentiable] is not None
        rows = math.prod(x.shape[:-1])
        workspace = x.new_empty((rows, workspace_cols(cell, hidden, norm, zoneout)) if training else (0,),
                                dtype=accumulate_dtype(x.dtype))
        return (x.new_empty((*x.shape[:-1], hidden)), *(t.new_empty(t.shape) for t in states), workspace)

    @torch.library.register_fake(f"fusedrnn::{name}_backward")
    def _backward_fake(*args):
        # grad_y, the final states' gradients, x, the initial states, w_ih, w_hh, the norm weights, zoneout,
        # recurrent_mask, has_bias, ...
        x, states = args[1 + s], args[2 + s:2 + 2 * s]
        w_ih, w_hh = args[2 + 2 * s], args[3 + 2 * s]
        norm = args[4 + 2 * s:4 + 2 * s + n_norm]
        has_bias = args[6 + 2 * s + n_norm]
        input_grad = args[-1] if isinstance(args[-1], bool) else True
        bias = (w_ih.shape[0],) if has_bias else (0,)
        return (x.new_empty(x.shape) if input_grad else x.new_empty((0,)), *(t.new_empty(t.shape) for t in states),
                w_ih.new_empty(w_ih.shape), w_hh.new_empty(w_hh.shape), w_ih.new_empty(bias), w_ih.new_empty(bias),
                *(t.new_empty(t.shape) if t is not None else x.new_empty((0,)) for t in norm))

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:differentiable + 2], output[-1])  # then zoneout, recurrent_mask, workspace
        # y is kept as an alias sharing its version counter, not saved: saving it would make an in-place op
        # on the output (`out += x`) an error at backward, which torch.nn's outputs allow. The backward
        # recomputes y (an inference forward) when it was changed.
        ctx.y = output[0].detach()
        ctx.y_version = ctx.y._version
        ctx.after = inputs[differentiable + 2:-1]  # batch_sizes, reverse, (nonlinearity)
        ctx.has_bias = inputs[1 + s + 2] is not None

    def backward(ctx, *grads):
        saved = ctx.saved_tensors
        inputs, masks, workspace = saved[:differentiable], saved[differentiable:differentiable + 2], saved[-1]
        batch_sizes, reverse = ctx.after[0], ctx.after[1]
        nonlinearity = ctx.after[2:]
        y = ctx.y
        if y._version != ctx.y_version:
            with torch.no_grad():
                y = forward_op(*inputs, *masks, *ctx.after, False)[0]
        outputs = (y,) + tuple(inputs[1:1 + s])  # shapes of y and the final states (as the initial ones)
        grads_out = [g if g is not None else torch.zeros_like(t) for g, t in zip(grads[:1 + s], outputs)]
        tail = (None,) * (2 + len(ctx.after) + 1)  # zoneout, recurrent_mask, batch_sizes, reverse, ..., training
        if torch.is_grad_enabled() and not torch.compiler.is_compiling():  # create_graph: differentiable
            return _reference_grads(inputs, masks, grads_out, ctx.after) + tail
        x, states, (w_ih, w_hh, _, _), norm = (inputs[0], inputs[1:1 + s], inputs[1 + s:5 + s], inputs[5 + s:])
        out = backward_op(*grads_out, x, *states, w_ih, w_hh, *norm, *masks, ctx.has_bias, batch_sizes, reverse,
                          *nonlinearity, y, workspace, ctx.needs_input_grad[0])
        dx, d_states, (dw_ih, dw_hh, db_ih, db_hh), d_norm = out[0], out[1:1 + s], out[1 + s:5 + s], out[5 + s:]
        if not ctx.has_bias:
            db_ih = db_hh = None
        d_norm = tuple(d if w is not None else None for d, w in zip(d_norm, norm))
        return (dx if ctx.needs_input_grad[0] else None, *d_states, dw_ih, dw_hh, db_ih, db_hh, *d_norm) + tail

    def _reference_grads(inputs, masks, grads_out, after):
        leaves = [t for t in inputs if t is not None and t.requires_grad]
        y, final = _reference(cell, inputs[0], tuple(inputs[1:1 + s]), inputs[1 + s:5 + s], inputs[5 + s:], *masks,
                              *after)
        found = torch.autograd.grad((y, *final), leaves, grads_out, create_graph=True, allow_unused=True)
        by_id = {id(t): g for t, g in zip(leaves, found)}
        return tuple(by_id.get(id(t)) if t is not None else None for t in inputs)

    torch.library.register_autograd(f"fusedrnn::{name}_forward", backward, setup_context=setup_context)
    # Under autocast these layers compute in float32, as autocast runs layer_norm: a 16-bit input (from an
    # autocast nn.Linear before them, say) meets float32 weights.
    torch.library.register_autocast(f"fusedrnn::{name}_forward", "cpu", torch.float32)
    FORWARD[cell.name] = forward_op


def _reference(cell: Cell, x, states, weights, norm_weights, zoneout, recurrent_mask, batch_sizes, reverse,
               nonlinearity=None):
    """The reference step loop of the op's arguments; returns (y, the final states as a tuple)."""
    norm = bool(norm_weights) and norm_weights[0] is not None
    extra = {"nonlinearity": nonlinearity} if cell.takes_nonlinearity else {}
    y, final = _reference_layer(cell, norm)(x, states if cell.states > 1 else states[0], *weights,
                                            *(norm_weights if norm else ()), batch_sizes=batch_sizes,
                                            reverse=reverse, zoneout=zoneout, recurrent_mask=recurrent_mask, **extra)
    return y, (tuple(final) if cell.states > 1 else (final,))


FORWARD: dict[str, torch._ops.OpOverload] = {}
for _cell in CELLS.values():
    _register(_cell)


def forward(cell: Cell, x, states, weights, norm_weights, zoneout, recurrent_mask, batch_sizes, reverse: bool,
            nonlinearity, training: bool):
    """The step-wise cell's forward op: states = (h0,) or (h0, c0); weights = (w_ih, w_hh, b_ih, b_hh);
    norm_weights in norm_weight_names(cell)'s order, or () / Nones without layer norm; zoneout and
    recurrent_mask tensors or None. Returns (y, the final states as a tuple)."""
    norm_weights = tuple(norm_weights) or (None,) * len(norm_weight_names(cell))
    if _onnx.exporting() or (torch.jit.is_tracing() and torch.onnx.is_in_onnx_export()):
        what = "layer-normalised " if norm_weights and norm_weights[0] is not None else "zoned-out or dropped-out "
        raise RuntimeError(f"fusedrnn: ONNX has no {what}{cell.name.upper()} operator, so this fusedrnn module "
                           f"cannot be exported to ONNX")
    if x.device.type != "cpu":  # not fused there yet: the reference step loop, through autograd
        return _reference(cell, x, states, weights, norm_weights, zoneout, recurrent_mask, batch_sizes, reverse,
                          nonlinearity)
    extra = (nonlinearity,) if cell.takes_nonlinearity else ()
    args = (x, *states, *weights, *norm_weights, zoneout, recurrent_mask, batch_sizes, reverse, *extra)
    if torch.jit.is_tracing():
        out = _tracing.forward_op(f"stepwise_{cell.name}_forward")(*args)
    else:
        out = FORWARD[cell.name](*args, training)
    return out[0], tuple(out[1:-1])

