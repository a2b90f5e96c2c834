"""Layer-level functions over the fused ops: one layer, one direction, the whole sequence.

Same signatures and semantics as `fusedrnn.reference` (see there): x dense [T, B, I] or packed [N, I]
with ``batch_sizes``; ``hx`` None means zeros. The forward saves its workspace for backward only when
grad mode is on and some input requires grad.
"""

from __future__ import annotations

import torch

from . import _layernorm_ops, _ops
from ._cells import GRU, LSTM, MODES, RNN, Cell


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _zeros_state(x, batch_sizes, features):
    if batch_sizes is None:
        batch = x.shape[1]
    else:
        batch = int(batch_sizes[0]) if batch_sizes.numel() > 0 else 0
    return x.new_zeros(batch, features)


def _initial_states(cell: Cell, x, hx, weights, batch_sizes):
    """hx as a tuple of states, (h0,) or (h0, c0); zeros of the right sizes when hx is None."""
    if hx is not None:
        return tuple(hx) if cell.states > 1 else (hx,)
    hidden = weights[1].shape[0] // cell.gates
    w_hr = weights[4] if cell.projectable and len(weights) > 4 else None
    out = w_hr.shape[0] if w_hr is not None else hidden
    return (_zeros_state(x, batch_sizes, out),) + tuple(
        _zeros_state(x, batch_sizes, hidden) for _ in range(cell.states - 1))


def _layer(cell: Cell, x, hx, weights, batch_sizes, reverse, nonlinearity=None):
    """One layer of any cell; hx = h0 (or (h0, c0)) or None; returns (y, h_n) or (y, (h_n, c_n))."""
    states = _initial_states(cell, x, hx, weights, batch_sizes)
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


def layernorm_lstm(x, hx, w_ih, w_hh, b_ih, b_hh, ln_ih_weight, ln_hh_weight, ln_c_weight, ln_c_bias, *,
                   batch_sizes=None, reverse=False):
    """Layer-normalised LSTM layer (fusedrnn.LayerNormLSTM's formulas); hx = (h0 [B, H], c0 [B, H]) or None.
    Returns (y, (h_n, c_n))."""
    return _normalised_layer(LSTM, x, hx, (w_ih, w_hh, b_ih, b_hh),
                             (ln_ih_weight, ln_hh_weight, ln_c_weight, ln_c_bias), batch_sizes, reverse)


def layernorm_gru(x, hx, w_ih, w_hh, b_ih, b_hh, ln_ih_weight, ln_hh_weight, *, batch_sizes=None, reverse=False):
    """Layer-normalised GRU layer (fusedrnn.LayerNormGRU's formulas); hx = h0 [B, H] or None. Returns (y, h_n)."""
    return _normalised_layer(GRU, x, hx, (w_ih, w_hh, b_ih, b_hh), (ln_ih_weight, ln_hh_weight), batch_sizes, reverse)


def _normalised_layer(cell: Cell, x, hx, weights, norm_weights, batch_sizes, reverse):
    states = _initial_states(cell, x, hx, weights, batch_sizes)  # weights without w_hr: no projection
    training = _needs_grad(x, *states, *weights, *norm_weights)
    y, final = _layernorm_ops.forward(cell, x, states, weights, norm_weights, batch_sizes, reverse, training)
    return y, (final if cell.states > 1 else final[0])


def rnn_layers(mode, x, hx, weights, *, num_layers, bidirectional, bias, proj_size=0, dropout=0.0,
               training=False, batch_sizes=None):
    """A stack of layers, as torch.nn.LSTM / GRU / RNN run it (time-major; the modules handle batch_first).

    mode: "LSTM", "GRU", "RNN_TANH" or "RNN_RELU". x: [T, B, I], or packed [N, I] with batch_sizes.
    hx: h0 [L*D, B, P] (LSTM: (h0, c0 [L*D, B, H])), index layer * D + direction.
    weights: torch.nn's flat weight list: per layer, per direction: w_ih, w_hh, (b_ih, b_hh), (w_hr).
    Between layers (not after the last) dropout applies when training. Returns (y, h_n) or (y, (h_n, c_n)).
    """
    cell, nonlinearity = MODES[mode]
    projected = cell.projectable and proj_size > 0
    per_direction = 2 + (2 if bias else 0) + (1 if projected else 0)

    def layer(index, layer_input, layer_states, reverse):
        w = weights[index * per_direction:(index + 1) * per_direction]
        b_ih, b_hh = (w[2], w[3]) if bias else (None, None)
        layer_weights = (w[0], w[1], b_ih, b_hh) + ((w[-1] if projected else None,) if cell.projectable else ())
        return _ops.forward(cell, layer_input, layer_states, layer_weights, batch_sizes, reverse, nonlinearity,
                            _needs_grad(layer_input, *layer_states, *layer_weights))

    return _stack(cell, x, hx, layer, num_layers, 2 if bidirectional else 1, dropout, training)


def layernorm_layers(mode, x, hx, weights, norm_weights, *, num_layers, bidirectional, bias, dropout=0.0,
                     training=False, batch_sizes=None):
    """rnn_layers for the layer-normalised LSTM ("LSTM") and GRU ("GRU"); norm_weights: per layer, per
    direction, the cell's norm weights (ln_ih_weight, ln_hh_weight, and the LSTM's ln_c_weight, ln_c_bias)."""
    cell = MODES[mode][0]
    per_direction = 4 if bias else 2
    per_norm = len(_layernorm_ops.norm_weight_names(cell))

    def layer(index, layer_input, layer_states, reverse):
        w = weights[index * per_direction:(index + 1) * per_direction]
        layer_weights = (w[0], w[1], w[2], w[3]) if bias else (w[0], w[1], None, None)
        norm = norm_weights[index * per_norm:(index + 1) * per_norm]
        return _layernorm_ops.forward(cell, layer_input, layer_states, layer_weights, norm, batch_sizes, reverse,
                                      _needs_grad(layer_input, *layer_states, *layer_weights, *norm))

    return _stack(cell, x, hx, layer, num_layers, 2 if bidirectional else 1, dropout, training)


def _stack(cell: Cell, x, hx, layer, num_layers, directions, dropout, training):
    """Runs layer(index, input, states, reverse) -> (y, final states) for every layer and direction, as
    torch.nn stacks them: directions' outputs concatenated, dropout between layers when training."""
    states = tuple(hx) if cell.states > 1 else (hx,)
    finals = [[] for _ in states]  # per state, per layer and direction
    layer_input = x
    for index_layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            index = index_layer * directions + direction
            y, final = layer(index, layer_input, tuple(state[index] for state in states), direction == 1)
            outputs.append(y)
            for collected, value in zip(finals, final):
                collected.append(value)
        layer_input = outputs[0] if directions == 1 else torch.cat(outputs, dim=-1)
        if dropout > 0 and training and index_layer < num_layers - 1:
            layer_input = torch.nn.functional.dropout(layer_input, dropout, training=True)
    stacked = tuple(torch.stack(collected) for collected in finals)
    return layer_input, (stacked if cell.states > 1 else stacked[0])
