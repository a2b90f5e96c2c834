"""The CUDA ops and modules (marker `cuda`; skipped without a GPU, run by scripts/gpu_check.sh):
against the float64 reference on the CPU and against torch.nn on CUDA, outputs and every gradient, plus
opcheck, CUDA-graph capture, torch.compile(mode="reduce-overhead"), side streams and determinism."""

import copy
import itertools

import pytest
import torch

import fusedrnn
from conftest import CELLS, assert_close_relative, forward_and_grads, make_case, run
from fusedrnn import functional, reference

pytestmark = pytest.mark.cuda

TOL = {torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 2e-2}
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
ALGORITHMS = ["step", "persistent"]


@pytest.fixture(autouse=True)
def strict_float32():
    """float32 checks are strict: no TF32 in the kernels (nor in cuDNN) unless a test asks for it."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(params=ALGORITHMS)
def algorithm(request, monkeypatch):
    """Forces one CUDA algorithm (FUSEDRNN_ALGO) for the test."""
    monkeypatch.setenv("FUSEDRNN_ALGO", request.param)
    return request.param


def algorithm_counts():
    return fusedrnn.backends.cuda.algorithm_counts()


def assert_ran(algorithm, before, directions=("forward", "backward")):
    """The forced algorithm ran for every direction named (persistent: layers without projection)."""
    after = algorithm_counts()
    for direction in directions:
        key = f"{direction}_{algorithm}"
        assert after[key] > before[key], f"{key} did not run: {before} -> {after}"


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


# B=70 spans two row chunks of the persistent kernels, H=1030 gives their last block fewer units, and
# B >= 8 takes the tensor-core product for 16-bit dtypes.
SIZES = [(1, 1, 1), (7, 3, 5), (7, 1, 67), (129, 3, 256), (33, 8, 32), (5, 70, 40), (4, 17, 1030)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bias,reverse,varlen", list(itertools.product([True, False], [False, True], [False, True])))
@pytest.mark.parametrize("T,B,H", SIZES)
@pytest.mark.parametrize("cell", CELLS)
def test_cuda_matches_reference(cell, T, B, H, bias, reverse, varlen, dtype, algorithm):
    case = make_case(cell, T, B, H + 3, H, bias=bias, reverse=reverse, varlen=varlen, seed=T + B + H)
    before = algorithm_counts()
    check_cuda_against_reference(case, dtype)
    assert_ran("step" if cell == "lstm_proj" else algorithm, before)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("B", [1, 16])
def test_cuda_tf32_follows_cudnn_allow_tf32(cell, B, algorithm):
    """With cudnn.allow_tf32 (as nn.LSTM reads it) float32 may use TF32 tensor cores: within TF32's error."""
    torch.backends.cudnn.allow_tf32 = True
    case = make_case(cell, 20, B, 40, 96, varlen=True, seed=B)
    check_cuda_against_reference(case, torch.float32, tol=1e-2)


@pytest.mark.parametrize("B,H,expected", [(8, 32, "persistent"), (63, 1024, "persistent"), (64, 1024, "step"),
                                           (256, 256, "step")])
def test_cuda_auto_runs_step_wise_from_batch_times_hidden_65536(B, H, expected, monkeypatch):
    monkeypatch.delenv("FUSEDRNN_ALGO", raising=False)
    case = make_case("gru", 3, B, 8, H, seed=B + H)
    before = algorithm_counts()
    check_cuda_against_reference(case, torch.float32)
    assert_ran(expected, before)
    other = "step" if expected == "persistent" else "persistent"
    after = algorithm_counts()
    assert all(after[f"{d}_{other}"] == before[f"{d}_{other}"] for d in ("forward", "backward")), (before, after)


def test_cuda_algorithm_must_be_known(monkeypatch):
    monkeypatch.setenv("FUSEDRNN_ALGO", "fastest")
    case = to_cuda(make_case("gru", 3, 2, 4, 5, seed=10), torch.float32)
    with pytest.raises(RuntimeError, match="FUSEDRNN_ALGO must be 'auto', 'step' or 'persistent', got 'fastest'"):
        run(functional, case)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru", "rnn_tanh", "rnn_relu"])
def test_cuda_modules_match_torch_nn_on_cuda(kind, dtype, algorithm):
    """Fused modules and torch.nn (cuDNN) on CUDA with copied weights (2 layers, bidirectional, packed), both
    against torch.nn in float64 on the CPU: fused within tolerance, or at most twice cuDNN's own error."""
    cls = {"lstm": torch.nn.LSTM, "lstm_proj": torch.nn.LSTM, "gru": torch.nn.GRU}.get(kind, torch.nn.RNN)
    kw = {"proj_size": 4} if kind == "lstm_proj" else {}
    if kind.startswith("rnn"):
        kw["nonlinearity"] = kind.split("_")[1]
    torch.manual_seed(0)
    plain = cls(6, 16, num_layers=2, bidirectional=True, device="cuda", dtype=dtype, **kw)
    fused = fusedrnn.convert(copy.deepcopy(plain))
    exact = copy.deepcopy(plain).to("cpu", torch.float64)
    seqs = [torch.randn(n, 6, device="cuda", dtype=dtype) for n in (9, 7, 7, 2)]
    outs = []
    for module in (plain, fused, exact):
        device, mdtype = module.weight_hh_l0.device, module.weight_hh_l0.dtype
        packed = torch.nn.utils.rnn.pack_sequence([s.to(device, mdtype) for s in seqs], enforce_sorted=False)
        out, state = module(packed)
        states = state if isinstance(state, tuple) else (state,)
        loss = out.data.double().square().sum() + sum(s.double().sum() for s in states)
        loss.backward()
        outs.append([t.detach().double().cpu() for t in [out.data, *states, *[p.grad for p in module.parameters()]]])
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    for i, (cudnn_value, fused_value, exact_value) in enumerate(zip(*outs)):  # the order of the modules above
        scale = exact_value.abs().max().clamp_min(1.0).item()
        fused_err = (fused_value - exact_value).abs().max().item()
        cudnn_err = (cudnn_value - exact_value).abs().max().item()
        assert fused_err <= max(tol * scale, 2 * cudnn_err), f"tensor {i}: fused {fused_err:.2e}, cuDNN {cudnn_err:.2e}"


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


def test_cuda_graph_capture_matches_eager(algorithm):
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
    before = algorithm_counts()
    with torch.cuda.graph(graph):
        static_out = _train_step(model, static_x)
    assert_ran(algorithm, before)
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
def test_cuda_runs_are_bitwise_equal(cell, algorithm):
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
    with torch.no_grad():
        y, h_n, c_n, ws = torch.ops.fusedrnn.lstm_forward(case.x, case.h0, case.c0, case.w_ih, case.w_hh, case.b_ih,
                                                          case.b_hh, None, None, False, True)
    with pytest.raises(RuntimeError, match="grad_y must be on cuda:0 like x, got cpu"):
        torch.ops.fusedrnn.lstm_backward(torch.randn_like(y).cpu(), torch.randn_like(h_n), torch.randn_like(c_n),
                                         case.x, case.h0, case.c0, case.w_ih, case.w_hh, None, True, None, False,
                                         y, ws)
