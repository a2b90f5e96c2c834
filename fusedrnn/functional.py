"""Layer-level functions over the fused ops: one layer, one direction, the whole sequence.

Same signatures and semantics as `fusedrnn.reference` (see there): x dense [T, B, I] or packed [N, I]
with ``batch_sizes``; ``hx`` None means zeros; ``zoneout`` and ``recurrent_mask`` as drawn by
`zoneout_weights` and `recurrent_dropout_mask` (a layer with either runs the step-wise ops). The forward
saves its workspace for backward only when grad mode is on and some input requires grad.
"""

from __future__ import annotations

import torch

from . import _ops, _stepwise_ops
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


def zoneout_weights(cell: Cell, x, hidden: int, p: float, training: bool):
    """zoneout's weights of the previous h (then c) for a layer's every step, row and unit: x's layout with
    cell.states * hidden features, Bernoulli(p) draws from torch's generator in training, p in evaluation;
    None when p is 0."""
    if p == 0:
        return None
    shape = (*x.shape[:-1], cell.states * hidden)
    return torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(p) if training else x.new_full(shape, p)


def recurrent_dropout_mask(x, batch: int, hidden: int, p: float, training: bool):
    """Recurrent dropout's mask for one layer and direction: [batch, hidden], Bernoulli(1 - p) draws from
    torch's generator scaled by 1 / (1 - p), fixed over the steps; None when p is 0 or not training."""
    if p == 0 or not training:
        return None
    return torch.empty(batch, hidden, dtype=x.dtype, device=x.device).bernoulli_(1 - p).div_(1 - p)


def _run(cell: Cell, x, states, weights, norm_weights, zoneout, recurrent_mask, batch_sizes, reverse,
         nonlinearity=None):
    """One layer on the plain ops, or the step-wise ones with layer norm, zoneout or recurrent dropout;
    returns (y, the final states as a tuple). weights = (w_ih, w_hh, b_ih, b_hh[, w_hr])."""
    training = _needs_grad(x, *states, *weights, *norm_weights)
    if not norm_weights and zoneout is None and recurrent_mask is None:
        return _ops.forward(cell, x, states, weights, batch_sizes, reverse, nonlinearity, training)
    if len(weights) > 4 and weights[4] is not None:
        raise ValueError("fusedrnn: zoneout and recurrent dropout do not apply to a projected LSTM (w_hr)")
    return _stepwise_ops.forward(cell, x, states, weights[:4], norm_weights, zoneout, recurrent_mask, batch_sizes,
                                 reverse, nonlinearity, training)


def _layer(cell: Cell, x, hx, weights, batch_sizes, reverse, nonlinearity=None, norm_weights=(), zoneout=None,
           recurrent_mask=None):
    """One layer of any cell; hx = h0 (or (h0, c0)) or None; returns (y, h_n) or (y, (h_n, c_n))."""
    states = _initial_states(cell, x, hx, weights, batch_sizes)
    y, final = _run(cell, x, states, weights, norm_weights, zoneout, recurrent_mask, batch_sizes, reverse,
                    nonlinearity)
    return y, (final if cell.states > 1 else final[0])


def lstm(x, hx, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None, *, batch_sizes=None, reverse=False, zoneout=None,
         recurrent_mask=None):
    """LSTM layer; hx = (h0 [B, P], c0 [B, H]) or None. Returns (y, (h_n, c_n))."""
    return _layer(LSTM, x, hx, (w_ih, w_hh, b_ih, b_hh, w_hr), batch_sizes, reverse, zoneout=zoneout,
                  recurrent_mask=recurrent_mask)


def gru(x, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, batch_sizes=None, reverse=False, zoneout=None,
        recurrent_mask=None):
    """GRU layer ("reset after", as torch.nn.GRU); hx = h0 [B, H] or None. Returns (y, h_n)."""
    return _layer(GRU, x, hx, (w_ih, w_hh, b_ih, b_hh), batch_sizes, reverse, zoneout=zoneout,
                  recurrent_mask=recurrent_mask)


def rnn(x, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, batch_sizes=None, reverse=False, nonlinearity="tanh",
        zoneout=None, recurrent_mask=None):
    """Elman RNN layer with tanh or relu; hx = h0 [B, H] or None. Returns (y, h_n)."""
    return _layer(RNN, x, hx, (w_ih, w_hh, b_ih, b_hh), batch_sizes, reverse, nonlinearity, zoneout=zoneout,
                  recurrent_mask=recurrent_mask)


def layernorm_lstm(x, hx, w_ih, w_hh, b_ih, b_hh, ln_ih_weight, ln_hh_weight, ln_c_weight, ln_c_bias, *,
                   batch_sizes=None, reverse=False, zoneout=None, recurrent_mask=None):
    """Layer-normalised LSTM layer (fusedrnn.LayerNormLSTM's formulas); hx = (h0 [B, H], c0 [B, H]) or None.
    Returns (y, (h_n, c_n))."""
    return _layer(LSTM, x, hx, (w_ih, w_hh, b_ih, b_hh), batch_sizes, reverse,
                  norm_weights=(ln_ih_weight, ln_hh_weight, ln_c_weight, ln_c_bias), zoneout=zoneout,
                  recurrent_mask=recurrent_mask)


def layernorm_gru(x, hx, w_ih, w_hh, b_ih, b_hh, ln_ih_weight, ln_hh_weight, *, batch_sizes=None, reverse=False,
                  zoneout=None, recurrent_mask=None):
    """Layer-normalised GRU layer (fusedrnn.LayerNormGRU's formulas); hx = h0 [B, H] or None. Returns (y, h_n)."""
    return _layer(GRU, x, hx, (w_ih, w_hh, b_ih, b_hh), batch_sizes, reverse,
                  norm_weights=(ln_ih_weight, ln_hh_weight), zoneout=zoneout, recurrent_mask=recurrent_mask)


def rnn_layers(mode, x, hx, weights, *, num_layers, bidirectional, bias, proj_size=0, dropout=0.0,
               training=False, batch_sizes=None, norm_weights=(), zoneout=0.0, recurrent_dropout=0.0):
    """A stack of layers, as torch.nn.LSTM / GRU / RNN run it (time-major; the modules handle batch_first).

    mode: "LSTM", "GRU", "RNN_TANH" or "RNN_RELU". x: [T, B, I], or packed [N, I] with batch_sizes.
    hx: h0 [L*D, B, P] (LSTM: (h0, c0 [L*D, B, H])), index layer * D + direction.
    weights: torch.nn's flat weight list: per layer, per direction: w_ih, w_hh, (b_ih, b_hh), (w_hr).
    Between layers (not after the last) dropout applies when training. norm_weights (the LSTM and the GRU):
    per layer, per direction, the cell's norm weights (ln_ih_weight, ln_hh_weight, and the LSTM's
    ln_c_weight, ln_c_bias), or () without layer norm. zoneout and recurrent_dropout: their probabilities,
    with fresh draws per layer and direction. Returns (y, h_n) or (y, (h_n, c_n)).
    """
    cell, nonlinearity = MODES[mode]
    projected = cell.projectable and proj_size > 0
    per_direction = 2 + (2 if bias else 0) + (1 if projected else 0)
    per_norm = len(_stepwise_ops.norm_weight_names(cell)) if norm_weights else 0

    def layer(index, layer_input, layer_states, reverse):
        w = weights[index * per_direction:(index + 1) * per_direction]
        b_ih, b_hh = (w[2], w[3]) if bias else (None, None)
        layer_weights = (w[0], w[1], b_ih, b_hh) + ((w[-1] if projected else None,) if cell.projectable else ())
        norm = tuple(norm_weights[index * per_norm:(index + 1) * per_norm])
        hidden = w[1].shape[0] // cell.gates
        zoned = zoneout_weights(cell, layer_input, hidden, zoneout, training)
        mask = recurrent_dropout_mask(layer_input, layer_states[0].shape[0], hidden, recurrent_dropout, training)
        return _run(cell, layer_input, layer_states, layer_weights, norm, zoned, mask, batch_sizes, reverse,
                    nonlinearity)

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
