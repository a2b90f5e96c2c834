"""Reliability: edge-case inputs, NaN/Inf, long sequences, leaks, threads, and double backward."""

import gc
import threading

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

import fusedrnn
from conftest import CELLS, assert_close_relative, forward_and_grads, make_case, run
from fusedrnn import functional, reference

ops = torch.ops.fusedrnn


def module_pair(cls, *args, **kwargs):
    torch.manual_seed(0)
    plain = cls(*args, **kwargs)
    return plain, fusedrnn.convert(plain)


def outputs(result):
    out, state = result
    out = out.data if isinstance(out, torch.nn.utils.rnn.PackedSequence) else out
    return [out, *(state if isinstance(state, tuple) else (state,))]


# ------------------------------------------------------------------------------------------ edge cases


@pytest.mark.parametrize("cls", [torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN])
def test_empty_batch_matches_torch_nn(cls):
    plain, fused = module_pair(cls, 3, 4, num_layers=2)
    x = torch.randn(5, 0, 3, requires_grad=True)
    a, e = outputs(fused(x)), outputs(plain(x))
    assert [t.shape for t in a] == [t.shape for t in e]
    sum(t.sum() for t in a).backward()  # and the backward runs on nothing
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("cls", [fusedrnn.LSTM, fusedrnn.GRU, fusedrnn.RNN])
def test_empty_sequence_is_rejected_like_torch_nn(cls):
    with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0 in RNN"):
        cls(3, 4)(torch.randn(0, 2, 3))
    with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0 in RNN"):
        cls(3, 4, batch_first=True)(torch.randn(2, 0, 3))


@pytest.mark.parametrize("cell", CELLS)
def test_ops_accept_an_empty_sequence(cell):
    """The ops themselves define T=0: no output rows, the final state is the initial state, gradients flow."""
    case = make_case(cell, 3, 2, 3, 4, seed=1)
    case = case.with_tensors([case.x.detach()[:0]] + [t.detach() for t in case.tensors()[1:]])
    out = run(functional, case)
    assert out[0].shape == (0, 2, case.h0.shape[1])
    assert torch.equal(out[1], case.h0.detach())
    states = list(out[1:])  # y has no rows; the states carry the gradient straight back to h0 (and c0)
    grads = torch.autograd.grad(states, case.tensors(), [torch.ones_like(s) for s in states], allow_unused=True)
    assert torch.equal(grads[1], torch.ones_like(case.h0))
    for g in grads[3:]:
        assert g is None or not g.any()  # the weights had no step to act in


def test_hidden_size_zero_is_rejected_like_torch_nn():
    with pytest.raises(ValueError, match="hidden_size must be greater than zero"):
        fusedrnn.GRU(3, 0)


@pytest.mark.parametrize("lengths", [[1], [1, 1, 1], [4, 4, 4], [6, 1], [3, 2, 1]])
@pytest.mark.parametrize("cls", [torch.nn.LSTM, torch.nn.GRU])
def test_packed_sequence_edge_cases(cls, lengths):
    plain, fused = module_pair(cls, 3, 5, bidirectional=True, dtype=torch.float64)
    seqs = [torch.randn(n, 3, dtype=torch.float64) for n in lengths]
    packed = pack_sequence(seqs, enforce_sorted=False)
    for a, e in zip(outputs(fused(packed)), outputs(plain(packed))):
        assert_close_relative(a, e, 1e-10)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("cls", [torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN])
def test_non_finite_inputs_propagate_like_torch_nn(cls, value):
    plain, fused = module_pair(cls, 3, 4, dtype=torch.float64)
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    x[2, 0, 1] = value  # one bad element in batch row 0
    for a, e in zip(outputs(fused(x)), outputs(plain(x))):
        assert torch.equal(torch.isnan(a), torch.isnan(e))
        finite = torch.isfinite(e)
        assert torch.equal(finite, torch.isfinite(a))
        assert_close_relative(a[finite], e[finite], 1e-10)


def test_overlapping_and_strided_inputs_are_handled():
    """Expanded (stride-0) states, sliced inputs and transposed weights are read correctly, not aliased."""
    case = make_case("lstm", 5, 4, 3, 6, seed=2)
    expected = run(reference, case)
    h_row, c_row = case.h0.detach()[:1], case.c0.detach()[:1]
    wide = torch.randn(5, 4, 9, dtype=torch.float64)
    wide[..., 2:5] = case.x.detach()
    w_hh_t = case.w_hh.detach().t().contiguous().t()  # same values, column-major storage
    y, (h, c) = functional.lstm(wide[..., 2:5], (h_row.expand(4, -1), c_row.expand(4, -1)), case.w_ih.detach(),
                                w_hh_t, case.b_ih.detach(), case.b_hh.detach())
    y_ref, (h_ref, c_ref) = reference.lstm(case.x.detach(), (h_row.expand(4, -1), c_row.expand(4, -1)),
                                           case.w_ih.detach(), case.w_hh.detach(), case.b_ih.detach(),
                                           case.b_hh.detach())
    for a, e in zip([y, h, c], [y_ref, h_ref, c_ref]):
        assert_close_relative(a, e, 1e-12)
    assert expected[0].shape == y.shape


# ------------------------------------------------------------------------------------------ scale


def test_long_sequence_forward_backward():
    """T=20000: runs, matches torch.nn, and saves a workspace linear in T (5H floats per packed row)."""
    T, B, H = 20000, 2, 64
    plain, fused = module_pair(torch.nn.LSTM, H, H)
    x = torch.randn(T, B, H)
    y_fused, _ = fused(x.requires_grad_())
    grad = torch.randn_like(y_fused)
    (dx_fused,) = torch.autograd.grad(y_fused, x, grad)
    y_plain, _ = plain(x)
    (dx_plain,) = torch.autograd.grad(y_plain, x, grad)
    assert_close_relative(y_fused, y_plain, 1e-5)
    assert_close_relative(dx_fused, dx_plain, 1e-4)
    w = [getattr(fused, n) for n in fused._flat_weights_names]
    with torch.no_grad():
        ws = ops.lstm_forward(x, torch.zeros(B, H), torch.zeros(B, H), *w, None, None, False, True)[3]
    assert ws.shape == (T * B, 5 * H)


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_no_memory_growth_over_ten_thousand_calls():
    case = make_case("gru", 6, 3, 4, 8, varlen=True, seed=3).to(torch.float32)
    for _ in range(300):  # warm the allocator and autograd caches
        forward_and_grads(functional, case)
    gc.collect()
    before = _rss_bytes()
    for _ in range(10_000):
        forward_and_grads(functional, case)
    gc.collect()
    after = _rss_bytes()
    assert after <= before * 1.05, f"RSS grew from {before / 2**20:.1f} MiB to {after / 2**20:.1f} MiB"


def test_concurrent_threads_get_correct_results():
    cases = [make_case(cell, 9, 3, 4, 21, varlen=True, seed=i) for i, cell in enumerate(CELLS[:4])]
    expected = [forward_and_grads(reference, c) for c in cases]
    errors = []

    def worker(case, want):
        try:
            for _ in range(20):
                got = forward_and_grads(functional, case)
                for a, e in zip(got[0] + got[1], want[0] + want[1]):
                    assert_close_relative(a, e, 1e-10)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(c, w)) for c, w in zip(cases, expected)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


# ------------------------------------------------------------------------------------------ second order


@pytest.mark.parametrize("varlen,reverse", [(False, False), (True, True)])
@pytest.mark.parametrize("cell", CELLS)
def test_gradgradcheck(cell, varlen, reverse):
    """Double backward (e.g. a gradient penalty) falls back to the differentiable reference."""
    case = make_case(cell, 3, 2, 2, 3, varlen=varlen, reverse=reverse, seed=4)

    def f(*tensors):
        return run(functional, case.rebind(tensors))

    assert torch.autograd.gradgradcheck(f, case.tensors(), eps=1e-6, atol=1e-6)


def test_gradient_penalty_through_a_module():
    plain, fused = module_pair(torch.nn.GRU, 3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    penalties = []
    for module in (plain, fused):
        out, _ = module(x)
        (g,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
        penalty = g.square().sum()
        penalties.append(torch.autograd.grad(penalty, list(module.parameters())))
    for a, e in zip(penalties[1], penalties[0]):
        assert_close_relative(a, e, 1e-9)
