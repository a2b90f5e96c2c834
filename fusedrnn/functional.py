"""Layer-level functions over the fused ops: one layer, one direction, the whole sequence.

Same signatures and semantics as `fusedrnn.reference` (see there): x dense [T, B, I] or packed [N, I]
with ``batch_sizes``; ``hx`` None means zeros. The forward saves its workspace for backward only when
grad mode is on and some input requires grad.
"""

from __future__ import annotations

import torch

from . import _ops
from ._cells import GRU, LSTM, MODES, RNN, Cell


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _zeros_state(x, batch_sizes, features):
    if batch_sizes is None:
        batch = x.shape[1]
    else:
        batch = int(batch_sizes[0]) if batch_sizes.numel() > 0 else 0
    return x.new_zeros(batch, features)


def _layer(cell: Cell, x, hx, weights, batch_sizes, reverse, nonlinearity=None):
    """One layer of any cell; hx = h0 (or (h0, c0)) or None; returns (y, h_n) or (y, (h_n, c_n))."""
    if hx is None:
        hidden = weights[1].shape[0] // cell.gates
        w_hr = weights[4] if cell.projectable else None
        out = w_hr.shape[0] if w_hr is not None else hidden
        states = (_zeros_state(x, batch_sizes, out),) + tuple(
            _zeros_state(x, batch_sizes, hidden) for _ in range(cell.states - 1))
    else:
        states = tuple(hx) if cell.states > 1 else (hx,)
    training = _needs_grad(x, *states, *weights)
    y, final = _ops.forward(cell, x, states, weights, batch_sizes, reverse, nonlinearity, training)
    return y, (final if cell.states > 1 else final[0])


def lstm(x, hx, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None, *, batch_sizes=None, reverse=False):
    """LSTM layer; hx = (h0 [B, P], c0 [B, H]) or None. Returns (y, (h_n, c_n))."""
    return _layer(LSTM, x, hx, (w_ih, w_hh, b_ih, b_hh, w_hr), batch_sizes, reverse)


def gru(x, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, batch_sizes=None, reverse=False):
    """GRU layer ("reset after", as torch.nn.GRU); hx = h0 [B, H] or None. Returns (y, h_n)."""
    return _layer(GRU, x, hx, (w_ih, w_hh, b_ih, b_hh), batch_sizes, reverse)


def rnn(x, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, batch_sizes=None, reverse=False, nonlinearity="tanh"):
    """Elman RNN layer with tanh or relu; hx = h0 [B, H] or None. Returns (y, h_n)."""
    return _layer(RNN, x, hx, (w_ih, w_hh, b_ih, b_hh), batch_sizes, reverse, nonlinearity)


def rnn_layers(mode, x, hx, weights, *, num_layers, bidirectional, bias, proj_size=0, dropout=0.0,
               training=False, batch_sizes=None):
    """A stack of layers, as torch.nn.LSTM / GRU / RNN run it (time-major; the modules handle batch_first).

    mode: "LSTM", "GRU", "RNN_TANH" or "RNN_RELU". x: [T, B, I], or packed [N, I] with batch_sizes.
    hx: h0 [L*D, B, P] (LSTM: (h0, c0 [L*D, B, H])), index layer * D + direction.
    weights: torch.nn's flat weight list: per layer, per direction: w_ih, w_hh, (b_ih, b_hh), (w_hr).
    Between layers (not after the last) dropout applies when training. Returns (y, h_n) or (y, (h_n, c_n)).
    """
    cell, nonlinearity = MODES[mode]
    directions = 2 if bidirectional else 1
    projected = cell.projectable and proj_size > 0
    per_direction = 2 + (2 if bias else 0) + (1 if projected else 0)
    states = tuple(hx) if cell.states > 1 else (hx,)
    finals = [[] for _ in states]  # per state, per layer and direction
    layer_input = x
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            w = weights[index * per_direction:(index + 1) * per_direction]
            b_ih, b_hh = (w[2], w[3]) if bias else (None, None)
            layer_weights = (w[0], w[1], b_ih, b_hh) + ((w[-1] if projected else None,) if cell.projectable else ())
            layer_states = tuple(state[index] for state in states)
            y, final = _ops.forward(cell, layer_input, layer_states, layer_weights, batch_sizes, direction == 1,
                                    nonlinearity, _needs_grad(layer_input, *layer_states, *layer_weights))
            outputs.append(y)
            for collected, value in zip(finals, final):
                collected.append(value)
        layer_input = outputs[0] if directions == 1 else torch.cat(outputs, dim=-1)
        if dropout > 0 and training and layer < num_layers - 1:
            layer_input = torch.nn.functional.dropout(layer_input, dropout, training=True)
    stacked = tuple(torch.stack(collected) for collected in finals)
    return layer_input, (stacked if cell.states > 1 else stacked[0])
