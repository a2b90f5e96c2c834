"""Typed wrappers over torch.ops.fusedrnn.*, with their fake (shape) and autograd registrations.

The ops (schemas in csrc/ops.cpp) run one layer in one direction over a whole sequence:

    lstm_forward(x, h0, c0, w_ih, w_hh, b_ih?, b_hh?, w_hr?, batch_sizes?, reverse, training)
        -> (y, h_n, c_n, workspace)
    gru_forward(x, h0, w_ih, w_hh, b_ih?, b_hh?, batch_sizes?, reverse, training) -> (y, h_n, workspace)
    rnn_forward(x, h0, w_ih, w_hh, b_ih?, b_hh?, batch_sizes?, reverse, nonlinearity, training)
        -> (y, h_n, workspace)

and a ``*_backward`` op each. x is dense [T, B, I], or packed [N, I] when batch_sizes ([T] int64 on the
CPU, non-increasing) is given; y has x's layout with P features (P = proj_size when w_hr is given, else
hidden_size); h0/h_n are [B, P], c0/c_n [B, H].

workspace holds what the backward needs, one row per packed row, in the accumulate dtype (float32 for
float16/bfloat16 inputs, else the input dtype); it is [0] when training=False:

    LSTM [N, 5H]: activated gates i, f, g, o and the new cell state c
    GRU  [N, 4H]: r, z, n and the hidden-side product W_hn h + b_hn
    RNN  [N, H]:  the activated output
"""

from __future__ import annotations

import math

import torch

from . import _C  # noqa: F401  (loads the library, which registers the ops)
from . import reference

_ops = torch.ops.fusedrnn

LSTM_WORKSPACE_COLS = 5
GRU_WORKSPACE_COLS = 4
RNN_WORKSPACE_COLS = 1


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _fake_workspace(x, hidden, cols_per_unit, training):
    rows = math.prod(x.shape[:-1])
    shape = (rows, cols_per_unit * hidden) if training else (0,)
    return x.new_empty(shape, dtype=accumulate_dtype(x.dtype))


def _fake_like(t):
    # the kernels return fresh contiguous tensors whatever the input's strides
    return t.new_empty(t.shape)


def _fake_output(x, features):
    return x.new_empty((*x.shape[:-1], features))


# ---------------------------------------------------------------------------------------------- fakes


@torch.library.register_fake("fusedrnn::lstm_forward")
def _lstm_forward_fake(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, training):
    return (_fake_output(x, h0.shape[1]), _fake_like(h0), _fake_like(c0),
            _fake_workspace(x, c0.shape[1], LSTM_WORKSPACE_COLS, training))


@torch.library.register_fake("fusedrnn::gru_forward")
def _gru_forward_fake(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, training):
    return (_fake_output(x, h0.shape[1]), _fake_like(h0),
            _fake_workspace(x, h0.shape[1], GRU_WORKSPACE_COLS, training))


@torch.library.register_fake("fusedrnn::rnn_forward")
def _rnn_forward_fake(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, nonlinearity, training):
    return (_fake_output(x, h0.shape[1]), _fake_like(h0),
            _fake_workspace(x, h0.shape[1], RNN_WORKSPACE_COLS, training))


def _fake_bias_grad(w_ih, has_bias):
    return w_ih.new_empty((w_ih.shape[0],) if has_bias else (0,))


@torch.library.register_fake("fusedrnn::lstm_backward")
def _lstm_backward_fake(grad_y, grad_hn, grad_cn, x, h0, c0, w_ih, w_hh, w_hr, has_bias, batch_sizes, reverse,
                        y, workspace):
    return (_fake_like(x), _fake_like(h0), _fake_like(c0), _fake_like(w_ih),
            _fake_like(w_hh), _fake_bias_grad(w_ih, has_bias), _fake_bias_grad(w_ih, has_bias),
            _fake_like(w_hr) if w_hr is not None else w_ih.new_empty((0,)))


@torch.library.register_fake("fusedrnn::gru_backward")
def _gru_backward_fake(grad_y, grad_hn, x, h0, w_ih, w_hh, has_bias, batch_sizes, reverse, y, workspace):
    return (_fake_like(x), _fake_like(h0), _fake_like(w_ih), _fake_like(w_hh),
            _fake_bias_grad(w_ih, has_bias), _fake_bias_grad(w_ih, has_bias))


@torch.library.register_fake("fusedrnn::rnn_backward")
def _rnn_backward_fake(grad_y, grad_hn, x, h0, w_ih, w_hh, has_bias, batch_sizes, reverse, nonlinearity, y,
                       workspace):
    return (_fake_like(x), _fake_like(h0), _fake_like(w_ih), _fake_like(w_hh),
            _fake_bias_grad(w_ih, has_bias), _fake_bias_grad(w_ih, has_bias))


# ---------------------------------------------------------------------------------------------- autograd


def _grad_or_zeros(grad, like):
    return torch.zeros_like(like) if grad is None else grad


def _bias_grads(ctx, db_ih, db_hh):
    return (db_ih if ctx.has_b_ih else None), (db_hh if ctx.has_b_hh else None)


def _save_common(ctx, b_ih, b_hh, reverse, training, workspace):
    ctx.has_b_ih, ctx.has_b_hh = b_ih is not None, b_hh is not None
    ctx.reverse, ctx.training = reverse, training
    ctx.mark_non_differentiable(workspace)
    # Absent output gradients arrive as None (the backward fills in what it needs): materialized, the
    # workspace's alone would be a zero-filled [N, 4H or 5H] tensor per call.
    ctx.set_materialize_grads(False)


def _wants_double_backward() -> bool:
    """backward(create_graph=True) runs the backward with grad mode on: the gradient itself must then be
    differentiable, which the fused backward ops are not, so it comes from the reference instead."""
    return torch.is_grad_enabled() and not torch.compiler.is_compiling()


def _reference_grads(run_reference, inputs, outputs_grads):
    """Gradients of the reference step loop at the saved inputs, kept differentiable (create_graph)."""
    leaves = [t for t in inputs if t is not None and t.requires_grad]
    outputs = run_reference(*inputs)
    grads = torch.autograd.grad(outputs, leaves, outputs_grads, create_graph=True, allow_unused=True)
    by_id = {id(t): g for t, g in zip(leaves, grads)}
    return [by_id.get(id(t)) if t is not None else None for t in inputs]


def _require_training(ctx, op):
    if not ctx.training:
        raise RuntimeError(
            f"fusedrnn.{op}: backward needs the forward to run with training=True (it saves the workspace); "
            "fusedrnn.functional sets it whenever grad mode is on and an input requires grad")


def _lstm_setup(ctx, inputs, output):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, training = inputs
    y, _, _, workspace = output
    _save_common(ctx, b_ih, b_hh, reverse, training, workspace)
    ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, y, workspace)


def _lstm_backward(ctx, grad_y, grad_hn, grad_cn, _grad_workspace):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, y, workspace = ctx.saved_tensors
    if _wants_double_backward():
        def run(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr):
            y, (h_n, c_n) = reference.lstm(x, (h0, c0), w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes=batch_sizes,
                                           reverse=ctx.reverse)
            return y, h_n, c_n
        grads = _reference_grads(run, [x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr],
                                 [_grad_or_zeros(grad_y, y), _grad_or_zeros(grad_hn, h0), _grad_or_zeros(grad_cn, c0)])
        return (*grads, None, None, None)
    _require_training(ctx, "lstm_forward")
    dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr = _ops.lstm_backward(
        _grad_or_zeros(grad_y, y), _grad_or_zeros(grad_hn, h0), _grad_or_zeros(grad_cn, c0), x, h0, c0, w_ih,
        w_hh, w_hr, ctx.has_b_ih or ctx.has_b_hh, batch_sizes, ctx.reverse, y, workspace)
    db_ih, db_hh = _bias_grads(ctx, db_ih, db_hh)
    return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, (dw_hr if w_hr is not None else None), None, None, None


def _gru_setup(ctx, inputs, output):
    x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, training = inputs
    y, _, workspace = output
    _save_common(ctx, b_ih, b_hh, reverse, training, workspace)
    ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, y, workspace)


def _gru_backward(ctx, grad_y, grad_hn, _grad_workspace):
    x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, y, workspace = ctx.saved_tensors
    if _wants_double_backward():
        def run(x, h0, w_ih, w_hh, b_ih, b_hh):
            return reference.gru(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes=batch_sizes, reverse=ctx.reverse)
        grads = _reference_grads(run, [x, h0, w_ih, w_hh, b_ih, b_hh],
                                 [_grad_or_zeros(grad_y, y), _grad_or_zeros(grad_hn, h0)])
        return (*grads, None, None, None)
    _require_training(ctx, "gru_forward")
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = _ops.gru_backward(
        _grad_or_zeros(grad_y, y), _grad_or_zeros(grad_hn, h0), x, h0, w_ih, w_hh, ctx.has_b_ih or ctx.has_b_hh,
        batch_sizes, ctx.reverse, y, workspace)
    return (dx, dh0, dw_ih, dw_hh, *_bias_grads(ctx, db_ih, db_hh), None, None, None)


def _rnn_setup(ctx, inputs, output):
    x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, nonlinearity, training = inputs
    y, _, workspace = output
    _save_common(ctx, b_ih, b_hh, reverse, training, workspace)
    ctx.nonlinearity = nonlinearity
    ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, y, workspace)


def _rnn_backward(ctx, grad_y, grad_hn, _grad_workspace):
    x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, y, workspace = ctx.saved_tensors
    if _wants_double_backward():
        def run(x, h0, w_ih, w_hh, b_ih, b_hh):
            return reference.rnn(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes=batch_sizes, reverse=ctx.reverse,
                                 nonlinearity=ctx.nonlinearity)
        grads = _reference_grads(run, [x, h0, w_ih, w_hh, b_ih, b_hh],
                                 [_grad_or_zeros(grad_y, y), _grad_or_zeros(grad_hn, h0)])
        return (*grads, None, None, None, None)
    _require_training(ctx, "rnn_forward")
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = _ops.rnn_backward(
        _grad_or_zeros(grad_y, y), _grad_or_zeros(grad_hn, h0), x, h0, w_ih, w_hh, ctx.has_b_ih or ctx.has_b_hh,
        batch_sizes, ctx.reverse, ctx.nonlinearity, y, workspace)
    return (dx, dh0, dw_ih, dw_hh, *_bias_grads(ctx, db_ih, db_hh), None, None, None, None)


torch.library.register_autograd("fusedrnn::lstm_forward", _lstm_backward, setup_context=_lstm_setup)
torch.library.register_autograd("fusedrnn::gru_forward", _gru_backward, setup_context=_gru_setup)
torch.library.register_autograd("fusedrnn::rnn_forward", _rnn_backward, setup_context=_rnn_setup)


# ---------------------------------------------------------------------------------------------- wrappers


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse: bool, training: bool):
    return _ops.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, training)


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse: bool, training: bool):
    return _ops.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, training)


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse: bool, nonlinearity: str, training: bool):
    return _ops.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, nonlinearity, training)
