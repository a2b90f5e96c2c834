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
