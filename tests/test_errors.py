"""Bad arguments to the ops raise a clear error naming the argument and what was expected."""

import pytest
import torch

from conftest import make_case

ops = torch.ops.fusedrnn


def lstm_args(**overrides):
    case = make_case("lstm_proj", 4, 3, 5, 6, proj=2, seed=1)
    args = dict(x=case.x.detach(), h0=case.h0.detach(), c0=case.c0.detach(), w_ih=case.w_ih.detach(),
                w_hh=case.w_hh.detach(), b_ih=case.b_ih.detach(), b_hh=case.b_hh.detach(),
                w_hr=case.w_hr.detach(), batch_sizes=None, reverse=False, training=False)
    args.update(overrides)
    return args


def call_lstm(**overrides):
    a = lstm_args(**overrides)
    return ops.lstm_forward(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], a["w_hr"],
                            a["batch_sizes"], a["reverse"], a["training"])


def packed_x(rows):
    return torch.randn(rows, 5, dtype=torch.float64)


BAD_LSTM = [
    ("x 2-D without batch_sizes", dict(x=torch.randn(4, 5, dtype=torch.float64)), r"x must be \[seq_len, batch"),
    ("x 4-D", dict(x=torch.randn(4, 3, 5, 1, dtype=torch.float64)), r"x must be \[seq_len, batch"),
    ("x integer", dict(x=torch.ones(4, 3, 5, dtype=torch.int64)), r"x must have a floating dtype"),
    ("input size", dict(x=torch.randn(4, 3, 7, dtype=torch.float64)), r"w_ih must have shape \[4 \* hidden_size, 7\]"),
    ("w_ih rows", dict(w_ih=torch.randn(23, 5, dtype=torch.float64)), r"w_ih must have shape"),
    ("w_hh shape", dict(w_hh=torch.randn(24, 6, dtype=torch.float64)), r"w_hh must have shape \[24, 2\]"),
    ("w_hr shape", dict(w_hr=torch.randn(2, 5, dtype=torch.float64)), r"w_hr must have shape \[proj_size, 6\]"),
    ("b_ih shape", dict(b_ih=torch.randn(23, dtype=torch.float64)), r"b_ih must have shape \[24\]"),
    ("b_hh shape", dict(b_hh=torch.randn(24, 1, dtype=torch.float64)), r"b_hh must have shape \[24\]"),
    ("h0 batch", dict(h0=torch.randn(4, 2, dtype=torch.float64)), r"h0 must have shape \[3, 2\]"),
    ("h0 features", dict(h0=torch.randn(3, 6, dtype=torch.float64)), r"h0 must have shape \[3, 2\]"),
    ("c0 shape", dict(c0=torch.randn(3, 2, dtype=torch.float64)), r"c0 must have shape \[3, 6\]"),
    ("h0 dtype", dict(h0=torch.randn(3, 2, dtype=torch.float32)), r"h0 must have dtype torch.float64 like x"),
    ("w_hh dtype", dict(w_hh=torch.randn(24, 2, dtype=torch.float32)), r"w_hh must have dtype torch.float64"),
    ("b_ih dtype", dict(b_ih=torch.randn(24, dtype=torch.float32)), r"b_ih must have dtype torch.float64"),
    ("batch_sizes increasing", dict(x=packed_x(5), batch_sizes=torch.tensor([2, 3])), r"non-increasing"),
    ("batch_sizes sum", dict(x=packed_x(6), batch_sizes=torch.tensor([3, 2])), r"sum to 5 but x has 6 rows"),
    ("batch_sizes zero", dict(x=packed_x(3), batch_sizes=torch.tensor([3, 0])), r"batch_sizes must be positive"),
    ("batch_sizes dtype", dict(x=packed_x(5), batch_sizes=torch.tensor([3.0, 2.0])), r"1-D torch.int64 CPU"),
    ("batch_sizes rank", dict(x=packed_x(5), batch_sizes=torch.tensor([[3, 2]])), r"1-D torch.int64 CPU"),
    ("packed x rank", dict(x=torch.randn(2, 3, 5, dtype=torch.float64), batch_sizes=torch.tensor([3, 3])),
     r"with batch_sizes, x must be packed \[N, input_size\]"),
    ("packed batch vs h0", dict(x=packed_x(4), batch_sizes=torch.tensor([2, 2])), r"h0 must have shape \[2, 2\]"),
]


@pytest.mark.parametrize("name,overrides,message", BAD_LSTM, ids=[b[0] for b in BAD_LSTM])
def test_lstm_forward_rejects(name, overrides, message):
    with pytest.raises(RuntimeError, match=message) as info:
        call_lstm(**overrides)
    assert "fusedrnn.lstm_forward" in str(info.value)


def test_rnn_rejects_unknown_nonlinearity():
    case = make_case("rnn_tanh", 3, 2, 4, 5, seed=2)
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"):
        ops.rnn_forward(case.x, case.h0, case.w_ih, case.w_hh, case.b_ih, case.b_hh, None, False, "sigmoid", False)


def test_gru_rejects_wrong_gate_count():
    case = make_case("gru", 3, 2, 4, 5, seed=3)
    with pytest.raises(RuntimeError, match=r"fusedrnn.gru_forward: w_ih must have shape \[3 \* hidden_size, 4\]"):
        ops.gru_forward(case.x, case.h0, torch.randn(16, 4, dtype=torch.float64), case.w_hh, None, None, None,
                        False, False)


def test_backward_rejects_mismatched_grad():
    case = make_case("rnn_relu", 3, 2, 4, 5, seed=4)
    with torch.no_grad():
        y, h_n, ws = ops.rnn_forward(case.x, case.h0, case.w_ih, case.w_hh, case.b_ih, case.b_hh, None, False,
                                     "relu", True)
    with pytest.raises(RuntimeError, match=r"grad_hn must have shape \[2, 5\]"):
        ops.rnn_backward(torch.randn_like(y), torch.randn(3, 5, dtype=torch.float64), case.x, case.h0, case.w_ih,
                         case.w_hh, True, None, False, "relu", y, ws)

    with pytest.raises(RuntimeError, match="fusedrnn.rnn_backward: grad_y must have dtype torch.float64 like x, got torch.float32"):
        ops.rnn_backward(torch.randn_like(y, dtype=torch.float32), torch.randn_like(h_n), case.x, case.h0, case.w_ih,
                         case.w_hh, True, None, False, "relu", y, ws)


def test_good_arguments_pass():
    y, h_n, c_n, ws = call_lstm()
    assert y.shape == (4, 3, 2) and h_n.shape == (3, 2) and c_n.shape == (3, 6) and ws.shape == (0,)
