"""The fused ops (and the reference) against torch.nn single layers with copied weights."""

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence

from conftest import CELLS, TOLERANCE, assert_close_relative, forward_and_grads, make_case, random_like
from fusedrnn import functional, reference


def torch_module(case, dtype):
    """A one-layer torch.nn module holding the case's weights, bidirectional when the case is reversed
    (the reverse direction's weights are the case's; the forward direction's are random)."""
    I = case.x.shape[-1]
    H = case.w_hh.shape[0] // {"lstm": 4, "gru": 3}.get(case.cell.split("_")[0], 1)
    kw = dict(bias=case.b_ih is not None, bidirectional=case.reverse, dtype=dtype)
    if case.cell.startswith("lstm"):
        m = torch.nn.LSTM(I, H, proj_size=case.w_hr.shape[0] if case.w_hr is not None else 0, **kw)
    elif case.cell == "gru":
        m = torch.nn.GRU(I, H, **kw)
    else:
        m = torch.nn.RNN(I, H, nonlinearity=case.cell.split("_")[1], **kw)
    suffix = "_reverse" if case.reverse else ""
    with torch.no_grad():
        for name in ["w_ih", "w_hh", "b_ih", "b_hh", "w_hr"]:
            value = getattr(case, name)
            if value is not None:
                torch_name = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh",
                              "w_hr": "weight_hr"}[name]
                getattr(m, f"{torch_name}_l0{suffix}").copy_(value)
    return m


def run_torch(case, dtype):
    """torch.nn outputs (y, h_n[, c_n]) of the case's direction and the gradients of the case's tensors."""
    m = torch_module(case, dtype)
    x = case.x
    d = 1 if case.reverse else 0
    h0, c0 = case.h0, case.c0
    if case.reverse:  # the forward direction's initial state is zeros; only the reverse half is compared
        h0 = torch.stack([torch.zeros_like(h0), h0])
        c0 = torch.stack([torch.zeros_like(c0), c0]) if c0 is not None else None
    else:
        h0 = h0.unsqueeze(0)
        c0 = c0.unsqueeze(0) if c0 is not None else None
    inp = PackedSequence(x, case.batch_sizes) if case.batch_sizes is not None else x
    out, state = m(inp, (h0, c0) if c0 is not None else h0)
    y = out.data if case.batch_sizes is not None else out
    P = case.h0.shape[1]
    y = y[..., d * P:(d + 1) * P]
    states = state if isinstance(state, tuple) else (state,)
    outputs = (y, *[s[d] for s in states])
    # gradients of the module parameters map back to the case's weights
    grads_out = random_like(outputs, 1)
    params = [p for n, p in m.named_parameters() if n.endswith(f"_l0{'_reverse' if case.reverse else ''}")]
    inputs = [case.x, case.h0] + ([case.c0] if case.c0 is not None else [])
    grads = torch.autograd.grad(outputs, inputs + params, grads_out)
    return [o.detach() for o in outputs], list(grads)


@pytest.mark.parametrize("varlen", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("T,B,H", [(1, 1, 1), (7, 3, 5), (33, 8, 32), (2, 3, 67)])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_fused_matches_torch_nn(cell, T, B, H, bias, reverse, varlen, dtype):
    if cell == "lstm_proj":
        H = max(H, 2)  # torch.nn needs proj_size < hidden_size
    case = make_case(cell, T, B, H + 1, H, bias=bias, reverse=reverse, varlen=varlen, dtype=dtype, seed=T + H)
    nn_out, nn_grads = run_torch(case, dtype)
    fused_out, fused_grads = forward_and_grads(functional, case.with_tensors(case.tensors()))
    tol = TOLERANCE[dtype]
    for name, a, e in zip(["y", "h_n", "c_n"], fused_out, nn_out):
        assert_close_relative(a, e, tol, name)
    # torch.nn's parameter order (w_ih, w_hh, b_ih, b_hh, w_hr) is the case's tensor order
    for i, (a, e) in enumerate(zip(fused_grads, nn_grads)):
        assert_close_relative(a, e, tol, f"grad {i}")


@pytest.mark.parametrize("cell", CELLS)
def test_reference_matches_torch_nn(cell):
    case = make_case(cell, 9, 4, 3, 6, varlen=True, reverse=True, seed=21)
    nn_out, nn_grads = run_torch(case, torch.float64)
    ref_out, ref_grads = forward_and_grads(reference, case.with_tensors(case.tensors()))
    for a, e in zip(ref_out + ref_grads, nn_out + nn_grads):
        assert_close_relative(a, e, 1e-10)
