"""In-place ops on the outputs of the fused modules, cells and functional layers (a residual ``out += x``,
``out.mul_(2)``) work as they do on torch.nn's, with the same gradients."""

import functools

import pytest
import torch

from torch.utils._python_dispatch import TorchDispatchMode

import fusedrnn
from conftest import CELLS, assert_close_relative, make_case, run, torch_nn_cell, torch_nn_layer
from fusedrnn import functional, reference

I = H = 3  # equal, so that the residual out += x is well formed
T, B = 2, 2
MODULES = {kind: functools.partial(torch_nn_layer, kind, I, H) for kind in CELLS}
CELL_MODULES = {kind: functools.partial(torch_nn_cell, kind, I, H) for kind in CELLS if kind != "lstm_proj"}


def fresh_input(*shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()


def loss_after_inplace(module, inp):
    """A residual and a scaling on the output, a scaling on every final state, then a loss over them."""
    out, state = module(inp)
    states = state if isinstance(state, tuple) else (state,)
    out += inp
    out.mul_(2)
    for s in states:
        s.mul_(3)
    return out.sum() + sum((s * s).sum() for s in states)


def grads_after_inplace(module, x, inp, loss_fn=loss_after_inplace):
    loss = loss_fn(module, inp)
    return loss.detach(), torch.autograd.grad(loss, [x, *module.parameters()])


@pytest.mark.parametrize("layers,batch_first", [(1, False), (1, True), (2, False)])
@pytest.mark.parametrize("kind", MODULES)
def test_module_outputs_take_inplace_ops(kind, layers, batch_first):
    torch.manual_seed(0)
    plain = MODULES[kind](num_layers=layers, batch_first=batch_first, dtype=torch.float64)
    fused = fusedrnn.convert(plain)
    x = fresh_input(T, B, I, seed=1)
    inp = x.transpose(0, 1) if batch_first else x
    expected_loss, expected = grads_after_inplace(plain, x, inp)
    loss, grads = grads_after_inplace(fused, x, inp)
    assert_close_relative(loss, expected_loss, 1e-10, "loss")
    for a, e in zip(grads, expected):
        assert_close_relative(a, e, 1e-10, "grad")


@pytest.mark.parametrize("kind", CELL_MODULES)
def test_cell_outputs_take_inplace_ops(kind):
    torch.manual_seed(0)
    plain = CELL_MODULES[kind]().double()
    fused = fusedrnn.convert(plain)
    x, h0 = fresh_input(B, I, seed=1), fresh_input(B, H, seed=2)

    def grads(module, inplace):
        hx = (h0, h0 * 0.5) if kind == "lstm" else h0
        out = module(x, hx)
        states = list(out) if isinstance(out, tuple) else [out]
        if inplace:
            states[0].add_(x)
            states = [s.mul_(2) for s in states]
        else:  # torch.nn's RNNCell (tanh) refuses in-place ops on its output: the same values out of place
            states[0] = states[0] + x
            states = [s * 2 for s in states]
        loss = sum((s ** 2).sum() for s in states)
        return torch.autograd.grad(loss, [x, h0, *module.parameters()])

    for a, e in zip(grads(fused, inplace=True), grads(plain, inplace=False)):
        assert_close_relative(a, e, 1e-10, "grad")


@pytest.mark.parametrize("varlen", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "lstm_proj", "gru", "rnn_tanh"])
def test_functional_outputs_take_inplace_ops(cell, varlen):
    case = make_case(cell, T, B, I, H, varlen=varlen, seed=3)

    def grads(impl):
        outputs = run(impl, case)
        loss = sum((o.mul_(2) ** 2).sum() for o in outputs)
        return torch.autograd.grad(loss, case.tensors())

    for a, e in zip(grads(functional), grads(reference)):
        assert_close_relative(a, e, 1e-10, "grad")


def test_output_is_not_a_view():
    """The dense output of the op itself: a plain tensor, so autograd lets it be modified in place."""
    case = make_case("gru", T, B, I, H, seed=4)
    y, h_n = run(functional, case)
    assert not y._is_view() and not h_n._is_view()


class FusedOpLog(TorchDispatchMode):
    """The fusedrnn ops that run while it is active."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "fusedrnn":
            self.ops.append(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("inplace", [False, True])
def test_backward_recomputes_output_only_after_inplace_change(inplace):
    """The backward needs the forward's y: it reuses it as is, and runs the forward again (inference) only
    when y was changed in place after the forward."""
    case = make_case("gru", T, B, I, H, seed=5)
    y, h_n = run(functional, case)
    if inplace:
        y.mul_(2)
    log = FusedOpLog()
    with log:
        y.sum().backward()
    expected = ["gru_forward.default", "gru_backward.default"] if inplace else ["gru_backward.default"]
    assert log.ops == expected


def test_inplace_under_compile():
    """The same in-place ops inside torch.compile(fullgraph=True), against torch.nn in eager."""
    torch.manual_seed(0)
    plain = MODULES["gru"](dtype=torch.float64)
    fused = fusedrnn.convert(plain)
    x = fresh_input(T, B, I, seed=6)
    torch._dynamo.reset()
    compiled = torch.compile(loss_after_inplace, fullgraph=True, backend="aot_eager")
    loss, grads = grads_after_inplace(fused, x, x, compiled)
    expected_loss, expected = grads_after_inplace(plain, x, x)
    assert_close_relative(loss, expected_loss, 1e-10, "loss")
    for a, e in zip(grads, expected):
        assert_close_relative(a, e, 1e-10, "grad")
