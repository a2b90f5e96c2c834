"""torch.jit.trace and torch.jit.script of fused modules and cells, and of a model holding them, against
torch.nn with the same weights: outputs, and the gradients of the inputs and of every parameter.

A traced model runs the fused ops; a scripted one runs torch.nn's implementation on the same parameters."""

import io

import pytest
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

import fusedrnn
from conftest import assert_close_relative

I, H, T, B = 3, 4, 3, 2
TOL = 1e-10  # float64 throughout
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning"),  # deprecated in torch, still supported
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),  # the size checks, as in torch.nn's forward
]

LAYERS = {
    "lstm": lambda: torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True),
    "lstm_proj": lambda: torch.nn.LSTM(I, H, proj_size=2, bias=False),
    "gru": lambda: torch.nn.GRU(I, H, num_layers=2, bidirectional=True),
    "rnn_tanh": lambda: torch.nn.RNN(I, H, batch_first=True),
    "rnn_relu": lambda: torch.nn.RNN(I, H, nonlinearity="relu", num_layers=2, bidirectional=True),
    "lstm_cell": lambda: torch.nn.LSTMCell(I, H),
    "gru_cell": lambda: torch.nn.GRUCell(I, H),
    "rnn_cell_relu": lambda: torch.nn.RNNCell(I, H, nonlinearity="relu"),
}


class Holder(torch.nn.Module):
    """A model holding a recurrent module."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)


# with an initial state (typed for TorchScript)
class LSTMStateHolder(Holder):
    def forward(self, x, hx: tuple[Tensor, Tensor]):
        return self.layer(x, hx)


class StateHolder(Holder):
    def forward(self, x, hx: Tensor):
        return self.layer(x, hx)


def make(kind):
    """A torch.nn module and its fused twin with identical float64 weights."""
    torch.manual_seed(0)
    plain = LAYERS[kind]().double()
    fused = fusedrnn.convert(plain)
    assert type(fused) is not type(plain)
    return plain, fused


def model_of(fused, with_state):
    if not with_state:
        return Holder(fused)
    return LSTMStateHolder(fused) if isinstance(fused, (torch.nn.LSTM, torch.nn.LSTMCell)) else StateHolder(fused)


def inputs(plain, with_state, seed, T=T, B=B):
    """Fresh random input and (with_state) initial state for the module."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    if isinstance(plain, torch.nn.RNNCellBase):
        x, h_shape, c_shape = randn(B, I), (B, H), (B, H)
    else:
        x = randn(B, T, I) if plain.batch_first else randn(T, B, I)
        states = plain.num_layers * (2 if plain.bidirectional else 1)
        h_shape = (states, B, plain.proj_size or H)
        c_shape = (states, B, H)
    if not with_state:
        return x, None
    lstm = isinstance(plain, (torch.nn.LSTM, torch.nn.LSTMCell))
    return x, ((randn(*h_shape), randn(*c_shape)) if lstm else randn(*h_shape))


def flat(value):
    if value is None:
        return []
    return [t for v in value for t in flat(v)] if isinstance(value, tuple) else [value]


def outputs_and_grads(model, params, x, hx):
    """Outputs of model(x[, hx]) and the gradients of x, hx and params under fixed random output gradients."""
    x = x.clone().requires_grad_()
    if hx is not None:
        hx = tuple(h.clone().requires_grad_() for h in hx) if isinstance(hx, tuple) else hx.clone().requires_grad_()
    out = flat(model(x) if hx is None else model(x, hx))
    g = torch.Generator().manual_seed(9)
    grads_out = [torch.randn(o.shape, generator=g, dtype=o.dtype) for o in out]
    grads = torch.autograd.grad(out, [x, *flat(hx), *params], grads_out)
    return [o.detach() for o in out], list(grads)


def assert_same(actual, expected):
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert_close_relative(a, e, TOL, f"tensor {i}")


@pytest.mark.parametrize("traced_with_grad", [True, False], ids=["traced_with_grad", "traced_no_grad"])
@pytest.mark.parametrize("with_state", [False, True], ids=["no_state", "state"])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_trace_matches_torch_nn(kind, with_state, traced_with_grad):
    plain, fused = make(kind)
    x, hx = inputs(plain, with_state, seed=1)
    with torch.set_grad_enabled(traced_with_grad):
        traced = torch.jit.trace(model_of(fused, with_state), (x,) if hx is None else (x, hx))  # default checks
    # fresh inputs of other sizes; run with grad, whatever the grad mode of the trace
    x, hx = inputs(plain, with_state, seed=2, T=T + 1, B=B + 1)
    expected_out, expected_grads = outputs_and_grads(plain, list(plain.parameters()), x, hx)
    actual_out, actual_grads = outputs_and_grads(traced, list(fused.parameters()), x, hx)
    assert_same(actual_out, expected_out)
    assert_same(actual_grads, expected_grads)
    with torch.no_grad():
        args = (x,) if hx is None else (x, hx)
        assert_same(flat(traced(*args)), expected_out)


def test_traced_graph_decides_training_when_it_runs():
    """The workspace is saved when the traced graph runs with grad, not when it runs without."""
    plain, fused = make("gru")  # two layers, two directions: four op calls per run
    x, _ = inputs(plain, False, seed=1)
    traced = torch.jit.trace(fused, (x,))
    training_flags = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.fusedrnn.gru_forward.default:
                training_flags.append(args[-1])
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Spy():
        traced(x)
    with Spy():
        traced(x)
    assert training_flags == [False] * 4 + [True] * 4


@pytest.mark.parametrize("with_state", [False, True], ids=["no_state", "state"])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_script_matches_torch_nn(kind, with_state):
    plain, fused = make(kind)
    model = model_of(fused, with_state)
    scripted = torch.jit.script(model)
    x, hx = inputs(plain, with_state, seed=1)
    expected_out, expected_grads = outputs_and_grads(plain, list(plain.parameters()), x, hx)
    # the gradients reach the fused module's own parameters: the scripted model shares them
    actual_out, actual_grads = outputs_and_grads(scripted, list(fused.parameters()), x, hx)
    assert_same(actual_out, expected_out)
    assert_same(actual_grads, expected_grads)
    # the eager model still computes the same
    assert_same(flat(model(x) if hx is None else model(x, hx)), expected_out)


def test_training_a_scripted_model_trains_the_fused_weights():
    plain, fused = make("lstm")
    model = Holder(fused)
    scripted = torch.jit.script(model)
    x, _ = inputs(plain, False, seed=1)
    before = [p.detach().clone() for p in fused.parameters()]
    optimizer = torch.optim.SGD(scripted.parameters(), lr=0.1)
    scripted(x)[0].square().sum().backward()
    optimizer.step()
    for b, p in zip(before, fused.parameters(), strict=True):
        assert not torch.equal(b, p)
    # the scripted and the eager model go on agreeing on the trained weights
    assert_same(flat(scripted(x)), flat(fused(x)))
    # and a saved scripted model loads and runs
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    assert_same(flat(torch.jit.load(buffer)(x)), flat(fused(x)))
