"""Pure-PyTorch step loops: the oracle every fusedrnn kernel is tested against.

One layer, one direction, the whole sequence, with the same signatures and semantics as
`fusedrnn.functional`:

- x is dense ``[T, B, I]``, or packed ``[N, I]`` when ``batch_sizes`` (``[T]``, non-increasing, as in
  ``PackedSequence``) is given; step t then owns the next ``batch_sizes[t]`` rows, and only those
  batch entries advance at step t (the others keep their state).
- ``reverse=True`` visits t = T-1 .. 0 (the backward direction of a bidirectional layer).
- y has x's layout with P features (P = proj_size for a projected LSTM, else hidden_size); the final
  state of every batch entry is the state after its last step.

The layer-normalised LSTM and GRU (fusedrnn.LayerNormLSTM / LayerNormGRU) take the norms' weights after
the plain weights: LN(v; g, b) = g * (v - mean(v)) / sqrt(var(v) + 1e-5) + b over a row's features, as
torch.nn.functional.layer_norm computes it.

Every layer except the projected LSTM takes two regularisers (fusedrnn.functional draws them):

- ``zoneout``: x's layout with S*H features (S = 1, or 2 with a cell state): per step, row and unit the
  weight m of the previous value, h' = m * h + (1 - m) * h~ (then the LSTM's c' from c~ with the next H
  columns), h~ and c~ the cell's new values (the LSTM's h~ from the unzoned c~); y is h'.
- ``recurrent_mask``: [B, H], multiplies h where it enters W_hh (recurrent dropout), nowhere else.

Plain autograd through these loops gives gradients of any order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _steps(v: Tensor, batch_sizes: Tensor | None) -> list[Tensor]:
    return list(v.unbind(0)) if batch_sizes is None else list(torch.split(v, [int(b) for b in batch_sizes]))


def _run(cell, x: Tensor, state: tuple[Tensor, ...], batch_sizes: Tensor | None, reverse: bool, out_features: int,
         zoneout: Tensor | None = None, recurrent_mask: Tensor | None = None):
    """cell(x_t, state, h_in) -> (new state, output), h_in what enters W_hh: h, or h * recurrent_mask."""
    sizes = [x.shape[1]] * x.shape[0] if batch_sizes is None else [int(b) for b in batch_sizes]
    inputs = _steps(x, batch_sizes)
    keeps = _steps(zoneout, batch_sizes) if zoneout is not None else None
    steps = range(len(sizes) - 1, -1, -1) if reverse else range(len(sizes))
    outputs: list[Tensor | None] = [None] * len(sizes)
    for t in steps:
        n = sizes[t]
        old = tuple(s[:n] for s in state)
        h_in = old[0] if recurrent_mask is None else old[0] * recurrent_mask[:n]
        new_state, outputs[t] = cell(inputs[t], old, h_in)
        if keeps is not None:
            weights = keeps[t].chunk(len(old), 1)
            new_state = tuple(m * prev + (1 - m) * new for m, prev, new in zip(weights, old, new_state))
            outputs[t] = new_state[0]
        state = tuple(torch.cat([new, old[n:]]) for new, old in zip(new_state, state))
    if not outputs:
        shape = (0, x.shape[1], out_features) if batch_sizes is None else (0, out_features)
        return x.new_zeros(shape), state
    y = torch.stack(outputs) if batch_sizes is None else torch.cat(outputs)
    return y, state


def _zeros_state(x: Tensor, batch_sizes: Tensor | None, features: int) -> Tensor:
    batch = x.shape[1] if batch_sizes is None else int(batch_sizes[0])
    return x.new_zeros(batch, features)


def lstm(x, hx, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None, *, batch_sizes=None, reverse=False, zoneout=None,
         recurrent_mask=None):
    """LSTM layer; hx = (h0 [B, P], c0 [B, H]) or None. Returns (y, (h_n, c_n))."""
    if w_hr is not None and (zoneout is not None or recurrent_mask is not None):
        raise ValueError("zoneout and recurrent dropout do not apply to a projected LSTM (proj_size > 0)")
    hidden = w_hh.shape[0] // 4
    out = w_hr.shape[0] if w_hr is not None else hidden
    if hx is None:
        hx = (_zeros_state(x, batch_sizes, out), _zeros_state(x, batch_sizes, hidden))

    def cell(x_t, state, h_in):
        h, c = state
        gates = F.linear(x_t, w_ih, b_ih) + F.linear(h_in, w_hh, b_hh)
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        if w_hr is not None:
            h = F.linear(h, w_hr)
        return (h, c), h

    y, (h_n, c_n) = _run(cell, x, tuple(hx), batch_sizes, reverse, out, zoneout, recurrent_mask)
    return y, (h_n, c_n)


def _gru_update(input_side: Tensor, hidden_side: Tensor, h: Tensor) -> Tensor:
    """The GRU's gates on its input side (x W_ih^T + b_ih) and hidden side (h W_hh^T + b_hh), [B, 3H] each:
    the new h."""
    xr, xz, xn = input_side.chunk(3, 1)
    hr, hz, hn = hidden_side.chunk(3, 1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return (1 - z) * n + z * h


def gru(x, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, batch_sizes=None, reverse=False, zoneout=None,
        recurrent_mask=None):
    """GRU layer ("reset after", as torch.nn.GRU); hx = h0 [B, H] or None. Returns (y, h_n)."""
    hidden = w_hh.shape[0] // 3
    if hx is None:
        hx = _zeros_state(x, batch_sizes, hidden)

    def cell(x_t, state, h_in):
        (h,) = state
        h = _gru_update(F.linear(x_t, w_ih, b_ih), F.linear(h_in, w_hh, b_hh), h)
        return (h,), h

    y, (h_n,) = _run(cell, x, (hx,), batch_sizes, reverse, hidden, zoneout, recurrent_mask)
    return y, h_n


LAYER_NORM_EPS = 1e-5


def _norm(v: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    return F.layer_norm(v, (v.shape[-1],), weight, bias, LAYER_NORM_EPS)


def _add_bias(v: Tensor, bias: Tensor | None) -> Tensor:
    return v if bias is None else v + bias


def layernorm_lstm(x, hx, w_ih, w_hh, b_ih, b_hh, ln_ih_weight, ln_hh_weight, ln_c_weight, ln_c_bias, *,
                   batch_sizes=None, reverse=False, zoneout=None, recurrent_mask=None):
    """Layer-normalised LSTM layer: gates = LN(x W_ih^T; ln_ih) + LN(h W_hh^T; ln_hh) + b_ih + b_hh,
    c' = f * c + i * g, h' = o * tanh(LN(c'; ln_c_weight, ln_c_bias)). hx = (h0 [B, H], c0 [B, H]) or None.
    Returns (y, (h_n, c_n))."""
    hidden = w_hh.shape[0] // 4
    if hx is None:
        hx = (_zeros_state(x, batch_sizes, hidden), _zeros_state(x, batch_sizes, hidden))

    def cell(x_t, state, h_in):
        h, c = state
        gates = _norm(F.linear(x_t, w_ih), ln_ih_weight) + _norm(F.linear(h_in, w_hh), ln_hh_weight)
        i, f, g, o = _add_bias(_add_bias(gates, b_ih), b_hh).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(_norm(c, ln_c_weight, ln_c_bias))
        return (h, c), h

    y, (h_n, c_n) = _run(cell, x, tuple(hx), batch_sizes, reverse, hidden, zoneout, recurrent_mask)
    return y, (h_n, c_n)


def layernorm_gru(x, hx, w_ih, w_hh, b_ih, b_hh, ln_ih_weight, ln_hh_weight, *, batch_sizes=None, reverse=False,
                  zoneout=None, recurrent_mask=None):
    """Layer-normalised GRU layer: input side LN(x W_ih^T; ln_ih) + b_ih, hidden side LN(h W_hh^T; ln_hh) +
    b_hh, then the GRU's math on them. hx = h0 [B, H] or None. Returns (y, h_n)."""
    hidden = w_hh.shape[0] // 3
    if hx is None:
        hx = _zeros_state(x, batch_sizes, hidden)

    def cell(x_t, state, h_in):
        (h,) = state
        h = _gru_update(_add_bias(_norm(F.linear(x_t, w_ih), ln_ih_weight), b_ih),
                        _add_bias(_norm(F.linear(h_in, w_hh), ln_hh_weight), b_hh), h)
        return (h,), h

    y, (h_n,) = _run(cell, x, (hx,), batch_sizes, reverse, hidden, zoneout, recurrent_mask)
    return y, h_n


def rnn(x, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, batch_sizes=None, reverse=False, nonlinearity="tanh",
        zoneout=None, recurrent_mask=None):
    """Elman RNN layer with tanh or relu; hx = h0 [B, H] or None. Returns (y, h_n)."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    act = torch.tanh if nonlinearity == "tanh" else torch.relu
    hidden = w_hh.shape[0]
    if hx is None:
        hx = _zeros_state(x, batch_sizes, hidden)

    def cell(x_t, state, h_in):
        (h,) = state
        h = act(F.linear(x_t, w_ih, b_ih) + F.linear(h_in, w_hh, b_hh))
        return (h,), h

    y, (h_n,) = _run(cell, x, (hx,), batch_sizes, reverse, hidden, zoneout, recurrent_mask)
    return y, h_n
