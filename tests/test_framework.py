"""PyTorch features that work on torch.nn's recurrent modules and must keep working on the fused ones:
torch.func.functional_call, weight-norm parametrizations, WeightDrop-style wrappers that replace a weight
every forward, and torch.vmap (which torch.nn's modules do not support)."""

import pytest
import torch

import fusedrnn
from conftest import assert_close_relative, torch_nn_layer

KINDS = ["lstm", "gru", "rnn_tanh"]


def pair(kind):
    torch.manual_seed(0)
    plain = torch_nn_layer(kind, 3, 4, dtype=torch.float64)
    return plain, fusedrnn.convert(plain)


def outputs_and_grads(module, x, params):
    out, _ = module(x)
    grads = torch.autograd.grad(out.pow(2).sum(), [x, *params])
    return [out, *grads]


@pytest.mark.parametrize("kind", KINDS)
def test_functional_call_with_other_weights(kind):
    plain, fused = pair(kind)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    weights = {name: torch.randn_like(p, requires_grad=True) for name, p in plain.named_parameters()}
    expected = outputs_and_grads(lambda v: torch.func.functional_call(plain, weights, (v,)), x, weights.values())
    actual = outputs_and_grads(lambda v: torch.func.functional_call(fused, weights, (v,)), x, weights.values())
    for a, e in zip(actual, expected):
        assert_close_relative(a, e, 1e-10, "functional_call")


@pytest.mark.parametrize("kind", KINDS)
def test_weight_norm_parametrization(kind):
    plain, fused = pair(kind)
    for module in (plain, fused):
        torch.nn.utils.parametrizations.weight_norm(module, "weight_hh_l0")
    with torch.no_grad():  # a g that is not the weights' own norm, so the parametrization shows
        for module in (plain, fused):
            module.parametrizations.weight_hh_l0.original0.mul_(1.5)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    expected = outputs_and_grads(plain, x, list(plain.parameters()))
    actual = outputs_and_grads(fused, x, list(fused.parameters()))
    for a, e in zip(actual, expected):
        assert_close_relative(a, e, 1e-10, "weight_norm")


class WeightDrop(torch.nn.Module):
    """The two common WeightDrop wrappers: the raw weight is the parameter, and every forward puts a
    masked copy in the module's place of weight_hh_l0, either as a plain attribute (salesforce's
    awd-lstm) or straight into _parameters (fastai's)."""

    def __init__(self, module, mask, into_parameters):
        super().__init__()
        self.module, self.mask, self.into_parameters = module, mask, into_parameters
        raw = module.weight_hh_l0
        del module._parameters["weight_hh_l0"]
        self.weight_hh_l0_raw = torch.nn.Parameter(raw.detach().clone())

    def forward(self, x):
        dropped = self.weight_hh_l0_raw * self.mask
        if self.into_parameters:
            self.module._parameters["weight_hh_l0"] = dropped
        else:
            setattr(self.module, "weight_hh_l0", dropped)
        return self.module(x)


@pytest.mark.parametrize("into_parameters", [False, True], ids=["setattr", "_parameters"])
@pytest.mark.parametrize("kind", KINDS)
def test_weight_drop_wrappers(kind, into_parameters):
    plain, fused = pair(kind)
    mask = (torch.rand_like(plain.weight_hh_l0) > 0.3).double() / 0.7
    wrapped = [WeightDrop(m, mask, into_parameters) for m in (plain, fused)]
    for step in range(2):  # a new weight every forward, and the module follows it
        x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
        # the leaves: with _parameters, the last forward's masked weight is listed as a parameter too
        expected, actual = (outputs_and_grads(w, x, [p for p in w.parameters() if p.is_leaf]) for w in wrapped)
        for a, e in zip(actual, expected):
            assert_close_relative(a, e, 1e-10, f"WeightDrop step {step}")
        with torch.no_grad():
            for w in wrapped:
                w.weight_hh_l0_raw.add_(0.1)


@pytest.mark.parametrize("kind", KINDS)
def test_vmap_over_independent_sequences(kind):
    """vmap maps a fused module over a leading dimension; the result equals one call per slice."""
    _, fused = pair(kind)
    xs = torch.randn(3, 5, 2, 3, dtype=torch.float64)
    mapped = torch.vmap(lambda x: fused(x)[0])(xs)
    for x, out in zip(xs, mapped):
        assert_close_relative(out, fused(x)[0], 1e-12, "vmap")


CELL_KINDS = ["LSTMCell", "GRUCell", "RNNCell"]


@pytest.mark.parametrize("how", ["functional_call", "weight_norm", "setattr"])
@pytest.mark.parametrize("cell", CELL_KINDS)
def test_cells_follow_replaced_weights(cell, how):
    """The cells read their weights from _parameters when they are there (fusedrnn/modules.py,
    _weights) and as attributes otherwise: all three ways of putting another weight in place show."""
    torch.manual_seed(0)
    plain = getattr(torch.nn, cell)(3, 4, dtype=torch.float64)
    fused = fusedrnn.convert(plain)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 4, dtype=torch.float64)
    state = (h, h.flip(0)) if cell == "LSTMCell" else h
    other = torch.randn_like(plain.weight_hh, requires_grad=True)
    if how == "weight_norm":
        for module in (plain, fused):
            torch.nn.utils.parametrizations.weight_norm(module, "weight_hh")
            with torch.no_grad():
                module.parametrizations.weight_hh.original0.mul_(1.5)
    elif how == "setattr":
        for module in (plain, fused):
            del module._parameters["weight_hh"]
            module.weight_hh = other * 2

    def call(module):
        if how == "functional_call":
            out = torch.func.functional_call(module, {"weight_hh": other}, (x, state))
        else:
            out = module(x, state)
        out = out[0] if cell == "LSTMCell" else out
        params = [p for name, p in module.named_parameters() if name != "weight_hh"]  # weight_hh: replaced
        leaves = [x, *params, *([other] if how != "weight_norm" else [])]
        return [out, *torch.autograd.grad(out.pow(2).sum(), leaves)]

    for a, e in zip(call(fused), call(plain)):
        assert_close_relative(a, e, 1e-10, how)
