"""The layer-normalised LSTM and GRU: the fused ops against fusedrnn.reference (forward and every gradient,
over awkward sizes, reverse, varlen, every instruction set), gradcheck, torch.compile, and the modules'
torch.nn interface (opcheck of their ops: test_regularisers.py)."""

import itertools

import pytest
import torch
from conftest import (
    GATES,
    TOLERANCE,
    assert_close_relative,
    check_fused_against_reference,
    make_case,
    reference_stack,
)
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

import fusedrnn
from fusedrnn import functional, reference

FLAGS = list(itertools.product([True, False], [False, True], [False, True]))  # bias, reverse, varlen


def make_inputs(cell, T, B, I, H, *, bias=True, varlen=False, seed=0):
    """(x, hx, weights, norm weights, batch_sizes): conftest's random case plus norm weights near ones/zeros."""
    case = make_case(cell, T, B, I, H, bias=bias, varlen=varlen, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)

    def near(size, value):
        return (torch.randn(size, generator=g, dtype=torch.float64) * 0.3 + value).requires_grad_()

    G = GATES[cell]
    norm = [near(G * H, 1.0), near(G * H, 1.0)] + ([near(H, 1.0), near(H, 0.0)] if cell == "lstm" else [])
    hx = (case.h0, case.c0) if cell == "lstm" else case.h0
    return case.x, hx, [case.w_ih, case.w_hh, case.b_ih, case.b_hh], norm, case.batch_sizes


def run(impl, cell, x, hx, weights, norm, batch_sizes, reverse):
    """impl's layer-normalised layer: (y, h_n) or (y, h_n, c_n)."""
    y, final = getattr(impl, f"layernorm_{cell}")(x, hx, *weights, *norm, batch_sizes=batch_sizes, reverse=reverse)
    return (y, *final) if cell == "lstm" else (y, final)


def leaves(x, hx, weights, norm):
    states = list(hx) if isinstance(hx, tuple) else [hx]
    return [t for t in [x, *states, *weights, *norm] if t is not None]


def cast(inputs, dtype):
    """The inputs as fresh leaves of dtype (rounded first, so that both sides see the same values)."""
    x, hx, weights, norm, batch_sizes = inputs

    def c(t):
        return None if t is None else t.detach().to(dtype).requires_grad_()

    hx = tuple(c(t) for t in hx) if isinstance(hx, tuple) else c(hx)
    return c(x), hx, [c(w) for w in weights], [c(w) for w in norm], batch_sizes


def check_against_reference(cell, inputs, reverse, dtype):
    check_fused_against_reference(lambda impl, args: run(impl, cell, *args[:4], args[4], reverse),
                                  cast(inputs, dtype), cast(cast(inputs, dtype), torch.float64),
                                  lambda args: leaves(*args[:4]), dtype)


@pytest.mark.parametrize("bias,reverse,varlen", FLAGS)
@pytest.mark.parametrize("T,B,H", [(1, 1, 1), (2, 3, 5), (7, 8, 32), (5, 3, 67)])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_float64_matches_reference(cell, T, B, H, bias, reverse, varlen, cpu_isa):
    inputs = make_inputs(cell, T, B, H + 2, H, bias=bias, varlen=varlen, seed=T * 100 + B * 10 + H)
    check_against_reference(cell, inputs, reverse, torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_low_precision_matches_reference(cell, dtype, cpu_isa):
    inputs = make_inputs(cell, 6, 3, 9, 13, varlen=True, seed=7)
    check_against_reference(cell, inputs, True, dtype)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradcheck(cell):
    x, hx, weights, norm, _ = make_inputs(cell, 3, 2, 3, 5, seed=3)
    tensors = leaves(x, hx, weights, norm)
    s = 2 if cell == "lstm" else 1

    def f(*t):
        states = tuple(t[1:1 + s]) if s == 2 else t[1]
        return run(functional, cell, t[0], states, t[1 + s:5 + s], t[5 + s:], None, False)

    assert torch.autograd.gradcheck(f, tensors)
    assert torch.autograd.gradgradcheck(f, tensors)  # create_graph goes through the reference loop


def test_inference_saves_no_workspace():
    x, hx, weights, norm, _ = make_inputs("lstm", 3, 2, 4, 5, seed=1)
    with torch.no_grad():
        y, h, c, workspace = torch.ops.fusedrnn.stepwise_lstm_forward(x, *hx, *weights, *norm, None, None, None, False, False)
    assert workspace.shape == (0,)
    expected = run(reference, "lstm", x, hx, weights, norm, None, False)
    for a, e in zip((y, h, c), expected):
        assert_close_relative(a, e, TOLERANCE[torch.float64])


def test_bad_norm_weight_is_a_clear_error():
    x, hx, weights, norm, _ = make_inputs("gru", 3, 2, 4, 5, seed=1)
    with pytest.raises(RuntimeError, match=r"ln_hh_weight must have shape \[15\]"):
        torch.ops.fusedrnn.stepwise_gru_forward(x, hx, *weights, norm[0], norm[1][:-1], None, None, None, False, False)
    with pytest.raises(RuntimeError, match="ln_ih_weight must have dtype torch.float64"):
        torch.ops.fusedrnn.stepwise_gru_forward(x, hx, *weights, norm[0].float(), norm[1], None, None, None, False, False)


# ---------------------------------------------------------------------------------------------- modules


def perturb_norms(module):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith("ln_"):
                p.add_(torch.randn_like(p) * 0.3)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cls", [fusedrnn.LayerNormLSTM, fusedrnn.LayerNormGRU])
def test_module_matches_reference_stack(cls, bidirectional):
    torch.manual_seed(0)
    module = cls(5, 6, num_layers=2, bidirectional=bidirectional, batch_first=True, dtype=torch.float64)
    perturb_norms(module)
    D = 2 if bidirectional else 1
    x = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2 * D, 3, 6, dtype=torch.float64)
    hx = (h0, torch.randn_like(h0)) if cls is fusedrnn.LayerNormLSTM else h0
    y, final = module(x, hx)
    y_ref, final_ref = reference_stack(module, x.transpose(0, 1), hx)
    assert_close_relative(y, y_ref.transpose(0, 1), 1e-10, "y")
    for a, e in zip(final if isinstance(final, tuple) else (final,), final_ref):
        assert_close_relative(a, e, 1e-10, "final state")
    params = list(module.parameters())
    grads = torch.autograd.grad(y.sum(), [x, *params])
    grads_ref = torch.autograd.grad(y_ref.sum(), [x, *params])
    for (name, _), a, e in zip([("x", None), *module.named_parameters()], grads, grads_ref):
        assert_close_relative(a, e, 1e-10, name)


@pytest.mark.parametrize("cls", [fusedrnn.LayerNormLSTM, fusedrnn.LayerNormGRU])
def test_module_parameters(cls):
    module = cls(4, 3, num_layers=2, bidirectional=True, bias=False)
    G = 4 if cls is fusedrnn.LayerNormLSTM else 3
    plain = torch.nn.LSTM if G == 4 else torch.nn.GRU
    names = dict(module.named_parameters())
    torch_names = [n for n, _ in plain(4, 3, num_layers=2, bidirectional=True, bias=False).named_parameters()]
    assert list(names)[:len(torch_names)] == torch_names  # torch.nn's parameters first, in its order
    norm = [n for n in names if n.startswith("ln_")]
    per_direction = ["ln_ih_weight", "ln_hh_weight"] + (["ln_c_weight", "ln_c_bias"] if G == 4 else [])
    assert norm == [f"{n}_l{k}{s}" for k in range(2) for s in ("", "_reverse") for n in per_direction]
    for n in norm:
        assert names[n].shape == ((G * 3,) if n.startswith(("ln_ih", "ln_hh")) else (3,))
        assert torch.equal(names[n], torch.zeros(names[n].shape) if "bias" in n else torch.ones(names[n].shape))
    module.reset_parameters()
    assert all(torch.equal(names[n], torch.ones_like(names[n])) for n in norm if "bias" not in n)
    assert names["weight_ih_l0"].abs().max() <= 3**-0.5  # torch.nn's uniform(-1/sqrt(H), 1/sqrt(H))
    copy = cls(4, 3, num_layers=2, bidirectional=True, bias=False)
    perturb_norms(module)
    copy.load_state_dict(module.state_dict())
    x = torch.randn(5, 2, 4)
    assert torch.equal(copy(x)[0], module(x)[0])


def test_module_packed_unbatched_and_eval_backward():
    torch.manual_seed(1)
    module = fusedrnn.LayerNormLSTM(4, 5, bidirectional=True)
    perturb_norms(module)
    seqs = [torch.randn(n, 4) for n in (4, 2, 1)]
    packed_out, (h, c) = module(pack_sequence(seqs))
    padded, lengths = pad_packed_sequence(packed_out)
    for i, s in enumerate(seqs):  # each sequence alone, unbatched, gives the same
        y_i, (h_i, c_i) = module(s)
        assert_close_relative(padded[:lengths[i], i], y_i, 1e-5, "y")
        assert_close_relative(h[:, i], h_i, 1e-5, "h_n")
        assert_close_relative(c[:, i], c_i, 1e-5, "c_n")
    module.eval()  # backward works in eval mode too
    x = torch.randn(3, 2, 4, requires_grad=True)
    module(x)[0].sum().backward()
    assert x.grad is not None and module.ln_c_bias_l0_reverse.grad.abs().sum() > 0


@pytest.mark.parametrize("cls", [fusedrnn.LayerNormLSTMCell, fusedrnn.LayerNormGRUCell])
def test_cells_match_reference(cls):
    torch.manual_seed(2)
    cell = cls(5, 7, dtype=torch.float64)
    perturb_norms(cell)
    lstm = cls is fusedrnn.LayerNormLSTMCell
    kind = fusedrnn._cells.LSTM if lstm else fusedrnn._cells.GRU
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    hx = (torch.randn(3, 7, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64)) if lstm else torch.randn(
        3, 7, dtype=torch.float64)
    out = cell(x, hx)
    weights = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
    norm = [getattr(cell, n) for n in fusedrnn._stepwise_ops.norm_weight_names(kind)]
    _, expected = getattr(reference, f"layernorm_{'lstm' if lstm else 'gru'}")(x.unsqueeze(0), hx, *weights, *norm)
    for a, e in zip(out if lstm else (out,), expected if lstm else (expected,)):
        assert_close_relative(a, e, 1e-10)
    params = [x, *cell.parameters()]
    total = sum(o.sum() for o in (out if lstm else (out,)))
    total_ref = sum(o.sum() for o in (expected if lstm else (expected,)))
    for a, e in zip(torch.autograd.grad(total, params), torch.autograd.grad(total_ref, params)):
        assert_close_relative(a, e, 1e-10)
    unbatched = cell(x[0].detach())  # unbatched input, zero state
    assert (unbatched[0] if lstm else unbatched).shape == (7,)


def test_compile_fullgraph():
    torch.manual_seed(3)
    module = fusedrnn.LayerNormGRU(4, 5, num_layers=2)
    perturb_norms(module)
    x = torch.randn(3, 2, 4, requires_grad=True)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    y, h = compiled(x)
    y_eager, h_eager = module(x)
    assert_close_relative(y, y_eager, 1e-6)
    assert_close_relative(h, h_eager, 1e-6)
    g = torch.autograd.grad(y.sum(), [x, module.ln_hh_weight_l1])
    g_eager = torch.autograd.grad(y_eager.sum(), [x, module.ln_hh_weight_l1])
    for a, e in zip(g, g_eager):
        assert_close_relative(a, e, 1e-6)


def test_trace():
    torch.manual_seed(4)
    module = fusedrnn.LayerNormLSTM(3, 4)
    perturb_norms(module)
    traced = torch.jit.trace(module, (torch.randn(5, 2, 3),))
    x = torch.randn(6, 3, 3, requires_grad=True)  # other sizes than traced
    y, y_eager = traced(x)[0], module(x)[0]
    assert_close_relative(y, y_eager, 1e-6)
    g, g_eager = (torch.autograd.grad(out.sum(), [x, module.ln_c_weight_l0]) for out in (y, y_eager))
    for a, e in zip(g, g_eager):
        assert_close_relative(a, e, 1e-6)


def test_refusals():
    with pytest.raises(ValueError, match="proj_size"):
        fusedrnn.LayerNormLSTM(4, 8, proj_size=2)
    gru = fusedrnn.LayerNormGRU(3, 4)
    with pytest.raises(TypeError, match="LayerNormGRU has no torch.nn equivalent"):
        fusedrnn.to_torch(torch.nn.Sequential(gru))
    with pytest.raises(RuntimeError, match="torch.jit.script cannot compile fusedrnn.LayerNormGRU"):
        torch.jit.script(gru)
    model = torch.nn.Sequential(gru, torch.nn.LSTM(4, 4))
    converted = fusedrnn.convert(model)
    assert type(converted[0]) is fusedrnn.LayerNormGRU and type(converted[1]) is fusedrnn.LSTM
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size"):
        gru(torch.randn(2, 1, 5))  # torch.nn's own check


def test_autocast_runs_in_float32():
    torch.manual_seed(5)
    module = fusedrnn.LayerNormLSTM(4, 5)
    x = torch.randn(3, 2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, (h, c) = module(x.bfloat16())  # a 16-bit input meets float32 weights
    assert y.dtype == h.dtype == c.dtype == torch.float32
    assert_close_relative(y, module(x.bfloat16().float())[0], 1e-6)
    y.sum().backward()
    assert module.ln_ih_weight_l0.grad.dtype == torch.float32


def test_export():
    torch.manual_seed(6)
    module = fusedrnn.LayerNormGRU(4, 5, bidirectional=True)
    perturb_norms(module)
    x = torch.randn(3, 2, 4)
    with torch.no_grad():
        program = torch.export.export(module, (x,))
    assert any(node.target is torch.ops.fusedrnn.stepwise_gru_forward.default for node in program.graph.nodes)
    assert_close_relative(program.module()(x)[0], module(x)[0], 1e-6)


@pytest.mark.cuda
def test_cuda_runs_the_reference_loop():
    torch.manual_seed(7)
    module = fusedrnn.LayerNormLSTM(4, 5)
    perturb_norms(module)
    x = torch.randn(3, 2, 4)
    expected = module(x)[0]
    assert_close_relative(module.cuda()(x.cuda())[0].cpu(), expected, 1e-5)


@pytest.mark.parametrize("cls", [fusedrnn.LayerNormLSTM, fusedrnn.LayerNormGRU])
def test_in_place_on_outputs(cls):
    """out += 1 after the forward, as torch.nn's outputs allow: backward gives the same gradients."""
    torch.manual_seed(8)
    module = cls(4, 5, batch_first=True)
    perturb_norms(module)
    x = torch.randn(2, 3, 4, requires_grad=True)
    expected = torch.autograd.grad(module(x)[0].sum(), [x, module.ln_hh_weight_l0])
    out, _ = module(x)
    out += 1
    for a, e in zip(torch.autograd.grad(out.sum(), [x, module.ln_hh_weight_l0]), expected):
        assert_close_relative(a, e, 1e-6)
