"""Drop-in replacements for torch.nn.LSTM / GRU / RNN and the three cells, backed by the fused ops.

Each class subclasses its torch.nn class: constructor, validation, parameters (names, shapes,
initialisation), state_dict, flatten_parameters() and all_weights are torch.nn's own. Only forward
differs: it runs fusedrnn's ops instead of cuDNN / ATen's RNN. Whether the forward saves its workspace
for backward depends on grad mode and requires_grad, not on module.training, so backward also works
in eval mode (cuDNN refuses that).

TorchScript cannot compile the fused forward: torch.jit.script scripts torch.nn's implementation over the
module's own parameters (see _prepare_scriptable). torch.jit.trace records the fused ops.

Beyond torch.nn every module takes zoneout=p and recurrent_dropout=p (default 0: exactly torch.nn), and
LayerNormLSTM / LayerNormGRU and their cells add layer norms; these run the step-wise ops (_stepwise_ops).
"""

from __future__ import annotations

import numbers

import torch
from torch.nn.utils.rnn import PackedSequence

from . import _cells, _ops, _stepwise_ops, functional
from ._cells import MODES


def _check_probability(module, name, p):
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:  # as torch.nn checks dropout
        raise ValueError(f"{type(module).__name__}: {name} must be a number in [0, 1), the probability of "
                         f"{'keeping a unit' if name == 'zoneout' else 'dropping a unit'}, got {p!r}")
    return float(p)


class _Regularisers:
    """zoneout and recurrent_dropout: constructor arguments (keyword only), attributes, repr. Class defaults
    of 0 keep a module converted from torch.nn (or unpickled from before these existed) exactly torch.nn."""

    zoneout = 0.0
    recurrent_dropout = 0.0

    def _set_regularisers(self, zoneout, recurrent_dropout):
        self.zoneout = _check_probability(self, "zoneout", zoneout)
        self.recurrent_dropout = _check_probability(self, "recurrent_dropout", recurrent_dropout)
        if (self.zoneout or self.recurrent_dropout) and getattr(self, "proj_size", 0) > 0:
            raise ValueError(f"{type(self).__name__}: zoneout and recurrent_dropout are not supported with "
                             f"proj_size (got proj_size={self.proj_size})")

    def _regularised(self):
        return self.zoneout > 0 or self.recurrent_dropout > 0

    def extra_repr(self):
        s = super().extra_repr()
        for name in ("zoneout", "recurrent_dropout"):
            if getattr(self, name):
                s += f", {name}={getattr(self, name)}"
        return s


def _prepare_scriptable(self):
    """torch.jit.script calls this on every module before scripting it, and scripts what it returns: here
    this module as its torch.nn class, over the same parameters (a view, not a copy), so the scripted model
    runs torch.nn's implementation and training it trains these weights. TorchScript also puts what this
    returns in place of the module in its parent, so the scripted model's eager original then holds the
    torch.nn view too (convert(model, inplace=True) swaps it back)."""
    from .conversion import torch_view  # conversion imports this module

    if self._regularised():
        raise RuntimeError(f"torch.jit.script cannot compile fusedrnn.{type(self).__name__} with zoneout or "
                           "recurrent_dropout: torch.nn's implementation, which it scripts, has neither "
                           "(torch.jit.trace and torch.compile work)")
    return torch_view(self)


class _FusedRNNBase(_Regularisers):
    """The forward shared by LSTM, GRU and RNN: torch.nn's input handling around functional.rnn_layers."""

    _dim_error_suffix = "instead"  # torch.nn.RNN says "...tensor instead", LSTM and GRU "...instead"
    __prepare_scriptable__ = _prepare_scriptable

    def __init__(self, *args, zoneout=0.0, recurrent_dropout=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self._set_regularisers(zoneout, recurrent_dropout)

    def forward(self, input, hx=None):
        has_cell_state = MODES[self.mode][0].states == 2
        directions = 2 if self.bidirectional else 1
        out_size = self.proj_size if self.proj_size > 0 else self.hidden_size
        packed = isinstance(input, PackedSequence)
        is_batched = True
        batch_dim = 0 if self.batch_first else 1
        if packed:
            input, batch_sizes, sorted_indices, unsorted_indices = input
            batch = int(batch_sizes[0])
        else:
            batch_sizes = sorted_indices = unsorted_indices = None
            if input.dim() not in (2, 3):
                raise ValueError(f"{type(self).__name__}: Expected input to be 2D or 3D, got {input.dim()}D "
                                 f"{self._dim_error_suffix}")
            is_batched = input.dim() == 3
            if not is_batched:
                input = input.unsqueeze(batch_dim)
            batch = input.size(batch_dim)

        if hx is None:
            zeros = dict(dtype=input.dtype, device=input.device)
            h0 = torch.zeros(self.num_layers * directions, batch, out_size, **zeros)
            hx = ((h0, torch.zeros(self.num_layers * directions, batch, self.hidden_size, **zeros))
                  if has_cell_state else h0)
        else:
            if not packed:
                hx = self._check_hidden_rank(hx, is_batched)
            hx = self.permute_hidden(hx, sorted_indices)
        self.check_forward_args(input, hx, batch_sizes)
        if not packed and input.size(1 if self.batch_first else 0) == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")  # as torch.nn

        time_major = input.transpose(0, 1) if self.batch_first and not packed else input
        output, hidden = self._layers(time_major, hx, batch_sizes)

        if packed:
            output = PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices)
            return output, self.permute_hidden(hidden, unsorted_indices)
        if self.batch_first:
            output = output.transpose(0, 1).contiguous()
        if not is_batched:
            output = output.squeeze(batch_dim)
            hidden = tuple(h.squeeze(1) for h in hidden) if has_cell_state else hidden.squeeze(1)
        return output, hidden

    def _layers(self, input, hx, batch_sizes):
        """The stack of layers on time-major input and a checked state: (output, final state)."""
        weights = [getattr(self, name) for name in self._flat_weights_names]
        norm_weights = [getattr(self, name) for name in getattr(self, "_norm_weights_names", ())]
        return functional.rnn_layers(
            self.mode, input, hx, weights, num_layers=self.num_layers, bidirectional=self.bidirectional,
            bias=self.bias, proj_size=self.proj_size, dropout=self.dropout, training=self.training,
            batch_sizes=batch_sizes, norm_weights=norm_weights, zoneout=self.zoneout,
            recurrent_dropout=self.recurrent_dropout)

    def _check_hidden_rank(self, hx, is_batched):
        """torch.nn's rank checks of a user-given state; unbatched states gain their batch dimension."""
        want = 3 if is_batched else 2
        kind = "batched 3-D" if is_batched else "unbatched 2-D"
        if MODES[self.mode][0].states == 2:
            if hx[0].dim() != want or hx[1].dim() != want:
                raise RuntimeError(f"For {kind} input, hx and cx should also be {want}-D but got "
                                   f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors")
            return hx if is_batched else (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        if hx.dim() != want:
            raise RuntimeError(f"For {kind} input, hx should also be {want}-D but got {hx.dim()}-D tensor")
        return hx if is_batched else hx.unsqueeze(1)


class LSTM(_FusedRNNBase, torch.nn.LSTM):
    """torch.nn.LSTM with fusedrnn's kernels (same arguments, parameters, inputs and outputs)."""


class GRU(_FusedRNNBase, torch.nn.GRU):
    """torch.nn.GRU with fusedrnn's kernels (same arguments, parameters, inputs and outputs)."""


class RNN(_FusedRNNBase, torch.nn.RNN):
    """torch.nn.RNN (tanh or relu) with fusedrnn's kernels (same arguments, parameters, inputs and outputs)."""

    _dim_error_suffix = "tensor instead"


# ---------------------------------------------------------------------------------------------- cells


class _FusedCellBase(_Regularisers):
    """torch.nn's cell input handling around one fused step (a sequence of length 1).

    Cells are called once per time step from Python loops, where the fixed cost of a call dominates: the
    checks take the common path in a few comparisons and the step goes to the op directly (_ops.forward),
    without functional's layer wrapper.

    With zoneout, each call (a step) draws its own weights in training. With recurrent_dropout, the mask is
    drawn for a sequence and kept over the calls, as a layer keeps it over its steps: a call with hx=None
    (a new sequence) draws a new one, as do a call after reset_recurrent_dropout_mask() and a call whose
    batch size, dtype or device differs from the mask's."""

    __prepare_scriptable__ = _prepare_scriptable
    _cell = None  # set by each cell class
    _recurrent_mask = None

    def __init__(self, *args, zoneout=0.0, recurrent_dropout=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self._set_regularisers(zoneout, recurrent_dropout)

    def reset_recurrent_dropout_mask(self):
        """The next call draws a new recurrent-dropout mask (call it at the start of each sequence that does
        not begin with hx=None)."""
        self._recurrent_mask = None

    def _step(self, input, hx):
        """Runs one step; returns (the final states as a tuple, is_batched)."""
        cell = self._cell
        if hx is None and self._recurrent_mask is not None:
            self._recurrent_mask = None  # a new sequence
        if hx is not None and input.dim() == 2:  # the usual call: batched, with a state of the right shape
            states = tuple(hx) if cell.states == 2 else (hx,)
            expected = (input.shape[0], self.hidden_size)
            if (input.shape[1] == self.input_size and len(states) == cell.states
                    and all(state.shape == expected for state in states)):
                return self._run(input, states), True
        return self._step_any(input, hx)

    def _step_any(self, input, hx):
        """_step for every call: unbatched input, no state, and the errors for shapes that do not fit."""
        cell = self._cell
        dim = input.dim()
        if dim not in (1, 2):
            raise ValueError(f"{type(self).__name__}: Expected input to be 1D or 2D, got {dim}D instead")
        states = None if hx is None else (tuple(hx) if cell.states == 2 else (hx,))
        if states is not None and len(states) != cell.states:
            raise RuntimeError(f"{cell.name}_cell expects two hidden states")  # torch.nn's words
        if states is not None and any(state.dim() not in (1, 2) for state in states):
            self._raise_state_dim(states)
        is_batched = dim == 2
        if not is_batched:
            input = input.unsqueeze(0)
            if states is not None:
                states = tuple(state.unsqueeze(0) for state in states)
        if states is None:
            zeros = torch.zeros(input.shape[0], self.hidden_size, dtype=input.dtype, device=input.device)
            states = (zeros,) * cell.states
        expected = (input.shape[0], self.hidden_size)
        if input.shape[1] != self.input_size or any(state.shape != expected for state in states):
            self._raise_size(input, states)
        return self._run(input, states), is_batched

    def _weights(self):
        """(weight_ih, weight_hh, bias_ih, bias_hh), read from _parameters: Module.__getattr__ costs about
        1.5 us a name on the 2-core EPYC, a tenth of a small cell's call. A name that is not there (a
        parametrization, weight_norm, a tensor set in its place) is read as an attribute, as torch.nn does."""
        params = self._parameters
        try:
            return params["weight_ih"], params["weight_hh"], params["bias_ih"], params["bias_hh"]
        except KeyError:
            return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh

    _normalised = False  # the layer-normalised cells': their norm weights in _norm_weights()

    def _norm_weights(self):
        return ()

    def _run(self, input, states):
        """The fused step on a checked batched input and state tuple; returns the final states."""
        cell = self._cell
        weights = self._weights()
        nonlinearity = self.nonlinearity if cell.takes_nonlinearity else None
        if not (self._normalised or self.zoneout or self.recurrent_dropout):  # plain attributes: the common call
            if cell.projectable:
                weights += (None,)
            training = functional._needs_grad(input, *states, *weights)
            return _ops.forward(cell, input.unsqueeze(0), states, weights, None, False, nonlinearity, training)[1]
        norm_weights = self._norm_weights()
        x = input.unsqueeze(0)
        zoneout = functional.zoneout_weights(cell, x, self.hidden_size, self.zoneout, self.training)
        return functional._run(cell, x, states, weights, norm_weights, zoneout, self._mask_for(input), None, False,
                               nonlinearity)[1]

    def _mask_for(self, input):
        """The sequence's recurrent-dropout mask (see the class's doc), or None."""
        if not self.recurrent_dropout or not self.training:
            return None
        mask = self._recurrent_mask
        if mask is None or mask.shape[0] != input.shape[0] or mask.dtype != input.dtype or mask.device != input.device:
            mask = functional.recurrent_dropout_mask(input, input.shape[0], self.hidden_size, self.recurrent_dropout,
                                                     True)
            self._recurrent_mask = mask
        return mask

    def _raise_state_dim(self, states):
        """torch.nn's error for a state that is neither 1-D nor 2-D."""
        for idx, value in enumerate(states):
            if value.dim() not in (1, 2):
                where = f"hx[{idx}]" if self._cell.states == 2 else "hidden"
                raise ValueError(
                    f"{type(self).__name__}: Expected {where} to be 1D or 2D, got {value.dim()}D instead")

    def _raise_size(self, input, states):
        """The errors (and messages) of torch's cell kernels for sizes that do not fit."""
        if input.size(1) != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {input.size(1)} expected {self.input_size}")
        for idx, state in enumerate(states):
            if state.size(0) != input.size(0):
                raise RuntimeError(
                    f"Input batch size {input.size(0)} doesn't match hidden{idx} batch size {state.size(0)}")
            if state.size(1) != self.hidden_size:
                raise RuntimeError(
                    f"hidden{idx} has inconsistent hidden_size: got {state.size(1)}, expected {self.hidden_size}")
        expected = (input.shape[0], self.hidden_size)
        raise RuntimeError(f"{type(self).__name__}: expected hx of shape {expected} (or ({self.hidden_size},) "
                           f"with an unbatched input), got {', '.join(str(tuple(s.shape)) for s in states)}")


class LSTMCell(_FusedCellBase, torch.nn.LSTMCell):
    """torch.nn.LSTMCell with fusedrnn's kernels."""

    _cell = _cells.LSTM

    def forward(self, input, hx=None):
        (h, c), is_batched = self._step(input, hx)
        return (h, c) if is_batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(_FusedCellBase, torch.nn.GRUCell):
    """torch.nn.GRUCell with fusedrnn's kernels."""

    _cell = _cells.GRU

    def forward(self, input, hx=None):
        (h,), is_batched = self._step(input, hx)
        return h if is_batched else h.squeeze(0)


class RNNCell(_FusedCellBase, torch.nn.RNNCell):
    """torch.nn.RNNCell (tanh or relu) with fusedrnn's kernels."""

    _cell = _cells.RNN

    def forward(self, input, hx=None):
        if self.nonlinearity not in ("tanh", "relu"):  # torch.nn accepts any string until forward
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        (h,), is_batched = self._step(input, hx)
        return h if is_batched else h.squeeze(0)


# ------------------------------------------------------------------------------ layer-normalised layers


def _refuse_script(self):
    raise RuntimeError(f"torch.jit.script cannot compile fusedrnn.{type(self).__name__}: TorchScript has no "
                       "layer-normalised recurrent layer to run in its place (torch.jit.trace and torch.compile "
                       "work)")


def _reset_norm_weights(module, names):
    with torch.no_grad():
        for name in names:
            getattr(module, name).fill_(0.0 if name.startswith("ln_c_bias") else 1.0)


class _LayerNormRNNBase:
    """Adds the layer norms' weights to torch.nn.LSTM / GRU's parameters and runs the layer-normalised ops.

    Per layer k and direction: ln_ih_weight_l{k}[_reverse] and ln_hh_weight_l{k}[_reverse] ([G * hidden_size],
    ones), and for the LSTM ln_c_weight_l{k}[_reverse] (ones) and ln_c_bias_l{k}[_reverse] (zeros)
    ([hidden_size]); registered after torch.nn's parameters."""

    __prepare_scriptable__ = _refuse_script

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cell = MODES[self.mode][0]
        if self.proj_size > 0:
            raise ValueError(f"{type(self).__name__}: proj_size is not supported with layer normalisation "
                             f"(got proj_size={self.proj_size})")
        factory = {"device": self.weight_ih_l0.device, "dtype": self.weight_ih_l0.dtype}
        names = []
        for layer in range(self.num_layers):
            for suffix in ("", "_reverse")[:2 if self.bidirectional else 1]:
                for name, size in _stepwise_ops.norm_weight_sizes(cell, self.hidden_size):
                    self.register_parameter(f"{name}_l{layer}{suffix}",
                                            torch.nn.Parameter(torch.empty(size, **factory)))
                    names.append(f"{name}_l{layer}{suffix}")
        self._norm_weights_names = names
        _reset_norm_weights(self, names)

    def reset_parameters(self):
        super().reset_parameters()  # torch.nn's uniform initialisation of every parameter, then the norms'
        _reset_norm_weights(self, getattr(self, "_norm_weights_names", ()))


class LayerNormLSTM(_LayerNormRNNBase, LSTM):
    """Layer-normalised LSTM (Ba, Kiros & Hinton 2016): torch.nn.LSTM's arguments (no proj_size), inputs and
    outputs, with gates = LN(W_ih x; ln_ih_weight) + LN(W_hh h; ln_hh_weight) + b_ih + b_hh and
    h' = o * tanh(LN(c'; ln_c_weight, ln_c_bias))."""


class LayerNormGRU(_LayerNormRNNBase, GRU):
    """Layer-normalised GRU: torch.nn.GRU's arguments, inputs and outputs, with the input side
    LN(W_ih x; ln_ih_weight) + b_ih and the hidden side LN(W_hh h; ln_hh_weight) + b_hh."""


class _LayerNormCellBase:
    """A layer-normalised cell: torch.nn's cell with ln_ih_weight and ln_hh_weight ([G * hidden_size], ones),
    and for the LSTM ln_c_weight (ones) and ln_c_bias (zeros) ([hidden_size])."""

    __prepare_scriptable__ = _refuse_script

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None, *, zoneout=0.0,
                 recurrent_dropout=0.0):
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype, zoneout=zoneout,
                         recurrent_dropout=recurrent_dropout)
        cell = self._cell
        for name, size in _stepwise_ops.norm_weight_sizes(cell, hidden_size):
            self.register_parameter(name, torch.nn.Parameter(torch.empty(size, device=device, dtype=dtype)))
        _reset_norm_weights(self, _stepwise_ops.norm_weight_names(cell))

    def reset_parameters(self):
        super().reset_parameters()
        _reset_norm_weights(self, [n for n in _stepwise_ops.norm_weight_names(self._cell) if hasattr(self, n)])

    _normalised = True

    def _norm_weights(self):
        return tuple(getattr(self, name) for name in _stepwise_ops.norm_weight_names(self._cell))


class LayerNormLSTMCell(_LayerNormCellBase, LSTMCell):
    """The layer-normalised LSTM's cell (LayerNormLSTM's formulas): torch.nn.LSTMCell's arguments, inputs and
    outputs."""


class LayerNormGRUCell(_LayerNormCellBase, GRUCell):
    """The layer-normalised GRU's cell (LayerNormGRU's formulas): torch.nn.GRUCell's arguments, inputs and
    outputs."""
