"""The CUDA ops and modules (marker `cuda`; skipped without a GPU, run by scripts/gpu_check.sh):
against the float64 reference on the CPU and against torch.nn on CUDA, outputs and every gradient, plus
opcheck, CUDA-graph capture, torch.compile(mode="reduce-overhead"), side streams and determinism."""

import itertools

import pytest
import torch

import fusedrnn
from conftest import CELLS, assert_close_relative, forward_and_grads, make_case, run
from fusedrnn import functional, reference

pytestmark = pytest.mark.cuda

TOL = {torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 2e-2}
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def to_cuda(case, dtype):
    """The case's values rounded to dtype, as fresh CUDA leaves (batch_sizes stays on the CPU)."""
    return case.with_tensors([t.detach().to(dtype).to("cuda") for t in case.tensors()])


def check_cuda_against_reference(case, dtype, tol=None):
    cuda_case = to_cuda(case, dtype)
    ref_case = case.with_tensors([t.detach().to(dtype).double() for t in case.tensors()])
    out, grads = forward_and_grads(functional, cuda_case)
    ref_out, ref_grads = forward_and_grads(reference, ref_case)
    tol = tol or TOL[dtype]
    for name, a, e in zip(["y", "h_n", "c_n"], out, ref_out):
        assert a.is_cuda and a.dtype == dtype
        assert_close_relative(a.cpu(), e, tol, name)
    for i, (a, e) in enumerate(zip(grads, ref_grads)):
        assert a.is_cuda and a.dtype == dtype, f"grad {i}"
        assert_close_relative(a.cpu(), e, tol, f"grad of input {i}")


SIZES = [(1, 1, 1), (7, 3, 5), (7, 1, 67), (129, 3, 256), (33, 8, 32)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bias,reverse,varlen", list(itertools.product([True, False], [False, True], [False, True])))
@pytest.mark.parametrize("T,B,H", SIZES)
@pytest.mark.parametrize("cell", CELLS)
def test_cuda_matches_reference(cell, T, B, H, bias, reverse, varlen, dtype):
    case = make_case(cell, T, B, H + 3, H, bias=bias, reverse=reverse, varlen=varlen, seed=T + B + H)
    check_cuda_against_reference(case, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru", "rnn_tanh", "rnn_relu"])
def test_cuda_modules_match_torch_nn_on_cuda(kind, dtype):
    """Fused modules against torch.nn (cuDNN) on CUDA with copied weights: 2 layers, bidirectional, packed."""
    cls = {"lstm": torch.nn.LSTM, "lstm_proj": torch.nn.LSTM, "gru": torch.nn.GRU}.get(kind, torch.nn.RNN)
    kw = {"proj_size": 4} if kind == "lstm_proj" else {}
    if kind.startswith("rnn"):
        kw["nonlinearity"] = kind.split("_")[1]
    torch.manual_seed(0)
    plain = cls(6, 16, num_layers=2, bidirectional=True, device="cuda", dtype=dtype, **kw)
    fused = fusedrnn.convert(plain)
    seqs = [torch.randn(n, 6, device="cuda", dtype=dtype) for n in (9, 7, 7, 2)]
    packed = torch.nn.utils.rnn.pack_sequence(seqs, enforce_sorted=False)
    outs = []
    for module in (plain, fused):
        module.zero_grad()
        out, state = module(packed)
        states = state if isinstance(state, tuple) else (state,)
        loss = out.data.float().square().sum() + sum(s.float().sum() for s in states)
        loss.backward()
        outs.append([out.data.detach(), *[s.detach() for s in states], *[p.grad.clone() for p in module.parameters()]])
    tol = 1e-4 if dtype == torch.float32 else 3e-2  # cuDNN itself is not exact in fp32 either
    for a, e in zip(outs[1], outs[0]):
        assert_close_relative(a.float().cpu(), e.float().cpu(), tol)


@pytest.mark.parametrize("cell", CELLS)
def test_cuda_opcheck(cell):
    from test_autograd_compile import backward_op_args, forward_args, forward_op
    case = to_cuda(make_case(cell, 5, 3, 4, 6, varlen=True, reverse=True, seed=8), torch.float32)
    torch.library.opcheck(forward_op(cell).default, forward_args(case))
    op, args = backward_op_args(case)
    torch.library.opcheck(op.default, args)


def _train_step(model, x):
    out, _ = model(x)
    out.float().square().mean().backward()
    return out


def test_cuda_graph_capture_matches_eager():
    torch.manual_seed(1)
    model = fusedrnn.LSTM(8, 32, num_layers=2, device="cuda")
    x = torch.randn(20, 4, 8, device="cuda")
    eager_out = _train_step(model, x).detach().clone()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up on a side stream, as torch.cuda.graphs asks
        for _ in range(2):
            model.zero_grad(set_to_none=False)
            _train_step(model, static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    model.zero_grad(set_to_none=False)
    with torch.cuda.graph(graph):
        static_out = _train_step(model, static_x)
    for _ in range(2):
        for p in model.parameters():
            p.grad.zero_()
        graph.replay()
    torch.cuda.synchronize()
    assert_close_relative(static_out.cpu(), eager_out.cpu(), 1e-6)
    for p, e in zip(model.parameters(), eager_grads):
        assert_close_relative(p.grad.cpu(), e.cpu(), 1e-6)


def test_cuda_compile_reduce_overhead_matches_eager():
    torch.manual_seed(2)
    model = fusedrnn.GRU(8, 16, batch_first=True, device="cuda")
    x = torch.randn(3, 10, 8, device="cuda")
    torch._dynamo.reset()
    compiled = torch.compile(model, mode="reduce-overhead")
    expected = model(x)[0]
    for _ in range(3):
        actual = compiled(x)[0]
    assert_close_relative(actual.detach().cpu(), expected.detach().cpu(), 1e-5)


def test_cuda_side_stream_is_correct():
    case = to_cuda(make_case("lstm", 17, 5, 7, 40, varlen=True, seed=3), torch.float32)
    expected = forward_and_grads(functional, case)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        actual = forward_and_grads(functional, case)
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    for a, e in zip(actual[0] + actual[1], expected[0] + expected[1]):
        assert torch.equal(a, e)


@pytest.mark.parametrize("cell", CELLS)
def test_cuda_runs_are_bitwise_equal(cell):
    case = to_cuda(make_case(cell, 33, 8, 9, 67, varlen=True, seed=4), torch.bfloat16)
    first, second = forward_and_grads(functional, case), forward_and_grads(functional, case)
    for a, b in zip(first[0] + first[1], second[0] + second[1]):
        assert torch.equal(a, b)


def test_cuda_inference_saves_nothing():
    case = to_cuda(make_case("gru", 5, 3, 4, 6, seed=5), torch.float16)
    with torch.no_grad():
        out = torch.ops.fusedrnn.gru_forward(case.x, case.h0, case.w_ih, case.w_hh, case.b_ih, case.b_hh, None,
                                             False, False)
    assert out[-1].numel() == 0
    with torch.no_grad():
        ref = run(reference, case.with_tensors([t.detach().double().cpu() for t in case.tensors()]))
    assert_close_relative(out[0].cpu(), ref[0], 2e-2)


def test_cuda_rejects_float64_with_a_clear_error():
    case = to_cuda(make_case("rnn_tanh", 3, 2, 4, 5, seed=6), torch.float64)
    with pytest.raises(RuntimeError, match="float64 runs on the CPU"):
        run(functional, case)


def test_cuda_memory_returns_to_baseline():
    case = to_cuda(make_case("lstm", 20, 4, 8, 32, seed=7), torch.float32)
    forward_and_grads(functional, case)
    torch.cuda.synchronize()
    baseline = torch.cuda.memory_allocated()
    for _ in range(20):
        forward_and_grads(functional, case)
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == baseline


def test_cuda_mixed_devices_are_rejected():
    case = to_cuda(make_case("lstm", 3, 2, 4, 5, seed=9), torch.float32)
    with pytest.raises(RuntimeError, match="h0 must be on cuda:0 like x"):
        torch.ops.fusedrnn.lstm_forward(case.x, case.h0.cpu(), case.c0, case.w_ih, case.w_hh, case.b_ih, case.b_hh,
                                        None, None, False, False)
