"""Zoneout and recurrent dropout, on every cell and the layer-normalised ones: the fused step-wise ops against
fusedrnn.reference with the same masks (forward and every gradient, awkward sizes, reverse, varlen, every
instruction set), gradcheck, opcheck (of every step-wise op, with and without masks), the masks' statistics
and seeding, and the modules' arguments."""

import math

import pytest
import torch
from conftest import (
    GATES,
    assert_close_relative,
    check_fused_against_reference,
    make_case,
    random_like,
    reference_stack,
)

import fusedrnn
from fusedrnn import _cells, functional, reference

# (kind, layer norm): kind as conftest's cells
CELLS = [("lstm", False), ("gru", False), ("rnn_tanh", False), ("rnn_relu", False), ("lstm", True), ("gru", True)]
CELL_IDS = [f"{'layernorm_' if norm else ''}{kind}" for kind, norm in CELLS]
# what each case draws: zoneout in training (Bernoulli weights) or evaluation (p), a recurrent-dropout mask
OPTIONS = {"zoneout": (0.3, True, 0.0), "zoneout_eval": (0.3, False, 0.0), "dropout": (0.0, True, 0.4),
           "both": (0.25, True, 0.5)}


def cell_of(kind):
    return _cells.LSTM if kind == "lstm" else _cells.GRU if kind == "gru" else _cells.RNN


def make_inputs(kind, norm, option, T, B, I, H, *, bias=True, varlen=False, seed=0):
    """(x, hx, weights, norm weights, zoneout, recurrent_mask, batch_sizes), masks drawn by functional."""
    case = make_case(kind, T, B, I, H, bias=bias, varlen=varlen, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    G = GATES[kind]
    norm_weights = []
    if norm:
        sizes = [G * H, G * H] + ([H, H] if kind == "lstm" else [])
        norm_weights = [(torch.randn(n, generator=g, dtype=torch.float64) * 0.3 + (i != 3)).requires_grad_()
                        for i, n in enumerate(sizes)]
    p_zoneout, training, p_dropout = OPTIONS[option] if option != "none" else (0.0, True, 0.0)
    torch.manual_seed(seed + 2)
    zoneout = functional.zoneout_weights(cell_of(kind), case.x, H, p_zoneout, training)
    mask = functional.recurrent_dropout_mask(case.x, B, H, p_dropout, True)
    hx = (case.h0, case.c0) if kind == "lstm" else case.h0
    return case.x, hx, [case.w_ih, case.w_hh, case.b_ih, case.b_hh], norm_weights, zoneout, mask, case.batch_sizes


def run(impl, kind, inputs, reverse):
    """impl's layer (fusedrnn.functional or reference): (y, h_n) or (y, h_n, c_n)."""
    x, hx, weights, norm, zoneout, mask, batch_sizes = inputs
    kw = {"batch_sizes": batch_sizes, "reverse": reverse, "zoneout": zoneout, "recurrent_mask": mask}
    if kind.startswith("rnn"):
        y, final = impl.rnn(x, hx, *weights, nonlinearity=kind.split("_")[1], **kw)
    else:
        y, final = getattr(impl, f"layernorm_{kind}" if norm else kind)(x, hx, *weights, *norm, **kw)
    return (y, *final) if kind == "lstm" else (y, final)


def leaves(inputs):
    x, hx, weights, norm = inputs[:4]
    states = list(hx) if isinstance(hx, tuple) else [hx]
    return [t for t in [x, *states, *weights, *norm] if t is not None]


def cast(inputs, dtype):
    """The inputs as fresh leaves of dtype (rounded first, so that both sides see the same values)."""
    x, hx, weights, norm, zoneout, mask, batch_sizes = inputs

    def c(t, grad=True):
        return None if t is None else t.detach().to(dtype).requires_grad_(grad)

    hx = tuple(c(t) for t in hx) if isinstance(hx, tuple) else c(hx)
    return (c(x), hx, [c(w) for w in weights], [c(w) for w in norm], c(zoneout, False), c(mask, False),
            batch_sizes)


def check_against_reference(kind, inputs, reverse, dtype):
    check_fused_against_reference(lambda impl, args: run(impl, kind, args, reverse), cast(inputs, dtype),
                                  cast(cast(inputs, dtype), torch.float64), leaves, dtype)


@pytest.mark.parametrize("reverse,varlen", [(False, True), (True, False)])
@pytest.mark.parametrize("T,B,H", [(1, 1, 1), (2, 3, 5), (6, 4, 37)])
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("kind,norm", CELLS, ids=CELL_IDS)
def test_float64_matches_reference(kind, norm, option, T, B, H, reverse, varlen, cpu_isa):
    seed = T * 100 + B * 10 + H
    inputs = make_inputs(kind, norm, option, T, B, H + 2, H, bias=seed % 3 != 0, varlen=varlen, seed=seed)
    check_against_reference(kind, inputs, reverse, torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind,norm", CELLS, ids=CELL_IDS)
def test_low_precision_matches_reference(kind, norm, dtype):
    inputs = make_inputs(kind, norm, "both", 6, 3, 9, 13, varlen=True, seed=7)
    check_against_reference(kind, inputs, True, dtype)


@pytest.mark.parametrize("kind,norm", CELLS, ids=CELL_IDS)
def test_gradcheck(kind, norm):
    inputs = make_inputs(kind, norm, "both", 3, 2, 3, 4, varlen=True, seed=3)
    tensors = leaves(inputs)
    s = 2 if kind == "lstm" else 1
    rest = inputs[4:]

    def f(*t):
        hx = tuple(t[1:1 + s]) if s == 2 else t[1]
        weights = list(t[1 + s:5 + s])
        return run(functional, kind, (t[0], hx, weights, list(t[5 + s:]), *rest), True)

    assert torch.autograd.gradcheck(f, tensors)
    assert torch.autograd.gradgradcheck(f, tensors)  # create_graph goes through the reference loop


@pytest.mark.parametrize("option", ["both", "none"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("kind,norm", CELLS, ids=CELL_IDS)
def test_opcheck(kind, norm, training, option):
    """Every step-wise op, with the masks and without (layer norm alone, or the plain cell step-wise)."""
    x, hx, weights, norm_weights, zoneout, mask, batch_sizes = make_inputs(kind, norm, option, 4, 3, 5, 6,
                                                                           varlen=True, seed=5)
    cell = cell_of(kind)
    states = list(hx) if kind == "lstm" else [hx]
    norm_args = norm_weights or [None] * len(fusedrnn._stepwise_ops.norm_weight_names(cell))
    nonlinearity = [kind.split("_")[1]] if kind.startswith("rnn") else []
    forward = getattr(torch.ops.fusedrnn, f"stepwise_{cell.name}_forward")
    args = (x, *states, *weights, *norm_args, zoneout, mask, batch_sizes, False, *nonlinearity, training)
    if not training:  # an inference forward saves nothing to differentiate with
        args = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(forward, args)
    if training:
        out = forward(*[a.detach() if isinstance(a, torch.Tensor) else a for a in args])
        grads = random_like(out[:-1], 2)
        backward = getattr(torch.ops.fusedrnn, f"stepwise_{cell.name}_backward")
        plain = [t.detach() for t in (x, *states, weights[0], weights[1])]
        norm_plain = [t.detach() if t is not None else None for t in norm_args]
        for input_grad in (True, False):
            torch.library.opcheck(backward, (*grads, *plain, *norm_plain, zoneout, mask, True, batch_sizes, False,
                                             *nonlinearity, out[0], out[-1], input_grad))


def test_bad_masks_are_clear_errors():
    x, hx, weights, _, zoneout, mask, _ = make_inputs("lstm", False, "both", 3, 2, 4, 5, seed=1)
    op = torch.ops.fusedrnn.stepwise_lstm_forward
    with pytest.raises(RuntimeError, match=r"zoneout must have shape \[3, 2, 10\]"):
        op(x, *hx, *weights, None, None, None, None, zoneout[..., :5], mask, None, False, False)
    with pytest.raises(RuntimeError, match=r"recurrent_mask must have shape \[2, 5\]"):
        op(x, *hx, *weights, None, None, None, None, zoneout, mask[:1], None, False, False)
    with pytest.raises(RuntimeError, match="recurrent_mask must have dtype torch.float64"):
        op(x, *hx, *weights, None, None, None, None, zoneout, mask.float(), None, False, False)
    with pytest.raises(RuntimeError, match="ln_c_weight is required with ln_ih_weight"):
        op(x, *hx, *weights, torch.ones(20, dtype=x.dtype), torch.ones(20, dtype=x.dtype), None, None, None, None,
           None, False, False)


# ------------------------------------------------------------------------------------------------ masks


def binomial_bounds(n, p, sigmas=5):
    spread = sigmas * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


def test_mask_statistics():
    torch.manual_seed(0)
    x = torch.randn(50, 40, 8)
    zoneout = functional.zoneout_weights(_cells.LSTM, x, 30, 0.3, True)
    assert zoneout.shape == (50, 40, 60) and set(zoneout.unique().tolist()) <= {0.0, 1.0}
    low, high = binomial_bounds(zoneout.numel(), 0.3)
    assert low <= zoneout.sum().item() <= high
    assert torch.equal(functional.zoneout_weights(_cells.GRU, x, 30, 0.3, False), torch.full((50, 40, 30), 0.3))
    assert functional.zoneout_weights(_cells.GRU, x, 30, 0.0, True) is None
    mask = functional.recurrent_dropout_mask(x, 400, 30, 0.4, True)
    assert mask.shape == (400, 30)
    assert torch.equal(mask.unique(), torch.tensor([0.0, 1 / 0.6]))
    low, high = binomial_bounds(mask.numel(), 0.4)
    assert low <= (mask == 0).sum().item() <= high
    assert functional.recurrent_dropout_mask(x, 400, 30, 0.4, False) is None


def test_zoneout_rate_on_the_fused_path():
    """In training, a unit keeps its previous h exactly (bit for bit) at a rate within binomial bounds of p
    (the RNN's new h almost never equals the old one by chance)."""
    torch.manual_seed(1)
    rnn = fusedrnn.RNN(6, 40, zoneout=0.3)
    with torch.no_grad():
        y, _ = rnn(torch.randn(30, 20, 6), torch.randn(1, 20, 40))
    kept = (y[1:] == y[:-1]).sum().item()
    low, high = binomial_bounds(29 * 20 * 40, 0.3)
    assert low <= kept <= high


MODULES = [(fusedrnn.LSTM, {}), (fusedrnn.GRU, {}), (fusedrnn.RNN, {"nonlinearity": "relu"}),
           (fusedrnn.LayerNormLSTM, {}), (fusedrnn.LayerNormGRU, {})]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("cls,kwargs", MODULES, ids=[c.__name__ for c, _ in MODULES])
def test_module_matches_reference_with_the_same_seed(cls, kwargs, training):
    torch.manual_seed(0)
    module = cls(5, 6, num_layers=2, bidirectional=True, dtype=torch.float64, zoneout=0.2, recurrent_dropout=0.3,
                 **kwargs)
    module.train(training)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith("ln_"):
                p.add_(torch.randn_like(p) * 0.3)
    x = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 3, 6, dtype=torch.float64)
    hx = (h0, torch.randn_like(h0)) if module.mode == "LSTM" else h0
    torch.manual_seed(11)
    y, final = module(x, hx)
    y_ref, final_ref = reference_stack(module, x, hx, 11)
    assert_close_relative(y, y_ref, 1e-10, "y")
    for a, e in zip(final if isinstance(final, tuple) else (final,), final_ref):
        assert_close_relative(a, e, 1e-10, "final state")
    params = [x, *module.parameters()]
    for a, e in zip(torch.autograd.grad(y.sum(), params), torch.autograd.grad(y_ref.sum(), params)):
        assert_close_relative(a, e, 1e-10)
    torch.manual_seed(11)
    assert torch.equal(module(x, hx)[0], y)  # the same seed, the same masks


def test_eval_without_zoneout_is_torch_nn():
    torch.manual_seed(0)
    module = fusedrnn.GRU(4, 5, num_layers=2, recurrent_dropout=0.5).eval()
    plain = torch.nn.GRU(4, 5, num_layers=2)
    plain.load_state_dict(module.state_dict())
    x = torch.randn(6, 3, 4)
    assert_close_relative(module(x)[0], plain(x)[0], 1e-6)
    module.train()
    assert not torch.allclose(module(x)[0], plain(x)[0])  # training draws a mask


@pytest.mark.parametrize("cls", [fusedrnn.LSTMCell, fusedrnn.GRUCell, fusedrnn.RNNCell, fusedrnn.LayerNormLSTMCell,
                                 fusedrnn.LayerNormGRUCell])
def test_cells(cls):
    torch.manual_seed(3)
    cell = cls(4, 5, zoneout=0.3, recurrent_dropout=0.4, dtype=torch.float64)
    lstm = cls in (fusedrnn.LSTMCell, fusedrnn.LayerNormLSTMCell)
    kind = _cells.LSTM if lstm else _cells.RNN if cls is fusedrnn.RNNCell else _cells.GRU
    x = torch.randn(3, 3, 4, dtype=torch.float64, requires_grad=True)
    h = None
    outputs, masks = [], []
    torch.manual_seed(5)
    for t in range(3):
        h = cell(x[t], h)
        outputs.append(h[0] if lstm else h)
        masks.append(cell._recurrent_mask)
    assert masks[0] is masks[1] is masks[2]  # one mask over the sequence's calls
    # the same steps through the reference with the same draws: the mask (on the first call), then per call
    # zoneout's weights
    torch.manual_seed(5)
    norm = [getattr(cell, n) for n in fusedrnn._stepwise_ops.norm_weight_names(kind)] if "LayerNorm" in cls.__name__ else []
    weights = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
    fn = getattr(reference, ("layernorm_" if norm else "") + kind.name)
    state = tuple(torch.zeros(3, 5, dtype=torch.float64) for _ in range(kind.states))
    mask = None
    for t in range(3):
        zoneout = functional.zoneout_weights(kind, x[t:t + 1], 5, 0.3, True)
        mask = functional.recurrent_dropout_mask(x, 3, 5, 0.4, True) if mask is None else mask
        _, final = fn(x[t:t + 1], state if lstm else state[0], *weights, *norm, zoneout=zoneout, recurrent_mask=mask)
        state = tuple(final) if lstm else (final,)
        assert_close_relative(outputs[t], state[0], 1e-10, f"step {t}")
    assert torch.equal(masks[0], mask)
    grads = torch.autograd.grad(outputs[-1].sum(), [x, *cell.parameters()])
    grads_ref = torch.autograd.grad(state[0].sum(), [x, *cell.parameters()])
    for a, e in zip(grads, grads_ref):
        assert_close_relative(a, e, 1e-10)
    cell(x[0].detach(), h)
    assert cell._recurrent_mask is masks[0]
    cell.reset_recurrent_dropout_mask()
    cell(x[0].detach(), h)
    assert cell._recurrent_mask is not masks[0]  # a new sequence, a new mask


def test_arguments_and_refusals():
    for bad in (-0.1, 1.0, 1.5, "0.1", True):
        with pytest.raises(ValueError, match="zoneout must be a number in \\[0, 1\\)"):
            fusedrnn.LSTM(3, 4, zoneout=bad)
        with pytest.raises(ValueError, match="recurrent_dropout must be a number in \\[0, 1\\)"):
            fusedrnn.GRUCell(3, 4, recurrent_dropout=bad)
    with pytest.raises(ValueError, match="not supported with proj_size"):
        fusedrnn.LSTM(3, 4, proj_size=2, zoneout=0.1)
    with pytest.raises(ValueError, match="proj_size is not supported with layer normalisation"):
        fusedrnn.LayerNormLSTM(3, 4, proj_size=2)
    module = fusedrnn.LSTM(3, 4, zoneout=0.1, recurrent_dropout=0.2)
    assert "zoneout=0.1, recurrent_dropout=0.2" in repr(module)
    assert repr(fusedrnn.LSTM(3, 4)) == repr(torch.nn.LSTM(3, 4))
    model = torch.nn.Sequential(module)
    assert fusedrnn.convert(model)[0].zoneout == 0.1  # convert leaves fusedrnn's modules alone
    with pytest.raises(TypeError, match="zoneout=0.1, recurrent_dropout=0.2, which torch.nn's has not"):
        fusedrnn.to_torch(model)
    with pytest.raises(RuntimeError, match="cannot compile fusedrnn.LSTM with zoneout"):
        torch.jit.script(module)
    with pytest.raises(RuntimeError, match="ONNX has no zoned-out or dropped-out LSTM"):
        torch.onnx.export(module, (torch.randn(2, 1, 3),), dynamo=False)
    plain = torch.nn.LSTM(3, 4)
    plain.load_state_dict(module.state_dict())  # the same parameters, state_dict and all
    fusedrnn.to_torch(torch.nn.Sequential(fusedrnn.LSTM(3, 4)))  # p = 0: a plain LSTM


def test_compile_fullgraph():
    torch.manual_seed(0)
    module = fusedrnn.LayerNormGRU(4, 5, zoneout=0.2, recurrent_dropout=0.3)
    x = torch.randn(6, 3, 4, requires_grad=True)
    module.eval()
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    assert_close_relative(compiled(x)[0], module(x)[0], 1e-6, "eval")
    module.train()
    torch.manual_seed(4)
    y = compiled(x)[0]
    torch.manual_seed(4)
    y_eager = module(x)[0]
    assert_close_relative(y, y_eager, 1e-6, "training, same seed")  # aot_eager draws as eager does
    grads = torch.autograd.grad(y.sum(), [x, *module.parameters()])
    grads_eager = torch.autograd.grad(y_eager.sum(), [x, *module.parameters()])
    for a, e in zip(grads, grads_eager):
        assert_close_relative(a, e, 1e-6)


def test_trace_export_autocast_and_in_place():
    """What the layer-normalised layers work with, on a regularised plain layer (the same ops)."""
    torch.manual_seed(0)
    module = fusedrnn.RNN(4, 5, nonlinearity="relu", zoneout=0.2, recurrent_dropout=0.3)
    x = torch.randn(3, 2, 4)
    traced = torch.jit.trace(module, (x,), check_trace=False)  # training draws: two runs differ
    assert any(n.kind() == "aten::bernoulli_" for n in traced.inlined_graph.nodes())  # draws at each run
    module.eval()
    with torch.no_grad():
        program = torch.export.export(module, (x,))
    torch.testing.assert_close(program.module()(x)[0], module(x)[0])
    module.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert module(x.bfloat16())[0].dtype == torch.float32  # as autocast's layer_norm: float32
    xg = x.clone().requires_grad_()
    out, _ = module(xg)
    out += 1.0  # in-place on the output, then backward
    out.sum().backward()
    assert xg.grad is not None and module.weight_hh_l0.grad.abs().sum() > 0
