"""Typed wrappers over torch.ops.fusedrnn.*, with their fake (shape) and autograd registrations, generated
for every cell of the cell table (fusedrnn/_cells.py).

The ops (schemas in csrc/ops.cpp) run one layer in one direction over a whole sequence:

    lstm_forward(x, h0, c0, w_ih, w_hh, b_ih?, b_hh?, w_hr?, batch_sizes?, reverse, training)
        -> (y, h_n, c_n, workspace)
    gru_forward(x, h0, w_ih, w_hh, b_ih?, b_hh?, batch_sizes?, reverse, training) -> (y, h_n, workspace)
    rnn_forward(x, h0, w_ih, w_hh, b_ih?, b_hh?, batch_sizes?, reverse, nonlinearity, training)
        -> (y, h_n, workspace)

that is, for any cell: x, the initial states (h0, and c0 for a cell with a cell state), w_ih, w_hh, b_ih,
b_hh, w_hr (projectable cells), batch_sizes, reverse, nonlinearity (cells that take one), training ->
y, the final states, workspace. Each has a ``*_backward`` op:

    <cell>_backward(grad_y, the final states' gradients, x, the initial states, w_ih, w_hh, w_hr?,
                    has_bias, batch_sizes?, reverse, nonlinearity?, y, workspace)
        -> (dx, the initial states' gradients, dw_ih, dw_hh, db_ih, db_hh, dw_hr?)

x is dense [T, B, I], or packed [N, I] when batch_sizes ([T] int64 on the CPU, non-increasing) is given; y
has x's layout with P features (P = proj_size when w_hr is given, else hidden_size); h0/h_n are [B, P],
c0/c_n [B, H].

workspace holds what the backward needs, one row per packed row, in the accumulate dtype (float32 for
float16/bfloat16 inputs, else the input dtype); it is [0] when training=False. Its width is the cell's
workspace_cols times H:

    LSTM [N, 5H]: activated gates i, f, g, o and the new cell state c
    GRU  [N, 4H]: r, z, n and the hidden-side product W_hn h + b_hn
    RNN  [N, H]:  the activated output

Besides the fake kernels and autograd, each forward op gets an autocast rule (CPU and CUDA: it computes in
the autocast dtype, outputs in torch.nn's dtypes) and an ADInplaceOrView kernel that keeps its outputs plain
tensors, so that they take in-place ops; see the registrations at the end of this file.
"""

from __future__ import annotations

import math

import torch

from . import _C, _onnx, _tracing, reference  # noqa: F401  (_C loads the library, which registers the ops)
from ._cells import CELLS, Cell

_ops = torch.ops.fusedrnn


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class _Layout:
    """Where each argument sits in a cell's forward and backward ops (see the module docstring)."""

    def __init__(self, cell: Cell):
        s = cell.states
        self.states = s
        self.proj = 1 if cell.projectable else 0
        self.nonlin = 1 if cell.takes_nonlinearity else 0
        # forward: x, states[s], w_ih, w_hh, b_ih, b_hh, w_hr?, batch_sizes, reverse, nonlinearity?, training
        self.w_ih = 1 + s
        self.batch_sizes = 1 + s + 4 + self.proj
        self.forward_inputs = self.batch_sizes + 3 + self.nonlin
        # the tensors a gradient flows to: x, states, w_ih, w_hh, b_ih, b_hh, w_hr?
        self.differentiable = self.batch_sizes


def _fake_workspace(x, hidden, cols_per_unit, training):
    rows = math.prod(x.shape[:-1])
    shape = (rows, cols_per_unit * hidden) if training else (0,)
    return x.new_empty(shape, dtype=accumulate_dtype(x.dtype))


def _fake_like(t):
    # the kernels return fresh contiguous tensors whatever the input's strides
    return t.new_empty(t.shape)


def _fake_output(x, features):
    return x.new_empty((*x.shape[:-1], features))


def _fake_bias_grad(w_ih, has_bias):
    return w_ih.new_empty((w_ih.shape[0],) if has_bias else (0,))


def _grad_or_zeros(grad, like):
    return torch.zeros_like(like) if grad is None else grad


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


def _register(cell: Cell) -> None:
    """The fake kernels and the autograd formula of one cell's ops."""
    layout = _Layout(cell)
    s = layout.states
    forward_op = getattr(_ops, f"{cell.name}_forward")
    backward_op = getattr(_ops, f"{cell.name}_backward")
    reference_layer = getattr(reference, cell.name)

    @torch.library.register_fake(f"fusedrnn::{cell.name}_forward")
    def _forward_fake(*args):
        x, states, training = args[0], args[1:1 + s], args[-1]
        return (_fake_output(x, states[0].shape[1]), *(_fake_like(t) for t in states),
                _fake_workspace(x, states[-1].shape[1], cell.workspace_cols, training))

    @torch.library.register_fake(f"fusedrnn::{cell.name}_backward")
    def _backward_fake(*args):
        # grad_y, the final states' gradients, x, the initial states, w_ih, w_hh, w_hr?, has_bias, ...
        x, states = args[1 + s], args[2 + s:2 + 2 * s]
        w_ih, w_hh = args[2 + 2 * s], args[3 + 2 * s]
        w_hr = args[4 + 2 * s] if layout.proj else None
        has_bias = args[4 + 2 * s + layout.proj]
        grads = [_fake_like(x), *(_fake_like(t) for t in states), _fake_like(w_ih), _fake_like(w_hh),
                 _fake_bias_grad(w_ih, has_bias), _fake_bias_grad(w_ih, has_bias)]
        if layout.proj:
            grads.append(_fake_like(w_hr) if w_hr is not None else w_ih.new_empty((0,)))
        return tuple(grads)

    def setup_context(ctx, inputs, output):
        b_ih, b_hh = inputs[layout.w_ih + 2], inputs[layout.w_ih + 3]
        ctx.has_b_ih, ctx.has_b_hh = b_ih is not None, b_hh is not None
        ctx.reverse = inputs[layout.batch_sizes + 1]
        ctx.nonlinearity = inputs[layout.batch_sizes + 2] if layout.nonlin else None
        ctx.training = inputs[-1]
        y, workspace = output[0], output[-1]
        ctx.mark_non_differentiable(workspace)
        # Absent output gradients arrive as None (the backward fills in what it needs): materialized, the
        # workspace's alone would be a zero-filled [N, W*H] tensor per call.
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(*inputs[:layout.batch_sizes + 1], workspace)
        # y stays out of the saved tensors, so that in-place ops on it (a residual out += x) are allowed, as
        # on torch.nn's outputs. The alias shares y's version counter: a changed y is recomputed in backward.
        ctx.y, ctx.y_version = y.detach(), y._version

    def output_for_backward(ctx, differentiable, batch_sizes):
        """y as the forward returned it: the kept alias, or a recomputation once y was changed in place."""
        if ctx.y._version == ctx.y_version:
            return ctx.y
        nonlinearity = [ctx.nonlinearity] if layout.nonlin else []
        with torch.no_grad(), torch.autocast(ctx.y.device.type, enabled=False):
            return forward_op(*differentiable, batch_sizes, ctx.reverse, *nonlinearity, False)[0]

    def backward(ctx, *output_grads):
        saved = ctx.saved_tensors
        differentiable, batch_sizes = list(saved[:layout.differentiable]), saved[layout.differentiable]
        x, states = differentiable[0], differentiable[1:1 + s]
        grads_out = [_grad_or_zeros(output_grads[0], ctx.y),
                     *(_grad_or_zeros(g, t) for g, t in zip(output_grads[1:1 + s], states))]
        extra = [None] * (layout.forward_inputs - layout.differentiable)  # batch_sizes, flags
        if _wants_double_backward():
            def run(x, *rest):
                layer_states, weights = rest[:s], rest[s:]
                hx = tuple(layer_states) if s > 1 else layer_states[0]
                options = {"nonlinearity": ctx.nonlinearity} if layout.nonlin else {}
                y, final = reference_layer(x, hx, *weights, batch_sizes=batch_sizes, reverse=ctx.reverse,
                                           **options)
                return (y, *final) if s > 1 else (y, final)
            return (*_reference_grads(run, differentiable, grads_out), *extra)
        if not ctx.training:
            raise RuntimeError(
                f"fusedrnn.{cell.name}_forward: backward needs the forward to run with training=True (it "
                "saves the workspace); fusedrnn.functional sets it whenever grad mode is on and an input "
                "requires grad")
        y, workspace = output_for_backward(ctx, differentiable, batch_sizes), saved[-1]
        w_ih, w_hh = differentiable[layout.w_ih], differentiable[layout.w_ih + 1]
        w_hr = [differentiable[layout.w_ih + 4]] if layout.proj else []
        nonlinearity = [ctx.nonlinearity] if layout.nonlin else []
        grads = backward_op(*grads_out, x, *states, w_ih, w_hh, *w_hr, ctx.has_b_ih or ctx.has_b_hh,
                            batch_sizes, ctx.reverse, *nonlinearity, y, workspace)
        grads = list(grads)
        bias = layout.w_ih + 2
        grads[bias] = grads[bias] if ctx.has_b_ih else None
        grads[bias + 1] = grads[bias + 1] if ctx.has_b_hh else None
        if layout.proj and w_hr[0] is None:
            grads[bias + 2] = None
        return (*grads, *extra)

    torch.library.register_autograd(f"fusedrnn::{cell.name}_forward", backward, setup_context=setup_context)
    FORWARD[cell.name] = forward_op


# ------------------------------------------------------------------------- dispatch: views and autocast

_lib = torch.library.Library("fusedrnn", "IMPL")  # kept alive: it owns the kernels registered below


def _register_plain_outputs(name: str) -> None:
    """Runs the op's kernel below ADInplaceOrView, as the kernels of PyTorch's own ops run.

    The kernels return y as a view of their [N, P] buffer. A view made by a kernel running above
    ADInplaceOrView carries view metadata, and autograd refuses in-place changes to a view that a custom
    autograd function returns (``out += x`` on an RNN's output). Below it, the outputs are plain tensors,
    with no copy.
    """
    op = getattr(_ops, name).default
    below = torch._C._after_ADInplaceOrView_keyset

    def kernel(keyset, *args):
        with torch._C._AutoDispatchBelowADInplaceOrView():
            return op.redispatch(keyset & below, *args)

    _lib.impl(name, kernel, "ADInplaceOrView", with_keyset=True)


def _cast(value, device_type: str, dtype: torch.dtype):
    # what autocast casts: floating tensors on its device, except float64
    if (isinstance(value, torch.Tensor) and value.is_floating_point() and value.device.type == device_type
            and value.dtype is not torch.float64):
        return value.to(dtype)
    return value


def _wide_state(cell: Cell, args) -> tuple[torch.Tensor | None, tuple[int, ...]]:
    """The initial state that enters a step's update directly, not only through a matrix product (the
    LSTM's c, the GRU's h; none for the RNN), and the outputs computed from it (y, h_n, c_n indices)."""
    if cell.states == 2:
        # w_hr comes after x, the states and the four weights
        projected = cell.projectable and args[1 + cell.states + 4] is not None
        return args[2], ((2,) if projected else (0, 1, 2))
    if cell.h_feeds_through:
        return args[1], (0, 1)
    return None, ()


def _register_autocast(cell: Cell, device_type: str) -> None:
    """The forward op under torch.autocast: it computes in the autocast dtype, with outputs in the dtypes
    torch.nn's recurrent modules and cells give under the same context.

    Every floating input (x, the initial states, the weights; float64 aside, as autocast does) is cast to
    the autocast dtype, and the casts carry the gradients back to float32 weights in float32. On CUDA the
    outputs stay in that dtype, as cuDNN's and torch's cell kernels give them. On the CPU torch.nn runs a
    step loop of ATen ops in which only the matrix products autocast, so a float32 state that enters the
    update directly keeps the result in float32: the LSTM's c_n (and y, h_n unless projected) follow c0's
    dtype, the GRU's y and h_n follow h0's, the RNN's are in the autocast dtype.

    Like torch.library.register_autocast, but with the dtype of the active autocast context instead of a
    fixed one; registered with the dispatcher and as the Python kernel that tracing (torch.compile) uses.
    The backward ops get no rule: they run in the dtype their forward ran in.
    """
    name = f"{cell.name}_forward"
    op = getattr(_ops, name).default
    key = getattr(torch._C.DispatchKey, "Autocast" + torch._C._dispatch_key_for_device(device_type))

    def autocast(*args):
        dtype = torch.get_autocast_dtype(device_type)
        with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(key)):
            out = op(*(_cast(a, device_type, dtype) for a in args))
        state, follows = _wide_state(cell, args) if device_type == "cpu" else (None, ())
        if state is None or not state.is_floating_point():
            return out
        wide = torch.promote_types(state.dtype, dtype)
        return tuple(t.to(wide) if i in follows else t for i, t in enumerate(out))

    op.py_impl(key)(autocast)
    _lib.impl(name, lambda _keyset, *args: autocast(*args), key.name, with_keyset=True)


FORWARD: dict[str, torch._ops.OpOverloadPacket] = {}  # cell name -> its forward op
for _cell in CELLS.values():
    _register(_cell)
    _register_plain_outputs(f"{_cell.name}_forward")
    for _device_type in ("cpu", "cuda"):
        _register_autocast(_cell, _device_type)


# ---------------------------------------------------------------------------------------------- wrappers


def forward(cell: Cell, x, states, weights, batch_sizes, reverse: bool, nonlinearity, training: bool):
    """cell's forward op: states = (h0,) or (h0, c0); weights = (w_ih, w_hh, b_ih, b_hh) plus w_hr for a
    projectable cell. Returns (y, the final states as a tuple)."""
    if _onnx.exporting():  # torch.onnx.export records ONNX's own operator instead (fusedrnn/_onnx.py)
        return _onnx.forward(cell, x, states, weights, batch_sizes, reverse, nonlinearity)
    extra = (nonlinearity,) if cell.takes_nonlinearity else ()
    if torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
        # the traced graph computes `training` when it runs, so it works with grad on and off (see _tracing)
        out = _tracing.forward_op(f"{cell.name}_forward")(x, *states, *weights, batch_sizes, reverse, *extra)
    else:
        out = FORWARD[cell.name](x, *states, *weights, batch_sizes, reverse, *extra, training)
    return out[0], out[1:-1]
