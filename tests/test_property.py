"""Property-based tests (hypothesis): random cell, sizes, layers, direction, bias, projection, lengths and
dtype; the fused modules against torch.nn and the fused layer against the reference, forward and every
gradient."""

import os

import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn
from conftest import assert_close_relative, forward_and_grads, make_case

from hypothesis import HealthCheck, given, settings  # a test tool the Makefile installs: no silent skip
from hypothesis import strategies as st

# The same 500 examples per property on every run (CI must not depend on luck);
# FUSEDRNN_HYPOTHESIS=random draws fresh ones (pytest --hypothesis-seed=N repeats such a run).
SETTINGS = settings(max_examples=500, deadline=None,
                    derandomize=os.environ.get("FUSEDRNN_HYPOTHESIS", "fixed") != "random",
                    suppress_health_check=[HealthCheck.too_slow])
CELLS = ["lstm", "lstm_proj", "gru", "rnn_tanh", "rnn_relu"]


@st.composite
def module_configs(draw):
    cell = draw(st.sampled_from(CELLS))
    H = draw(st.integers(2, 12))
    return dict(
        cell=cell, T=draw(st.integers(1, 9)), B=draw(st.integers(1, 5)), I=draw(st.integers(1, 7)), H=H,
        layers=draw(st.integers(1, 3)), bidirectional=draw(st.booleans()), bias=draw(st.booleans()),
        proj=draw(st.integers(1, H - 1)) if cell == "lstm_proj" else 0, varlen=draw(st.booleans()),
        batch_first=draw(st.booleans()), dtype=draw(st.sampled_from([torch.float64, torch.float32])),
        seed=draw(st.integers(0, 2**16)))


@SETTINGS
@given(module_configs())
def test_fused_module_matches_torch_nn(cfg):
    torch.manual_seed(cfg["seed"])
    kind = cfg["cell"].split("_")
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind[0]]
    kw = dict(num_layers=cfg["layers"], bidirectional=cfg["bidirectional"], bias=cfg["bias"],
              batch_first=cfg["batch_first"], dtype=cfg["dtype"])
    if kind[0] == "rnn":
        kw["nonlinearity"] = kind[1]
    if cfg["proj"]:
        kw["proj_size"] = cfg["proj"]
    plain = cls(cfg["I"], cfg["H"], **kw)
    fused = fusedrnn.convert(plain)
    T, B = cfg["T"], cfg["B"]
    x = torch.randn(*((B, T) if cfg["batch_first"] else (T, B)), cfg["I"], dtype=cfg["dtype"], requires_grad=True)
    inp = x
    if cfg["varlen"]:
        lengths = torch.randint(1, T + 1, (B,))
        inp = pack_padded_sequence(x, lengths, batch_first=cfg["batch_first"], enforce_sorted=False)
    results = []
    for module in (plain, fused):
        out, state = module(inp)
        out = out.data if cfg["varlen"] else out
        outs = [out, *(state if isinstance(state, tuple) else (state,))]
        grads_out = [torch.randn(o.shape, generator=torch.Generator().manual_seed(1), dtype=o.dtype) for o in outs]
        grads = torch.autograd.grad(outs, [x, *module.parameters()], grads_out, retain_graph=True)
        results.append([o.detach() for o in outs] + list(grads))
    tol = 1e-10 if cfg["dtype"] == torch.float64 else 1e-5
    for a, e in zip(results[1], results[0]):
        assert_close_relative(a, e, tol)


@SETTINGS
@given(cell=st.sampled_from(CELLS), T=st.integers(1, 12), B=st.integers(1, 6), I=st.integers(1, 9),
       H=st.integers(1, 20), bias=st.booleans(), reverse=st.booleans(), varlen=st.booleans(),
       dtype=st.sampled_from([torch.float64, torch.float32, torch.bfloat16]), seed=st.integers(0, 2**16))
def test_fused_layer_matches_reference(cell, T, B, I, H, bias, reverse, varlen, dtype, seed):
    case = make_case(cell, T, B, I, H, bias=bias, reverse=reverse, varlen=varlen, seed=seed).to(dtype)
    from fusedrnn import functional, reference
    out, grads = forward_and_grads(functional, case)
    ref_out, ref_grads = forward_and_grads(reference, case.to(torch.float64))
    tol = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    for a, e in zip(out + grads, ref_out + ref_grads):
        assert_close_relative(a, e, tol)
