"""torch.ao.quantization support: quantize_dynamic treats each fused module as its torch.nn class.

Eager-mode quantization matches modules by exact type: in the qconfig dict (quantize_dynamic's
qconfig_spec), in the module mapping, and in the quantized classes' from_float, which accepts only the exact
torch.nn classes. It has no hook for subclasses, so fusedrnn wraps the two functions of
torch.ao.quantization.quantize that do the matching (quantize_dynamic looks both up there when it runs):

- propagate_qconfig_: a qconfig given for a torch.nn class applies to its fused class too, unless the dict
  names the fused class itself;
- swap_module: a fused module is swapped as its torch.nn class would be, and is left as it is otherwise.
  The fused classes add no state, so a torch.nn view of the module (conversion.torch_view) is what
  from_float reads.

The default mapping dicts stay as they are: static quantization derives its list of observed modules
from them.
"""

from __future__ import annotations

import functools
import importlib

from .conversion import TO_FUSED, torch_view


def _propagate_qconfig(original):
    @functools.wraps(original)
    def propagate_qconfig_(module, qconfig_dict=None, *args, **kwargs):
        if qconfig_dict:
            inherited = {fused: qconfig_dict[plain] for plain, fused in TO_FUSED.items() if plain in qconfig_dict}
            qconfig_dict = {**inherited, **qconfig_dict}
        return original(module, qconfig_dict, *args, **kwargs)

    return propagate_qconfig_


def _swap_module(original):
    @functools.wraps(original)
    def swap_module(mod, *args, **kwargs):
        view = torch_view(mod)
        swapped = original(view, *args, **kwargs)
        return mod if swapped is view else swapped

    return swap_module


def install() -> None:
    # the module, not the function of the same name that torch.ao.quantization exports
    quantize = importlib.import_module("torch.ao.quantization.quantize")
    if getattr(quantize.swap_module, "_fusedrnn_patch", False):
        return
    quantize.propagate_qconfig_ = _propagate_qconfig(quantize.propagate_qconfig_)
    quantize.swap_module = _swap_module(quantize.swap_module)
    quantize.swap_module._fusedrnn_patch = True
