"""torch.onnx.export of fused models (both exporters): ONNX's own LSTM/GRU/RNN nodes, run in onnxruntime and
compared with torch.nn on the same weights."""

import io

import onnx
import onnxruntime
import pytest
import torch

import fusedrnn
from conftest import assert_close_relative

EXPORTERS = ["torchscript", "dynamo"]
ONNX_OP = {"LSTM": "LSTM", "GRU": "GRU", "RNN": "RNN"}


def export(model, args, exporter, dynamic_steps_and_batch=False) -> bytes:
    """The ONNX model; dynamic_steps_and_batch: the first input's dimensions 0 and 1 stay free."""
    if exporter == "dynamo":
        dims = ({0: torch.export.Dim("steps", max=64), 1: torch.export.Dim("batch", max=64)},)
        program = torch.onnx.export(model, args, dynamo=True, verbose=False,
                                    dynamic_shapes=dims if dynamic_steps_and_batch else None)
        return program.model_proto.SerializeToString()
    f = io.BytesIO()
    dims = {"x": {0: "steps", 1: "batch"}} if dynamic_steps_and_batch else None
    torch.onnx.export(model, args, f, dynamo=False, input_names=["x"], dynamic_axes=dims)
    return f.getvalue()


def run_onnx(model_bytes, inputs):
    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)}
    return [torch.from_numpy(o) for o in session.run(None, feed)]


def recurrent_nodes(model_bytes):
    """The ONNX graph's LSTM/GRU/RNN nodes; asserts no fusedrnn op is left in it."""
    graph = onnx.load_from_string(model_bytes).graph
    assert not [n for n in graph.node if "fusedrnn" in n.op_type or "fusedrnn" in n.domain]
    return [n for n in graph.node if n.op_type in ("LSTM", "GRU", "RNN")]


def attribute(node, name):
    return onnx.helper.get_attribute_value(next(a for a in node.attribute if a.name == name))


def randn(*shape, generator):
    return torch.randn(*shape, generator=generator)


class Layer(torch.nn.Module):
    """A recurrent module whose outputs come out flat: (y, h_n) or (y, h_n, c_n)."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, *state):
        hx = (tuple(state) if len(state) == 2 else state[0]) if state else None
        y, h = self.rnn(x, hx)
        return (y, *h) if isinstance(h, tuple) else (y, h)


LAYERS = [  # (kind, options, with_state)
    ("LSTM", {"num_layers": 2, "bidirectional": True, "batch_first": True}, True),
    ("LSTM", {"bias": False}, False),
    ("GRU", {"num_layers": 2, "bidirectional": True}, True),
    ("GRU", {"batch_first": True, "bias": False}, False),
    ("RNN", {"nonlinearity": "relu", "bidirectional": True}, True),
    ("RNN", {"num_layers": 2, "batch_first": True}, False),
]
# the dynamo exporter takes seconds per model: every layer on the TorchScript-based one, three on it that
# together cover each cell and option
CASES = [pytest.param(exporter, kind, options, with_state,
                      id="-".join([exporter, kind, *(f"{k}={v}" for k, v in options.items()),
                                   "with_state" if with_state else "zero_state"]))
         for exporter, (kind, options, with_state) in
         [("torchscript", layer) for layer in LAYERS] + [("dynamo", LAYERS[i]) for i in (0, 3, 4)]]


@pytest.mark.parametrize("exporter,kind,options,with_state", CASES)
def test_module_exports_onnx_recurrent_nodes_matching_torch_nn(exporter, kind, options, with_state):
    torch.manual_seed(0)
    plain = Layer(getattr(torch.nn, kind)(3, 4, **options)).eval()
    fused = fusedrnn.convert(plain)
    layers, directions = options.get("num_layers", 1), 2 if options.get("bidirectional") else 1
    T, B = 5, 2

    def inputs(seed):
        g = torch.Generator().manual_seed(seed)
        x = randn(*((B, T) if options.get("batch_first") else (T, B)), 3, generator=g)
        states = [randn(layers * directions, B, 4, generator=g) for _ in range(2 if kind == "LSTM" else 1)]
        return (x, *states) if with_state else (x,)

    model_bytes = export(fused, inputs(1), exporter)
    nodes = recurrent_nodes(model_bytes)
    # one node per layer and direction, so the graph is fusedrnn's (torch.nn's would have one per layer)
    assert [n.op_type for n in nodes] == [ONNX_OP[kind]] * (layers * directions)
    directions_seen = sorted(attribute(n, "direction") for n in nodes)
    assert directions_seen == sorted([b"forward", b"reverse"][:directions] * layers)

    fresh = inputs(2)
    with torch.no_grad():
        expected = plain(*fresh)
    actual = run_onnx(model_bytes, fresh)
    assert len(actual) == len(expected)
    for a, e, what in zip(actual, expected, ["y", "h_n", "c_n"]):
        assert_close_relative(a, e, 1e-5, what)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_exported_with_dynamic_shapes_runs_other_lengths_and_batches(exporter):
    torch.manual_seed(0)
    plain = Layer(torch.nn.GRU(3, 4, num_layers=2, bidirectional=True)).eval()
    fused = fusedrnn.convert(plain)
    model_bytes = export(fused, (torch.randn(5, 2, 3),), exporter, dynamic_steps_and_batch=True)
    x = torch.randn(7, 3, 3)
    with torch.no_grad():
        expected = plain(x)
    for a, e, what in zip(run_onnx(model_bytes, (x,)), expected, ["y", "h_n"]):
        assert_close_relative(a, e, 1e-5, what)


class Functional(torch.nn.Module):
    """fusedrnn.functional.gru in reverse, with the weights of a torch.nn.GRU's reverse direction."""

    def __init__(self, gru):
        super().__init__()
        self.gru = gru

    def forward(self, x, h0):
        g = self.gru
        return fusedrnn.functional.gru(x, h0, g.weight_ih_l0_reverse, g.weight_hh_l0_reverse,
                                       g.bias_ih_l0_reverse, g.bias_hh_l0_reverse, reverse=True)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_functional_exports_onnx_recurrent_node(exporter):
    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 4, bidirectional=True).eval()
    g = torch.Generator().manual_seed(1)
    example = (randn(5, 2, 3, generator=g), randn(2, 4, generator=g))
    model_bytes = export(Functional(gru).eval(), example, exporter)
    assert [attribute(n, "direction") for n in recurrent_nodes(model_bytes)] == [b"reverse"]

    x, h0 = randn(5, 2, 3, generator=g), randn(2, 4, generator=g)
    with torch.no_grad():
        y, h = gru(x, torch.stack([torch.zeros_like(h0), h0]))
    actual = run_onnx(model_bytes, (x, h0))
    assert_close_relative(actual[0], y[..., 4:], 1e-5, "y")
    assert_close_relative(actual[1], h[1], 1e-5, "h_n")


def test_traced_model_exports_with_the_torchscript_exporter():
    # the TorchScript-based exporter converts the fused ops of an already traced model too
    torch.manual_seed(0)
    plain = Layer(torch.nn.LSTM(3, 4)).eval()
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        traced = torch.jit.trace(fusedrnn.convert(plain), (x,), check_trace=False)
    model_bytes = export(traced, (x,), "torchscript")
    assert [n.op_type for n in recurrent_nodes(model_bytes)] == ["LSTM"]
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        expected = plain(x)
    for a, e, what in zip(run_onnx(model_bytes, (x,)), expected, ["y", "h_n", "c_n"]):
        assert_close_relative(a, e, 1e-5, what)


class Cells(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTMCell(3, 4)
        self.gru = torch.nn.GRUCell(3, 4, bias=False)
        self.rnn = torch.nn.RNNCell(3, 4, nonlinearity="relu")

    def forward(self, x, h, c):
        h1, c1 = self.lstm(x, (h, c))
        return h1, c1, self.gru(x, h), self.rnn(x)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_cells_export_and_match_torch_nn(exporter):
    torch.manual_seed(0)
    plain = Cells().eval()
    fused = fusedrnn.convert(plain)
    g = torch.Generator().manual_seed(1)
    example = (randn(2, 3, generator=g), randn(2, 4, generator=g), randn(2, 4, generator=g))
    model_bytes = export(fused, example, exporter)
    assert sorted(n.op_type for n in recurrent_nodes(model_bytes)) == ["GRU", "LSTM", "RNN"]

    fresh = (randn(2, 3, generator=g), randn(2, 4, generator=g), randn(2, 4, generator=g))
    with torch.no_grad():
        expected = plain(*fresh)
    for a, e, what in zip(run_onnx(model_bytes, fresh), expected, ["lstm h", "lstm c", "gru", "rnn"]):
        assert_close_relative(a, e, 1e-5, what)


def error_chain(excinfo):
    """The messages of an exception and its causes (the dynamo exporter wraps the original error)."""
    messages, e = [], excinfo.value
    while e is not None:
        messages.append(str(e))
        e = e.__cause__ or e.__context__
    return "\n".join(messages)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_projected_lstm_export_names_proj_size(exporter):
    fused = Layer(fusedrnn.LSTM(3, 4, proj_size=2)).eval()
    with pytest.raises(Exception) as excinfo:
        export(fused, (torch.randn(5, 2, 3),), exporter)
    assert "proj_size > 0 cannot be exported to ONNX" in error_chain(excinfo)


def test_packed_sequence_export_is_refused():
    class Packed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = fusedrnn.GRU(3, 4)

        def forward(self, x, lengths):
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths)
            return self.gru(packed)[1]

    with pytest.raises(Exception) as excinfo:
        export(Packed().eval(), (torch.randn(5, 2, 3), torch.tensor([5, 3])), "torchscript")
    assert "packed sequences" in error_chain(excinfo)
