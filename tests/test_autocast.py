"""fusedrnn under torch.autocast against torch.nn under the same context (same weights): output dtypes
equal, outputs and gradients close, parameter gradients float32; the functional API against the
reference step loop under autocast; the raw ops; torch.compile; double backward; GradScaler on CUDA.

Tolerance for 16-bit autocast, max |error| <= tol * max(1, max |expected|): outputs 2e-2 (conftest's
bfloat16 bound); gradients 4e-2, since both sides are 16-bit approximations of the true gradient (each
within 2e-2 of it: fusedrnn's, accumulated in float32, is usually the closer).
"""

import functools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fusedrnn
from conftest import (CELLS, assert_close_relative, forward_and_grads, make_case, random_like, torch_nn_cell,
                      torch_nn_layer)
from fusedrnn import functional
from test_autograd_compile import backward_op_args, forward_args, forward_op
from test_torch_nn import run_torch

TOL = 2e-2
GRAD_TOL = 2 * TOL
I, H, T, B = 4, 5, 3, 2
MODULES = {kind: functools.partial(torch_nn_layer, kind, I, H) for kind in CELLS}
CELL_MODULES = {kind: functools.partial(torch_nn_cell, kind, I, H) for kind in CELLS if kind != "lstm_proj"}
# single layer; two bidirectional batch-first layers; a PackedSequence (unsorted lengths)
CONFIGS = {
    "one_layer": {},
    "two_layer_bidirectional": {"num_layers": 2, "bidirectional": True, "batch_first": True},
    "packed": {},
}
# torch.backends.mkldnn.flags also sets oneDNN's TF32 switch, which warns on builds without Intel GPUs
pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")
# ReLU's derivative jumps at 0: in a deep stack some pre-activation rounds across 0 in 16 bits on one side
# and not the other, flipping a gradient entry; the two-layer stack is left to the tanh RNN.
KIND_CONFIGS = [(kind, config) for kind in MODULES for config in CONFIGS
                if not (kind == "rnn_relu" and config == "two_layer_bidirectional")]
CPU_DTYPES = [torch.bfloat16, torch.float16]  # torch.nn runs both on the CPU
CUDA_DTYPES = [torch.float16, torch.bfloat16]
DEVICE_DTYPES = ([pytest.param("cpu", dtype) for dtype in CPU_DTYPES]
                 + [pytest.param("cuda", dtype, marks=pytest.mark.cuda) for dtype in CUDA_DTYPES])


def randn(*shape, seed, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(device)


def module_outputs(module, x, hx, config, device, autocast_dtype):
    """(output, *final states) of a module under autocast; output padded back to [T, B, F] when packed."""
    with torch.autocast(device, dtype=autocast_dtype):
        if config == "packed":
            packed = pack_padded_sequence(x, torch.tensor([T, T - 1]), enforce_sorted=False)
            out, state = module(packed, hx)
            out = pad_packed_sequence(out)[0]
        else:
            out, state = module(x, hx)
    return [out, *(state if isinstance(state, tuple) else (state,))]


def torch_nn_outputs(module, x, hx, config, device, autocast_dtype):
    """torch.nn's outputs. Its dense LSTM goes to oneDNN on the CPU, which under autocast fails on a float32
    input ("could not create a primitive descriptor"); there torch.nn's own step loop (oneDNN off), which
    every other torch.nn recurrent layer on the CPU runs, is the reference."""
    oneDNN = (device == "cpu" and isinstance(module, torch.nn.LSTM) and module.proj_size == 0
              and x.dtype == torch.float32)
    with torch.backends.mkldnn.flags(enabled=not oneDNN):
        return module_outputs(module, x, hx, config, device, autocast_dtype)


def compare(fused_outputs, plain_outputs, fused_leaves, plain_leaves, seed=7):
    """Equal dtypes, close values, and close gradients (same dtype as their leaf) of a fixed random loss."""
    for a, e in zip(fused_outputs, plain_outputs):
        assert a.dtype == e.dtype, f"output dtype {a.dtype}, torch.nn gives {e.dtype}"
        assert_close_relative(a, e, TOL, "output")
    weights = random_like([o.float() for o in plain_outputs], seed)

    def grads(outputs, leaves):
        loss = sum((o.float() * w.to(o.device)).sum() for o, w in zip(outputs, weights))
        return torch.autograd.grad(loss, leaves)

    for a, e, leaf in zip(grads(fused_outputs, fused_leaves), grads(plain_outputs, plain_leaves), fused_leaves):
        assert a.dtype == leaf.dtype, f"gradient dtype {a.dtype} for a {leaf.dtype} leaf"
        assert_close_relative(a, e, GRAD_TOL, "gradient")


def check_module(kind, config, x_dtype, state, autocast_dtype, device):
    torch.manual_seed(0)
    plain = MODULES[kind](**CONFIGS[config]).to(device)
    fused = fusedrnn.convert(plain)
    directions = 2 if plain.bidirectional else 1
    out_size = plain.proj_size or plain.hidden_size
    # the input as the layer before gives it: float32, or the autocast dtype (from a Linear under autocast)
    x = randn(B, T, I, seed=1, device=device) if plain.batch_first else randn(T, B, I, seed=1, device=device)
    x = x.to(x_dtype).requires_grad_()
    hx = None
    if state != "none":
        state_dtype = torch.float32 if state == "float32" else autocast_dtype
        shape = (plain.num_layers * directions, B)
        h0 = (randn(*shape, out_size, seed=2, device=device) * 0.5).to(state_dtype)
        c0 = (randn(*shape, plain.hidden_size, seed=3, device=device) * 0.5).to(state_dtype)
        hx = (h0, c0) if kind.startswith("lstm") else h0
    compare(module_outputs(fused, x, hx, config, device, autocast_dtype),
            torch_nn_outputs(plain, x, hx, config, device, autocast_dtype),
            [x, *fused.parameters()], [x, *plain.parameters()])
    assert all(p.dtype == torch.float32 for p in fused.parameters())


def check_cell(kind, x_dtype, state, autocast_dtype, device):
    torch.manual_seed(0)
    plain = CELL_MODULES[kind]().to(device)
    fused = fusedrnn.convert(plain)
    x = randn(B, I, seed=1, device=device).to(x_dtype).requires_grad_()
    hx = None
    if state != "none":
        state_dtype = torch.float32 if state == "float32" else autocast_dtype
        h0 = (randn(B, H, seed=2, device=device) * 0.5).to(state_dtype)
        hx = (h0, h0.flip(0)) if kind == "lstm" else h0

    def outputs(module):
        with torch.autocast(device, dtype=autocast_dtype):
            out = module(x, hx)
        return list(out) if isinstance(out, tuple) else [out]

    compare(outputs(fused), outputs(plain), [x, *fused.parameters()], [x, *plain.parameters()])


# ------------------------------------------------------------------------------------------------ CPU


@pytest.mark.parametrize("device,autocast_dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("state", ["none", "float32"])
@pytest.mark.parametrize("x_dtype", ["float32", "autocast"])
@pytest.mark.parametrize("kind,config", KIND_CONFIGS)
def test_module(kind, config, x_dtype, state, device, autocast_dtype):
    x_dtype = torch.float32 if x_dtype == "float32" else autocast_dtype
    check_module(kind, config, x_dtype, state, autocast_dtype, device)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_module_cpu_state_in_autocast_dtype(kind):
    """An initial state already in the autocast dtype: torch.nn then gives every output in it too."""
    check_module(kind, "one_layer", torch.bfloat16, "autocast", torch.bfloat16, "cpu")


@pytest.mark.parametrize("autocast_dtype", CPU_DTYPES)
@pytest.mark.parametrize("state", ["none", "float32", "autocast"])
@pytest.mark.parametrize("x_dtype", ["float32", "autocast"])
@pytest.mark.parametrize("kind", CELL_MODULES)
def test_cell_cpu(kind, x_dtype, state, autocast_dtype):
    x_dtype = torch.float32 if x_dtype == "float32" else autocast_dtype
    check_cell(kind, x_dtype, state, autocast_dtype, "cpu")


def torch_nn_layer(case):
    """torch.nn's outputs (in its dtypes under the active autocast) and gradients for a single-layer case,
    with oneDNN off (see torch_nn_outputs)."""
    with torch.backends.mkldnn.flags(enabled=False):
        return run_torch(case, torch.float32)


@pytest.mark.parametrize("varlen", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "lstm_proj", "gru", "rnn_tanh", "rnn_relu"])
def test_functional_cpu(cell, varlen):
    """fusedrnn.functional under autocast (float32 weights and initial states) against a torch.nn layer
    with the same weights under the same autocast."""
    case = make_case(cell, T, B, I, H, varlen=varlen, reverse=varlen, dtype=torch.float32, seed=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs, grads = forward_and_grads(functional, case)
        expected, expected_grads = torch_nn_layer(case)
    for a, e in zip(outputs, expected):
        assert a.dtype == e.dtype, f"output dtype {a.dtype}, torch.nn gives {e.dtype}"
        assert_close_relative(a, e, TOL, "output")
    for a, e in zip(grads, expected_grads):
        assert a.dtype == torch.float32
        assert_close_relative(a, e, GRAD_TOL, "gradient")


@pytest.mark.parametrize("cell", ["lstm", "lstm_proj", "gru", "rnn_tanh"])
def test_ops_cpu(cell):
    """The forward op itself under autocast: it computes in bfloat16 from float32 arguments, with outputs
    in torch.nn's dtypes, and its workspace stays float32; the backward op, called directly under autocast
    on what such a forward saves, gives gradients in bfloat16."""
    case = make_case(cell, T, B, I, H, dtype=torch.float32, seed=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = forward_op(cell)(*forward_args(case))
        expected, _ = torch_nn_layer(case)
    assert out[-1].dtype == torch.float32
    for a, e in zip(out[:-1], expected):
        assert a.dtype == e.dtype, f"output dtype {a.dtype}, torch.nn gives {e.dtype}"
        assert_close_relative(a, e, TOL, "output")
    low = case.with_tensors([t.to(torch.bfloat16) for t in case.tensors()], requires_grad=False)
    op, args = backward_op_args(low)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        grads = op(*args)
    assert grads[0].dtype == torch.bfloat16 and grads[0].shape == case.x.shape


def test_backward_inside_autocast_region():
    """loss.backward() inside the autocast block (a common pattern) still gives float32 gradients, as outside."""
    torch.manual_seed(0)
    plain = torch.nn.GRU(I, H)
    fused = fusedrnn.convert(plain)
    x = randn(T, B, I, seed=1)
    grads = []
    for module in (fused, plain):
        module.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = module(x)
            out.float().pow(2).sum().backward()
        grads.append([p.grad for p in module.parameters()])
    for a, e in zip(*grads):
        assert a.dtype == torch.float32
        assert_close_relative(a, e, GRAD_TOL, "gradient")


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_compile_fullgraph_under_autocast(kind):
    """torch.compile(fullgraph=True) of a training step with autocast inside: same dtypes, outputs and
    gradients as eager under autocast."""
    torch.manual_seed(0)
    fused = fusedrnn.convert(MODULES[kind]())
    x = randn(T, B, I, seed=1).requires_grad_()
    torch._dynamo.reset()

    def step(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, state = fused(x)
        states = state if isinstance(state, tuple) else (state,)
        return out, states[0]

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    leaves = [x, *fused.parameters()]
    compare(list(compiled(x)), list(step(x)), leaves, leaves)


def test_compile_inductor_under_autocast():
    torch.manual_seed(0)
    fused = fusedrnn.LSTM(I, H)
    x = randn(T, B, I, seed=1)
    torch._dynamo.reset()

    def step(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, (h, c) = fused(torch.nn.functional.linear(x, torch.eye(I)))
        return out.float().tanh().sum() + h.float().sum() * c.float().sum()

    leaves = list(fused.parameters())
    compiled = torch.autograd.grad(torch.compile(step, fullgraph=True)(x), leaves)
    eager = torch.autograd.grad(step(x), leaves)
    for a, e in zip(compiled, eager):
        assert a.dtype == torch.float32
        assert_close_relative(a, e, GRAD_TOL, "gradient")


@pytest.mark.parametrize("kind", ["gru", "rnn_tanh"])
def test_double_backward_under_autocast(kind):
    """A gradient penalty (create_graph=True) through a layer run under autocast, against torch.nn's."""
    torch.manual_seed(0)
    plain = MODULES[kind]()
    fused = fusedrnn.convert(plain)
    x = randn(T, B, I, seed=1).requires_grad_()
    results = []
    for module in (fused, plain):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = module(x)
        (gx,) = torch.autograd.grad(out.float().pow(2).sum(), x, create_graph=True)
        results.append(torch.autograd.grad(gx.pow(2).sum(), list(module.parameters())))
    for a, e in zip(*results):
        assert a.dtype == torch.float32
        assert_close_relative(a, e, GRAD_TOL, "second-order gradient")


# ----------------------------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.parametrize("autocast_dtype", CUDA_DTYPES)
@pytest.mark.parametrize("state", ["none", "float32"])
@pytest.mark.parametrize("kind", CELL_MODULES)
def test_cell_cuda(kind, state, autocast_dtype):
    check_cell(kind, torch.float32, state, autocast_dtype, "cuda")


@pytest.mark.cuda
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_compile_fullgraph_under_autocast_cuda(kind):
    torch.manual_seed(0)
    fused = fusedrnn.convert(MODULES[kind]()).cuda()
    x = randn(T, B, I, seed=1, device="cuda").requires_grad_()
    torch._dynamo.reset()

    def step(x):
        with torch.autocast("cuda", dtype=torch.float16):
            out, state = fused(x)
        return out, (state if isinstance(state, tuple) else (state,))[0]

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    leaves = [x, *fused.parameters()]
    compare(list(compiled(x)), list(step(x)), leaves, leaves)


@pytest.mark.cuda
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_grad_scaler_training_step_cuda(kind):
    """The usual mixed-precision loop, float16 autocast with GradScaler: the unscaled gradients and the
    updated parameters match torch.nn's, in float32."""
    torch.manual_seed(0)
    plain = MODULES[kind](num_layers=2).cuda()
    fused = fusedrnn.convert(plain)
    x = randn(T, B, I, seed=1, device="cuda")
    results = []
    for module in (fused, plain):
        optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
        scaler = torch.amp.GradScaler("cuda")
        with torch.autocast("cuda", dtype=torch.float16):
            out, _ = module(x)
            loss = out.float().pow(2).mean()
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grads = [p.grad.clone() for p in module.parameters()]
        scaler.step(optimizer)
        scaler.update()
        results.append((grads, [p.detach().clone() for p in module.parameters()]))
    (fused_grads, fused_params), (plain_grads, plain_params) = results
    for a, e in zip(fused_grads, plain_grads):
        assert a.dtype == torch.float32 and torch.isfinite(a).all()
        assert_close_relative(a, e, GRAD_TOL, "gradient")
    for a, e in zip(fused_params, plain_params):
        assert_close_relative(a, e, TOL, "parameter")
