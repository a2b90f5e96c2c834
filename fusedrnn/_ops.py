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
                    has_bias, batch_sizes?, reverse, nonlinearity?, y, workspace, input_grad=True)
        -> (dx, the initial states' gradients, dw_ih, dw_hh, db_ih, db_hh, dw_hr?)

(dx is [0] when input_grad is False: the autograd kernel passes whether x needs a gradient.)

x is dense [T, B, I], or packed [N, I] when batch_sizes ([T] int64 on the CPU, non-increasing) is given; y
has x's layout with P features (P = proj_size when w_hr is given, else hidden_size); h0/h_n are [B, P],
c0/c_n [B, H].

workspace holds what the backward needs, one row per packed row, in the accumulate dtype (float32 for
float16/bfloat16 inputs, else the input dtype); it is [0] when training=False. Its width is the cell's
workspace_cols times H:

    LSTM [N, 5H]: activated gates i, f, g, o and the new cell state c
    GRU  [N, 4H]: r, z, n and the hidden-side product W_hn h + b_hn
    RNN  [N, H]:  the activated output

The autograd kernels are C++ (csrc/bindings/autograd.cpp): they run the op below ADInplaceOrView, so that
its outputs are plain tensors that take in-place ops, and call back into _double_backward here for a
backward with grad mode on. This file registers the fake kernels and an autocast rule per forward op (CPU
and CUDA: it computes in the autocast dtype, outputs in torch.nn's dtypes).
"""

from __future__ import annotations

import math

import torch

from . import _C, _onnx, _tracing, reference  # importing _C loads the library, which registers the ops
from ._cells import CELLS, Cell

_ops = torch.ops.fusedrnn


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


def _fake_bias_grad(w_ih, has_bias):
    return w_ih.new_empty((w_ih.shape[0],) if has_bias else (0,))


def _double_backward(cell_name, inputs, batch_sizes, reverse, nonlinearity, grads_out):
    """The gradient when the backward runs with grad mode on (backward(create_graph=True)): it must itself be
    differentiable, which the fused backward ops are not, so it comes from autograd through the reference
    step loop at the saved inputs. Called by the C++ autograd kernels (csrc/bindings/autograd.cpp) with the
    forward's differentiable arguments (None where absent) and the output gradients; returns the arguments'
    gradients, or None to run the fused backward (under torch.compile, where double backward is not
    supported)."""
    if torch.compiler.is_compiling():
        return None
    cell = CELLS[cell_name]
    s = cell.states
    leaves = [t for t in inputs if t is not None and t.requires_grad]
    options = {"nonlinearity": nonlinearity} if cell.takes_nonlinearity else {}
    states = tuple(inputs[1:1 + s])
    y, final = getattr(reference, cell_name)(inputs[0], states if s > 1 else states[0], *inputs[1 + s:],
                                             batch_sizes=batch_sizes, reverse=reverse, **options)
    outputs = (y, *final) if s > 1 else (y, final)
    grads = torch.autograd.grad(outputs, leaves, grads_out, create_graph=True, allow_unused=True)
    by_id = {id(t): g for t, g in zip(leaves, grads)}
    return [by_id.get(id(t)) if t is not None else None for t in inputs]


def _register_fakes(cell: Cell) -> None:
    """The fake (shape) kernels of one cell's ops."""
    s, projected = cell.states, cell.projectable
    forward_op = getattr(_ops, f"{cell.name}_forward")

    @torch.library.register_fake(f"fusedrnn::{cell.name}_forward")
    def _forward_fake(*args):
        x, states, training = args[0], args[1:1 + s], args[-1]
        return (_fake_output(x, states[0].shape[1]), *(_fake_like(t) for t in states),
                _fake_workspace(x, states[-1].shape[1], cell.workspace_cols, training))

    @torch.library.register_fake(f"fusedrnn::{cell.name}_backward")
    def _backward_fake(*args):
        # grad_y, the final states' gradients, x, the initial states, w_ih, w_hh, w_hr?, has_bias, ...,
        # workspace, input_grad (when given: it defaults to True)
        x, states = args[1 + s], args[2 + s:2 + 2 * s]
        w_ih, w_hh = args[2 + 2 * s], args[3 + 2 * s]
        w_hr = args[4 + 2 * s] if projected else None
        has_bias = args[4 + 2 * s + projected]
        input_grad = args[-1] if isinstance(args[-1], bool) else True
        dx = _fake_like(x) if input_grad else x.new_empty((0,))
        grads = [dx, *(_fake_like(t) for t in states), _fake_like(w_ih), _fake_like(w_hh),
                 _fake_bias_grad(w_ih, has_bias), _fake_bias_grad(w_ih, has_bias)]
        if projected:
            grads.append(_fake_like(w_hr) if w_hr is not None else w_ih.new_empty((0,)))
        return tuple(grads)

    FORWARD[cell.name] = forward_op.default  # the overload itself: skips the packet's overload lookup


# ------------------------------------------------------------------------------------- dispatch: autocast

_lib = torch.library.Library("fusedrnn", "IMPL")  # kept alive: it owns the kernels registered below


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


FORWARD: dict[str, torch._ops.OpOverload] = {}  # cell name -> its forward op
_C.set_double_backward(_double_backward)
for _cell in CELLS.values():
    _register_fakes(_cell)
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
