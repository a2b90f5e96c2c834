"""Layer-level functions over the fused ops: one layer, one direction, the whole sequence.

Same signatures and semantics as `fusedrnn.reference` (see there): x dense [T, B, I] or packed [N, I]
with ``batch_sizes``; ``hx`` None means zeros. The forward saves its workspace for backward only when
grad mode is on and some input requires grad.
"""

from __future__ import annotations

import torch

from . import _ops


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _zeros_state(x, batch_sizes, features):
    if batch_sizes is None:
        batch = x.shape[1]
    else:
        batch = int(batch_sizes[0]) if batch_sizes.numel() > 0 else 0
    return x.new_zeros(batch, features)


def lstm(x, hx, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None, *, batch_sizes=None, reverse=False):
    """LSTM layer; hx = (h0 [B, P], c0 [B, H]) or None. Returns (y, (h_n, c_n))."""
    if hx is None:
        hidden = w_hh.shape[0] // 4
        out = w_hr.shape[0] if w_hr is not None else hidden
        hx = (_zeros_state(x, batch_sizes, out), _zeros_state(x, batch_sizes, hidden))
    h0, c0 = hx
    training = _needs_grad(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    y, h_n, c_n, _ = _ops.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, training)
    return y, (h_n, c_n)


def gru(x, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, batch_sizes=None, reverse=False):
    """GRU layer ("reset after", as torch.nn.GRU); hx = h0 [B, H] or None. Returns (y, h_n)."""
    h0 = _zeros_state(x, batch_sizes, w_hh.shape[0] // 3) if hx is None else hx
    training = _needs_grad(x, h0, w_ih, w_hh, b_ih, b_hh)
    y, h_n, _ = _ops.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, training)
    return y, h_n


def rnn(x, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, batch_sizes=None, reverse=False, nonlinearity="tanh"):
    """Elman RNN layer with tanh or relu; hx = h0 [B, H] or None. Returns (y, h_n)."""
    h0 = _zeros_state(x, batch_sizes, w_hh.shape[0]) if hx is None else hx
    training = _needs_grad(x, h0, w_ih, w_hh, b_ih, b_hh)
    y, h_n, _ = _ops.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, nonlinearity, training)
    return y, h_n


def _layer(mode, x, state, weights, *, batch_sizes, reverse):
    """One layer and direction: state is h0 (LSTM: (h0, c0)); returns (y, state at the end)."""
    if mode == "LSTM":
        return lstm(x, state, *weights, batch_sizes=batch_sizes, reverse=reverse)
    if mode == "GRU":
        return gru(x, state, *weights, batch_sizes=batch_sizes, reverse=reverse)
    nonlinearity = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}[mode]
    return rnn(x, state, *weights, batch_sizes=batch_sizes, reverse=reverse, nonlinearity=nonlinearity)


def rnn_layers(mode, x, hx, weights, *, num_layers, bidirectional, bias, proj_size=0, dropout=0.0,
               training=False, batch_sizes=None):
    """A stack of layers, as torch.nn.LSTM / GRU / RNN run it (time-major; the modules handle batch_first).

    mode: "LSTM", "GRU", "RNN_TANH" or "RNN_RELU". x: [T, B, I], or packed [N, I] with batch_sizes.
    hx: h0 [L*D, B, P] (LSTM: (h0, c0 [L*D, B, H])), index layer * D + direction.
    weights: torch.nn's flat weight list: per layer, per direction: w_ih, w_hh, (b_ih, b_hh), (w_hr).
    Between layers (not after the last) dropout applies when training. Returns (y, h_n) or (y, (h_n, c_n)).
    """
    directions = 2 if bidirectional else 1
    per_direction = 2 + (2 if bias else 0) + (1 if proj_size > 0 else 0)
    is_lstm = mode == "LSTM"
    h_n, c_n = [], []
    layer_input = x
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            w = weights[index * per_direction:(index + 1) * per_direction]
            w_ih, w_hh = w[0], w[1]
            b_ih, b_hh = (w[2], w[3]) if bias else (None, None)
            layer_weights = [w_ih, w_hh, b_ih, b_hh]
            if is_lstm:
                layer_weights.append(w[-1] if proj_size > 0 else None)
            state = (hx[0][index], hx[1][index]) if is_lstm else hx[index]
            y, final = _layer(mode, layer_input, state, layer_weights, batch_sizes=batch_sizes,
                              reverse=direction == 1)
            outputs.append(y)
            if is_lstm:
                h_n.append(final[0])
                c_n.append(final[1])
            else:
                h_n.append(final)
        layer_input = outputs[0] if directions == 1 else torch.cat(outputs, dim=-1)
        if dropout > 0 and training and layer < num_layers - 1:
            layer_input = torch.nn.functional.dropout(layer_input, dropout, training=True)
    if is_lstm:
        return layer_input, (torch.stack(h_n), torch.stack(c_n))
    return layer_input, torch.stack(h_n)
