"""torch.jit.trace support: a traced graph decides when it runs whether a forward op saves its workspace.

functional passes training=True to a forward op when grad mode is on and some input requires grad. Recorded
by the tracer, that flag would be a constant of the graph: a model traced under no_grad could not be
differentiated, one traced with grad would save the workspace in inference too, and trace's own check
(which traces again under no_grad) would find two different graphs. So while tracing, each op is called
through a small TorchScript function that computes the flag itself; the tracer records that function's
code, so the flag is computed each time the traced graph runs.
"""

from typing import Optional

import torch
from torch import Tensor


def _needs_grad(tensors: list[Optional[Tensor]]) -> bool:
    """functional's rule, in TorchScript."""
    if not torch.is_grad_enabled():
        return False
    for t in tensors:
        if t is not None and t.requires_grad:
            return True
    return False


_FUNCTIONS = {}  # op name -> its TorchScript caller, compiled on first use


def forward_op(name: str):
    """A TorchScript function taking the arguments of torch.ops.fusedrnn.<name> except `training`, which it
    sets by functional's rule before calling the op. Generated from the op's schema, so it fits every cell."""
    if name not in _FUNCTIONS:
        arguments = getattr(torch.ops.fusedrnn, name).default._schema.arguments
        given = [a for a in arguments if a.name != "training"]
        tensors = [a.name for a in given if a.type.isSubtypeOf(torch._C.OptionalType.ofTensor())]
        source = (f"def run({', '.join(f'{a.name}: {a.type.annotation_str}' for a in given)}):\n"
                  f"    training = _needs_grad([{', '.join(tensors)}])\n"
                  f"    return torch.ops.fusedrnn.{name}({', '.join(a.name for a in arguments)})\n")
        _FUNCTIONS[name] = torch.jit.CompilationUnit(source).run
    return _FUNCTIONS[name]
