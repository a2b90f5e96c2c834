"""Swap torch.nn recurrent modules for fusedrnn's drop-ins inside a model, and back."""

from __future__ import annotations

import copy

import torch

from . import modules

TO_FUSED = {
    torch.nn.LSTM: modules.LSTM,
    torch.nn.GRU: modules.GRU,
    torch.nn.RNN: modules.RNN,
    torch.nn.LSTMCell: modules.LSTMCell,
    torch.nn.GRUCell: modules.GRUCell,
    torch.nn.RNNCell: modules.RNNCell,
}
TO_TORCH = {fused: plain for plain, fused in TO_FUSED.items()}


def torch_view(module: torch.nn.Module) -> torch.nn.Module:
    """A fused module as an instance of its torch.nn class: a second object over the very same attributes
    (parameters, buffers, flags, hooks), so nothing is copied and a change through either shows in both.
    Any other module comes back as it is."""
    plain = TO_TORCH.get(type(module))
    if plain is None:
        return module
    view = object.__new__(plain)
    view.__dict__ = module.__dict__
    return view


def _swap_classes(module: torch.nn.Module, mapping, inplace: bool) -> torch.nn.Module:
    if not inplace:
        module = copy.deepcopy(module)
    for m in module.modules():
        # exact type match: subclasses of torch.nn.LSTM written by users keep their own forward
        target = mapping.get(type(m))
        if target is not None:
            # the fused classes add no state to torch.nn's, so the object (parameters, buffers, device,
            # dtype, training mode, hooks) stays as it is and only its forward changes
            m.__class__ = target
    return module


def convert(module: torch.nn.Module, inplace: bool = False) -> torch.nn.Module:
    """The model with every torch.nn.LSTM / GRU / RNN / LSTMCell / GRUCell / RNNCell replaced by the fused
    class with the same weights, device, dtype and training mode. A copy unless inplace=True."""
    return _swap_classes(module, TO_FUSED, inplace)


def to_torch(module: torch.nn.Module, inplace: bool = False) -> torch.nn.Module:
    """The reverse of convert(): every fusedrnn module becomes its torch.nn class again. A module torch.nn has
    no class for (the layer-normalised layers, a layer with zoneout or recurrent dropout) is an error."""
    for m in module.modules():
        if isinstance(m, (modules._LayerNormRNNBase, modules._LayerNormCellBase)):
            raise TypeError(f"fusedrnn.to_torch: {type(m).__name__} has no torch.nn equivalent (torch.nn has no "
                            "layer-normalised recurrent layer); keep it as a fusedrnn module")
        if isinstance(m, modules._Regularisers) and m._regularised():
            raise TypeError(f"fusedrnn.to_torch: this {type(m).__name__} has zoneout={m.zoneout}, "
                            f"recurrent_dropout={m.recurrent_dropout}, which torch.nn's has not; keep it as a "
                            "fusedrnn module (or set both to 0 first)")
    return _swap_classes(module, TO_TORCH, inplace)
