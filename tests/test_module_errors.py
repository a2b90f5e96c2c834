"""Invalid arguments: the fused modules raise what torch.nn raises (same exception type and message)."""

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

import fusedrnn

PAIRS = {
    "LSTM": (torch.nn.LSTM, fusedrnn.LSTM),
    "GRU": (torch.nn.GRU, fusedrnn.GRU),
    "RNN": (torch.nn.RNN, fusedrnn.RNN),
    "LSTMCell": (torch.nn.LSTMCell, fusedrnn.LSTMCell),
    "GRUCell": (torch.nn.GRUCell, fusedrnn.GRUCell),
    "RNNCell": (torch.nn.RNNCell, fusedrnn.RNNCell),
}


def raised(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the point is to compare whatever is raised
        return type(e), str(e)
    return None


BAD_CONSTRUCTORS = [
    ("LSTM", (4, 6), dict(dropout=-0.1)),
    ("GRU", (4, 6), dict(dropout=1.5)),
    ("RNN", (4, 6), dict(dropout=True)),
    ("GRU", (4, 6), dict(proj_size=2)),
    ("RNN", (4, 6), dict(proj_size=2)),
    ("LSTM", (4, 6), dict(proj_size=6)),
    ("LSTM", (4, 6), dict(proj_size=-1)),
    ("LSTM", (4, 6), dict(num_layers=0)),
    ("GRU", (4, 0), {}),
    ("RNN", (4, 6), dict(nonlinearity="sigmoid")),
    ("LSTM", (4.5, 6), {}),
]


@pytest.mark.parametrize("name,args,kwargs", BAD_CONSTRUCTORS, ids=lambda v: str(v))
def test_constructor_errors_match_torch_nn(name, args, kwargs):
    plain_cls, fused_cls = PAIRS[name]
    expected = raised(lambda: plain_cls(*args, **kwargs))
    assert expected is not None, "the case must be invalid for torch.nn too"
    assert raised(lambda: fused_cls(*args, **kwargs)) == expected


def lstm_h(layers=2, batch=3, hidden=6):
    return torch.randn(layers, batch, hidden)


BAD_CALLS = [
    ("LSTM", {}, lambda: (torch.randn(5, 3, 4, 2),)),                                 # 4-D input
    ("GRU", {}, lambda: (torch.randn(5, 3, 7),)),                                     # wrong input_size
    ("RNN", {}, lambda: (torch.randn(5, 3, 4), torch.randn(1, 3, 6))),               # wrong layer count in h0
    ("GRU", {}, lambda: (torch.randn(5, 3, 4), torch.randn(2, 4, 6))),               # wrong batch in h0
    ("RNN", {}, lambda: (torch.randn(5, 3, 4), torch.randn(2, 3, 5))),               # wrong hidden in h0
    ("GRU", {}, lambda: (torch.randn(5, 3, 4), torch.randn(3, 6))),                  # 2-D h0 for batched input
    ("RNN", {}, lambda: (torch.randn(5, 4), torch.randn(2, 3, 6))),                  # 3-D h0 for unbatched input
    ("LSTM", {}, lambda: (torch.randn(5, 3, 4), (lstm_h(), lstm_h(hidden=5)))),     # wrong c0
    ("LSTM", {}, lambda: (torch.randn(5, 3, 4), (lstm_h(1), lstm_h(1)))),           # wrong layers in (h0, c0)
    ("LSTM", dict(proj_size=2), lambda: (torch.randn(5, 3, 4), (lstm_h(), lstm_h()))),  # h0 not proj-sized
    ("LSTM", {}, lambda: (torch.randn(5, 4), (lstm_h(), lstm_h()))),                # 3-D state, unbatched input
    ("GRU", {}, lambda: (torch.randn(5, 3, 4, dtype=torch.float64),)),               # dtype mismatch
    ("LSTM", dict(batch_first=True), lambda: (torch.randn(3, 5, 4), (lstm_h(batch=5), lstm_h(batch=5)))),
    ("GRU", {}, lambda: (pack_sequence([torch.randn(4, 4), torch.randn(2, 4)]), torch.randn(2, 3, 6))),
    ("LSTMCell", {}, lambda: (torch.randn(2, 3, 4),)),                                # 3-D input
    ("GRUCell", {}, lambda: (torch.randn(3, 5),)),                                    # wrong input_size
    ("RNNCell", {}, lambda: (torch.randn(3, 4), torch.randn(3, 7))),                 # wrong hidden size
    ("GRUCell", {}, lambda: (torch.randn(3, 4), torch.randn(2, 6))),                 # batch mismatch
    ("LSTMCell", {}, lambda: (torch.randn(3, 4), (torch.randn(3, 6), torch.randn(1, 3, 6)))),  # 3-D c
    ("RNNCell", {}, lambda: (torch.randn(4), torch.randn(1, 1, 6))),                 # 3-D hx
    ("LSTMCell", {}, lambda: (torch.randn(3, 4), (torch.randn(3, 6),) * 3)),         # three states
    ("RNNCell", dict(nonlinearity="gelu"), lambda: (torch.randn(3, 4),)),           # unknown nonlinearity
]


@pytest.mark.parametrize("index", range(len(BAD_CALLS)))
def test_forward_errors_match_torch_nn(index):
    name, kwargs, make_args = BAD_CALLS[index]
    plain_cls, fused_cls = PAIRS[name]
    rnn_kwargs = dict(kwargs) if "Cell" in name else dict(num_layers=2, **kwargs)
    torch.manual_seed(0)
    plain = plain_cls(4, 6, **rnn_kwargs)
    fused = fusedrnn.convert(plain)
    torch.manual_seed(1)
    args = make_args()
    expected = raised(lambda: plain(*args))
    assert expected is not None, "the case must be invalid for torch.nn too"
    actual = raised(lambda: fused(*args))
    assert actual is not None, f"fused accepted what torch.nn rejects: {expected}"
    assert actual[0] is expected[0], (actual, expected)
    assert actual[1] == expected[1]
