"""Shared test helpers: seeded random layer cases and one way to call either implementation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import fusedrnn  # noqa: F401  (loads the ops)

CELLS = ["lstm", "lstm_proj", "gru", "rnn_tanh", "rnn_relu"]
GATES = {"lstm": 4, "lstm_proj": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}

# Relative tolerance against the float64 reference, per dtype: max |error| <= tol * max(1, max |expected|).
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 2e-2}


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["default", "avx2", "avx512"])
def cpu_isa(request):
    """Runs a test once per instruction set of the CPU kernels (the portable build, AVX2+FMA, AVX-512)."""
    if request.param not in fusedrnn.backends.cpu.supported_isas():
        pytest.skip(f"this CPU lacks {request.param}")
    with fusedrnn.backends.cpu.use_isa(request.param):
        yield request.param


@dataclasses.dataclass
class Case:
    cell: str
    x: torch.Tensor
    h0: torch.Tensor
    c0: torch.Tensor | None
    w_ih: torch.Tensor
    w_hh: torch.Tensor
    b_ih: torch.Tensor | None
    b_hh: torch.Tensor | None
    w_hr: torch.Tensor | None
    batch_sizes: torch.Tensor | None
    reverse: bool

    def tensors(self) -> list[torch.Tensor]:
        """The differentiable inputs, in a fixed order."""
        names = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr"]
        return [getattr(self, n) for n in names if getattr(self, n) is not None]

    def with_tensors(self, tensors, requires_grad=True) -> Case:
        """A copy whose differentiable inputs are replaced, in tensors() order, by fresh leaves."""
        it = iter(tensors)
        fields = {}
        for n in ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr"]:
            if getattr(self, n) is not None:
                fields[n] = next(it).detach().clone().requires_grad_(requires_grad)
        return dataclasses.replace(self, **fields)

    def rebind(self, tensors) -> Case:
        """A copy whose differentiable inputs are exactly `tensors` (kept in the caller's autograd graph)."""
        names = [n for n in ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr"] if getattr(self, n) is not None]
        return dataclasses.replace(self, **dict(zip(names, tensors)))

    def to(self, dtype) -> Case:
        return self.with_tensors([t.to(dtype) for t in self.tensors()])


def torch_nn_layer(kind, input_size, output_size, **kwargs):
    """torch.nn's layer of a CELLS kind whose outputs have output_size features (lstm_proj: hidden size
    output_size + 1, projected to output_size)."""
    if kind == "lstm_proj":
        return torch.nn.LSTM(input_size, output_size + 1, proj_size=output_size, **kwargs)
    name, *nonlinearity = kind.split("_")
    if nonlinearity:
        kwargs["nonlinearity"] = nonlinearity[0]
    return {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[name](input_size, output_size, **kwargs)


def torch_nn_cell(kind, input_size, hidden_size):
    """torch.nn's cell of a CELLS kind (not lstm_proj: cells have no projection)."""
    name, *nonlinearity = kind.split("_")
    kwargs = {"nonlinearity": nonlinearity[0]} if nonlinearity else {}
    cls = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell}[name]
    return cls(input_size, hidden_size, **kwargs)


def random_batch_sizes(T, B, generator) -> torch.Tensor:
    """The batch_sizes of B random lengths in [1, T], the longest T (PackedSequence order)."""
    lengths = torch.randint(1, T + 1, (B,), generator=generator)
    lengths[0] = T
    lengths = lengths.sort(descending=True).values
    return torch.tensor([int((lengths > t).sum()) for t in range(T)], dtype=torch.int64)


def make_case(cell, T, B, I, H, *, bias=True, reverse=False, varlen=False, proj=None, dtype=torch.float64,
              seed=0) -> Case:
    """Fresh random inputs and weights (never zeros), seeded. proj only for lstm_proj."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype).requires_grad_()

    gates = GATES[cell]
    if cell == "lstm_proj":
        proj = proj or max(1, (H + 1) // 2)
    P = proj if cell == "lstm_proj" else H
    scale = 1.0 / max(1.0, H**0.5)
    batch_sizes = None
    if varlen:
        batch_sizes = random_batch_sizes(T, B, g)
        x = randn(int(batch_sizes.sum()), I)
    else:
        x = randn(T, B, I)
    return Case(
        cell=cell,
        x=x,
        h0=randn(B, P, scale=0.5),
        c0=randn(B, H, scale=0.5) if cell.startswith("lstm") else None,
        w_ih=randn(gates * H, I, scale=scale),
        w_hh=randn(gates * H, P, scale=scale),
        b_ih=randn(gates * H, scale=scale) if bias else None,
        b_hh=randn(gates * H, scale=scale) if bias else None,
        w_hr=randn(P, H, scale=scale) if cell == "lstm_proj" else None,
        batch_sizes=batch_sizes,
        reverse=reverse,
    )


def run(impl, case: Case) -> tuple[torch.Tensor, ...]:
    """Calls impl (fusedrnn.functional or fusedrnn.reference) on the case: (y, h_n) or (y, h_n, c_n)."""
    kw = dict(batch_sizes=case.batch_sizes, reverse=case.reverse)
    if case.cell.startswith("lstm"):
        y, (h, c) = impl.lstm(case.x, (case.h0, case.c0), case.w_ih, case.w_hh, case.b_ih, case.b_hh, case.w_hr,
                              **kw)
        return y, h, c
    if case.cell == "gru":
        return impl.gru(case.x, case.h0, case.w_ih, case.w_hh, case.b_ih, case.b_hh, **kw)
    return impl.rnn(case.x, case.h0, case.w_ih, case.w_hh, case.b_ih, case.b_hh,
                    nonlinearity=case.cell.split("_")[1], **kw)


def random_like(tensors, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype).to(t.device) for t in tensors]


def forward_and_grads(impl, case: Case, grad_seed=1):
    """Outputs and the gradients of every input under fixed random output gradients."""
    outputs = run(impl, case)
    grads = torch.autograd.grad(outputs, case.tensors(), random_like(outputs, grad_seed))
    return [o.detach() for o in outputs], list(grads)


def assert_close_relative(actual, expected, tol, what=""):
    """max |actual - expected| <= tol * max(1, max |expected|), compared in float64."""
    actual, expected = actual.double(), expected.double()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert not (torch.isnan(actual) & ~torch.isnan(expected)).any(), f"{what}: NaN where the reference is finite"
    if expected.numel() == 0:
        return
    err = (actual - expected).abs().max().item()
    scale = max(1.0, expected.abs().max().item())
    assert err <= tol * scale, f"{what}: max abs error {err:.3e} > {tol:.0e} * {scale:.3g}"


def reference_stack(module, x, hx, seed=0):
    """A fusedrnn module's layers (time-major x, hx given) through fusedrnn.reference, stacked as torch.nn,
    with any layer norms, and the regularisers' masks drawn as the module draws them: after
    torch.manual_seed(seed), per layer and direction, zoneout's weights then the recurrent-dropout mask.
    Returns (y, the final states as a tuple)."""
    from fusedrnn import _cells, _stepwise_ops, functional, reference

    cell, nonlinearity = _cells.MODES[module.mode]
    kind = cell.name
    norm_names = getattr(module, "_norm_weights_names", ())
    torch.manual_seed(seed)
    directions = 2 if module.bidirectional else 1
    states = hx if isinstance(hx, tuple) else (hx,)
    finals, layer_input = [], x
    for layer in range(module.num_layers):
        outputs = []
        for d in range(directions):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            index = layer * directions + d
            weights = [getattr(module, f"{n}{sfx}") if module.bias or not n.startswith("bias") else None
                       for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            norm = [getattr(module, f"{n}{sfx}") for n in _stepwise_ops.norm_weight_names(cell)] if norm_names else []
            zoneout = functional.zoneout_weights(cell, layer_input, module.hidden_size, module.zoneout, module.training)
            mask = functional.recurrent_dropout_mask(layer_input, x.shape[1], module.hidden_size,
                                                     module.recurrent_dropout, module.training)
            state = tuple(s[index] for s in states)
            kw = {"reverse": d == 1, "zoneout": zoneout, "recurrent_mask": mask}
            if kind == "rnn":
                kw["nonlinearity"] = nonlinearity
            fn = getattr(reference, f"layernorm_{kind}" if norm else kind)
            y, final = fn(layer_input, state if len(state) > 1 else state[0], *weights, *norm, **kw)
            outputs.append(y)
            finals.append(final if isinstance(final, tuple) else (final,))
        layer_input = torch.cat(outputs, -1)
    stacked = tuple(torch.stack([f[i] for f in finals]) for i in range(cell.states))
    return layer_input, stacked


def check_fused_against_reference(run, fused_inputs, reference_inputs, leaves, dtype):
    """run(impl, inputs) -> outputs, through fusedrnn.functional on fused_inputs (of dtype) and through
    fusedrnn.reference on reference_inputs (their float64 copies): every output and every gradient of
    leaves(inputs), under fixed random output gradients, agree within TOLERANCE[dtype] and keep dtype."""
    from fusedrnn import functional, reference

    outs, grads = [], []
    for impl, inputs in [(functional, fused_inputs), (reference, reference_inputs)]:
        out = run(impl, inputs)
        grads.append(torch.autograd.grad(out, leaves(inputs), random_like(out, 1)))
        outs.append(out)
    tol = TOLERANCE[dtype]
    for i, (a, e) in enumerate(zip(*outs)):
        assert a.dtype == dtype
        assert_close_relative(a, e, tol, f"output {i}")
    for i, (a, e) in enumerate(zip(*grads)):
        assert a.dtype == dtype
        assert_close_relative(a, e, tol, f"grad of input {i}")
