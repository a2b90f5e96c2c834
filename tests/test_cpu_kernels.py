"""The CPU kernels' own machinery: thread teams, register tiles at sizes that span several tiles and
panels, and the packed-weight cache (reuse, and invalidation by every kind of weight change)."""

import math

import pytest
import torch

import fusedrnn
from conftest import CELLS, assert_close_relative, forward_and_grads, make_case
from fusedrnn import functional, reference


def assert_matches_reference(actual, case):
    """actual: (outputs, grads) of the fused ops on a float64 case; every one within 1e-10 of the reference."""
    expected = forward_and_grads(reference, case)
    for a, e in zip(actual[0] + actual[1], expected[0] + expected[1]):
        assert_close_relative(a, e, 1e-10)


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# Rows go in the fewest tiles of near-equal height (AVX-512: at most 6 rows, AVX2: 2): B=13 as 5 + 4 + 4
# (AVX2: six of 2 rows + 1), B=8 as 4 + 4. H=300: 18 full 16-lane blocks and a 12-lane one, enough work per
# step that two threads share every step (and, over 8 steps, enough per call to start a team).
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B,H,varlen,reverse", [(1, 300, False, False), (13, 150, True, True), (8, 90, False, True), (3, 67, True, False)])
def test_large_layers_match_reference(cell, B, H, varlen, reverse, cpu_isa, threads):
    torch.set_num_threads(2)
    case = make_case(cell, 8, B, 20, H, varlen=varlen, reverse=reverse, seed=B + H)
    assert_matches_reference(forward_and_grads(functional, case), case)


# dW_hh is a sum over steps of dgates^T h_prev: in one product over gathered previous states (varlen), or
# over y shifted by a step plus the h0 rows (dense). Past 4 MB of gate gradients, dW goes to ATen's GEMM:
# T=16, B=64, H=512 puts the LSTM's (15.7 MB of float64) and GRU's (11.8 MB) shifted rows there, the RNN's
# 3.9 MB stay tiled; T=2, B=300 puts the LSTM's h0 rows there too (4.9 MB: ATen's addmm_).
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("T,B", [(16, 64), (2, 300)])
def test_weight_gradients_through_atens_gemm_match_reference(cell, reverse, T, B, threads):
    torch.set_num_threads(2)
    case = make_case(cell, T, B, 24, 512, reverse=reverse, seed=5)
    assert_matches_reference(forward_and_grads(functional, case), case)


# T=1, B=1, H=370: a single row's step, whose matrix-vector and outer products threads share at this size.
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B,H,varlen", [(6, 7, 130, True), (6, 7, 130, False), (1, 1, 370, False)])
def test_thread_counts_agree(cell, T, B, H, varlen, threads):
    """Threads split hidden units or rows, never a sum, so every output and gradient has the same bits
    with any thread count (with proj_size the per-step projection is ATen's GEMM, which may not)."""
    case = make_case(cell, T, B, 24, H, varlen=varlen, seed=21).to(torch.float32)
    results = []
    for n in (1, 2, 3):
        torch.set_num_threads(n)
        outputs, grads = forward_and_grads(functional, case)
        results.append(outputs + grads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            if cell == "lstm_proj":
                assert_close_relative(a, b, 1e-5)
            else:
                assert torch.equal(a, b)


def lstm_pair(seed=0, hidden=40):
    torch.manual_seed(seed)
    theirs = torch.nn.LSTM(24, hidden, num_layers=2)
    ours = fusedrnn.convert(theirs)
    return theirs, ours, torch.randn(9, 3, 24)


def cache_stats():
    return fusedrnn.backends.cpu.weight_cache_stats()


def test_inference_reuses_packed_weights():
    theirs, ours, x = lstm_pair()
    fusedrnn.backends.cpu.clear_weight_cache()
    with torch.no_grad():
        first = ours(x)[0]
        after_first = cache_stats()
        second = ours(x)[0]
        after_second = cache_stats()
    assert after_second["packs"] == after_first["packs"]  # nothing re-packed
    assert after_second["hits"] - after_first["hits"] == 4  # W_ih and W_hh of both layers
    assert torch.equal(first, second)
    assert_close_relative(second, theirs(x)[0].detach(), 1e-5)


def test_training_reuses_packed_weights_until_they_change():
    """A step-by-step training loop calls a layer many times between optimizer steps: the packing is
    reused, and an optimizer step (an in-place update) makes the next call pack again."""
    theirs, ours, x = lstm_pair()
    optimizer = torch.optim.SGD(ours.parameters(), lr=0.1)
    fusedrnn.backends.cpu.clear_weight_cache()
    ours(x)[0].sum().backward()
    first = cache_stats()
    ours(x)[0].sum().backward()
    second = cache_stats()
    assert second["packs"] == first["packs"]
    assert second["hits"] - first["hits"] == 2 * 3  # per layer: W_ih, W_hh, W_hh's columns
    optimizer.step()
    theirs.load_state_dict(ours.state_dict())
    x.requires_grad_()
    out = ours(x)[0]
    assert cache_stats()["packs"] - second["packs"] == 2 * 2  # the forward's W_ih and W_hh, both layers
    expected = theirs(x)[0]
    assert_close_relative(out, expected.detach(), 1e-5)
    grad = torch.randn_like(out)
    (dx,), (dx_expected,) = torch.autograd.grad(out, x, grad), torch.autograd.grad(expected, x, grad)
    assert_close_relative(dx, dx_expected, 1e-5)


@pytest.mark.parametrize(
    "change", ["in_place", "data_copy", "data_one_element", "load_state_dict", "replace_data"])
def test_weight_changes_invalidate_the_cache(change):
    theirs, ours, x = lstm_pair(seed=1)
    with torch.no_grad():
        before = ours(x)[0]
        new_weight = torch.randn_like(ours.weight_hh_l1)
        if change == "in_place":
            ours.weight_hh_l1.copy_(new_weight)
        elif change == "data_copy":  # bypasses the version counter: only the content hash sees it
            ours.weight_hh_l1.data.copy_(new_weight)
        elif change == "data_one_element":  # the same, for one weight in the middle of the tensor
            new_weight = ours.weight_hh_l1.detach().clone()
            new_weight[77, 13] += 0.5
            ours.weight_hh_l1.data[77, 13] += 0.5
        elif change == "load_state_dict":
            state = ours.state_dict()
            state["weight_hh_l1"] = new_weight
            ours.load_state_dict(state)
        else:
            ours.weight_hh_l1.data = new_weight.clone()
        theirs.weight_hh_l1.copy_(new_weight)
        after = ours(x)[0]
    assert not torch.equal(before, after)
    assert_close_relative(after, theirs(x)[0].detach(), 1e-5)


def test_inference_tensors_are_not_cached():
    with torch.inference_mode():
        theirs, ours, x = lstm_pair(seed=2)
        entries = cache_stats()["entries"]
        y = ours(x)[0]
        assert cache_stats()["entries"] == entries
        assert_close_relative(y, theirs(x)[0], 1e-5)


def test_dead_weights_leave_the_cache():
    fusedrnn.backends.cpu.clear_weight_cache()
    _, ours, x = lstm_pair(seed=3)
    with torch.no_grad():
        ours(x)
    assert cache_stats()["entries"] == 4
    del ours
    _, other, x = lstm_pair(seed=4)
    with torch.no_grad():
        other(x)
    assert cache_stats()["entries"] == 4  # the first model's entries went when the new ones came


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_tanh_is_within_two_ulp(dtype, cpu_isa):
    """The CPU kernels' float32 tanh is their own (an odd polynomial near 0, 1 - 2 / (e^2x + 1) beyond):
    a one-step RNN with W_ih = I and W_hh = 0 returns exactly tanh(x), checked against float64 over
    magnitudes from 1e-30 to 20 and the special values."""
    n = 256
    magnitudes = torch.logspace(-30, 1.3, 1 << 17, dtype=torch.float64)
    x = torch.cat([magnitudes, -magnitudes, torch.randn(1 << 16, dtype=torch.float64) * 3]).to(dtype)
    x = x[: x.numel() // n * n].reshape(-1, n)
    eye, zeros = torch.eye(n, dtype=dtype), torch.zeros(n, n, dtype=dtype)
    y, _ = functional.rnn(x.unsqueeze(0), torch.zeros(x.shape[0], n, dtype=dtype), eye, zeros)
    exact = torch.tanh(x.double())
    nearest = exact.to(dtype)
    ulp = (torch.nextafter(nearest.abs(), torch.tensor(float("inf"), dtype=dtype)) - nearest.abs()).double()
    assert ((y[0].double() - exact).abs() / ulp).max().item() <= 2.0

    # Each special value on the diagonal (elsewhere its row's inf would make inf * 0 = NaN).
    specials = torch.tensor([0.0, float("inf"), float("-inf"), float("nan"), 1e-40, 100.0, -100.0, 0.625, -0.625],
                            dtype=dtype)
    rows = torch.diag(torch.cat([specials, torch.zeros(n - specials.numel(), dtype=dtype)]))
    y, _ = functional.rnn(rows.unsqueeze(0), torch.zeros(n, n, dtype=dtype), eye, zeros)
    got = torch.diagonal(y[0])[: specials.numel()]
    torch.testing.assert_close(got, torch.tanh(specials), equal_nan=True, rtol=2 * torch.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_sigmoid_is_within_two_and_a_half_ulp(dtype, cpu_isa):
    """The float32 sigmoid is 1 / (1 + e^-x) on the kernels' own inline exp (and a refined reciprocal
    with AVX-512). A one-step LSTM from c0 = 0 whose g gate saturates at exactly 1 (b_g = 100) returns
    c_n = sigmoid(pre_i) * 1 exactly; checked against float64 down to x = -80 (below, the result is
    subnormal and its ulp meaningless), then the special values."""

    def sigmoid_of(x, w_i, b_i):  # c_n of one step: x [rows, I], w_i [n, I] and b_i [n] make pre_i
        n = w_i.shape[0]
        w_ih = torch.cat([w_i, torch.zeros(3 * n, w_i.shape[1], dtype=dtype)])
        b_ih = torch.cat([b_i, torch.zeros(n, dtype=dtype), torch.full((n,), 100.0, dtype=dtype),
                          torch.zeros(n, dtype=dtype)])
        zeros = torch.zeros(x.shape[0], n, dtype=dtype)
        _, (_, c_n) = functional.lstm(x.unsqueeze(0), (zeros, zeros), w_ih, torch.zeros(4 * n, n, dtype=dtype),
                                      b_ih)
        return c_n

    n = 256
    magnitudes = torch.logspace(-30, math.log10(80), 1 << 17, dtype=torch.float64)
    x = torch.cat([magnitudes, -magnitudes, torch.randn(1 << 16, dtype=torch.float64) * 8]).to(dtype)
    x = x[: x.numel() // n * n].reshape(-1, n)
    got = sigmoid_of(x, torch.eye(n, dtype=dtype), torch.zeros(n, dtype=dtype))
    exact = torch.sigmoid(x.double())
    nearest = exact.to(dtype)
    ulp = (torch.nextafter(nearest, torch.tensor(float("inf"), dtype=dtype)) - nearest).double()
    assert ((got.double() - exact).abs() / ulp).max().item() <= 2.5

    # The special values as the i gate's bias (through W_ih, an inf would meet 0 * inf = NaN). Far below
    # zero the kernels saturate at a subnormal (float32: e^-88 / (1 + e^-88) ~ 6e-39) instead of 0.
    specials = torch.tensor([0.0, float("inf"), float("-inf"), float("nan"), 1e-40, 100.0, -100.0, 88.0, -88.0],
                            dtype=dtype)
    m = specials.numel()
    got = sigmoid_of(torch.zeros(1, 1, dtype=dtype), torch.zeros(m, 1, dtype=dtype), specials)[0]
    torch.testing.assert_close(got, torch.sigmoid(specials), equal_nan=True, rtol=2 * torch.finfo(dtype).eps,
                               atol=1e-38)


def pool_stats():
    return fusedrnn.backends.cpu.scratch_pool_stats()


@pytest.mark.parametrize("cell", CELLS)
def test_stale_scratch_memory_is_never_read(cell):
    """Large temporaries (workspace, gate gradients, packed panels) come from a pool and keep what the
    previous call left there. A call on NaN inputs fills them with NaN; the same shapes then run on
    fresh inputs in that memory and must still match the reference exactly where it is finite."""
    case = make_case(cell, 64, 8, 64, 128, varlen=True, seed=5)  # float64: temporaries of 0.3-2 MB
    poisoned = case.with_tensors([torch.full_like(case.x, float("nan"))] + case.tensors()[1:])
    fusedrnn.backends.cpu.clear_scratch_pool()
    outputs, grads = forward_and_grads(functional, poisoned)
    assert torch.isnan(outputs[0]).all() and torch.isnan(grads[3]).all()  # what goes back to the pool is NaN
    before = pool_stats()
    actual = forward_and_grads(functional, case)
    assert pool_stats()["reuses"] > before["reuses"]  # the second call did run in the poisoned memory
    assert_matches_reference(actual, case)


def test_training_steps_reuse_scratch_memory():
    torch.manual_seed(6)
    ours = fusedrnn.LSTM(64, 128, num_layers=2)
    x = torch.randn(50, 8, 64)
    fusedrnn.backends.cpu.clear_scratch_pool()
    grads = []
    for _ in range(3):
        ours.zero_grad()
        ours(x)[0].sum().backward()
        grads.append([p.grad.clone() for p in ours.parameters()])
        if len(grads) == 2:
            after_two = pool_stats()
    after_three = pool_stats()
    assert after_three["allocations"] == after_two["allocations"]  # the third step allocated nothing large
    assert after_three["reuses"] > after_two["reuses"]
    for a, b in zip(grads[0], grads[2]):
        assert torch.equal(a, b)
    assert pool_stats()["idle_bytes"] > 0
    fusedrnn.backends.cpu.clear_scratch_pool()
    assert pool_stats()["idle_blocks"] == 0 and pool_stats()["idle_bytes"] == 0


def test_concurrent_callers_share_the_scratch_pool():
    """Python threads training their own models at once take and return pooled blocks concurrently;
    every step must still give the bits a lone step gave."""
    import threading

    torch.manual_seed(7)
    models = [fusedrnn.LSTM(64, 96 + 8 * i) for i in range(3)]
    inputs = [torch.randn(40, 8 + i, 64) for i in range(3)]

    def step(i):
        models[i].zero_grad()
        y = models[i](inputs[i])[0]
        y.sum().backward()
        return [y.detach().clone()] + [p.grad.clone() for p in models[i].parameters()]

    expected = [step(i) for i in range(3)]
    reuses_before = pool_stats()["reuses"]
    mismatches = []

    def worker(i):
        for _ in range(10):
            if not all(torch.equal(a, b) for a, b in zip(step(i), expected[i])):
                mismatches.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mismatches == []
    assert pool_stats()["reuses"] > reuses_before
