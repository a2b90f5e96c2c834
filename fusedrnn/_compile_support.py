"""torch.compile support for the fused modules.

Dynamo refuses to trace any instance of torch.nn.RNN / GRU / LSTM unless the global
torch._dynamo.config.allow_rnn is set, which switches on its experimental tracing of torch.nn's own RNN
kernels (that fails today). The fused modules subclass those classes, but their forward is plain Python
around custom ops with fake kernels, which Dynamo traces fine. So fusedrnn lets exactly its own modules
through that check and leaves torch.nn's modules, and the global setting, as they are.

The patch goes in when Dynamo's variable builder is first imported (or at once if it already is), so
importing fusedrnn does not import Dynamo.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import sys

_BUILDER = "torch._dynamo.variables.builder"


def _patch(builder) -> None:
    from torch._dynamo import config

    from .modules import _FusedRNNBase

    variable_builder = getattr(builder, "VariableBuilder", None)
    original = getattr(variable_builder, "wrap_module", None)
    if original is None or getattr(original, "_fusedrnn_patch", False):
        return

    @functools.wraps(original)
    def wrap_module(self, value):
        if isinstance(value, _FusedRNNBase) and not config.allow_rnn:
            with config.patch(allow_rnn=True):
                return original(self, value)
        return original(self, value)

    wrap_module._fusedrnn_patch = True
    variable_builder.wrap_module = wrap_module


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Runs patch(module) right after the module called name is imported."""

    def __init__(self, name, patch):
        self.name, self.patch = name, patch

    def find_spec(self, name, path, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            self.patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


def after_import(name: str, patch) -> None:
    """patch(module) now if the module is imported, else right after its import."""
    if name in sys.modules:
        patch(sys.modules[name])
    elif not any(isinstance(f, _PatchAfterImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchAfterImport(name, patch))


def install() -> None:
    after_import(_BUILDER, _patch)
