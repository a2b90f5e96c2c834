"""fusedrnn.LSTM / GRU / RNN and the cells against torch.nn with identical weights: outputs, final states
and every gradient, over the cross product of the constructor flags and the input forms."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn
from conftest import assert_close_relative

KINDS = {
    "lstm": (torch.nn.LSTM, {}),
    "lstm_proj": (torch.nn.LSTM, {"proj_size": 3}),
    "gru": (torch.nn.GRU, {}),
    "rnn_tanh": (torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (torch.nn.RNN, {"nonlinearity": "relu"}),
}
FORMS = ["batched", "unbatched", "packed_sorted", "packed_unsorted"]
I, H, T, B = 4, 6, 5, 3


def make_pair(kind, dtype=torch.float64, seed=0, **overrides):
    """A torch.nn module and its fused twin with identical weights."""
    cls, extra = KINDS[kind]
    kw = dict(extra, **overrides)
    torch.manual_seed(seed)
    plain = cls(I, H, dtype=dtype, **kw)
    fused = fusedrnn.convert(plain)
    assert type(fused) is not cls and isinstance(fused, cls)
    return plain, fused


def make_inputs(plain, form, with_state, dtype, seed=1):
    """Input (tensor or PackedSequence) and initial state for the module, plus the leaves to differentiate."""
    g = torch.Generator().manual_seed(seed)
    directions = 2 if plain.bidirectional else 1
    out = plain.proj_size if getattr(plain, "proj_size", 0) > 0 else plain.hidden_size

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_()

    leaves = []
    if form == "unbatched":
        x = randn(T, I)
        state_shape = (plain.num_layers * directions,)
    else:
        x = randn(B, T, I) if plain.batch_first else randn(T, B, I)
        state_shape = (plain.num_layers * directions, B)
    leaves.append(x)
    inp = x
    if form.startswith("packed"):
        lengths = torch.tensor([T, 2, 4]) if form == "packed_unsorted" else torch.tensor([T, 4, 2])
        inp = pack_padded_sequence(x, lengths, batch_first=plain.batch_first,
                                   enforce_sorted=form == "packed_sorted")
    hx = None
    if with_state:
        h0 = randn(*state_shape, out)
        leaves.append(h0)
        hx = h0
        if plain.mode == "LSTM":
            c0 = randn(*state_shape, plain.hidden_size)
            leaves.append(c0)
            hx = (h0, c0)
    return inp, hx, leaves


def outputs_of(result):
    output, hidden = result
    output = output.data if isinstance(output, torch.nn.utils.rnn.PackedSequence) else output
    return [output, *(hidden if isinstance(hidden, tuple) else (hidden,))]


def compare(plain, fused, form, with_state, dtype, tol):
    inp, hx, leaves = make_inputs(plain, form, with_state, dtype)
    expected = outputs_of(plain(inp, hx))
    actual = outputs_of(fused(inp, hx))
    g = torch.Generator().manual_seed(2)
    grads_out = [torch.randn(e.shape, generator=g, dtype=torch.float64).to(dtype) for e in expected]
    # the packing step is shared by both graphs, so the first pass keeps it
    e_grads = torch.autograd.grad(expected, leaves + list(plain.parameters()), grads_out, retain_graph=True)
    a_grads = torch.autograd.grad(actual, leaves + list(fused.parameters()), grads_out)
    for name, a, e in zip(["output", "h_n", "c_n"], actual, expected):
        assert a.shape == e.shape and a.dtype == e.dtype
        assert_close_relative(a, e, tol, name)
    names = [f"input {i}" for i in range(len(leaves))] + [n for n, _ in plain.named_parameters()]
    for name, a, e in zip(names, a_grads, e_grads):
        assert_close_relative(a, e, tol, f"grad {name}")


@pytest.mark.parametrize("with_state", [True, False], ids=["state", "no_state"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_first", "batch_first"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("kind", list(KINDS))
def test_module_matches_torch_nn(kind, num_layers, bidirectional, batch_first, bias, form, with_state):
    plain, fused = make_pair(kind, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                             bias=bias)
    compare(plain, fused, form, with_state, torch.float64, 1e-10)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_module_matches_torch_nn_float32(kind, form):
    plain, fused = make_pair(kind, dtype=torch.float32, num_layers=2, bidirectional=True)
    compare(plain, fused, form, True, torch.float32, 1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
def test_backward_in_eval_mode(kind):
    plain, fused = make_pair(kind, num_layers=2, dropout=0.5)
    plain.eval()
    fused.eval()
    compare(plain, fused, "batched", True, torch.float64, 1e-10)


@pytest.mark.parametrize("kind", list(KINDS))
def test_dropout_training_uses_torch_mask_semantics(kind):
    """With the same seed, the fused stack draws the same inter-layer dropout masks as torch.nn on the CPU."""
    plain, fused = make_pair(kind, num_layers=3, dropout=0.4, bidirectional=True)
    plain.train()
    fused.train()
    x = torch.randn(T, B, I, dtype=torch.float64)
    torch.manual_seed(123)
    expected, _ = plain(x)
    torch.manual_seed(123)
    actual, _ = fused(x)
    assert_close_relative(actual, expected, 1e-10)
    # and dropout really acts in training: another seed gives other masks, eval gives no masks
    torch.manual_seed(7)
    other, _ = fused(x)
    assert (other - actual).abs().max() > 1e-3
    fused.eval()
    plain.eval()
    assert_close_relative(fused(x)[0], plain(x)[0], 1e-10)
    assert (fused(x)[0] - actual).abs().max() > 1e-3


CELLS = {
    "lstm_cell": (torch.nn.LSTMCell, {}),
    "gru_cell": (torch.nn.GRUCell, {}),
    "rnn_cell_tanh": (torch.nn.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_cell_relu": (torch.nn.RNNCell, {"nonlinearity": "relu"}),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("with_state", [True, False], ids=["state", "no_state"])
@pytest.mark.parametrize("batched", [True, False], ids=["2d", "1d"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_matches_torch_nn(kind, bias, batched, with_state, dtype):
    cls, kw = CELLS[kind]
    torch.manual_seed(3)
    plain = cls(I, H, bias=bias, dtype=dtype, **kw)
    fused = fusedrnn.convert(plain)
    assert isinstance(fused, cls) and type(fused) is not cls
    g = torch.Generator().manual_seed(4)

    def randn(*shape):
        shape = shape if batched else shape[1:]
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_()

    x = randn(B, I)
    leaves = [x]
    hx = None
    if with_state:
        hx = (randn(B, H), randn(B, H)) if kind == "lstm_cell" else randn(B, H)
        leaves += list(hx) if kind == "lstm_cell" else [hx]
    expected, actual = plain(x, hx), fused(x, hx)
    expected = list(expected) if isinstance(expected, tuple) else [expected]
    actual = list(actual) if isinstance(actual, tuple) else [actual]
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for a, e in zip(actual, expected):
        assert a.shape == e.shape
        assert_close_relative(a, e, tol)
    grads_out = [torch.randn_like(e) for e in expected]
    e_grads = torch.autograd.grad(expected, leaves + list(plain.parameters()), grads_out)
    a_grads = torch.autograd.grad(actual, leaves + list(fused.parameters()), grads_out)
    for a, e in zip(a_grads, e_grads):
        assert_close_relative(a, e, tol)


def test_fused_classes_subclass_torch_nn():
    pairs = [(fusedrnn.LSTM(2, 3), torch.nn.LSTM), (fusedrnn.GRU(2, 3), torch.nn.GRU),
             (fusedrnn.RNN(2, 3), torch.nn.RNN), (fusedrnn.LSTMCell(2, 3), torch.nn.LSTMCell),
             (fusedrnn.GRUCell(2, 3), torch.nn.GRUCell), (fusedrnn.RNNCell(2, 3), torch.nn.RNNCell)]
    for module, cls in pairs:
        assert isinstance(module, cls)


@pytest.mark.parametrize("kind", list(KINDS))
def test_parameters_state_dict_and_init_match(kind):
    cls, kw = KINDS[kind]
    fused_cls = {torch.nn.LSTM: fusedrnn.LSTM, torch.nn.GRU: fusedrnn.GRU, torch.nn.RNN: fusedrnn.RNN}[cls]
    torch.manual_seed(5)
    plain = cls(I, H, num_layers=2, bidirectional=True, **kw)
    torch.manual_seed(5)
    fused = fused_cls(I, H, num_layers=2, bidirectional=True, **kw)
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in fused.named_parameters()]
    for (n, p), (_, q) in zip(plain.named_parameters(), fused.named_parameters()):
        assert p.shape == q.shape and torch.equal(p, q), n  # same initialisation from the same seed
    assert [[w.shape for w in ws] for ws in plain.all_weights] == [[w.shape for w in ws] for ws in fused.all_weights]
    fused.flatten_parameters()
    # state_dicts load both ways with strict=True
    fresh_fused = fused_cls(I, H, num_layers=2, bidirectional=True, **kw)
    fresh_fused.load_state_dict(plain.state_dict(), strict=True)
    fresh_plain = cls(I, H, num_layers=2, bidirectional=True, **kw)
    fresh_plain.load_state_dict(fused.state_dict(), strict=True)
    x = torch.randn(T, B, I)
    assert_close_relative(fresh_fused(x)[0], plain(x)[0], 1e-5)
    assert_close_relative(fresh_plain(x)[0], fused(x)[0], 1e-5)


def test_pickle_round_trip(tmp_path):
    model = torch.nn.Sequential(fusedrnn.LSTM(I, H, num_layers=2), torch.nn.Identity())
    path = tmp_path / "model.pt"
    torch.save(model, path)
    loaded = torch.load(path, weights_only=False)
    assert type(loaded[0]) is fusedrnn.LSTM
    x = torch.randn(T, B, I)
    assert torch.equal(loaded[0](x)[0], model[0](x)[0])


def test_weights_only_load_with_safe_globals(tmp_path):
    """A state_dict saved from a fused module loads under torch.load(weights_only=True)."""
    model = fusedrnn.GRU(I, H)
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    state = torch.load(path, weights_only=True)
    other = fusedrnn.GRU(I, H)
    other.load_state_dict(state, strict=True)
    for p, q in zip(model.parameters(), other.parameters()):
        assert torch.equal(p, q)


class TinyTagger(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(20, I)
        self.rnn = fusedrnn.LSTM(I, H, num_layers=2, batch_first=True, bidirectional=True)
        self.head = torch.nn.Linear(2 * H, 5)

    def forward(self, tokens):
        out, _ = self.rnn(self.embed(tokens))
        return self.head(out)


def test_compile_fullgraph_model_matches_eager():
    torch.manual_seed(6)
    model = TinyTagger()
    tokens = torch.randint(0, 20, (B, T))
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)  # default backend (inductor)
    eager_out = model(tokens)
    compiled_out = compiled(tokens)
    assert_close_relative(compiled_out, eager_out, 1e-6)
    eager_grads = torch.autograd.grad(eager_out.square().sum(), list(model.parameters()))
    compiled_grads = torch.autograd.grad(compiled_out.square().sum(), list(model.parameters()))
    for a, e in zip(compiled_grads, eager_grads):
        assert_close_relative(a, e, 1e-5)


def test_unsorted_packed_state_order_is_the_users():
    """With enforce_sorted=False the states come back in the order of the user's batch, as in torch.nn."""
    plain, fused = make_pair("gru", num_layers=2)
    x = torch.randn(T, B, I, dtype=torch.float64)
    lengths = torch.tensor([2, T, 3])
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    h0 = torch.randn(2, B, H, dtype=torch.float64)
    _, h_plain = plain(packed, h0)
    _, h_fused = fused(packed, h0)
    assert_close_relative(h_fused, h_plain, 1e-10)
    # sequence 0 has length 2: its final state is the state after its own second step
    single, _ = fused(x[:2, :1], h0[:, :1])
    assert_close_relative(h_fused[-1, 0], single[-1, 0], 1e-10)


def test_compile_leaves_torch_nn_rnn_modules_alone():
    """fusedrnn lets only its own modules through Dynamo's RNN check: torch.nn.LSTM still stops fullgraph."""
    torch._dynamo.reset()
    assert torch._dynamo.config.allow_rnn is False
    compiled = torch.compile(torch.nn.LSTM(I, H), fullgraph=True, backend="aot_eager")
    with pytest.raises(torch._dynamo.exc.Unsupported, match="RNN, GRU, or LSTM"):
        compiled(torch.randn(T, B, I))
